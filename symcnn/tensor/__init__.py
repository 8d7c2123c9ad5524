"""symcnn.tensor, used as `T`: Theano's tensor API."""
from ..config import config as _config
from ..gradient import Lop, Rop, grad  # noqa: F401
from .basic import (ARange, Flatten, MakeVector, Reshape, Shape, Shape_i, arange, cast, dimshuffle,  # noqa: F401
                    fill, flatten, ones_like, reshape, second, shape, stack_scalars, transpose, zeros_like)
from .elemwise import DimShuffle, Elemwise  # noqa: F401
from .math import (Argmax, Dot, Max, Sum, abs, abs_, add, argmax, ceil_div, clip, div, dot, eq, exp, ge,  # noqa: F401
                   gt, identity, int_div, le, log, lt, max, maximum, mean, min, minimum, mod, mul, neg, neq,
                   outer, pow, sgn, sigmoid, sqr, sqrt, sub, sum, switch, tanh, true_div)
from .math_extra import allclose, argmin, divmod, isclose, max_and_argmax, power  # noqa: F401
from .scalar_constant import (EmptyConstantError, NoneConst, NotScalarConstantError,  # noqa: F401
                              get_scalar_constant_value)
from .subtensor import (AdvancedIncSubtensor, AdvancedSubtensor, IncSubtensor, Subtensor,  # noqa: F401
                        inc_subtensor, set_subtensor)
from .type import TensorType  # noqa: F401
from .var import TensorConstant, TensorVariable, as_tensor_variable, constant  # noqa: F401
from . import nnet  # noqa: F401
from . import signal  # noqa: F401

_PREFIX = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32", "d": "float64"}
_KINDS = {"scalar": 0, "vector": 1, "matrix": 2, "row": 2, "col": 2, "tensor3": 3, "tensor4": 4, "tensor5": 5}


def _maker(kind, prefix):
    ndim = _KINDS[kind]

    def make(name=None, dtype=None, shape=None):
        dt = _PREFIX[prefix] if prefix else (dtype or _config.floatX)
        if shape is None:
            shape = {"row": (1, None), "col": (None, 1)}.get(kind, (None,) * ndim)
        if len(shape) != ndim:
            raise ValueError(f"{prefix}{kind} has {ndim} dimensions, got shape {shape}")
        return TensorType(dt, shape=shape)(name)

    make.__name__ = prefix + kind
    make.__doc__ = f"A symbolic {ndim}-d {_PREFIX.get(prefix, 'floatX')} variable (Theano's T.{prefix}{kind})."
    return make


for _kind in _KINDS:
    for _p in [""] + list(_PREFIX):
        globals()[_p + _kind] = _maker(_kind, _p)


def tensor(dtype=None, broadcastable=None, name=None, shape=None):
    """T.tensor(dtype, broadcastable, name) as in Theano, or with a static shape."""
    return TensorType(dtype or _config.floatX, broadcastable=broadcastable, shape=shape)(name)


from .join import Alloc, Join, alloc, concatenate, join, ones, stack, zeros  # noqa: F401,E402
from .rounding import round, round_half_away_from_zero, round_half_to_even  # noqa: F401,E402
from . import xlogx  # noqa: F401,E402  (T.xlogx.xlogx, T.xlogx.xlogy0)
from .nd_dot import batched_dot, batched_tensordot, tensordot  # noqa: F401,E402
from .unary import ceil, expm1, floor, iround, log1p, trunc  # noqa: F401,E402
from .prod import Prod, ProdWithoutZeros, prod  # noqa: F401,E402
from .moments import std, var  # noqa: F401,E402  (T.var is the function, as in Theano)
from .constructors import plural as _plural, plural_names as _plural_names  # noqa: E402

for _many, _one in _plural_names():
    globals()[_many] = _plural(globals()[_one])


def __getattr__(name):
    # T.shared_randomstreams / T.raw_random as attributes (Theano code writes
    # T.shared_randomstreams.RandomStreams); imported on first use because they need
    # symcnn.compile, which imports this package.
    if name in ("shared_randomstreams", "raw_random"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
from .sort import ArgSortOp, SortOp, argsort, sort  # noqa: F401,E402
