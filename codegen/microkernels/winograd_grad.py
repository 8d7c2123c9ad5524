"""The weight gradient of an r x r (3x3, 5x5) unit-stride convolution by Winograd's F(m x m, r x r)
(F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5)).

The forward is Y = A^T [(G g G^T) * (B^T d B)] A per m x m output tile (winograd.py), so the
gradient of the filter g from one tile's output gradient dY is

    dg = G^T [ (A dY A^T) * (B^T d B) ] G

and that of the whole batch is G^T [ sum over tiles (A dY_t A^T) * (B^T d_t B) ] G: per position
q of the a x a transformed tile (a = m + r - 1), one GEMM dM[q][k, c] += sum_t Y[q][t, k] V[q][t, c]
over all tiles of all images (a^2 multiplications per tile, filter and channel instead of the direct
kernel's m^2 r^2: 16 against 36 for F(2x2, 3x3), 36 against 144 for F(4x4, 3x3), 36 against 100 for
F(2x2, 5x5)), then one back-transform per call. The matrices are winograd.matrices(m, r).

  images    copied channel-last into a zero-bordered (Hb, Wb, Cp) buffer (the image moved by the
            padding, Cp: C rounded up to whole vectors), the conv-output gradient into a
            (m tH, m tW, Kp) one, zero past (OH, OW) (ragged last tiles); both zeroed once per thread
            (every image writes the same positions).
  transforms  B^T d B and A dY A^T with vectors over the channels (filters): a tile's a^2 (m^2) rows
            of channels are whole vectors, and its a^2 transformed rows are stored as rows t of
            V[q][t][Cp] and Y[q][t][Kp], the layouts the GEMM streams, with no packing.
  GEMM      per position, a register-blocked micro-kernel over the tiles: MR rows of the side with
            fewer channels broadcast, nv vectors of the other loaded, MR*nv accumulators (gemm.py's
            budget), added into the thread's partial dM[q][R][Sp]. A GEMM spans TILES_MIN to
            TILES_MAX tiles: chunks of tile rows of a large image, or a group of small images.
  result    the threads' partials added in float64 in thread order, transformed back (G^T . G) in
            float64 and rounded once, turned 180 degrees where the filters are (filter_flip).
"""
import copy

from llvmlite import ir

from .. import library
from .. import irutil as U
from ..irutil import lanes
from . import gemm
from .directconv import Vec, kernel_function
from .winograd import combine, input_transform, matrices

TILES_MIN, TILES_MAX = 64, 128   # tiles one GEMM reduces over (its micro-kernel's loop length)


def group_bytes():
    """A group of small images: one position's tiles of both operands at most half the target's L1
    data cache, so that every row block of the GEMM reads them from L1 (LeNet's 20->50 on 8x8
    outputs, 48 KB L1: 4 images, 24 KB, against 8 images and 48 KB; its fused gradient, 2 threads,
    on a loaded machine: 8.0 -> 7.0 ms)."""
    from ..target import current
    return current().l1d_bytes // 2


def _ceil(a, b):
    return -(-a // b)


class GradPlan:
    """Static layout of the weight gradient of an r x r unit-stride correlation of (C, H, W) images,
    moved by shift into a zero border, with (K, OH, OW) conv-output gradients (all Python ints), by
    F(m x m, r x r). flip: the filters are turned 180 degrees (filter_flip)."""

    variant = "winograd"

    def __init__(self, dtype, C, H, W, K, OH, OW, shift, flip, r=3, m=2):
        self.dtype, self.C, self.H, self.W, self.K, self.OH, self.OW = dtype, C, H, W, K, OH, OW
        self.shift, self.flip, self.r, self.m = tuple(shift), flip, r, m
        self.a = m + r - 1                # the transformed tile's side
        self.BT, self.Gm, self.AT = matrices(m, r)
        self.L = L = lanes(dtype)
        _, MR0, NV, *_ = gemm.params(dtype)
        self.tH, self.tW = _ceil(OH, m), _ceil(OW, m)
        self.Timg = self.tH * self.tW
        self.Hb, self.Wb = m * self.tH + r - 1, m * self.tW + r - 1
        self.Hd, self.Wd = m * self.tH, m * self.tW
        self.Cp, self.Kp = _ceil(C, L) * L, _ceil(K, L) * L
        if self.Timg >= TILES_MIN:   # chunks of tile rows of one image
            self.Gi, self.rows = 1, max(1, min(self.tH, TILES_MAX // self.tW))
        else:                        # groups of whole images
            fit = group_bytes() // (self.Timg * (self.Cp + self.Kp) * U.itemsize(dtype))
            self.Gi, self.rows = max(1, min(TILES_MAX, max(TILES_MIN, fit * self.Timg)) // self.Timg), self.tH
        self.Tcap = self.Gi * self.Timg if self.Gi > 1 else self.rows * self.tW
        # the side with more channels is the vector (column) side of the GEMM
        self.swap = K > C
        self.R, self.Rp = (C, self.Cp) if self.swap else (K, self.Kp)
        self.S, self.Sp = (K, self.Kp) if self.swap else (C, self.Cp)
        self.blocks, s0 = [], 0   # (first column, vectors, rows) of the micro-kernel's blocks
        while s0 < self.Sp:
            nv = min(NV, (self.Sp - s0) // L)
            most = max(1, MR0 * NV // nv)   # as many rows as gemm.py's accumulators allow, in even blocks
            self.blocks.append((s0, nv, _ceil(self.R, _ceil(self.R, most))))
            s0 += nv * L
        # positions a cache line more than their size apart, and room for the rows a last row
        # block reads past R (computed, never stored)
        line = 64 // U.itemsize(dtype)
        self.pad = pad = _ceil(max(b[2] for b in self.blocks), line) * line + line
        self.vq, self.yq = self.Tcap * self.Cp + pad, self.Tcap * self.Kp + pad
        self.mq = self.R * self.Sp

    @property
    def name(self):
        return (f"{self.dtype}_C{self.C}_K{self.K}_OH{self.OH}_OW{self.OW}_s{self.shift[0]}_{self.shift[1]}_"
                f"G{self.Gi}r{self.rows}" + ("" if self.r == 3 else f"_f{self.r}") + ("" if self.m == 2 else f"_m{self.m}"))

    def split_rows(self, S):
        """This plan (Gi == 1) with each image in at least S chunks of tile rows (emit_image_chunks), or
        None where it has fewer than S tile rows."""
        if self.Gi != 1 or self.tH < S:
            return None
        q = copy.copy(self)
        q.rows = min(self.rows, _ceil(self.tH, S))
        q.Tcap = q.rows * q.tW
        q.vq, q.yq = q.Tcap * q.Cp + q.pad, q.Tcap * q.Kp + q.pad
        return q

    def chunks(self):
        """Chunks of tile rows of one image (Gi == 1)."""
        return _ceil(self.tH, self.rows)

    def efficiency(self):
        """Share of the tiles' outputs inside (OH, OW)."""
        return self.OH * self.OW / (self.m * self.m * self.Timg)

    def image_elems(self):
        return (self.Hb * self.Wb + self.L) * self.Cp

    def top_elems(self):
        return (self.Hd * self.Wd + self.L) * self.Kp

    def v_elems(self):
        return self.a * self.a * self.vq

    def y_elems(self):
        return self.a * self.a * self.yq

    def m_elems(self):
        return self.a * self.a * self.mq

    def source_shape(self):
        """(C, H, W) of the images copy_image reads."""
        return self.C, self.H, self.W

    def copy_image(self, ctx, src, xh, in_act=None):
        """The image src ((C, H, W) Array) into the channel-last buffer xh (copy_image); a subclass
        that copies it another way may apply the input activation in_act as it copies."""
        if in_act is not None:
            raise ValueError("the unit-stride copy takes no in_act (emit_image's on_copy applies it)")
        copy_image(ctx, self, src, xh)

    def emit_result(self, ctx, base, stride, nparts, dw):
        """dw (dense [K][C][r][r]) from the nparts partial products (reduce_and_untransform)."""
        reduce_and_untransform(ctx, self, base, stride, nparts, dw)


# -- copies into the channel-last buffers ---------------------------------------------------------

def copy_image(ctx, p, src, xh):
    """xh[((i + sh) * Wb + j + sw) * Cp + c] = src[c, i, j] (a (C, H, W) Array, cast to the plan's
    dtype) where inside the buffer; the rest of xh is not written (but for zeros, see _channel_last)."""
    _channel_last(ctx, p, src, xh, p.C, p.H, p.W, p.Hb, p.Wb, p.Cp, *p.shift)


def copy_top(ctx, p, src, dyh):
    """dyh[(i * Wd + j) * Kp + k] = src[k, i, j] (a (K, OH, OW) Array)."""
    _channel_last(ctx, p, src, dyh, p.K, p.OH, p.OW, p.Hd, p.Wd, p.Kp, 0, 0)


def _channel_last(ctx, p, src, dst, C, H, W, Hd, Wd, Cp, oh, ow):
    """dst[((i + oh) * Wd + j + ow) * Cp + c] = src[c, i, j] where inside (Hd, Wd). Rows of plain
    values of the plan's dtype go L x L blocks at a time (L rows of L channels loaded, transposed
    in registers, stored as L runs of L channels): a block past the row's end stores zeros into
    the border, or into the next row's first positions (which that row writes afterwards, or
    which are border) or, after the last row, into the buffer's slack (slack_elems)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    st = src.lltype
    i0, i1 = max(0, -oh), min(H, Hd - oh)
    j0, j1 = max(0, -ow), min(W, Wd - ow)
    if i1 <= i0 or j1 <= j0:
        return
    if not (src.dtype == p.dtype and isinstance(src.strides[2], int) and src.strides[2] == 1):
        with U.for_range(b, C, name="xc") as c:
            with U.for_range(b, i1, start=i0, name="xi") as i:
                s_ = U.gep(b, src.ptr, U.add(b, U.mul(b, c, src.strides[0]), U.mul(b, i, src.strides[1])), st)
                d = U.gep(b, dst, b.add(b.mul(b.add(i, U.i64(oh)), U.i64(Wd * Cp)), c), et)
                with U.for_range(b, j1, start=j0, name="xj") as j:
                    v = b.load(U.gep(b, s_, U.mul(b, j, src.strides[2]), st), typ=st)
                    b.store(U.cast_value(b, v, src.dtype, p.dtype),
                            U.gep(b, d, b.mul(b.add(j, U.i64(ow)), U.i64(Cp)), et))
        return
    L = p.L
    vec = Vec(ctx.module, p.dtype, L)
    lane = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))

    def block(c0, nch):
        with U.for_range(b, i1, start=i0, name="xi") as i:
            srow = U.gep(b, src.ptr, U.add(b, U.mul(b, c0, src.strides[0]), U.mul(b, i, src.strides[1])), et)
            drow = U.gep(b, dst, b.add(b.mul(b.add(i, U.i64(oh)), U.i64(Wd * Cp)), U.as_value(b, c0)), et)
            with U.for_range(b, j1, start=j0, step=L, name="xj") as j:
                left = U.splat(b, b.sub(U.i64(j1), j), ir.VectorType(U.I64, L))
                mask = b.icmp_signed("<", lane, left)
                rows = [b.call(vec.mload, [U.gep(b, srow, U.add(b, U.mul(b, u, src.strides[0]), j), et), vec.align,
                                           mask, vec.zero]) if u < nch else vec.zero for u in range(L)]
                d = U.gep(b, drow, b.mul(b.add(j, U.i64(ow)), U.i64(Cp)), et)
                for v, col in enumerate(_transpose(b, rows)):
                    b.store(col, U.gep(b, d, v * Cp, et), align=vec.size)

    full = C // L
    if full:
        with U.for_range(b, full, name="xcb") as cb:
            block(b.mul(cb, U.i64(L)), L)
    if C % L:
        block(U.i64(full * L), C % L)


def _transpose(b, rows):
    """The L x L matrix of the L vectors rows, transposed: for each bit k of the index, the
    off-diagonal k x k blocks of every 2k x 2k block swapped (L log2 L shuffles)."""
    n = len(rows)
    k = n // 2
    while k >= 1:
        lo = [j if not j & k else n + j - k for j in range(n)]
        hi = [j + k if not j & k else n + j for j in range(n)]
        it = ir.VectorType(U.I32, n)
        new = list(rows)
        for i in range(n):
            if not i & k:
                a, c = rows[i], rows[i | k]
                new[i] = b.shuffle_vector(a, c, ir.Constant(it, lo))
                new[i | k] = b.shuffle_vector(a, c, ir.Constant(it, hi))
        rows = new
        k //= 2
    return rows


# the register transpose the strided weight gradient's phase split builds on
# (kernels/conv_winograd_grad_strided.py)
transpose_lanes = _transpose


# -- transforms -------------------------------------------------------------------------------

def _tiles_function(module, p, which):
    """void f(src, dst, t_off, ti0, ntr): the transformed tiles of the tile rows ti0 .. ti0+ntr-1
    of one image's channel-last buffer src, as rows t_off + (tile row - ti0) * tW + tile column of
    dst[q][t][..]: B^T d B of the image (which 'in') or A dY A^T of its output gradient ('dy')."""
    name = f"symcnn_wgw_{which}_{p.name}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64 = U.I64
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, I64, I64, I64])
    src, dst, t_off, ti0, ntr = fn.args
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    A = [list(col) for col in zip(*p.AT)]   # a x m
    na = p.a
    if which == "in":
        n, wb, cp, qs, a = p.Cp // L, p.Wb, p.Cp, p.vq, na
    else:
        n, wb, cp, qs, a = p.Kp // L, p.Wd, p.Kp, p.yq, p.m
    with U.for_range(b, ntr, name="tr") as tr:
        ti = b.add(ti0, tr)
        with U.for_range(b, p.tW, name="tj") as tj:
            t = b.add(t_off, b.add(b.mul(tr, U.i64(p.tW)), tj))
            corner = b.mul(b.add(b.mul(b.mul(ti, U.i64(p.m)), U.i64(wb)), b.mul(tj, U.i64(p.m))), U.i64(cp))
            with U.for_range(b, n, name="cv") as cv:
                base = U.gep(b, src, b.add(corner, b.mul(cv, U.i64(L))), et)
                out = U.gep(b, dst, b.add(b.mul(t, U.i64(cp)), b.mul(cv, U.i64(L))), et)
                rows = []   # each row of the tile transformed along its columns
                for r in range(a):
                    d = [b.load(U.gep(b, base, (r * wb + s) * cp, et), typ=vec.t, align=vec.size) for s in range(a)]
                    rows.append(input_transform(b, vec, p, d) if which == "in"
                                else [combine(b, vec, A[y], d) for y in range(na)])
                for y in range(na):
                    col = [rows[r][y] for r in range(a)]
                    col = input_transform(b, vec, p, col) if which == "in" else [combine(b, vec, A[x], col)
                                                                                 for x in range(na)]
                    for x, v in enumerate(col):
                        b.store(v, U.gep(b, out, (x * na + y) * qs, et), align=vec.size)
    b.ret_void()
    return fn


# -- the GEMMs ----------------------------------------------------------------------------------

def _microkernel(module, dtype, nv, MR):
    """void ukr(kc, A, a_rs, B, b_rs, M, m_rs, mrows): M[i, :nv*L] += sum_t A[t*a_rs + i] B[t*b_rs :
    + nv*L] for the rows i < mrows (MR rows are computed)."""
    name = f"symcnn_wgw_ukr_{dtype}_{MR}x{nv}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64, P = U.I64, U.PTR
    fn, b = kernel_function(module, name, [I64, P, I64, P, I64, P, I64, I64])
    kc, ap, ars, bp, brs, mp, mrs, mrows = fn.args
    et = U.ll_type(dtype)
    L = lanes(dtype)
    vec = Vec(module, dtype, L)
    entry = b.block
    head, body, done = U.loop_blocks(b, "t")
    t = b.phi(I64, name="t")
    t.add_incoming(U.i64(0), entry)
    accs = [[b.phi(vec.t, name=f"c{i}_{j}") for j in range(nv)] for i in range(MR)]
    for row in accs:
        for ph in row:
            ph.add_incoming(vec.zero, entry)
    b.cbranch(b.icmp_signed("<", t, kc), body, done)
    b.position_at_end(body)
    brow = U.gep(b, bp, b.mul(t, brs), et)
    bv = [b.load(U.gep(b, brow, j * L, et), typ=vec.t, align=vec.size) for j in range(nv)]
    arow = U.gep(b, ap, b.mul(t, ars), et)
    new = []
    for i in range(MR):
        av = U.splat(b, b.load(U.gep(b, arow, i, et), typ=et), vec.t)
        new.append([b.call(vec.fma, [av, bv[j], accs[i][j]]) for j in range(nv)])
    for i in range(MR):
        for j in range(nv):
            accs[i][j].add_incoming(new[i][j], b.block)
    t.add_incoming(b.add(t, U.i64(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    def store_row(i):
        mrow = U.gep(b, mp, b.mul(U.i64(i), mrs), et)
        for j in range(nv):
            ptr = U.gep(b, mrow, j * L, et)
            b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), accs[i][j]), ptr, align=vec.size)
    gemm.for_tile_rows(b, MR, mrows, store_row)
    b.ret_void()
    return fn


def _products_function(module, p):
    """void f(V, Y, M, kc): M[q] += the products of the kc tiles of every position q."""
    name = f"symcnn_wgw_gemm_{p.name}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64 = U.I64
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, U.PTR, I64])
    vp, yp, mp, kc = fn.args
    et = U.ll_type(p.dtype)
    (rp, rq), (sp, sq) = ((vp, p.vq), (yp, p.yq)) if p.swap else ((yp, p.yq), (vp, p.vq))
    with U.for_range(b, p.a * p.a, name="q") as q:
        rows = U.gep(b, rp, b.mul(q, U.i64(rq)), et)
        cols = U.gep(b, sp, b.mul(q, U.i64(sq)), et)
        mq = U.gep(b, mp, b.mul(q, U.i64(p.mq)), et)
        for s0, nv, MR in p.blocks:
            ukr = _microkernel(module, p.dtype, nv, MR)
            with U.for_range(b, p.R, step=MR, name="r0") as r0:
                mrows = U.smin(b, b.sub(U.i64(p.R), r0), MR)
                b.call(ukr, [kc, U.gep(b, rows, r0, et), U.i64(p.Rp), U.gep(b, cols, s0, et), U.i64(p.Sp),
                             U.gep(b, mq, b.add(b.mul(r0, U.i64(p.Sp)), U.i64(s0)), et), U.i64(p.Sp), mrows])
    b.ret_void()
    return fn


# -- one image, one group -------------------------------------------------------------------------

class Buffers:
    """A thread's pointers: the channel-last image and output gradient, the transformed tiles V
    and Y, and its partial products M (a^2 * R * Sp)."""

    def __init__(self, xh, dyh, v, y, m):
        self.xh, self.dyh, self.v, self.y, self.m = xh, dyh, v, y, m


def zero_buffers(ctx, p, bufs):
    """The borders and the padding channels of the channel-last copies stay zero: zeroed once per
    thread. Of the tiles V and Y only each position's room past its Tcap tiles: a GEMM reads every
    tile it sums after the tiles function wrote it whole, and its last row block reads up to MR - 1
    rows past R of the last one (computed, never stored), into that room or into tiles of an earlier
    chunk. (Zeroing both whole per call was 17% of a one-image 64 -> 64 weight gradient's samples.)"""
    from ..kernels.conv import zero_fill
    b = ctx.b
    for ptr, n in ((bufs.xh, p.image_elems()), (bufs.dyh, p.top_elems())):
        zero_fill(b, ptr, 0, n, p.dtype)
    for ptr, per_q, used in ((bufs.v, p.vq, p.Tcap * p.Cp), (bufs.y, p.yq, p.Tcap * p.Kp)):
        with U.for_range(b, p.a * p.a, name="zq") as q:
            zero_fill(b, U.gep(b, ptr, b.mul(q, U.i64(per_q)), U.ll_type(p.dtype)), used, per_q, p.dtype)


def emit_image(ctx, p, x, top, bufs, slot, on_copy=None, in_act=None):
    """Image x ((C, H, W) Array) with its conv-output gradient top ((K, OH, OW) Array of the plan's
    dtype): copied (p.copy_image, in_act passed on), its tiles transformed; as the group's slot-th
    image (Gi > 1: the GEMM comes with emit_group), or (Gi == 1) chunk by chunk of tile rows, each
    chunk's GEMM here. on_copy(buffer, values): called on the copy of x (zero-bordered) before its
    tiles are read."""
    b = ctx.b
    p.copy_image(ctx, x, bufs.xh, in_act)
    if on_copy is not None:
        on_copy(bufs.xh, p.image_elems())
    copy_top(ctx, p, top, bufs.dyh)
    fin = _tiles_function(ctx.module, p, "in")
    fdy = _tiles_function(ctx.module, p, "dy")
    if p.Gi > 1:
        t_off = b.mul(U.as_value(b, slot), U.i64(p.Timg))
        for f, src, dst in ((fin, bufs.xh, bufs.v), (fdy, bufs.dyh, bufs.y)):
            b.call(f, [src, dst, t_off, U.i64(0), U.i64(p.tH)])
        return
    prod = _products_function(ctx.module, p)
    for ti0 in range(0, p.tH, p.rows):
        ntr = min(p.rows, p.tH - ti0)
        for f, src, dst in ((fin, bufs.xh, bufs.v), (fdy, bufs.dyh, bufs.y)):
            b.call(f, [src, dst, U.i64(0), U.i64(ti0), U.i64(ntr)])
        b.call(prod, [bufs.v, bufs.y, bufs.m, U.i64(ntr * p.tW)])


def emit_image_chunks(ctx, p, x, top, bufs, c0, c1):
    """emit_image (Gi == 1) for its chunks [c0, c1) of tile rows alone (IR values): a share of an image
    split over the threads. The image and its top are copied whole."""
    b = ctx.b
    p.copy_image(ctx, x, bufs.xh)
    copy_top(ctx, p, top, bufs.dyh)
    fin = _tiles_function(ctx.module, p, "in")
    fdy = _tiles_function(ctx.module, p, "dy")
    prod = _products_function(ctx.module, p)
    with U.for_range(b, c1, start=c0, name="wgc") as c:
        ti0 = b.mul(c, U.i64(p.rows))
        ntr = U.smin(b, b.sub(U.i64(p.tH), ti0), p.rows)
        for f, src, dst in ((fin, bufs.xh, bufs.v), (fdy, bufs.dyh, bufs.y)):
            b.call(f, [src, dst, U.i64(0), ti0, ntr])
        b.call(prod, [bufs.v, bufs.y, bufs.m, b.mul(ntr, U.i64(p.tW))])


def emit_group(ctx, p, bufs, gn):
    """The GEMMs of a group of gn images (Gi > 1; nothing for chunked images)."""
    if p.Gi == 1:
        return
    b = ctx.b
    kc = b.mul(U.as_value(b, gn), U.i64(p.Timg))
    b.call(_products_function(ctx.module, p), [bufs.v, bufs.y, bufs.m, kc])


# -- the result -----------------------------------------------------------------------------------

def reduce_and_untransform(ctx, p, base, stride, nparts, dw):
    """dw[k, c] (dense [K][C][r][r], the plan's dtype) = G^T (sum over the nparts partials M at
    base + t*stride, in float64 in thread order) G, turned 180 degrees when p.flip.
    A vector of float64 lanes takes that many consecutive columns s of M (contiguous in every
    partial; Sp, a multiple of the lanes, keeps the last vector inside), each lane's r x r results
    stored apart: this runs on the calling thread after the parallel part, and 128 -> 128 channels
    make 16384 filters of 36 points each (scalar, it took 30% of such a gradient on two threads).
    Each vector of columns by a call of one function (irutil.call_outlined)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    Gt = [list(col) for col in zip(*p.Gm)]   # r x a
    na, r_ = p.a, p.r
    VL = max(1, p.L * U.itemsize(p.dtype) // 8)   # float64 lanes in the target's vector
    dvec = Vec(ctx.module, "float64", VL)
    src_t = ir.VectorType(et, VL)
    lane_step = p.C * r_ * r_ if p.swap else r_ * r_   # from column s to s + 1 in dw
    tail = p.S % VL != 0

    def one(fb, params):
        src, step, dst, nlanes, mq, lane = params
        part = [src]   # each partial's column, then moved on by mq per transformed value q
        for t in range(1, nparts):
            part.append(U.gep(fb, part[-1], step, et))
        m = []
        for q in range(na * na):
            acc = None
            for t in range(nparts):
                ptr = part[t] if q == 0 else U.gep(fb, part[t], mq, et)
                part[t] = ptr
                v = fb.load(ptr, typ=src_t, align=U.itemsize(p.dtype))
                v = v if p.dtype == "float64" else fb.fpext(v, dvec.t)
                acc = v if acc is None else fb.fadd(acc, v)
            m.append(acc)
        half = [[combine(fb, dvec, Gt[u], [m[x * na + y] for x in range(na)]) for y in range(na)]
                for u in range(r_)]
        outs = {}
        for u in range(r_):
            for w in range(r_):
                v = combine(fb, dvec, Gt[w], half[u])
                v = v if p.dtype == "float64" else fb.fptrunc(v, src_t)
                outs[(r_ - 1 - u) * r_ + (r_ - 1 - w) if p.flip else u * r_ + w] = v
        lane_dst = [dst]
        for j in range(1, VL):
            lane_dst.append(U.gep(fb, lane_dst[-1], lane, et))
        for j in range(VL):
            def store(j=j):
                d = lane_dst[j]
                for idx, v in sorted(outs.items()):
                    fb.store(fb.extract_element(v, U.i64(j)), U.gep(fb, d, idx, et))
            if not tail or j == 0:
                store()
            else:   # the last vector's lanes past S
                with fb.if_then(fb.icmp_signed("<", U.i64(j), nlanes)):
                    store()
    # the distances are arguments: layers with the same tile, filter size and flip share the function
    name = (f"symcnn_wgw_untransform_{p.dtype}_F{p.m}r{r_}{'_flip' if p.flip else ''}_n{nparts}_"
            f"v{VL}{'_tail' if tail else ''}")
    with U.for_range(b, p.R, name="rr") as r:
        with U.for_range(b, _ceil(p.S, VL), name="rs") as sb:
            s = b.mul(sb, U.i64(VL))
            off = b.add(b.mul(r, U.i64(p.Sp)), s)
            k, c = (s, r) if p.swap else (r, s)
            dst = U.gep(b, dw, b.mul(b.add(b.mul(k, U.i64(p.C)), c), U.i64(r_ * r_)), et)
            nlanes = b.sub(U.i64(p.S), s)
            U.call_outlined(b, name, [U.gep(b, base, off, et), U.as_value(b, stride), dst, nlanes,
                                      U.i64(p.mq), U.i64(lane_step)], one)
