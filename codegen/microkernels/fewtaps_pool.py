"""Few-tap convolutions (first layers) whose output is pooled over windows that tile it (stride =
window, as LeNet's 2x2 max pool): the forward pools in registers, the weight gradient routes the
pooled gradient in registers; the conv output never exists at full resolution.

Layout: with windows (ph, pw), conv output (ph*a + di, pw*b + dj) is phase (di, dj) of pooled
position q = a*PW + b. Vector lanes run over q (dense (PH, PW) pooled planes: no lane is wasted
but the last vector's tail). Each image (zero-bordered, C channels) is split into phase planes

    plane(c, pr, pc, cs)[a', b] = x_b[c, ph*a' + pr, pw*(b + cs) + pc]     a' < R, b < PW

so that tap (r, s) of phase (di, dj) at positions q reads plane(c, u % ph, v % pw, v // pw) at
q + (u // ph)*PW, u = di + r, v = dj + s: one plain vector load at a constant offset. Loads are
shared by every (phase, tap) pair with the same (u, v): 36 distinct loads for the 100 pairs of a
5x5 filter and 2x2 windows.

  forward          tiles of MR filters x NV vectors x ph*pw phases of accumulators, the (c, u, v)
                   positions unrolled (c outermost, so each phase accumulates its taps in the
                   order t = (c, r, s), as the few-tap kernel of fewtaps.py does); then per filter
                   and vector the window's max and tie bits (or sum times the scale) of the phases,
                   + b[k], stored straight into the dense pooled output and tie mask.
  weight gradient  blocks of MK filters x NT taps of lane-partial accumulators over the vectors of
                   one image; the routed gradient of each phase (the pooled gradient where the
                   phase's tie bit is set, else 0; average pools: the pooled gradient times the
                   window scale) is prepared per image in a per-thread buffer [K][phases][vectors]
                   (zero past the last position), and the image loads of the last vector are masked
                   (an Inf in a lane that is no output must not meet its 0).
"""
from llvmlite import ir

from .. import library
from .. import irutil as U
from .. import target as targets
from ..irutil import lanes
from .directconv import AccLoop, Vec, kernel_function, max_accumulators

MIN_EFFICIENCY = 0.5   # useful share of the computed lanes below which the few-tap kernel is kept
MAX_PHASES = 9         # window positions (3x3 windows at most)


def _round_up(n, m):
    return -(-n // m) * m


def _step_cost(fmas, split_loads, loads):
    """Cycles of straight-line work: two FMA units; two load ports, a load crossing a cache line
    taking both."""
    return max(fmas, 2 * split_loads + loads) / 2


class Plan:
    """Static layout of a pooled few-tap convolution of a zero-bordered (C, Hb, Wb) image with K
    filters kh x kw, unit strides, pooled over windows ws (stride ws) with ignore_border. Fields
    read by directconv_grad.reduce_lane_partials: dtype, K, P, L, kh, kw, flip."""

    def __init__(self, dtype, C, Hb, Wb, K, kh, kw, ws, flip, pool):
        self.dtype, self.C, self.Hb, self.Wb, self.K, self.kh, self.kw = dtype, C, Hb, Wb, K, kh, kw
        self.flip, self.pool = flip, pool
        self._positions = {}   # positions() and loads() by tap range (None: all taps); the tile search asks often
        self.ph, self.pw = ws
        self.OH, self.OW = Hb - kh + 1, Wb - kw + 1
        self.PH, self.PW = self.OH // self.ph, self.OW // self.pw
        self.L = L = lanes(dtype)
        self.n = self.PH * self.PW
        self.nvec = -(-self.n // L)
        self.tail = self.n - (self.nvec - 1) * L   # lanes of the last vector that are positions
        self.useful = self.n / (self.nvec * L)
        self.nph = self.ph * self.pw
        self.ncs = (self.pw + kw - 2) // self.pw + 1
        self.R = self.PH + (self.ph + kh - 2) // self.ph
        self.plane = self.R * self.PW
        self.nplanes = C * self.nph * self.ncs
        self.P = C * kh * kw
        # a bordered image row, read pw vectors at a time from column pw*cs of every block of L
        # pooled columns
        self.row_len = _round_up(max(Wb, self.pw * (self.ncs - 1 + _round_up(self.PW, L))), L)
        self.ntop = self.nph if pool == "max" else 1   # routed gradient planes per filter
        regs = targets.current().vector_registers
        self.MR, self.NV = _forward_tile(self, regs)
        self.nkb = -(-K // self.MR)
        self.MK, self.NT = _grad_tile(self, regs)

    @property
    def variant(self):
        return "fewtaps pooled"

    def plane_index(self, c, pr, pc, cs):
        return ((c * self.ph + pr) * self.pw + pc) * self.ncs + cs

    def load_offset(self, c, u, v):
        """The buffer offset (from position 0) of the loads at window-plus-tap position (u, v)."""
        return (self.plane_index(c, u % self.ph, v % self.pw, v // self.pw) * self.plane
                + (u // self.ph) * self.PW)

    def positions(self, t0=0, t1=None):
        """[(c, u, v, [(phase, tap)])] of the taps in [t0, t1): every load and the (phase, tap)
        pairs that read it, c outermost, then u, then v (so each phase meets its taps in order)."""
        t1 = self.P if t1 is None else t1
        key = (t0, t1)
        if key not in self._positions:
            self._positions[key] = [(c, u, v, kept) for c, u, v, pairs in self._all_positions()
                                    for kept in [[e for e in pairs if t0 <= e[1] < t1]] if kept]
        return self._positions[key]

    def _all_positions(self):
        if None not in self._positions:
            out = []
            for c in range(self.C):
                for u in range(self.ph + self.kh - 1):
                    for v in range(self.pw + self.kw - 1):
                        pairs = []
                        for di in range(self.ph):
                            for dj in range(self.pw):
                                r, s = u - di, v - dj
                                if 0 <= r < self.kh and 0 <= s < self.kw:
                                    pairs.append((di * self.pw + dj, (c * self.kh + r) * self.kw + s))
                        if pairs:
                            out.append((c, u, v, sorted(pairs, key=lambda e: (e[1], e[0]))))
            self._positions[None] = out
        return self._positions[None]

    def loads(self, t0, t1):
        """(loads, (phase, tap) pairs) of the taps in [t0, t1), for the tile model."""
        key = ("loads", t0, t1)
        if key not in self._positions:
            pos = self.positions(t0, t1)
            self._positions[key] = (len(pos), sum(len(e[3]) for e in pos))
        return self._positions[key]

    def buf_elems(self):
        """The phase planes, and a vector past them (the last vector's lanes past the positions)."""
        return self.nplanes * self.plane + 2 * self.L

    def top_elems(self):
        """The routed gradient of one image: [K][ntop][nvec*L]."""
        return self.K * self.ntop * self.nvec * self.L

    def partial_elems(self):
        """One thread's weight-gradient lane partials dwv[K][P][L]."""
        return self.K * self.P * self.L

    def weight_elems(self):
        return self.nkb * self.P * self.nph * self.MR


def _forward_cost(p, MR, NV):
    """Modelled cycles of one image's forward with MR x NV tiles."""
    loads = len(p.positions())
    total = 0.0
    tiles = [NV] * (p.nvec // NV) + ([p.nvec % NV] if p.nvec % NV else [])
    blocks = [MR] * (p.K // MR) + ([p.K % MR] if p.K % MR else [])
    for nv in tiles:
        for mr in blocks:
            fmas = mr * nv * p.nph * p.P
            total += _step_cost(fmas, loads * nv, mr * p.P * p.nph) + mr * nv * (2 * p.nph + 4) / 2 + 10
    return total


def _forward_tile(p, regs):
    best = None
    for MR in range(1, 9):
        for NV in range(1, 9):
            acc = MR * NV * p.nph
            if acc > max_accumulators() + 4 or acc + NV + 2 > regs or MR > p.K or NV > p.nvec:
                continue
            key = (_forward_cost(p, MR, NV), -acc)
            if best is None or key < best[0]:
                best = (key, (MR, NV))
    return best[1] if best is not None else (1, 1)


def _grad_cost(p, MK, NT):
    total = 0.0
    blocks = [MK] * (p.K // MK) + ([p.K % MK] if p.K % MK else [])
    for mk in blocks:
        for t0 in range(0, p.P, NT):
            t1 = min(p.P, t0 + NT)
            loads, pairs = p.loads(t0, t1)
            per_vec = _step_cost(mk * pairs, loads, mk * p.ntop) + 1
            total += p.nvec * per_vec + 2 * mk * (t1 - t0) + 10
    return total


def _grad_tile(p, regs):
    best = None
    for MK in range(1, 9):
        for NT in range(1, p.P + 1):
            acc = MK * NT
            if acc > max_accumulators() + 4 or acc + MK * p.ntop + 2 > regs or MK > p.K:
                continue
            key = (_grad_cost(p, MK, NT), -acc)
            if best is None or key < best[0]:
                best = (key, (MK, NT))
    return best[1] if best is not None else (1, 1)


def plan(dtype, C, Hb, Wb, K, kh, kw, ws, flip, pool):
    """The Plan, or None when the layout does not apply (a dtype other than float32/float64, no
    pooled position, more than MAX_PHASES window positions) or wastes too many lanes."""
    if str(dtype) not in ("float32", "float64") or min(C, Hb, Wb, K, kh, kw, *ws) < 1:
        return None
    if Hb - kh + 1 < ws[0] or Wb - kw + 1 < ws[1] or ws[0] * ws[1] > MAX_PHASES:
        return None
    p = Plan(str(dtype), C, Hb, Wb, K, kh, kw, tuple(ws), flip, pool)
    if p.MR * p.NV * p.nph > max_accumulators() + 4 or p.MK * p.ntop + p.MK * p.NT + 2 > \
            targets.current().vector_registers:
        return None
    return p if p.useful >= MIN_EFFICIENCY else None


# -- the image's phase planes ----------------------------------------------------------------------

def _gather(b, srcs, picks, L):
    """The vector whose lane l is srcs[picks[l][0]][picks[l][1]], by two-operand shuffles."""
    used = sorted({k for k, _ in picks})
    i32 = ir.IntType(32)
    if len(used) == 1:
        return b.shuffle_vector(srcs[used[0]], srcs[used[0]], ir.Constant(ir.VectorType(i32, L), [t for _, t in picks]))
    acc, first = srcs[used[0]], used[0]
    for k in used[1:]:
        if acc is srcs[first]:
            m = [t if s == first else (L + t if s == k else l) for l, (s, t) in enumerate(picks)]
        else:
            m = [L + t if s == k else l for l, (s, t) in enumerate(picks)]
        acc = b.shuffle_vector(acc, srcs[k], ir.Constant(ir.VectorType(i32, L), m))
    return acc


def emit_planes(ctx, p, x_img, pads, row, buf):
    """buf = the phase planes of one image x_img (a (C, H, W) Array of the plan's dtype, the
    zero-bordered image being x padded by pads = (ph0, pw0)). Dense rows are read by masked loads
    straight from x (the lanes outside the row are not read); others go through row, a per-thread
    bordered row of p.row_len values. The planes' positions outside the image are never written
    (the caller zeroes buf and row once; every image writes the same positions)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(ctx.module, p.dtype, L)
    size = U.itemsize(p.dtype)
    H, W = x_img.shape[1], x_img.shape[2]
    oh, ow = pads
    nblk = -(-p.PW // L)
    contiguous = isinstance(x_img.strides[2], int) and x_img.strides[2] == 1
    for c in range(p.C):
        for pr in range(p.ph):
            # the plane rows a' whose image row ph*a' + pr - oh exists
            a0 = max(0, -(-(oh - pr) // p.ph))
            a1 = min(p.R, -(-(H + oh - pr) // p.ph))
            if a1 <= a0:
                continue
            with U.for_range(b, a1, start=a0, name="prow") as a:
                i = b.add(b.mul(a, U.i64(p.ph)), U.i64(pr - oh))
                src = U.gep(b, x_img.ptr, U.add(b, U.mul(b, c, x_img.strides[0]), U.mul(b, i, x_img.strides[1])),
                            x_img.lltype)
                if contiguous:
                    def chunk(start):   # bordered columns start.. +L: image columns start - ow..
                        cols = [start + l - ow for l in range(L)]
                        keep = [0 <= col < W for col in cols]
                        if not any(keep):
                            return vec.zero
                        ptr = b.gep(src, [U.i64(start - ow)], source_etype=et)
                        if all(keep):
                            return b.load(ptr, typ=vec.t, align=size)
                        return b.call(vec.mload, [ptr, vec.align, ir.Constant(ir.VectorType(U.I1, L), keep), vec.zero])
                else:
                    # the bordered row: row[ow + j] = x[c, i, j]
                    with U.for_range(b, W, name="pj") as j:
                        v = b.load(U.gep(b, src, U.mul(b, j, x_img.strides[2]), x_img.lltype), typ=x_img.lltype)
                        b.store(v, b.gep(row, [b.add(j, U.i64(ow))], source_etype=et))

                    def chunk(start):
                        return b.load(U.gep(b, row, start, et), typ=vec.t, align=size)
                dbase = b.mul(a, U.i64(p.PW))
                for cs in range(p.ncs):
                    for blk in range(nblk):
                        start = p.pw * (cs + blk * L)
                        chunks = [chunk(start + k * L) for k in range(p.pw)]
                        left = min(L, p.PW - blk * L)
                        keep = ir.Constant(ir.VectorType(U.I1, L), [int(l < left) for l in range(L)])
                        for pc in range(p.pw):
                            v = chunks[0] if p.pw == 1 else \
                                _gather(b, chunks, [divmod(l * p.pw + pc, L) for l in range(L)], L)
                            off = p.plane_index(c, pr, pc, cs) * p.plane + blk * L
                            dst = b.gep(buf, [b.add(dbase, U.i64(off))], source_etype=et)
                            if left < L:
                                b.call(vec.mstore, [v, dst, vec.align, keep])
                            else:
                                b.store(v, dst, align=size)


# -- forward ---------------------------------------------------------------------------------------

def _lane_keep(L, n):
    return ir.Constant(ir.VectorType(U.I1, L), [int(l < n) for l in range(L)])


def _fwd_kernel(module, p, op, mr, nv, tail, reduce, with_mask=True):
    """void fwd(xq, wp, out, mask, bias): for filters i < mr and vectors j < nv of a tile (xq: the
    planes at the tile's first position; out, mask: the pooled planes of the block's first filter
    at that position, p.n apart; bias: the block's biases or null), out = the window's max (tie bits
    into mask) or scaled sum of the conv phases, + bias. tail: lanes stored of the last vector.
    reduce: convpool_vector's window reduction (values, bits) of the phase values. with_mask False:
    max pooling keeps no tie mask (mask is not written)."""
    mdt = getattr(op, "mask_dtype", None) if p.pool == "max" and with_mask else None
    name = (f"symcnn_fewtaps_pool_{p.dtype}_{p.pool}_{mr}x{nv}_t{tail}_MR{p.MR}_C{p.C}_k{p.kh}x{p.kw}"
            f"_w{p.ph}x{p.pw}_P{p.PH}x{p.PW}_R{p.R}_cs{p.ncs}_b{int(op.has_bias)}" + ("" if mdt or p.pool != "max" else "_nm"))
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, U.PTR, U.PTR, U.PTR])
    xq, wp, out, mptr, bias = fn.args
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    accs = [[[vec.zero] * p.nph for _ in range(nv)] for _ in range(mr)]
    inv = module.add_metadata([])

    def load(ptr, typ, align):
        # invariant: under register pressure the allocator loads a value again instead of spilling it
        ld = b.load(ptr, typ=typ, align=align)
        ld.set_metadata("invariant.load", inv)
        return ld

    e = 0
    for c, u, v, pairs in p.positions():
        off = p.load_offset(c, u, v)
        xs = [load(b.gep(xq, [U.i64(off + j * L)], source_etype=et), vec.t, vec.size) for j in range(nv)]
        for ph_, t in pairs:
            for i in range(mr):
                a = U.splat(b, load(b.gep(wp, [U.i64(e * p.MR + i)], source_etype=et), et, U.itemsize(p.dtype)), vec.t)
                for j in range(nv):
                    accs[i][j][ph_] = b.call(vec.fma, [a, xs[j], accs[i][j][ph_]])
            e += 1
    mt = U.ll_type(mdt) if mdt is not None else None
    mvt = ir.VectorType(mt, L) if mt is not None else None
    mzero = ir.Constant(mvt, [ir.Constant(mt, 0)] * L) if mt is not None else None
    mstore = U.declare(module, f"llvm.masked.store.v{L}i{mt.width}.p0", ir.VoidType(),
                       [mvt, U.PTR, U.I32, ir.VectorType(U.I1, L)]) if mt is not None else None
    scale = U.splat(b, U.const(p.dtype, op.window_scale()), vec.t) if p.pool != "max" else None
    for i in range(mr):
        bk = None
        if op.has_bias:
            bk = U.splat(b, b.load(b.gep(bias, [U.i64(i)], source_etype=et), typ=et), vec.t)
        for j in range(nv):
            if p.pool == "max":
                m, bits = _max_bits(b, accs[i][j], mvt, mzero)
            else:
                m, bits = reduce(b, accs[i][j], None, None, None, scale)
            if bk is not None:
                m = b.fadd(m, bk)
            o = i * p.n + j * L
            dst = b.gep(out, [U.i64(o)], source_etype=et)
            last = j == nv - 1 and tail < L
            if last:
                b.call(vec.mstore, [m, dst, vec.align, _lane_keep(L, tail)])
            else:
                b.store(m, dst, align=vec.size)
            if bits is not None:
                mdst = b.gep(mptr, [U.i64(o)], source_etype=mt)
                if last:
                    b.call(mstore, [bits, mdst, ir.Constant(U.I32, 1), _lane_keep(L, tail)])
                else:
                    b.store(bits, mdst, align=1)
    b.ret_void()
    return fn


def tap_sequence(p):
    """The taps in the order the forward kernel reads its weights: one per (phase, tap) pair, so
    every weight broadcast is used once (LLVM would merge loads of one address and keep the
    broadcasts live between their uses, spilling the accumulators)."""
    return [t for _, _, _, pairs in p.positions() for _, t in pairs]


def _max_bits(b, vals, mvt, mzero):
    """(max, tie bits) of a window's phase values (vectors), as convpool_vector's reduction gives
    them (the first of equal values; bit e set where vals[e] equals the max; NaN where a value is
    NaN, with no bit set), in a tree of max instructions: the sequential form's NaN tests cost
    as much as the FMAs of a tile. mvt None: no bits (None)."""
    def vmax(x, y):   # y unless x is greater: one max instruction, the earlier value on ties
        return b.select(b.fcmp_ordered(">", x, y), x, y)

    level = list(vals)
    nan = None
    while len(level) > 1:
        nxt = []
        for k in range(0, len(level) - 1, 2):
            if nan is None or len(level) == len(vals):
                u = b.fcmp_unordered("uno", level[k], level[k + 1])
                nan = u if nan is None else b.or_(nan, u)
            nxt.append(vmax(level[k + 1], level[k]))
        if len(level) % 2:
            if len(level) == len(vals):
                u = b.fcmp_unordered("uno", level[-1], level[-1])
                nan = u if nan is None else b.or_(nan, u)
            nxt.append(level[-1])
        level = nxt
    m = level[0]
    if nan is not None:
        m = b.select(nan, ir.Constant(m.type, [ir.Constant(m.type.element, float("nan"))] * m.type.count), m)
    if mvt is None:   # no tie mask kept
        return m, None
    bits = mzero
    for e, val in enumerate(vals):
        one = ir.Constant(mvt, [ir.Constant(mvt.element, 1 << e)] * mvt.count)
        bits = b.or_(bits, b.select(b.fcmp_ordered("==", val, m), one, mzero))
    return m, bits


def pack_weights(ctx, p, w_ptr, wp):
    """wp[(kb*S + e)*MR + i] = W[kb*MR + i, tap seq[e]] (turned for a true convolution; 0 past K),
    seq = tap_sequence(p) of S entries."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    khw = p.kh * p.kw
    seq = tap_sequence(p)
    tt = ir.ArrayType(U.I64, len(seq))
    name = f"symcnn_fewtaps_pool_taps_{p.C}_{p.kh}x{p.kw}_w{p.ph}x{p.pw}"
    table = ctx.module.globals.get(name)
    if table is None:
        table = ir.GlobalVariable(ctx.module, tt, name=name)
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = ir.Constant(tt, [ir.Constant(U.I64, t) for t in seq])
    with U.for_range(b, p.nkb * p.MR, name="wk") as kk:
        kb = b.udiv(kk, U.i64(p.MR))
        i = b.urem(kk, U.i64(p.MR))
        valid = b.icmp_signed("<", kk, U.i64(p.K))
        wrow = b.gep(w_ptr, [b.mul(U.smin(b, kk, p.K - 1), U.i64(p.P))], source_etype=et)
        with U.for_range(b, len(seq), name="we") as e:
            t = b.load(b.gep(table, [U.i64(0), e], source_etype=tt), typ=U.I64)
            rs = b.urem(t, U.i64(khw))
            src = b.add(b.sub(t, rs), b.sub(U.i64(khw - 1), rs)) if p.flip else t
            v = b.load(b.gep(wrow, [src], source_etype=et), typ=et)
            dst = b.add(b.mul(b.add(b.mul(kb, U.i64(len(seq))), e), U.i64(p.MR)), i)
            b.store(b.select(valid, v, ir.Constant(et, 0.0)), b.gep(wp, [dst], source_etype=et))


def emit_forward_image(ctx, p, op, buf, wp, out, mask, bias, reduce):
    """The pooled, biased conv values of one image (its phase planes in buf) into out (dense
    (K, PH, PW)) and, max pooling, the tie bits into mask; wp: pack_weights' layout; bias: the
    biases or None."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    mt = U.ll_type(op.mask_dtype) if p.pool == "max" else None
    full, rest = divmod(p.K, p.MR)
    seq = tap_sequence(p)
    q0 = 0
    while q0 < p.nvec:
        nv = min(p.NV, p.nvec - q0)
        tail = p.tail if q0 + nv == p.nvec else p.L
        pos = q0 * p.L
        xq = U.gep(b, buf, pos, et)
        null = ir.Constant(U.PTR, None)

        def call(kb, mr):
            k0 = b.mul(kb, U.i64(p.MR)) if not isinstance(kb, int) else kb * p.MR
            o = U.add(b, U.mul(b, k0, p.n), pos)
            b.call(_fwd_kernel(ctx.module, p, op, mr, nv, tail, reduce, mask is not None),
                   [xq, U.gep(b, wp, U.mul(b, k0, len(seq)), et), U.gep(b, out, o, et),
                    U.gep(b, mask, o, mt) if mask is not None else null,
                    U.gep(b, bias, k0, et) if bias is not None else null])

        if full:
            with U.for_range(b, full, name="fkb") as kb:
                call(kb, p.MR)
        if rest:
            call(full, rest)
        q0 += nv


# -- weight gradient -------------------------------------------------------------------------------

def emit_tops(ctx, p, op, g, mask, top, gsum=None):
    """top[k][phase][q] = the pooled gradient g[k, q] where the phase's tie bit of mask[k, q] is
    set, else 0 (max pooling); top[k][0][q] = g[k, q] times the window scale (average pools; the
    sum: g); 0 for q past the positions. g, mask: one image's dense (K, PH, PW) blocks. gsum: float64
    per-filter sums, += the sum of g[k] (float64 lane partials over the vectors in order, then the
    lanes pairwise: a fixed order)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(ctx.module, p.dtype, L)
    npad = p.nvec * L
    mt = U.ll_type(op.mask_dtype) if p.pool == "max" else None
    if mt is not None:
        mvt = ir.VectorType(mt, L)
        mzero = ir.Constant(mvt, [ir.Constant(mt, 0)] * L)
        mload = U.declare(ctx.module, f"llvm.masked.load.v{L}i{mt.width}.p0", mvt,
                          [U.PTR, U.I32, ir.VectorType(U.I1, L), mvt])
    scale = U.splat(b, U.const(p.dtype, op.window_scale()), vec.t) if p.pool not in ("max", "sum") else None

    dvt = ir.VectorType(U.F64, L)

    def vector(k, j, keep):
        src = b.add(b.mul(k, U.i64(p.n)), U.i64(j * L))
        gp = b.gep(g, [src], source_etype=et)
        gv = b.load(gp, typ=vec.t, align=vec.size) if keep is None else b.call(vec.mload, [gp, vec.align, keep, vec.zero])
        dst = b.mul(k, U.i64(p.ntop * npad))
        if mt is None:
            b.store(b.fmul(gv, scale) if scale is not None else gv,
                    b.gep(top, [b.add(dst, U.i64(j * L))], source_etype=et), align=vec.size)
            return gv
        mp = b.gep(mask, [src], source_etype=mt)
        bits = b.load(mp, typ=mvt, align=1) if keep is None else \
            b.call(mload, [mp, ir.Constant(U.I32, 1), keep, mzero])
        for ph_ in range(p.nph):
            one = ir.Constant(mvt, [ir.Constant(mt, 1 << ph_)] * L)
            hit = b.icmp_unsigned("!=", b.and_(bits, one), mzero)
            b.store(b.select(hit, gv, vec.zero),
                    b.gep(top, [b.add(dst, U.i64(ph_ * npad + j * L))], source_etype=et), align=vec.size)
        return gv

    with U.for_range(b, p.K, name="tk") as k:
        acc = ir.Constant(dvt, [ir.Constant(U.F64, 0.0)] * L)
        for j in range(p.nvec):
            gv = vector(k, j, _lane_keep(L, p.tail) if j == p.nvec - 1 and p.tail < L else None)
            acc = b.fadd(acc, b.fpext(gv, dvt) if p.dtype == "float32" else gv)
        if gsum is not None:
            gk = b.gep(gsum, [k], source_etype=U.F64)
            b.store(b.fadd(b.load(gk, typ=U.F64), U.lane_sum(b, acc)), gk)


def _dw_kernel(module, p, mk, t0, nt):
    """void dw(xq, top, dwv): dwv[(i*P + t0 + t)*L : +L] += the lane sums over the image's vectors
    of top[i][phase] * the image at (phase, tap t0 + t), i < mk, t < nt (the last vector's image
    loads masked to its positions)."""
    name = (f"symcnn_fewtaps_pool_dw_{p.dtype}_{p.pool}_{mk}x{nt}_t{t0}_C{p.C}_k{p.kh}x{p.kw}_w{p.ph}x{p.pw}"
            f"_P{p.PH}x{p.PW}_R{p.R}_cs{p.ncs}")
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, U.PTR])
    xq, top, dwv = fn.args
    et = U.ll_type(p.dtype)
    L = p.L
    vec = Vec(module, p.dtype, L)
    npad = p.nvec * L
    pos = p.positions(t0, t0 + nt)

    def step(q, accs, keep):
        tops = [[b.load(b.gep(top, [b.add(q, U.i64((i * p.ntop + f) * npad))], source_etype=et),
                        typ=vec.t, align=vec.size) for f in range(p.ntop)] for i in range(mk)]
        for c, u, v, pairs in pos:
            xp = b.gep(xq, [b.add(q, U.i64(p.load_offset(c, u, v)))], source_etype=et)
            xv = b.load(xp, typ=vec.t, align=vec.size) if keep is None else \
                b.call(vec.mload, [xp, vec.align, keep, vec.zero])
            for ph_, t in pairs:
                for i in range(mk):
                    tv = tops[i][ph_ if p.ntop > 1 else 0]
                    accs[i][t - t0] = b.call(vec.fma, [tv, xv, accs[i][t - t0]])
        return accs

    full = p.nvec - (1 if p.tail < L else 0)
    loop = AccLoop(b, "dwq", full, mk, nt, vec)
    loop.enter()
    accs = step(b.mul(loop.i, U.i64(L)), [list(r) for r in loop.accs], None)
    loop.close(accs)
    accs = [list(r) for r in loop.accs]
    if full < p.nvec:
        accs = step(U.i64(full * L), accs, _lane_keep(L, p.tail))
    for i in range(mk):
        for t in range(nt):
            ptr = b.gep(dwv, [U.i64((i * p.P + t0 + t) * L)], source_etype=et)
            b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), accs[i][t]), ptr, align=vec.size)
    b.ret_void()
    return fn


def emit_grad_image(ctx, p, buf, top, dwv):
    """dwv[k][t][:] += the lane partials of one image's weight gradient (its phase planes in buf,
    its routed gradient in top, emit_tops' layout)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    npad = p.nvec * p.L
    for k0 in range(0, p.K, p.MK):
        mk = min(p.MK, p.K - k0)
        for t0 in range(0, p.P, p.NT):
            nt = min(p.NT, p.P - t0)
            b.call(_dw_kernel(ctx.module, p, mk, t0, nt),
                   [buf, U.gep(b, top, k0 * p.ntop * npad, et), U.gep(b, dwv, k0 * p.P * p.L, et)])
