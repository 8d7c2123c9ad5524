"""The weight gradient of a max-pooled ConvPoolActGrad (order 'pool_act') from the routed positions only.

Max pooling routes each window's gradient to the positions its tie mask names (one of the 4 of a 2x2
window but for ties), so the conv-output gradient `top` is mostly zeros and a dense weight gradient
(tap panels, Winograd) spends most of its products on them. Here, per image and filter k:

  routes   the list of (patch origin, pooled gradient) of every set mask bit: each window's lowest
           bit, L windows at a time (vector origins, compress-stores of the windows with a bit
           set), then the other bits of tied windows (rare) one by one;
  patches  dW[k][r][s*C + c] += g * xcl[origin + (r*W + s)*C + c] over the list: the image copied
           channel-last (xcl[(i*W + j)*C + c]) makes a filter row of the patch kw*C contiguous values,
           read as whole vectors (the last one runs past the row into the slack or the next pixels:
           its extra lanes land in the accumulator row's padding, never read), register-blocked in
           chunks of at most max_accumulators() vectors, one pass over the list per chunk.

The products are the routed positions' (a quarter of the dense ones with 2x2 windows), with no
transforms and no packing. Each thread adds into its own partial [K][kh][rowp]; the result is their
sum in float64 in thread order, turned 180 degrees where the filters are (filter_flip).
"""
import math

from llvmlite import ir

from .. import library
from .. import irutil as U
from ..irutil import lanes
from .directconv import AccLoop, Vec, kernel_function, max_accumulators

MAX_SHIFTS = 4   # aligned copies of an image at most (C = 20, 16 lanes: 4)


class RoutedPlan:
    """Static layout (all sizes Python ints) of the routed weight gradient of (C, H, W) images
    with K filters kh x kw ('valid', unit stride), (OH, OW) conv outputs pooled by ws windows
    stride apart into (PH, PW); mask_dtype: the tie mask's element type.

    The channel-last copy has rows RS elements apart (W*C rounded up to whole vectors), so a
    patch origin (i*RS + j*C) is j*C mod L past a vector boundary: one of L/gcd(C, L) offsets. With
    at most MAX_SHIFTS of them, the image is kept once per offset, moved so that the patches
    starting there are aligned (split loads cost twice), CS elements apart; else once, read
    unaligned."""

    variant = "routed"

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, PH, PW, ws, stride, flip, mask_dtype):
        self.dtype, self.C, self.H, self.W, self.K, self.kh, self.kw = dtype, C, H, W, K, kh, kw
        self.OH, self.OW, self.PH, self.PW = OH, OW, PH, PW
        self.ws, self.stride, self.flip, self.mask_dtype = tuple(ws), tuple(stride), flip, mask_dtype
        self.L = L = lanes(dtype)
        self.row = kw * C                      # one filter row of a patch: contiguous channel-last
        self.nvr = -(-self.row // L)
        self.rowp = self.nvr * L
        self.RS = -(-(W * C) // L) * L
        self.CS = H * self.RS + 2 * L          # the last vector of a patch row stays inside
        self.gcd = math.gcd(C, L)
        self.nshift = L // self.gcd if L // self.gcd <= MAX_SHIFTS else 1
        self.n_routes = PH * PW * ws[0] * ws[1]
        pairs = [(r, v) for r in range(kh) for v in range(self.nvr)]
        most = max_accumulators()
        n = -(-len(pairs) // most)
        size = -(-len(pairs) // n)
        self.chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]

    @property
    def name(self):
        return (f"{self.dtype}_C{self.C}_H{self.H}_W{self.W}_K{self.K}_{self.kh}x{self.kw}_P{self.PH}x{self.PW}"
                f"_w{self.ws[0]}x{self.ws[1]}_s{self.stride[0]}x{self.stride[1]}_{self.mask_dtype}_n{self.nshift}")

    def shift(self, t):
        """Where copy t starts past t*CS: the patches j*C = t*gcd (mod L) past a boundary aligned."""
        return (self.L - t * self.gcd) % self.L if self.nshift > 1 else 0

    def image_elems(self):
        """The channel-last copies (the row ends and slack zeroed once per thread: never stored)."""
        return self.nshift * self.CS + self.L

    def route_elems(self):
        """The list of one filter: the gradients, then the origins as int32 in as many elements."""
        return 2 * self.n_routes

    def acc_elems(self):
        return self.K * self.kh * self.rowp


def transpose_rows(b, rows):
    """The L x L matrix of the L vectors rows (L a power of two), transposed: log2(L) stages, each
    swapping the off-diagonal k x k blocks of every 2k x 2k block (one two-source shuffle a row)."""
    n = len(rows)
    it = ir.VectorType(U.I32, n)
    k = n // 2
    while k >= 1:
        lo = ir.Constant(it, [j if not j & k else n + j - k for j in range(n)])
        hi = ir.Constant(it, [j + k if not j & k else n + j for j in range(n)])
        new = list(rows)
        for i in range(n):
            if not i & k:
                new[i] = b.shuffle_vector(rows[i], rows[i | k], lo)
                new[i | k] = b.shuffle_vector(rows[i], rows[i | k], hi)
        rows = new
        k //= 2
    return rows


def routed_plan(op, dtype, dims):
    """A RoutedPlan for a max-pooled 'valid' unit-stride ConvPoolActGrad (order 'pool_act': the pooled
    gradient and the tie mask name every nonzero of top) with static sizes and windows that do not
    overlap (each conv position routed at most once: the list covers a quarter or less of top), else
    None."""
    if op.pool != "max" or op.pool_last or op.border_mode != "valid" or tuple(op.subsample) != (1, 1):
        return None
    if str(dtype) not in ("float32", "float64") or op.mask_dtype is None:
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or OH < 1 or OW < 1:
        return None
    ws, st = tuple(op.ws), tuple(op.stride)
    if ws[0] * ws[1] < 4 or st[0] < ws[0] or st[1] < ws[1] or OH < ws[0] or OW < ws[1]:
        return None
    PH, PW = (OH - ws[0]) // st[0] + 1, (OW - ws[1]) // st[1] + 1
    p = RoutedPlan(str(dtype), C, H, W, K, kh, kw, OH, OW, PH, PW, ws, st, op.filter_flip, op.mask_dtype)
    return p if p.image_elems() < 2 ** 31 else None   # the origins are int32


def zero_slack(ctx, p, xcl):
    """The copies' row ends and slack (read into the accumulators' unused lanes) are zeroed once per
    thread: every image stores the same positions."""
    from ..kernels.conv import zero_fill
    zero_fill(ctx.b, xcl, 0, p.image_elems(), p.dtype)


def _image_function(module, p):
    """void f(x, gpre, mask, xcl, routes, acc): one image's contribution (x dense (C, H, W), gpre and
    mask dense (K, PH, PW)) added into acc [K][kh][rowp]."""
    name = f"symcnn_routed_dw_{p.name}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64, I32 = U.I64, U.I32
    fn, b = kernel_function(module, name, [U.PTR] * 6)
    x, gpre, mask, xcl, routes, acc = fn.args
    et = U.ll_type(p.dtype)
    mt = U.ll_type(p.mask_dtype)
    L, C, W, RS = p.L, p.C, p.W, p.RS
    vec = Vec(module, p.dtype, L)
    cnt = b.alloca(I64)   # the list's length (in the entry block: promoted to a register)
    # the image channel-last into copy 0: L x L blocks (L channels of L pixels of a row) loaded,
    # transposed in registers and stored as runs of channels (masked past C: nothing spills into the
    # next pixel), then moved into the other copies
    def lanes_below(n):
        return ir.Constant(ir.VectorType(U.I1, L), [int(j < n) for j in range(L)])

    def channel_block(c0, nch):
        src = b.gep(x, [b.mul(U.as_value(b, c0), U.i64(p.H * W))], source_etype=et)
        with U.for_range(b, p.H, name="ci") as i:
            srow = b.gep(src, [b.mul(i, U.i64(W))], source_etype=et)
            drow = b.gep(xcl, [b.add(b.mul(i, U.i64(RS)), U.as_value(b, c0))], source_etype=et)
            for j0 in range(0, W, L):
                cols = min(L, W - j0)
                rows = []
                for u in range(L):
                    if u >= nch:
                        rows.append(vec.zero)
                        continue
                    ptr = b.gep(srow, [U.i64(u * p.H * W + j0)], source_etype=et)
                    rows.append(b.load(ptr, typ=vec.t, align=vec.size) if cols == L
                                else b.call(vec.mload, [ptr, vec.align, lanes_below(cols), vec.zero]))
                for jj, col in enumerate(transpose_rows(b, rows)[:cols]):
                    ptr = b.gep(drow, [U.i64((j0 + jj) * C)], source_etype=et)
                    if nch == L:
                        b.store(col, ptr, align=vec.size)
                    else:
                        b.call(vec.mstore, [col, ptr, vec.align, lanes_below(nch)])

    if C // L:
        with U.for_range(b, C // L, name="cb") as cb:
            channel_block(b.mul(cb, U.i64(L)), L)
    if C % L:
        channel_block(C // L * L, C % L)
    for t in range(1, p.nshift):
        dst = b.gep(xcl, [U.i64(t * p.CS + p.shift(t))], source_etype=et)
        with U.for_range(b, p.H * RS // L, name="cm") as q:
            at = b.mul(q, U.i64(L))
            v = b.load(b.gep(xcl, [at], source_etype=et), typ=vec.t, align=vec.size)
            b.store(v, b.gep(dst, [at], source_etype=et), align=vec.size)
    origins = b.gep(routes, [U.i64(p.n_routes)], source_etype=et)   # int32 after the gradients
    plane = p.PH * p.PW
    nbits = p.ws[0] * p.ws[1]
    zero_m = ir.Constant(mt, 0)

    def origin(pi, pj, bit):
        """The element of the patch routed by window (pi, pj)'s bit in its aligned copy."""
        i = b.add(b.mul(pi, U.i64(p.stride[0])), b.udiv(bit, U.i64(p.ws[1])))
        j = b.add(b.mul(pj, U.i64(p.stride[1])), b.urem(bit, U.i64(p.ws[1])))
        o = b.add(b.mul(i, U.i64(RS)), b.mul(j, U.i64(C)))
        if p.nshift > 1:   # copy t = (j*C mod L) / gcd, moved by shift(t) = L - t*gcd (mod L)
            m = b.and_(b.mul(j, U.i64(C)), U.i64(L - 1))
            t = b.udiv(m, U.i64(p.gcd))
            o = b.add(o, b.add(b.mul(t, U.i64(p.CS)), b.and_(b.sub(U.i64(L), m), U.i64(L - 1))))
        return b.trunc(o, I32)

    def put(g, o):
        n = b.load(cnt, typ=I64)
        b.store(g, b.gep(routes, [n], source_etype=et))
        b.store(o, b.gep(origins, [n], source_etype=I32))
        return n

    def ties(g, m, pi, pj):
        """The entries of window (pi, pj)'s other set bits (ties, rare), one by one."""
        rest = b.and_(m, b.sub(m, ir.Constant(mt, 1)))
        with b.if_then(b.icmp_unsigned("!=", rest, zero_m), likely=False):
            for bit in range(1, nbits):
                hit = b.icmp_unsigned("!=", b.and_(rest, ir.Constant(mt, 1 << bit)), zero_m)
                n = put(g, origin(pi, pj, U.i64(bit)))
                b.store(b.add(n, b.zext(hit, I64)), cnt)

    with U.for_range(b, p.K, name="rk") as k:
        # the routes of filter k: each window's lowest set bit, L windows at a time, the entries of
        # the windows whose mask is not empty (a NaN window's is) compressed into the list; then the
        # ties of those windows (rare) one by one
        b.store(U.i64(0), cnt)
        gk = b.gep(gpre, [b.mul(k, U.i64(plane))], source_etype=et)
        mk = b.gep(mask, [b.mul(k, U.i64(plane))], source_etype=mt)
        _lowest_routes(b, module, p, vec, gk, mk, routes, origins, cnt, nbits, ties)
        count = b.load(cnt, typ=I64)
        acck = b.gep(acc, [b.mul(k, U.i64(p.kh * p.rowp))], source_etype=et)
        for chunk in p.chunks:
            loop = AccLoop(b, "re", count, 1, len(chunk), vec)
            loop.enter()
            e = loop.i
            g = U.splat(b, b.load(b.gep(routes, [e], source_etype=et), typ=et), vec.t)
            o = b.sext(b.load(b.gep(origins, [e], source_etype=I32), typ=I32), I64)
            base = b.gep(xcl, [o], source_etype=et)
            new = []
            for (r, v), a in zip(chunk, loop.accs[0]):
                xv = b.load(b.gep(base, [U.i64(r * RS + v * L)], source_etype=et), typ=vec.t, align=vec.size)
                new.append(b.call(vec.fma, [g, xv, a]))
            loop.close([new])
            for (r, v), a in zip(chunk, loop.accs[0]):
                ptr = b.gep(acck, [U.i64(r * p.rowp + v * L)], source_etype=et)
                b.store(b.fadd(b.load(ptr, typ=vec.t, align=vec.size), a), ptr, align=vec.size)
    b.ret_void()
    return fn


def _lowest_routes(b, module, p, vec, gk, mk, routes, origins, cnt, nbits, ties):
    """Append to the list (routes: gradients, origins: int32 patch origins, cnt: its length) the
    entry of every window's lowest set mask bit, L windows a step: the origins computed as vectors,
    the entries of the windows with a set bit compressed into place (compressstore), then ties(g, m,
    pi, pj) for each window of the step with more than one bit set. (Scalar, this took a fifth of
    the routed gradient's time: some 40 instructions a window.)"""
    L, C, RS = p.L, p.C, p.RS
    I32, I64 = U.I32, U.I64
    et = U.ll_type(p.dtype)
    mt = U.ll_type(p.mask_dtype)
    plane = p.PH * p.PW
    bt = ir.VectorType(U.I1, L)
    mvt = ir.VectorType(mt, L)
    ivt = ir.VectorType(I32, L)
    lane = ir.Constant(ivt, list(range(L)))
    sfx = "f32" if p.dtype == "float32" else "f64"

    def vc(v, t=ivt):
        return U.vector_constant(t, v)

    mload_m = U.declare(module, f"llvm.masked.load.v{L}i{mt.width}.p0", mvt, [U.PTR, I32, bt, mvt])
    cttz = U.declare(module, f"llvm.cttz.v{L}i{mt.width}", mvt, [mvt, U.I1])
    store_g = U.declare(module, f"llvm.masked.compressstore.v{L}{sfx}", ir.VoidType(), [vec.t, U.PTR, bt])
    store_o = U.declare(module, f"llvm.masked.compressstore.v{L}i32", ir.VoidType(), [ivt, U.PTR, bt])
    it = ir.IntType(L)
    ctpop = U.declare(module, f"llvm.ctpop.i{L}", it, [it])
    zero_mv = vc(0, mvt)
    with U.for_range(b, -(-plane // L), name="rq") as q:
        pos0 = b.mul(q, U.i64(L))
        pos = b.add(U.splat(b, b.trunc(pos0, I32), ivt), lane)
        valid = b.icmp_unsigned("<", pos, vc(plane))
        g = b.call(vec.mload, [b.gep(gk, [pos0], source_etype=et), vec.align, valid, vec.zero])
        m = b.call(mload_m, [b.gep(mk, [pos0], source_etype=mt), ir.Constant(I32, 1), valid, zero_mv])
        low = b.zext(b.call(cttz, [b.or_(m, vc(1 << (nbits - 1), mvt)), ir.Constant(U.I1, 1)]), ivt)
        i = b.add(b.mul(b.udiv(pos, vc(p.PW)), vc(p.stride[0])), b.udiv(low, vc(p.ws[1])))
        j = b.add(b.mul(b.urem(pos, vc(p.PW)), vc(p.stride[1])), b.urem(low, vc(p.ws[1])))
        o = b.add(b.mul(i, vc(RS)), b.mul(j, vc(C)))
        if p.nshift > 1:   # as origin(): copy t = (j*C mod L) / gcd, moved by shift(t)
            r = b.and_(b.mul(j, vc(C)), vc(L - 1))
            o = b.add(o, b.add(b.mul(b.udiv(r, vc(p.gcd)), vc(p.CS)), b.and_(b.sub(vc(L), r), vc(L - 1))))
        keep = b.icmp_unsigned("!=", m, zero_mv)
        n = b.load(cnt, typ=I64)
        b.call(store_g, [g, b.gep(routes, [n], source_etype=et), keep])
        b.call(store_o, [o, b.gep(origins, [n], source_etype=I32), keep])
        b.store(b.add(n, b.zext(b.call(ctpop, [b.bitcast(keep, it)]), I64)), cnt)
        tied = b.icmp_unsigned("!=", b.and_(m, b.sub(m, vc(1, mvt))), zero_mv)
        with b.if_then(b.icmp_unsigned("!=", b.bitcast(tied, it), ir.Constant(it, 0)), likely=False):
            with U.for_range(b, U.smin(b, U.i64(L), b.sub(U.i64(plane), pos0)), name="rt") as lane_i:
                at = b.add(pos0, lane_i)
                ties(b.load(b.gep(gk, [at], source_etype=et), typ=et), b.load(b.gep(mk, [at], source_etype=mt), typ=mt),
                     b.udiv(at, U.i64(p.PW)), b.urem(at, U.i64(p.PW)))


def emit_image(ctx, p, x_img, gpre, mask, xcl, routes, acc):
    """acc += one image's routed weight gradient (x_img: the dense (C, H, W) image of the plan's
    dtype; gpre, mask: its dense (K, PH, PW) pooled gradient and tie mask)."""
    ctx.b.call(_image_function(ctx.module, p), [x_img, gpre, mask, xcl, routes, acc])


def reduce(ctx, p, base, stride, nparts, gw):
    """gw[k, c, rr, ss] (dense) = the sum in float64, in thread order, of the partials at base +
    t*stride, element [k][r][s*C + c], (rr, ss) = (r, s) turned 180 degrees when p.flip. Each (k, c)
    by a call of one function (irutil.call_outlined)."""
    b = ctx.b
    et = U.ll_type(p.dtype)

    def one(fb, params):
        src, step, dst = params
        for r in range(p.kh):
            for s in range(p.kw):
                total = None
                for t in range(nparts):
                    ptr = U.gep(fb, src, U.add(fb, U.mul(fb, t, step), r * p.rowp + s * p.C), et)
                    v = U.cast_value(fb, fb.load(ptr, typ=et), p.dtype, "float64")
                    total = v if total is None else fb.fadd(total, v)
                rr, ss = (p.kh - 1 - r, p.kw - 1 - s) if p.flip else (r, s)
                fb.store(U.cast_value(fb, total, "float64", p.dtype), U.gep(fb, dst, rr * p.kw + ss, et))
    name = f"symcnn_routed_dw_sum_{p.dtype}_{p.kh}x{p.kw}_C{p.C}_r{p.rowp}{'_flip' if p.flip else ''}_n{nparts}"
    with U.for_range(b, p.K, name="rgk") as k:
        with U.for_range(b, p.C, name="rgc") as c:
            src = U.gep(b, base, b.add(b.mul(k, U.i64(p.kh * p.rowp)), c), et)
            dst = U.gep(b, gw, b.mul(b.add(b.mul(k, U.i64(p.C)), c), U.i64(p.kh * p.kw)), et)
            U.call_outlined(b, name, [src, U.as_value(b, stride), dst], one)
