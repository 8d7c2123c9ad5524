"""Canonicalization: merge equal subexpressions, fold constants, drop no-ops."""
import numpy as np

from ..graph.basic import Constant
from ..gradient_ops import GradientViewOp
from ..tensor.basic import Reshape, Flatten, Shape, Shape_i, cast, second
from ..tensor.elemwise import DimShuffle, Elemwise
from ..tensor.math import Sum, sqr
from ..tensor.subtensor import Subtensor
from ..tensor.var import TensorConstant
from .core import graph_rewrite, node_rewrite

from .. import scalar as ts

FOLD_LIMIT = 1 << 20  # elements: larger constants would bloat the compiled module


@graph_rewrite("canonicalize")
def merge(fgraph):
    """Equal constants become one; nodes applying equal ops to the same inputs become one."""
    changes = 0
    consts = {}
    for v in list(fgraph.clients):
        if isinstance(v, Constant) and fgraph.clients.get(v):
            key = v.signature()
            if key in consts and consts[key] is not v:
                fgraph.replace(v, consts[key], reason="merge")
                changes += 1
            else:
                consts.setdefault(key, v)
    seen = {}
    for node in list(fgraph.toposort()):
        if node not in fgraph.graph:
            continue
        key = (node.op, tuple(id(i) for i in node.inputs))
        other = seen.get(key)
        if other is None or other not in fgraph.graph:
            seen[key] = node
            continue
        fgraph.replace_all(list(zip(node.outputs, other.outputs)), reason="merge")
        changes += 1
    return changes


@node_rewrite("canonicalize", [object])
def constant_folding(fgraph, node):
    if not node.inputs or not all(isinstance(i, Constant) for i in node.inputs):
        return None
    if getattr(node.op, "collective", False):  # runs when every rank runs the function
        return None
    cells = [[None] for _ in node.outputs]
    node.op.perform(node, [i.data for i in node.inputs], cells)
    outs = []
    for var, cell in zip(node.outputs, cells):
        value = np.asarray(cell[0], dtype=var.dtype)
        if value.size > FOLD_LIMIT:
            return None
        outs.append(TensorConstant(var.type.clone(shape=value.shape), value))
    return outs


def const_value(v):
    """The single value of a constant that is the same everywhere (else None)."""
    if isinstance(v, Constant):
        flat = np.ravel(v.data)
        if flat.size and (flat == flat[0]).all():
            return flat[0]
    return None


def _is_zeros(v):
    """A constant zero, or second(anything, 0) (the gradient's zeros_like)."""
    if const_value(v) == 0:
        return True
    node = v.owner
    return node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ts.Second) \
        and const_value(node.inputs[1]) == 0


def _same_type(var, out):
    return var.type == out.type


@node_rewrite("canonicalize", [Elemwise])
def identity_arithmetic(fgraph, node):
    """x * 1, 1 * x, x + 0, 0 + x, x - 0, x / 1 -> x (when that changes no shape or dtype)."""
    sop, out = node.op.scalar_op, node.outputs[0]
    pairs = []
    if isinstance(sop, ts.Mul):
        pairs = [(0, 1), (1, 0)]
        neutral = lambda v: const_value(v) == 1  # noqa: E731
    elif isinstance(sop, ts.Add):
        pairs = [(0, 1), (1, 0)]
        neutral = _is_zeros
    elif isinstance(sop, ts.Sub):
        pairs = [(0, 1)]
        neutral = _is_zeros
    elif isinstance(sop, ts.TrueDiv):
        pairs = [(0, 1)]
        neutral = lambda v: const_value(v) == 1  # noqa: E731
    for keep, drop in pairs:
        x = node.inputs[keep]
        if neutral(node.inputs[drop]) and _same_type(x, out):
            return [x]
    return None


@node_rewrite("canonicalize", [Elemwise])
def pow_specialize(fgraph, node):
    """x ** 2 -> sqr(x), x ** 1 -> x (Theano's local_pow_specialize): a multiply or nothing, not a
    libm call, and cheap enough to fuse into several readers (a variance's (x - mean) ** 2, and
    its gradient's 2 * (x - mean) ** 1)."""
    if not isinstance(node.op.scalar_op, ts.Pow):
        return None
    exponent = const_value(node.inputs[1])
    out = sqr(node.inputs[0]) if exponent == 2 else node.inputs[0] if exponent == 1 else None
    if out is not None and _same_type(out, node.outputs[0]):
        return [out]
    return None


@node_rewrite("canonicalize", [Elemwise])
def double_negation(fgraph, node):
    """--x -> x."""
    if isinstance(node.op.scalar_op, ts.Neg):
        inner = node.inputs[0].owner
        if inner is not None and isinstance(inner.op, Elemwise) and isinstance(inner.op.scalar_op, ts.Neg):
            return [inner.inputs[0]]
    return None


_LOSSLESS = {"bool": 0, "int8": 1, "int16": 2, "int32": 3, "int64": 4, "float32": 3.5, "float64": 5}


@node_rewrite("canonicalize", [Elemwise])
def cast_of_cast(fgraph, node):
    """cast(cast(x, a), b) -> cast(x, b) when the inner cast loses nothing; cast(x, x.dtype) -> x."""
    if not isinstance(node.op.scalar_op, ts.Cast):
        return None
    x = node.inputs[0]
    if x.dtype == node.outputs[0].dtype:
        return [x]
    inner = x.owner
    if inner is None or not isinstance(inner.op, Elemwise) or not isinstance(inner.op.scalar_op, ts.Cast):
        return None
    src = inner.inputs[0]
    mid = x.dtype
    if src.dtype in _LOSSLESS and mid in _LOSSLESS and np.can_cast(src.dtype, mid, "safe"):
        return [cast(src, node.outputs[0].dtype)]
    return None


@node_rewrite("canonicalize", [DimShuffle])
def useless_dimshuffle(fgraph, node):
    """DimShuffle that keeps every dimension in order -> its input; two DimShuffles -> one."""
    op, x = node.op, node.inputs[0]
    if op.new_order == tuple(range(op.input_ndim)):
        return [x]
    inner = x.owner
    if inner is not None and isinstance(inner.op, DimShuffle):
        composed = tuple("x" if o == "x" else inner.op.new_order[o] for o in op.new_order)
        # Dimensions the inner shuffle inserted and the outer one drops vanish in the composition.
        src = inner.inputs[0]
        return [DimShuffle(src.ndim, composed)(src)]
    return None


@node_rewrite("canonicalize", [Reshape, Flatten])
def useless_reshape(fgraph, node):
    """reshape(x) to x's own (fully static) shape -> x; reshape(reshape(x)) -> one reshape."""
    x, out = node.inputs[0], node.outputs[0]
    if out.type == x.type and None not in x.type.shape:
        return [x]
    inner = x.owner
    if inner is not None and isinstance(inner.op, (Reshape, Flatten)) and isinstance(node.op, Reshape):
        return [node.op(inner.inputs[0], node.inputs[1])]
    return None


@node_rewrite("canonicalize", [Sum])
def useless_sum(fgraph, node):
    """A sum over dimensions of length 1 only (the gradient's sums over broadcast bias
    dimensions) -> the input without those dimensions."""
    x, out = node.inputs[0], node.outputs[0]
    if not all(x.type.shape[a] == 1 for a in node.op.axis) or x.dtype != out.dtype:
        return None
    kept = [d for d in range(x.ndim) if d not in node.op.axis]
    return [DimShuffle(x.ndim, kept)(x)]


@node_rewrite("canonicalize", [Shape, Shape_i])
def static_shape(fgraph, node):
    """x.shape or x.shape[i] where x's type fixes those sizes -> a constant: a kernel reading the
    sizes (a convolution's input gradient reads the image size from a shape vector) then has them
    when it is compiled, not at run time."""
    x, out = node.inputs[0], node.outputs[0]
    sizes = [x.type.shape[node.op.i]] if isinstance(node.op, Shape_i) else list(x.type.shape)
    if None in sizes:
        return None
    return [TensorConstant(out.type, np.asarray(sizes[0] if out.ndim == 0 else sizes, dtype="int64"))]


@node_rewrite("canonicalize", [Shape_i])
def shape_from_inputs(fgraph, node):
    """Shape_i{i}(y) -> Shape_i{j}(x) where y's op infers that size as input x's size j: T.mean of an
    elementwise result divides by its sizes, and a reader of its shape alone kept it from fusing
    into the sum; a product's sizes come from its operands, so the product stays read only by its
    epilogue (Theano's ShapeFeature reads sizes from inputs the same way). Only where something
    else reads y's values, so that y's op still runs and checks its inputs' sizes."""
    y = node.inputs[0]
    producer = y.owner
    if producer is None or not hasattr(producer.op, "infer_shape") \
            or not all(hasattr(x, "ndim") and hasattr(x.type, "shape") for x in producer.inputs):
        return None
    if y not in fgraph.outputs and not any(c != "output" and not isinstance(c.op, (Shape, Shape_i))
                                           for c, _ in fgraph.clients.get(y, ())):
        return None
    sizes = [tuple(Shape_i(j)(x) for j in range(x.ndim)) for x in producer.inputs]
    try:
        inferred = producer.op.infer_shape(producer, sizes)[producer.outputs.index(y)][node.op.i]
    except Exception:   # an op that cannot say: the size stays read from y
        return None
    if any(inferred is s for ins in sizes for s in ins):
        return [inferred]
    return None


@node_rewrite("canonicalize", [Subtensor])
def static_shape_slice(fgraph, node):
    """x.shape[2:] (constant indices) where x's type fixes the sizes it selects -> a constant, the
    others may stay open (a batch of any size)."""
    shp = node.inputs[0].owner
    if shp is None or not isinstance(shp.op, Shape) or not all(isinstance(i, Constant) for i in node.inputs[1:]):
        return None
    x, out = shp.inputs[0], node.outputs[0]
    cell = [None]
    try:   # the axes it selects: the same indexing of [0, 1, ..., ndim - 1]
        node.op.perform(node, [np.arange(x.ndim, dtype="int64")] + [i.data for i in node.inputs[1:]], [cell])
    except (IndexError, ValueError):
        return None   # left to fail at run time as written
    axes = np.asarray(cell[0])
    if axes.size == 0 or any(x.type.shape[a] is None for a in axes.ravel()):
        return None
    sizes = np.asarray([x.type.shape[a] for a in axes.ravel()], dtype="int64").reshape(axes.shape)
    return [TensorConstant(out.type, sizes)]


@node_rewrite("canonicalize", [GradientViewOp])
def drop_gradient_view_ops(fgraph, node):
    """zero_grad, disconnected_grad, grad_clip... only shape gradients: the compiled forward
    pass does not need them."""
    return [node.inputs[0]]


def _fill_of(v):
    """(s, value) when v = second(s, value), the gradient's fill of value to s's shape; else None."""
    node = v.owner
    if node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ts.Second):
        return node.inputs
    return None


def _shape_given(s, others):
    """Do `others` (elementwise inputs beside s) give the result s's shape for certain? Every
    dimension of s that is not 1 is known and equal to one of theirs: where a size is known only at
    run time, s is what makes the elementwise op check it, and dropping s would turn a shape error
    into a result of the wrong shape."""
    if any(o.ndim != s.ndim for o in others):
        return False
    return all(n == 1 or (n is not None and any(o.type.shape[d] == n for o in others))
               for d, n in enumerate(s.type.shape))


@node_rewrite("canonicalize", [Elemwise])
def useless_fill(fgraph, node):
    """second(s, v) -> v when v has the result's type and s's shape for certain: T.grad's seed
    second(cost, 1.0) is then the constant, and the cost need not be computed for its shape."""
    parts = _fill_of(node.outputs[0])
    if parts is None:
        return None
    s, v = parts
    if v.type == node.outputs[0].type and _shape_given(s, [v]):
        return [v]
    return None


@node_rewrite("canonicalize", [Elemwise])
def fill_sink(fgraph, node):
    """f(.., second(s, v), ..) -> f(.., v, ..) when f's other inputs give the result s's shape for
    certain, else second(s, f(.., v, ..)): the fill moves towards the consumers until one needs it
    no more (Theano's local_fill_sink), or stays on top of the elementwise chain. T.grad of
    sum(y * g) fills the incoming gradient to y * g's shape and multiplies it by g: the fill kept
    y * g, and with it the cost, alive beside the gradient, and stopped a convolution's epilogue
    from fusing with its gradient."""
    if isinstance(node.op.scalar_op, ts.Second) or len(node.outputs) != 1:
        return None
    out = node.outputs[0]
    for i, v in enumerate(node.inputs):
        parts = _fill_of(v)
        if parts is None:
            continue
        s, value = parts
        inputs = list(node.inputs)
        inputs[i] = value
        new = node.op(*inputs)
        if _shape_given(s, inputs[:i] + inputs[i + 1:]):
            if new.type == out.type:
                return [new]
            continue
        filled = second(s, new)
        if filled.type == out.type:
            return [filled]
    return None
