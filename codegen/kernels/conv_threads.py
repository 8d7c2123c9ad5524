"""The per-image scaffolding of the generic convolution lowerings (conv_forward.py, conv_grad.py).

The batch is split over the module's thread pool (parallel.py): range t of the images runs with
tid t, which selects that thread's part of every per-thread buffer (patch matrix, packing buffers,
padded image copies, weight-gradient partials). Weight-gradient partials are added in thread order
after the region, so results do not depend on timing. With one thread the loop is emitted inline.
"""
import math

from llvmlite import ir

from .. import irutil as U
from ..lower import E_ALLOC, Array, bounds_checker
from ..microkernels import gemm as G
from ..microkernels.directconv import Vec
from ..microkernels.directconv_grad import transpose_block
from ..parallel import Parts, outline, part, run_parallel, threads
from .conv import Geometry, emit_im2col, gep, image_view, zero_fill
from .elemwise import emit_scalar


class PerThread:
    """A scratch buffer of T parts of prod(factors) elements, part t for thread t; each part starts
    64-byte aligned (the packed GEMM's buffers need that). The size is checked for overflow."""

    def __init__(self, ctx, dtype, factors, T):
        b = ctx.b
        n, ovf = U.checked_product(b, factors)
        n, o = U.checked(b, "add", n, 15)
        ovf = U.either(b, ovf, o)
        if ovf is True:
            raise ValueError(f"a per-thread convolution buffer of {factors} elements overflows int64")
        if ovf is not False:
            ctx.fail_if(U.flag_value(b, ovf), E_ALLOC, -1, len(factors), *factors[:4])
        stride = (n // 16) * 16 if isinstance(n, int) else b.and_(n, U.i64(~15))
        self.dtype, self.stride, self.T = str(dtype), stride, T
        self.arr = ctx.scratch(dtype, [T, stride])   # T * stride checked by the allocation

    def values(self):
        return [self.arr.ptr, self.stride]

    def zero(self, b):
        zero_fill(b, self.arr.ptr, 0, U.mul(b, self.T, self.stride), self.dtype)


def image_flops(*sizes):
    """2 * the product of sizes (a convolution's filters, output positions and taps per output: its
    multiply-adds of one image, whatever the kernel's algorithm) where all are static ints, else
    None: the work parallel.serial_rule weighs."""
    n = 2
    for s in sizes:
        if not isinstance(s, int):
            return None
        n *= s
    return n


def image_splits(B):
    """Items per image where a static batch B is smaller than the threads: the fewest that spread
    B*S items evenly over them (S = T / gcd(B, T)); else 1 (images are the items)."""
    T = threads()
    if not isinstance(B, int) or not 0 < B < T:
        return 1
    return T // math.gcd(B, T)


# The batch split over the threads leaves them this unbalanced at most (the largest share of
# images over the mean, ceil(B/T)*T / B): with a static batch split worse than that (1, 3, 5, 7, 9
# images on 2 threads), the tap kernels (the weight gradient's, conv_grad.py; the input gradient's,
# conv_gx_taps.py) give each thread its share of the tap panels of every image instead, each
# copying every image. Measured (2 threads, float32, ms, images -> shares of the
# panels; batch, C -> K on HxW, 7x7 filters): 1, 128 -> 96 on 18x18 pad 1 2.52 -> 1.82 (PyTorch
# 2.29), 1, 96 -> 48 on 28x28 'full' 3.65 -> 2.19, 5, 64 -> 16 on 28x28 'half' 2.29 -> 2.08, 5,
# 64 -> 48 on 16x16 'half' 1.84 -> 1.58.
MAX_IMAGE_IMBALANCE = 1.1


def panel_shares(B, T):
    """The shares of the tap panels the threads take (T), or 1: the images split over them."""
    if T == 1 or not isinstance(B, int) or B < 1:
        return 1
    return T if -(-B // T) * T > MAX_IMAGE_IMBALANCE * B else 1


class ImageItems:
    """The work items of a static batch of B images over T threads when B is not a multiple of T,
    for a kernel that computes an image's nb blocks of filters one at a time: each thread takes q
    whole images (q = B // T), then an even share of the r = B % T images left, each split into S
    parts by its blocks of filters (S = T / gcd(r, T): the fewest that spread r*S parts evenly;
    B < T with fewer blocks than that: S = nb).
    Every thread gets q + r*S/T items, so parallel.even_bounds over `count` items balances the
    work, where whole images only would leave T - r threads idle for the last image's time."""

    def __init__(self, B, T, S, nb):
        self.q, self.r, self.S, self.T, self.nb = B // T, B % T, S, T, nb
        self.parts = self.r * S // T   # parts per thread (q > 0: r*S is a multiple of T)
        self.count = self.q * T + self.r * S

    def image_part(self, b, i, fb):
        """(image, (lo, hi), (first filter, filters)) of item i (i64): a whole image is lo = 0,
        hi = nb; part s of an image the blocks s*nb//S <= j < (s+1)*nb//S of fb (filter_blocks)."""
        q, S, nb = self.q, self.S, self.nb
        if q:
            per = U.i64(q + self.parts)
            t, j = b.udiv(i, per), b.urem(i, per)
            p = b.add(b.mul(t, U.i64(self.parts)), b.sub(j, U.i64(q)))   # the part's index (wraps for whole images)
        else:
            p = i
        n = b.add(U.i64(q * self.T), b.udiv(p, U.i64(S)))
        s = b.urem(p, U.i64(S))
        lo = b.udiv(b.mul(s, U.i64(nb)), U.i64(S))
        hi = b.udiv(b.mul(b.add(s, U.i64(1)), U.i64(nb)), U.i64(S))
        if q:
            whole = b.icmp_unsigned("<", j, U.i64(q))
            n = b.select(whole, b.add(b.mul(t, U.i64(q)), j), n)
            lo, hi = b.select(whole, U.i64(0), lo), b.select(whole, U.i64(nb), hi)
        k0, k1 = U.i64(fb[0][0]), U.i64(fb[0][1])
        for jj, (a, e) in enumerate(fb[1:], 1):
            k0 = b.select(b.icmp_unsigned("==", lo, U.i64(jj)), U.i64(a), k0)
            k1 = b.select(b.icmp_unsigned("==", b.sub(hi, U.i64(1)), U.i64(jj)), U.i64(e), k1)
        return n, (lo, hi), (k0, b.sub(k1, k0))


def image_items(B, fb):
    """ImageItems of a static batch B over the threads for a kernel with blocks of filters fb
    (conv_forward.filter_blocks; None: one image at a time only), or None: the images are the
    items (B a multiple of the threads, a dynamic batch, one thread, or too few blocks to split)."""
    T = threads()
    if fb is None or len(fb) < 2 or not isinstance(B, int) or B <= 0 or T < 2 or B % T == 0:
        return None
    S = T // math.gcd(B % T, T)
    if S > len(fb):   # fewer blocks than that: a batch below the threads still takes len(fb) threads each
        if B >= T:
            return None
        S = len(fb)
    return ImageItems(B, T, S, len(fb))


class Captured:
    """Named values handed to the per-image body: ints stay ints, IR values are passed through
    the outlined function's argument array, None stays None."""

    def __init__(self):
        self.names, self.vals = [], []
        self.zeroed = []   # (name, PerThread) of the partial sums each thread zeroes itself

    def add(self, name, value):
        self.names.append(name)
        self.vals.append(value)

    def add_parts(self, name, buf):
        """A PerThread buffer (or None): the body gets its own part under `name`."""
        self.add(name + ".base", None if buf is None else buf.arr.ptr)
        self.add(name + ".stride", None if buf is None else buf.stride)

    def add_partials(self, name, buf):
        """A PerThread buffer of partial sums, added after the region: as add_parts, and each thread
        zeroes its own part as its body starts, at the same time as the others (on the calling thread
        before the region, a weight gradient's partials were 13% of a 128 -> 128 channel one's
        samples). Where the whole range runs as thread 0 (too little work for the pool), the calling
        thread zeroes the other parts, which are added all the same."""
        self.add_parts(name, buf)
        self.zeroed.append((name, buf))

    def run(self, ctx, prefix, B, emit, serial=None, item_flops=None):
        """emit(bctx, View, n0, n1) for the images [n0, n1) of [0, B), on threads() threads, in an
        outlined function named prefix + a number. serial, item_flops: as run_parallel's."""
        T = threads()
        present = [v is not None for v in self.vals]
        dyn = [v for v in self.vals if v is not None]

        def body(bctx, inner, tid, n0, n1):
            it = iter(inner)
            vals = [next(it) if here else None for here in present]
            view = View(bctx.b, dict(zip(self.names, vals)), tid)
            for name, buf in self.zeroed:
                zero_fill(bctx.b, view.part(name, buf.dtype), 0, view[name + ".stride"], buf.dtype)
            emit(bctx, view, n0, n1)

        def others(octx):   # the parts of threads 1.. when thread 0 runs the whole range
            for _, buf in self.zeroed:
                zero_fill(octx.b, part(octx.b, buf.arr.ptr, buf.stride, 1, buf.dtype), 0,
                          U.mul(octx.b, buf.stride, T - 1), buf.dtype)

        if bounds_checker() is not None:   # bounds-checked builds keep the plain inline loop (one part)
            body(ctx, dyn, 0, 0, B)
        elif T == 1:   # one thread: the same outlined body, called once (it names the variant in the IR)
            fn, argp = outline(ctx, prefix, dyn, body)
            ctx.b.call(fn, [argp, U.i64(0), U.i64(0), U.as_value(ctx.b, B)])
        else:
            run_parallel(ctx, prefix, dyn, B, T, body, serial, item_flops, serial_prelude=others)


class View:
    """The captured values inside the body: v[name], and v.part(name, dtype) for this thread's part."""

    def __init__(self, b, vals, tid):
        self.b, self.vals, self.tid = b, vals, tid

    def __getitem__(self, name):
        return self.vals[name]

    def part(self, name, dtype):
        base = self.vals[name + ".base"]
        if base is None:
            return None
        return part(self.b, base, self.vals[name + ".stride"], self.tid, dtype)

    def array(self, name, dtype, shape):
        """An Array captured by add_array."""
        return Array(dtype, self.vals[name], shape, [self.vals[f"{name}.s{d}"] for d in range(len(shape))])


def add_array(cap, name, arr):
    cap.add(name, arr.ptr)
    for d, s in enumerate(arr.strides):
        cap.add(f"{name}.s{d}", s)


def apply_program(ctx, prog, dt, srcs, dst, n):
    """dst[p] = prog(srcs[0][p], ...) for p < n: a plain loop for the loop vectoriser (srcs entries
    None read a 0 of dtype dt)."""
    b = ctx.b
    et = U.ll_type(dt)
    zero = U.const(dt, 0.0)
    with U.for_range(b, n, name="act") as p:
        vals = [b.load(gep(b, s_, p, et), typ=et) if s_ is not None else zero for s_ in srcs]
        b.store(emit_scalar(ctx, prog, vals, [dt] * len(vals), dt), gep(b, dst, p, et))


def lanewise(b, vec, act, lanes):
    """vec with act (a function of one scalar value) applied to the lanes listed (LLVM's SLP
    vectoriser joins them into vector operations again)."""
    for e in lanes:
        lane = ir.Constant(U.I32, e)
        vec = b.insert_element(vec, act(b.extract_element(vec, lane)), lane)
    return vec


def shift_copy(ctx, src, dst, dtype, C, H, W, Hd, Wd, oh, ow, act=None):
    """dst[c, u, v] = act(src[c, u - oh, v - ow]) (cast to dtype) where both exist, for a (C, H, W)
    Array src and a dense (C, Hd, Wd) dst; all sizes static ints; act a function of one value of
    dtype (None: the identity), applied as the values are copied. The rest of dst is not written:
    the caller zeroes it once, and every image writes the same positions."""
    b = ctx.b
    et = U.ll_type(dtype)
    st = src.lltype
    i0, i1 = max(0, -oh), min(H, Hd - oh)
    j0, j1 = max(0, -ow), min(W, Wd - ow)
    if i1 <= i0 or j1 <= j0:
        return
    if src.dtype == dtype and isinstance(src.strides[2], int) and src.strides[2] == 1 and str(dtype) in ("float32", "float64"):
        _shift_copy_rows(b, src, dst, dtype, C, i0, i1, j0, j1, Hd * Wd, Wd, oh, ow, act)
        return
    with U.for_range(b, C, name="pc") as c:
        with U.for_range(b, i1, start=i0, name="pi") as i:
            s = gep(b, src.ptr, U.add(b, U.mul(b, c, src.strides[0]), U.mul(b, i, src.strides[1])), st)
            d = gep(b, dst, U.add(b, U.mul(b, c, Hd * Wd), U.mul(b, U.add(b, i, oh), Wd)), et)
            with U.for_range(b, j1, start=j0, name="pj") as j:
                v = U.cast_value(b, b.load(gep(b, s, U.mul(b, j, src.strides[2]), st), typ=st), src.dtype, dtype)
                b.store(v if act is None else act(v), gep(b, d, U.add(b, j, ow), et))


def _shift_copy_rows(b, src, dst, dtype, C, i0, i1, j0, j1, plane, Wd, oh, ow, act=None):
    """shift_copy of dense source rows of the buffer's dtype: each row in vectors of the target's
    lanes, the last one under a constant mask (a scalar loop per value costs ~2 cycles an element)."""
    et = U.ll_type(dtype)
    L = U.lanes(dtype)
    vt = ir.VectorType(et, L)
    mt = ir.VectorType(U.I1, L)
    sfx = f"v{L}{'f32' if dtype == 'float32' else 'f64'}"
    module = b.block.function.module
    mload = U.declare(module, f"llvm.masked.load.{sfx}.p0", vt, [U.PTR, U.I32, mt, vt])
    mstore = U.declare(module, f"llvm.masked.store.{sfx}.p0", ir.VoidType(), [vt, U.PTR, U.I32, mt])
    size = U.itemsize(dtype)
    align = ir.Constant(U.I32, size)
    n = j1 - j0
    with U.for_range(b, C, name="pc") as c:
        with U.for_range(b, i1, start=i0, name="pi") as i:
            s = gep(b, src.ptr, U.add(b, U.add(b, U.mul(b, c, src.strides[0]), U.mul(b, i, src.strides[1])), j0), et)
            d = gep(b, dst, U.add(b, U.mul(b, c, plane), U.add(b, U.mul(b, U.add(b, i, oh), Wd), j0 + ow)), et)
            for k in range(0, n, L):
                if n - k >= L:
                    v = b.load(gep(b, s, k, et), typ=vt, align=size)
                    b.store(v if act is None else lanewise(b, v, act, range(L)), gep(b, d, k, et), align=size)
                else:
                    mask = ir.Constant(mt, [int(e < n - k) for e in range(L)])
                    v = b.call(mload, [gep(b, s, k, et), align, mask, ir.Constant(vt, ir.Undefined)])
                    v = v if act is None else lanewise(b, v, act, range(n - k))
                    b.call(mstore, [v, gep(b, d, k, et), align, mask])


def copy_planes(ctx, src, src_rs, src_ks, dst, dtype, K, OH, OW):
    """dst[k, i, :OW] = src[k*src_ks + i*src_rs : +OW] for a dense (K, OH, OW) dst (static sizes)."""
    b = ctx.b
    et = U.ll_type(dtype)
    size = U.itemsize(dtype)
    whole = src_rs == OW   # a plane is contiguous in the scratch too
    with U.for_range(b, K, name="ck") as k:
        sk = gep(b, src, U.mul(b, k, src_ks), et)
        dk = gep(b, dst, U.mul(b, k, OH * OW), et)
        if whole:
            U.memcpy(b, dk, sk, OH * OW * size)
        else:
            with U.for_range(b, OH, name="ci") as i:
                U.memcpy(b, gep(b, dk, U.mul(b, i, OW), et), gep(b, sk, U.mul(b, i, src_rs), et), OW * size)


def reduce_transposed(ctx, parts, rs, col0, K, P, dst, dtype, nparts):
    """dst[k*P + p] = sum over threads t (in order) of part_t[p*rs + col0 + k], k < K, p < P.
    With static sizes, rs and col0 whole vectors apart: blocks of L taps by L filters, the parts'
    rows summed in vectors and transposed in registers, the blocks of taps split over the threads
    (one value at a time, in a strided column, took half of a one-image 7x7 weight gradient's time);
    else one value at a time."""
    b = ctx.b
    et = U.ll_type(dtype)
    L = U.lanes(dtype)
    if all(isinstance(v, int) for v in (rs, col0, K, P, parts.stride)) and rs % L == 0 and col0 % L == 0 \
            and K <= rs and L & (L - 1) == 0 and L > 1:
        nb = -(-P // L)

        def body(bctx, v, tid, j0, j1):
            _reduce_blocks(bctx.b, dtype, v[0], parts.stride, rs, col0, K, P, v[1], nparts, j0, j1)

        if threads() == 1:
            body(ctx, [parts.arr.ptr, dst], 0, U.i64(0), U.i64(nb))
        else:
            run_parallel(ctx, "symcnn_reduce_transposed", [parts.arr.ptr, dst], nb, threads(), body,
                         item_flops=L * rs * nparts)
        return
    with U.for_range(b, K, name="rk") as k:
        with U.for_range(b, P, name="rp") as p:
            v = None
            for t in range(nparts):
                off = U.add(b, U.mul(b, t, parts.stride), U.add(b, U.mul(b, p, rs), U.add(b, col0, k)))
                x = b.load(gep(b, parts.arr.ptr, off, et), typ=et)
                v = x if v is None else b.fadd(v, x)
            b.store(v, gep(b, dst, U.add(b, U.mul(b, k, P), p), et))


def _reduce_blocks(b, dtype, src, stride, rs, col0, K, P, dst, nparts, j0, j1):
    """reduce_transposed for the blocks of taps [j0*L, j1*L): L rows of every part summed by
    vectors of L filters, transposed, each row of the result stored as L taps of one filter (the
    last block of taps: fewer rows, stores masked to them)."""
    L = U.lanes(dtype)
    et = U.ll_type(dtype)
    vec = Vec(b.block.function.module, dtype, L)

    def block(p0, taps):
        mask = ir.Constant(ir.VectorType(U.I1, L), [int(j < taps) for j in range(L)])
        with U.for_range(b, -(-K // L), name="rkb") as kb:
            k0 = b.mul(kb, U.i64(L))
            rows = []
            for i in range(L):
                if i >= taps:
                    rows.append(vec.zero)
                    continue
                at = b.add(b.mul(b.add(p0, U.i64(i)), U.i64(rs)), b.add(U.i64(col0), k0))
                v = None
                for t in range(nparts):
                    x = b.load(gep(b, src, b.add(at, U.i64(t * stride)), et), typ=vec.t, align=vec.size)
                    v = x if v is None else b.fadd(v, x)
                rows.append(v)
            for j, row in enumerate(transpose_block(b, rows)):
                k = b.add(k0, U.i64(j))
                with b.if_then(b.icmp_unsigned("<", k, U.i64(K))):
                    ptr = gep(b, dst, b.add(b.mul(k, U.i64(P)), p0), et)
                    if taps == L:
                        b.store(row, ptr, align=vec.size)
                    else:
                        b.call(vec.mstore, [row, ptr, vec.align, mask])

    full = P // L
    with U.for_range(b, U.smin(b, j1, full), start=j0, name="rpb") as j:
        block(b.mul(j, U.i64(L)), L)
    if full * L < P:
        with b.if_then(b.icmp_unsigned(">", U.as_value(b, j1), U.i64(full))):
            block(U.i64(full * L), P - full * L)


CONV_DIMS = ("B", "C", "H", "W", "K", "kh", "kw", "OH", "OW")


def capture_gemm_images(ctx, op, dt, dims, pack_mnk, patches, T):
    """A Captured holding a convolution's dims, the per-thread patch matrix (patches=False: none)
    and the packed GEMM's per-thread buffers for a (M, N, Q) = pack_mnk product; the body reads
    them back with gemm_images_view."""
    b = ctx.b
    g = Geometry(b, op, *dims[1:4], *dims[5:])
    na, nbp = (G.pack_sizes(b, dt, *pack_mnk(g, dims[4])))
    cap = Captured()
    for name, val in zip(CONV_DIMS, dims):
        cap.add(name, val)
    cap.add_parts("cols", PerThread(ctx, dt, [g.P, g.N], T) if patches else None)
    cap.add_parts("ap", Parts(ctx, dt, na, T))
    cap.add_parts("bp", Parts(ctx, dt, nbp, T))
    return cap


def gemm_images_view(bctx, v, op, dt):
    """(dims, Geometry, K, cols, packs) inside the body of a capture_gemm_images region."""
    d = [v[k] for k in CONV_DIMS]
    return d, Geometry(bctx.b, op, *d[1:4], *d[5:]), d[4], v.part("cols", dt), (v.part("ap", dt), v.part("bp", dt))


def image_patches(bctx, g, xv, n, cols, dt, one):
    """The patch matrix of image n: the dense image itself for a 1x1 convolution (one), else its
    im2col into cols."""
    if one:
        return image_view(bctx.b, xv, n).ptr
    emit_im2col(bctx, g, image_view(bctx.b, xv, n), cols, dt)
    return cols
