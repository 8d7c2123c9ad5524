"""Theano functions built from existing ops: argmin, max_and_argmax, power, divmod,
isclose and allclose (each lowers natively through the ops it is made of)."""
import numpy as np

from . import math as M
from .basic import zeros_like
from .type import is_float
from .var import as_tensor_variable, constant


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum (the first one on ties), int64. Computed as the argmax of a
    decreasing function of x that cannot overflow: -x for floats, -1 - x for signed ints,
    MAX - x for unsigned ints, not x for bool."""
    x = as_tensor_variable(x)
    if x.dtype == "bool":
        flipped = M.eq(x, False)
    elif is_float(x.dtype):
        flipped = -x
    elif x.dtype.startswith("uint"):
        flipped = constant(np.asarray(np.iinfo(x.dtype).max, dtype=x.dtype)) - x
    else:
        flipped = constant(np.asarray(-1, dtype=x.dtype)) - x
    return M.argmax(flipped, axis=axis, keepdims=keepdims)


def max_and_argmax(a, axis=None, keepdims=False):
    """[max, argmax] of `a` along `axis` (all axes if None), as Theano's max_and_argmax."""
    a = as_tensor_variable(a)
    return [M.max(a, axis=axis, keepdims=keepdims), M.argmax(a, axis=axis, keepdims=keepdims)]


def power(x, y):
    """x ** y elementwise (numpy.power)."""
    return M.pow(x, y)


def divmod(x, y):
    """(x // y, x % y) elementwise, with numpy's floor rules (Python's divmod)."""
    return M.int_div(x, y), M.mod(x, y)


def _isnan(x):
    return M.neq(x, x) if is_float(x.dtype) else M.eq(zeros_like(x, "bool"), True)


def _isinf(x):
    if not is_float(x.dtype):
        return M.eq(zeros_like(x, "bool"), True)
    return M.eq(M.abs_(x), constant(np.asarray(np.inf, dtype=x.dtype)))


def _not(b):
    return M.eq(b, False)


def isclose(a, b, rtol=1.e-5, atol=1.e-8, equal_nan=False):
    """Elementwise |a - b| <= atol + rtol * |b| (numpy.isclose): infinities are close only to
    the same infinity, NaN to nothing unless equal_nan. A bool tensor."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    close = M.le(M.abs_(a - b), atol + rtol * M.abs_(b))
    a_nan, b_nan = _isnan(a), _isnan(b)
    a_inf, b_inf = _isinf(a), _isinf(b)
    special = (a_nan + b_nan) + (a_inf + b_inf)  # + and * of bools are or / and
    close = close * _not(special)
    same_inf = (a_inf * b_inf) * M.eq(M.sgn(a), M.sgn(b))
    close = close + same_inf
    if equal_nan:
        close = close + a_nan * b_nan
    return close


def allclose(a, b, rtol=1.e-5, atol=1.e-8, equal_nan=False):
    """Whether every element of a is close to b's (a bool scalar; see isclose)."""
    return M.min(isclose(a, b, rtol, atol, equal_nan))
