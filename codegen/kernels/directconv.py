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
        load of the image (q = i*OW + j; e.g. 8 outputs per row: two rows per 16-lane vector).

conv[k, q] goes to a per-thread scratch whose rows are `row_stride` long; pooled windows then read it
with row length `rs` (W or OW). The weights are packed once per call as [K/MR][P][MR] (flipped for a
true convolution; rows past K are zero) with a table of the P tap offsets.
"""
from llvmlite import ir

from .. import irutil as U
from .gemm import vec_bytes

MAX_ACC = 24      # vector accumulators per micro-kernel (AVX-512 has 32 vector registers)
MIN_ACC = 12      # fewer FMAs per step than this and the kernel waits on its loads
MIN_EFFICIENCY = 0.7   # useful share of the computed outputs below which im2col + GEMM is used


def lanes(dtype):
    return max(1, vec_bytes() // U.itemsize(dtype))


class Plan:
    """Static layout of a direct convolution (all sizes Python ints)."""

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, mode, MR, NV, flip):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.mode, self.MR, self.NV, self.flip = OH, OW, mode, MR, NV, flip
        self.L = L = lanes(dtype)
        self.P = C * kh * kw
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


def plan(op, dtype, dims):
    """A Plan for this conv when the direct kernel applies and wastes little, else None."""
    if str(dtype) not in ("float32", "float64") or op.border_mode != "valid" or tuple(op.subsample) != (1, 1):
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or OH < 1 or OW < 1:
        return None
    L = lanes(dtype)
    best = None
    modes = ["wide"] + (["rows"] if OW <= L and L % OW == 0 else [])
    for mode in modes:
        for MR in (6, 5, 4, 3, 2, 1):
            for NV in (4, 3, 2, 1):
                if MR * NV > MAX_ACC:
                    continue
                p = Plan(str(dtype), C, H, W, K, kh, kw, OH, OW, mode, MR, NV, op.filter_flip)
                # tiles under MIN_ACC accumulators are bound by their loads: only if nothing else fits
                key = (MR * NV >= min(MIN_ACC, K * NV), round(p.efficiency(), 3), NV * MR)
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



def _microkernel(module, p):
    """void ukr(x_img, wp_block, offs, out, t0): conv scratch rows [MR] x one tile, from tile t0
    (wide: first q; rows: first output row)."""
    name = f"symcnn_dconv_{p.dtype}_{p.mode}_{p.MR}x{p.NV}_W{p.W}_OW{p.OW}_OH{p.OH}_P{p.P}_{p.row_stride}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [P_, P_, P_, P_, I64]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    x, wp, offs, out, t0 = fn.args
    for a in (x, wp, offs, out):
        a.add_attribute("noalias")
    et = U.ll_type(p.dtype)
    L, MR, NV = p.L, p.MR, p.NV
    vt = ir.VectorType(et, L)
    size = U.itemsize(p.dtype)
    sfx = f"v{L}{'f32' if p.dtype == 'float32' else 'f64'}"
    fma = U.declare(module, f"llvm.fma.{sfx}", vt, [vt, vt, vt])
    mt = ir.VectorType(U.I1, L)
    mload = U.declare(module, f"llvm.masked.load.{sfx}.p0", vt, [P_, U.I32, mt, vt])
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    align = ir.Constant(U.I32, size)
    if p.mode == "wide":
        base = b.gep(x, [t0], source_etype=et)
        lane = ir.Constant(ir.VectorType(I64, L), list(range(L)))
        masks = []
        for j in range(NV):
            left = b.sub(U.i64(p.n_out), b.add(t0, U.i64(j * L)))
            masks.append(b.icmp_signed("<", lane, U.splat(b, left, ir.VectorType(I64, L))))
        pieces = None
    else:
        G, OW = p.G, p.OW
        ht = ir.VectorType(et, OW)
        # rows past the last are clamped to it: in bounds, computed, never stored
        pieces = []
        for j in range(NV):
            for g in range(G):
                row = U.smin(b, b.add(t0, U.i64(j * G + g)), p.OH - 1)
                pieces.append(b.gep(x, [b.mul(row, U.i64(p.W))], source_etype=et))
    head = b.append_basic_block("t.head")
    body = b.append_basic_block("t.body")
    done = b.append_basic_block("t.end")
    b.branch(head)
    b.position_at_end(head)
    t = b.phi(I64, name="t")
    t.add_incoming(U.i64(0), entry)
    accs = [[b.phi(vt) for _ in range(NV)] for _ in range(MR)]
    for row in accs:
        for ph in row:
            ph.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", t, U.i64(p.P)), body, done)
    b.position_at_end(body)
    off = b.load(b.gep(offs, [t], source_etype=I64), typ=I64)
    vecs = []
    if pieces is None:
        src = b.gep(base, [off], source_etype=et)
        for j in range(NV):
            ptr = b.gep(src, [U.i64(j * L)], source_etype=et) if j else src
            vecs.append(b.call(mload, [ptr, align, masks[j], zero]))
    else:
        for j in range(NV):
            parts = [b.load(b.gep(pieces[j * G + g], [off], source_etype=et), typ=ht, align=size) for g in range(G)]
            while len(parts) > 1:   # concatenate pairwise: OW -> 2*OW -> ... -> L lanes
                n = parts[0].type.count
                idx = ir.Constant(ir.VectorType(U.I32, 2 * n), list(range(2 * n)))
                parts = [b.shuffle_vector(parts[i], parts[i + 1], idx) for i in range(0, len(parts), 2)]
            vecs.append(parts[0])
    wrow = b.gep(wp, [b.mul(t, U.i64(MR))], source_etype=et)
    new = []
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(wrow, [U.i64(i)], source_etype=et), typ=et), vt)
        new.append([b.call(fma, [a, vecs[j], accs[i][j]]) for j in range(NV)])
    for i in range(MR):
        for j in range(NV):
            accs[i][j].add_incoming(new[i][j], body)
    t.add_incoming(b.add(t, U.i64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    for i in range(MR):
        for j in range(NV):
            b.store(accs[i][j], b.gep(out, [U.i64(i * p.row_stride + j * L)], source_etype=et), align=size)
    b.ret_void()
    return fn


def emit_image(ctx, p, x_img, wp, offs, conv):
    """conv[k*row_stride + q] for k < nkb*MR, every q of the layout, of one image."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    ukr = _microkernel(ctx.module, p)
    with U.for_range(b, p.ntiles, name="dt") as ti:
        t0 = b.mul(ti, U.i64(p.tile))
        q0 = t0 if p.mode == "wide" else b.mul(t0, U.i64(p.OW))
        for kb in range(p.nkb):
            w = b.gep(wp, [U.i64(kb * p.P * p.MR)], source_etype=et)
            o = b.gep(conv, [b.add(U.i64(kb * p.MR * p.row_stride), q0)], source_etype=et)
            b.call(ukr, [x_img, w, offs, o, t0])


# -- weight gradient by inner products (wide layout) -----------------------------------------------

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
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [P_] * 5), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    x, top, offs, dwv, masks = fn.args
    for a in (x, top, offs, dwv):
        a.add_attribute("noalias")
    et = U.ll_type(p.dtype)
    L = p.L
    vt = ir.VectorType(et, L)
    size = U.itemsize(p.dtype)
    sfx = f"v{L}{'f32' if p.dtype == 'float32' else 'f64'}"
    fma = U.declare(module, f"llvm.fma.{sfx}", vt, [vt, vt, vt])
    mt = ir.VectorType(U.I1, L)
    mload = U.declare(module, f"llvm.masked.load.{sfx}.p0", vt, [P_, U.I32, mt, vt])
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    align = ir.Constant(U.I32, size)
    bases = [b.gep(x, [b.load(b.gep(offs, [U.i64(t)], source_etype=I64), typ=I64)], source_etype=et)
             for t in range(nt)]
    it = ir.IntType(L)
    head = b.append_basic_block("v.head")
    body = b.append_basic_block("v.body")
    done = b.append_basic_block("v.end")
    b.branch(head)
    b.position_at_end(head)
    v = b.phi(I64, name="v")
    v.add_incoming(U.i64(0), entry)
    accs = [[b.phi(vt) for _ in range(nt)] for _ in range(mk)]
    for row in accs:
        for ph in row:
            ph.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", v, U.i64(n_vectors(p))), body, done)
    b.position_at_end(body)
    q = b.mul(v, U.i64(L))
    m = b.bitcast(b.load(b.gep(masks, [v], source_etype=it), typ=it), mt)
    xs = [b.call(mload, [b.gep(base, [q], source_etype=et), align, m, zero]) for base in bases]
    ts = [b.load(b.gep(top, [b.add(U.i64(i * p.row_stride), q)], source_etype=et), typ=vt, align=size)
          for i in range(mk)]
    for i in range(mk):
        for t in range(nt):
            accs[i][t].add_incoming(b.call(fma, [ts[i], xs[t], accs[i][t]]), body)
    v.add_incoming(b.add(v, U.i64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    for i in range(mk):
        for t in range(nt):
            ptr = b.gep(dwv, [U.i64((i * p.P + t) * L)], source_etype=et)
            b.store(b.fadd(b.load(ptr, typ=vt, align=size), accs[i][t]), ptr, align=size)
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


def tap_offsets(ctx, p, offs):
    """offs[t] = the image offset of tap t = (c, r, s)."""
    b = ctx.b
    with U.for_range(b, p.C, name="tc") as c:
        for r in range(p.kh):
            for s in range(p.kw):
                t = b.add(b.mul(c, U.i64(p.kh * p.kw)), U.i64(r * p.kw + s))
                off = b.add(b.mul(c, U.i64(p.H * p.W)), U.i64(r * p.W + s))
                b.store(off, b.gep(offs, [t], source_etype=U.I64))


# -- weight gradient by tap panels (any output layout; unit-stride patches read from the image) ----

class TapPlan:
    """dWT[p, k] += sum_n x[tap p at output n] * top[k, n], over groups of images: a GEMM whose A
    operand (the im2col matrix) is read straight from the image through the tap offsets and a
    table of output positions, and whose B operand is top transposed into [n][KP] rows (K padded to
    whole vectors). MR taps x NV vectors of k are accumulated in registers over every n of every
    image of a group, so each dWT tile is loaded and stored once per group."""

    MR = 6

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, sh, sw, flip):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.sh, self.sw, self.flip = OH, OW, sh, sw, flip
        self.L = lanes(dtype)
        self.NV = -(-K // self.L)
        self.KP = self.NV * self.L
        self.N = OH * OW
        self.P = C * kh * kw
        self.npan = -(-self.P // self.MR)
        size = U.itemsize(dtype)
        self.G = max(1, min(16, (128 * 1024) // (self.N * self.KP * size)))
        self.img = C * H * W

    def group_elems(self):
        return self.G * self.N * self.KP


def tap_plan(op, dtype, dims):
    if str(dtype) not in ("float32", "float64") or op.border_mode != "valid":
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or OH < 1 or OW < 1:
        return None
    if -(-K // lanes(dtype)) > 4:
        return None
    sh, sw = op.subsample
    return TapPlan(str(dtype), C, H, W, K, kh, kw, OH, OW, sh, sw, op.filter_flip)


def tap_plan_offsets(ctx, tp, offs):
    """offs[p] = the image offset that W[k, p] (p = (c, rr, ss)) multiplies at output (0, 0); the
    padding entries up to whole panels repeat offset 0 (their rows are computed, never stored)."""
    b = ctx.b
    with U.for_range(b, tp.C, name="pc") as c:
        for rr in range(tp.kh):
            for ss in range(tp.kw):
                r, s = (tp.kh - 1 - rr, tp.kw - 1 - ss) if tp.flip else (rr, ss)
                p = b.add(b.mul(c, U.i64(tp.kh * tp.kw)), U.i64(rr * tp.kw + ss))
                off = b.add(b.mul(c, U.i64(tp.H * tp.W)), U.i64(r * tp.W + s))
                b.store(off, b.gep(offs, [p], source_etype=U.I64))
    for p in range(tp.P, tp.npan * tp.MR):
        b.store(U.i64(0), b.gep(offs, [U.i64(p)], source_etype=U.I64))


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


def _dwt_kernel(module, tp):
    """void k(x, offs, pos, tT, gn, C, mrows): C[i*KP + :KP] += sum over images g < gn and n < N of
    x[g*img + offs[i] + pos[n]] * tT[(g*N + n)*KP + :KP], i < MR (rows < mrows stored)."""
    name = f"symcnn_dconv_dwt_{tp.dtype}_{tp.NV}_N{tp.N}_I{tp.img}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [P_, P_, P_, P_, I64, P_, I64]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    x, offs, pos, tT, gn, c, mrows = fn.args
    for a in (x, offs, pos, tT, c):
        a.add_attribute("noalias")
    et = U.ll_type(tp.dtype)
    L, MR, NV, KP = tp.L, tp.MR, tp.NV, tp.KP
    vt = ir.VectorType(et, L)
    size = U.itemsize(tp.dtype)
    sfx = f"v{L}{'f32' if tp.dtype == 'float32' else 'f64'}"
    fma = U.declare(module, f"llvm.fma.{sfx}", vt, [vt, vt, vt])
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    offv = [b.load(b.gep(offs, [U.i64(i)], source_etype=I64), typ=I64) for i in range(MR)]
    total = b.mul(gn, U.i64(tp.N))
    # one flat loop over (image, n): u = g*N + n
    head = b.append_basic_block("u.head")
    body = b.append_basic_block("u.body")
    done = b.append_basic_block("u.end")
    b.branch(head)
    b.position_at_end(head)
    u = b.phi(I64, name="u")
    u.add_incoming(U.i64(0), entry)
    n = b.phi(I64, name="n")
    n.add_incoming(U.i64(0), entry)
    xg = b.phi(U.PTR, name="xg")
    xg.add_incoming(x, entry)
    accs = [[b.phi(vt) for _ in range(NV)] for _ in range(MR)]
    for row in accs:
        for ph in row:
            ph.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", u, total), body, done)
    b.position_at_end(body)
    q = b.load(b.gep(pos, [n], source_etype=I64), typ=I64)
    xq = b.gep(xg, [q], source_etype=et)
    trow = b.gep(tT, [b.mul(u, U.i64(KP))], source_etype=et)
    bv = [b.load(b.gep(trow, [U.i64(j * L)], source_etype=et) if j else trow, typ=vt, align=size)
          for j in range(NV)]
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(xq, [offv[i]], source_etype=et), typ=et), vt)
        for j in range(NV):
            accs[i][j].add_incoming(b.call(fma, [a, bv[j], accs[i][j]]), body)
    n1 = b.add(n, U.i64(1))
    wrap = b.icmp_signed("==", n1, U.i64(tp.N))
    n.add_incoming(b.select(wrap, U.i64(0), n1), body)
    xg.add_incoming(b.select(wrap, b.gep(xg, [U.i64(tp.img)], source_etype=et), xg), body)
    u.add_incoming(b.add(u, U.i64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    for i in range(MR):
        def store(i=i):
            for j in range(NV):
                ptr = b.gep(c, [U.i64(i * KP + j * L)], source_etype=et)
                b.store(b.fadd(b.load(ptr, typ=vt, align=size), accs[i][j]), ptr, align=size)
        if i == 0:
            store()
        else:
            with b.if_then(b.icmp_signed("<", U.i64(i), mrows)):
                store()
    b.ret_void()
    return fn


def transpose_top(ctx, tp, top, trs, dst):
    """dst[n*KP + k] = top[k*trs + n] for k < K (the padding columns are left as they are: zero)."""
    b = ctx.b
    et = U.ll_type(tp.dtype)
    with U.for_range(b, tp.K, name="tk") as k:
        src = b.gep(top, [b.mul(k, U.i64(trs))], source_etype=et)
        with U.for_range(b, tp.N, name="tn") as n:
            v = b.load(b.gep(src, [n], source_etype=et), typ=et)
            b.store(v, b.gep(dst, [b.add(b.mul(n, U.i64(tp.KP)), k)], source_etype=et))


def emit_dw_group(ctx, tp, x_group, offs, tT, gn, dwT):
    """dwT[p*KP + k] += the group's contribution, panel by panel of MR taps."""
    b = ctx.b
    et = U.ll_type(tp.dtype)
    fn = _dwt_kernel(ctx.module, tp)
    pos = _positions(ctx.module, tp)
    full = tp.P // tp.MR

    def call(pan, rows):
        p0 = b.mul(U.as_value(b, pan), U.i64(tp.MR))
        b.call(fn, [x_group, b.gep(offs, [p0], source_etype=U.I64), pos, tT, U.as_value(b, gn),
                    b.gep(dwT, [b.mul(p0, U.i64(tp.KP))], source_etype=et), U.i64(rows)])

    with U.for_range(b, full, name="pan") as pan:
        call(pan, tp.MR)
    if full < tp.npan:
        call(full, tp.P - full * tp.MR)


# -- input gradient: the W^T @ top GEMM with col2im folded into its stores ---------------------------

def gx_fusable(tp):
    """Whole output rows per vector (OW divides L, unit column stride): each accumulator vector adds
    into G contiguous runs of dx."""
    return tp is not None and tp.sw == 1 and tp.OW <= tp.L and tp.L % tp.OW == 0


def _gx_kernel(module, tp, nv):
    """void k(wa, top, t0, dx, offs, mrows): acc[i][v] = sum_k wa[k*MR + i] * top[k*N + q0 + v*L]
    (q0 = t0*OW, t0 the tile's first output row), then dx[offs[i] + row*sh*W + :OW] += the lanes of
    each whole output row < OH, rows i < mrows."""
    name = f"symcnn_dconv_gx_{tp.dtype}_{nv}_N{tp.N}_K{tp.K}_W{tp.W}_OW{tp.OW}_OH{tp.OH}_s{tp.sh}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    P_, I64 = U.PTR, U.I64
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [P_, P_, I64, P_, P_, I64]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    wa, top, t0, dx, offs, mrows = fn.args
    for a in (wa, top, dx, offs):
        a.add_attribute("noalias")
    et = U.ll_type(tp.dtype)
    L, MR, OW = tp.L, tp.MR, tp.OW
    G = L // OW
    vt = ir.VectorType(et, L)
    ht = ir.VectorType(et, OW)
    size = U.itemsize(tp.dtype)
    sfx = f"v{L}{'f32' if tp.dtype == 'float32' else 'f64'}"
    fma = U.declare(module, f"llvm.fma.{sfx}", vt, [vt, vt, vt])
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    tb = b.gep(top, [b.mul(t0, U.i64(OW))], source_etype=et)
    head = b.append_basic_block("k.head")
    body = b.append_basic_block("k.body")
    done = b.append_basic_block("k.end")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64, name="k")
    k.add_incoming(U.i64(0), entry)
    accs = [[b.phi(vt) for _ in range(nv)] for _ in range(MR)]
    for row in accs:
        for ph in row:
            ph.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", k, U.i64(tp.K)), body, done)
    b.position_at_end(body)
    trow = b.gep(tb, [b.mul(k, U.i64(tp.N))], source_etype=et)
    bv = [b.load(b.gep(trow, [U.i64(v * L)], source_etype=et) if v else trow, typ=vt, align=size) for v in range(nv)]
    arow = b.gep(wa, [b.mul(k, U.i64(MR))], source_etype=et)
    for i in range(MR):
        a = U.splat(b, b.load(b.gep(arow, [U.i64(i)], source_etype=et), typ=et), vt)
        for v in range(nv):
            accs[i][v].add_incoming(b.call(fma, [a, bv[v], accs[i][v]]), body)
    k.add_incoming(b.add(k, U.i64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    for i in range(MR):
        def store(i=i):
            base = b.gep(dx, [b.load(b.gep(offs, [U.i64(i)], source_etype=I64), typ=I64)], source_etype=et)
            for v in range(nv):
                for g in range(G):
                    row = b.add(t0, U.i64(v * G + g))
                    with b.if_then(b.icmp_signed("<", row, U.i64(tp.OH))):
                        ptr = b.gep(base, [b.mul(row, U.i64(tp.sh * tp.W))], source_etype=et)
                        part = b.shuffle_vector(accs[i][v], accs[i][v],
                                                ir.Constant(ir.VectorType(U.I32, OW), list(range(g * OW, g * OW + OW))))
                        if OW == 1:
                            part = b.extract_element(part, ir.Constant(U.I32, 0))
                            b.store(b.fadd(b.load(ptr, typ=et), part), ptr)
                        else:
                            b.store(b.fadd(b.load(ptr, typ=ht, align=size), part), ptr, align=size)
        if i == 0:
            store()
        else:
            with b.if_then(b.icmp_signed("<", U.i64(i), mrows)):
                store()
    b.ret_void()
    return fn


def emit_gx_image(ctx, tp, wa, top, dx, offs):
    """dx (one image, zeroed by the caller) += col2im(W^T @ top) with wa = W^T packed by
    prepacked.pack_a (panels of MR rows, [K][MR] each) and top [K][N] (padded past its end)."""
    b = ctx.b
    et = U.ll_type(tp.dtype)
    rows_per_vec = tp.L // tp.OW
    nv = min(4, -(-tp.OH // rows_per_vec))
    rows_per_tile = nv * rows_per_vec
    ntiles = -(-tp.OH // rows_per_tile)
    fn = _gx_kernel(ctx.module, tp, nv)
    full = tp.P // tp.MR

    def call(t0, pan, rows):
        p0 = b.mul(U.as_value(b, pan), U.i64(tp.MR))
        b.call(fn, [b.gep(wa, [b.mul(p0, U.i64(tp.K))], source_etype=et), top, t0, dx,
                    b.gep(offs, [p0], source_etype=U.I64), U.i64(rows)])

    with U.for_range(b, ntiles, name="gxt") as t:
        t0 = b.mul(t, U.i64(rows_per_tile))
        with U.for_range(b, full, name="gxp") as pan:
            call(t0, pan, tp.MR)
        if full < tp.npan:
            call(t0, full, tp.P - full * tp.MR)
