"""Elementwise functions, reductions (sum, max, argmax, mean) and dot.

This module defines sum/max/min/abs/pow as Theano does, so Python's builtins
are reached through `builtins` here."""
import builtins
import math

import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from .. import scalar as ts
from .basic import cast, dimshuffle, second, shape, zeros_like, ones_like  # noqa: F401 (re-exported)
from .elemwise import DimShuffle, Elemwise, register
from .type import TensorType, is_float, is_int, upcast
from .var import as_tensor_variable, constant

add = register("add", ts.add)
sub = register("sub", ts.sub)
mul = register("mul", ts.mul)
true_div = register("true_div", ts.true_div)
int_div = register("int_div", ts.int_div)
mod = register("mod", ts.mod)
pow = register("pow", ts.pow_)
maximum = register("maximum", ts.maximum)
minimum = register("minimum", ts.minimum)
neg = register("neg", ts.neg)
abs_ = register("abs", ts.abs_)
sgn = register("sgn", ts.sgn)
sqr = register("sqr", ts.sqr)
exp = register("exp", ts.exp)
log = register("log", ts.log)
sqrt = register("sqrt", ts.sqrt)
tanh = register("tanh", ts.tanh)
sigmoid = register("sigmoid", ts.sigmoid)
eq = register("eq", ts.eq)
neq = register("neq", ts.neq)
lt = register("lt", ts.lt)
le = register("le", ts.le)
gt = register("gt", ts.gt)
ge = register("ge", ts.ge)
switch = register("switch", ts.switch)
identity = register("identity", ts.identity)
abs = abs_  # T.abs in newer Theano/PyTensor
div = true_div


def ceil_div(a, b):
    return -int_div(-a, b)


def _at_user(message):
    from ..graph.trace import user_trace, with_trace
    return with_trace(message, user_trace())


def normalize_axis(axis, ndim, who):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(_at_user(f"{who}: axis {a} is out of range for a {ndim}-d tensor"))
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(_at_user(f"{who}: repeated axis in {axis}"))
    return tuple(sorted(out))


class Reduce(Op):
    """Reduce over `axis` (a sorted tuple), dropping those dimensions."""

    __props__ = ("axis",)
    np_func = None

    def __init__(self, axis):
        self.axis = tuple(axis)

    def out_dtype(self, dtype):
        return dtype

    def make_node(self, x):
        x = as_tensor_variable(x)
        if any(a >= x.ndim for a in self.axis):
            raise ValueError(f"{self}: axis out of range for {x.describe()}")
        shape = tuple(s for d, s in enumerate(x.type.shape) if d not in self.axis)
        return Apply(self, [x], [TensorType(self.out_dtype(x.dtype), shape=shape)()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        out[0][0] = np.asarray(type(self).np_func(x, axis=self.axis), dtype=node.outputs[0].dtype)

    def infer_shape(self, node, shapes):
        return [tuple(s for d, s in enumerate(shapes[0]) if d not in self.axis)]

    def _expand(self, g, ndim):
        """Put back the reduced dimensions as broadcastable ones."""
        order, k = [], 0
        for d in range(ndim):
            if d in self.axis:
                order.append("x")
            else:
                order.append(k)
                k += 1
        return DimShuffle(g.ndim, order)(g)


class Sum(Reduce):
    __props__ = ("axis", "dtype")
    np_func = staticmethod(np.sum)

    def __init__(self, axis, dtype=None):
        super().__init__(axis)
        self.dtype = dtype

    def out_dtype(self, dtype):
        if self.dtype is not None:
            return self.dtype
        if dtype == "bool" or dtype in ("int8", "int16", "int32"):
            return "int64"  # Theano accumulates small ints in int64
        if dtype in ("uint8", "uint16", "uint32"):
            return "uint64"
        return dtype

    def perform(self, node, inputs, out):
        x = inputs[0]
        out[0][0] = np.asarray(np.sum(x, axis=self.axis, dtype=node.outputs[0].dtype))

    def grad(self, inputs, grads):
        x, = inputs
        if not is_float(x.dtype):
            return [None]
        g = self._expand(grads[0], x.ndim)
        return [second(x, cast(g, x.dtype))]


def _empty_reduction(x, axis):
    """numpy refuses max/argmax only when some result element would reduce nothing."""
    reduced = int(np.prod([x.shape[a] for a in axis]))
    kept = int(np.prod([n for d, n in enumerate(x.shape) if d not in axis]))
    return reduced == 0 and kept > 0


class Max(Reduce):
    np_func = staticmethod(np.max)

    def perform(self, node, inputs, out):
        x = inputs[0]
        if _empty_reduction(x, self.axis):
            raise ValueError(f"max of an empty array ({node.inputs[0].describe()}, shape {x.shape})")
        super().perform(node, inputs, out)

    def grad(self, inputs, grads):
        # Every element equal to the maximum gets the gradient (Theano's rule for ties).
        x, = inputs
        if not is_float(x.dtype):
            return [None]
        out = self._expand(self(x), x.ndim)
        g = self._expand(grads[0], x.ndim)
        return [g * cast(eq(x, out), x.dtype)]


class Argmax(Reduce):
    """Index of the maximum along one axis (or over the flattened tensor), int64."""

    np_func = None

    def out_dtype(self, dtype):
        return "int64"

    def perform(self, node, inputs, out):
        x = inputs[0]
        if _empty_reduction(x, self.axis):
            raise ValueError(f"argmax of an empty array ({node.inputs[0].describe()}, shape {x.shape})")
        if len(self.axis) == 1:
            res = np.argmax(x, axis=self.axis[0])
        else:
            keep = [d for d in range(x.ndim) if d not in self.axis]
            moved = x.transpose(keep + list(self.axis))
            res = np.argmax(moved.reshape(moved.shape[:len(keep)] + (-1,)), axis=-1)
        out[0][0] = np.asarray(res, dtype="int64")

    def grad(self, inputs, grads):
        # Connected, with a zero gradient (Theano's Argmax.grad gives x.zeros_like()).
        return [None]


def keep_dims(x, red, axis, keepdims):
    if not keepdims:
        return red
    order, k = [], 0
    for d in range(x.ndim):
        if d in axis:
            order.append("x")
        else:
            order.append(k)
            k += 1
    return dimshuffle(red, *order)


def sum(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):
    """Theano's sum: `dtype` is the result's dtype, `acc_dtype` the accumulator's (by default the
    result's; small ints accumulate in int64). An accumulator less precise than the input is an error."""
    x = as_tensor_variable(x)
    axis = normalize_axis(axis, x.ndim, "sum")
    if acc_dtype is None:
        return keep_dims(x, Sum(axis, dtype)(x), axis, keepdims)
    check_acc_dtype(x, acc_dtype, "sum")
    total = Sum(axis, acc_dtype)(x)
    out_dtype = dtype if dtype is not None else Sum(axis).out_dtype(x.dtype)
    return keep_dims(x, cast(total, out_dtype), axis, keepdims)


def check_acc_dtype(x, acc_dtype, who):
    from ..graph.trace import user_trace, with_trace
    if np.dtype(acc_dtype) != np.promote_types(np.dtype(x.dtype), np.dtype(acc_dtype)):
        raise TypeError(with_trace(f"{who}: acc_dtype={acc_dtype!r} would accumulate {x.describe()} with less "
                                   f"precision than its dtype {x.dtype}", user_trace()))


def max(x, axis=None, keepdims=False):
    x = as_tensor_variable(x)
    axis = normalize_axis(axis, x.ndim, "max")
    return keep_dims(x, Max(axis)(x), axis, keepdims)


def min(x, axis=None, keepdims=False):
    """Theano's rule: -max(-x); unsigned ints as M - max(M - x) with M the dtype's largest
    value (so nothing wraps); bool as not max(not x)."""
    x = as_tensor_variable(x)
    if x.dtype == "bool":
        return eq(max(eq(x, False), axis=axis, keepdims=keepdims), False)
    if x.dtype.startswith("uint"):
        top = constant(np.asarray(np.iinfo(x.dtype).max, dtype=x.dtype))
        return top - max(top - x, axis=axis, keepdims=keepdims)
    return -max(-x, axis=axis, keepdims=keepdims)


def argmax(x, axis=None, keepdims=False):
    x = as_tensor_variable(x)
    axis = normalize_axis(axis, x.ndim, "argmax")
    return keep_dims(x, Argmax(axis)(x), axis, keepdims)


def mean(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):
    """Sum divided by the count; integers give float64 (Theano's rule). `dtype` is the result's
    dtype, `acc_dtype` the sum's accumulator."""
    x = as_tensor_variable(x)
    axis = normalize_axis(axis, x.ndim, "mean")
    out_dtype = dtype or (x.dtype if is_float(x.dtype) else "float64")
    if acc_dtype is not None:
        check_acc_dtype(x, acc_dtype, "mean")
    total = cast(Sum(axis, dtype=acc_dtype or (out_dtype if is_float(x.dtype) else None))(x), out_dtype)
    count = None
    for a in axis:
        n = x.type.shape[a]
        n = constant(np.asarray(n, dtype="int64")) if n is not None else shape(x)[a]
        count = n if count is None else count * n
    if count is None:
        return keep_dims(x, total, axis, keepdims)
    return keep_dims(x, true_div(total, cast(count, out_dtype)), axis, keepdims)


class Dot(Op):
    """Matrix/vector product (numpy.dot for 1-d and 2-d operands)."""

    def make_node(self, x, y):
        x, y = as_tensor_variable(x), as_tensor_variable(y)
        if x.ndim not in (1, 2) or y.ndim not in (1, 2):
            raise TypeError(f"dot takes 1-d or 2-d operands, got {x.describe()} and {y.describe()}")
        kx, ky = x.type.shape[-1], y.type.shape[0]
        if kx is not None and ky is not None and kx != ky:
            raise ValueError(f"dot: inner dimensions differ: {x.describe()} has {kx} columns, "
                             f"{y.describe()} has {ky} rows")
        shape = x.type.shape[:-1] + y.type.shape[1:]
        dtype = upcast(x.dtype, y.dtype)
        return Apply(self, [x, y], [TensorType(dtype, shape=shape)()])

    def perform(self, node, inputs, out):
        x, y = inputs
        if x.shape[-1] != y.shape[0]:
            raise ValueError(f"dot: shapes {x.shape} ({node.inputs[0].describe()}) and {y.shape} "
                             f"({node.inputs[1].describe()}) are not aligned")
        out[0][0] = np.asarray(np.dot(x, y), dtype=node.outputs[0].dtype)

    def infer_shape(self, node, shapes):
        return [tuple(shapes[0][:-1]) + tuple(shapes[1][1:])]

    def flops(self, input_shapes, output_shapes=None):
        """2*m*n*k: a multiply-add per (output element, inner index)."""
        xs, ys = input_shapes
        out = output_shapes[0] if output_shapes else tuple(xs[:-1]) + (tuple(ys[:-2]) + tuple(ys[-1:]) if len(ys) > 1 else ())
        return 2 * math.prod(int(d) for d in out) * int(xs[-1])

    def grad(self, inputs, grads):
        x, y = inputs
        g, = grads
        if x.ndim == 2 and y.ndim == 2:
            gx, gy = dot(g, y.T), dot(x.T, g)
        elif x.ndim == 2:  # matrix . vector
            gx, gy = outer(g, y), dot(x.T, g)
        elif y.ndim == 2:  # vector . matrix
            gx, gy = dot(y, g), outer(x, g)
        else:
            gx, gy = g * y, g * x
        return [cast(gx, x.dtype) if is_float(x.dtype) else None,
                cast(gy, y.dtype) if is_float(y.dtype) else None]


_dot = Dot()


def dot(x, y):
    """numpy.dot: Dot for vectors and matrices; other ndims (lstm's T.dot(tensor3, matrix),
    scalars) as Theano writes them (see nd_dot.py)."""
    x, y = as_tensor_variable(x), as_tensor_variable(y)
    if x.ndim not in (1, 2) or y.ndim not in (1, 2):
        from .nd_dot import nd_dot
        return nd_dot(x, y)
    return _dot(x, y)


def outer(x, y):
    """Outer product; operands that are not vectors are flattened first (as Theano)."""
    from .basic import flatten
    x, y = as_tensor_variable(x), as_tensor_variable(y)
    if x.ndim != 1:
        x = flatten(x)
    if y.ndim != 1:
        y = flatten(y)
    return dimshuffle(x, 0, "x") * dimshuffle(y, "x", 0)


clip_elemwise = register("clip", ts.clip)


def clip(x, min, max):
    """Theano's T.clip: min where x < min, max where x > max, else x (min wins if min > max)."""
    return clip_elemwise(x, min, max)
