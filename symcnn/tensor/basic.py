"""Shape, reshaping and construction ops: Shape, Shape_i, MakeVector, Reshape,
Flatten, ARange, and the helpers cast/dimshuffle/transpose/zeros_like."""
import numpy as np

from ..graph.basic import Apply, Constant
from ..graph.op import Op
from .. import scalar as ts
from .elemwise import DimShuffle, Elemwise
from .type import TensorType, is_float, is_int, normalize_dtype, upcast
from .var import as_tensor_variable, constant


class Shape(Op):
    """x.shape as an int64 vector."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        return Apply(self, [x], [TensorType("int64", shape=(x.ndim,))()])

    def perform(self, node, inputs, out):
        out[0][0] = np.asarray(inputs[0].shape, dtype="int64")

    def infer_shape(self, node, shapes):
        return [(node.inputs[0].ndim,)]

    def grad(self, inputs, grads):
        return [None]

    def connection_pattern(self, node):
        return [[False]]


class Shape_i(Op):
    """x.shape[i] as an int64 scalar."""

    __props__ = ("i",)

    def __init__(self, i):
        self.i = int(i)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if not -x.ndim <= self.i < x.ndim:
            raise IndexError(f"shape index {self.i} out of range for {x.describe()}")
        return Apply(self, [x], [TensorType("int64", shape=())()])

    def perform(self, node, inputs, out):
        out[0][0] = np.asarray(inputs[0].shape[self.i], dtype="int64")

    def infer_shape(self, node, shapes):
        return [()]

    def grad(self, inputs, grads):
        return [None]

    def connection_pattern(self, node):
        return [[False]]


def shape(x):
    """x.shape: an int64 vector; indexing it with an int gives a Shape_i node."""
    return Shape()(as_tensor_variable(x))


class MakeVector(Op):
    """Stack scalars into a vector (used for symbolic reshape targets)."""

    __props__ = ("dtype",)

    def __init__(self, dtype="int64"):
        self.dtype = dtype

    def make_node(self, *scalars):
        scalars = [as_tensor_variable(s) for s in scalars]
        for s in scalars:
            if s.ndim != 0:
                raise TypeError(f"MakeVector takes scalars, got {s.describe()}")
        return Apply(self, scalars, [TensorType(self.dtype, shape=(len(scalars),))()])

    def perform(self, node, inputs, out):
        out[0][0] = np.array([np.asarray(x).item() for x in inputs], dtype=self.dtype)

    def infer_shape(self, node, shapes):
        return [(len(node.inputs),)]

    def grad(self, inputs, grads):
        g, = grads
        return [g[i] if s.dtype.startswith("float") else None for i, s in enumerate(inputs)]


def stack_scalars(items, dtype=None):
    items = [_as_scalar(i) for i in items]
    dtype = dtype or upcast(*[i.dtype for i in items])
    # a constant is converted now, so that it stays a constant: reshape((x.shape[0], 20, 12, 12))
    # then knows its static dims (20, 12, 12), which the kernels are chosen by
    items = [i if i.dtype == dtype else
             constant(np.asarray(i.data, dtype=dtype)) if _exact_constant(i, dtype) else cast(i, dtype)
             for i in items]
    return MakeVector(dtype)(*items)


def _exact_constant(v, dtype):
    """Whether v is a constant whose value dtype holds exactly (a cast would not change it)."""
    return isinstance(v, Constant) and np.array_equal(np.asarray(v.data).astype(dtype), v.data)


def _as_scalar(x):
    x = as_tensor_variable(x)
    if x.ndim != 0:
        raise TypeError(f"expected a scalar, got {x.describe()}")
    return x


def static_ints(v, n=None):
    """Per-element Python ints of a 1-d int vector where known when building
    (`n` entries when the vector's length is not static)."""
    if isinstance(v, Constant):
        return [int(e) for e in v.data]
    if v.owner is not None and isinstance(v.owner.op, MakeVector):
        return [int(i.data) if isinstance(i, Constant) else None for i in v.owner.inputs]
    return [None] * (v.type.shape[0] if v.type.shape[0] is not None else n)


class Reshape(Op):
    """Reshape to a shape given as an int64 vector (one entry may be -1)."""

    __props__ = ("ndim",)

    def __init__(self, ndim):
        self.ndim = int(ndim)

    def make_node(self, x, shp):
        x = as_tensor_variable(x)
        shp = as_tensor_variable(shp)
        if shp.ndim != 1 or not is_int(shp.dtype) or shp.type.shape[0] not in (None, self.ndim):
            raise TypeError(f"reshape target must be {self.ndim} integers, got {shp.describe()}")
        if is_int(shp.dtype) and shp.dtype != "int64":
            shp = cast(shp, "int64")
        known = static_ints(shp, self.ndim)
        if sum(1 for k in known if k == -1) > 1:
            raise ValueError(f"reshape target {known} has more than one -1")
        out_shape = list(None if k is None or k == -1 else k for k in known)
        in_shape = x.type.shape
        if None not in in_shape:
            size = int(np.prod(in_shape))
            rest = [k for k in known if k != -1]
            if None not in rest:
                prod = int(np.prod(rest))
                if -1 in known:
                    if prod == 0 or size % prod:
                        raise ValueError(f"cannot reshape {x.describe()} of size {size} into {tuple(known)}")
                    out_shape[known.index(-1)] = size // prod
                elif prod != size:
                    raise ValueError(f"cannot reshape {x.describe()} of size {size} into {tuple(known)}")
        return Apply(self, [x, shp], [TensorType(x.dtype, shape=tuple(out_shape))()])

    def perform(self, node, inputs, out):
        x, shp = inputs
        try:
            out[0][0] = x.reshape(tuple(int(s) for s in shp))
        except ValueError:
            raise ValueError(f"cannot reshape {node.inputs[0].describe()} of shape {x.shape} into "
                             f"{tuple(int(s) for s in shp)}") from None

    def infer_shape(self, node, shapes):
        from . import math as T
        shp = node.inputs[1]
        dims = [shp[i] for i in range(self.ndim)]
        known = static_ints(shp, self.ndim)
        if None not in known and -1 not in known:
            return [tuple(dims)]
        # One entry may be -1: it stands for the size divided by the other entries.
        size = 1
        for s in shapes[0]:
            size = size * s
        prod = 1
        for d in dims:
            prod = prod * d
        missing = T.int_div(size, -prod)  # prod holds the -1 once
        return [tuple(T.switch(T.eq(d, -1), missing, d) for d in dims)]

    def grad(self, inputs, grads):
        x, _ = inputs
        return [reshape(grads[0], shape(x), ndim=x.ndim), None]

    def connection_pattern(self, node):
        return [[True], [False]]


class Flatten(Op):
    """Keep the first ndim-1 dimensions, collapse the rest (Theano's flatten(ndim))."""

    __props__ = ("outdim",)

    def __init__(self, outdim=1):
        self.outdim = int(outdim)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if not 1 <= self.outdim <= max(x.ndim, 1):
            raise ValueError(f"flatten({self.outdim}) of {x.describe()}: ndim must be between 1 and {x.ndim}")
        lead = x.type.shape[:self.outdim - 1]
        rest = x.type.shape[self.outdim - 1:]
        last = int(np.prod(rest)) if None not in rest else None
        return Apply(self, [x], [TensorType(x.dtype, shape=lead + (last,))()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        out[0][0] = x.reshape(x.shape[:self.outdim - 1] + (-1,)) if x.size else \
            x.reshape(x.shape[:self.outdim - 1] + (int(np.prod(x.shape[self.outdim - 1:])),))

    def infer_shape(self, node, shapes):
        s = shapes[0]
        last = 1
        for d in s[self.outdim - 1:]:
            last = last * d
        return [tuple(s[:self.outdim - 1]) + (last,)]

    def grad(self, inputs, grads):
        x, = inputs
        return [reshape(grads[0], shape(x), ndim=x.ndim)]


class ARange(Op):
    """T.arange(start, stop, step) with a dtype."""

    __props__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype

    def make_node(self, start, stop, step):
        ins = [as_tensor_variable(v) for v in (start, stop, step)]
        for v in ins:
            if v.ndim != 0:
                raise TypeError(f"arange bounds must be scalars, got {v.describe()}")
        length = None
        if isinstance(ins[2], Constant) and ins[2].data == 0:
            raise ValueError("arange step must not be zero")
        if all(isinstance(v, Constant) for v in ins):
            length = len(np.arange(*[v.data.item() for v in ins]))
        return Apply(self, ins, [TensorType(self.dtype, shape=(length,))()])

    def perform(self, node, inputs, out):
        start, stop, step = (np.asarray(v).item() for v in inputs)
        if step == 0:
            raise ValueError("arange step must not be zero")
        out[0][0] = np.arange(start, stop, step, dtype=self.dtype)

    def infer_shape(self, node, shapes):
        from . import math as T
        start, stop, step = node.inputs
        return [(T.maximum(T.cast(T.ceil_div(stop - start, step), "int64"), 0),)]

    def grad(self, inputs, grads):
        # out[i] = start + i * step: d/dstart = sum(gz), d/dstep = sum(gz * i); stop only sets
        # the length, so it is disconnected (Theano's ARange.grad). Integer outputs give zeros.
        from . import math as T
        start, stop, step = inputs
        gz, = grads
        if not is_float(self.dtype):
            return [None, None, None]
        steps = ARange(self.dtype)(constant(np.asarray(0, dtype="int64")), shape(gz)[0],
                                   constant(np.asarray(1, dtype="int64")))
        return [T.sum(gz), None, T.sum(gz * steps)]

    def connection_pattern(self, node):
        return [[True], [False], [True]]


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    ins = [as_tensor_variable(v) for v in (start, stop, step)]
    if dtype is None:
        dtype = upcast(*[v.dtype for v in ins])
        if is_int(dtype):
            dtype = "int64"  # Theano: T.arange of ints is int64
    return ARange(normalize_dtype(dtype))(*ins)


_casts = {}


def cast(x, dtype):
    """T.cast: an elementwise conversion (a no-op when the dtype already matches)."""
    x = as_tensor_variable(x)
    dtype = normalize_dtype(dtype)
    if x.dtype == dtype:
        return x
    op = _casts.get(dtype)
    if op is None:
        op = _casts[dtype] = Elemwise(ts.Cast(dtype), name=f"cast{{{dtype}}}")
    return op(x)


def dimshuffle(x, *pattern):
    x = as_tensor_variable(x)
    if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
        pattern = tuple(pattern[0])
    return DimShuffle(x.ndim, pattern)(x)


def transpose(x, axes=None):
    x = as_tensor_variable(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    elif len(axes) == 1 and isinstance(axes[0], (list, tuple)):
        axes = tuple(axes[0])
    return DimShuffle(x.ndim, axes)(x)


def reshape(x, newshape, ndim=None):
    x = as_tensor_variable(x)
    if isinstance(newshape, (list, tuple)):
        if all(isinstance(s, (int, np.integer)) for s in newshape):
            newshape = constant(np.asarray(newshape, dtype="int64"))
        else:
            newshape = stack_scalars(newshape, dtype="int64")
    else:
        newshape = as_tensor_variable(newshape)
        if newshape.ndim == 0:
            newshape = stack_scalars([newshape], dtype="int64")
    if ndim is None:
        ndim = newshape.type.shape[0]
        if ndim is None:
            raise ValueError("reshape to a shape vector of unknown length needs ndim=")
    return Reshape(ndim)(x, newshape)


def flatten(x, ndim=None, outdim=None):
    """Keep the first ndim-1 dimensions and collapse the rest (outdim is Theano's old name)."""
    if outdim is not None:
        if ndim is not None:
            raise ValueError("flatten: give ndim or its old name outdim, not both")
        ndim = outdim
    return Flatten(1 if ndim is None else ndim)(x)


def zeros_like(x, dtype=None):
    x = as_tensor_variable(x)
    return second(x, constant(np.zeros((), dtype=dtype or x.dtype)))


def ones_like(x, dtype=None):
    x = as_tensor_variable(x)
    return second(x, constant(np.ones((), dtype=dtype or x.dtype)))


second = Elemwise(ts.second, name="second")
fill = second


def broadcast_dim(sizes, static):
    """Symbolic length of a broadcast dimension, for infer_shape."""
    for s, st in zip(sizes, static):
        if st is not None and st != 1:
            return st
    for s, st in zip(sizes, static):
        if st != 1:
            return s
    return 1
