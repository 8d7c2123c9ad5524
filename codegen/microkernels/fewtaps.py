"""Convolutions with few taps per output (C*kh*kw below conv_forward.MIN_DIRECT_TAPS: the first
layers of real networks, 3x3 filters on 3 channels, 5x5 on one), forward and weight gradient, with
unit strides, on a zero-bordered dense (C, H, W) copy of each image.

Why not directconv.py's kernel: its loop over the taps reads each tap's offset from a table and
carries the accumulators through a loop of only P iterations, so with 25 or 27 taps the loop and
address work cost about as much as the FMAs. Here the tap loop is unrolled with every offset a
constant (the image geometry is static): each tile's loads and weight broadcasts are one base plus
constant displacements, and nothing is loop-carried but the output position.

The output positions are covered by vectors of L lanes in one of two layouts:

  rows  each output row is ceil(OW/L) vectors: vector v = (i, jv) reads the buffer at i*W + jv*L
        (+ the tap's offset) and writes out[i*rs + jv*L] (rs = OW into a dense output plane, the
        row's last vector stored under a mask; else whole vectors, rs = ceil(OW/L)*L);
  wide  vector v covers q = v*L .. of the buffer's flat positions q = i*W + j, q < (OH-1)*W + OW
        (as directconv's wide layout; rs = W, the W - OW columns past each row are computed and
        ignored).

The buffer has spare zero rows below the image so that the last vectors may read whole vectors past
its end (their extra lanes feed only outputs that are never kept).

  forward          tiles of MR filters x NV vectors (rows: whole output rows, or a run within one),
                   the P taps unrolled; a last, shorter tile takes the vectors left, and the last
                   filter block only the filters left (no padding filters or vectors computed).
  weight gradient  dwv[k][t][:] += top[k] vector * image vector at tap t, over every vector of an
                   image, for blocks of MK filters x NT taps in registers: per-thread lane partials,
                   reduced (lanes pairwise, then threads in order) by
                   directconv_grad.reduce_lane_partials. top must be zero at the lanes that are not
                   outputs (or loaded under a mask: masked_top).
"""
from llvmlite import ir

from .. import library
from .. import irutil as U
from .. import target as targets
from ..irutil import lanes
from .directconv import (PREFETCH_LINE, AccLoop, Streams, Vec, kernel_function, max_accumulators, prefetch_spread,
                         streams_tag)
from .directconv_grad import lane_masks

MIN_EFFICIENCY = 0.5   # useful share of the computed output lanes below which the caller uses im2col
MAX_NV = 6             # output vectors per forward tile
MAX_MK = 6             # filters per weight-gradient block
MAX_AHEAD = 4          # lines prefetched per vector read, at most (with fewer taps it is memory-bound anyway)


def _round_up(n, m):
    return -(-n // m) * m


class Plan:
    """Static layout of a few-tap convolution: the bordered buffer (C, H, W) (H counts the spare
    rows; Hb rows hold the bordered image), the output layout and the register tiles. Its fields
    are those of directconv.Plan that directconv.pack_weights and the conv-pool epilogues read
    (dtype, C, H, W, K, kh, kw, P, MR, nkb, flip, L, rs, row_stride, scratch_elems)."""

    def __init__(self, dtype, C, Hb, Wb, K, kh, kw, OH, OW, flip, mode, dense_out=False, dilation=(1, 1)):
        self.dtype, self.C, self.Hb, self.W, self.K, self.kh, self.kw = dtype, C, Hb, Wb, K, kh, kw
        self.dh, self.dw = dilation   # the taps dh rows and dw cols apart (Theano's filter_dilation)
        self.OH, self.OW, self.flip, self.mode, self.dense_out = OH, OW, flip, mode, dense_out
        self.L = L = lanes(dtype)
        self.H = Hb + -(-2 * L // Wb)   # spare zero rows: the last vectors read past the image
        self.P = C * kh * kw
        if mode == "rows":
            self.nvr = -(-OW // L)
            self.nvec = OH * self.nvr
            self.rs = OW if dense_out else self.nvr * L
            span = OH * self.rs
            self.useful = OW / (self.nvr * L)
        else:
            self.nvr = None
            self.n_out = (OH - 1) * Wb + OW
            self.nvec = -(-self.n_out // L)
            self.rs = Wb
            span = self.nvec * L
            self.useful = OH * OW / (self.nvec * L)
        # conv-pool epilogues read up to 2L values from a row start: pad so they stay inside
        self.row_stride = OH * OW if dense_out else _round_up(span + 2 * L, L)
        self.masked_store = dense_out and mode == "rows" and OW % L != 0
        acc = max_accumulators()
        self.MR, self.NV = _forward_tile(self, acc)
        self.nkb = -(-K // self.MR)
        self.MK, self.NT = _grad_tile(self, acc)

    @property
    def variant(self):
        return f"fewtaps {self.mode}"

    def buf_elems(self):
        return self.C * self.H * self.W

    def scratch_elems(self):
        return self.K * self.row_stride + 2 * self.L

    def tap_offset(self, t):
        """The buffer offset of tap t = (c, r, s) (unflipped: the flip is in the packed weights)."""
        c, rs = divmod(t, self.kh * self.kw)
        r, s = divmod(rs, self.kw)
        return c * self.H * self.W + self.dh * r * self.W + self.dw * s

    def dilation_tag(self):
        """'' or '_d<dh>x<dw>': the kernels' names tell dilated tap offsets apart."""
        return "" if (self.dh, self.dw) == (1, 1) else f"_d{self.dh}x{self.dw}"

    def cost(self):
        """Modelled cycles per image of the forward (for choosing a layout)."""
        return _forward_cost(self, self.MR, self.NV)


def _registers():
    """Vector registers: the accumulators, the vectors loaded for one step and a broadcast must fit."""
    return targets.current().vector_registers


def _step(m, n):
    """Cycles of one tap step of m broadcast x n vector FMAs: two FMA units, two load ports, each
    unaligned vector load crossing a cache line (two loads' worth)."""
    return max(m * n, m + 2 * n) / 2 + 0.5


def _forward_cost(p, MR, NV):
    ntiles = -(-p.nvec // NV)
    full, tail = divmod(p.K, MR)
    per_tile = full * (p.P * _step(MR, NV) + MR * NV + 8)
    if tail:
        per_tile += p.P * _step(tail, NV) + tail * NV + 8
    return ntiles * per_tile


def _forward_tile(p, acc):
    best = None
    for MR in range(1, 9):
        for NV in range(1, MAX_NV + 1):
            if MR * NV > acc or MR * NV + NV + 1 > _registers() or MR > p.K or NV > p.nvec:
                continue
            if p.mode == "rows" and NV % p.nvr and p.nvr % NV:   # tiles of whole rows or within a row
                continue
            key = (_forward_cost(p, MR, NV), -MR * NV)
            if best is None or key < best[0]:
                best = (key, (MR, NV))
    return best[1]


def _grad_cost(p, MK, NT):
    # the sum over every (filter block, tap block) pair, grouped by their sizes (each term a multiple
    # of 1/2: the same float as the pair-by-pair sum)
    total = 0.0
    for mk, nm in ((MK, p.K // MK), (p.K % MK, 1)):
        for nt, nn in ((NT, p.P // NT), (p.P % NT, 1)):
            if mk and nt and nm and nn:
                total += nm * nn * (p.nvec * _step(nt, mk) + 2 * mk * nt + 10)
    return total


def _grad_tile(p, acc):
    best = None
    for MK in range(1, MAX_MK + 1):
        for NT in range(1, p.P + 1):
            if MK * NT > acc or MK * NT + MK + 1 > _registers() or MK > p.K:
                continue
            key = (_grad_cost(p, MK, NT), -MK * NT)
            if best is None or key < best[0]:
                best = (key, (MK, NT))
    return best[1]


def plan(dtype, C, Hb, Wb, K, kh, kw, OH, OW, flip, dense_out=False, dilation=(1, 1)):
    """The cheaper of the two layouts for a 'valid' unit-stride convolution of a bordered
    (C, Hb, Wb) image (OH = Hb - (kh-1)*dh, OW = Wb - (kw-1)*dw with the filters dilated by (dh, dw)),
    or None when neither keeps at least MIN_EFFICIENCY of its lanes. dense_out: the rows layout writes
    dense (OH, OW) planes, and is taken whenever it is efficient enough (the wide one would need a copy
    into the planes)."""
    if str(dtype) not in ("float32", "float64") or min(C, Hb, Wb, K, kh, kw, OH, OW) < 1:
        return None
    rows = Plan(str(dtype), C, Hb, Wb, K, kh, kw, OH, OW, flip, "rows", dense_out, dilation)
    wide = Plan(str(dtype), C, Hb, Wb, K, kh, kw, OH, OW, flip, "wide", dilation=dilation)
    if dense_out and rows.useful >= MIN_EFFICIENCY and rows.useful >= 0.8 * wide.useful:
        return rows
    best = min((rows, wide) if not dense_out else (wide,), key=lambda q: q.cost())
    return best if best.useful >= MIN_EFFICIENCY else None


# -- forward ----------------------------------------------------------------------------------------

def _tile_vectors(p, nv):
    """[(buffer offset, output offset, vector index within its row or None)] of the nv vectors of a
    tile, relative to the tile's first vector: every tile starts a row (rows, NV whole rows), a
    run of NV vectors inside a row (rows, NV dividing the row's vectors) or a run of vectors (wide)."""
    L = p.L
    if p.mode == "wide":
        return [(j * L, j * L, None) for j in range(nv)]
    if nv % p.nvr == 0:
        return [((j // p.nvr) * p.W + (j % p.nvr) * L, (j // p.nvr) * p.rs + (j % p.nvr) * L, j % p.nvr)
                for j in range(nv)]
    return [(j * L, j * L, None) for j in range(nv)]


def _fwd_kernel(module, p, mr, nv, streams=()):
    """void fwd(x, wp, out, last[, pf...]): out[i*row_stride + o_j] = sum over taps t of wp[t*MR + i] *
    x[x_j + offset(t)] for i < mr filters and the tile's nv vectors j (offsets x_j, o_j from
    _tile_vectors: constants, so every load and store is one base plus a displacement); last: the
    lanes kept of the tile's last vector when it may end a row of a masked layout. streams:
    directconv.Streams.key, (lines, write) of each pointer pf: prefetched, spread over the taps.
    One tile per call: inside a loop over tiles, LLVM would hoist the mr*P weight broadcasts out of
    it and keep them spilled on the stack."""
    name = (f"symcnn_fewtaps_fwd_{p.dtype}_{p.mode}_{mr}x{nv}_MR{p.MR}_C{p.C}_k{p.kh}x{p.kw}_H{p.H}_W{p.W}"
            f"_O{p.OH}x{p.OW}_rs{p.rs}_ks{p.row_stride}{streams_tag(streams)}{p.dilation_tag()}")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, U.PTR, U.I64] + [U.PTR] * len(streams))
    x, wp, out, last = fn.args[:4]
    prefetch = U.declare(module, "llvm.prefetch.p0", ir.VoidType(), [U.PTR, U.I32, U.I32, U.I32])
    # (the taps are unrolled) line q of a stream goes before tap q*P // lines
    at_tap = [[(pf, q, w) for pf, (lines, w) in zip(fn.args[4:], streams) for q in range(lines)
               if q * p.P // lines == t] for t in range(p.P)]
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    lane = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))
    vectors = _tile_vectors(p, nv)
    accs = [[vec.zero] * nv for _ in range(mr)]
    for t in range(p.P):
        for pf, q, w in at_tap[t]:
            b.call(prefetch, [b.gep(pf, [U.i64(q * PREFETCH_LINE)], source_etype=ir.IntType(8)),
                              ir.Constant(U.I32, int(w)), ir.Constant(U.I32, 2), ir.Constant(U.I32, 1)])
        off = p.tap_offset(t)
        xs = [b.load(b.gep(x, [U.i64(xo + off)], source_etype=et), typ=vec.t, align=vec.size)
              for xo, _, _ in vectors]
        for i in range(mr):
            a = U.splat(b, b.load(b.gep(wp, [U.i64(t * p.MR + i)], source_etype=et), typ=et), vec.t)
            accs[i] = [b.call(vec.fma, [a, xs[j], accs[i][j]]) for j in range(nv)]
    for j, (_, o, jv) in enumerate(vectors):
        keep = None
        if p.masked_store:
            if jv is not None:   # a whole-rows tile: the row's last vector is known
                if jv == p.nvr - 1:
                    keep = ir.Constant(ir.VectorType(U.I1, L), [l < p.OW - jv * L for l in range(L)])
            elif j == nv - 1:
                keep = b.icmp_signed("<", lane, U.splat(b, last, ir.VectorType(U.I64, L)))
        for i in range(mr):
            ptr = b.gep(out, [U.i64(o + i * p.row_stride)], source_etype=et)
            if keep is None:
                b.store(accs[i][j], ptr, align=vec.size)
            else:
                b.call(vec.mstore, [accs[i][j], ptr, vec.align, keep])
    b.ret_void()
    return fn


def tiles(p):
    """[(count, vectors per tile)]: the full tiles, then (for whole-rows or wide tiles) one tile of
    the vectors left."""
    if p.mode == "rows" and p.nvr % p.NV == 0 and p.NV % p.nvr != 0:
        return [(p.nvec // p.NV, p.NV)]
    full, left = divmod(p.nvec, p.NV)
    return [(full, p.NV)] + ([(1, left)] if left else [])


def _tile_start(b, p, t, first):
    """(buffer offset, output offset, lanes kept of the last vector) of tile t (an i64) whose first
    vector is first + t*NV... (see _tile_vectors)."""
    L = p.L
    if p.mode == "wide":
        q = b.mul(t, U.i64(p.NV * L))
        q = b.add(q, U.i64(first * L))
        return q, q, U.i64(L)
    if p.NV % p.nvr == 0:
        rows = p.NV // p.nvr
        i = b.add(b.mul(t, U.i64(rows)), U.i64(first // p.nvr))
        return b.mul(i, U.i64(p.W)), b.mul(i, U.i64(p.rs)), U.i64(L)
    per = p.nvr // p.NV
    i = b.udiv(t, U.i64(per))
    jv = b.mul(b.urem(t, U.i64(per)), U.i64(p.NV * L))
    last = U.smin(b, b.sub(U.i64(p.OW + L), b.add(jv, U.i64(p.NV * L))), L)
    return b.add(b.mul(i, U.i64(p.W)), jv), b.add(b.mul(i, U.i64(p.rs)), jv), last


def emit_image(ctx, p, x_img, wp, out, ahead=None):
    """out[k*row_stride + out(v)] for k < K and every output vector v of one bordered image x_img,
    with the weights wp packed by directconv.pack_weights ([nkb][P][MR], flipped as p.flip says).
    ahead: the regions of directconv.Streams (what the caller touches next: the image's outputs
    its epilogue writes), prefetched by the kernels as they compute (a first layer's outputs are
    large: with few taps, writing them took as long as computing them)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    full, tail = divmod(p.K, p.MR)
    blocks = [(kb, p.MR if kb < full else tail) for kb in range(full + (1 if tail else 0))]
    st = Streams(ahead, sum(count for count, _ in tiles(p)) * len(blocks))
    if sum(n for n, _ in st.key) > MAX_AHEAD * p.P:   # (more than the taps can spread: memory-bound anyway)
        st = Streams(None, 1)
    first = called = 0
    for count, nv in tiles(p):
        with U.for_range(b, count, name="ftile") as t:
            xo, oo, last = _tile_start(b, p, t, first)
            xt = b.gep(x_img, [xo], source_etype=et)
            for i, (kb, mr) in enumerate(blocks):
                j = b.add(U.i64(called + i), b.mul(t, U.i64(len(blocks))))
                b.call(_fwd_kernel(ctx.module, p, mr, nv, st.key),
                       [xt, U.gep(b, wp, kb * p.P * p.MR, et),
                        b.gep(out, [b.add(oo, U.i64(kb * p.MR * p.row_stride))], source_etype=et), last]
                       + st.args(b, j))
        first += count * nv
        called += count * len(blocks)


# -- weight gradient ----------------------------------------------------------------------------------

def _dw_kernel(module, p, mk, t0, nt, trs, masked_top, ahead=0):
    """void dw(x, top, dwv[, pf]): dwv[(i*P + t0 + t)*L : +L] += sum over output vectors v of
    top[i*trs + out(v) : +L] * x[in(v) + offset(t0 + t) : +L], i < mk, t < nt (top lanes outside
    the row loaded as 0 when masked_top). ahead > 0: for each vector it reads of a filter's top,
    the kernel also prefetches the next `ahead` lines from pf on."""
    name = (f"symcnn_fewtaps_dw_{p.dtype}_{p.mode}_{mk}x{nt}_t{t0}_C{p.C}_k{p.kh}x{p.kw}_H{p.H}_W{p.W}"
            f"_O{p.OH}x{p.OW}_rs{p.rs}_ks{trs}{'_m' if masked_top else ''}{f'_pf{ahead}' if ahead else ''}"
            f"{p.dilation_tag()}")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    fn, b = kernel_function(module, name, [U.PTR] * (4 if ahead else 3))
    x, top, dwv = fn.args[:3]
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    # rows: one loop step per output row (its nvr vectors unrolled); wide: one per vector
    count, per = (p.OH, p.nvr) if p.mode == "rows" else (p.nvec, 1)
    loop = AccLoop(b, "dw", count, mk, nt, vec)
    loop.enter()
    step = loop.i
    accs = [list(r) for r in loop.accs]
    for jv in range(per):
        if ahead:   # lines (step*per + jv)*ahead .. + ahead - 1 from pf, into L1
            prefetch_spread(module, b, fn.args[3], count * per * ahead, b.add(b.mul(step, U.i64(per)), U.i64(jv)),
                            count * per, locality=3)
        # the image lanes that are not outputs are loaded as 0 (an Inf there must not meet a 0 of top)
        if p.mode == "rows":
            xin = b.add(b.mul(step, U.i64(p.W)), U.i64(jv * L))
            o = b.add(b.mul(step, U.i64(p.rs)), U.i64(jv * L))
            keep = None
            if (jv + 1) * L > p.OW:
                keep = ir.Constant(ir.VectorType(U.I1, L), [lane_ < p.OW - jv * L for lane_ in range(L)])
            xkeep = keep
        else:
            xin = o = b.mul(step, U.i64(L))
            keep = None
            it = ir.IntType(L)
            xkeep = b.bitcast(b.load(b.gep(lane_masks(module, p), [step], source_etype=it), typ=it),
                              ir.VectorType(U.I1, L))
        tops = []
        for i in range(mk):
            ptr = b.gep(top, [b.add(o, U.i64(i * trs))], source_etype=et)
            if keep is None or not masked_top:
                tops.append(b.load(ptr, typ=vec.t, align=vec.size))
            else:
                tops.append(b.call(vec.mload, [ptr, vec.align, keep, vec.zero]))
        base = b.gep(x, [xin], source_etype=et)
        for t in range(nt):
            xp = b.gep(base, [U.i64(p.tap_offset(t0 + t))], source_etype=et)
            xv = (b.load(xp, typ=vec.t, align=vec.size) if xkeep is None
                  else b.call(vec.mload, [xp, vec.align, xkeep, vec.zero]))
            for i in range(mk):
                accs[i][t] = b.call(vec.fma, [tops[i], xv, accs[i][t]])
    loop.close(accs)
    for i in range(mk):
        for t in range(nt):
            ptr = b.gep(dwv, [U.i64((i * p.P + t0 + t) * L)], source_etype=et)
            b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), loop.accs[i][t]), ptr, align=vec.size)
    b.ret_void()
    return fn


def emit_grad_image(ctx, p, x_img, top, trs, dwv, masked_top=False, streamed=None):
    """dwv[k][t][:] += the lane partials of sum over outputs of top[k] * x at tap t, for one
    bordered image x_img and its output gradient top (filter k's plane at top + k*trs, in p's
    layout; zero at the lanes that are not outputs unless masked_top). streamed: the end of the
    array top is in, when top is read from memory (one image of a batch's dense output gradient,
    the next image after it): the kernels of a block of filters prefetch the next block's planes
    as they compute (none past that end)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    kb = [(k0, min(p.MK, p.K - k0)) for k0 in range(0, p.K, p.MK)]
    tb = [(t0, min(p.NT, p.P - t0)) for t0 in range(0, p.P, p.NT)]
    # the first kernel of a block reads its planes from memory, the rest from cache: spread over
    # the block's kernels, the next block's lines arrive while they compute (`ahead` lines per
    # vector read, each kernel a window of them: the block's kernels cover its planes)
    steps, per = (p.OH, p.nvr) if p.mode == "rows" else (p.nvec, 1)
    line = PREFETCH_LINE // U.itemsize(p.dtype)
    ahead = -(-p.MK * trs // (len(tb) * steps * per * line))
    ahead = ahead if streamed is not None and trs == p.OH * p.OW and ahead <= MAX_AHEAD else 0
    window = steps * per * ahead * line
    for k0, mk in kb:
        for j, (t0, nt) in enumerate(tb):
            fn = _dw_kernel(ctx.module, p, mk, t0, nt, trs, masked_top, ahead)
            args = [x_img, U.gep(b, top, k0 * trs, et), U.gep(b, dwv, k0 * p.P * p.L, et)]
            if ahead:   # (after the batch's last image: its own planes again)
                pf = U.gep(b, top, (k0 + mk) * trs + j * window, et)
                inside = b.icmp_unsigned("<", b.ptrtoint(U.gep(b, pf, window, et), U.I64),
                                         b.ptrtoint(streamed, U.I64))
                args.append(b.select(inside, pf, top))
            b.call(fn, args)


def partial_elems(p):
    """Elements of one thread's lane partials dwv[K][P][L]."""
    return p.K * p.P * p.L

