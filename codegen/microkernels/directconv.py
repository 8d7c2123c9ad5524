"""Direct convolution of one image for the conv-pool kernels, with no im2col buffer.

For a 'valid' convolution with unit strides and an image stored densely as (C, H, W), the input
value that kernel tap p = (c, r, s) multiplies for output (i, j) sits at

    x[c*H*W + r*W + s + (i*W + j)]

so, over a run of outputs along a row, the "patch matrix" of im2col is just the image read at a
per-tap offset. The micro-kernel keeps MR output channels x NV vectors of outputs in registers and,
per tap, loads NV vectors of the image at that offset and broadcasts MR packed weights: MR*NV FMAs
per NV loads, with nothing copied per image. Two layouts of the outputs covered by the vectors:

  wide  the vectors run over q = i*W + j, q < (OH-1)*W + OW: rows are W long, so the W-OW columns
        past each row's end are computed and ignored (used when that waste is small, e.g. a 28-wide
        image and 24 outputs per row);
  rows  OW divides the vector length L: a vector is G = L/OW whole output rows, each an OW-long
        load of the image (q = i*OW + j; e.g. 8 outputs per row: two rows per 16-lane vector);
        with image rows exactly OW long (W == OW, the strided kernels' shifted copies) and full
        tiles, the G rows lie end to end and a vector is one load (whole_rows).

A filter dilated by (dh, dw) (Theano's filter_dilation) only moves the taps: tap (c, r, s) sits at
c*H*W + dh*r*W + dw*s, so the same micro-kernel runs it with the table of offsets scaled.

conv[k, q] goes to a per-thread scratch whose rows are `row_stride` long; pooled windows then read it
with row length `rs` (W or OW). The weights are packed once per call as [K/MR][P][MR] (flipped for a
true convolution; rows past K are zero) with a table of the P tap offsets.
"""
import hashlib

from llvmlite import ir

from .. import library
from .. import irutil as U
from ..irutil import lanes
from .. import target as targets
from .gemm import fma_name

MAX_ACC = 24      # vector accumulators per micro-kernel with 32 vector registers (AVX-512, AArch64)
MIN_ACC = 12      # fewer FMAs per step than this and the kernel waits on its loads
MIN_EFFICIENCY = 0.7   # useful share of the computed outputs below which im2col + GEMM is used


def max_accumulators():
    """Vector accumulators a micro-kernel may keep: with 16 vector registers (AVX2, SSE2) half as
    many as with 32, so the loaded vectors and the broadcast still fit beside them."""
    return MAX_ACC if targets.current().vector_registers >= 32 else MAX_ACC // 2


class Plan:
    """Static layout of a direct convolution (all sizes Python ints)."""

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, mode, MR, NV, flip, dilation=(1, 1)):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.mode, self.MR, self.NV, self.flip = OH, OW, mode, MR, NV, flip
        self.dh, self.dw = dilation
        self.L = L = lanes(dtype)
        self.P = C * kh * kw
        self.tap_block = self.P   # taps per micro-kernel call (block_channels: fewer)
        self.nkb = -(-K // MR)
        if mode == "wide":
            self.rs = W
            self.n_out = (OH - 1) * W + OW          # q range computed
            self.tile = NV * L                       # q per tile
            self.ntiles = -(-self.n_out // self.tile)
        else:
            self.G = L // OW
            self.rs = OW
            self.tile = NV * self.G                  # output rows per tile
            self.ntiles = -(-OH // self.tile)
        span = self.ntiles * NV * L
        # pooling epilogues read up to 2L values from a row start: pad so they stay inside
        self.row_stride = -(-(span + 2 * L) // L) * L

    def scratch_elems(self):
        return self.nkb * self.MR * self.row_stride + 2 * self.L

    def efficiency(self):
        return (self.OH * self.OW * self.K) / (self.ntiles * self.NV * self.L * self.nkb * self.MR)


def plan(op, dtype, dims, modes=None):
    """A Plan for this conv when the direct kernel applies and wastes little, else None; modes: the
    layouts to consider (default: both where they apply)."""
    if str(dtype) not in ("float32", "float64") or op.border_mode != "valid" or tuple(op.subsample) != (1, 1):
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or OH < 1 or OW < 1:
        return None
    dilation = tuple(getattr(op, "filter_dilation", (1, 1)))
    L = lanes(dtype)
    max_acc = max_accumulators()
    min_acc = min(MIN_ACC, max_acc // 2 + 2)
    best = None
    allowed = ["wide"] + (["rows"] if OW <= L and L % OW == 0 else [])
    for mode in [m for m in allowed if modes is None or m in modes]:
        for MR in (6, 5, 4, 3, 2, 1):
            for NV in (4, 3, 2, 1):
                if MR * NV > max_acc:
                    continue
                p = Plan(str(dtype), C, H, W, K, kh, kw, OH, OW, mode, MR, NV, op.filter_flip, dilation)
                # tiles under MIN_ACC accumulators are bound by their loads: only if nothing else fits
                key = (MR * NV >= min(min_acc, K * NV), round(p.efficiency(), 3), NV * MR)
                if best is None or key > best[0]:
                    best = (key, p)
    if best is None or best[1].efficiency() < MIN_EFFICIENCY:
        return None
    return best[1]


def pack_weights(ctx, p, w_ptr, wp, offs):
    """wp[(kb*P + t)*MR + i] = W[kb*MR + i, tap t] (0 past K), offs[t] = the tap's image offset."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    tap_offsets(ctx, p, offs)
    khw = p.kh * p.kw
    with U.for_range(b, p.nkb * p.MR, name="wk") as kk:
        kb = b.udiv(kk, U.i64(p.MR))
        i = b.urem(kk, U.i64(p.MR))
        valid = b.icmp_signed("<", kk, U.i64(p.K))
        wrow = b.gep(w_ptr, [b.mul(U.smin(b, kk, p.K - 1), U.i64(p.P))], source_etype=et)
        with U.for_range(b, p.P, name="wt") as t:
            rs = b.urem(t, U.i64(khw))
            src = b.add(b.sub(t, rs), b.sub(U.i64(khw - 1), rs)) if p.flip else t
            v = b.load(b.gep(wrow, [src], source_etype=et), typ=et)
            dst = b.add(b.mul(b.add(b.mul(kb, U.i64(p.P)), t), U.i64(p.MR)), i)
            b.store(b.select(valid, v, ir.Constant(et, 0.0)), b.gep(wp, [dst], source_etype=et))


# -- scaffolding shared by the micro-kernels here and in directconv_grad.py -------------------------

def kernel_function(module, name, argtypes):
    """(fn, builder at its entry) for a new internal, never-inlined function returning void; pointer
    arguments are noalias (each kernel's buffers are distinct)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), argtypes), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    for a in fn.args:
        if isinstance(a.type, ir.PointerType):
            a.add_attribute("noalias")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def masked_load(module, dtype, L):
    """llvm.masked.load of L values of dtype (a float or integer dtype)."""
    et = U.ll_type(dtype)
    vt, mt = ir.VectorType(et, L), ir.VectorType(U.I1, L)
    sfx = {"float32": "f32", "float64": "f64"}.get(str(dtype)) or f"i{et.width}"
    return U.declare(module, f"llvm.masked.load.v{L}{sfx}.p0", vt, [U.PTR, U.I32, mt, vt])


class Vec:
    """<L x dtype> vectors: the type, a zero, and the fma / masked load / masked store intrinsics."""

    def __init__(self, module, dtype, L):
        et = U.ll_type(dtype)
        self.t = vt = ir.VectorType(et, L)
        self.zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
        self.size = U.itemsize(dtype)
        self.align = ir.Constant(U.I32, self.size)
        mt = ir.VectorType(U.I1, L)
        sfx = f"v{L}{'f32' if dtype == 'float32' else 'f64'}"
        self.fma = U.declare(module, f"llvm.{fma_name()}.{sfx}", vt, [vt, vt, vt])
        self.mload = masked_load(module, dtype, L)
        self.mstore = U.declare(module, f"llvm.masked.store.{sfx}.p0", ir.VoidType(), [vt, U.PTR, U.I32, mt])


def row_vectors(b, vec, ptr, nv, L, et):
    """The nv vectors of L values at ptr, one after the other (aligned to the vector's size)."""
    return [b.load(b.gep(ptr, [U.i64(j * L)], source_etype=et) if j else ptr, typ=vec.t, align=vec.size)
            for j in range(nv)]


def deltas_key(deltas):
    """A short name for a pattern of constant distances (part of its kernel's name)."""
    return hashlib.sha1(repr(tuple(deltas)).encode()).hexdigest()[:10]


def broadcast_fmas(b, vec, base, deltas, vectors, accs, et):
    """accs[i][j] + broadcast(base[deltas[i]]) * vectors[j]: a rank-1 update of a tile of accumulators
    whose scalars lie at constant distances from one pointer (the distances in the loads' addresses)."""
    new = []
    for i, d in enumerate(deltas):
        a = U.splat(b, b.load(b.gep(base, [U.i64(d)], source_etype=et) if d else base, typ=et), vec.t)
        new.append([b.call(vec.fma, [a, v, accs[i][j]]) for j, v in enumerate(vectors)])
    return new


PREFETCH_LINE = 64    # bytes a prefetch brings (a cache line of x86-64 and of most aarch64 cores)


def prefetch_spread(module, b, pf, lines, i, count, write=False, locality=2):
    """In iteration i (an i64) of a loop of `count` iterations (an int): prefetch this iteration's
    share of the `lines` cache lines (an int) from pf on, so that all of them are asked for by the
    loop's end, ceil(lines / count) an iteration. A hint: it never faults."""
    fn = U.declare(module, "llvm.prefetch.p0", ir.VoidType(), [U.PTR, U.I32, U.I32, U.I32])
    for q in range(-(-lines // count)):
        at = U.as_value(b, spread_offset(b, i, q, lines, count))
        b.call(fn, [b.gep(pf, [at], source_etype=ir.IntType(8)),
                    ir.Constant(U.I32, int(write)), ir.Constant(U.I32, locality), ir.Constant(U.I32, 1)])


SPREAD_SHIFT = 16   # the fixed point of a loop's step over fewer lines than iterations


def spread_offset(b, i, q, lines, count):
    """The byte offset prefetch q of iteration i asks for (prefetch_spread; i an int or an i64).
    Fewer lines than iterations: i * (lines*LINE - 1) / (count - 1) in fixed point, a multiply and
    a shift (a division by count in the loop cost as many instructions as the prefetches); at most
    a line's step an iteration, so that no line is skipped, from 0 to the window's last byte. Else the
    virtual index i*per + q of count*per, per = ceil(lines / count), mapped onto the lines."""
    if lines < count:
        step = ((lines * PREFETCH_LINE - 1) << SPREAD_SHIFT) // (count - 1)
        if isinstance(i, int):
            return (i * step) >> SPREAD_SHIFT
        return b.lshr(b.mul(i, U.i64(step)), U.i64(SPREAD_SHIFT))
    per = -(-lines // count)
    if lines == count * per:   # one line each: no division in the loop
        line = U.add(b, U.mul(b, i, per), q)
    else:
        line = _udiv(b, U.mul(b, U.add(b, U.mul(b, i, per), q), lines), count * per)
    return U.mul(b, line, PREFETCH_LINE)


def _udiv(b, x, d):
    return x // d if isinstance(x, int) else b.udiv(x, U.i64(d))


def window_lines(region, ncalls):
    """The lines of each of the ncalls windows of region (pointer, bytes: an int, ...; None: 0)."""
    return 0 if region is None else -(-(-(-region[1] // PREFETCH_LINE)) // ncalls)


def prefetch_window(b, region, ncalls, j):
    """The first line of call j's window (an i64 call index) of the ncalls windows that cut region
    (pointer, bytes: an int, ...) into whole lines in order (the last ones moved back inside it)."""
    at = U.as_value(b, window_first(b, j, region[1], ncalls))
    return b.gep(region[0], [b.mul(at, U.i64(PREFETCH_LINE))], source_etype=ir.IntType(8))


def window_first(b, j, nbytes, ncalls):
    """The first line of window j (an int or an i64) of a region of nbytes cut into ncalls windows."""
    total = -(-nbytes // PREFETCH_LINE)
    lines = window_lines((None, nbytes), ncalls)
    return U.smin(b, U.mul(b, j, lines), max(0, total - lines))


class Streams:
    """Regions a caller touches next, (pointer, bytes: an int, write: bool) each (None entries
    dropped: the image's outputs its epilogue writes, the next image its copy reads), spread over
    the ncalls kernel calls of an image: every call prefetches its window of each region as it
    computes, instead of the first loop that touches a line waiting for it.

        st = Streams(regions, ncalls)
        kernel = make(..., st.key)             # the kernel's static part: (lines, write) per region
        b.call(kernel, args + st.args(b, j))   # call j's windows
    """

    def __init__(self, regions, ncalls):
        self.regions = [r for r in regions or () if r is not None and r[1] > 0]
        self.ncalls = ncalls
        self.key = tuple((window_lines(r, ncalls), bool(r[2])) for r in self.regions)

    def args(self, b, j):
        return [prefetch_window(b, r, self.ncalls, j) for r in self.regions]


def share(b, region, i, n):
    """Share i of n of region (pointer, bytes: an int, write), in whole lines (None: nothing left)."""
    first, size = share_bounds(region[1], i, n)
    if size == 0:
        return None
    return (b.gep(region[0], [U.i64(first)], source_etype=ir.IntType(8)), size, region[2])


def share_bounds(nbytes, i, n):
    """(first byte, bytes) of share i of n of nbytes, whole lines but the last."""
    part = -(-nbytes // (n * PREFETCH_LINE)) * PREFETCH_LINE
    first = min(i * part, nbytes)
    return first, min(part, nbytes - first)


def streams_tag(key):
    """The part of a kernel's name that says what it prefetches."""
    return "_pf" + "".join(f"{'w' if w else 'r'}{n}" for n, w in key) if key else ""


class AccLoop:
    """for (i = 0; i < count; i++) carrying rows x cols vector accumulators (from zero) as phis:

        loop = AccLoop(b, "t", count, rows, cols, vec)   # builder in the loop header
        x = loop.carry(init)                             # more loop-carried values (optional)
        loop.enter()                                     # builder in the body: loop.i, loop.accs
        ...
        loop.close(new_accs, {x: next_x})                # builder after the loop; loop.accs final
    """

    def __init__(self, b, name, count, rows, cols, vec, init=None):
        self.b, self.count = b, count
        self.entry = b.block
        self.head = b.append_basic_block(f"{name}.head")
        self.body = b.append_basic_block(f"{name}.body")
        self.done = b.append_basic_block(f"{name}.end")
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = self.carry(U.i64(0), name)
        self.accs = [[self.carry(vec.zero if init is None else init[i][j]) for j in range(cols)] for i in range(rows)]

    def carry(self, init, name=""):
        ph = self.b.phi(init.type, name=name)
        ph.add_incoming(init, self.entry)
        return ph

    def enter(self):
        b = self.b
        b.cbranch(b.icmp_signed("<", self.i, U.as_value(b, self.count)), self.body, self.done)
        b.position_at_end(self.body)

    def close(self, new_accs, carried=None):
        b = self.b
        last = b.block
        for row, new_row in zip(self.accs, new_accs):
            for ph, v in zip(row, new_row):
                ph.add_incoming(v, last)
        for ph, v in (carried or {}).items():
            ph.add_incoming(v, last)
        self.i.add_incoming(b.add(self.i, U.i64(1)), last)
        b.branch(self.head)
        b.position_at_end(self.done)


def _microkernel(module, p, taps=None, accumulate=False, full=False, streams=()):
    """void ukr(x_img, wp_block, offs, out, t0[, pf...]): conv scratch rows [MR] x one tile, from tile
    t0 (wide: first q; rows: first output row), over `taps` taps (default all P); accumulate: added
    to what out holds (a later block of taps). full (wide): the tile lies inside the image, its loads
    unmasked (with 16 vector registers, AVX2, LLVM rebuilt the masks at every tap: a 1x1 layer's
    128 -> 128 forward ran at 27 % of the machine's peak). streams: Streams.key, (lines, write) of
    each pointer pf: the kernel also prefetches them, spread over its taps."""
    taps = p.P if taps is None else taps
    layout = "rows_whole" if whole_rows(p) else "wide_full" if p.mode == "wide" and full else p.mode
    name = f"symcnn_dconv_{p.dtype}_{layout}_{p.MR}x{p.NV}_W{p.W}_OW{p.OW}_OH{p.OH}_P{p.P}_{p.row_stride}"
    if taps != p.P or accumulate:
        name += f"_T{taps}{'a' if accumulate else ''}"
    name += streams_tag(streams)
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn, b = kernel_function(module, name, [P_, P_, P_, P_, I64] + [P_] * len(streams))
    x, wp, offs, out, t0 = fn.args[:5]
    et = U.ll_type(p.dtype)
    L, MR, NV = p.L, p.MR, p.NV
    vec = Vec(module, p.dtype, L)
    if p.mode == "wide":
        base = b.gep(x, [t0], source_etype=et)
        lane = ir.Constant(ir.VectorType(I64, L), list(range(L)))
        masks = []
        for j in range(NV if not full else 0):
            left = b.sub(U.i64(p.n_out), b.add(t0, U.i64(j * L)))
            masks.append(b.icmp_signed("<", lane, U.splat(b, left, ir.VectorType(I64, L))))
        pieces = None
    elif whole_rows(p):
        # the G rows of a vector lie end to end (W == OW) and every tile is full: one load each
        pieces = None
        rows = [b.gep(x, [b.mul(b.add(t0, U.i64(j * p.G)), U.i64(p.W))], source_etype=et) for j in range(NV)]
    else:
        G, OW = p.G, p.OW
        ht = ir.VectorType(et, OW)
        # rows past the last are clamped to it: in bounds, computed, never stored
        pieces = []
        for j in range(NV):
            for g in range(G):
                row = U.smin(b, b.add(t0, U.i64(j * G + g)), p.OH - 1)
                pieces.append(b.gep(x, [b.mul(row, U.i64(p.W))], source_etype=et))
    init = None
    if accumulate:
        init = [[b.load(b.gep(out, [U.i64(i * p.row_stride + j * L)], source_etype=et), typ=vec.t, align=vec.size)
                 for j in range(NV)] for i in range(MR)]
    loop = AccLoop(b, "t", taps, MR, NV, vec, init)
    loop.enter()
    t, accs = loop.i, loop.accs
    for pf, (lines, write) in zip(fn.args[5:], streams):
        prefetch_spread(module, b, pf, lines, t, taps, write=write)
    off = b.load(b.gep(offs, [t], source_etype=I64), typ=I64)
    vecs = []
    if p.mode == "wide":
        src = b.gep(base, [off], source_etype=et)
        for j in range(NV):
            ptr = b.gep(src, [U.i64(j * L)], source_etype=et) if j else src
            vecs.append(b.load(ptr, typ=vec.t, align=vec.size) if full
                        else b.call(vec.mload, [ptr, vec.align, masks[j], vec.zero]))
    elif pieces is None:
        vecs = [b.load(b.gep(r, [off], source_etype=et), typ=vec.t, align=vec.size) for r in rows]
    else:
        for j in range(NV):
            parts = [b.load(b.gep(pieces[j * G + g], [off], source_etype=et), typ=ht, align=vec.size)
                     for g in range(G)]
            while len(parts) > 1:   # concatenate pairwise: OW -> 2*OW -> ... -> L lanes
                n = parts[0].type.count
                idx = ir.Constant(ir.VectorType(U.I32, 2 * n), list(range(2 * n)))
                parts = [b.shuffle_vector(parts[i], parts[i + 1], idx) for i in range(0, len(parts), 2)]
            vecs.append(parts[0])
    wrow = b.gep(wp, [b.mul(t, U.i64(MR))], source_etype=et)
    new = []
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(wrow, [U.i64(i)], source_etype=et), typ=et), vec.t)
        new.append([b.call(vec.fma, [a, vecs[j], accs[i][j]]) for j in range(NV)])
    loop.close(new)
    for i in range(MR):
        for j in range(NV):
            b.store(accs[i][j], b.gep(out, [U.i64(i * p.row_stride + j * L)], source_etype=et), align=vec.size)
    b.ret_void()
    return fn


def l1_image_bytes():
    """Bytes of image one call of the micro-kernel may read (at most kh*kw*NV vectors per channel) for
    them to stay in the target's L1 data cache beside the weights and the output tile: 5/6 of it
    (48 KB: 40 KB; allconv's strided forwards, 1 thread: 32x32 -> 16x16 two blocks of 16 channels
    3.28 -> 3.20 ms, 16x16 -> 8x8 four 3.20 -> 2.96 ms; blocks of 8 channels gained less, and the
    strided input gradients none)."""
    from ..target import current
    return current().l1d_bytes * 5 // 6


def block_channels(p):
    """Split a plan's taps into blocks of whole channels (the largest divisor of C whose taps' vectors
    fit l1_image_bytes()) when all of them would not: each block is then read from L1 by every filter
    block of a tile, not once per filter block from L2."""
    per_channel = p.kh * p.kw * p.NV * p.L * U.itemsize(p.dtype)
    budget = l1_image_bytes()
    if p.C * per_channel <= budget or p.nkb < 2:
        return p
    cb = max([d for d in range(1, p.C + 1) if p.C % d == 0 and d * per_channel <= budget] or [1])
    p.tap_block = cb * p.kh * p.kw
    return p


def whole_rows(p):
    """A 'rows' plan whose image rows are exactly OW long (W == OW: G rows per vector lie end to end)
    with full tiles (OH a multiple of the tile's rows): each vector is then one load."""
    return p.mode == "rows" and p.G > 1 and p.W == p.OW and p.OH % p.tile == 0


def emit_image(ctx, p, x_img, wp, offs, conv, blocks=None, ahead=None):
    """conv[k*row_stride + q] for k < nkb*MR, every q of the layout, of one image (blocks: (lo, hi),
    i64 values: the filter blocks lo <= kb < hi only, the rest of conv left as it is). ahead (blocks
    None): the regions of Streams, which the kernels prefetch as they compute."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    T = p.tap_block
    ntb = -(-p.P // T)
    st = Streams(ahead if blocks is None else None, p.ntiles * ntb * p.nkb)
    # wide: the tiles inside the image first, unmasked, then the one that runs past its end
    nfull = p.n_out // p.tile if p.mode == "wide" else 0
    for start, stop, full in ((0, nfull, True), (nfull, p.ntiles, False)):
        if stop <= start:
            continue
        first = _microkernel(ctx.module, p, T, full=full, streams=st.key)
        rest = _microkernel(ctx.module, p, T, accumulate=True, full=full, streams=st.key) if T < p.P else None
        with U.for_range(b, stop, start=start, name="dt") as ti:
            t0 = b.mul(ti, U.i64(p.tile))
            q0 = t0 if p.mode == "wide" else b.mul(t0, U.i64(p.OW))
            # blocks of taps outside the filter blocks: one block's image rows stay in L1 for all of them
            for ib, tb in enumerate(range(0, p.P, T)):
                for kb in range(p.nkb):
                    w = b.gep(wp, [U.i64((kb * p.P + tb) * p.MR)], source_etype=et)
                    o = b.gep(conv, [b.add(U.i64(kb * p.MR * p.row_stride), q0)], source_etype=et)
                    tofs = b.gep(offs, [U.i64(tb)], source_etype=U.I64) if tb else offs
                    if blocks is None:
                        j = b.add(b.mul(ti, U.i64(ntb * p.nkb)), U.i64(ib * p.nkb + kb))
                        b.call(rest if tb else first, [x_img, w, tofs, o, t0] + st.args(b, j))
                        continue
                    mine = b.and_(b.icmp_unsigned("<=", blocks[0], U.i64(kb)), b.icmp_unsigned(">", blocks[1], U.i64(kb)))
                    with b.if_then(mine):
                        b.call(rest if tb else first, [x_img, w, tofs, o, t0])


def tap_offsets(ctx, p, offs):
    """offs[t] = the image offset of tap t = (c, r, s): c*H*W + dh*r*W + dw*s (copied from a
    constant table, irutil.copy_i64_table)."""
    dh, dw = getattr(p, "dh", 1), getattr(p, "dw", 1)   # the few-tap plans are never dilated
    vals = [c * p.H * p.W + dh * r * p.W + dw * s for c in range(p.C) for r in range(p.kh) for s in range(p.kw)]
    U.copy_i64_table(ctx.b, "symcnn_dconv_offsets", vals, offs)
