"""Scalar lowerings of the rounding modes, floor / ceil / trunc, log1p / expm1, softplus and
xlogx / xlogy0 (all inline: LLVM intrinsics or codegen.vmath, no libm call in the loop)."""
from symcnn.tensor.nnet.softplus import BOUNDS, Softplus
from symcnn.tensor.rounding import RoundHalfAwayFromZero, RoundHalfToEven
from symcnn.tensor.unary import Ceil, Expm1, Floor, Log1p, Trunc
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


_INTEGRAL = {Floor: "floor", Ceil: "ceil", Trunc: "trunc"}


@scalar_lowering(*_INTEGRAL)
def _integral(ctx, op, v, d, out):
    return ctx.b.call(U.intrinsic(ctx.module, _INTEGRAL[type(op)], d[0]), v), d[0]


@scalar_lowering(Log1p)
def _log1p(ctx, op, v, d, out):
    return vmath.emit(ctx.b, ctx.module, "log1p", v[0], d[0]), d[0]


@scalar_lowering(Expm1)
def _expm1(ctx, op, v, d, out):
    return vmath.emit(ctx.b, ctx.module, "expm1", v[0], d[0]), d[0]


@scalar_lowering(Softplus)
def _softplus(ctx, op, v, d, out):
    lo, hi = BOUNDS[d[0]]
    return vmath.softplus(ctx.b, ctx.module, v[0], d[0], lo, hi), d[0]
