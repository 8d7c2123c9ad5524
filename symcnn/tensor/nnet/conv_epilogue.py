"""Elementwise programs fused into the convolution kernels (ConvPoolAct, ConvPoolActGrad).

A fused convolution applies an activation `out = act(z)` to its pre-activation z (the pooled,
biased convolution) and, in its gradient, computes `g_pre = dact(z, out, g_1, ..., g_m)` from the
gradients flowing in. Both are scalar `Composite` programs (symcnn/tensor/composite.py) taken
from the user's graph by the rewrite (symcnn/rewrite/convpool.py), so any chain of elementwise
ops fuses, not a fixed list of activations.

The graph's scalar constants (the 0 of `maximum(z, 0)`, the 0.5 of `relu`) have no input slot in
a Composite: they become `ScalarConstant` steps, programs of no inputs.
"""
import numpy as np

from ...graph.basic import Constant
from ..composite import Composite
from ..elemwise import DimShuffle, Elemwise
from ... import scalar as ts

__all__ = ["ScalarConstant", "program_from_graph", "program_of", "expand_program", "reads_input",
           "is_identity", "passed_input", "scalar_constant_value", "out_from_z"]


class ScalarConstant(ts.ScalarOp):
    """A constant step of a Composite program: no inputs, one value of one dtype."""

    nin = 0

    def __init__(self, value, dtype):
        self.dtype = str(dtype)
        self.value = np.asarray(value, dtype=self.dtype).item()
        self.name = f"const{{{self.value!r}}}"

    def impl(self):
        return np.asarray(self.value, dtype=self.dtype)

    def out_dtype(self, *dtypes):
        return self.dtype

    def compute_dtype(self, *dtypes):
        return None

    def grad(self, inputs, output, g):
        return []


def scalar_constant_value(v):
    """The value of a size-1 constant (of any number of broadcastable dimensions), else None."""
    while v.owner is not None and isinstance(v.owner.op, DimShuffle):
        v = v.owner.inputs[0]
    if isinstance(v, Constant) and np.size(v.data) == 1:
        return np.ravel(v.data)[0]
    return None


def program_from_graph(inputs, output):
    """The Composite computing `output` from `inputs` (variables) through Elemwise nodes whose
    other leaves are size-1 constants; None if the graph between them has anything else."""
    index = {id(v): k for k, v in enumerate(inputs)}
    steps = []

    def visit(v):
        if id(v) in index:
            return index[id(v)]
        c = scalar_constant_value(v)
        if c is not None:
            steps.append((ScalarConstant(c, v.dtype), (), (), str(v.dtype)))
        else:
            node = v.owner
            if node is not None and isinstance(node.op, DimShuffle) and all(node.inputs[0].broadcastable):
                index[id(v)] = visit(node.inputs[0])   # a scalar broadcast: the same value everywhere
                return index[id(v)]
            if node is None or not isinstance(node.op, Elemwise):
                raise _NotElementwise(v)
            args = tuple(visit(i) for i in node.inputs)
            sop = node.op.scalar_op
            if isinstance(sop, Composite):   # an already-fused program: inline its steps
                base = len(inputs) + len(steps)
                ref = lambda a, args=args, base=base, nin=sop.nin: args[a] if a < nin else base + a - nin  # noqa: E731
                for s, a, d, o in sop.steps:
                    steps.append((s, tuple(ref(x) for x in a), d, o))
                index[id(v)] = len(inputs) + len(steps) - 1
                return index[id(v)]
            steps.append((sop, args, tuple(str(i.dtype) for i in node.inputs), str(v.dtype)))
        index[id(v)] = len(inputs) + len(steps) - 1
        return index[id(v)]

    try:
        last = visit(output)
    except _NotElementwise:
        return None
    if last < len(inputs):   # the output is an input: the identity
        steps.append((ts.identity, (last,), (str(output.dtype),), str(output.dtype)))
    elif last != len(inputs) + len(steps) - 1:   # the output was computed earlier (shared node)
        steps.append((ts.identity, (last,), (str(output.dtype),), str(output.dtype)))
    return Composite(len(inputs), steps)


class _NotElementwise(Exception):
    pass


def program_of(fn, dtype, nin=1):
    """The Composite of `fn` applied to `nin` scalar-shaped tensors of `dtype` (e.g.
    program_of(T.tanh, 'float32')): how a program is written by hand, for tests and direct use."""
    from ..type import TensorType
    xs = [TensorType(dtype, shape=(None,) * 4)() for _ in range(nin)]
    out = fn(*xs)
    prog = program_from_graph(xs, out)
    if prog is None:
        raise ValueError(f"{fn} is not an elementwise function of its inputs")
    return prog


def expand_program(prog, inputs):
    """The program as a graph of Elemwise ops on tensors `inputs` (ScalarConstant steps become
    constants), as Composite.expand does for programs without constants."""
    from .. import basic as B
    from ..var import constant
    values = list(inputs)
    for sop, args, dts, out in prog.steps:
        if isinstance(sop, ScalarConstant):
            values.append(constant(np.asarray(sop.value, dtype=sop.dtype)))
            continue
        values.append(B.cast(Elemwise(sop)(*[values[a] for a in args]), out))
    return values[-1]


def reads_input(prog, k):
    """Whether any step of the program reads its input k."""
    return any(k in args for _, args, _, _ in prog.steps)


def is_identity(prog):
    """A program that returns its only input unchanged (no activation)."""
    if prog is None:
        return True
    return (len(prog.steps) == 1 and isinstance(prog.steps[0][0], ts.Identity) and prog.steps[0][1] == (0,)
            and prog.steps[0][2][0] == prog.steps[0][3])


def passed_input(prog, first=0):
    """k where the program returns its input k >= first unchanged, else None (a layer's gradient
    program dact(z, out, g) with first = 2: its activation is the identity, as where a later
    layer applies it as that layer's input activation)."""
    if prog is None or len(prog.steps) != 1:
        return None
    op, args, in_dtypes, out_dtype = prog.steps[0]
    if isinstance(op, ts.Identity) and len(args) == 1 and args[0] >= first and in_dtypes[0] == out_dtype:
        return args[0]
    return None


def out_from_z(dact, act):
    """dact(z, out, g..) with `out` computed as act(z) inside the program (act: a Composite of one
    input), so that it reads z, not out: the same values wherever out is act(z). Programs that do
    not read out are returned unchanged."""
    if not reads_input(dact, 1):
        return dact
    inlined = dact.inline(1, act)   # act's input takes slot 1: point it at z
    return Composite(dact.nin, [(s, tuple(0 if a == 1 else a for a in args), d, o)
                                for s, args, d, o in inlined.steps])
