"""The Scan op: a loop whose body is an inner graph (see symcnn/scan_module/__init__.py for the design).

Outer inputs, in order:
  n_steps                 int64 scalar, the number of iterations (the most, for a while loop)
  sequences               one per sequence tap; step t reads row t (row n_steps-1-t when reversed)
  state buffers           one per recurrent output with taps (Theano's sit_sot / mit_sot): its
                          first L = -min(taps) rows are the initial values
  carries                 one per state kept only at its last value (shared-variable updates,
                          gradient accumulators): the initial value
  non-sequences           read unchanged by every step
Outer outputs, in order:
  state buffers           L + n rows: the initial rows, then one row per step
  carries                 the value after the last step
  per-step outputs        n rows (Theano's nit_sot), row n-1-t when written reversed
Inner inputs: one per sequence, one per (state, tap) in the order of the taps, one per carry,
one per non-sequence. Inner outputs: one per state, carry, per-step output, then the `until`
condition of a while loop.
"""
import numpy as np

from ..graph.basic import Apply, Variable
from ..graph.op import Op
from ..graph.trace import with_trace
from ..tensor.type import TensorType
from ..tensor.var import as_tensor_variable


class ScanInfo:
    """The static layout of a Scan (what the inner inputs and outputs are)."""

    def __init__(self, n_seqs, state_taps, n_carries, n_nitsot, n_nonseqs, as_while=False,
                 seq_reverse=None, nit_reverse=None, name=None):
        self.n_seqs = n_seqs
        self.state_taps = tuple(tuple(int(k) for k in taps) for taps in state_taps)
        for taps in self.state_taps:
            if not taps or any(k >= 0 for k in taps) or len(set(taps)) != len(taps):
                raise ValueError(f"state taps must be distinct negative integers, got {list(taps)}")
        self.n_carries = n_carries
        self.n_nitsot = n_nitsot
        self.n_nonseqs = n_nonseqs
        self.as_while = bool(as_while)
        self.seq_reverse = tuple(bool(r) for r in (seq_reverse or (False,) * n_seqs))
        self.nit_reverse = tuple(bool(r) for r in (nit_reverse or (False,) * n_nitsot))
        self.name = name

    @property
    def n_states(self):
        return len(self.state_taps)

    def lag(self, i):
        """Rows of initial values state i needs (its largest look-back)."""
        return -min(self.state_taps[i])

    @property
    def n_inner_inputs(self):
        return self.n_seqs + sum(len(t) for t in self.state_taps) + self.n_carries + self.n_nonseqs

    @property
    def n_inner_outputs(self):
        return self.n_states + self.n_carries + self.n_nitsot + int(self.as_while)

    def key(self):
        return (self.n_seqs, self.state_taps, self.n_carries, self.n_nitsot, self.n_nonseqs, self.as_while,
                self.seq_reverse, self.nit_reverse)

    # positions of the groups among the outer inputs (after n_steps) ------------------------------
    def outer_seqs(self, ins):
        return ins[1:1 + self.n_seqs]

    def outer_states(self, ins):
        a = 1 + self.n_seqs
        return ins[a:a + self.n_states]

    def outer_carries(self, ins):
        a = 1 + self.n_seqs + self.n_states
        return ins[a:a + self.n_carries]

    def outer_nonseqs(self, ins):
        a = 1 + self.n_seqs + self.n_states + self.n_carries
        return ins[a:a + self.n_nonseqs]

    # positions among the inner inputs --------------------------------------------------------------
    def inner_seqs(self, ins):
        return ins[:self.n_seqs]

    def inner_state_taps(self, ins):
        """Per state, the list of its tap inputs."""
        res, a = [], self.n_seqs
        for taps in self.state_taps:
            res.append(ins[a:a + len(taps)])
            a += len(taps)
        return res

    def inner_carries(self, ins):
        a = self.n_seqs + sum(len(t) for t in self.state_taps)
        return ins[a:a + self.n_carries]

    def inner_nonseqs(self, ins):
        a = self.n_seqs + sum(len(t) for t in self.state_taps) + self.n_carries
        return ins[a:a + self.n_nonseqs]


class Scan(Op):
    """A loop over an inner graph. Two Scan ops are equal only when they are the same object:
    their inner graphs are not compared, so the merge rewrite merges only literally shared nodes."""

    def __init__(self, inner_inputs, inner_outputs, info, trace=None):
        self.inner_inputs = list(inner_inputs)
        self.inner_outputs = list(inner_outputs)
        self.info = info
        self.trace = trace
        if len(self.inner_inputs) != info.n_inner_inputs or len(self.inner_outputs) != info.n_inner_outputs:
            raise ValueError("Scan: inner graph does not match its layout")
        self._runner = None
        self.truncate_gradient = -1

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __str__(self):
        return f"Scan{{{self.info.name}}}" if self.info.name else "Scan"

    __repr__ = __str__

    @property
    def fgraph(self):
        """The inner graph as a FunctionGraph (a private copy, built once)."""
        fg = getattr(self, "_fgraph", None)
        if fg is None:
            from ..graph.fg import FunctionGraph
            fg = self._fgraph = FunctionGraph(self.inner_inputs, self.inner_outputs)
        return fg

    def inner_graph(self):
        """(inner inputs, inner outputs, properties): what the compile cache's key describes."""
        return self.inner_inputs, self.inner_outputs, (self.info.key(), self.truncate_gradient)

    def _fail(self, exc, msg):
        raise exc(with_trace(f"scan{' ' + repr(self.info.name) if self.info.name else ''}: {msg}", self.trace))

    # -- types ------------------------------------------------------------------------------------------
    def make_node(self, n_steps, *args):
        info = self.info
        n_steps = as_tensor_variable(n_steps)
        if n_steps.ndim != 0 or not n_steps.dtype.startswith(("int", "uint")):
            self._fail(TypeError, f"n_steps must be an integer scalar, got {n_steps.describe()}")
        if n_steps.dtype != "int64":
            from ..tensor.basic import cast
            n_steps = cast(n_steps, "int64")
        args = [as_tensor_variable(a) for a in args]
        inputs = [n_steps] + args
        if len(inputs) != 1 + info.n_seqs + info.n_states + info.n_carries + info.n_nonseqs:
            self._fail(ValueError, f"expected {info.n_seqs + info.n_states + info.n_carries + info.n_nonseqs} "
                                   f"inputs after n_steps, got {len(args)}")
        ins = self.inner_inputs
        for outer, inner in zip(info.outer_seqs(inputs), info.inner_seqs(ins)):
            self._check_row(outer, inner, "sequence")
        for outer, taps in zip(info.outer_states(inputs), info.inner_state_taps(ins)):
            for inner in taps:
                self._check_row(outer, inner, "initial state")
        for outer, inner in zip(info.outer_carries(inputs) + info.outer_nonseqs(inputs),
                                info.inner_carries(ins) + info.inner_nonseqs(ins)):
            if outer.dtype != inner.dtype or outer.ndim != inner.ndim:
                self._fail(TypeError, f"{outer.describe()} does not match the step's input {inner.type}")
        outs = []
        inner_outs = self.inner_outputs
        n_static = _static_int(n_steps) if not info.as_while else None
        for i, (outer, inner_out) in enumerate(zip(info.outer_states(inputs), inner_outs)):
            L = info.lag(i)
            n = None if n_static is None else L + n_static
            outs.append(TensorType(outer.dtype, shape=(n,) + _merge_shapes(outer.type.shape[1:],
                                                                           inner_out.type.shape))())
        for outer in info.outer_carries(inputs):
            outs.append(outer.type())
        a = info.n_states + info.n_carries
        for inner_out in inner_outs[a:a + info.n_nitsot]:
            outs.append(TensorType(inner_out.dtype, shape=(n_static,) + inner_out.type.shape)())
        return Apply(self, inputs, outs)

    def _check_row(self, outer, inner, what):
        if outer.ndim != inner.ndim + 1 or outer.dtype != inner.dtype:
            self._fail(TypeError, f"the {what} {outer.describe()} must be a {inner.ndim + 1}-d {inner.dtype} "
                                  f"array (one {inner.type} row per step)")

    # -- reference --------------------------------------------------------------------------------------
    def runner(self):
        if self._runner is None:
            from ..compile.linker import ReferenceRunner
            self._runner = ReferenceRunner(self.fgraph)
        return self._runner

    def perform(self, node, inputs, output_storage):
        info = self.info
        n = int(inputs[0])
        if n < 1:
            self._fail(ValueError, f"n_steps must be at least 1, got {n} (a loop of 0 steps has no output rows "
                                   f"to give their shape)")
        seqs = info.outer_seqs(inputs)
        for s, var, rev in zip(seqs, info.outer_seqs(node.inputs), info.seq_reverse):
            if s.shape[0] < n:
                self._fail(ValueError, f"sequence {var} has {s.shape[0]} rows, fewer than the {n} steps")
        states = []
        for i, init in enumerate(info.outer_states(inputs)):
            L = info.lag(i)
            if init.shape[0] < L:
                self._fail(ValueError, f"the initial value of output {i} needs {L} rows for taps "
                                       f"{list(info.state_taps[i])}, got {init.shape[0]}")
            buf = np.empty((L + n,) + init.shape[1:], dtype=init.dtype)
            buf[:L] = init[:L]
            states.append(buf)
        carries = [np.array(c) for c in info.outer_carries(inputs)]
        nonseqs = list(info.outer_nonseqs(inputs))
        nits = [None] * info.n_nitsot
        run = self.runner()
        steps = n
        for t in range(n):
            vals = [s[n - 1 - t] if rev else s[t] for s, rev in zip(seqs, info.seq_reverse)]
            for i, taps in enumerate(info.state_taps):
                L = info.lag(i)
                vals += [states[i][L + t + k] for k in taps]
            vals += carries + nonseqs
            outs = run(vals)
            for i in range(info.n_states):
                L = info.lag(i)
                self._store(states[i], L + t, outs[i], f"output {i}")
            a = info.n_states
            carries = [np.array(o, dtype=c.dtype) for o, c in zip(outs[a:a + info.n_carries], carries)]
            a += info.n_carries
            for m in range(info.n_nitsot):
                o = np.asarray(outs[a + m])
                if nits[m] is None:
                    nits[m] = np.empty((n,) + o.shape, dtype=node.outputs[a + m].dtype)
                row = n - 1 - t if info.nit_reverse[m] else t
                self._store(nits[m], row, o, f"output {info.n_states + m}")
            if info.as_while and bool(np.asarray(outs[-1])):
                steps = t + 1
                break
        k = 0
        for i, buf in enumerate(states):
            output_storage[k][0] = buf[:info.lag(i) + steps]
            k += 1
        for c in carries:
            output_storage[k][0] = c
            k += 1
        for m, y in enumerate(nits):
            output_storage[k][0] = (y[n - steps:] if info.nit_reverse[m] else y[:steps])
            k += 1

    def _store(self, buf, row, value, what):
        value = np.asarray(value)
        if value.shape != buf.shape[1:]:
            self._fail(ValueError, f"step {row} gave {what} of shape {value.shape}, but the previous steps "
                                   f"(or its initial value) have shape {buf.shape[1:]}; every step must give "
                                   f"the same shape")
        buf[row] = value

    def infer_shape(self, node, input_shapes):
        info = self.info
        if info.as_while:
            raise NotImplementedError("the length of a while loop's outputs is known only after running it")
        n = node.inputs[0]
        res = []
        for i, shp in enumerate(info.outer_states(input_shapes)):
            res.append((n + info.lag(i),) + tuple(shp[1:]))
        res += [tuple(s) for s in info.outer_carries(input_shapes)]
        a = info.n_states + info.n_carries
        for out in node.outputs[a:]:
            res.append((n,) + tuple(out.shape[d] for d in range(1, out.ndim)))
        return res

    def connection_pattern(self, node):
        return [[True] * len(node.outputs) for _ in node.inputs]

    def L_op(self, inputs, outputs, output_grads):
        from .scan_grad import scan_grad
        return scan_grad(self, inputs, outputs, output_grads)

    def grad(self, inputs, output_grads):
        return self.L_op(inputs, self.make_node(*inputs).outputs, output_grads)


def _static_int(v):
    from ..graph.basic import Constant
    if isinstance(v, Constant):
        return int(np.asarray(v.data))
    return None


def _merge_shapes(a, b):
    return tuple(x if x is not None else y for x, y in zip(a, b))


def is_scan(v):
    return isinstance(v, Variable) and v.owner is not None and isinstance(v.owner.op, Scan)
