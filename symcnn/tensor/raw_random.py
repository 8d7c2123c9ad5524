"""The random draw ops: UniformDraw and NormalDraw (Philox4x32-10, see philox.py).

Each op takes a stream's state (a uint32 vector of 4 words, kept in a shared variable) and a size
(an int64 vector, possibly a symbolic shape such as x.shape) and returns (new state, sample). The
new state is what the stream's shared variable gets after the call (its `default_update`), so two
calls of a compiled function draw different numbers. The values are a pure function of (state,
element index): the native kernel draws element blocks on any thread in any order and gives the
same bits as `perform`.
"""
import numpy as np

from ..graph.basic import Apply, Variable
from ..graph.op import Op
from . import philox
from .basic import static_ints, cast, stack_scalars
from .type import TensorType, is_int, normalize_dtype
from .var import as_tensor_variable, constant

INT64_MAX = 2 ** 63 - 1


def as_size(size, ndim=None):
    """(int64 vector variable, ndim) of a draw's size: a tuple/list of ints and integer scalars,
    an int, or a 1-d integer variable such as x.shape (then `ndim` is needed when its length is
    not known when building)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size),)
    if isinstance(size, (tuple, list)):
        for d in size:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer, Variable)):
                raise TypeError(f"size must be a tuple of integers or integer scalar variables, "
                                f"got {tuple(size)!r}")
            if isinstance(d, Variable) and (d.ndim != 0 or not is_int(d.dtype)):
                raise TypeError(f"size entries must be integer scalars, got {d.describe()} in size")
            if not isinstance(d, Variable) and d < 0:
                raise ValueError(f"size must not contain negative dimensions, got {tuple(size)!r}")
        if ndim is not None and ndim != len(size):
            raise ValueError(f"ndim={ndim} disagrees with size {tuple(size)!r} of length {len(size)}")
        if all(not isinstance(d, Variable) for d in size):
            return constant(np.asarray(size, dtype="int64").reshape(len(size))), len(size)
        return stack_scalars(list(size), dtype="int64"), len(size)
    if not isinstance(size, Variable):
        raise TypeError(f"size must be a tuple of integers or a 1-d integer variable (such as x.shape), "
                        f"got {type(size).__name__} {size!r}")
    if size.ndim != 1 or not is_int(size.dtype):
        raise TypeError(f"size must be a 1-d integer variable (such as x.shape), got {size.describe()}")
    length = size.type.shape[0]
    if length is None and ndim is None:
        raise ValueError(f"size {size.describe()} has a length unknown when building; pass ndim=")
    if length is not None and ndim is not None and ndim != length:
        raise ValueError(f"ndim={ndim} disagrees with size {size.describe()} of length {length}")
    if size.dtype != "int64":
        size = cast(size, "int64")
    return size, (length if length is not None else int(ndim))


def check_size(op, dims, itemsize):
    """Raise the error native code reports as E_VALUE: a negative dimension, or a byte count
    that does not fit in int64."""
    if any(d < 0 for d in dims):
        raise ValueError(f"{op}: size must not contain negative dimensions, got {tuple(dims)}")
    total = 1
    for d in dims:
        total *= d
    if total * itemsize > INT64_MAX:
        raise ValueError(f"{op}: size {tuple(dims)} is too large ({total} elements of {itemsize} bytes "
                         f"overflow a 64-bit byte count)")
    return total


def state_type():
    return TensorType("uint32", shape=(philox.STATE_WORDS,))


class RandomDraw(Op):
    """Base of the draw ops: inputs (rstate, size), outputs (new rstate, sample)."""

    __props__ = ("dtype", "ndim")
    distribution = None

    def __init__(self, dtype, ndim):
        self.dtype = normalize_dtype(dtype)
        if self.dtype not in philox.PER_BLOCK:
            raise TypeError(f"{type(self).__name__}: dtype must be float32 or float64, got {dtype!r}")
        self.ndim = int(ndim)

    def make_node(self, rstate, size):
        rstate = as_tensor_variable(rstate)
        if rstate.dtype != "uint32" or rstate.ndim != 1 or rstate.type.shape[0] not in (None, philox.STATE_WORDS):
            raise TypeError(f"{type(self).__name__}: the random state must be a uint32 vector of "
                            f"{philox.STATE_WORDS} words, got {rstate.describe()}")
        size = as_tensor_variable(size)
        if size.ndim != 1 or not is_int(size.dtype) or size.type.shape[0] not in (None, self.ndim):
            raise TypeError(f"{type(self).__name__}: size must be an int64 vector of length {self.ndim}, "
                            f"got {size.describe()}")
        if size.dtype != "int64":
            size = cast(size, "int64")
        static = static_ints(size, self.ndim)
        if any(s is not None and s < 0 for s in static):
            raise ValueError(f"{type(self).__name__}: size must not contain negative dimensions, got {static}")
        sample = TensorType(self.dtype, shape=tuple(static))()
        return Apply(self, [rstate, size], [state_type()(), sample])

    def perform(self, node, inputs, out):
        rstate, size = inputs
        if rstate.shape != (philox.STATE_WORDS,):
            raise ValueError(f"{self}: the random state must have {philox.STATE_WORDS} words, got shape "
                             f"{rstate.shape}")
        dims = [int(d) for d in size]
        if len(dims) != self.ndim:
            raise ValueError(f"{self}: size must have length {self.ndim}, got {tuple(dims)}")
        n = check_size(self, dims, np.dtype(self.dtype).itemsize)
        out[0][0] = philox.advance(rstate)
        out[1][0] = philox.draw(rstate, n, self.dtype, self.distribution).reshape(dims)

    def infer_shape(self, node, shapes):
        size = node.inputs[1]
        static = node.outputs[1].type.shape
        return [(philox.STATE_WORDS,), tuple(s if s is not None else size[d] for d, s in enumerate(static))]

    def grad(self, inputs, grads):
        # Sampling is not differentiable with respect to the state or the size (both integers).
        return [None, None]

    def connection_pattern(self, node):
        return [[False, False], [False, False]]


class UniformDraw(RandomDraw):
    """Uniform floats in the open interval (0, 1)."""

    distribution = "uniform"


class NormalDraw(RandomDraw):
    """Standard normal floats (Box-Muller on the uniforms of UniformDraw)."""

    distribution = "normal"
