"""Elementwise log1p, expm1, floor, ceil, trunc and iround (Theano's T.log1p ... T.iround)."""
import numpy as np

from .. import scalar as ts
from .elemwise import register


class Log1p(ts.UnaryFloat):
    """log(1 + x), accurate where x is tiny."""

    name, impl = "log1p", staticmethod(np.log1p)

    def grad(self, inputs, output, g):
        return [g / (1 + inputs[0])]


class Expm1(ts.UnaryFloat):
    """exp(x) - 1, accurate where x is tiny."""

    name, impl = "expm1", staticmethod(np.expm1)

    def grad(self, inputs, output, g):
        return [g * (output + 1)]


class _Integral(ts.UnaryFloat):
    """Rounding to a whole number; as in Theano, integers are computed in float and the
    gradient is zero (piecewise constant)."""

    def grad(self, inputs, output, g):
        from . import basic
        return [basic.zeros_like(inputs[0])]


class Floor(_Integral):
    name, impl = "floor", staticmethod(np.floor)


class Ceil(_Integral):
    name, impl = "ceil", staticmethod(np.ceil)


class Trunc(_Integral):
    name, impl = "trunc", staticmethod(np.trunc)


log1p = register("log1p", Log1p())
expm1 = register("expm1", Expm1())
floor = register("floor", Floor())
ceil = register("ceil", Ceil())
trunc = register("trunc", Trunc())


def iround(a, mode=None):
    """Theano's T.iround: round(a, mode) as int64."""
    from .basic import cast
    from .rounding import round
    return cast(round(a, mode), "int64")
