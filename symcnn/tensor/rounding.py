"""T.round (Theano's modes 'half_away_from_zero', the default, and 'half_to_even')."""
import numpy as np

from .. import scalar as ts
from ..graph.trace import user_trace, with_trace
from .elemwise import register
from .type import is_float
from .var import as_tensor_variable


class _Round(ts.ScalarOp):
    """Rounding of floats (as in Theano, integer inputs are refused: they are already whole)."""

    def out_dtype(self, d):
        if not is_float(d):
            raise TypeError(f"{self.name} takes floats, got {d}")
        return d

    def grad(self, inputs, output, g):
        # Piecewise constant: Theano's gradient is zero everywhere.
        from . import basic
        return [basic.zeros_like(inputs[0])]


def _half_away_from_zero(x):
    x = np.asarray(x)
    return np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5)).astype(x.dtype)


class RoundHalfAwayFromZero(_Round):
    name, impl = "round_half_away_from_zero", staticmethod(_half_away_from_zero)


class RoundHalfToEven(_Round):
    name, impl = "round_half_to_even", staticmethod(np.round)


round_half_away_from_zero = register("round_half_away_from_zero", RoundHalfAwayFromZero())
round_half_to_even = register("round_half_to_even", RoundHalfToEven())

_MODES = {"half_away_from_zero": round_half_away_from_zero, "half_to_even": round_half_to_even}


def round(a, mode=None):
    """T.round(a, mode='half_away_from_zero'): 2.5 -> 3, -2.5 -> -3; mode='half_to_even' gives
    numpy's rounding (2.5 -> 2)."""
    mode = "half_away_from_zero" if mode is None else mode
    if mode not in _MODES:
        raise ValueError(with_trace(f"round: mode must be one of {sorted(_MODES)}, got {mode!r}", user_trace()))
    return _MODES[mode](as_tensor_variable(a))
