"""Pool (max / sum / average_inc_pad / average_exc_pad), MaxPoolGrad, AveragePoolGrad
and MaxPoolGradGrad over the last two dimensions of an N-d tensor.

Leading dimensions are flattened into one image index. Windows are visited row by
row; the rows and columns whose windows lie entirely inside the image (no padding,
no partial border window) form an interior range whose windows have a static size,
so their element loops are unrolled and the loop over output columns can be
vectorised. Border windows are clipped to the image at run time. With no padding
and ignore_border=True every window is interior and no border code is emitted.
"""
import copy

from llvmlite import ir

from symcnn.tensor.signal import pool_geometry
from symcnn.tensor.signal.pool import AveragePoolGrad, MaxPoolGrad, MaxPoolGradGrad, Pool

from .. import irutil as U
from ..lower import E_SHAPE, lower
from ..irutil import ceildiv, floordiv, gep
from ..options import options
from ..parallel import run_parallel, threads
from . import pool_vector as V
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

    def values(self):
        """The sizes the per-image code needs (ints, or i64 values of the calling function)."""
        return [self.h, self.w, self.nr, self.nc, *self.ws, *self.st, *self.pad]

    def rebuilt(self, vals):
        """A copy whose sizes are `vals` (values() as reloaded inside an outlined function)."""
        g = copy.copy(self)
        g.h, g.w, g.nr, g.nc = vals[:4]
        g.ws, g.st, g.pad = tuple(vals[4:6]), tuple(vals[6:8]), tuple(vals[8:10])
        g.lead = g.N = None   # the image count is the caller's business
        return g

    def with_columns(self, ws, st):
        """A copy with the column window and stride as these ints (a run-time geometry known to
        be them)."""
        g = copy.copy(self)
        g.ws, g.st = (self.ws[0], ws), (self.st[0], st)
        return g


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


def plane_windows(b, g, n, body, block=None, vp=None, rewrite=True, hooks=None):
    """for every window (i, j) of image n: body(n, i, j, row span, col span); block(n, i, j, Lb):
    the vector code for Lb interior windows from (i, j) on (vp: its pool_vector.Plan; rewrite: whether
    a block may be run again over the same windows, see pool_vector.columns); hooks: (begin(n, i),
    end(n, i, jlo, first scalar column)) around the vector blocks of a row.

    Three loop bodies: interior rows x interior columns (static window; vector blocks first,
    when given), interior rows x border columns, and border rows x all columns (clipped windows)."""
    ilo, ihi = _interior(b, g.nr, g.h, g.ws[0], g.st[0], g.pad[0], g.simple)
    jlo, jhi = _interior(b, g.nc, g.w, g.ws[1], g.st[1], g.pad[1], g.simple)
    rb = None if g.simple else _border_loop(b, ilo, ihi, g.nr, "pbi")
    cb = None if g.simple else _border_loop(b, jlo, jhi, g.nc, "pbj")
    with U.for_range(b, ihi, start=ilo, name="pi") as i:
        rs = _span(b, i, g.ws[0], g.st[0], g.pad[0], g.h, True)
        start = jlo
        if block is not None:
            if hooks is not None:
                hooks[0](n, i)
            start = V.columns(b, vp, g.w, g.pad[1], jlo, jhi, lambda j, Lb: block(n, i, j, Lb), rewrite)
            if hooks is not None:
                hooks[1](n, i, jlo, start)
        with U.for_range(b, jhi, start=start, name="pj") as j:
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


class Buf:
    """A contiguous buffer as the per-image code sees it: element pointer and dtype."""

    def __init__(self, ptr, dtype):
        self.ptr, self.dtype = ptr, str(dtype)

    @property
    def lltype(self):
        return U.ll_type(self.dtype)


def _load(b, arr, off):
    return b.load(gep(b, arr.ptr, off, arr.lltype), typ=arr.lltype)


def _zero_image(b, g, arr, n):
    """arr's image n (h * w elements) = 0."""
    size = U.mul(b, g.h, g.w)
    U.memset_zero(b, gep(b, arr.ptr, U.mul(b, n, size), arr.lltype), U.mul(b, size, U.itemsize(arr.dtype)))


# -- which code is emitted ---------------------------------------------------------------------

# (kernel, variant) of every kernel lowered in this process: the tests check they reach them all
EMITTED = set()

# (window width, column stride) pairs the run-time-geometry kernels get vector code for
RUNTIME_VECTOR = ((2, 2), (3, 2), (3, 3), (2, 1), (3, 1))


def _note(kernel, variant):
    EMITTED.add((kernel, variant))


def run_images(ctx, g, kernel, bufs, image):
    """image(fctx, g, bufs, n) for every image n: on one thread when the work is small, else the
    images split over the module's threads (each image's output is written by one thread only)."""
    b = ctx.b
    T = threads()
    work = U.mul(b, g.N, U.add(b, U.mul(b, g.h, g.w), U.mul(b, g.nr, g.nc)))
    small = isinstance(work, int) and (work < options.pool_min_parallel or g.N < 2)
    if T == 1 or small:
        _note(kernel, "serial")
        with U.for_range(b, g.N, name="img") as n:
            image(ctx, g, bufs, n)
        return
    _note(kernel, "threaded")
    nb = len(bufs)

    def emit(bctx, v, tid, n0, n1):
        inner = [Buf(p, a.dtype) for p, a in zip(v[:nb], bufs)]
        gi = g.rebuilt(v[nb:])
        with U.for_range(bctx.b, n1, start=n0, name="img") as n:
            image(bctx, gi, inner, n)

    serial = b.or_(b.icmp_signed("<", U.as_value(b, work), U.i64(options.pool_min_parallel)),
                   b.icmp_signed("<", U.as_value(b, g.N), U.i64(2)))
    run_parallel(ctx, "symcnn_pool", [a.ptr for a in bufs] + g.values(), g.N, T, emit, serial=serial)


def each_geometry(fctx, g, dtypes, kernel, emit):
    """emit(g', vector plan or None) for the image's geometry: once with the vector plan of g's
    static column window; for a run-time geometry, once per RUNTIME_VECTOR pair under a test of
    the window read at run time, and once with no plan for every other window."""
    b = fctx.b
    if isinstance(g.ws[1], int) and isinstance(g.st[1], int):
        vp = V.plan(dtypes, g.ws[1], g.st[1])
        _note(kernel, f"vector-s{vp.s}" if vp is not None else "scalar")
        emit(g, vp)
        return
    pairs = [(w, s) for w, s in RUNTIME_VECTOR if V.plan(dtypes, w, s) is not None]
    _note(kernel, "runtime-vector" if pairs else "scalar")

    def chain(k):
        if k == len(pairs):
            emit(g, None)
            return
        w, s = pairs[k]
        hit = b.and_(b.icmp_signed("==", g.ws[1], U.i64(w)), b.icmp_signed("==", g.st[1], U.i64(s)))
        with b.if_else(hit) as (then, other):
            with then:
                emit(g.with_columns(w, s), V.plan(dtypes, w, s))
            with other:
                chain(k + 1)

    chain(0)


def _rows(b, n, fn):
    """fn(u) for u < n (unrolled when n is a small int)."""
    if isinstance(n, int) and n <= UNROLL:
        for u in range(n):
            fn(u)
        return
    with U.for_range(b, n, name="wu") as u:
        fn(u)


def _block_rows(b, g, n, i, j):
    """(element offset of the image's row i*sh - ph, column c0 = j*sw - pw) of a vector block."""
    base = U.mul(b, n, U.mul(b, g.h, g.w))
    r0 = U.sub(b, U.mul(b, i, g.st[0]), g.pad[0])
    return base, r0, U.sub(b, U.mul(b, j, g.st[1]), g.pad[1])


def _row_ptr(b, arr, g, base, r0, u):
    return gep(b, arr.ptr, U.add(b, base, U.mul(b, U.add(b, r0, u), g.w)), arr.lltype)


def _vector_divisor(b, g, vp, Lb):
    """The divisor of an interior window (ws[0] * ws[1] elements, in both average modes)."""
    c = U.mul(b, g.ws[0], g.ws[1])
    if isinstance(c, int):
        return V.const(vp, c, Lb)
    return V.splat(b, vp, U.cast_value(b, c, "int64", vp.dtype), Lb)


def _carry_hooks(fctx, g, vp, add, out):
    """(per window row u a carry slot or None, plane_windows hooks): the column overlap of an adding
    gradient's vector blocks carried from block to block (pool_vector.store_phases), when the
    window's rows are unrolled."""
    b = fctx.b
    if vp is None or not add or not V.carries(vp, vp.widths[-1]) or not (isinstance(g.ws[0], int)
                                                                       and g.ws[0] <= UNROLL):
        return [None] * (g.ws[0] if isinstance(g.ws[0], int) else 1), None
    slots = [V.new_carry(fctx, vp) for _ in range(g.ws[0])]

    def begin(n, i):
        for slot in slots:
            V.clear_carry(b, vp, slot)

    def end(n, i, jlo, start):
        with b.if_then(b.icmp_signed(">", start, U.as_value(b, jlo))):
            base, r0, c = _block_rows(b, g, n, i, start)
            for u, slot in enumerate(slots):
                V.flush_carry(b, vp, _row_ptr(b, out, g, base, r0, u), c, slot)

    return slots, (begin, end)


def _overlapping(g):
    """Whether interior windows may share input elements (the gradients then add, not store)."""
    static = all(isinstance(v, int) for v in (g.ws[0], g.st[0], g.ws[1], g.st[1]))
    return not static or g.ws[0] > g.st[0] or g.ws[1] > g.st[1]


# -- lowerings -------------------------------------------------------------------------------

@lower.register(Pool)
def lower_pool(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    return emit_pool(ctx, node, x, Geometry(ctx, node.op, x))


def emit_pool(ctx, node, x, g):
    op = node.op
    out = ctx.alloc(node.outputs[0], g.pooled_shape)
    g.pin(out.shape)
    kernel = "pool-" + op.mode
    dt, xdt = out.dtype, x.dtype

    def image(fctx, g, bufs, n):
        each_geometry(fctx, g, [xdt, dt], kernel, lambda g, vp: _pool_image(fctx, op, g, vp, bufs, n))

    run_images(ctx, g, kernel, [Buf(x.ptr, xdt), Buf(out.ptr, dt)], image)
    return [out]


def _pool_image(fctx, op, g, vp, bufs, n):
    b = fctx.b
    x, out = bufs
    dt, xdt = out.dtype, x.dtype
    if op.mode == "max":
        def body(n, i, j, rs, cs):
            acc = fctx.local(x.lltype, lowest_value(xdt))

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
            acc = fctx.local(at, U.const(adt, 0))

            def step(off):
                v = U.cast_value(b, _load(b, x, off), xdt, adt)
                b.store(b.fadd(b.load(acc, typ=at), v), acc)

            each_element(b, g, n, rs, cs, step)
            res = b.load(acc, typ=at)
            if op.mode != "sum":
                res = b.fdiv(res, _divisor(b, op, g, rs, cs, adt))
            b.store(U.cast_value(b, res, adt, dt), gep(b, out.ptr, out_index(b, g, n, i, j), out.lltype))

    def block(n, i, j, Lb):
        """L pooled values: the window's elements in the scalar body's order."""
        base, r0, c0 = _block_rows(b, g, n, i, j)
        vt = ir.VectorType(vp.et, Lb)
        start = V.const(vp, float("-inf"), Lb) if op.mode == "max" else V.const(vp, 0.0, Lb)
        acc = fctx.local(vt, start)

        def row(u):
            m = b.load(acc, typ=vt)
            for v in V.load_phases(b, vp, _row_ptr(b, x, g, base, r0, u), c0, Lb):
                m = b.select(greater(b, v, m, dt), v, m) if op.mode == "max" else b.fadd(m, v)
            b.store(m, acc)

        _rows(b, g.ws[0], row)
        res = b.load(acc, typ=vt)
        if op.mode not in ("max", "sum"):
            res = b.fdiv(res, _vector_divisor(b, g, vp, Lb))
        V.store(b, vp, res, gep(b, out.ptr, out_index(b, g, n, i, j), out.lltype))

    plane_windows(b, g, n, body, block if vp is not None else None, vp)


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
    z, gz = _tie_inputs(ctx, ins, g, g.pooled_shape)
    out = ctx.alloc(node.outputs[0], x.shape)
    g.pin(z.shape, gz.shape)
    bufs = [Buf(a.ptr, a.dtype) for a in (x, z, gz, out)]

    def image(fctx, g, bufs, n):
        _zero_image(fctx.b, g, bufs[3], n)
        each_geometry(fctx, g, [a.dtype for a in bufs], "max-grad",
                      lambda g, vp: _max_pool_grad_image(fctx, g, vp, bufs, n))

    run_images(ctx, g, "max-grad", bufs, image)
    return [out]


def _max_pool_grad_image(fctx, g, vp, bufs, n):
    b = fctx.b
    x, z, gz, out = bufs
    dt = out.dtype

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

    add = _overlapping(g)
    slots, hooks = _carry_hooks(fctx, g, vp, add, out)
    if vp is not None:
        _note("max-grad", "vector-carry" if hooks else "vector-add" if add else "vector-store")

    def block(n, i, j, Lb):
        """L windows' gradients to every element equal to the window's maximum."""
        base, r0, c0 = _block_rows(b, g, n, i, j)
        o = out_index(b, g, n, i, j)
        zv = V.load(b, vp, gep(b, z.ptr, o, z.lltype), Lb)
        gv = V.load(b, vp, gep(b, gz.ptr, o, gz.lltype), Lb)
        zero = V.const(vp, 0.0, Lb)

        def row(u):
            xs = V.load_phases(b, vp, _row_ptr(b, x, g, base, r0, u), c0, Lb)
            parts = [b.select(b.fcmp_ordered("==", v, zv), gv, zero) for v in xs]
            V.store_phases(b, vp, _row_ptr(b, out, g, base, r0, u), c0, Lb, parts, add,
                           slots[u] if hooks else None)

        _rows(b, g.ws[0], row)

    plane_windows(b, g, n, body, block if vp is not None else None, vp, rewrite=not add, hooks=hooks)


def emit_max_pool_grad_grad(ctx, node, x, ins, g):
    z, ggx = _tie_inputs(ctx, ins, g, x.shape)
    out = ctx.alloc(node.outputs[0], g.pooled_shape)
    g.pin(out.shape)
    bufs = [Buf(a.ptr, a.dtype) for a in (x, z, ggx, out)]

    def image(fctx, g, bufs, n):
        each_geometry(fctx, g, [a.dtype for a in bufs], "max-grad-grad",
                      lambda g, vp: _max_pool_grad_grad_image(fctx, g, vp, bufs, n))

    run_images(ctx, g, "max-grad-grad", bufs, image)
    return [out]


def _max_pool_grad_grad_image(fctx, g, vp, bufs, n):
    b = fctx.b
    x, z, ggx, out = bufs
    dt = out.dtype
    t = out.lltype

    def body(n, i, j, rs, cs):
        o = out_index(b, g, n, i, j)
        zv = _load(b, z, o)
        acc = fctx.local(t, U.const(dt, 0))

        def step(off):
            hit = _equal(b, _load(b, x, off), zv, x.dtype)
            v = U.cast_value(b, _load(b, ggx, off), ggx.dtype, dt)
            b.store(_add(b, b.load(acc, typ=t), b.select(hit, v, U.const(dt, 0)), dt), acc)

        each_element(b, g, n, rs, cs, step)
        b.store(b.load(acc, typ=t), gep(b, out.ptr, o, t))

    def block(n, i, j, Lb):
        """L windows' sums of ggx over the elements equal to the window's maximum."""
        base, r0, c0 = _block_rows(b, g, n, i, j)
        o = out_index(b, g, n, i, j)
        zv = V.load(b, vp, gep(b, z.ptr, o, z.lltype), Lb)
        zero = V.const(vp, 0.0, Lb)
        vt = ir.VectorType(vp.et, Lb)
        acc = fctx.local(vt, zero)

        def row(u):
            xs = V.load_phases(b, vp, _row_ptr(b, x, g, base, r0, u), c0, Lb)
            gs = V.load_phases(b, vp, _row_ptr(b, ggx, g, base, r0, u), c0, Lb)
            s = b.load(acc, typ=vt)
            for xv, gv in zip(xs, gs):
                s = b.fadd(s, b.select(b.fcmp_ordered("==", xv, zv), gv, zero))
            b.store(s, acc)

        _rows(b, g.ws[0], row)
        V.store(b, vp, b.load(acc, typ=vt), gep(b, out.ptr, o, t))

    plane_windows(b, g, n, body, block if vp is not None else None, vp)


@lower.register(AveragePoolGrad)
def lower_average_pool_grad(ctx, node, ins):
    return emit_average_pool_grad(ctx, node, ins, Geometry(ctx, node.op, ins[0]))


def emit_average_pool_grad(ctx, node, ins, g):
    op = node.op
    x = ins[0]
    gz = dense(ctx, ins[1], ins[1].dtype)
    check_shape(ctx, gz, g.pooled_shape)
    out = ctx.alloc(node.outputs[0], x.shape)
    g.pin(gz.shape)
    bufs = [Buf(gz.ptr, gz.dtype), Buf(out.ptr, out.dtype)]
    kernel = "avg-grad-" + op.mode

    def image(fctx, g, bufs, n):
        _zero_image(fctx.b, g, bufs[1], n)
        each_geometry(fctx, g, [a.dtype for a in bufs], kernel,
                      lambda g, vp: _average_pool_grad_image(fctx, op, g, vp, bufs, n))

    run_images(ctx, g, kernel, bufs, image)
    return [out]


def _average_pool_grad_image(fctx, op, g, vp, bufs, n):
    b = fctx.b
    gz, out = bufs
    dt = out.dtype
    t = out.lltype

    def body(n, i, j, rs, cs):
        v = U.cast_value(b, _load(b, gz, out_index(b, g, n, i, j)), gz.dtype, dt)
        if op.mode != "sum":
            v = b.fdiv(v, _divisor(b, op, g, rs, cs, dt))

        def step(off):
            p = gep(b, out.ptr, off, t)
            b.store(_add(b, b.load(p, typ=t), v, dt), p)

        each_element(b, g, n, rs, cs, step)

    add = _overlapping(g)
    slots, hooks = _carry_hooks(fctx, g, vp, add, out)
    if vp is not None:
        _note("avg-grad-" + op.mode, "vector-carry" if hooks else "vector-add" if add else "vector-store")

    def block(n, i, j, Lb):
        """L windows' gradients spread over their elements."""
        base, r0, c0 = _block_rows(b, g, n, i, j)
        v = V.load(b, vp, gep(b, gz.ptr, out_index(b, g, n, i, j), gz.lltype), Lb)
        if op.mode != "sum":
            v = b.fdiv(v, _vector_divisor(b, g, vp, Lb))
        _rows(b, g.ws[0], lambda u: V.store_phases(b, vp, _row_ptr(b, out, g, base, r0, u), c0, Lb,
                                                   [v] * vp.ws, add, slots[u] if hooks else None))

    plane_windows(b, g, n, body, block if vp is not None else None, vp, rewrite=not add, hooks=hooks)


def _equal(b, x, y, dtype):
    if U.is_float(dtype):
        return b.fcmp_ordered("==", x, y)
    return b.icmp_unsigned("==", x, y)


def _add(b, x, y, dtype):
    return (b.fadd if U.is_float(dtype) else b.add)(x, y)
