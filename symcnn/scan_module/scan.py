"""symcnn.scan: Theano's scan front end. It calls the step function once on placeholder
variables, finds what the step graph reads from outside (shared variables, closed-over
tensors) and what it updates, and builds one Scan node (scan_op.py)."""
from collections import OrderedDict

import numpy as np

from ..compile.shared import SharedVariable
from ..graph.basic import Constant, Variable, clone_replace, graph_inputs
from ..graph.trace import user_trace, with_trace
from ..tensor.basic import cast, dimshuffle
from ..tensor.type import TensorType
from ..tensor.var import as_tensor_variable
from .scan_op import Scan, ScanInfo
from .scan_utils import until


class ScanError(ValueError):
    pass


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None, truncate_gradient=-1,
         go_backwards=False, mode=None, name=None, profile=False, allow_gc=None, strict=False,
         return_list=False):
    """Theano's scan: repeat `fn` over `sequences`, feeding back `outputs_info`.

    Returns (outputs, updates): outputs is one variable for one output (a list otherwise, None
    for none), updates an OrderedDict of the shared variables the step updates (its returned
    updates and the random streams it draws from), for function(updates=...).
    mode / profile / allow_gc are accepted for compatibility; the loop runs in the mode of the
    function that computes it."""
    trace = user_trace()

    def fail(msg, exc=ScanError):
        raise exc(with_trace(f"scan{' ' + repr(name) if name else ''}: {msg}", trace))

    if not callable(fn):
        fail(f"fn must be a function, got {type(fn).__name__}", TypeError)
    seqs = _as_list(sequences)
    outs_info = _as_list(outputs_info)
    nonseqs = [as_tensor_variable(x) if not isinstance(x, Variable) else x for x in _as_list(non_sequences)]
    if not isinstance(truncate_gradient, (int, np.integer)) or truncate_gradient == 0 or truncate_gradient < -1:
        fail(f"truncate_gradient must be -1 (full back-propagation through time) or a positive number of "
             f"steps, got {truncate_gradient!r}", ValueError)

    # n_steps: a negative constant means going backwards, as in Theano.
    if n_steps is not None and not isinstance(n_steps, Variable):
        if isinstance(n_steps, (bool, float)) or not isinstance(n_steps, (int, np.integer)):
            fail(f"n_steps must be an integer or an integer scalar variable, got {n_steps!r}", TypeError)
        if n_steps < 0:
            go_backwards, n_steps = not go_backwards, -int(n_steps)
        n_steps = as_tensor_variable(np.int64(n_steps))
    elif n_steps is not None:
        if n_steps.ndim != 0 or not n_steps.dtype.startswith(("int", "uint")):
            fail(f"n_steps must be an integer scalar, got {n_steps.describe()}", TypeError)
        n_steps = cast(n_steps, "int64")

    # -- sequences: one outer slice and one placeholder per tap -----------------------------------------
    seq_slices, seq_args = [], []      # outer slices (before go_backwards), fn's arguments
    for j, s in enumerate(seqs):
        if isinstance(s, dict):
            if "input" not in s:
                fail(f"sequence {j} is a dict without 'input'")
            x, taps = s["input"], list(s.get("taps", [0]) if s.get("taps") is not None else [0])
        else:
            x, taps = s, [0]
        x = _tensor(x, f"sequence {j}", fail)
        if x.ndim < 1:
            fail(f"sequence {j} {x.describe()} is a scalar; sequences are iterated over their first dimension")
        if not taps or not all(isinstance(k, (int, np.integer)) for k in taps):
            fail(f"sequence {j}: taps must be a non-empty list of integers, got {taps!r}")
        lo, hi = int(min(taps)), int(max(taps))
        offset = -hi if hi < 0 else 0
        for k in taps:
            # Theano's slices: with taps [-1, 0, 1], step t reads x[t], x[t + 1], x[t + 2]
            k = int(k)
            if hi == lo and hi != 0:
                sl = x[:hi] if hi < 0 else x[hi:]
            elif hi - k != 0:
                sl = x[offset + k - lo:-(hi - k)]
            else:
                sl = x[offset + k - lo:] if offset + k - lo else x
            seq_slices.append(sl)
            ph = TensorType(x.dtype, shape=x.type.shape[1:])(_tap_name(x, k))
            seq_args.append(ph)

    # -- outputs_info ----------------------------------------------------------------------------------
    states = []   # (initial buffer, taps, placeholders) of fed-back outputs
    kinds = []    # per output of fn: ('state', index) or ('nitsot', None)
    state_args = []
    for i, o in enumerate(outs_info):
        init, taps = o, [-1]
        if isinstance(o, dict):
            if "initial" not in o or o["initial"] is None:
                if o.get("taps"):
                    fail(f"outputs_info[{i}] has taps {o['taps']} but no initial value")
                kinds.append(("nitsot", None))
                continue
            init, taps = o["initial"], list(o.get("taps", [-1]) or [-1])
        elif o is None:
            kinds.append(("nitsot", None))
            continue
        init = _tensor(init, f"outputs_info[{i}]", fail)
        if not all(isinstance(k, (int, np.integer)) and k < 0 for k in taps):
            fail(f"outputs_info[{i}]: output taps must be negative integers (steps back in time), got {taps}")
        if len(set(taps)) != len(taps):
            fail(f"outputs_info[{i}]: repeated taps {taps}")
        if isinstance(o, dict) and "taps" in o and taps != [-1]:
            # Theano's mit_sot: `initial` holds -min(taps) rows of past values
            if init.ndim < 1:
                fail(f"outputs_info[{i}]: with taps {taps} the initial value must have one row per step "
                     f"back, got {init.describe()}")
            buf = init
            row_type = TensorType(init.dtype, shape=init.type.shape[1:])
        else:
            buf = dimshuffle(init, "x", *range(init.ndim))
            row_type = init.type
            taps = [-1]
        phs = [row_type(_tap_name(init, k, "out")) for k in taps]
        kinds.append(("state", len(states)))
        states.append((buf, [int(k) for k in taps], phs, init))
        state_args += phs

    nonseq_args = [x.type(x.name) if not isinstance(x, SharedVariable) and not isinstance(x, Constant) else x
                   for x in nonseqs]
    args = seq_args + state_args + nonseq_args

    # -- the step ------------------------------------------------------------------------------------
    result = fn(*args)
    outputs, updates, cond = _outputs_updates_until(result, fail)
    outputs = [_tensor(o, f"output {k} of the step function", fail) for k, o in enumerate(outputs)]
    if not outs_info:
        kinds = [("nitsot", None)] * len(outputs)
    elif len(outputs) != len(kinds):
        fail(f"the step function returned {len(outputs)} output{'s' * (len(outputs) != 1)} but outputs_info "
             f"has {len(kinds)} entries (give None for outputs that are not fed back)")
    for k, (kind, i) in enumerate(kinds):
        if kind == "state":
            init, out = states[i][3], outputs[k]
            want = states[i][2][0].type
            if out.dtype != want.dtype or out.ndim != want.ndim:
                fail(f"output {k} of the step function is {out.type}, but its initial value in outputs_info "
                     f"{init.describe()} gives steps of type {want}; they must have the same dtype and number of "
                     f"dimensions (cast the initial value, or the step's result, e.g. T.cast(x, '{want.dtype}'))",
                     TypeError)
    for sv, expr in list(updates.items()):
        if not isinstance(sv, SharedVariable):
            fail(f"updates: {sv!r} is not a shared variable", TypeError)
        expr = as_tensor_variable(expr)
        if expr.dtype != sv.dtype or expr.ndim != sv.ndim:
            fail(f"the update of {sv.describe()} in the step is {expr.type}, but the variable is {sv.type}",
                 TypeError)
        updates[sv] = expr

    # Random streams drawn inside the step advance once per step: their default updates become
    # updates of the loop (Theano does the same).
    roots_of = list(outputs) + list(updates.values()) + ([cond] if cond is not None else [])
    while True:
        extra = [v for v in graph_inputs(roots_of) if isinstance(v, SharedVariable) and v not in updates
                 and getattr(v, "default_update", None) is not None]
        if not extra:
            break
        for v in extra:
            updates[v] = as_tensor_variable(v.default_update)
            roots_of.append(updates[v])

    # -- what the step reads from outside --------------------------------------------------------------
    # (shared variables given as non-sequences were passed to fn as themselves: not placeholders)
    own = set(seq_args + state_args) | {a for x, a in zip(nonseqs, nonseq_args) if a is not x}
    carried = list(updates)
    carry_phs = [sv.type(f"{sv}[t]") for sv in carried]
    implicit = []
    for v in graph_inputs(roots_of):
        if v in own or isinstance(v, Constant) or v in updates:
            continue
        if strict and (isinstance(v, SharedVariable) or v.owner is None):
            fail(f"strict=True: the step reads {v.describe()}, which is not in sequences or non_sequences")
        implicit.append(v)
    implicit_phs = [v.type(v.name) for v in implicit]
    # Explicit shared non-sequences are passed as themselves; give them placeholders too.
    replace = dict(zip(carried, carry_phs))
    replace.update(zip(implicit, implicit_phs))
    # Shared variables and constants given as non-sequences were passed to fn as themselves:
    # the first are among `implicit` or `carried` if the step reads them, the second stay constants.
    explicit = [(x, a) for x, a in zip(nonseqs, nonseq_args) if a is not x]
    explicit_outer, explicit_inner = [x for x, _ in explicit], [a for _, a in explicit]
    exprs = list(outputs) + list(updates.values()) + ([cond] if cond is not None else [])
    inner_outs = clone_replace(exprs, replace)
    step_outs = inner_outs[:len(outputs)]
    upd_outs = inner_outs[len(outputs):len(outputs) + len(updates)]
    cond_out = inner_outs[-1] if cond is not None else None

    # -- number of steps ---------------------------------------------------------------------------------
    if n_steps is None:
        if not seq_slices:
            fail("no sequences and no n_steps: scan cannot tell how many steps to run", ValueError)
        n = seq_slices[0].shape[0]
        for s in seq_slices[1:]:
            from ..tensor.math import minimum
            n = minimum(n, s.shape[0])
        n = cast(n, "int64")
    else:
        n = n_steps
    if go_backwards:
        # Theano reverses each sequence, then takes its first n rows: the last n rows, read backwards
        seq_slices = [s[s.shape[0] - n:] for s in seq_slices]

    state_order = [k for k, (kind, _) in enumerate(kinds) if kind == "state"]
    nit_order = [k for k, (kind, _) in enumerate(kinds) if kind == "nitsot"]
    info = ScanInfo(n_seqs=len(seq_slices), state_taps=[s[1] for s in states], n_carries=len(carried),
                    n_nitsot=len(nit_order), n_nonseqs=len(explicit_inner) + len(implicit),
                    as_while=cond is not None, seq_reverse=[bool(go_backwards)] * len(seq_slices), name=name)
    inner_inputs = seq_args + state_args + carry_phs + explicit_inner + implicit_phs
    inner_outputs = [step_outs[k] for k in state_order] + upd_outs + [step_outs[k] for k in nit_order]
    if cond_out is not None:
        inner_outputs.append(cond_out)
    inner_outputs = [_own_output(o, inner_inputs) for o in inner_outputs]
    op = Scan(inner_inputs, inner_outputs, info, trace=trace)
    op.truncate_gradient = int(truncate_gradient)
    outer_inputs = [n] + seq_slices + [s[0] for s in states] + carried + explicit_outer + implicit
    node_outs = op(*outer_inputs)
    node_outs = node_outs if isinstance(node_outs, list) else [node_outs]

    results = [None] * len(kinds)
    for i, k in enumerate(state_order):
        L = info.lag(i)
        results[k] = node_outs[i][L:]
    a = info.n_states
    new_updates = OrderedDict((sv, node_outs[a + c]) for c, sv in enumerate(carried))
    a += info.n_carries
    for m, k in enumerate(nit_order):
        results[k] = node_outs[a + m]
    if return_list:
        return results, new_updates
    if len(results) == 1:
        return results[0], new_updates
    return (results if results else None), new_updates


def _own_output(o, inner_inputs):
    """An inner output that is a constant or a shared variable becomes a graph of the step
    (so every inner output is computed, like any other)."""
    if isinstance(o, Constant):
        from ..tensor.math import identity
        return identity(o)
    return o


def _tensor(x, what, fail):
    try:
        return x if isinstance(x, Variable) else as_tensor_variable(x)
    except (TypeError, ValueError) as e:
        fail(f"{what} must be a tensor, got {type(x).__name__}: {e}", TypeError)


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _tap_name(x, k, kind="seq"):
    base = x.name or kind
    return f"{base}[t{k:+d}]" if k else f"{base}[t]"


def _outputs_updates_until(result, fail):
    """Theano's accepted step results: outputs; (outputs, updates); updates; with an `until`
    anywhere among the parts of a tuple."""
    cond = None
    if isinstance(result, until):
        return [], OrderedDict(), result.condition
    if isinstance(result, tuple) or (isinstance(result, list) and any(isinstance(r, (until, dict)) for r in result)):
        parts = list(result)
        rest = []
        for p in parts:
            if isinstance(p, until):
                if cond is not None:
                    fail("the step function returned two `until` conditions")
                cond = p.condition
            else:
                rest.append(p)
        updates = OrderedDict()
        outputs = []
        if len(rest) == 2 and _is_updates(rest[1]) and not _is_updates(rest[0]):
            outputs, updates = rest[0], _updates(rest[1], fail)
        elif len(rest) == 2 and _is_updates(rest[0]) and not _is_updates(rest[1]):
            outputs, updates = rest[1], _updates(rest[0], fail)
        elif len(rest) == 1 and _is_updates(rest[0]) and isinstance(rest[0], dict):
            updates = _updates(rest[0], fail)
        elif len(rest) == 1:
            outputs = rest[0]
        else:
            outputs = rest
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return outputs, updates, cond
    if isinstance(result, dict):
        return [], _updates(result, fail), None
    if isinstance(result, list):
        return list(result), OrderedDict(), None
    return [result], OrderedDict(), None


def _is_updates(x):
    if isinstance(x, dict):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], SharedVariable) for p in x)


def _updates(x, fail):
    pairs = list(x.items()) if isinstance(x, dict) else list(x)
    res = OrderedDict()
    for sv, e in pairs:
        if sv in res:
            fail(f"the step updates {sv} twice")
        res[sv] = e
    return res
