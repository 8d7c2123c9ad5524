"""theano.tensor.xlogx: x * log(x) and x * log(y), defined as 0 where x == 0."""
import numpy as np

from .. import scalar as ts
from .elemwise import register


class XlogX(ts.UnaryFloat):
    """x * log(x), 0 at x == 0 (the limit)."""

    name = "xlogx"

    @staticmethod
    def impl(x):
        x = np.asarray(x)
        return np.where(x == 0, np.zeros_like(x), x * np.log(x))

    def grad(self, inputs, output, g):
        from . import math as M
        return [g * (1 + M.log(inputs[0]))]


class XlogY0(ts.ScalarOp):
    """x * log(y), 0 where x == 0 (whatever y is)."""

    nin, name = 2, "xlogy0"

    def out_dtype(self, a, b):
        return ts.upgrade_to_float(ts.upcast(a, b))

    @staticmethod
    def impl(x, y):
        x, y = np.asarray(x), np.asarray(y)
        return np.where(x == 0, np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=x.dtype), x * np.log(y))

    def grad(self, inputs, output, g):
        from . import math as M
        x, y = inputs
        return [g * M.log(y), g * x / y]


xlogx = register("xlogx", XlogX())
xlogy0 = register("xlogy0", XlogY0())
