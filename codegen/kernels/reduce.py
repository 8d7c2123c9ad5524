"""Sum, Prod, ProdWithoutZeros, Max and Argmax over any set of axes."""
from llvmlite import ir

from symcnn.tensor.math import Argmax, Max, Sum
from symcnn.tensor.prod import Prod, ProdWithoutZeros

from .. import irutil as U
from ..lower import E_VALUE, Array, lower


def _split(x, axis):
    kept = [d for d in range(x.ndim) if d not in axis]
    outer = Array(x.dtype, x.ptr, [x.shape[d] for d in kept], [x.strides[d] for d in kept])
    inner_shape = [x.shape[d] for d in axis]
    inner_strides = [x.strides[d] for d in axis]
    return kept, outer, inner_shape, inner_strides


def _reduce(ctx, node, x, init, step, finish):
    """out[kept] = finish(fold(step, init, x[kept, reduced]))."""
    b = ctx.b
    axis = node.op.axis
    kept, outer, inner_shape, inner_strides = _split(x, axis)
    out = ctx.alloc(node.outputs[0], outer.shape)
    with U.loop_nest(b, outer.shape, name="o") as oidx:
        base = outer.offset(b, oidx)
        acc = init()
        flat = ctx.local(U.I64, U.i64(0))
        with U.loop_nest(b, inner_shape, name="r") as ridx:
            off = base
            for i, s in zip(ridx, inner_strides):
                off = U.add(b, off, U.mul(b, i, s))
            v = b.load(x.flat_addr(b, off), typ=x.lltype)
            k = b.load(flat, typ=U.I64)
            step(acc, v, k)
            b.store(b.add(k, U.i64(1)), flat)
        out.store(b, oidx, finish(acc))
    return out


@lower.register(Sum)
def lower_sum(ctx, node, ins):
    x, = ins
    b = ctx.b
    out_dt = node.outputs[0].dtype
    acc_dt = "float64" if U.is_float(out_dt) else out_dt

    def init():
        return ctx.local(U.ll_type(acc_dt), U.const(acc_dt, 0))

    def step(acc, v, k):
        v = U.cast_value(b, v, x.dtype, acc_dt)
        cur = b.load(acc, typ=U.ll_type(acc_dt))
        b.store((b.fadd if U.is_float(acc_dt) else b.add)(cur, v), acc)

    def finish(acc):
        return U.cast_value(b, b.load(acc, typ=U.ll_type(acc_dt)), acc_dt, out_dt)

    return [_reduce(ctx, node, x, init, step, finish)]


def _lower_product(ctx, node, x, skip_zeros):
    """Product in float64 for floats (the sum's accumulator rule), in the result's dtype for ints;
    skip_zeros multiplies by 1 where an element is 0 (ProdWithoutZeros)."""
    b = ctx.b
    out_dt = node.outputs[0].dtype
    acc_dt = "float64" if U.is_float(out_dt) else out_dt
    at = U.ll_type(acc_dt)

    def init():
        return ctx.local(at, U.const(acc_dt, 1))

    def step(acc, v, k):
        w = U.cast_value(b, v, x.dtype, acc_dt)
        cur = b.load(acc, typ=at)
        nxt = (b.fmul if U.is_float(acc_dt) else b.mul)(cur, w)
        if skip_zeros:
            if U.is_float(x.dtype):
                zero = b.fcmp_ordered("==", v, U.const(x.dtype, 0))
            else:
                zero = b.icmp_unsigned("==", v, U.const(x.dtype, 0))
            nxt = b.select(zero, cur, nxt)
        b.store(nxt, acc)

    def finish(acc):
        return U.cast_value(b, b.load(acc, typ=at), acc_dt, out_dt)

    return [_reduce(ctx, node, x, init, step, finish)]


@lower.register(Prod)
def lower_prod(ctx, node, ins):
    return _lower_product(ctx, node, ins[0], skip_zeros=False)


@lower.register(ProdWithoutZeros)
def lower_prod_without_zeros(ctx, node, ins):
    return _lower_product(ctx, node, ins[0], skip_zeros=True)


def _nonempty(ctx, x, axis):
    """Like numpy: fail only if some result element would reduce nothing."""
    b = ctx.b
    n = U.as_value(b, U.product(b, [x.shape[d] for d in axis]))
    kept = U.as_value(b, U.product(b, [x.shape[d] for d in range(x.ndim) if d not in axis]))
    ctx.fail_if(b.and_(b.icmp_signed("==", n, U.i64(0)), b.icmp_signed(">", kept, U.i64(0))), E_VALUE, n)


def greater(b, v, best, dtype):
    """v beats best: larger, or NaN where best is not (numpy propagates the first NaN)."""
    if U.is_float(dtype):
        return b.or_(b.fcmp_ordered(">", v, best),
                     b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best)))
    return (b.icmp_unsigned if U.is_unsigned(dtype) else b.icmp_signed)(">", v, best)


def lowest_value(dtype):
    import numpy as np
    if U.is_float(dtype):
        return U.const(dtype, float("-inf"))
    return U.const(dtype, np.iinfo(dtype).min if dtype != "bool" else 0)


def empty_reduction_message(what):
    """The error-message hook of a lowering that writes E_VALUE for a reduction of no elements."""
    def message(code, node, where, vals):
        if code == E_VALUE:
            return ValueError, f"{where}: cannot reduce over an empty dimension (a {what} of length 0)"
        return None
    return message


@lower.register(Max, error_message=empty_reduction_message("max"))
def lower_max(ctx, node, ins):
    x, = ins
    b = ctx.b
    _nonempty(ctx, x, node.op.axis)

    def init():
        return ctx.local(x.lltype, lowest_value(x.dtype))

    def step(acc, v, k):
        cur = b.load(acc, typ=x.lltype)
        b.store(b.select(greater(b, v, cur, x.dtype), v, cur), acc)

    def finish(acc):
        return U.cast_value(b, b.load(acc, typ=x.lltype), x.dtype, node.outputs[0].dtype)

    return [_reduce(ctx, node, x, init, step, finish)]


@lower.register(Argmax, error_message=empty_reduction_message("argmax"))
def lower_argmax(ctx, node, ins):
    x, = ins
    b = ctx.b
    _nonempty(ctx, x, node.op.axis)
    state = {}

    def init():
        state["best"] = ctx.local(x.lltype, lowest_value(x.dtype))
        state["first"] = ctx.local(U.I1, ir.Constant(U.I1, 1))
        return ctx.local(U.I64, U.i64(0))

    def step(acc, v, k):
        best = b.load(state["best"], typ=x.lltype)
        first = b.load(state["first"], typ=U.I1)
        take = b.or_(first, greater(b, v, best, x.dtype))
        if U.is_float(x.dtype):  # once a NaN is the best, nothing replaces it
            take = b.and_(take, b.or_(first, b.fcmp_ordered("ord", best, best)))
        b.store(b.select(take, v, best), state["best"])
        b.store(b.select(take, k, b.load(acc, typ=U.I64)), acc)
        b.store(ir.Constant(U.I1, 0), state["first"])

    def finish(acc):
        return b.load(acc, typ=U.I64)

    return [_reduce(ctx, node, x, init, step, finish)]
