"""TensorVariable: operators and methods that build graphs (x + y, x[i], x.sum())."""
import numpy as np

from ..graph.basic import Constant, Variable
from .type import TensorType


class TensorOps:
    """Graph-building operators shared by variables, constants and shared variables."""

    ndim = property(lambda self: self.type.ndim)
    dtype = property(lambda self: self.type.dtype)
    broadcastable = property(lambda self: self.type.broadcastable)

    @property
    def shape(self):
        from . import basic
        return basic.shape(self)

    @property
    def T(self):
        return self.dimshuffle(*reversed(range(self.ndim)))

    # arithmetic (numpy / Theano operator semantics)
    def __add__(self, o): return _m().add(self, o)
    def __radd__(self, o): return _m().add(o, self)
    def __sub__(self, o): return _m().sub(self, o)
    def __rsub__(self, o): return _m().sub(o, self)
    def __mul__(self, o): return _m().mul(self, o)
    def __rmul__(self, o): return _m().mul(o, self)
    def __truediv__(self, o): return _m().true_div(self, o)
    def __rtruediv__(self, o): return _m().true_div(o, self)
    def __floordiv__(self, o): return _m().int_div(self, o)
    def __rfloordiv__(self, o): return _m().int_div(o, self)
    def __mod__(self, o): return _m().mod(self, o)
    def __pow__(self, o): return _m().pow(self, o)
    def __rpow__(self, o): return _m().pow(o, self)
    def __neg__(self): return _m().neg(self)
    def __pos__(self): return self
    def __abs__(self): return _m().abs_(self)

    # comparisons build graphs, as in Theano (== and != stay identity: use T.eq / T.neq)
    def __lt__(self, o): return _comparison(_m().lt(self, o))
    def __le__(self, o): return _comparison(_m().le(self, o))
    def __gt__(self, o): return _comparison(_m().gt(self, o))
    def __ge__(self, o): return _comparison(_m().ge(self, o))

    # Theano's rule: every variable is true (so `if not W:` tests for None), except the result of
    # a comparison operator, so that `a < b < c` (Python's `(a < b) and (b < c)`) cannot silently
    # drop a comparison.
    _is_nonzero = True

    def __bool__(self):
        if self._is_nonzero:
            return True
        from ..graph.trace import with_trace
        raise TypeError(with_trace(
            f"Variables do not support boolean operations: {self.describe()} is the result of a "
            f"comparison (a chained comparison such as a < b < c, or `if x < y:`); choose between symbolic "
            f"values with T.switch (or theano.ifelse.ifelse) in the graph", self.trace))

    def __iter__(self):
        # Theano iterates a vector whose length is known when building (x.shape, a constant).
        if self.ndim == 1 and self.type.shape[0] is not None:
            return (self[i] for i in range(self.type.shape[0]))
        raise TypeError(f"symbolic variable {self.describe()} cannot be iterated (only vectors of known length "
                        f"can); index it (x[i]) instead")

    def __len__(self):
        raise TypeError(f"symbolic variable {self.describe()} has no len(); use x.shape[0]")

    def __getitem__(self, idx):
        from . import subtensor
        return subtensor.getitem(self, idx)

    # methods
    def sum(self, axis=None, dtype=None, keepdims=False, acc_dtype=None):
        return _m().sum(self, axis=axis, dtype=dtype, keepdims=keepdims, acc_dtype=acc_dtype)

    def mean(self, axis=None, dtype=None, keepdims=False, acc_dtype=None):
        return _m().mean(self, axis=axis, dtype=dtype, keepdims=keepdims, acc_dtype=acc_dtype)

    def prod(self, axis=None, dtype=None, keepdims=False, acc_dtype=None, no_zeros_in_input=False):
        from .prod import prod
        return prod(self, axis=axis, dtype=dtype, keepdims=keepdims, acc_dtype=acc_dtype,
                    no_zeros_in_input=no_zeros_in_input)

    def var(self, axis=None, ddof=0, keepdims=False, corrected=False):
        from .moments import var
        return var(self, axis=axis, ddof=ddof, keepdims=keepdims, corrected=corrected)

    def std(self, axis=None, ddof=0, keepdims=False, corrected=False):
        from .moments import std
        return std(self, axis=axis, ddof=ddof, keepdims=keepdims, corrected=corrected)

    def max(self, axis=None, keepdims=False): return _m().max(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _m().min(self, axis=axis, keepdims=keepdims)
    def argmax(self, axis=None, keepdims=False): return _m().argmax(self, axis=axis, keepdims=keepdims)
    def dot(self, o): return _m().dot(self, o)
    def astype(self, dtype): return _b().cast(self, dtype)
    def zeros_like(self, dtype=None): return _b().zeros_like(self, dtype=dtype)
    def ones_like(self, dtype=None): return _b().ones_like(self, dtype=dtype)
    def argmin(self, axis=None, keepdims=False):
        from .math_extra import argmin
        return argmin(self, axis=axis, keepdims=keepdims)
    def reshape(self, shape, ndim=None): return _b().reshape(self, shape, ndim=ndim)
    def flatten(self, ndim=1, outdim=None): return _b().flatten(self, outdim or ndim)
    def dimshuffle(self, *pattern): return _b().dimshuffle(self, *pattern)
    def transpose(self, *axes): return _b().transpose(self, axes or None)

    def eval(self, inputs_to_values=None):
        """Compile and run this variable's graph once (inputs given as a dict)."""
        from ..compile.function import function
        inputs_to_values = inputs_to_values or {}
        fn = function(list(inputs_to_values), self, on_unused_input="ignore")
        return fn(*inputs_to_values.values())

    def dprint(self, **kwargs):
        from ..printing import debugprint
        return debugprint(self, **kwargs)


def _comparison(v):
    v._is_nonzero = False
    return v


def _m():
    from . import math
    return math


def _b():
    from . import basic
    return basic


class TensorVariable(TensorOps, Variable):
    pass


class TensorConstant(TensorOps, Constant):
    @property
    def value(self):
        """The constant's data (Theano's TensorConstant.value)."""
        return self.data


def constant(value, name=None, dtype=None, ndim=None):
    """A TensorConstant. Under config.cast_policy='custom' (Theano's default) Python ints take
    the smallest int dtype holding them; under 'numpy+floatX' they take numpy's (int64).
    Python floats take floatX (Theano's autocast), so `x * 0.1` keeps x's dtype; except under
    'custom' with floatX='float64', where a float float32 holds exactly (0.5, not 0.1) is
    float32, as in Theano."""
    from ..config import config
    if dtype is None:
        if isinstance(value, np.generic):
            dtype = str(value.dtype)  # numpy scalars keep their dtype (np.float64 is also a float)
        elif isinstance(value, (bool, np.bool_)):
            dtype = "bool"
        elif isinstance(value, int) and config.cast_policy == "numpy+floatX":
            dtype = str(np.asarray(value).dtype)
        elif isinstance(value, int):
            dtype = next(d for d in ("int8", "int16", "int32", "int64") if np.iinfo(d).min <= value <= np.iinfo(d).max)
        elif isinstance(value, float):
            dtype = config.floatX
            if dtype == "float32" and np.isfinite(value) and abs(value) > float(np.finfo("float32").max):
                dtype = "float64"
            elif dtype == "float64" and config.cast_policy == "custom" and float(np.float32(value)) == value:
                dtype = "float32"  # Theano's custom autocast: the smallest float holding the value exactly
    arr = np.asarray(value, dtype=dtype)
    if ndim is not None and arr.ndim != ndim:
        if arr.ndim < ndim:
            arr = arr.reshape((1,) * (ndim - arr.ndim) + arr.shape)
        else:
            raise ValueError(f"constant of shape {arr.shape} cannot have {ndim} dimensions")
    return TensorConstant(TensorType(str(arr.dtype), shape=arr.shape), arr, name=name)


def as_tensor_variable(x, name=None, ndim=None):
    """Variables pass through; numbers and arrays become constants; lists of
    scalars (symbolic or not) become a vector."""
    if isinstance(x, Variable):
        if not isinstance(x.type, TensorType):
            raise TypeError(f"expected a tensor, got {x.describe()}")
        if ndim is not None and x.ndim != ndim:
            raise TypeError(f"expected a {ndim}-d tensor, got {x.describe()}")
        return x
    if isinstance(x, (list, tuple)) and any(isinstance(e, Variable) for e in x):
        from .basic import stack_scalars
        return stack_scalars(x)
    if isinstance(x, (int, float, bool, np.ndarray, np.generic, list, tuple)):
        return constant(x, name=name, ndim=ndim)
    raise TypeError(f"cannot convert {type(x).__name__} {x!r} to a symbolic tensor")
