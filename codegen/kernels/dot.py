"""Dot: matrix/vector products as one loop nest (i, p, j) with a contiguous inner loop."""
from symcnn.tensor.math import Dot

from .. import irutil as U
from ..lower import E_SHAPE, Array, lower


def as_matrix(a, row):
    """A vector as a 1 x n (row=True) or n x 1 matrix view; matrices unchanged."""
    if a.ndim == 2:
        return a
    if row:
        return Array(a.dtype, a.ptr, [1, a.shape[0]], [0, a.strides[0]])
    return Array(a.dtype, a.ptr, [a.shape[0], 1], [a.strides[0], 0])


@lower.register(Dot)
def lower_dot(ctx, node, ins):
    b = ctx.b
    x, y = ins
    out_var = node.outputs[0]
    ctx.check_equal(x.shape[-1], y.shape[0], E_SHAPE)
    a, c = as_matrix(x, row=True), as_matrix(y, row=False)
    m, k, n = a.shape[0], a.shape[1], c.shape[1]
    out_shape = list(x.shape[:-1]) + list(y.shape[1:])
    out = ctx.alloc(out_var, out_shape)
    o = Array(out.dtype, out.ptr, [m, n], b=b)
    dt = out.dtype
    zero = U.const(dt, 0)
    if dt == "bool":  # numpy: any(a and b); 0/1 bytes stay 0/1
        fadd, fmul = b.or_, b.and_
    else:
        fadd, fmul = (b.fadd, b.fmul) if U.is_float(dt) else (b.add, b.mul)
    with U.for_range(b, m, name="i") as i:
        with U.for_range(b, n, name="j0") as j:
            o.store(b, [i, j], zero)
        with U.for_range(b, k, name="p") as p:
            av = U.cast_value(b, a.load(b, [i, p]), a.dtype, dt)
            with U.for_range(b, n, name="j") as j:
                bv = U.cast_value(b, c.load(b, [p, j]), c.dtype, dt)
                cur = o.load(b, [i, j])
                o.store(b, [i, j], fadd(cur, fmul(av, bv)))
    return [out]
