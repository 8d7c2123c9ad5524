"""Reverse-mode differentiation over graphs, and a finite-difference checker.

grad() walks the nodes between `wrt` and `cost` in reverse topological order;
each op's `grad` builds the graph of its inputs' gradients, and contributions
from several clients of a variable are summed.
"""
import warnings

import numpy as np

from .graph.basic import Variable, io_toposort
from .graph.trace import with_trace
from .tensor.type import is_float
from .tensor.var import as_tensor_variable


class DisconnectedInputError(ValueError):
    pass


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", known_grads=None,
         return_disconnected="zero"):
    """d cost / d wrt as symbolic graphs (a list if wrt is a list, else a single variable)."""
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    for w in wrt_list:
        if not isinstance(w, Variable):
            raise TypeError(f"grad: wrt must be symbolic variables, got {type(w).__name__}")
        if not is_float(w.dtype):
            raise TypeError(f"grad: cannot differentiate with respect to the integer variable {w.describe()}")
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError("disconnected_inputs must be 'raise', 'warn' or 'ignore'")

    seeds = {}
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(f"grad: cost must be a scalar, got {cost.describe()}; sum or mean it first")
        if not is_float(cost.dtype):
            raise TypeError(f"grad: cost must be a float scalar, got {cost.describe()}")
        from .tensor.basic import ones_like
        seeds[cost] = ones_like(cost)
    for v, g in (known_grads or {}).items():
        seeds[v] = as_tensor_variable(g)
    if not seeds:
        raise ValueError("grad: give a cost or known_grads")

    blockers = set(consider_constant or ())
    outputs = list(seeds)
    # Only nodes on a path from some wrt to the cost matter.
    depends = _depends_on(outputs, set(wrt_list), blockers)

    contributions = {v: [g] for v, g in seeds.items()}
    for node in reversed(io_toposort(outputs, blockers=blockers)):
        if not any(o in contributions for o in node.outputs):
            continue
        if not any(i in depends for i in node.inputs):
            continue
        out_grads = []
        for o in node.outputs:
            gs = contributions.get(o)
            out_grads.append(_total(gs) if gs else None)
        if all(g is None for g in out_grads):
            continue
        from .tensor.basic import zeros_like
        out_grads = [zeros_like(o) if g is None else g for o, g in zip(node.outputs, out_grads)]
        if hasattr(node.op, "L_op"):  # ops whose gradient reuses their forward outputs (Theano's L_op)
            in_grads = node.op.L_op(node.inputs, node.outputs, out_grads)
        else:
            in_grads = node.op.grad(node.inputs, out_grads)
        if len(in_grads) != len(node.inputs):
            raise ValueError(f"{node.op}.grad returned {len(in_grads)} gradients for {len(node.inputs)} inputs")
        for inp, g in zip(node.inputs, in_grads):
            if g is None or inp not in depends or inp in blockers:
                continue
            g = as_tensor_variable(g)
            if g.ndim != inp.ndim:
                raise ValueError(with_trace(f"{node.op}.grad gave a {g.ndim}-d gradient for the {inp.ndim}-d "
                                            f"input {inp.describe()}", node.trace))
            contributions.setdefault(inp, []).append(g)

    results = []
    for w in wrt_list:
        gs = contributions.get(w)
        if gs:
            g = _total(gs)
            if g.dtype != w.dtype:
                from .tensor.basic import cast
                g = cast(g, w.dtype)
            results.append(g)
            continue
        msg = (f"grad: the cost does not depend on {w.describe()} (it is a disconnected input). "
               f"Pass disconnected_inputs='ignore' or 'warn' to get zeros.")
        if disconnected_inputs == "raise":
            raise DisconnectedInputError(with_trace(msg, w.trace))
        if disconnected_inputs == "warn":
            warnings.warn(msg, stacklevel=2)
        if return_disconnected == "None":
            results.append(None)
        else:
            from .tensor.basic import zeros_like
            results.append(zeros_like(w))
    return results[0] if single else results


def grad_of_expansion(build, inputs, output_grads):
    """Gradients w.r.t. `inputs` of the graph `build(inputs)` stands for, given the gradients
    of its outputs: how a fused op differentiates the unfused graph it replaces.

    The graph is built on stand-ins for the inputs, so an input computed from another one
    (b and b[:3]) only gets its own paths (the outer grad() adds the rest); an input listed
    twice gets its whole gradient once."""
    from .graph.basic import clone_replace
    unique = list(dict.fromkeys(inputs))
    stand_in = {i: i.type() for i in unique}
    outs = build([stand_in[i] for i in inputs])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    known = {o: g for o, g in zip(outs, output_grads) if g is not None}
    floats = [i for i in unique if is_float(i.dtype)]
    if not floats or not known:
        return [None] * len(inputs)
    gs = grad(None, [stand_in[i] for i in floats], known_grads=known, disconnected_inputs="ignore",
              return_disconnected="None")
    wanted = [g for g in gs if g is not None]
    back = dict(zip(map(id, wanted), clone_replace(wanted, {stand_in[i]: i for i in unique})))
    by_input = {i: back[id(g)] for i, g in zip(floats, gs) if g is not None}
    result, seen = [], set()
    for i in inputs:
        result.append(by_input.get(i) if i not in seen else None)
        seen.add(i)
    return result


def _total(gs):
    total = gs[0]
    for g in gs[1:]:
        total = total + g
    return total


def _depends_on(outputs, wrt, blockers):
    """Variables between wrt and outputs (those whose gradient must be computed)."""
    memo = {}
    for v in wrt:
        memo[v] = True
    for node in io_toposort(outputs, blockers=blockers):
        reach = any(memo.get(i, False) for i in node.inputs)
        for o in node.outputs:
            memo[o] = memo.get(o, False) or reach
    return {v for v, r in memo.items() if r}


class GradientError(AssertionError):
    def __init__(self, arg, abs_err, rel_err, abs_tol, rel_tol, analytic, numeric):
        self.arg, self.abs_err, self.rel_err = arg, abs_err, rel_err
        super().__init__(f"gradient of input {arg} disagrees with finite differences: max abs error {abs_err:.3g} "
                         f"(tol {abs_tol}), max rel error {rel_err:.3g} (tol {rel_tol})\n"
                         f"analytic: {np.ravel(analytic)[:8]}\nnumeric:  {np.ravel(numeric)[:8]}")


def verify_grad(fun, pt, n_tests=2, rng=None, eps=None, out_type=None, abs_tol=None, rel_tol=None,
                mode=None, cast_to_output_type=False, no_debug_ref=True):
    """Check `fun`'s symbolic gradient against central finite differences, as Theano's
    verify_grad does: a random projection of the output gives a scalar cost.

    fun: a Python function of symbolic variables returning one symbolic output.
    pt: list of numpy arrays, the point at which to check.
    """
    from .compile.function import function
    from .tensor.type import TensorType
    if rng is None:
        rng = np.random.default_rng(0)
    elif isinstance(rng, np.random.RandomState):
        rng = np.random.default_rng(rng.randint(2 ** 31))
    pt = [np.array(p) for p in pt]
    for p in pt:
        if not is_float(str(p.dtype)):
            raise TypeError(f"verify_grad needs float inputs, got {p.dtype}")
    dtype = str(np.result_type(*[p.dtype for p in pt]))
    if eps is None:
        eps = 1e-4 if dtype == "float64" else 1e-2
    if abs_tol is None:
        abs_tol = 1e-4 if dtype == "float64" else 1e-2
    if rel_tol is None:
        rel_tol = 1e-4 if dtype == "float64" else 1e-2

    tensors = [TensorType(str(p.dtype), shape=(None,) * p.ndim)(f"input_{i}") for i, p in enumerate(pt)]
    out = as_tensor_variable(fun(*tensors))
    if not is_float(out.dtype):
        raise TypeError(f"verify_grad: the function's output must be float, got {out.describe()}")
    f_out = function(tensors, out, mode=mode, on_unused_input="ignore")
    out_shape = np.shape(f_out(*pt))

    for _ in range(n_tests):
        proj = rng.random(out_shape) + 0.5
        proj_var = as_tensor_variable(np.asarray(proj, dtype=out.dtype))
        from .tensor import math as T
        cost = T.sum(out * proj_var)
        grads = grad(cost, tensors, disconnected_inputs="ignore")
        f_cost = function(tensors, cost, mode=mode, on_unused_input="ignore")
        f_grad = function(tensors, grads, mode=mode, on_unused_input="ignore")
        analytic = f_grad(*pt)
        for i, p in enumerate(pt):
            numeric = np.zeros(p.shape, dtype="float64")
            flat = p.reshape(-1)
            for j in range(flat.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = float(f_cost(*pt))
                flat[j] = orig - eps
                minus = float(f_cost(*pt))
                flat[j] = orig
                numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
            a = np.asarray(analytic[i], dtype="float64")
            abs_err = np.abs(a - numeric)
            rel_err = abs_err / np.maximum(np.abs(a) + np.abs(numeric), 1e-8)
            bad = (abs_err > abs_tol) & (rel_err > rel_tol)
            if bad.any():
                raise GradientError(i, abs_err.max(), rel_err[bad].max(), abs_tol, rel_tol, a, numeric)
