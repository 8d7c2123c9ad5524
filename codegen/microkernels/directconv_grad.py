"""The gradients of the direct convolution (directconv.py) inside ConvPoolActGrad, without im2col.

  inner products  (first layers: one input channel, no input gradient) dW[k, tap] as inner products of
                  the pooled gradient, scattered into the wide layout, with the image read at the tap's
                  offset; lanes past a row's outputs masked off; per-thread lane partials.
  tap panels      dWT[tap, k] as a GEMM whose A operand (the patches) is read straight from the images
                  through the tap offsets and a table of output positions, and whose B operand is the
                  pooled gradient transposed into rows of whole vectors; accumulated over groups of images.
  gx              W^T (packed once, prepacked.py) times the pooled gradient, with col2im folded into the
                  stores: each accumulator vector adds into whole output rows of dx.
"""
import math
from contextlib import contextmanager

from llvmlite import ir

from .. import library
from .. import irutil as U
from . import gemm
from .directconv import (AccLoop, Vec, broadcast_fmas, deltas_key, kernel_function, lanes, max_accumulators,
                         row_vectors)


# -- weight gradient by inner products (wide layout) ----------------------------------------------

def grad_plan(p, op, need_gx):
    """Whether the weight gradient of plan p is taken as inner products over the wide rows of the
    image (the first layer: no input gradient, few filter taps so the per-thread partials stay small)."""
    return (p is not None and p.mode == "wide" and not need_gx
            and p.K * p.P * p.L * U.itemsize(p.dtype) <= 256 * 1024)


def n_vectors(p):
    return -(-p.n_out // p.L)


def lane_masks(module, p):
    """A constant table: for each vector of the wide layout, the bits of its lanes that are outputs
    (q < n_out and q mod W < OW); the others (row ends, the tail) must not reach the sums."""
    name = f"symcnn_dconv_lanes_W{p.W}_OW{p.OW}_N{p.n_out}_L{p.L}"
    g = module.globals.get(name)
    if g is not None:
        return g
    it = ir.IntType(p.L)
    vals = []
    for v in range(n_vectors(p)):
        bits = 0
        for lane in range(p.L):
            q = v * p.L + lane
            if q < p.n_out and q % p.W < p.OW:
                bits |= 1 << lane
        vals.append(ir.Constant(it, bits))
    at = ir.ArrayType(it, len(vals))
    g = ir.GlobalVariable(module, at, name=name)
    g.linkage = "internal"
    g.global_constant = True
    g.initializer = ir.Constant(at, vals)
    return g


def _dw_kernel(module, p, mk, nt):
    """void dw(x_img, top, offs_t0, dwv, masks): dwv[i][t][:] += sum over vectors v of
    top[i*row_stride + v*L : +L] * x_img[offs[t] + v*L : +L] (lanes outside the outputs masked off)
    for mk channels x nt taps."""
    name = f"symcnn_dconv_dw_{p.dtype}_{mk}x{nt}_N{p.n_out}_W{p.W}_OW{p.OW}_P{p.P}_{p.row_stride}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64 = U.I64
    fn, b = kernel_function(module, name, [U.PTR] * 5)
    x, top, offs, dwv, masks = fn.args
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    mt = ir.VectorType(U.I1, L)
    bases = [b.gep(x, [b.load(b.gep(offs, [U.i64(t)], source_etype=I64), typ=I64)], source_etype=et)
             for t in range(nt)]
    it = ir.IntType(L)
    loop = AccLoop(b, "v", n_vectors(p), mk, nt, vec)
    loop.enter()
    v, accs = loop.i, loop.accs
    q = b.mul(v, U.i64(L))
    m = b.bitcast(b.load(b.gep(masks, [v], source_etype=it), typ=it), mt)
    xs = [b.call(vec.mload, [b.gep(base, [q], source_etype=et), vec.align, m, vec.zero]) for base in bases]
    ts = [b.load(b.gep(top, [b.add(U.i64(i * p.row_stride), q)], source_etype=et), typ=vec.t, align=vec.size)
          for i in range(mk)]
    loop.close([[b.call(vec.fma, [ts[i], xs[t], accs[i][t]]) for t in range(nt)] for i in range(mk)])
    for i in range(mk):
        for t in range(nt):
            ptr = b.gep(dwv, [U.i64((i * p.P + t) * L)], source_etype=et)
            b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), accs[i][t]), ptr, align=vec.size)
    b.ret_void()
    return fn


DW_MK, DW_NT = 4, 5   # channels x taps per inner-product block (20 accumulators + 9 loads a step)


def emit_weight_grad_image(ctx, p, x_img, top, offs, dwv):
    """dwv[k][t][:] += lane partial sums of top[k] . x_img[offs[t] + q] for one image."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    masks = lane_masks(ctx.module, p)

    def call(k0, mk, t0, nt):
        fn = _dw_kernel(ctx.module, p, mk, nt)
        b.call(fn, [x_img, b.gep(top, [U.as_value(b, U.mul(b, k0, p.row_stride))], source_etype=et),
                    b.gep(offs, [U.as_value(b, t0)], source_etype=U.I64),
                    b.gep(dwv, [U.as_value(b, U.mul(b, U.add(b, U.mul(b, k0, p.P), t0), p.L))], source_etype=et),
                    masks])

    def taps(k0, mk):
        full = p.P // DW_NT * DW_NT
        with U.for_range(b, full, step=DW_NT, name="dwt") as t0:
            call(k0, mk, t0, DW_NT)
        if full < p.P:
            call(k0, mk, full, p.P - full)

    kfull = p.K // DW_MK * DW_MK
    with U.for_range(b, kfull, step=DW_MK, name="dwk") as k0:
        taps(k0, DW_MK)
    if kfull < p.K:
        taps(kfull, p.K - kfull)


# -- weight gradient by tap panels (any output layout; unit-stride patches read from the image) ----

class TapPlan:
    """dWT[p, k] += sum_n x[tap p at output n] * top[k, n], over groups of images: a GEMM whose A
    operand (the im2col matrix) is read straight from the image through the tap offsets and a
    table of output positions, and whose B operand is top transposed into [n][KP] rows (K padded to
    whole vectors). MR taps x one column block of k (`blocks`: (first vector, vectors)) are
    accumulated in registers over every n of every image of a group, so each dWT tile is loaded and
    stored once per group.

    The input gradient (gx kernel) reads W^T packed by prepacked.pack_a, in panels of gemm's MR rows
    (gx_mr), whatever the tap tile of the weight gradient, with its taps in channel-minor order
    (gx_tap): the taps of a panel then add into different channels' planes of dx, not into runs
    shifted by one column, whose read-modify-write stores would each wait for the previous one
    (a load overlapping a pending store is not forwarded). Its offsets follow the weight gradient's
    in the same table, from gx_offsets."""

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, sh, sw, flip, dilation=(1, 1)):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.sh, self.sw, self.flip = OH, OW, sh, sw, flip
        self.dh, self.dw = dilation   # the taps dh rows and dw cols apart (Theano's filter_dilation)
        self.L = lanes(dtype)
        self.NV = -(-K // self.L)
        self.KP = self.NV * self.L
        self.N = OH * OW
        self.P = C * kh * kw
        self.MR, self.blocks = dw_tile(self.NV, max_accumulators())
        # panels whose taps lie at the same distances from their first (every panel's, with few
        # such patterns) take a kernel per pattern that reaches them from one pointer: larger
        # panels, no offset registers (_dwt_pattern_kernel)
        nvmax = max(nv for _, nv in self.blocks)
        mr = min(MAX_PATTERN_TAPS, max_accumulators() // nvmax)
        self.patterns = panel_patterns(self.tap_offsets(), mr, kh * kw)
        if self.patterns is None:
            mr, self.patterns = row_panels(self.tap_offsets(), kh, kw, max_accumulators() // nvmax, self.MR)
        if self.patterns is not None:
            self.MR = mr
        self.npan = -(-self.P // self.MR)
        self.gx_mr = gemm.params(dtype)[1]
        self.gx_offsets = self.npan * self.MR
        self.n_offsets = self.gx_offsets + -(-self.P // self.gx_mr) * self.gx_mr
        size = U.itemsize(dtype)
        self.G = max(1, min(16, (128 * 1024) // (self.N * self.KP * size)))
        self.img = C * H * W
        # the input-gradient kernel's row stride in its output gradient (padded_rows: wider)
        self.gx_ow = OW

    def group_elems(self):
        return self.G * self.N * self.KP

    def tap_offsets(self):
        """The image offset that W[k, p] (p = (c, rr, ss)) multiplies at output (0, 0), for every p."""
        vals = []
        for c in range(self.C):
            for rr in range(self.kh):
                for ss in range(self.kw):
                    r, s = (self.kh - 1 - rr, self.kw - 1 - ss) if self.flip else (rr, ss)
                    vals.append(c * self.H * self.W + self.dh * r * self.W + self.dw * s)
        return vals


MAX_PATTERN_TAPS = 12   # taps per panel of the pattern kernels (24 accumulators with 2 vectors of k)
MAX_PATTERNS = 4        # kernels per column block at most (a 3x3 filter in panels of 12 or 6 taps: 3)


# Panels of whole filter rows (row_panels): at most this many patterns (a 7x7 filter in panels of
# two, three or four rows: 7).
MAX_ROW_PATTERNS = 7


def row_panels(offs, kh, kw, most_taps, plain_mr):
    """(MR, patterns) for panels of whole filter rows (MR a multiple of kw, at most most_taps and more
    than plain_mr, the plain kernel's), the most rows whose patterns number MAX_ROW_PATTERNS at most;
    (plain_mr, None) where none do. Filters wider than the pattern kernels' 12 taps fall into too many
    patterns (a 7x7 filter's 49 taps in panels of 12: 49), and the plain kernel's panels of 6 taps
    held in offset registers keep 6 accumulators (with one vector of filters: each multiply-add waits
    on the last, and a broadcast load each). Measured (2 threads, float32, ms, 6 taps -> rows; batch,
    C -> K on HxW, 7x7 filters): 5, 64 -> 16 on 28x28 'half' 1.99 -> 1.55-1.58 (PyTorch 1.36); 10,
    64 -> 8 on 28x28 pad 1 2.74-2.81 -> 2.12-2.22 (2.12); 10, 32 -> 16 on 28x28 'valid' 1.13-1.17 ->
    0.88 (1.03); with two vectors of filters (one row, 14 accumulators) 79, 16 -> 32 on 10x10 'half'
    1.51-1.53 -> 1.39-1.48."""
    for rows in range(min(kh, most_taps // kw), 0, -1):
        mr = rows * kw
        if mr <= plain_mr:
            break
        pats = panel_patterns(offs, mr, kh * kw, most=MAX_ROW_PATTERNS)
        if pats is not None:
            return mr, pats
    return plain_mr, None


def panel_patterns(offs, MR, khw, most=None):
    """[(deltas, first panel, panel step, panels)]: the panels of MR entries of offs (the last may
    be shorter) by the distances of their entries from their first and by their place in the period
    of panels after which the entries line up again (offs repeats its steps every khw entries: a
    filter's taps, a row of outputs), each group's panels evenly spaced; None with more than `most`
    (default MAX_PATTERNS) distinct distances."""
    period = khw // math.gcd(MR, khw)
    groups = {}
    for pan in range(-(-len(offs) // MR)):
        p0 = pan * MR
        deltas = tuple(o - offs[p0] for o in offs[p0:p0 + MR])
        groups.setdefault((deltas, pan % period), []).append(pan)
    if len({d for d, _ in groups}) > (MAX_PATTERNS if most is None else most):
        return None
    out = []
    for (deltas, _), pans in groups.items():
        step = pans[1] - pans[0] if len(pans) > 1 else 1
        if any(b - a != step for a, b in zip(pans, pans[1:])):
            return None
        out.append((deltas, pans[0], step, len(pans)))
    return out


def dw_tile(NV, max_acc):
    """(taps per tile, column blocks) for NV vectors of k: blocks of at most 4 vectors with 32 vector
    registers (one block of up to 4 with 6 taps: 24 accumulators), of at most 3 with 16 (4 taps x 3,
    or 6 x 2: 12 accumulators beside the loaded vectors and the broadcast), split evenly."""
    most = 4 if max_acc >= 24 else 3
    nb = -(-NV // most)
    sizes = [NV // nb + (1 if j < NV % nb else 0) for j in range(nb)]
    blocks, j0 = [], 0
    for nv in sizes:
        blocks.append((j0, nv))
        j0 += nv
    return min(6, max_acc // max(sizes)), blocks


def tap_plan(op, dtype, dims):
    if str(dtype) not in ("float32", "float64") or op.border_mode != "valid":
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or OH < 1 or OW < 1:
        return None
    if -(-K // lanes(dtype)) * lanes(dtype) * U.itemsize(dtype) > 256:   # a transposed top row: 256 bytes at most
        return None
    sh, sw = op.subsample
    return TapPlan(str(dtype), C, H, W, K, kh, kw, OH, OW, sh, sw, op.filter_flip)


def tap_plan_offsets(ctx, tp, offs):
    """offs[p] = the image offset that W[k, p] (p = (c, rr, ss)) multiplies at output (0, 0), and
    offs[gx_offsets + q] = that of tap gx_tap(q); the padding entries up to whole panels repeat
    offset 0 (their rows are computed, never stored). Copied from a constant table
    (irutil.copy_i64_table)."""
    khw = tp.kh * tp.kw
    vals = [0] * tp.n_offsets
    taps = tp.tap_offsets()
    vals[:tp.P] = taps
    for c in range(tp.C):
        for t in range(khw):
            vals[tp.gx_offsets + t * tp.C + c] = taps[c * khw + t]
    U.copy_i64_table(ctx.b, "symcnn_dconv_taps", vals, offs)


def gx_tap(b, tp, q):
    """The tap p = (c, rr, ss) at place q of the input gradient's channel-minor order (q = (rr, ss)*C + c)."""
    q = U.as_value(b, q)
    return b.add(b.mul(b.urem(q, U.i64(tp.C)), U.i64(tp.kh * tp.kw)), b.udiv(q, U.i64(tp.C)))


class GxWeights:
    """W^T[q, k] = W[k, gx_tap(q)] as a loader (for prepacked.pack_a), W dense [K][P]."""

    def __init__(self, tp, ptr):
        self.tp, self.ptr, self.dtype = tp, ptr, tp.dtype

    def load(self, b, idx):
        q, k = idx
        et = U.ll_type(self.dtype)
        off = U.add(b, U.mul(b, k, self.tp.P), gx_tap(b, self.tp, q))
        return b.load(U.gep(b, self.ptr, off, et), typ=et)


def _positions(module, tp):
    """A constant table: output n = (i, j) -> its patch origin i*sh*W + j*sw in the image."""
    name = f"symcnn_dconv_pos_{tp.OH}x{tp.OW}_W{tp.W}_s{tp.sh}x{tp.sw}"
    g = module.globals.get(name)
    if g is not None:
        return g
    at = ir.ArrayType(U.I64, tp.N)
    g = ir.GlobalVariable(module, at, name=name)
    g.linkage = "internal"
    g.global_constant = True
    g.initializer = ir.Constant(at, [ir.Constant(U.I64, (n // tp.OW) * tp.sh * tp.W + (n % tp.OW) * tp.sw)
                                     for n in range(tp.N)])
    return g


def _store_rows(b, MR, mrows, store):
    """store(i) for the rows i < mrows of an MR-row tile (row 0 always: a tile has at least one)."""
    for i in range(MR):
        if i == 0:
            store(i)
        else:
            with b.if_then(b.icmp_signed("<", U.i64(i), mrows)):
                store(i)


def _store_tile(b, vec, c, KP, nv, L, accs, rows, acc):
    """C[i*KP + :nv*L] (+)= accs[i] for the rows i that rows(store) stores: added where the i1 acc,
    else stored (one branch for the tile, as the GEMM's two store paths)."""
    et = vec.t.element

    def store(add):
        def row(i):
            for j in range(nv):
                ptr = b.gep(c, [U.i64(i * KP + j * L)], source_etype=et)
                v = b.fadd(b.load(ptr, typ=vec.t, align=vec.size), accs[i][j]) if add else accs[i][j]
                b.store(v, ptr, align=vec.size)
        rows(row)

    with b.if_else(acc) as (add, put):
        with add:
            store(True)
        with put:
            store(False)


def _dwt_kernel(module, tp, nv):
    """void k(x, offs, pos, tT, gn, C, mrows, i1 acc): C[i*KP + :nv*L] (+)= sum over images g < gn and
    n < N of x[g*img + offs[i] + pos[n]] * tT[(g*N + n)*KP + :nv*L], i < MR (rows < mrows stored;
    added to C where acc, else stored); tT and C point at the column block's first vector."""
    name = f"symcnn_dconv_dwt_{tp.dtype}_{tp.MR}x{nv}_KP{tp.KP}_N{tp.N}_I{tp.img}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn, b = kernel_function(module, name, [P_, P_, P_, P_, I64, P_, I64, U.I1])
    x, offs, pos, tT, gn, c, mrows, acc = fn.args
    et = U.ll_type(tp.dtype)
    L, MR, KP = tp.L, tp.MR, tp.KP
    vec = Vec(module, tp.dtype, L)
    offv = [b.load(b.gep(offs, [U.i64(i)], source_etype=I64), typ=I64) for i in range(MR)]
    # one flat loop over (image, n): u = g*N + n
    loop = AccLoop(b, "u", b.mul(gn, U.i64(tp.N)), MR, nv, vec)
    n = loop.carry(U.i64(0), "n")
    xg = loop.carry(x, "xg")
    loop.enter()
    u, accs = loop.i, loop.accs
    q = b.load(b.gep(pos, [n], source_etype=I64), typ=I64)
    xq = b.gep(xg, [q], source_etype=et)
    trow = b.gep(tT, [b.mul(u, U.i64(KP))], source_etype=et)
    bv = [b.load(b.gep(trow, [U.i64(j * L)], source_etype=et) if j else trow, typ=vec.t, align=vec.size)
          for j in range(nv)]
    new = []
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(xq, [offv[i]], source_etype=et), typ=et), vec.t)
        new.append([b.call(vec.fma, [a, bv[j], accs[i][j]]) for j in range(nv)])
    n1 = b.add(n, U.i64(1))
    wrap = b.icmp_signed("==", n1, U.i64(tp.N))
    loop.close(new, {n: b.select(wrap, U.i64(0), n1),
                     xg: b.select(wrap, b.gep(xg, [U.i64(tp.img)], source_etype=et), xg)})

    _store_tile(b, vec, c, KP, nv, L, accs, lambda store: _store_rows(b, MR, mrows, store), acc)
    b.ret_void()
    return fn


def _dwt_pattern_kernel(module, tp, nv, deltas):
    """void k(x, pos, tT, gn, C, i1 acc): _dwt_kernel's sums for a panel of len(deltas) taps at deltas
    from x (the group's first image at the panel's first tap), every row stored. The taps' constant
    distances go into the loads' addresses: one pointer for the panel (a 3x3 filter's panels of 12
    taps, 24 accumulators, where the table's offsets held in registers spill at 12)."""
    name = (f"symcnn_dconv_dwtp_{tp.dtype}_{len(deltas)}x{nv}_KP{tp.KP}_N{tp.N}_I{tp.img}_"
            f"{deltas_key(deltas)}")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn, b = kernel_function(module, name, [P_, P_, P_, I64, P_, U.I1])
    x, pos, tT, gn, c, acc = fn.args
    et = U.ll_type(tp.dtype)
    L, KP, MR = tp.L, tp.KP, len(deltas)
    vec = Vec(module, tp.dtype, L)
    loop = AccLoop(b, "u", b.mul(gn, U.i64(tp.N)), MR, nv, vec)
    n = loop.carry(U.i64(0), "n")
    xg = loop.carry(x, "xg")
    loop.enter()
    u, accs = loop.i, loop.accs
    xq = b.gep(xg, [b.load(b.gep(pos, [n], source_etype=I64), typ=I64)], source_etype=et)
    bv = row_vectors(b, vec, b.gep(tT, [b.mul(u, U.i64(KP))], source_etype=et), nv, L, et)
    new = broadcast_fmas(b, vec, xq, deltas, bv, accs, et)
    n1 = b.add(n, U.i64(1))
    wrap = b.icmp_signed("==", n1, U.i64(tp.N))
    loop.close(new, {n: b.select(wrap, U.i64(0), n1),
                     xg: b.select(wrap, b.gep(xg, [U.i64(tp.img)], source_etype=et), xg)})
    _store_tile(b, vec, c, KP, nv, L, accs, lambda store: [store(i) for i in range(MR)], acc)
    b.ret_void()
    return fn


def transpose_block(b, rows):
    """The L x L transpose of rows (L vectors of L lanes, L a power of two): log2(L) stages, stage s
    exchanging bit s of the row index with bit s of the lane index, each new row one two-source
    shuffle of a pair of rows."""
    L = len(rows)
    rows = list(rows)
    d = 1
    while d < L:
        lo = ir.Constant(ir.VectorType(U.I32, L), [j if not j & d else L + (j ^ d) for j in range(L)])
        hi = ir.Constant(ir.VectorType(U.I32, L), [L + j if j & d else j ^ d for j in range(L)])
        for i in range(L):
            if not i & d:
                a, c = rows[i], rows[i | d]
                rows[i], rows[i | d] = b.shuffle_vector(a, c, lo), b.shuffle_vector(a, c, hi)
        d *= 2
    return rows


def transpose_top(ctx, tp, top, trs, dst):
    """dst[n*KP + k] = top[k*trs + n] for k < K (the padding columns are left as they are: zero).
    With trs a static int and L a power of two: L x L blocks transposed in registers (columns past
    K get zeros, rows of dst past N are not written); else one value at a time."""
    b = ctx.b
    et = U.ll_type(tp.dtype)
    L = tp.L
    if isinstance(trs, int) and L > 1 and L & (L - 1) == 0:
        _transpose_top_blocks(b, tp, top, trs, dst)
        return
    with U.for_range(b, tp.K, name="tk") as k:
        src = b.gep(top, [b.mul(k, U.i64(trs))], source_etype=et)
        with U.for_range(b, tp.N, name="tn") as n:
            v = b.load(b.gep(src, [n], source_etype=et), typ=et)
            b.store(v, b.gep(dst, [b.add(b.mul(n, U.i64(tp.KP)), k)], source_etype=et))


def _transpose_top_blocks(b, tp, top, trs, dst):
    et = U.ll_type(tp.dtype)
    L = tp.L
    vec = Vec(b.block.function.module, tp.dtype, L)
    nfull = tp.N // L

    def block(n0, cols):
        """The block of columns n0 .. n0 + cols of every L rows of top: the whole blocks of L rows
        in a loop (not one copy of the transpose each: IR for LLVM to compile), then the last one."""
        mask = ir.Constant(ir.VectorType(U.I1, L), [int(j < cols) for j in range(L)])

        def rows_at(k0, nrows):
            rows = []
            for i in range(L):
                if i >= nrows:
                    rows.append(vec.zero)
                    continue
                src = b.gep(top, [b.add(b.mul(b.add(k0, U.i64(i)), U.i64(trs)), n0)], source_etype=et)
                rows.append(b.load(src, typ=vec.t, align=vec.size) if cols == L
                            else b.call(vec.mload, [src, vec.align, mask, vec.zero]))
            for j, row in enumerate(transpose_block(b, rows)[:cols]):
                ptr = b.gep(dst, [b.add(b.mul(b.add(n0, U.i64(j)), U.i64(tp.KP)), k0)], source_etype=et)
                b.store(row, ptr, align=vec.size)
        if tp.K // L:
            with U.for_range(b, tp.K // L, name="tk") as kb:
                rows_at(b.mul(U.as_value(b, kb), U.i64(L)), L)
        if tp.K % L:
            rows_at(U.i64(tp.K // L * L), tp.K % L)

    if nfull:
        with U.for_range(b, nfull, name="tn") as nb:
            block(b.mul(nb, U.i64(L)), L)
    if tp.N % L:
        block(U.i64(nfull * L), tp.N % L)


def emit_dw_group(ctx, tp, x_group, offs, tT, gn, dwT, share=None, acc=None):
    """dwT[p*KP + k] += the group's contribution, panel by panel of MR taps, column block by block.
    share: (s, S), the panels of share s of S (an IR value, an int): those from count*s/S up to
    count*(s+1)/S of each pattern's (or of the full panels; the short last panel goes with share S-1).
    acc: an i1, false to store the contribution instead of adding it (default: add)."""
    b = ctx.b
    acc = ir.Constant(U.I1, 1) if acc is None else acc
    et = U.ll_type(tp.dtype)
    pos = _positions(ctx.module, tp)
    full = tp.P // tp.MR
    if tp.patterns is not None:
        for deltas, first, step, count in tp.patterns:
            k0, k1 = share_range(b, count, share)
            with U.for_range(b, k1, start=k0, name="pan") as k:
                p0 = b.mul(b.add(U.i64(first), b.mul(U.as_value(b, k), U.i64(step))), U.i64(tp.MR))
                xp = b.gep(x_group, [b.load(b.gep(offs, [p0], source_etype=U.I64), typ=U.I64)], source_etype=et)
                for j0, nv in tp.blocks:
                    b.call(_dwt_pattern_kernel(ctx.module, tp, nv, deltas),
                           [xp, pos, b.gep(tT, [U.i64(j0 * tp.L)], source_etype=et), U.as_value(b, gn),
                            b.gep(dwT, [b.add(b.mul(p0, U.i64(tp.KP)), U.i64(j0 * tp.L))], source_etype=et), acc])
        return

    def call(pan, rows):
        p0 = b.mul(U.as_value(b, pan), U.i64(tp.MR))
        for j0, nv in tp.blocks:
            b.call(_dwt_kernel(ctx.module, tp, nv),
                   [x_group, b.gep(offs, [p0], source_etype=U.I64), pos,
                    b.gep(tT, [U.i64(j0 * tp.L)], source_etype=et), U.as_value(b, gn),
                    b.gep(dwT, [b.add(b.mul(p0, U.i64(tp.KP)), U.i64(j0 * tp.L))], source_etype=et),
                    U.i64(rows), acc])

    p0, p1 = share_range(b, full, share)
    with U.for_range(b, p1, start=p0, name="pan") as pan:
        call(pan, tp.MR)
    if full < tp.npan:
        with last_share(b, share):
            call(full, tp.P - full * tp.MR)


def share_range(b, count, share):
    """(start, end) of share s of S (share = (s, S): an i64, an int) of count panels: count*s/S up
    to count*(s+1)/S; share None: all of them."""
    if share is None:
        return 0, count
    s, S = U.as_value(b, share[0]), share[1]
    return tuple(b.udiv(b.mul(U.i64(count), v), U.i64(S)) for v in (s, b.add(s, U.i64(1))))


@contextmanager
def last_share(b, share):
    """The body runs for the last share only (every time with share None): where the short panel goes."""
    if share is None:
        yield
        return
    with b.if_then(b.icmp_unsigned("==", U.as_value(b, share[0]), U.i64(share[1] - 1))):
        yield


# -- input gradient: the W^T @ top GEMM with col2im folded into its stores ---------------------------

def gx_rows(ow, L):
    """Whether rows ow wide are whole rows per vector or whole vectors per row (ow divides L or L
    divides ow): each accumulator vector then adds into contiguous runs of dx."""
    return ow <= L and L % ow == 0 or ow % L == 0


def gx_fusable(tp):
    """Whole output rows per vector or whole vectors per output row in the output gradient as the
    kernel reads it (gx_rows of its row stride gx_ow)."""
    return tp is not None and gx_rows(tp.gx_ow, tp.L)


def padded_rows(tp):
    """tp with the kernel's row stride gx_ow widened to the next width that gx_rows takes (the next
    power of two up to L, or whole vectors): the output gradient copied with that row stride, the
    lanes past OW computed but not stored."""
    L = tp.L
    tp.gx_ow = 1 << (tp.OW - 1).bit_length() if tp.OW <= L else -(-tp.OW // L) * L
    return tp


def gx_tile(tp):
    """(vectors, output rows) of a tile of the input-gradient kernel: at most 4 vectors, no more
    accumulators (gx_mr per vector) than the target's registers hold, and no more rows than OH;
    rows of R = gx_ow / L vectors take R vectors each."""
    ow = tp.gx_ow
    if ow <= tp.L:
        per = tp.L // ow
        nv = max(1, min(4, max_accumulators() // tp.gx_mr, -(-tp.OH // per)))
        return nv, nv * per
    R = ow // tp.L
    rows = max(1, min(4 // R, max_accumulators() // (tp.gx_mr * R), tp.OH))
    return rows * R, rows


def gx_reach(tp):
    """The elements of one channel's output gradient (OH rows of gx_ow) and, for the last channel,
    the lanes past them that the last tile reads."""
    rows_per_tile = gx_tile(tp)[1]
    return max(tp.OH * tp.gx_ow, -(-tp.OH // rows_per_tile) * rows_per_tile * tp.gx_ow)


# gx_group's groups: with a short sum over the output gradient's channels, the group's many
# accumulators are stored after few multiply-adds each, and it ran no faster (122, 128 -> 32 on 8x8,
# 5x5 pad 1 stride 2: 2.46 ms either way): from this many channels on.
GX_GROUP_MIN_K = 64


def gx_group(tp, nv):
    """Consecutive panels of W^T that one call of the input-gradient kernel takes: with one vector
    of outputs per tap (small outputs), as many as fit the accumulators, at most 4; their gx_mr
    accumulators alone are too few chains to hide the multiply-add's latency. Measured (2 threads,
    float32, ms; batch, C -> K on HxW): 104, 50 -> 96 on 8x8, 5x5 'valid' stride 2 (2x2 outputs)
    1.55-1.57 -> 1.42-1.43 (PyTorch 1.45)."""
    if nv != 1 or tp.K < GX_GROUP_MIN_K:
        return 1
    return max(1, min(4, max_accumulators() // tp.gx_mr))


def _gx_kernel(module, tp, nv, group=1):
    """void k(wa, top, t0, dx, offs, mrows): acc[i][v] = sum_k wa[k*MR + i] * top[k*NW + q0 + v*L]
    (rows gx_ow apart in top, NW = OH*gx_ow, q0 = t0*gx_ow, t0 the tile's first output row), then
    dx[offs[i] + row*sh*W + :OW*sw:sw] += the first OW lanes of each output row < OH (a row of R = gx_ow / L
    vectors: vector v is row v // R, columns from (v % R) * L), rows i < mrows. With a column stride
    sw > 1 the lanes are spread sw apart, zeros between them, and added into the run they span.
    group: panels of MR taps at once (wa's panels MR*K elements apart), rows i < group*MR."""
    ow = tp.gx_ow
    name = f"symcnn_dconv_gx_{tp.dtype}_{tp.gx_mr}x{nv}_N{tp.N}_K{tp.K}_W{tp.W}_OW{tp.OW}_OH{tp.OH}_s{tp.sh}" \
        + (f"_rs{ow}" if ow != tp.OW else "") + (f"_sw{tp.sw}" if tp.sw != 1 else "") \
        + (f"_g{group}" if group > 1 else "")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn, b = kernel_function(module, name, [P_, P_, I64, P_, P_, I64])
    wa, top, t0, dx, offs, mrows = fn.args
    et = U.ll_type(tp.dtype)
    L, MR1, OW = tp.L, tp.gx_mr, tp.OW
    MR = MR1 * group
    G, R = max(1, L // ow), max(1, ow // L)
    vec = Vec(module, tp.dtype, L)
    tb = b.gep(top, [b.mul(t0, U.i64(ow))], source_etype=et)
    loop = AccLoop(b, "k", tp.K, MR, nv, vec)
    loop.enter()
    k, accs = loop.i, loop.accs
    trow = b.gep(tb, [b.mul(k, U.i64(tp.OH * ow))], source_etype=et)
    bv = [b.load(b.gep(trow, [U.i64(v * L)], source_etype=et) if v else trow, typ=vec.t, align=vec.size)
          for v in range(nv)]
    arows = [b.gep(wa, [b.add(b.mul(k, U.i64(MR1)), U.i64(g * MR1 * tp.K))], source_etype=et) for g in range(group)]
    new = []
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(arows[i // MR1], [U.i64(i % MR1)], source_etype=et), typ=et), vec.t)
        new.append([b.call(vec.fma, [a, bv[v], accs[i][v]]) for v in range(nv)])
    loop.close(new)

    sw = tp.sw

    def add_lanes(ptr, acc, first, n):
        """ptr[:n] += lanes [first, first + n) of acc (sw > 1: ptr[:(n - 1)*sw + 1:sw], in runs of
        at most L elements)."""
        if sw > 1:
            m = (n - 1) * sw + 1
            zero = ir.Constant(vec.t, None)
            for c0 in range(0, m, L):
                c1 = min(m, c0 + L)
                mask = [first + j // sw if j % sw == 0 else L for j in range(c0, c1)]
                part = b.shuffle_vector(acc, zero, ir.Constant(ir.VectorType(U.I32, c1 - c0), mask))
                q = b.gep(ptr, [U.i64(c0)], source_etype=et) if c0 else ptr
                if c1 - c0 == 1:
                    part = b.extract_element(part, ir.Constant(U.I32, 0))
                    b.store(b.fadd(b.load(q, typ=et), part), q)
                else:
                    ht = ir.VectorType(et, c1 - c0)
                    b.store(b.fadd(b.load(q, typ=ht, align=U.itemsize(tp.dtype)), part), q,
                            align=U.itemsize(tp.dtype))
            return
        if n == L:
            b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), acc), ptr, align=vec.size)
            return
        part = b.shuffle_vector(acc, acc, ir.Constant(ir.VectorType(U.I32, n), list(range(first, first + n))))
        if n == 1:
            part = b.extract_element(part, ir.Constant(U.I32, 0))
            b.store(b.fadd(b.load(ptr, typ=et), part), ptr)
        else:
            ht = ir.VectorType(et, n)
            b.store(b.fadd(b.load(ptr, typ=ht, align=vec.size), part), ptr, align=vec.size)

    def store(i):
        base = b.gep(dx, [b.load(b.gep(offs, [U.i64(i)], source_etype=I64), typ=I64)], source_etype=et)
        if R > 1:   # whole vectors of a row (the last one's lanes up to OW)
            for v in range(nv):
                row = b.add(t0, U.i64(v // R))
                col = (v % R) * L
                if col >= OW:
                    continue
                with b.if_then(b.icmp_signed("<", row, U.i64(tp.OH))):
                    ptr = b.gep(base, [b.add(b.mul(row, U.i64(tp.sh * tp.W)), U.i64(col * sw))], source_etype=et)
                    add_lanes(ptr, accs[i][v], 0, min(L, OW - col))
            return
        for v in range(nv):
            for g in range(G):
                row = b.add(t0, U.i64(v * G + g))
                with b.if_then(b.icmp_signed("<", row, U.i64(tp.OH))):
                    ptr = b.gep(base, [b.mul(row, U.i64(tp.sh * tp.W))], source_etype=et)
                    add_lanes(ptr, accs[i][v], g * ow, OW)

    _store_rows(b, MR, mrows, store)
    b.ret_void()
    return fn


def emit_gx_image(ctx, tp, wa, top, dx, offs, share=None):
    """dx (one image, zeroed by the caller) += col2im(W^T @ top) with wa = GxWeights (W^T, taps in
    channel-minor order) packed by prepacked.pack_a (panels of gx_mr rows, [K][gx_mr] each) and top
    [K][OH][gx_ow] (readable up to gx_reach past the last channel's start).
    A tile is gx_mr taps x the vectors of gx_tile's output rows. share: (s, S), the panels of share
    s of S only (share_range), whose taps add into the same planes as other shares' do."""
    b = ctx.b
    et = U.ll_type(tp.dtype)
    MR = tp.gx_mr
    nv, rows_per_tile = gx_tile(tp)
    ntiles = -(-tp.OH // rows_per_tile)
    fn = _gx_kernel(ctx.module, tp, nv)
    grp = gx_group(tp, nv)
    fn_g = _gx_kernel(ctx.module, tp, nv, grp) if grp > 1 else None
    full = tp.P // MR

    def call(t0, pan, rows, kernel=fn):
        p0 = b.mul(U.as_value(b, pan), U.i64(MR))
        b.call(kernel, [b.gep(wa, [b.mul(p0, U.i64(tp.K))], source_etype=et), top, t0, dx,
                        b.gep(offs, [b.add(p0, U.i64(tp.gx_offsets))], source_etype=U.I64), U.i64(rows)])

    p0, p1 = share_range(b, full, share)
    with U.for_range(b, ntiles, name="gxt") as t:
        t0 = b.mul(t, U.i64(rows_per_tile))
        singles = p0
        if fn_g is not None:   # whole groups of panels, then the panels left over one at a time
            ng = b.udiv(b.sub(U.as_value(b, p1), U.as_value(b, p0)), U.i64(grp))
            with U.for_range(b, ng, name="gxg") as q:
                call(t0, b.add(U.as_value(b, p0), b.mul(q, U.i64(grp))), MR * grp, fn_g)
            singles = b.add(U.as_value(b, p0), b.mul(ng, U.i64(grp)))
        with U.for_range(b, p1, start=singles, name="gxp") as pan:
            call(t0, pan, MR)
        if full * MR < tp.P:
            with last_share(b, share):
                call(t0, full, tp.P - full * MR)


def reduce_lane_partials(ctx, p, parts, stride, nparts, gw):
    """The weight gradient of a direct or few-tap plan p from its per-thread lane partials:
    gw[k, c, rr, ss] (dense) = the sum over threads (in order) of the pairwise lane sums of
    part_t[k][tap (c, r, s)], (rr, ss) the tap's filter position (turned for a true convolution);
    parts: the first thread's partials, stride elements apart."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    L = p.L
    vt = ir.VectorType(et, L)
    khw = p.kh * p.kw
    with U.for_range(b, p.K, name="fk") as k:
        with U.for_range(b, p.P, name="ft") as tap:
            rs = b.urem(tap, U.i64(khw))
            widx = b.add(b.sub(tap, rs), b.sub(U.i64(khw - 1), rs)) if p.flip else tap
            total = None
            for t in range(nparts):
                off = U.add(b, U.mul(b, t, stride), b.mul(b.add(b.mul(k, U.i64(p.P)), tap), U.i64(L)))
                s = U.lane_sum(b, b.load(U.gep(b, parts, off, et), typ=vt, align=U.itemsize(p.dtype)))
                total = s if total is None else b.fadd(total, s)
            b.store(total, b.gep(gw, [b.add(b.mul(k, U.i64(p.P)), widx)], source_etype=et))
