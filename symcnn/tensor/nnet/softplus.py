"""T.nnet.softplus: log(1 + exp(x)), computed stably as Theano 1.0's C code does."""
import numpy as np

from ... import scalar as ts
from ..elemwise import register

# Beyond these, log1p(exp(x)) is x (above) or 0 (below) after rounding in the dtype;
# Theano 1.0's C implementation uses the same bounds.
BOUNDS = {"float32": (-103.0, 14.0), "float64": (-745.0, 16.0)}


def _softplus(x):
    x = np.asarray(x)
    lo, hi = BOUNDS["float32" if x.dtype == np.float32 else "float64"]
    with np.errstate(over="ignore"):
        mid = np.log1p(np.exp(np.minimum(x, hi)))
    return np.where(x < lo, np.zeros_like(x), np.where(x > hi, x, mid)).astype(x.dtype)


class Softplus(ts.UnaryFloat):
    name, impl = "softplus", staticmethod(_softplus)

    def grad(self, inputs, output, g):
        from .. import math as M
        return [g * M.sigmoid(inputs[0])]


softplus = register("softplus", Softplus())
