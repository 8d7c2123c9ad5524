"""ConvPoolTanh and ConvPoolTanhGrad (symcnn/tensor/nnet/convpool.py): conv + max-pool + bias + tanh.

Both work one image at a time with the im2col + GEMM machinery of conv.py, so the conv output (forward)
and the conv-output gradient (backward) exist only as one image's (K, OH*OW) scratch tile, which stays
in cache, instead of a (B, K, OH, OW) buffer written and re-read by the separate kernels:

  forward, per image n:   cols = im2col(x[n]);  conv = W @ cols                       (K x N scratch)
                          for k, i, j: m = max of the window, bits = window positions equal to m,
                                       out[n, k, i, j] = tanh(m + b[k]), mask[n, k, i, j] = bits
  backward, per image n:  top[k, :] = 0; for k, i, j: gp = g_out * (1 - out^2); gb[k] += gp;
                                         top[k, window position of every set bit] += gp
                          dWT += im2col(x[n]) @ top^T      (accumulated over images, like Conv2dGradWeights)
                          if need_gx: gx[n] = col2im(W^T @ top)

The window loops are unrolled (ws is static); the loops over pooled columns j are innermost with
static strides. gb accumulates in float64 (a sum over batch * pooled pixels).
"""
from llvmlite import ir

from symcnn.tensor.nnet.convpool import ConvPoolTanh, ConvPoolTanhGrad

from .. import irutil as U
from .. import vmath
from ..lower import E_SHAPE, lower
from .conv import (Geometry, Mat, _zero_fill, check_fits, dense, emit_col2im, emit_gemm, emit_im2col, gep,
                   image_view, out_len, padding, pin, pinned, same)
from .pool import out_len as pool_out_len
from .reduce import _greater, _lowest


def _dims(ctx, op, x, w):
    """(B, C, H, W, K, kh, kw, OH, OW, PH, PW) with the declared static sizes pinned and checked."""
    b = ctx.b
    B, C, H, W = (pin(ctx, x.shape[d], op.imshp[d]) for d in range(4))
    K, Ck, kh, kw = (pin(ctx, w.shape[d], op.kshp[d]) for d in range(4))
    C = same(ctx, C, Ck)
    ph, pw = padding(b, op.border_mode, kh, kw)
    check_fits(ctx, H, kh, ph)
    check_fits(ctx, W, kw, pw)
    OH = out_len(b, H, kh, ph, op.subsample[0])
    OW = out_len(b, W, kw, pw, op.subsample[1])
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
    cols = ctx.scratch(dt, [g.P, g.N])
    conv = ctx.scratch(dt, [K, g.N])
    xs = pinned(b, x, [B, C, H, W])
    et, mt = U.ll_type(dt), U.ll_type(mdt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    with U.for_range(b, B, name="img") as n:
        emit_im2col(ctx, g, image_view(b, xs, n), cols.ptr, dt)
        emit_gemm(ctx, dt, K, g.N, g.P, Mat(wd.ptr, g.P, 1), Mat(cols.ptr, g.N), Mat(conv.ptr, g.N))
        with U.for_range(b, K, name="k") as k:
            bk = b.load(gep(b, bd.ptr, k, et), typ=et)
            ck = gep(b, conv.ptr, U.mul(b, k, g.N), et)
            obase = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
            with U.for_range(b, PH, name="pi") as i:
                rows = [gep(b, ck, U.mul(b, U.add(b, U.mul(b, i, sh), u), OW), et) for u in range(op.ws[0])]
                orow = U.add(b, obase, U.mul(b, i, PW))
                with U.for_range(b, PW, name="pj") as j:
                    c0 = U.mul(b, j, sw)
                    vals = [b.load(gep(b, rows[u], U.add(b, c0, v), et), typ=et) for _, u, v in offs]
                    m = _lowest(dt)
                    for val in vals:
                        m = b.select(_greater(b, val, m, dt), val, m)
                    bits = ir.Constant(mt, 0)
                    for (bit, _, _), val in zip(offs, vals):
                        hit = b.zext(b.fcmp_ordered("==", val, m), mt)
                        bits = b.or_(bits, b.shl(hit, ir.Constant(mt, bit)) if bit else hit)
                    o = U.add(b, orow, j)
                    b.store(vmath.emit(b, ctx.module, "tanh", b.fadd(m, bk), dt), gep(b, out.ptr, o, et))
                    b.store(bits, gep(b, mask.ptr, o, mt))
    return [out, mask]


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
    mt = md.lltype
    top = ctx.scratch(dt, [K, g.N])
    topT = ctx.scratch(dt, [g.N, K])
    cols = ctx.scratch(dt, [g.P, g.N])
    dwT = ctx.scratch(dt, [g.P, K])
    dcols = ctx.scratch(dt, [g.P, g.N]) if gx is not None else None
    gb64 = ctx.scratch("float64", [K])
    _zero_fill(b, dwT.ptr, 0, U.mul(b, g.P, K), dt)
    _zero_fill(b, gb64.ptr, 0, K, "float64")
    xs = pinned(b, x, [B, C, H, W])
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    one = U.const(dt, 1.0)
    zero = U.const(dt, 0.0)
    img = U.product(b, [C, H, W])
    with U.for_range(b, B, name="img") as n:
        _zero_fill(b, top.ptr, 0, U.mul(b, K, g.N), dt)
        with U.for_range(b, K, name="k") as k:
            tk = gep(b, top.ptr, U.mul(b, k, g.N), et)
            base = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
            acc = ctx.local(U.F64, ir.Constant(U.F64, 0.0))
            with U.for_range(b, PH, name="pi") as i:
                rows = [gep(b, tk, U.mul(b, U.add(b, U.mul(b, i, sh), u), OW), et) for u in range(op.ws[0])]
                prow = U.add(b, base, U.mul(b, i, PW))
                with U.for_range(b, PW, name="pj") as j:
                    p = U.add(b, prow, j)
                    o = b.load(gep(b, od.ptr, p, et), typ=et)
                    gp = b.fmul(b.load(gep(b, gd.ptr, p, et), typ=et), b.fsub(one, b.fmul(o, o)))
                    b.store(b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, gp, dt, "float64")), acc)
                    bits = b.load(gep(b, md.ptr, p, mt), typ=mt)
                    c0 = U.mul(b, j, sw)
                    for bit, u, v in offs:
                        hit = b.icmp_unsigned("!=", b.and_(bits, ir.Constant(mt, 1 << bit)), ir.Constant(mt, 0))
                        dst = gep(b, rows[u], U.add(b, c0, v), et)
                        b.store(b.fadd(b.load(dst, typ=et), b.select(hit, gp, zero)), dst)
            gbk = gep(b, gb64.ptr, k, U.F64)
            b.store(b.fadd(b.load(gbk, typ=U.F64), b.load(acc, typ=U.F64)), gbk)
        # gW: dWT[P, K] += cols[P, N] @ top^T[N, K]
        emit_im2col(ctx, g, image_view(b, xs, n), cols.ptr, dt)
        with U.for_range(b, K, name="tk") as k:
            with U.for_range(b, g.N, name="tn") as m:
                v = b.load(gep(b, top.ptr, U.add(b, U.mul(b, k, g.N), m), et), typ=et)
                b.store(v, gep(b, topT.ptr, U.add(b, U.mul(b, m, K), k), et))
        emit_gemm(ctx, dt, g.P, K, g.N, Mat(cols.ptr, g.N, 1), Mat(topT.ptr, K), Mat(dwT.ptr, K), accumulate=True)
        if gx is not None:
            emit_gemm(ctx, dt, g.P, g.N, K, Mat(wd.ptr, 1, g.P), Mat(top.ptr, g.N), Mat(dcols.ptr, g.N))
            dx = gep(b, gx.ptr, U.mul(b, n, img), et)
            _zero_fill(b, dx, 0, img, dt)
            emit_col2im(ctx, g, dcols.ptr, dx, dt)
    with U.for_range(b, K, name="ok") as k:
        with U.for_range(b, g.P, name="op") as p:
            v = b.load(gep(b, dwT.ptr, U.add(b, U.mul(b, p, K), k), et), typ=et)
            b.store(v, gep(b, gW.ptr, U.add(b, U.mul(b, k, g.P), p), et))
        v = b.load(gep(b, gb64.ptr, k, U.F64), typ=U.F64)
        b.store(U.cast_value(b, v, "float64", dt), gep(b, gb.ptr, k, et))
    outs = [gW, gb]
    if gx is not None:
        outs.append(gx)
    return outs
