"""Joining and allocating tensors: Join (T.concatenate, T.join, T.stack) and Alloc
(T.alloc, T.zeros, T.ones)."""
import numpy as np

from ..config import config
from ..graph.basic import Apply, Constant
from ..graph.op import Op
from ..graph.trace import user_trace, with_trace
from .basic import cast, dimshuffle, shape
from .type import TensorType, is_float, is_int, upcast
from .var import Variable, as_tensor_variable, constant


def _static_axis(axis, ndim, who):
    if isinstance(axis, Variable):
        if not isinstance(axis, Constant):
            raise TypeError(with_trace(f"{who}: the axis must be known when the graph is built (an int), got "
                                       f"{axis.describe()}", user_trace()))
        axis = axis.data.item()
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(with_trace(f"{who}: axis must be an int, got {axis!r}", user_trace()))
    if not -ndim <= axis < ndim:
        raise ValueError(with_trace(f"{who}: axis {axis} is out of range for {ndim}-d tensors", user_trace()))
    return int(axis) % ndim


class Join(Op):
    """Concatenation of tensors of equal ndim along `axis` (numpy.concatenate); the result
    has the inputs' upcast dtype."""

    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = int(axis)

    def make_node(self, *tensors):
        if not tensors:
            raise ValueError("join: needs at least one tensor")
        tensors = [as_tensor_variable(t) for t in tensors]
        ndim = tensors[0].ndim
        if ndim == 0:
            raise TypeError(f"join: cannot join scalars ({tensors[0].describe()}); use T.stack")
        for t in tensors:
            if t.ndim != ndim:
                raise TypeError(f"join: all tensors must have {ndim} dimensions like {tensors[0].describe()}, "
                                f"got {t.describe()}")
        if not 0 <= self.axis < ndim:
            raise ValueError(f"join: axis {self.axis} is out of range for {ndim}-d tensors")
        out_shape = []
        for d in range(ndim):
            sizes = [t.type.shape[d] for t in tensors]
            if d == self.axis:
                out_shape.append(None if None in sizes else int(sum(sizes)))
                continue
            known = {s for s in sizes if s is not None}
            if len(known) > 1:
                desc = ", ".join(t.describe() for t in tensors)
                raise ValueError(f"join along axis {self.axis}: dimension {d} differs: {sorted(known)} ({desc})")
            out_shape.append(known.pop() if known else None)
        dtype = upcast(*[t.dtype for t in tensors])
        return Apply(self, tensors, [TensorType(dtype, shape=tuple(out_shape))()])

    def perform(self, node, inputs, out):
        ref = inputs[0].shape
        for var, x in zip(node.inputs, inputs):
            for d in range(len(ref)):
                if d != self.axis and x.shape[d] != ref[d]:
                    raise ValueError(f"join along axis {self.axis}: {var.describe()} has shape {x.shape}, "
                                     f"which differs from the first tensor's {ref} in dimension {d}")
        out[0][0] = np.concatenate(inputs, axis=self.axis).astype(node.outputs[0].dtype, copy=False)

    def infer_shape(self, node, shapes):
        total = shapes[0][self.axis]
        for s in shapes[1:]:
            total = total + s[self.axis]
        return [tuple(total if d == self.axis else shapes[0][d] for d in range(len(shapes[0])))]

    def grad(self, inputs, grads):
        g, = grads
        result, start = [], 0
        for x in inputs:
            stop = start + shape(x)[self.axis]
            if is_float(x.dtype):
                piece = g[(slice(None),) * self.axis + (slice(start, stop),)]
                result.append(cast(piece, x.dtype))
            else:
                result.append(None)
            start = stop
        return result


def join(axis, *tensors_list):
    """T.join(axis, *tensors): concatenate along axis (one tensor is returned as it is)."""
    if len(tensors_list) == 1:
        return as_tensor_variable(tensors_list[0])
    tensors = [as_tensor_variable(t) for t in tensors_list]
    if not tensors:
        raise ValueError(with_trace("join: needs at least one tensor", user_trace()))
    return Join(_static_axis(axis, tensors[0].ndim, "join"))(*tensors)


def concatenate(tensor_list, axis=0):
    """T.concatenate(tensor_list, axis=0) (numpy.concatenate)."""
    if not isinstance(tensor_list, (list, tuple)):
        raise TypeError(with_trace(f"concatenate: tensor_list must be a list or tuple of tensors, got "
                                   f"{type(tensor_list).__name__} (did you mean concatenate([a, b])?)", user_trace()))
    return join(axis, *tensor_list)


def stack(*tensors, **kwargs):
    """T.stack(tensors, axis=0): join along a new dimension `axis` (numpy.stack); also the old
    form T.stack(a, b, c)."""
    axis = kwargs.pop("axis", 0)
    if kwargs:
        raise TypeError(f"stack: unexpected arguments {sorted(kwargs)}")
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tensors[0]
    if not tensors:
        raise ValueError(with_trace("stack: needs at least one tensor", user_trace()))
    tensors = [as_tensor_variable(t) for t in tensors]
    ndim = tensors[0].ndim + 1
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(with_trace(f"stack: axis {axis!r} is out of range for {ndim - 1}-d tensors", user_trace()))
    axis = int(axis) % ndim
    padded = []
    for t in tensors:
        if t.ndim != ndim - 1:
            raise TypeError(with_trace(f"stack: all tensors must have {ndim - 1} dimensions like "
                                       f"{tensors[0].describe()}, got {t.describe()}", user_trace()))
        order = list(range(t.ndim))
        order.insert(axis, "x")
        padded.append(dimshuffle(t, *order))
    return Join(axis)(*padded) if len(padded) > 1 else padded[0]


class Alloc(Op):
    """Alloc(value, *shape): a tensor of `shape` filled with `value` broadcast from the right
    (numpy.broadcast_to, then a copy). As for elementwise ops, a dimension of the value
    broadcasts only if its type says it has length 1."""

    def make_node(self, value, *shp):
        value = as_tensor_variable(value)
        dims = []
        for s in shp:
            s = as_tensor_variable(s)
            if s.ndim != 0 or not is_int(s.dtype):
                raise TypeError(f"alloc: shape entries must be integer scalars, got {s.describe()}")
            if s.dtype != "int64":
                s = constant(np.asarray(s.data, dtype="int64")) if isinstance(s, Constant) else cast(s, "int64")
            dims.append(s)
        if value.ndim > len(dims):
            raise TypeError(f"alloc: the value {value.describe()} has more dimensions than the shape "
                            f"({len(dims)})")
        static = []
        lead = len(dims) - value.ndim
        for d, s in enumerate(dims):
            k = _known_int(s)
            if k is not None and k < 0:
                raise ValueError(f"alloc: negative dimension {k}")
            vd = value.type.shape[d - lead] if d >= lead else 1
            if k is None and vd is not None and vd != 1:
                k = vd  # the value's length decides (anything else is an error at run time)
            if k is not None and vd is not None and vd not in (1, k):
                raise ValueError(f"alloc: the value {value.describe()} of length {vd} in dimension "
                                 f"{d - lead} cannot fill length {k}")
            static.append(k)
        return Apply(self, [value] + dims, [TensorType(value.dtype, shape=tuple(static))()])

    def perform(self, node, inputs, out):
        value, shp = inputs[0], tuple(int(s) for s in inputs[1:])
        if any(s < 0 for s in shp):
            raise ValueError(f"alloc: negative dimension in shape {shp}")
        lead = len(shp) - value.ndim
        for d in range(value.ndim):
            # As for elementwise ops, only dimensions declared broadcastable broadcast.
            if value.shape[d] != shp[lead + d] and node.inputs[0].type.shape[d] != 1:
                raise ValueError(f"alloc: the value {node.inputs[0].describe()} of shape {np.shape(value)} cannot "
                                 f"fill shape {shp} (dimension {d}; only dimensions declared broadcastable, "
                                 f"of static length 1, broadcast)")
        res = np.broadcast_to(value, shp)
        out[0][0] = np.array(res, dtype=node.outputs[0].dtype)

    def infer_shape(self, node, shapes):
        return [tuple(node.inputs[1:])]

    def grad(self, inputs, grads):
        from . import math as M
        value = inputs[0]
        g, = grads
        if not is_float(value.dtype):
            return [None] + [None] * (len(inputs) - 1)
        lead = g.ndim - value.ndim
        axes = list(range(lead)) + [lead + d for d in range(value.ndim) if value.type.shape[d] == 1]
        gv = M.sum(g, axis=axes, keepdims=True) if axes else g
        if lead:
            gv = dimshuffle(gv, *range(lead, g.ndim))
        return [cast(gv, value.dtype)] + [None] * (len(inputs) - 1)

    def connection_pattern(self, node):
        return [[True]] + [[False]] * (len(node.inputs) - 1)


def _known_int(s):
    """The value of an int scalar when known while building: a constant, or x.shape[i] of a
    dimension with a static length."""
    from .basic import Shape_i
    if isinstance(s, Constant):
        return int(s.data)
    node = s.owner
    if node is not None and isinstance(node.op, Shape_i):
        return node.inputs[0].type.shape[node.op.i]
    return None


alloc_op = Alloc()


def alloc(value, *shape):
    """T.alloc(value, *shape)."""
    return alloc_op(value, *shape)


def _shape_list(shape):
    if isinstance(shape, (list, tuple)):
        return list(shape)
    if isinstance(shape, Variable) and shape.ndim == 1:
        n = shape.type.shape[0]
        if n is None:
            raise TypeError(with_trace(f"the shape {shape.describe()} must have a static length", user_trace()))
        return [shape[i] for i in range(n)]
    return [shape]


def zeros(shape, dtype=None):
    """T.zeros(shape, dtype=floatX)."""
    return alloc(constant(np.zeros((), dtype=dtype or config.floatX)), *_shape_list(shape))


def ones(shape, dtype=None):
    """T.ones(shape, dtype=floatX)."""
    return alloc(constant(np.ones((), dtype=dtype or config.floatX)), *_shape_list(shape))
