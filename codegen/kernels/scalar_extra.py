"""Scalar lowerings of the rounding modes and of xlogx / xlogy0."""
from symcnn.tensor.rounding import RoundHalfAwayFromZero, RoundHalfToEven
from symcnn.tensor.xlogx import XlogX, XlogY0

from .. import irutil as U
from .. import vmath
from .elemwise import scalar_lowering


@scalar_lowering(RoundHalfAwayFromZero)
def _round_away(ctx, op, v, d, out):
    return ctx.b.call(U.intrinsic(ctx.module, "round", d[0]), v), d[0]


@scalar_lowering(RoundHalfToEven)
def _round_even(ctx, op, v, d, out):
    # rint rounds to even in the default floating-point environment, which symcnn never changes
    return ctx.b.call(U.intrinsic(ctx.module, "rint", d[0]), v), d[0]


def _zero_where_x_is_zero(ctx, x, value, dtype):
    b = ctx.b
    return b.select(b.fcmp_ordered("==", x, U.const(dtype, 0.0)), U.const(dtype, 0.0), value)


@scalar_lowering(XlogX)
def _xlogx(ctx, op, v, d, out):
    x, = v
    value = ctx.b.fmul(x, vmath.emit(ctx.b, ctx.module, "log", x, d[0]))
    return _zero_where_x_is_zero(ctx, x, value, d[0]), d[0]


@scalar_lowering(XlogY0)
def _xlogy0(ctx, op, v, d, out):
    x, y = v
    value = ctx.b.fmul(x, vmath.emit(ctx.b, ctx.module, "log", y, d[1]))
    return _zero_where_x_is_zero(ctx, x, value, d[0]), d[0]
