"""Softmax over the last axis (vector or matrix), numerically stable: per row,
m = max(x), e = exp(x - m), out = e / sum(e) (the sum accumulated in float64)."""
from symcnn.tensor.nnet.basic import Softmax

from .. import irutil as U
from ..lower import E_VALUE, Array, lower
from .reduce import _greater, _lowest


@lower.register(Softmax)
def lower_softmax(ctx, node, ins):
    b = ctx.b
    x, = ins
    dt = node.outputs[0].dtype
    out = ctx.alloc(node.outputs[0], x.shape)
    # As a matrix: a vector is one row.
    if x.ndim == 1:
        xm = Array(x.dtype, x.ptr, [1, x.shape[0]], [0, x.strides[0]])
        om = Array(out.dtype, out.ptr, [1, out.shape[0]], b=b)
    else:
        xm, om = x, out
    rows, n = xm.shape
    # numpy's max over an empty axis raises: so does this.
    if isinstance(n, int):
        if n == 0:
            ctx.fail_if(U.I1(1), E_VALUE, 0)
    else:
        ctx.fail_if(b.icmp_signed("==", n, U.i64(0)), E_VALUE, n)
    exp = U.libm(ctx.module, "exp", dt)
    t = U.ll_type(dt)
    with U.for_range(b, rows, name="row") as r:
        best = ctx.local(t, _lowest(dt))
        with U.for_range(b, n, name="mx") as j:
            v = U.cast_value(b, xm.load(b, [r, j]), x.dtype, dt)
            cur = b.load(best, typ=t)
            b.store(b.select(_greater(b, v, cur, dt), v, cur), best)
        m = b.load(best, typ=t)
        acc = ctx.local(U.F64, U.const("float64", 0.0))
        with U.for_range(b, n, name="ex") as j:
            v = U.cast_value(b, xm.load(b, [r, j]), x.dtype, dt)
            e = b.call(exp, [b.fsub(v, m)])
            om.store(b, [r, j], e)
            b.store(b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, e, dt, "float64")), acc)
        total = U.cast_value(b, b.load(acc, typ=U.F64), "float64", dt)
        with U.for_range(b, n, name="nm") as j:
            om.store(b, [r, j], b.fdiv(om.load(b, [r, j]), total))
    return [out]
