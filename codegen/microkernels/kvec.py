"""Direct convolution of one image with vectors over the filters (strided convolutions).

The direct kernel (directconv.py) puts output positions in its vectors: a strided convolution must
first split each image into its stride phases so that a vector's inputs lie side by side. Here
the vectors run over filters instead, so any stride reads the image in place. For a tile of MR
output positions n0 .. n0 + MR - 1 (row-major over OH x OW) and NV vectors of filters, per tap
t = (c, r, s):

    acc[i][j] += broadcast(x[offs[t] + pos(n0 + i)]) * Wt[t, j*L : (j+1)*L]

with pos(n) = (n div OW)*sh*W + (n mod OW)*sw the tap's image offset at output n of the bordered
(C, H, W) image, and Wt the filters packed once (K padded to whole vectors, flipped for a true
convolution), one [P][nv*L] panel per block of nv vectors of filters, so that a block's taps lie
in one stream. The MR positions of a tile lie at fixed distances from its first, and the tiles
fall into a few patterns of those distances (directconv_grad.panel_patterns): one kernel per
pattern reaches its positions from one pointer, every distance in the load's address. Per block
of filters, the taps go in blocks whose filters fit in L1 (every tile of the image reuses them
before the next), the tiles' accumulators kept in a per-thread [N][KP] buffer between blocks of
taps; after the last, L x L transposes write the conv scratch in the direct plans' layout (K rows
of row_stride, an output row OW long), which the epilogues and copies read unchanged.
"""
from llvmlite import ir

from .. import library
from .. import irutil as U
from ..irutil import lanes
from .directconv import AccLoop, Vec, broadcast_fmas, deltas_key, kernel_function, max_accumulators, row_vectors
from .directconv_grad import transpose_block, panel_patterns

MAX_TAPS = 12            # positions per tile: 24 accumulators with two vectors of filters
MAX_PATTERNS = 8         # kernels per vector block at most
MAX_GROUPS = 32          # loops over tiles (patterns by their place in the period of a row)
L1_WEIGHT_BYTES = 16 * 1024   # a block of taps' packed filters, read by every tile of the image


class Plan:
    """Static layout (all sizes Python ints) of the 'valid' strided convolution of a bordered
    (C, H, W) image into (K, OH, OW) outputs."""

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, sh, sw, flip, dilation=(1, 1)):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.sh, self.sw, self.flip = OH, OW, sh, sw, flip
        self.dh, self.dw = dilation
        self.L = L = lanes(dtype)
        NV = -(-K // L)
        most = 4 if max_accumulators() >= 24 else 2
        nb = -(-NV // most)
        sizes = [NV // nb + (1 if j < NV % nb else 0) for j in range(nb)]
        self.blocks, j0 = [], 0
        for nv in sizes:
            self.blocks.append((j0, nv))
            j0 += nv
        self.NV, self.KP = NV, NV * L
        self.N = OH * OW
        self.P = C * kh * kw
        self.MR = min(MAX_TAPS, max_accumulators() // max(sizes), self.N)
        self.patterns = panel_patterns(self.positions(), self.MR, OW, MAX_PATTERNS)
        size = U.itemsize(dtype)
        # sized by the widest block of filters, not by all KP: the tiles walk one block at a time, and
        # with all KP (4 taps of 256 float32 filters) the accumulators went to memory every 4 taps
        self.tap_block = max(1, min(self.P, L1_WEIGHT_BYTES // (max(sizes) * L * size)))
        # the direct plans' names for the conv scratch: K rows (padded to KP) of row_stride, rows OW long
        self.rs = OW
        self.row_stride = -(-(self.N + 2 * L) // L) * L

    @property
    def weight_elems(self):
        """The packed filters: a [P][nv*L] panel per block of filters, KP wide in all."""
        return self.P * self.KP

    def panel(self, j0):
        """Where the panel of the block of filters starting at vector j0 begins."""
        return self.P * j0 * self.L

    def positions(self):
        """pos(n) for every output n."""
        return [(n // self.OW) * self.sh * self.W + (n % self.OW) * self.sw for n in range(self.N)]

    def tile_elems(self):
        """The [N][KP] accumulators of one image, with the room the last L x L transpose reads."""
        return (-(-self.N // self.L) * self.L) * self.KP

    def scratch_elems(self):
        """The conv scratch (KP rows) and, after it, the tile buffer."""
        return self.KP * self.row_stride + 2 * self.L + self.tile_elems()

    def tap_offsets(self):
        """The image offset of tap t = (c, r, s) at output 0."""
        return [c * self.H * self.W + self.dh * r * self.W + self.dw * s
                for c in range(self.C) for r in range(self.kh) for s in range(self.kw)]


def plan(dtype, C, H, W, K, kh, kw, OH, OW, sh, sw, flip, dilation=(1, 1)):
    """A Plan when every size is a static int and the tiles fall into few patterns and groups (each
    group a loop in the code), else None."""
    if str(dtype) not in ("float32", "float64"):
        return None
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW, sh, sw)) or min(C, K, OH, OW) < 1:
        return None
    p = Plan(str(dtype), C, H, W, K, kh, kw, OH, OW, sh, sw, flip, tuple(dilation))
    return p if p.patterns is not None and len(p.patterns) <= MAX_GROUPS else None


def pack_taps(b, p, w_dense, wp, t0, t1):
    """The taps [t0, t1) of the panel of each block (j0, nv) of filters: wp[panel(j0) + t*nv*L + k -
    j0*L] = W[k, tap t] (flipped for a true convolution; 0 for k >= K), w_dense dense
    [K][C][kh][kw] (t0, t1: ints or i64 values, so that threads can share the taps)."""
    et = U.ll_type(p.dtype)
    khw = p.kh * p.kw
    for j0, nv in p.blocks:
        width, k0 = nv * p.L, j0 * p.L
        real = max(0, min(p.K - k0, width))
        panel = U.gep(b, wp, p.panel(j0), et)
        with U.for_range(b, t1, start=t0, name="kvt") as t:
            c = b.udiv(t, U.i64(khw))
            rs = b.urem(t, U.i64(khw))
            src_tap = b.sub(U.i64(khw - 1), rs) if p.flip else rs
            src = U.gep(b, w_dense, b.add(b.mul(b.add(b.mul(U.i64(k0), U.i64(p.C)), c), U.i64(khw)), src_tap), et)
            row = U.gep(b, panel, b.mul(t, U.i64(width)), et)
            with U.for_range(b, real, name="kvk") as k:
                v = b.load(U.gep(b, src, b.mul(k, U.i64(p.P)), et), typ=et)
                b.store(v, U.gep(b, row, k, et))
            if real < width:
                with U.for_range(b, width - real, name="kvz") as z:
                    b.store(ir.Constant(et, 0.0), U.gep(b, row, b.add(z, U.i64(real)), et))


def tap_offsets(b, p, offs):
    """offs[t] = the tap's image offset (irutil.copy_i64_table)."""
    U.copy_i64_table(b, "symcnn_kvec_taps", p.tap_offsets(), offs)


def _kernel(module, p, nv, deltas, accumulate):
    """void k(x, wt, offs, ntaps, out): out[i*KP + j*L : +L] (+)= sum over taps t < ntaps of
    x[offs[t] + deltas[i]] * wt[t*nv*L + j*L : +L] for i < len(deltas), j < nv (x: the image at the
    tile's first position, wt the block's panel at the first tap, out at the block's first filter)."""
    name = f"symcnn_kvec_{p.dtype}_{len(deltas)}x{nv}_KP{p.KP}_{deltas_key(deltas)}" + ("_a" if accumulate else "")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn, b = kernel_function(module, name, [P_, P_, P_, I64, P_])
    x, wt, offs, ntaps, out = fn.args
    et = U.ll_type(p.dtype)
    L, KP, MR = p.L, p.KP, len(deltas)
    vec = Vec(module, p.dtype, L)
    init = None
    if accumulate:
        init = [[b.load(b.gep(out, [U.i64(i * KP + j * L)], source_etype=et), typ=vec.t, align=vec.size)
                 for j in range(nv)] for i in range(MR)]
    loop = AccLoop(b, "t", ntaps, MR, nv, vec, init)
    loop.enter()
    t, accs = loop.i, loop.accs
    xt = b.gep(x, [b.load(b.gep(offs, [t], source_etype=I64), typ=I64)], source_etype=et)
    wv = row_vectors(b, vec, b.gep(wt, [b.mul(t, U.i64(nv * L))], source_etype=et), nv, L, et)
    loop.close(broadcast_fmas(b, vec, xt, deltas, wv, accs, et))
    for i in range(MR):
        for j in range(nv):
            b.store(loop.accs[i][j], b.gep(out, [U.i64(i * KP + j * L)], source_etype=et), align=vec.size)
    b.ret_void()
    return fn


def emit_image(ctx, p, x_img, wp, offs, conv, blocks=None):
    """conv[k*row_stride + n] for k < KP, n < N: the convolution of one bordered image x_img
    (dense (C, H, W)) by the packed filters wp, through the tile buffer after the KP rows (blocks:
    (lo, hi), i64 values: the blocks of filters lo <= j < hi of p.blocks only; the other rows of
    conv are then not meaningful)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    tiles = U.gep(b, conv, p.KP * p.row_stride + 2 * p.L, et)
    room = p.tile_elems() - p.N * p.KP
    if room:   # the rows the last transpose reads past N: zeros, not whatever the buffer held
        U.memset_zero(b, U.gep(b, tiles, p.N * p.KP, et), room * U.itemsize(p.dtype))
    def block(j0, nv, tb, accumulate):
        """Every tile over the block of filters (j0, nv) and the taps [tb, tb + tap_block) (tb an int
        or an i64 value)."""
        nt = U.smin(b, U.sub(b, p.P, tb), p.tap_block)
        toffs = U.gep(b, offs, tb, U.I64)
        wt = U.gep(b, wp, U.add(b, U.mul(b, tb, nv * p.L), p.panel(j0)), et)
        for deltas, first, step, count in p.patterns:
            with U.for_range(b, count, name="kvn") as m:
                n0 = b.mul(b.add(U.i64(first), b.mul(U.as_value(b, m), U.i64(step))), U.i64(p.MR))
                # pos(n0) from the row and column of n0
                x0 = b.add(b.mul(b.udiv(n0, U.i64(p.OW)), U.i64(p.sh * p.W)),
                           b.mul(b.urem(n0, U.i64(p.OW)), U.i64(p.sw)))
                b.call(_kernel(ctx.module, p, nv, deltas, accumulate),
                       [U.gep(b, x_img, x0, et), wt, toffs, U.as_value(b, nt),
                        U.gep(b, tiles, b.add(b.mul(n0, U.i64(p.KP)), U.i64(j0 * p.L)), et)])

    def filters(j0, nv):
        block(j0, nv, 0, False)
        if p.tap_block < p.P:   # the later blocks add to the tiles: one loop, whatever the depth
            with U.for_range(b, p.P, start=p.tap_block, step=p.tap_block, name="kvt") as tb:
                block(j0, nv, tb, True)

    for j, (j0, nv) in enumerate(p.blocks):
        if blocks is None:
            filters(j0, nv)
            continue
        with b.if_then(b.and_(b.icmp_unsigned("<=", blocks[0], U.i64(j)), b.icmp_unsigned(">", blocks[1], U.i64(j)))):
            filters(j0, nv)
    _transpose_tiles(ctx, p, tiles, conv)


def _transpose_tiles(ctx, p, tiles, conv):
    """conv[k*row_stride + n] = tiles[n*KP + k], L x L blocks at a time (the rows past N of the last
    block are read from the buffer's room, and their lanes stored past N within row_stride)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    L, KP = p.L, p.KP
    vt = ir.VectorType(et, L)
    with U.for_range(b, -(-p.N // L), name="kvb") as nb:
        n0 = b.mul(U.as_value(b, nb), U.i64(L))
        # a loop over the blocks of filters, not one copy of the transpose each (IR for LLVM to compile)
        with U.for_range(b, KP // L, name="kvk") as kb:
            k0 = b.mul(U.as_value(b, kb), U.i64(L))
            rows = [b.load(U.gep(b, tiles, b.add(b.mul(b.add(n0, U.i64(i)), U.i64(KP)), k0), et), typ=vt,
                           align=U.itemsize(p.dtype)) for i in range(L)]
            for j, row in enumerate(transpose_block(b, rows)):
                at = b.add(b.mul(b.add(k0, U.i64(j)), U.i64(p.row_stride)), n0)
                b.store(row, U.gep(b, conv, at, et), align=U.itemsize(p.dtype))
