"""Pool (max / sum / average_inc_pad / average_exc_pad), MaxPoolGrad, AveragePoolGrad
and MaxPoolGradGrad over the last two dimensions of an N-d tensor.

Leading dimensions are flattened into one image index. Windows are visited row by
row; the rows and columns whose windows lie entirely inside the image (no padding,
no partial border window) form an interior range whose windows have a static size,
so their element loops are unrolled and the loop over output columns can be
vectorised. Border windows are clipped to the image at run time. With no padding
and ignore_border=True every window is interior and no border code is emitted.
"""
from symcnn.tensor.signal import pool_geometry
from symcnn.tensor.signal.pool import AveragePoolGrad, MaxPoolGrad, MaxPoolGradGrad, Pool

from .. import irutil as U
from ..lower import E_SHAPE, lower
from ..irutil import ceildiv, floordiv, gep
from .conv import IRArith, clamp, dense
from .reduce import greater, lowest_value

UNROLL = 16   # windows with at most this many rows (cols) are unrolled


def out_len(b, n, ws, st, pad, ignore_border):
    """Theano's pooled length (symcnn.tensor.signal.pool_geometry.out_len) of an axis of length
    n >= 0. ws, st, pad may be i64 values (checked positive, pad < ws, before this runs)."""
    return pool_geometry.out_len(n, ws, st, pad, ignore_border, IRArith(b))


class Geometry:
    """Where the windows fall. ws, st, pad: pairs of ints (the op's static geometry) or of
    i64 values read at run time (RuntimePool and its gradients)."""

    def __init__(self, ctx, op, x, ws=None, st=None, pad=None):
        b = ctx.b
        self.lead = list(x.shape[:-2])
        self.N = U.product(b, self.lead)
        self.h, self.w = x.shape[-2], x.shape[-1]
        if ws is None:
            ws, st, pad = op.ws, op.stride, op.pad
        self.ws, self.st, self.pad = ws, st, pad
        self.ignore_border = op.ignore_border
        self.nr = out_len(b, self.h, ws[0], st[0], pad[0], op.ignore_border)
        self.nc = out_len(b, self.w, ws[1], st[1], pad[1], op.ignore_border)
        self.simple = op.ignore_border and all(isinstance(p, int) and p == 0 for p in pad)

    def pin(self, *shapes):
        """Pooled dims checked equal to these shapes' last two: use static ones where any is."""
        for d, attr in ((-2, "nr"), (-1, "nc")):
            for s in shapes:
                if isinstance(s[d], int):
                    setattr(self, attr, s[d])
                    break

    @property
    def pooled_shape(self):
        return self.lead + [self.nr, self.nc]


def _interior(b, n_out, size, ws, st, pad, simple):
    """(lo, hi): the output positions whose windows lie inside [0, size) form [lo, hi)."""
    if simple:
        return 0, n_out
    lo = clamp(b, ceildiv(b, pad, st), 0, n_out)
    hi = clamp(b, U.add(b, floordiv(b, U.add(b, U.sub(b, size, ws), pad), st), 1), lo, n_out)
    return lo, hi


def _border_loop(b, lo, hi, n_out, name):
    """for the positions in [0, lo) and [hi, n_out) (one loop): yields the position."""
    count = U.add(b, lo, U.sub(b, n_out, hi))
    if isinstance(count, int) and count <= 0:
        return None
    return count, lambda t: (t if isinstance(t, int) else
                             b.select(b.icmp_signed("<", t, U.as_value(b, lo)), t,
                                      U.as_value(b, U.add(b, U.sub(b, t, lo), hi))))


def _span(b, pos, ws, st, pad, size, interior):
    """(lo, hi, static count or None): the input positions of window `pos`, clipped to the image."""
    start = U.sub(b, U.mul(b, pos, st), pad)
    if interior:
        return start, U.add(b, start, ws), ws
    return U.smax(b, start, 0), U.smin(b, U.add(b, start, ws), size), None


def _each(b, span, fn, name):
    lo, hi, count = span
    if isinstance(count, int) and count <= UNROLL:
        for u in range(count):
            fn(U.add(b, lo, u))
        return
    with U.for_range(b, hi, start=lo, name=name) as k:
        fn(k)


def windows(ctx, g, body):
    """for every image n and window (i, j): body(n, i, j, row span, col span).

    Three loop bodies: interior rows x interior columns (static window), interior rows x
    border columns, and border rows x all columns (clipped windows)."""
    b = ctx.b
    ilo, ihi = _interior(b, g.nr, g.h, g.ws[0], g.st[0], g.pad[0], g.simple)
    jlo, jhi = _interior(b, g.nc, g.w, g.ws[1], g.st[1], g.pad[1], g.simple)
    rb = None if g.simple else _border_loop(b, ilo, ihi, g.nr, "pbi")
    cb = None if g.simple else _border_loop(b, jlo, jhi, g.nc, "pbj")
    with U.for_range(b, g.N, name="img") as n:
        with U.for_range(b, ihi, start=ilo, name="pi") as i:
            rs = _span(b, i, g.ws[0], g.st[0], g.pad[0], g.h, True)
            with U.for_range(b, jhi, start=jlo, name="pj") as j:
                body(n, i, j, rs, _span(b, j, g.ws[1], g.st[1], g.pad[1], g.w, True))
            if cb is not None:
                with U.for_range(b, cb[0], name="pbj") as t:
                    j = cb[1](t)
                    body(n, i, j, rs, _span(b, j, g.ws[1], g.st[1], g.pad[1], g.w, False))
        if rb is not None:
            with U.for_range(b, rb[0], name="pbi") as t:
                i = rb[1](t)
                rs = _span(b, i, g.ws[0], g.st[0], g.pad[0], g.h, False)
                with U.for_range(b, g.nc, name="pbc") as j:
                    body(n, i, j, rs, _span(b, j, g.ws[1], g.st[1], g.pad[1], g.w, False))


def each_element(b, g, n, rs, cs, fn):
    """fn(flat offset in an (N, h, w) image stack) for every element of the window."""
    base = U.mul(b, n, U.mul(b, g.h, g.w))

    def row(r):
        rbase = U.add(b, base, U.mul(b, r, g.w))
        _each(b, cs, lambda c: fn(U.add(b, rbase, c)), "wc")

    _each(b, rs, row, "wr")


def out_index(b, g, n, i, j):
    return U.add(b, U.mul(b, U.add(b, U.mul(b, n, g.nr), i), g.nc), j)


def count(b, rs, cs):
    """Number of image elements in the (clipped) window."""
    return U.mul(b, U.sub(b, rs[1], rs[0]), U.sub(b, cs[1], cs[0]))


def check_shape(ctx, arr, want):
    for d, (x, y) in enumerate(zip(arr.shape, want)):
        ctx.check_equal(x, y, E_SHAPE, d)


def _load(b, arr, off):
    return b.load(gep(b, arr.ptr, off, arr.lltype), typ=arr.lltype)


def _zero(ctx, arr):
    b = ctx.b
    with U.for_range(b, arr.size(b), name="z") as k:
        b.store(U.const(arr.dtype, 0), gep(b, arr.ptr, k, arr.lltype))


# -- lowerings -------------------------------------------------------------------------------

@lower.register(Pool)
def lower_pool(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    return emit_pool(ctx, node, x, Geometry(ctx, node.op, x))


def emit_pool(ctx, node, x, g):
    b = ctx.b
    op = node.op
    out = ctx.alloc(node.outputs[0], g.pooled_shape)
    g.pin(out.shape)
    dt = out.dtype
    xdt = x.dtype
    if op.mode == "max":
        def body(n, i, j, rs, cs):
            acc = ctx.local(x.lltype, lowest_value(xdt))

            def step(off):
                v = _load(b, x, off)
                cur = b.load(acc, typ=x.lltype)
                b.store(b.select(greater(b, v, cur, xdt), v, cur), acc)

            each_element(b, g, n, rs, cs, step)
            res = U.cast_value(b, b.load(acc, typ=x.lltype), xdt, dt)
            b.store(res, gep(b, out.ptr, out_index(b, g, n, i, j), out.lltype))
    else:
        adt = dt if U.is_float(dt) else "float64"
        at = U.ll_type(adt)

        def body(n, i, j, rs, cs):
            acc = ctx.local(at, U.const(adt, 0))

            def step(off):
                v = U.cast_value(b, _load(b, x, off), xdt, adt)
                b.store(b.fadd(b.load(acc, typ=at), v), acc)

            each_element(b, g, n, rs, cs, step)
            res = b.load(acc, typ=at)
            if op.mode != "sum":
                res = b.fdiv(res, _divisor(b, op, g, rs, cs, adt))
            b.store(U.cast_value(b, res, adt, dt), gep(b, out.ptr, out_index(b, g, n, i, j), out.lltype))
    windows(ctx, g, body)
    return [out]


def _divisor(b, op, g, rs, cs, dtype):
    c = U.mul(b, g.ws[0], g.ws[1]) if op.mode == "average_inc_pad" and op.ignore_border else count(b, rs, cs)
    if isinstance(c, int):
        return U.const(dtype, c)
    return U.cast_value(b, c, "int64", dtype)


@lower.register(MaxPoolGrad)
@lower.register(MaxPoolGradGrad)
def lower_max_pool_tie_grad(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    emit = emit_max_pool_grad if isinstance(node.op, MaxPoolGrad) else emit_max_pool_grad_grad
    return emit(ctx, node, x, ins, Geometry(ctx, node.op, x))


def _tie_inputs(ctx, ins, g, shape):
    """(maxout, incoming gradient) of MaxPoolGrad / MaxPoolGradGrad as dense buffers, checked to have
    the pooled shape and `shape`."""
    z = dense(ctx, ins[1], ins[1].dtype)
    gin = dense(ctx, ins[2], ins[2].dtype)
    check_shape(ctx, z, g.pooled_shape)
    check_shape(ctx, gin, shape)
    return z, gin


def emit_max_pool_grad(ctx, node, x, ins, g):
    b = ctx.b
    z, gz = _tie_inputs(ctx, ins, g, g.pooled_shape)
    out = ctx.alloc(node.outputs[0], x.shape)
    g.pin(z.shape, gz.shape)
    dt = out.dtype
    _zero(ctx, out)

    def body(n, i, j, rs, cs):
        o = out_index(b, g, n, i, j)
        zv = _load(b, z, o)
        gv = U.cast_value(b, _load(b, gz, o), gz.dtype, dt)
        zero = U.const(dt, 0)

        def step(off):
            hit = _equal(b, _load(b, x, off), zv, x.dtype)
            p = gep(b, out.ptr, off, out.lltype)
            b.store(_add(b, b.load(p, typ=out.lltype), b.select(hit, gv, zero), dt), p)

        each_element(b, g, n, rs, cs, step)

    windows(ctx, g, body)
    return [out]


def emit_max_pool_grad_grad(ctx, node, x, ins, g):
    b = ctx.b
    z, ggx = _tie_inputs(ctx, ins, g, x.shape)
    out = ctx.alloc(node.outputs[0], g.pooled_shape)
    g.pin(out.shape)
    dt = out.dtype
    t = out.lltype

    def body(n, i, j, rs, cs):
        o = out_index(b, g, n, i, j)
        zv = _load(b, z, o)
        acc = ctx.local(t, U.const(dt, 0))

        def step(off):
            hit = _equal(b, _load(b, x, off), zv, x.dtype)
            v = U.cast_value(b, _load(b, ggx, off), ggx.dtype, dt)
            b.store(_add(b, b.load(acc, typ=t), b.select(hit, v, U.const(dt, 0)), dt), acc)

        each_element(b, g, n, rs, cs, step)
        b.store(b.load(acc, typ=t), gep(b, out.ptr, o, t))

    windows(ctx, g, body)
    return [out]


@lower.register(AveragePoolGrad)
def lower_average_pool_grad(ctx, node, ins):
    return emit_average_pool_grad(ctx, node, ins, Geometry(ctx, node.op, ins[0]))


def emit_average_pool_grad(ctx, node, ins, g):
    b = ctx.b
    op = node.op
    x = ins[0]
    gz = dense(ctx, ins[1], ins[1].dtype)
    check_shape(ctx, gz, g.pooled_shape)
    out = ctx.alloc(node.outputs[0], x.shape)
    g.pin(gz.shape)
    dt = out.dtype
    t = out.lltype
    _zero(ctx, out)

    def body(n, i, j, rs, cs):
        v = U.cast_value(b, _load(b, gz, out_index(b, g, n, i, j)), gz.dtype, dt)
        if op.mode != "sum":
            v = b.fdiv(v, _divisor(b, op, g, rs, cs, dt))

        def step(off):
            p = gep(b, out.ptr, off, t)
            b.store(_add(b, b.load(p, typ=t), v, dt), p)

        each_element(b, g, n, rs, cs, step)

    windows(ctx, g, body)
    return [out]


def _equal(b, x, y, dtype):
    if U.is_float(dtype):
        return b.fcmp_ordered("==", x, y)
    return b.icmp_unsigned("==", x, y)


def _add(b, x, y, dtype):
    return (b.fadd if U.is_float(dtype) else b.add)(x, y)
