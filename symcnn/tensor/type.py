"""TensorType: a dtype, a number of dimensions and an optional static shape."""
import numpy as np

from ..config import config
from ..graph.type import Type

_KIND_NAMES = {0: "scalar", 1: "vector", 2: "matrix", 3: "tensor3", 4: "tensor4"}
int_dtypes = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
float_dtypes = ("float16", "float32", "float64")
all_dtypes = ("bool",) + int_dtypes + float_dtypes


def is_int(dtype):
    return dtype in int_dtypes or dtype == "bool"


def is_float(dtype):
    return dtype in float_dtypes


def normalize_dtype(dtype):
    if dtype == "floatX" or dtype is None:
        return config.floatX
    d = str(np.dtype(dtype))
    if d not in all_dtypes:
        raise TypeError(f"unsupported dtype {dtype!r}; use one of {', '.join(all_dtypes)}")
    return d


class TensorType(Type):
    """dtype + static shape (a tuple of int or None per dimension).

    `broadcastable` is Theano's pattern: True where the dimension is known to be 1.
    """

    def __init__(self, dtype, broadcastable=None, shape=None):
        self.dtype = normalize_dtype(dtype)
        if shape is None:
            if broadcastable is None:
                raise TypeError("TensorType needs a broadcastable pattern or a shape")
            shape = tuple(1 if b else None for b in broadcastable)
        shape = tuple(None if s is None else int(s) for s in shape)
        if broadcastable is not None:
            if len(broadcastable) != len(shape):
                raise ValueError(f"broadcastable {broadcastable} and shape {shape} disagree on ndim")
            shape = tuple(1 if b and s is None else s for b, s in zip(broadcastable, shape))
        if any(s is not None and s < 0 for s in shape):
            raise ValueError(f"negative static shape {shape}")
        self.shape = shape

    ndim = property(lambda self: len(self.shape))
    broadcastable = property(lambda self: tuple(s == 1 for s in self.shape))

    def __eq__(self, other):
        return type(other) is TensorType and self.dtype == other.dtype and self.shape == other.shape

    def __hash__(self):
        return hash((self.dtype, self.shape))

    def is_compatible(self, other):
        """Same dtype and ndim, static shapes not contradicting each other."""
        return (isinstance(other, TensorType) and self.dtype == other.dtype and self.ndim == other.ndim
                and all(a is None or b is None or a == b for a, b in zip(self.shape, other.shape)))

    def clone(self, dtype=None, shape=None):
        return TensorType(dtype or self.dtype, shape=self.shape if shape is None else shape)

    def __str__(self):
        kind = _KIND_NAMES.get(self.ndim, f"tensor{self.ndim}")
        known = any(s is not None for s in self.shape)
        shp = "(" + ", ".join("?" if s is None else str(s) for s in self.shape) + (",)" if self.ndim == 1 else ")")
        return f"{self.dtype} {kind}" + (f" {shp}" if known else "")

    __repr__ = __str__

    def filter(self, value, name=None, allow_downcast=False, fix=None):
        """Convert `value` to an ndarray of this type, or raise naming what differs.

        `fix`: what a refused lossy cast's message advises (default: converting the data or
        passing allow_input_downcast=True to function(), which is right for function inputs)."""
        who = f"'{name}'" if name else "value"
        if isinstance(value, np.ndarray) and value.dtype == self.dtype:
            arr = value
        else:
            arr = np.asarray(value)
            if arr.dtype != self.dtype:
                arr = self._convert(arr, value, who, allow_downcast, fix)
        if arr.ndim != self.ndim:
            raise TypeError(f"{who}: expected {self.ndim}-d {self.dtype} ({self}), got {arr.ndim}-d array "
                            f"with shape {arr.shape}")
        for i, (want, got) in enumerate(zip(self.shape, arr.shape)):
            if want is not None and want != got:
                raise ValueError(f"{who}: expected shape {_shape_str(self.shape)}, got {arr.shape} "
                                 f"(dimension {i} is {got}, not {want})")
        return arr

    def _convert(self, arr, value, who, allow_downcast, fix=None):
        src = arr.dtype
        if src == object:
            raise TypeError(f"{who}: expected {self.dtype} data, got {type(value).__name__}")
        python_scalar = isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)
        if np.can_cast(src, self.dtype, "safe") or allow_downcast:
            return arr.astype(self.dtype)
        if python_scalar:
            converted = np.asarray(value).astype(self.dtype)
            if converted == value:
                return converted
        if isinstance(value, (list, tuple)):
            # Nested Python lists are accepted when the conversion is lossless, as in Theano.
            converted = arr.astype(self.dtype)
            if np.array_equal(converted, arr):
                return converted
        if src.kind == "f" and self.dtype.startswith("float"):
            # A float64 array for a float32 input is the most common mismatch (Theano#4063).
            fix = fix or (f"Convert the data (numpy.asarray(x, dtype='{self.dtype}')) or pass "
                          f"allow_input_downcast=True to function()")
            raise TypeError(f"{who}: expected {self.dtype}, got {src}: casting would lose precision. {fix}")
        raise TypeError(f"{who}: expected {self.dtype}, got {src}, which cannot be cast to {self.dtype} safely")

    def value_zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def make_variable(self, name=None):
        from .var import TensorVariable
        return TensorVariable(self, name=name)


def _shape_str(shape):
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def upcast(*dtypes):
    """The dtype of combining arrays of these dtypes: numpy's, except that under
    config.cast_policy='numpy+floatX' with floatX='float32' a float64 result becomes float32
    unless one of the dtypes is float64 itself (Theano's theano.scalar.upcast): mixing
    float32 with int32 or int64 then stays float32."""
    from ..config import config
    rval = str(np.result_type(*[np.dtype(d) for d in dtypes]))
    if (rval == "float64" and config.cast_policy == "numpy+floatX" and config.floatX == "float32"
            and "float64" not in [str(np.dtype(d)) for d in dtypes]):
        return "float32"
    return rval
