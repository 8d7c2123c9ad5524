"""Strided convolutions as unit-stride direct convolutions of phase images (static shapes).

With strides (sh, sw), input pixel (y, x) of the zero-bordered image belongs to phase
(y mod sh, x mod sw) at position (y div sh, x div sw). A tap (r, s) of the filter, at output (i, j),
reads bordered pixel (sh*i + r, sw*j + s): phase (r mod sh, s mod sw) at (i + r div sh, j + s div sw),
a unit-stride read. So:

  forward  each image is split into its sh*sw phase images, stacked per channel in one per-thread
           zero-bordered (C, sh*sw*Hp, Wp) buffer; the direct kernel of microkernels/directconv.py runs
           its 'valid' unit-stride convolution on it with every tap's offset pointing into the tap's
           phase (PhaseImages): C*kh*kw taps, as many as the convolution has, none of them zero.
  gx       the input gradient, split by the phase (qy, qx) of dx: dx[c, sh*u + qy, sw*v + qx] is a
           'valid' unit-stride correlation of the zero-bordered output gradient with the sub-filter
           of the taps r = qy + ph (mod sh), s = qx + pw (mod sw) (PhaseGradInputs): one direct plan
           per phase, each only the products that exist, then the phases are interleaved into dx.

With outputs a fraction of a vector wide (e.g. 8x8 outputs, 16 float32 lanes), both use a shifted layout
where it makes each of the kernel's vectors (G = L/OW output rows) one load: rows cut to exactly OW
values, one copy of the image per column offset a tap reads (PhaseImages.shifted,
PhaseGradInputs.cols), so the G rows lie end to end (directconv.whole_rows) instead of being G partial
loads joined by shuffles, which compete with the FMAs for their ports (allconv's 16x16 -> 8x8 layer:
its forward kernel 9%, its input-gradient kernels 14% faster). Both take it too with outputs exactly
a vector wide (G = 1): each row is then one aligned load, where the plain layout's taps with a column
offset read across two cache lines (allconv's 32x32 -> 16x16 layer: its input gradient 12% faster,
one thread).

The weight gradient of a strided convolution needs no phases: the tap-panel kernel of
directconv_grad.py reads its patches through a table of output positions, any stride
(conv_grad.TapChunks).
"""
from llvmlite import ir

from .. import irutil as U
from ..irutil import lanes
from ..microkernels import directconv as D
from .conv import gep, zero_fill
from .conv_forward import MIN_DIRECT_TAPS, DirectImages
from .conv_threads import apply_program, lanewise, shift_copy
from .elemwise import emit_scalar


# Phase splits of rows with column strides up to this take vectors (_split_row): a vector of phase
# columns gathers from S source blocks, S/2 shuffles.
MAX_VECTOR_STRIDE = 4


def _cdiv(a, b):
    return -(-a // b)


class _Valid:
    """The parts of a conv op directconv.plan reads: a 'valid' unit-stride convolution (of phase images)."""
    border_mode = "valid"
    subsample = (1, 1)

    def __init__(self, flip):
        self.filter_flip = flip


def _columns(S, off, n_src, n_dst):
    """How the columns of S phase rows map onto one full-resolution row: phase column v of phase p is
    column S*v + p - off of the row (0 <= it < n_src, v < n_dst[p]). Returns (v0, v1, edges): every
    phase has v in [v0, v1) (one loop with S accesses per step), and (v, p) the remaining pairs."""
    ranges = [(max(0, _cdiv(off - p, S)), min(n_dst[p], (n_src - 1 + off - p) // S + 1)) for p in range(S)]
    v0 = max(lo for lo, _ in ranges)
    v1 = max(v0, min(hi for _, hi in ranges))
    edges = [(v, p) for p, (lo, hi) in enumerate(ranges) for v in range(lo, hi) if not v0 <= v < v1]
    return v0, v1, edges


def _interleave_row(b, S, off, n_src, n_dst, move):
    """move(v, p) for every column v of phase p that lies in the row (see _columns)."""
    v0, v1, edges = _columns(S, off, n_src, n_dst)
    if v1 > v0:
        with U.for_range(b, v1, start=v0, name="pv") as v:
            for p in range(S):
                move(v, p)
    for v, p in edges:
        move(v, p)


def _masked_ops(b, dtype, n):
    """(load, store) of <n x dtype> at ptr under a constant mask (a list of n bools): plain when every
    lane is on; masked lanes are neither read nor written."""
    et = U.ll_type(dtype)
    vt, mt = ir.VectorType(et, n), ir.VectorType(U.I1, n)
    sfx = f"v{n}{'f32' if dtype == 'float32' else 'f64'}"
    module = b.block.function.module
    mload = U.declare(module, f"llvm.masked.load.{sfx}.p0", vt, [U.PTR, U.I32, mt, vt])
    mstore = U.declare(module, f"llvm.masked.store.{sfx}.p0", ir.VoidType(), [vt, U.PTR, U.I32, mt])
    align = ir.Constant(U.I32, U.itemsize(dtype))
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * n)

    def load(ptr, mask):
        if all(mask):
            return b.load(ptr, typ=vt, align=U.itemsize(dtype))
        return b.call(mload, [ptr, align, ir.Constant(mt, [int(m) for m in mask]), zero])

    def store(v, ptr, mask):
        if all(mask):
            b.store(v, ptr, align=U.itemsize(dtype))
        elif any(mask):
            b.call(mstore, [v, ptr, align, ir.Constant(mt, [int(m) for m in mask])])

    return load, store


def _pieces(s1, Wr, L):
    """[(position, width)]: stores of power-of-two widths (at most L) covering positions [0, s1) of a
    row of Wr, rounded up past s1 where the row has room (a row's positions past its values are
    padding, zero)."""
    out, pos = [], 0
    while pos < s1:
        r = s1 - pos
        n = 1 << (r - 1).bit_length()   # the smallest power of two covering the rest
        if n > min(L, Wr - pos):
            n = 1 << (min(r, L).bit_length() - 1)   # the largest that fits
        out.append((pos, n))
        pos += n
    return out


def _split_row(b, dtype, src, S, off, n_src, targets, Wr, act=None):
    """Stride S: dst[v - d] = src[S*v + p - off] for lo <= v < hi, for every target (p, d, dst, lo, hi)
    (0 <= S*v + p - off < n_src there), each dst a row of Wr.

    The source row is read in L-column blocks from its start (a masked load for a partial last one)
    and each target row written from its start in whole vectors (_pieces), the positions outside
    [lo - d, hi - d) as zeros: they are the row's padding, which no other target writes. So every
    load and store starts where the rows do and none is masked but a short row's tail load (allconv's
    8-wide rows: one 32-byte store each, within a cache line), where 2L-column loads from column -1
    (the left padding) took a masked load and a scalar one per row and masked 16-lane stores that
    spanned two lines. allconv's strided forwards, one thread, CPU time: 32x32 -> 16x16 6%, 16x16 ->
    8x8 1.5% faster; the split still takes ~14% of the latter's samples, mostly waiting for the
    source rows (from L3 or memory) and for the buffer's lines (it is larger than L1). With stride 3
    a vector of phase columns gathers from three blocks (two shuffles and a select), where a scalar
    load and store per value took 28% of a 5x5 stride-3 forward's samples (16 -> 32 channels, 33x33)."""
    if not targets:
        return
    L = lanes(dtype)
    et = U.ll_type(dtype)
    vt = ir.VectorType(et, L)
    load, _ = _masked_ops(b, dtype, L)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    nblk = _cdiv(n_src, L)
    # the source blocks any target reads (the others are not loaded)
    need = {(S * v + p - off) // L for p, d, _, lo, hi in targets for v in range(lo, hi)}
    blocks = []
    for k in range(nblk):
        if k not in need:
            blocks.append(zero)
            continue
        valid = [k * L + e < n_src for e in range(L)]
        v = load(gep(b, src, k * L, et), valid)
        if act is not None:
            v = U.opaque(b, lanewise(b, v, act, [e for e in range(L) if valid[e]]))
        blocks.append(v)
    for p, d, dst, lo, hi in targets:
        for pos, n in _pieces(hi - d, Wr, L):
            # lane j: phase column v = pos + j + d, source column S*v + p - off (zero outside [lo, hi))
            cols = [S * (pos + j + d) + p - off if lo <= pos + j + d < hi else None for j in range(n)]
            used = sorted({c // L for c in cols if c is not None})
            if not used:
                val = ir.Constant(ir.VectorType(et, n), [ir.Constant(et, 0.0)] * n) if n > 1 else ir.Constant(et, 0.0)
            else:
                val = _gather_lanes(b, blocks, used, cols, L, zero)
                if n == 1:
                    val = b.extract_element(val, ir.Constant(U.I32, 0))
            ptr = gep(b, dst, pos, et)
            if n == 1:
                b.store(val, ptr)
            else:
                b.store(val, ptr, align=U.itemsize(dtype))


def _gather_lanes(b, blocks, used, cols, L, zero):
    """A vector of len(cols) lanes: lane j = column cols[j] of the source blocks (block c // L, lane
    c % L), 0 where cols[j] is None; two blocks per shuffle, the shuffles of further pairs selected in."""
    n = len(cols)
    idx_t = ir.VectorType(U.I32, n)
    out = None
    for i in range(0, len(used), 2):
        pair = used[i:i + 2]
        a = blocks[pair[0]]
        c = blocks[pair[1]] if len(pair) > 1 else zero
        # lanes from this pair; the rest from the second operand's zero lanes (or the pair's own, then replaced)
        idx, mine = [], []
        for col in cols:
            if col is not None and col // L in pair:
                idx.append(col % L + L * pair.index(col // L))
                mine.append(True)
            else:
                idx.append(L + (L - 1) if len(pair) == 1 else 0)   # a zero lane, or any (masked below)
                mine.append(False)
        v = b.shuffle_vector(a, c, ir.Constant(idx_t, idx))
        if len(pair) > 1 and not all(mine) and out is None:
            v = b.select(ir.Constant(ir.VectorType(U.I1, n), [int(m) for m in mine]), v,
                         ir.Constant(v.type, [ir.Constant(v.type.element, 0.0)] * n))
        if out is None:
            out = v
        else:
            out = b.select(ir.Constant(ir.VectorType(U.I1, n), [int(m) for m in mine]), v, out)
    return out


def _merge_row2(b, dtype, srcs, n_dst, dst):
    """Stride 2, vectors of L phase columns: dst[2*v + q] = srcs[q][v] (0 where srcs[q] is None) for
    2*v + q < n_dst, one store of 2L columns per L phase columns (blocks unrolled, constant masks)."""
    L = lanes(dtype)
    et = U.ll_type(dtype)
    load, _ = _masked_ops(b, dtype, L)
    _, store2 = _masked_ops(b, dtype, 2 * L)
    zero = ir.Constant(ir.VectorType(et, L), [ir.Constant(et, 0.0)] * L)
    inter = ir.Constant(ir.VectorType(U.I32, 2 * L), [l // 2 + (L if l % 2 else 0) for l in range(2 * L)])
    for vb in range(0, _cdiv(n_dst, 2), L):
        parts = [zero if src is None else load(gep(b, src, vb, et), [vb + l < _cdiv(n_dst - q, 2) for l in range(L)])
                 for q, src in enumerate(srcs)]
        store2(b.shuffle_vector(parts[0], parts[1], inter), gep(b, dst, 2 * vb, et),
               [2 * vb + e < n_dst for e in range(2 * L)])


# -- forward ----------------------------------------------------------------------------------------

class PhaseSplit:
    """Splitting (C, H, W) images into their stride phases: the owner sets C, H, W, pads, stride,
    kh, kw (the filter: phases and copies no tap reads are left alone), Hp (rows per phase image),
    Wr (the row length), nd and shifted (the copies of PhaseImages' shifted layout) and chan_elems
    (the buffer's elements per source channel)."""

    def fill(self, ctx, src, dst, dtype, in_act=None):
        """dst[c, ((py*sw + px)*nd + d)*Hp + u, v] = act(src[c, sh*u + py - ph, sw*(v + d) + px - pw]) (v < Wr)
        where that exists (cast to dtype), for a (C, H, W) Array src, act the program in_act (None: the
        identity); the rest of dst is not written (zeroed once by the caller: every image writes the
        same positions, and the zero border is the padding of act(src), whatever act(0) is).

        in_act runs on the source values as they are split (vectors: on each source row, in L1, before
        its split), once per value read, not as a second pass over the buffer, which holds each phase
        image nd times with its borders (allconv's 32x32 -> 16x16: 2.1 times the image, that pass
        ~20% of the forward)."""
        b = ctx.b
        sh, sw = self.stride
        ph, pw = self.pads
        Hp, Wr, nd = self.Hp, self.Wr, self.nd
        kh, kw = self.kh, self.kw
        et, st = U.ll_type(dtype), src.lltype
        # strides 2 to MAX_VECTOR_STRIDE along rows of dense columns of the same dtype: vectors
        vector = 2 <= sw <= MAX_VECTOR_STRIDE and src.dtype == dtype and isinstance(src.strides[2], int) \
            and src.strides[2] == 1
        with U.for_range(b, self.C, name="fc") as c:
            sc = gep(b, src.ptr, U.mul(b, c, src.strides[0]), st)
            dc = gep(b, dst, U.mul(b, c, self.chan_elems), et)
            for py in range(min(sh, kh)):   # phases no tap reads are left zero
                u0 = max(0, _cdiv(ph - py, sh))
                u1 = min(Hp, (self.H - 1 + ph - py) // sh + 1)
                if u1 <= u0:
                    continue
                with U.for_range(b, u1, start=u0, name="fu") as u:
                    srow = gep(b, sc, U.mul(b, U.add(b, U.mul(b, u, sh), py - ph), src.strides[1]), st)
                    # (phase column, copy, row): copy d holds columns d .. d + Wr - 1 (the copies no tap reads are left zero)
                    drows = [(px, d, gep(b, dc, U.mul(b, U.add(b, U.i64(((py * sw + px) * nd + d) * Hp), u), Wr), et))
                             for px in range(min(sw, kw)) for d in range(_cdiv(kw - px, sw) if self.shifted else 1)]
                    self._fill_row(ctx, src, srow, drows, dtype, vector, in_act)

    def _fill_row(self, ctx, src, srow, drows, dtype, vector, in_act=None):
        """drow[v - d] = act(srow[sw*v + px - pw]) for every (px, d, drow) of drows (0 <= v - d < Wr)."""
        b = ctx.b
        sw, pw, Wr = self.stride[1], self.pads[1], self.Wr
        # the phase columns of phase px that the source holds
        ranges = [(max(0, _cdiv(pw - px, sw)), (self.W - 1 + pw - px) // sw + 1) for px in range(sw)]
        if vector:
            targets = [(px, d, drow, max(ranges[px][0], d), min(ranges[px][1], Wr + d)) for px, d, drow in drows]
            act = None if in_act is None else (lambda v: emit_scalar(ctx, in_act, [v], [dtype], dtype))
            _split_row(b, dtype, srow, sw, pw, self.W, [t for t in targets if t[3] < t[4]], Wr, act)
            return
        et, st = U.ll_type(dtype), src.lltype
        by_phase = {}
        for px, d, drow in drows:
            by_phase.setdefault(px, []).append((d, drow))

        def move(v, px):
            targets = by_phase.get(px, [])
            if not targets:
                return
            col = U.add(b, U.mul(b, v, sw), px - pw)
            x = U.cast_value(b, b.load(gep(b, srow, U.mul(b, col, src.strides[2]), st), typ=st), src.dtype, dtype)
            if in_act is not None:
                x = emit_scalar(ctx, in_act, [x], [dtype], dtype)
            for d, drow in targets:
                # (the plain layout's phase columns all lie in its rows)
                inside = True if not self.shifted else _in_range(b, U.sub(b, v, d), Wr)
                if inside is True:
                    b.store(x, gep(b, drow, U.sub(b, v, d), et))
                elif inside is not False:
                    with b.if_then(inside):
                        b.store(x, gep(b, drow, U.sub(b, v, d), et))

        _interleave_row(b, sw, pw, self.W, [Wr + self.nd - 1] * sw, move)


class PhaseImages(PhaseSplit, DirectImages):
    """A strided convolution of (C, H, W) sources into (K, OH, OW) results as the direct kernel's 'valid'
    convolution of a (C, sh*sw*Hp, Wp) buffer: channel c holds the sh*sw phase images of the bordered
    source, Hp rows each, phase (py, px) at rows (py*sw + px)*Hp. The plan p is the direct kernel's
    for that buffer (its H is sh*sw*Hp); only the tap offsets differ from a unit-stride convolution.

    shifted: each phase image is stored nd = ceil(kw / sw) times, copy d moved left by d columns and
    cut to rows of exactly OW (Wr), so every tap (r, s) reads copy s div sw from its column 0: the
    kernel's row loads all start at a row start, and OW-wide rows lie end to end (the 'rows' layout's
    vector of G = L/OW rows is one load, not G partial loads joined by shuffles; the 'wide' layout
    computes no column past a row's end). The buffer is then (C, sh*sw*nd*Hp, Wr)."""

    def __init__(self, p, C, H, W, pads, stride, Hp, Wp, shifted=False):
        super().__init__(D.block_channels(p), C, H, W, (0, 0))
        self.pads, self.stride, self.Hp, self.Wp, self.shifted = tuple(pads), tuple(stride), Hp, Wp, shifted
        self.nd = _cdiv(p.kw, stride[1]) if shifted else 1
        self.Wr = p.W   # the buffer's row length: Wp, or OW in the shifted layout
        self.kh, self.kw, self.chan_elems = p.kh, p.kw, p.H * p.W
        self.copy = True

    @property
    def variant(self):
        return f"phases {'shifted ' if self.shifted else ''}{self.p.mode}"

    def pack(self, ctx, w_dense, wp, offs):
        """The weights packed as for any direct plan (its tap order (c, r, s)), then the tap offsets
        rewritten to point into the taps' phases."""
        D.pack_weights(ctx, self.p, w_dense, wp, offs)
        self.write_offsets(ctx, offs)

    def write_offsets(self, ctx, offs):
        """offs[t] for the taps t = (c, r, s), from a constant table (irutil.copy_i64_table)."""
        p = self.p
        sh, sw = self.stride
        plane = self.Hp * self.Wr
        vals = []
        for c in range(p.C):
            for r in range(p.kh):
                for s in range(p.kw):
                    phase = (r % sh) * sw + s % sw
                    if self.shifted:   # copy s div sw of the phase, from its column 0
                        block, col = phase * self.nd + s // sw, 0
                    else:
                        block, col = phase, s // sw
                    vals.append(c * p.H * p.W + block * plane + (r // sh) * self.Wr + col)
        U.copy_i64_table(ctx.b, "symcnn_phase_offsets", vals, offs)

# The shifted layout stores each phase image ceil(kw / sw) times: at most this many copies (3x3
# filters with stride 2: 2), so the buffer stays within twice the plain one's size.
MAX_SHIFTED_COPIES = 2


def _in_range(b, v, n):
    """0 <= v < n for an int or an i64 value v (a bool or an i1)."""
    if isinstance(v, int):
        return 0 <= v < n
    return b.and_(b.icmp_signed(">=", v, U.i64(0)), b.icmp_signed("<", v, U.i64(n)))


def phase_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A PhaseImages for a strided convolution when every size is a static int and the direct kernel
    applies (the unit-stride cut-offs: MIN_DIRECT_TAPS taps per output, the plan's efficiency), else None."""
    sh, sw = stride
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)) or (sh, sw) == (1, 1):
        return None
    if OH < 1 or OW < 1 or C * kh * kw < MIN_DIRECT_TAPS:
        return None
    Hp = max(_cdiv(H + 2 * pads[0], sh), OH + (kh - 1) // sh)
    Wp = max(_cdiv(W + 2 * pads[1], sw), OW + (kw - 1) // sw)
    nd = _cdiv(kw, sw)
    if nd <= MAX_SHIFTED_COPIES:
        # the shifted layout when it makes each vector one load: several whole output rows, or one
        # (OW = L: the plain layout's rows, padded to 2*OW for alignment, are read from column 1 by
        # the taps s = 2, every such load across two cache lines; allconv's 32x32 -> 16x16 forward
        # 4-8% faster shifted, one thread, CPU time, with the same buffer size)
        p = D.plan(_Valid(flip), dtype, [None, C, sh * sw * nd * Hp, OW, K, kh, kw, OH, OW], modes=("rows",))
        if p is not None and (D.whole_rows(p) or p.G == 1):
            return PhaseImages(p, C, H, W, pads, stride, Hp, Wp, shifted=True)
    p = D.plan(_Valid(flip), dtype, [None, C, sh * sw * Hp, Wp, K, kh, kw, OH, OW])
    if p is None:
        return None
    if p.mode == "rows" and Wp % OW:
        # phase rows a whole number of output rows long: the kernel's row loads (OW lanes) of the
        # taps in even columns then start on their own alignment, not across two cache lines
        # (allconv's 32x32 -> 16x16: Wp 17 -> 32, the forward 17% faster)
        Wa = _cdiv(Wp, OW) * OW
        pa = D.plan(_Valid(flip), dtype, [None, C, sh * sw * Hp, Wa, K, kh, kw, OH, OW])
        if pa is not None and pa.mode == "rows":
            p, Wp = pa, Wa
    return PhaseImages(p, C, H, W, pads, stride, Hp, Wp)


# -- input gradient ---------------------------------------------------------------------------------

class _GxPhase:
    """One phase (qy, qx) of dx: U x V positions, sub-filter taps r = sh*a + ry (a < Ah), s = sw*b + rx
    (b < Aw), reading the bordered top at row u + dy - a + Bh, column v + dx - b + Bw; its direct plan
    (None: no tap reaches this phase, it stays zero) and where its packed weights, tap offsets and
    conv scratch start."""

    def __init__(self, qy, qx, U_, V, ry, rx, dy, dx, Ah, Aw):
        self.qy, self.qx, self.U, self.V = qy, qx, U_, V
        self.ry, self.rx, self.dy, self.dx, self.Ah, self.Aw = ry, rx, dy, dx, Ah, Aw
        self.p = None
        self.w0 = self.o0 = self.s0 = 0


class PhaseGradInputs:
    """The input gradient of a strided convolution, phase by phase of dx (module docstring). The output
    gradient of an image is copied into a per-thread zero-bordered (K, Ht, Wt) buffer (Bh, Bw rows and
    columns before it; in the shifted layout, one (K, Ht, Wr) copy of its columns cols[i] .. + Wr - 1
    per column offset cols[i] a tap reads); every phase's direct plan convolves it into its part of a
    per-thread scratch, and the phases are interleaved into dx[n]."""

    variant = "phases"

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.flip = OH, OW, flip
        sh, sw = self.stride = tuple(stride)
        ph, pw = pads
        self.Bh, self.Bw = (kh - 1) // sh, (kw - 1) // sw
        self.phases = []
        for qy in range(sh):
            for qx in range(sw):
                ry, rx = (qy + ph) % sh, (qx + pw) % sw
                self.phases.append(_GxPhase(qy, qx, _cdiv(H - qy, sh), _cdiv(W - qx, sw), ry, rx,
                                            (qy + ph) // sh, (qx + pw) // sw,
                                            max(0, _cdiv(kh - ry, sh)), max(0, _cdiv(kw - rx, sw))))
        self.Ht = max([OH] + [q.U + q.dy for q in self.phases]) + self.Bh
        self.Wt = max([OW] + [q.V + q.dx for q in self.phases]) + self.Bw
        self.ok = True
        self.cols = None   # the shifted layout's column offsets (None: the plain bordered top)
        live = [q for q in self.phases if min(q.U, q.V, q.Ah, q.Aw) >= 1]
        if not self._shifted(live):
            for q in live:
                q.p = D.plan(_Valid(False), dtype, [None, K, self.Ht, self.Wt, C, q.Ah, q.Aw, q.U, q.V])
        w0 = o0 = s0 = 0
        for q in live:
            if q.p is None:
                self.ok = False
                return
            q.w0, q.o0, q.s0 = w0, o0, s0
            w0 += q.p.nkb * q.p.P * q.p.MR
            o0 += q.p.P
            s0 += q.p.scratch_elems()
        self.weight_elems, self.n_offsets, self.scratch_elems = max(w0, 1), max(o0, 1), max(s0, 1)
        self.top_elems = K * self.Ht * self.Wt if self.cols is None else len(self.cols) * K * self.Ht * self.Wr

    def _shifted(self, live):
        """The shifted layout of the bordered top (as PhaseImages's): one copy of it per column offset
        that a tap reads, cut to rows of V (Wr), blocks (column offset, k, row); taken when every
        phase has the same V and its 'rows' plan then loads each vector of several rows at once, or
        rows of one vector each (G = 1), aligned."""
        Vs = {q.V for q in live}
        if len(Vs) != 1 or self.K * self.Ht * self.Wt == 0:
            return False
        V = Vs.pop()
        cols = sorted({q.dx - bb + self.Bw for q in live for bb in range(q.Aw)})
        if len(cols) > MAX_SHIFTED_COPIES:
            return False
        plans = [D.plan(_Valid(False), self.dtype, [None, self.K, len(cols) * self.Ht, V, self.C, q.Ah, q.Aw, q.U, V],
                        modes=("rows",)) for q in live]
        if not all(p is not None and (D.whole_rows(p) or p.G == 1) for p in plans):
            return False
        for q, p in zip(live, plans):
            q.p = p
        self.cols, self.Wr = cols, V
        self.variant = "phases shifted"
        return True

    def _tap_offset(self, q, a, bb):
        """The offset of tap (a, bb) of phase q at dx position (0, 0) in the (bordered or shifted) top
        of channel 0."""
        row = q.dy - a + self.Bh
        col = q.dx - bb + self.Bw
        if self.cols is None:
            return row * self.Wt + col
        return (self.cols.index(col) * self.K * self.Ht + row) * self.Wr

    def computed_products(self):
        return sum(q.U * q.V * q.Ah * q.Aw for q in self.phases if q.p is not None)

    def pack(self, ctx, w_dense, wp, offs):
        """Per phase: wp[(kb*P + t)*MR + i] = the filter value that dx channel c = kb*MR + i takes from
        tap t = (k, a, b) (0 past C), offs[t] = that tap's offset in the bordered top."""
        b = ctx.b
        et = U.ll_type(self.dtype)
        C, K, kh, kw = self.C, self.K, self.kh, self.kw
        sh, sw = self.stride
        phases = [(q, [(a, bb) for a in range(q.Ah) for bb in range(q.Aw)]) for q in self.phases if q.p is not None]
        plane = self.Ht * (self.Wt if self.cols is None else self.Wr)
        # one loop nest for all the phases (not one per phase and tap: IR for LLVM to compile)
        with U.for_range(b, K, name="gk") as k:
            for q, taps in phases:
                for i, (a, bb) in enumerate(taps):
                    t = b.add(b.mul(k, U.i64(len(taps))), U.i64(i))
                    off = b.add(b.mul(k, U.i64(plane)), U.i64(self._tap_offset(q, a, bb)))
                    b.store(off, b.gep(offs, [b.add(t, U.i64(q.o0))], source_etype=U.I64))
        groups = {}
        for q, taps in phases:
            groups.setdefault((q.p.nkb * q.p.MR, q.p.MR), []).append((q, taps))
        for (channels, MR), members in groups.items():
            with U.for_range(b, channels, name="gc") as cc:
                kb = b.udiv(cc, U.i64(MR))
                lane = b.urem(cc, U.i64(MR))
                valid = b.icmp_signed("<", cc, U.i64(C))
                c = U.smin(b, cc, C - 1)
                with U.for_range(b, K, name="gk") as k:
                    wk = b.mul(b.add(b.mul(k, U.i64(C)), c), U.i64(kh * kw))
                    for q, taps in members:
                        for i, (a, bb) in enumerate(taps):
                            r, s = sh * a + q.ry, sw * bb + q.rx
                            if self.flip:
                                r, s = kh - 1 - r, kw - 1 - s
                            v = b.load(b.gep(w_dense, [b.add(wk, U.i64(r * kw + s))], source_etype=et), typ=et)
                            t = b.add(b.mul(k, U.i64(len(taps))), U.i64(i))
                            dst = b.add(b.mul(b.add(b.mul(kb, U.i64(q.p.P)), t), U.i64(MR)), lane)
                            b.store(b.select(valid, v, U.const(self.dtype, 0.0)),
                                    b.gep(wp, [b.add(dst, U.i64(q.w0))], source_etype=et))

    def zero_border(self, b, tbuf):
        zero_fill(b, tbuf, 0, self.top_elems, self.dtype)

    def emit_image(self, ctx, top, tbuf, wp, offs, conv, dx, x=None, act=None, nxt=None):
        """dx (one dense (C, H, W) image) = the input gradient from top (one (K, OH, OW) Array); tbuf's
        border zeroed by the caller (zero_border). With act (a program of (x, g)) and x (the dense
        (C, H, W) input image): dx = act(x, that gradient), applied channel by channel as each
        channel's phases are merged (in L1), not as a pass over the whole image. nxt: a region of
        directconv.Streams the caller reads next, prefetched by the kernels with dx."""
        b = ctx.b
        dt = self.dtype
        et = U.ll_type(dt)
        if self.cols is None:
            shift_copy(ctx, top, tbuf, dt, self.K, self.OH, self.OW, self.Ht, self.Wt, self.Bh, self.Bw)
        else:   # block i: the bordered top's columns cols[i] .. cols[i] + Wr - 1
            for i, col in enumerate(self.cols):
                shift_copy(ctx, top, gep(b, tbuf, i * self.K * self.Ht * self.Wr, et), dt, self.K, self.OH, self.OW,
                           self.Ht, self.Wr, self.Bh, self.Bw - col)
        # the phases' kernels prefetch (a share each) dx for the merge's stores, which would wait for
        # its lines, and what the caller reads next (nxt)
        planned = [q for q in self.phases if q.p is not None]
        regions = [(dx, self.C * self.H * self.W * U.itemsize(dt), True)] + ([nxt] if nxt is not None else [])
        for i, q in enumerate(planned):
            D.emit_image(ctx, q.p, tbuf, gep(b, wp, q.w0, et), gep(b, offs, q.o0, U.I64), gep(b, conv, q.s0, et),
                         ahead=[D.share(b, r, i, len(planned)) for r in regions])
        self._interleave(ctx, conv, dx, x, act)

    def _interleave(self, ctx, conv, dx, x=None, act=None):
        """dx[c, sh*u + qy, sw*v + qx] = phase (qy, qx)'s conv[c*row_stride + u*rs + v] (0: no plan);
        then, with act, dx[c] = act(x[c], dx[c])."""
        b = ctx.b
        dt = self.dtype
        et = U.ll_type(dt)
        sh, sw = self.stride
        zero = U.const(dt, 0.0)
        with U.for_range(b, self.C, name="xc") as c:
            dc = gep(b, dx, U.mul(b, c, self.H * self.W), et)
            for qy in range(sh):
                row = [q for q in self.phases if q.qy == qy]
                if row[0].U < 1:
                    continue
                with U.for_range(b, row[0].U, name="xu") as u:
                    drow = gep(b, dc, U.mul(b, U.add(b, U.mul(b, u, sh), qy), self.W), et)
                    srows = [None if q.p is None else
                             gep(b, conv, U.add(b, U.add(b, U.mul(b, c, q.p.row_stride), U.mul(b, u, q.p.rs)), q.s0), et)
                             for q in row]
                    if sw == 2:
                        _merge_row2(b, dt, srows, self.W, drow)
                    else:
                        _interleave_row(b, sw, 0, self.W, [q.V for q in row],
                                        lambda v, qx, drow=drow, srows=srows: b.store(
                                            zero if srows[qx] is None else b.load(gep(b, srows[qx], v, et), typ=et),
                                            gep(b, drow, U.add(b, U.mul(b, v, sw), qx), et)))
            if act is not None:
                apply_program(ctx, act, dt, [gep(b, x, U.mul(b, c, self.H * self.W), et), dc], dc, self.H * self.W)


def phase_grad_inputs(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A PhaseGradInputs for the input gradient of a strided convolution with static sizes, when the
    direct kernel applies to every phase (unit-stride cut-offs) and the phases compute at most 9/8 of
    the products that exist (the bordered top adds zeros around small outputs), else None."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)) or tuple(stride) == (1, 1):
        return None
    if min(C, H, W, K, OH, OW) < 1 or K * kh * kw < MIN_DIRECT_TAPS:
        return None
    pg = PhaseGradInputs(str(dtype), C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    if not pg.ok or pg.computed_products() == 0 or 8 * pg.computed_products() > 9 * OH * OW * kh * kw:
        return None
    return pg
