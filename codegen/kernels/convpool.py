"""ConvPoolTanh and ConvPoolTanhGrad (symcnn/tensor/nnet/convpool.py): conv + max-pool + bias + tanh.

Both work one image at a time, so the conv output (forward) and the conv-output gradient (backward)
exist only as one image's (K, OH*OW) scratch tile, which stays in cache, instead of a (B, K, OH, OW)
buffer written and re-read by separate kernels:

  forward, per image n:   conv = W (*) x[n]                                            (K x N scratch)
                          for k, i, j: m = max of the window, bits = window positions equal to m,
                                       out[n, k, i, j] = tanh(m + b[k]), mask[n, k, i, j] = bits
  backward, per image n:  for k, i, j: gp = g_out * (1 - out^2); gb[k] += gp;
                                       top[k, window position of every set bit] = gp (0 elsewhere)
                          dW += top (*) x[n]               (accumulated over images)
                          if need_gx: gx[n] = col2im(W^T @ top)

With static shapes, a 'valid' unit-stride convolution reads its patches straight from the image
(directconv.py, directconv_grad.py: no im2col); other convolutions build one image's im2col
matrix and use the packed GEMM (conv.py). 2x2 windows with stride 2 get vector epilogues (L pooled
columns at a time); other windows a scalar loop with the window unrolled. gb accumulates in float64
(a sum over batch * pooled pixels).

Threads: the batch is split over the pool of codegen/threadpool.py; each thread has its own scratch
and partial sums, added in thread order afterwards.
"""
from llvmlite import ir

from symcnn.tensor.nnet.convpool import ConvPoolTanh, ConvPoolTanhGrad


from .. import irutil as U
from .. import vmath
from ..lower import E_SHAPE, Array, lower
from ..microkernels import directconv as D
from ..microkernels import directconv_grad as DG
from ..microkernels import gemm as G
from ..microkernels import prepacked as PP
from .conv import (Geometry, Mat, dense, emit_col2im, emit_gemm, emit_im2col, forward_dims, gep, image_view, pin,
                   pinned, zero_fill)
from .pool import out_len as pool_out_len
from .reduce import greater, lowest_value
from ..parallel import Parts as _Parts, part as _part, run_parallel as _run_parallel, threads as _threads


def _dims(ctx, op, x, w):
    """(B, C, H, W, K, kh, kw, OH, OW, PH, PW) with the declared static sizes pinned and checked."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW = forward_dims(ctx, op, x, w)
    PH = pool_out_len(b, OH, op.ws[0], op.stride[0], 0, True)
    PW = pool_out_len(b, OW, op.ws[1], op.stride[1], 0, True)
    return B, C, H, W, K, kh, kw, OH, OW, PH, PW


def _offsets(op):
    """(bit, u, v) for every position of the pooling window."""
    return [(u * op.ws[1] + v, u, v) for u in range(op.ws[0]) for v in range(op.ws[1])]



@lower.register(ConvPoolTanh)
def lower_conv_pool_tanh(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w, bias = ins
    dt = node.outputs[0].dtype
    mdt = node.outputs[1].dtype
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    ctx.check_equal(bias.shape[0], K, E_SHAPE)
    out = ctx.alloc(node.outputs[0], [B, K, PH, PW])
    B, K, PH, PW = out.shape
    mask = ctx.alloc(node.outputs[1], [B, K, PH, PW])
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    bd = dense(ctx, bias, dt)
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    dp = D.plan(op, dt, dims)
    if dp is not None:
        # the direct kernel reads images as dense (C, H, W) blocks and the weights packed once
        xs = dense(ctx, xs, dt)
        wp = ctx.scratch(dt, [dp.nkb * dp.P * dp.MR])
        offs = ctx.scratch("int64", [dp.P])
        D.pack_weights(ctx, dp, wd.ptr, wp.ptr, offs.ptr)
        ptrs = [wp.ptr, bd.ptr, out.ptr, mask.ptr, offs.ptr]
        sizes = [dp.scratch_elems(), 0, 0, 0]
    else:
        ptrs = [wd.ptr, bd.ptr, out.ptr, mask.ptr, None]
        na, nb = G.pack_sizes(b, dt, K, g.N, g.P)
        # + 2L: the vector epilogue reads up to 2L values past a conv row's start
        sizes = [U.mul(b, g.P, g.N), U.add(b, U.mul(b, K, g.N), 2 * D.lanes(dt)), na, nb]
    if T == 1:
        bufs = [ctx.scratch(dt, [n]).ptr if not (isinstance(n, int) and n == 0) else None for n in sizes[:2]]
        parts = [bufs[0], 0, bufs[1], 0, None, 0, None, 0]
        _forward_images(ctx, op, dt, mdt, xs.dtype, dims, xs, ptrs, parts, 0, 0, B, packs=False, dp=dp)
        return [out, mask]
    bufs = [_Parts(ctx, dt, n, T) if not (isinstance(n, int) and n == 0) else None for n in sizes]
    present = [p is not None for p in bufs]
    dyn = [v for v in ptrs if v is not None]
    values = dims + [xs.ptr] + list(xs.strides) + dyn + [v for p in bufs if p is not None for v in p.values()]

    def emit(bctx, v, tid, n0, n1):
        it = iter(v[16:])
        inner = [next(it) if here is not None else None for here in ptrs]
        parts = []
        for here in present:
            parts += [next(it), next(it)] if here else [None, 0]
        _forward_images(bctx, op, dt, mdt, xs.dtype, v[:11], v[11:16], inner, parts, tid, n0, n1,
                        packs=dp is None, dp=dp)

    _run_parallel(ctx, "symcnn_convpool_fwd", values, B, T, emit)
    return [out, mask]


def _forward_images(ctx, op, dt, mdt, xdt, dims, xv, ptrs, parts, tid, n0, n1, packs, dp=None):
    """The forward for images [n0, n1); parts: (base, stride) of cols, conv, packed A, packed B
    (direct plan dp: of the conv scratch only; ptrs[0] is then the packed weights, ptrs[4] the taps)."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, bptr, optr, mptr, offs = ptrs
    cols, conv, ap, bp = (_part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None else None
                          for i in range(4))
    pk = (ap, bp) if packs else None
    with U.for_range(b, n1, start=n0, name="img") as n:
        if dp is not None:
            conv = cols   # the one per-thread buffer
            D.emit_image(ctx, dp, image_view(b, xs, n).ptr, wptr, offs, conv)
            rs, crs = dp.rs, dp.row_stride
        else:
            emit_im2col(ctx, g, image_view(b, xs, n), cols, dt)
            emit_gemm(ctx, dt, K, g.N, g.P, Mat(wptr, g.P, 1), Mat(cols, g.N), Mat(conv, g.N), packs=pk)
            rs, crs = OW, g.N
        if _vector_pool(op, dt):
            _pool_tanh_vector(ctx, dt, mdt, conv, crs, rs, n, K, PH, PW, bptr, optr, mptr)
        else:
            _pool_tanh_scalar(ctx, op, dt, mdt, conv, crs, rs, n, K, PH, PW, bptr, optr, mptr)


def _vector_pool(op, dt):
    """2x2 windows with stride 2 (the common case) get the explicit-vector epilogue."""
    return tuple(op.ws) == (2, 2) and tuple(op.stride) == (2, 2) and str(dt) in ("float32", "float64")


def _pool_tanh_scalar(ctx, op, dt, mdt, conv, crs, rs, n, K, PH, PW, bptr, optr, mptr):
    """out, mask of image n from conv[k*crs + i*rs + j], any window and stride."""
    b = ctx.b
    et, mt = U.ll_type(dt), U.ll_type(mdt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    with U.for_range(b, K, name="k") as k:
        bk = b.load(gep(b, bptr, k, et), typ=et)
        ck = gep(b, conv, U.mul(b, k, crs), et)
        obase = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
        with U.for_range(b, PH, name="pi") as i:
            rows = [gep(b, ck, U.mul(b, U.add(b, U.mul(b, i, sh), u), rs), et) for u in range(op.ws[0])]
            orow = U.add(b, obase, U.mul(b, i, PW))
            with U.for_range(b, PW, name="pj") as j:
                c0 = U.mul(b, j, sw)
                vals = [b.load(gep(b, rows[u], U.add(b, c0, v), et), typ=et) for _, u, v in offs]
                m = lowest_value(dt)
                for val in vals:
                    m = b.select(greater(b, val, m, dt), val, m)
                bits = ir.Constant(mt, 0)
                for (bit, _, _), val in zip(offs, vals):
                    hit = b.zext(b.fcmp_ordered("==", val, m), mt)
                    bits = b.or_(bits, b.shl(hit, ir.Constant(mt, bit)) if bit else hit)
                o = U.add(b, orow, j)
                b.store(vmath.emit(b, ctx.module, "tanh", b.fadd(m, bk), dt), gep(b, optr, o, et))
                b.store(bits, gep(b, mptr, o, mt))



def _pool_tanh_vector(ctx, dt, mdt, conv, crs, rs, n, K, PH, PW, bptr, optr, mptr):
    """The 2x2 / stride 2 epilogue on vectors of L pooled columns: two contiguous 2L-value loads per
    conv row, split into even and odd columns; window maxima, tie bits and tanh(max + b) per lane;
    masked stores of the PW columns that exist (the conv scratch is padded for the over-read)."""
    b = ctx.b
    module = ctx.module
    et, mt = U.ll_type(dt), U.ll_type(mdt)
    L = D.lanes(dt)
    vt, mvt = ir.VectorType(et, L), ir.VectorType(mt, L)
    size = U.itemsize(dt)
    i1v = ir.VectorType(U.I1, L)
    fstore = D.Vec(module, dt, L).mstore
    msfx = f"v{L}i{mt.width}"
    mstore = U.declare(module, f"llvm.masked.store.{msfx}.p0", ir.VoidType(), [mvt, U.PTR, U.I32, i1v])
    even = ir.Constant(ir.VectorType(U.I32, L), [2 * l for l in range(L)])
    odd = ir.Constant(ir.VectorType(U.I32, L), [2 * l + 1 for l in range(L)])
    lane = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))
    lowest = ir.Constant(vt, [lowest_value(dt)] * L)
    plane = U.mul(b, PH, PW)
    with U.for_range(b, K, name="k") as k:
        bk = U.splat(b, b.load(gep(b, bptr, k, et), typ=et), vt)
        ck = gep(b, conv, U.mul(b, k, crs), et)
        obase = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
        with U.for_range(b, PH, name="pi") as i:
            r0 = gep(b, ck, U.mul(b, U.mul(b, i, 2), rs), et)
            r1 = gep(b, r0, rs, et)
            orow = U.add(b, obase, U.mul(b, i, PW))
            with U.for_range(b, PW, step=L, name="pj") as j:
                vals = []
                for r in (r0, r1):
                    src = gep(b, r, U.mul(b, j, 2), et)
                    lo = b.load(src, typ=vt, align=size)
                    hi = b.load(gep(b, src, L, et), typ=vt, align=size)
                    vals += [b.shuffle_vector(lo, hi, even), b.shuffle_vector(lo, hi, odd)]
                m = lowest
                for val in vals:
                    m = b.select(greater(b, val, m, dt), val, m)
                bits = ir.Constant(mvt, [ir.Constant(mt, 0)] * L)
                for bit, val in enumerate(vals):   # window order (u, v) = (0,0), (0,1), (1,0), (1,1)
                    one = ir.Constant(mvt, [ir.Constant(mt, 1 << bit)] * L)
                    bits = b.or_(bits, b.select(b.fcmp_ordered("==", val, m), one, ir.Constant(mvt, [ir.Constant(mt, 0)] * L)))
                left = b.sub(U.as_value(b, PW), j)
                keep = b.icmp_signed("<", lane, U.splat(b, left, ir.VectorType(U.I64, L)))
                o = U.add(b, orow, j)
                res = vmath.emit(b, module, "tanh", b.fadd(m, bk), dt)
                b.call(fstore, [res, gep(b, optr, o, et), ir.Constant(U.I32, size), keep])
                b.call(mstore, [bits, gep(b, mptr, o, mt), ir.Constant(U.I32, 1), keep])


@lower.register(ConvPoolTanhGrad)
def lower_conv_pool_tanh_grad(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w, outv, maskv, gout = ins
    dt = node.outputs[0].dtype
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    for arr in (outv, maskv, gout):
        for d, want in enumerate((B, K, PH, PW)):
            ctx.check_equal(arr.shape[d], want, E_SHAPE, d)
    st = node.inputs[2].type.shape
    PH = PH if st[2] is None else pin(ctx, PH, st[2])
    PW = PW if st[3] is None else pin(ctx, PW, st[3])
    gW = ctx.alloc(node.outputs[0], [K, C, kh, kw])
    K, C, kh, kw = gW.shape
    gb = ctx.alloc(node.outputs[1], [K])
    gx = ctx.alloc(node.outputs[2], [B, C, H, W]) if op.need_gx else None
    if gx is not None:
        B, C, H, W = gx.shape
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    et = U.ll_type(dt)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    od = dense(ctx, pinned(b, outv, [B, K, PH, PW]), dt)
    md = dense(ctx, pinned(b, maskv, [B, K, PH, PW]), maskv.dtype)
    gd = dense(ctx, pinned(b, gout, [B, K, PH, PW]), dt)
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    need_gx = gx is not None
    dp = D.plan(op, dt, dims)
    dp = dp if DG.grad_plan(dp, op, need_gx) and _vector_pool(op, dt) else None
    tp = DG.tap_plan(op, dt, dims) if dp is None else None
    offs = None
    if dp is not None or tp is not None:
        xs = dense(ctx, xs, dt)   # both read patches through offsets into dense images
    if dp is not None:
        # weight gradient as inner products over the image's wide rows: top in the wide layout,
        # per-thread lane partials dwv[k][t][L]
        offs = ctx.scratch("int64", [dp.P])
        D.tap_offsets(ctx, dp, offs.ptr)
        ptrs = [None, od.ptr, md.ptr, gd.ptr, None, offs.ptr]
        sizes = [dp.scratch_elems(), 0, 0, 0, 0, 0, 0, 0]
        acc_n, acc_rs = dp.K * dp.P * dp.L, None
    else:
        prepack = need_gx and PP.applies(dt, K)
        wa = wd.ptr
        if prepack:   # W^T, the A of every image's input-gradient GEMM, packed once
            wa = ctx.scratch(dt, [PP.size(b, dt, g.P, K)]).ptr
            wt = DG.GxWeights(tp, wd.ptr) if DG.gx_fusable(tp) else G.Strided(dt, wd.ptr, 1, g.P)
            PP.pack_a(ctx, dt, wt, g.P, K, wa)
        if tp is not None:
            offs = ctx.scratch("int64", [tp.n_offsets])
            DG.tap_plan_offsets(ctx, tp, offs.ptr)
        ptrs = [wa if need_gx else None, od.ptr, md.ptr, gd.ptr, gx.ptr if need_gx else None,
                offs.ptr if offs is not None else None]
        # top, transposed tops of a group, cols, dcols, packed A/B of the two GEMMs; + 4L: the
        # input-gradient kernel reads whole tiles of top rows (lanes past the end are never stored)
        fused_gx = prepack and DG.gx_fusable(tp)
        sizes = [U.add(b, U.mul(b, K, g.N), 4 * D.lanes(dt)), tp.group_elems() if tp is not None else 0,
                 0 if tp is not None else U.mul(b, g.P, g.N), U.mul(b, g.P, g.N) if need_gx and not fused_gx else 0]
        sizes += [0, 0] if tp is not None else list(G.pack_sizes(b, dt, g.P, K, g.N))
        if fused_gx:
            sizes += [0, 0]
        elif need_gx:
            na2, nb2 = G.pack_sizes(b, dt, g.P, g.N, K)
            sizes += [0 if prepack else na2, nb2]
        else:
            sizes += [0, 0]
        acc_rs = tp.KP if tp is not None else K
        acc_n = U.mul(b, g.P, acc_rs)
    nparts = 1 if T == 1 else T
    bufs = [_Parts(ctx, dt, n, nparts) if not (isinstance(n, int) and n == 0) else None for n in sizes]
    parts = [v for p in bufs for v in (p.values() if p is not None else [None, 0])]
    dwT = _Parts(ctx, dt, acc_n, nparts)
    gb64 = _Parts(ctx, "float64", K, nparts)
    zero_fill(b, dwT.arr.ptr, 0, U.mul(b, dwT.stride, nparts), dt)
    zero_fill(b, gb64.arr.ptr, 0, U.mul(b, gb64.stride, nparts), "float64")
    acc_parts = dwT.values() + gb64.values()
    if T == 1:
        _backward_images(ctx, op, dt, md.lltype, xs.dtype, dims, xs, ptrs, parts, acc_parts, 0, 0, B,
                         dp=dp, tp=tp)
    else:
        dynptrs = [p for p in ptrs if p is not None]
        values = dims + [xs.ptr] + list(xs.strides) + dynptrs + [v for v in parts if v is not None] + acc_parts
        present = [p is not None for p in parts]
        pmask = [p is not None for p in ptrs]

        def emit(bctx, v, tid, n0, n1):
            it = iter(v[16:])
            pp = [next(it) if here else None for here in pmask]
            inner_parts = [next(it) if here else None for here in present]
            inner_acc = list(it)
            _backward_images(bctx, op, dt, md.lltype, xs.dtype, v[:11], v[11:16], pp, inner_parts, inner_acc,
                             tid, n0, n1, dp=dp, tp=tp)

        _run_parallel(ctx, "symcnn_convpool_bwd", values, B, T, emit)
    if dp is not None:
        _reduce_direct_partials(ctx, dp, dt, dwT, nparts, gW.ptr)
    else:
        # gW = sum over threads of dWT^T (thread order)
        with U.for_range(b, K, name="ok") as k:
            with U.for_range(b, g.P, name="op") as p:
                v = None
                for t in range(nparts):
                    x_ = b.load(gep(b, dwT.arr.ptr, U.add(b, U.mul(b, t, dwT.stride),
                                                           U.add(b, U.mul(b, p, acc_rs), k)), et), typ=et)
                    v = x_ if v is None else b.fadd(v, x_)
                b.store(v, gep(b, gW.ptr, U.add(b, U.mul(b, k, g.P), p), et))
    with U.for_range(b, K, name="gk") as k:
        v = None
        for t in range(nparts):
            x_ = b.load(gep(b, gb64.arr.ptr, U.add(b, U.mul(b, t, gb64.stride), k), U.F64), typ=U.F64)
            v = x_ if v is None else b.fadd(v, x_)
        b.store(U.cast_value(b, v, "float64", dt), gep(b, gb.ptr, k, et))
    outs = [gW, gb]
    if gx is not None:
        outs.append(gx)
    return outs


def _reduce_direct_partials(ctx, p, dt, dwv, nparts, gw_ptr):
    """gW[k, c, rr, ss] = the lanes of every thread's dwv[k][tap (c, r, s)] summed, thread by thread;
    (rr, ss) is the tap's filter position (flipped for a true convolution)."""
    b = ctx.b
    et = U.ll_type(dt)
    L = p.L
    vt = ir.VectorType(et, L)
    size = U.itemsize(dt)
    khw = p.kh * p.kw
    with U.for_range(b, p.K, name="rk") as k:
        with U.for_range(b, p.P, name="rt") as tap:
            rs = b.urem(tap, U.i64(khw))
            widx = b.add(b.sub(tap, rs), b.sub(U.i64(khw - 1), rs)) if p.flip else tap
            total = None
            for t in range(nparts):
                off = b.add(U.as_value(b, U.mul(b, t, dwv.stride)),
                            b.mul(b.add(b.mul(k, U.i64(p.P)), tap), U.i64(L)))
                s = _hsum(b, b.load(gep(b, dwv.arr.ptr, off, et), typ=vt, align=size), et)
                total = s if total is None else b.fadd(total, s)
            b.store(total, gep(b, gw_ptr, b.add(b.mul(k, U.i64(p.P)), widx), et))


def _hsum(b, vec, et):
    """Sum of a vector's lanes, pairwise (a fixed order)."""
    n = vec.type.count
    while n > 1:
        half = n // 2
        lo = b.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(U.I32, half), list(range(half))))
        hi = b.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(U.I32, half), list(range(half, n))))
        vec = b.fadd(lo, hi)
        n = half
    return b.extract_element(vec, ir.Constant(U.I32, 0))


def _backward_images(ctx, op, dt, mt, xdt, dims, xv, ptrs, parts, acc_parts, tid, n0, n1, dp=None, tp=None):
    """The backward for images [n0, n1). ptrs: packed or plain W^T (input gradient), out, mask, g_out,
    gx, tap offsets; parts: (base, stride) of top, the group's transposed tops, cols, dcols and the
    packed A/B of the two GEMMs (base None: absent); acc_parts: (base, stride) of the weight-gradient
    partials (dWT, or dwv for the direct plan dp) and of gb64."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, optr, mptr, gptr, gxptr, offs = ptrs
    top, tT, cols, dcols, ap1, bp1, ap2, bp2 = (
        _part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None else None for i in range(8))
    dwT = _part(b, acc_parts[0], acc_parts[1], tid, dt)
    gb64 = _part(b, acc_parts[2], acc_parts[3], tid, "float64")
    et = U.ll_type(dt)
    vector = _vector_pool(op, dt)
    if dp is not None:
        rs, trs, tlen = dp.rs, dp.row_stride, dp.scratch_elems()
    else:
        rs, trs, tlen = OW, g.N, U.mul(b, K, g.N)
    img = U.product(b, [C, H, W])
    if vector:   # the scatter writes only pooled windows' positions: the rest stays zero
        zero_fill(b, top, 0, tlen, dt)
    if tp is not None:   # the padding columns of the transposed tops stay zero
        zero_fill(b, tT, 0, tp.group_elems(), dt)

    def image(n, slot):
        if vector:
            _scatter_vector(ctx, dt, mt, top, trs, rs, n, K, PH, PW, optr, mptr, gptr, gb64)
        else:
            zero_fill(b, top, 0, tlen, dt)
            _scatter_scalar(ctx, op, dt, mt, top, trs, rs, n, K, PH, PW, optr, mptr, gptr, gb64)
        if dp is not None:
            DG.emit_weight_grad_image(ctx, dp, image_view(b, xs, n).ptr, top, offs, dwT)
        elif tp is not None:
            DG.transpose_top(ctx, tp, top, trs, gep(b, tT, U.mul(b, slot, tp.N * tp.KP), et))
        else:
            # gW: dWT[P, K] += cols[P, N] @ top^T[N, K] (top read transposed by the packing)
            emit_im2col(ctx, g, image_view(b, xs, n), cols, dt)
            emit_gemm(ctx, dt, g.P, K, g.N, Mat(cols, g.N, 1), Mat(top, 1, g.N), Mat(dwT, K), accumulate=True,
                      packs=(ap1, bp1))
        if gxptr is not None and dcols is None:   # col2im folded into the GEMM's stores
            dx = gep(b, gxptr, U.mul(b, n, img), et)
            zero_fill(b, dx, 0, img, dt)
            DG.emit_gx_image(ctx, tp, wptr, top, dx, offs)
        elif gxptr is not None:
            if bp2 is not None and ap2 is None:   # wptr: W^T packed once
                PP.emit_gemm(ctx, dt, g.P, g.N, K, wptr, G.Strided(dt, top, g.N), dcols, g.N, False, bp2)
            else:
                emit_gemm(ctx, dt, g.P, g.N, K, Mat(wptr, 1, g.P), Mat(top, g.N), Mat(dcols, g.N), packs=(ap2, bp2))
            dx = gep(b, gxptr, U.mul(b, n, img), et)
            zero_fill(b, dx, 0, img, dt)
            emit_col2im(ctx, g, dcols, dx, dt)

    if tp is None:
        with U.for_range(b, n1, start=n0, name="img") as n:
            image(n, 0)
        return
    with U.for_range(b, n1, start=n0, step=tp.G, name="grp") as g0:
        gn = U.smin(b, b.sub(U.as_value(b, n1), g0), tp.G)
        with U.for_range(b, gn, name="gi") as gi:
            image(b.add(g0, gi), gi)
        DG.emit_dw_group(ctx, tp, gep(b, xs.ptr, U.mul(b, g0, tp.img), et), offs, tT, gn, dwT)


def _scatter_scalar(ctx, op, dt, mt, top, trs, rs, n, K, PH, PW, optr, mptr, gptr, gb64):
    """top[k*trs + (i*sh + u)*rs + j*sw + v] += g*(1 - out^2) for every set bit (u, v); gb64[k] += the sums."""
    b = ctx.b
    et = U.ll_type(dt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    one = U.const(dt, 1.0)
    zero = U.const(dt, 0.0)
    with U.for_range(b, K, name="k") as k:
        tk = gep(b, top, U.mul(b, k, trs), et)
        base = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
        acc = ctx.local(U.F64, ir.Constant(U.F64, 0.0))
        with U.for_range(b, PH, name="pi") as i:
            rows = [gep(b, tk, U.mul(b, U.add(b, U.mul(b, i, sh), u), rs), et) for u in range(op.ws[0])]
            prow = U.add(b, base, U.mul(b, i, PW))
            with U.for_range(b, PW, name="pj") as j:
                p = U.add(b, prow, j)
                o = b.load(gep(b, optr, p, et), typ=et)
                gp = b.fmul(b.load(gep(b, gptr, p, et), typ=et), b.fsub(one, b.fmul(o, o)))
                b.store(b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, gp, dt, "float64")), acc)
                bits = b.load(gep(b, mptr, p, mt), typ=mt)
                c0 = U.mul(b, j, sw)
                for bit, u, v in offs:
                    hit = b.icmp_unsigned("!=", b.and_(bits, ir.Constant(mt, 1 << bit)), ir.Constant(mt, 0))
                    dst = gep(b, rows[u], U.add(b, c0, v), et)
                    b.store(b.fadd(b.load(dst, typ=et), b.select(hit, gp, zero)), dst)
        gbk = gep(b, gb64, k, U.F64)
        b.store(b.fadd(b.load(gbk, typ=U.F64), b.load(acc, typ=U.F64)), gbk)


def _scatter_vector(ctx, dt, mt, top, trs, rs, n, K, PH, PW, optr, mptr, gptr, gb64):
    """The 2x2 / stride 2 scatter on vectors of L pooled columns: gp = g*(1 - out^2) goes to the window
    positions whose bit is set (0 to the others), interleaved back into two rows of 2L columns and
    stored with masks (windows do not overlap, so plain stores); gb64[k] += the lane sums."""
    b = ctx.b
    module = ctx.module
    et = U.ll_type(dt)
    L = D.lanes(dt)
    vt, mvt = ir.VectorType(et, L), ir.VectorType(mt, L)
    size = U.itemsize(dt)
    i1v = ir.VectorType(U.I1, L)
    vec = D.Vec(module, dt, L)
    fload, fstore = vec.mload, vec.mstore
    msfx = f"v{L}i{mt.width}"
    mload = U.declare(module, f"llvm.masked.load.{msfx}.p0", mvt, [U.PTR, U.I32, i1v, mvt])
    lane = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))
    lane2 = ir.Constant(ir.VectorType(U.I64, L), [l // 2 for l in range(L)])
    lane2h = ir.Constant(ir.VectorType(U.I64, L), [(L + l) // 2 for l in range(L)])
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    mzero = ir.Constant(mvt, [ir.Constant(mt, 0)] * L)
    one = ir.Constant(vt, [ir.Constant(et, 1.0)] * L)
    dvt = ir.VectorType(U.F64, L)
    lo_idx = ir.Constant(ir.VectorType(U.I32, L), [(l // 2) + (L if l % 2 else 0) for l in range(L)])
    hi_idx = ir.Constant(ir.VectorType(U.I32, L), [(L + l) // 2 + (L if l % 2 else 0) for l in range(L)])
    align = ir.Constant(U.I32, size)
    plane = U.mul(b, PH, PW)
    i64v = ir.VectorType(U.I64, L)
    with U.for_range(b, K, name="k") as k:
        tk = gep(b, top, U.mul(b, k, trs), et)
        base = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
        acc = ctx.local(dvt, ir.Constant(dvt, [ir.Constant(U.F64, 0.0)] * L))
        with U.for_range(b, PH, name="pi") as i:
            prow = U.add(b, base, U.mul(b, i, PW))
            r0 = gep(b, tk, U.mul(b, U.mul(b, i, 2), rs), et)
            rows = [r0, gep(b, r0, rs, et)]
            with U.for_range(b, PW, step=L, name="pj") as j:
                p = U.add(b, prow, j)
                left = U.splat(b, b.sub(U.as_value(b, PW), j), i64v)
                keep = b.icmp_signed("<", lane, left)
                o = b.call(fload, [gep(b, optr, p, et), align, keep, zero])
                gv = b.call(fload, [gep(b, gptr, p, et), align, keep, zero])
                bits = b.call(mload, [gep(b, mptr, p, mt), ir.Constant(U.I32, 1), keep, mzero])
                gp = b.fmul(gv, b.fsub(one, b.fmul(o, o)))
                b.store(b.fadd(b.load(acc, typ=dvt), b.fpext(gp, dvt) if dt == "float32" else gp), acc)
                keep_lo = b.icmp_signed("<", lane2, left)
                keep_hi = b.icmp_signed("<", lane2h, left)
                c0 = U.mul(b, j, 2)
                for u, row in enumerate(rows):
                    vals = []
                    for v in range(2):
                        bit = ir.Constant(mvt, [ir.Constant(mt, 1 << (2 * u + v))] * L)
                        hit = b.icmp_unsigned("!=", b.and_(bits, bit), mzero)
                        vals.append(b.select(hit, gp, zero))
                    lo = b.shuffle_vector(vals[0], vals[1], lo_idx)
                    hi = b.shuffle_vector(vals[0], vals[1], hi_idx)
                    dst = gep(b, row, c0, et)
                    b.call(fstore, [lo, dst, align, keep_lo])
                    b.call(fstore, [hi, gep(b, dst, L, et), align, keep_hi])
        gbk = gep(b, gb64, k, U.F64)
        b.store(b.fadd(b.load(gbk, typ=U.F64), _hsum(b, b.load(acc, typ=dvt), U.F64)), gbk)
