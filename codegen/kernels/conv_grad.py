"""Conv2dGradInputs and Conv2dGradWeights natively, the batch split over the threads (conv_threads.py).

Input gradient, chosen by grad_inputs_variant:
  gemm batch  a 1x1 unit-stride unpadded convolution, static shapes, at most KC filters: one GEMM
          W^T @ top over the whole batch (conv_1x1.py).
  gemm 1x1  other 1x1 unit-stride unpadded convolution: dx[n] = W^T @ top[n], written in place.
  winograd  the direct variant's correlation by Winograd's F(m x m, r x r) where conv_winograd.py takes it.
  direct  unit strides, static shapes: dx[n] is the 'valid' correlation of top[n], zero-bordered by
          (kh-1-ph, kw-1-pw), with the filters transposed to [C][K] and turned 180 degrees (the
          forward's flip undone): conv_forward.direct_images, no patch matrix, no col2im.
  phases  strides, static shapes: the direct kernel per stride phase of dx (conv_phases.py).
  taps    static shapes, unit column stride, where the above do not apply (outputs far fewer than
          inputs): W^T @ top with col2im folded into the stores (conv_gx_taps.py; padded: into the
          zero-bordered image's dx, its inside copied out), output rows that neither divide the
          vector nor are whole vectors copied into padded rows (narrower than the vector, or most
          of the lanes stored).
  direct (few channels)  unit strides, static shapes, fewer than 32 output-gradient channels, where
          none of the above applies: the direct kernel on the bordered output gradient, its border's
          zero products included, since im2col's GEMM of so short products runs far below its speed.
  im2col  otherwise: per image, dcols = W^T @ top[n] (packed GEMM) and col2im into dx[n], in
          per-thread buffers.

Weight gradient, chosen by grad_weights_variant:
  gemm 1x1  a 1x1 unit-stride unpadded convolution with dynamic shapes or more than KC channels:
          dWT += x[n] @ top[n]^T, the image read in place (static ones take the kernels below).
  fewtaps static shapes, unit strides, fewer than MIN_DIRECT_TAPS taps: the few-tap kernel
          (conv_fewtaps.py), lane partials over the output gradient's rows read in place.
  winograd  3x3 or 5x5 unit-stride, static shapes, where conv_winograd_grad.py takes it: Winograd's
          F(2x2, r x r), one GEMM per transformed position over the tiles of all images.
  winograd phases  strided, static shapes, where conv_winograd_grad_strided.py takes it: the same over
          the images' phase channels (4x4, 5x5, 6x6 filters with stride 2, float32).
  taps    static shapes, any stride and padding: the tap-panel kernel of directconv_grad.py reads the
          patches straight from groups of zero-bordered image copies, with the output gradient
          transposed into rows of whole vectors; more filters than one such row holds (256 bytes)
          are split into column chunks, each its own tap plan ('taps chunked'). A static batch that
          splits unevenly over the threads (one image on two) gives each thread a share of the
          tap panels of every image instead ('taps shares', 'taps chunked shares').
  im2col  otherwise (dynamic shapes): per image, dWT += cols @ top[n]^T.
Each thread accumulates its own partial dW; the partials are added in thread order afterwards.

Dilated filters (filter_dilation (dh, dw)): the direct input gradient borders the output gradient by
the dilated extent ((kh-1)*dh+1 - 1 - ph) and reads its taps dh, dw apart; the tap panels of the
weight gradient and the few-tap kernels read the image at the scaled tap offsets; Winograd and the
phases decline them ('valid' dilated input gradients take the tap kernel, other strided dilated
ones im2col, whose patches are dilated too).
"""
from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv import Conv2dGradInputs, Conv2dGradWeights

from .. import irutil as U
from ..lower import lower
from ..microkernels import directconv_grad as DG
from ..microkernels import fewtaps as FT
from ..microkernels import gemm as G
from ..parallel import threads
from .conv import (Geometry, Mat, dense, dilation, emit_col2im, emit_gemm, gep, grad_output, image_view,
                   pinned, zero_fill)
from .conv_1x1 import Pointwise, emit_pointwise, pointwise_gemm
from .conv_gx_taps import GxTaps, emit_gx_taps, gx_taps
from .conv_fewtaps import emit_grad_weights, grad_weights_plan
from .conv_forward import body_name, direct_images, emit_direct_images, kvec_images, pointwise
from .conv_phases import PhaseGradInputs, phase_grad_inputs
from .conv_winograd import WinogradImages, emit_winograd_images, winograd_images
from .conv_winograd_grad import emit_grad_weights_winograd, winograd_grad_weights
from .conv_winograd_grad_strided import phase_grad_weights
from ..microkernels.winograd_grad import GradPlan
from .conv_threads import (Captured, PerThread, add_array, capture_gemm_images, gemm_images_view, image_flops,
                           image_patches, panel_shares, reduce_transposed, shift_copy)



def _static_pads(op, kh, kw):
    if not (isinstance(kh, int) and isinstance(kw, int)):
        return None
    return geometry.padding(op.border_mode, kh, kw, dilation=dilation(op))


# -- input gradient ---------------------------------------------------------------------------

def grad_inputs_variant(op, dtype, dims, batched=False):
    """(name, DirectImages or None) of a Conv2dGradInputs with dims (B, C, H, W, K, kh, kw, OH, OW):
    'gemm 1x1', 'direct wide' / 'direct rows', 'phases' (strided) or 'im2col'; batched (the op's own
    lowering, not ConvPoolActGrad's image-by-image loop) adds 'gemm batch' (a Pointwise), 'kvec' (the
    forward's kernel with vectors over filters, on the bordered output gradient) and 'taps' (a GxTaps,
    strided or not), which run the whole batch themselves, and Winograd's grids that waste more
    where their channels are many (as the forward's)."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if pointwise(op, kh, kw):
        pw = pointwise_gemm(dtype, dims, True, threads()) if batched else None
        return ("gemm batch", pw) if pw is not None else ("gemm 1x1", None)
    pads = _static_pads(op, kh, kw)
    if dilation(op) != (1, 1):
        return _dilated_grad_inputs_variant(op, dtype, dims, pads, batched)
    # (a unit-stride input gradient as the 'valid' correlation of the bordered output gradient)
    bordered = pads is not None and tuple(op.subsample) == (1, 1) and str(dtype) in ("float32", "float64") \
        and all(isinstance(v, int) for v in (H, W, OH, OW))

    def direct():
        return direct_images(str(dtype), K, OH, OW, C, kh, kw, H, W, (kh - 1 - pads[0], kw - 1 - pads[1]),
                             not op.filter_flip, dense_out=True)

    # the correlation of the bordered output gradient multiplies every dx element by all K*kh*kw
    # taps, zeros included; the GEMM only does the OH*OW*K*C*kh*kw products that exist: with far
    # fewer outputs than inputs ('valid' with large filters on small images) it does less work
    if bordered and 8 * H * W <= 9 * OH * OW:
        # batched, Winograd's wasteful grids as the forward takes them (2 threads, float32, ms, taps ->
        # F(2x2, 5x5)): 26, 64 -> 48 on 10x10, 5x5 'half' 2.59 -> 1.33 (PyTorch 1.21-1.85)
        wi = winograd_images(str(dtype), K, OH, OW, C, kh, kw, H, W, (kh - 1 - pads[0], kw - 1 - pads[1]),
                             not op.filter_flip, batch=B, span=batched, wasteful=batched)   # (image by image: no tiles spanning images)
        if wi is not None:
            return wi.variant, wi
        di = direct()
        if di is not None:
            return di.variant, di
        # as the forward does where neither applies: vectors over its filters (the input channels).
        # Measured (2 threads, float32, ms, taps -> kvec): 79, 16 -> 32 on 10x10, 7x7 'half' 2.71 -> 1.60
        # (PyTorch 1.13), the forward of the same layer 1.33
        kv = kvec_images(str(dtype), K, OH, OW, C, kh, kw, H, W, (kh - 1 - pads[0], kw - 1 - pads[1]), (1, 1),
                         not op.filter_flip) if batched and min(kh - 1 - pads[0], kw - 1 - pads[1]) >= 0 else None
        if kv is not None:
            return kv.variant, kv
    if pads is not None and str(dtype) in ("float32", "float64"):
        pg = phase_grad_inputs(str(dtype), C, H, W, K, kh, kw, OH, OW, pads, tuple(op.subsample), op.filter_flip)
        if pg is not None:
            return pg.variant, pg
    # im2col's patch matrix and col2im cost more than the tap kernel's col2im in its stores (2 threads,
    # float32, ms: LeNet's 500x20x12x12 by 50 5x5 filters 9.75 -> 4.5; 64x16x20x20 by 32 5x5
    # 1.71 -> 1.28; 16x24x14x14 by 24 7x7 0.58 -> 0.22; 32x32x12x12 by 64 5x5 1.22 -> 1.07)
    gt = gx_taps(op, dtype, dims, tuple(pads)) if batched and pads is not None else None
    if gt is not None:
        return gt.variant, gt
    # the GEMM's products run over the K output-gradient channels: with few, the direct kernel with the
    # zeros of a wide border costs less (2 threads, float32, ms, im2col -> direct: 10 x 32 x 28 x 28 by
    # 16 7x7 filters 1.75 -> 1.56, 8 x 64 x 24 x 24 by 8 5x5 0.86 -> 0.50; 2 x 96 x 28 x 28 by 24 7x7
    # 1.30 -> 1.25-1.36; with 32 channels slower: 32 x 32 x 24 x 24 by 32 5x5 2.34 -> 3.15)
    if bordered and isinstance(K, int) and K < 32:
        di = direct()
        if di is not None:
            return di.variant, di
    return "im2col", None


def _dilated_grad_inputs_variant(op, dtype, dims, pads, batched):
    """The input gradient of a dilated convolution: 'direct wide' / 'direct rows' (or the few-tap
    kernel's, with few taps) for unit strides and static shapes (the output gradient bordered by the
    dilated extent, the taps dil apart), else, batched, 'taps' for 'valid' ones, else 'im2col'."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    dh, dw = dilation(op)
    if pads is not None and tuple(op.subsample) == (1, 1) and str(dtype) in ("float32", "float64") \
            and all(isinstance(v, int) for v in (H, W, OH, OW)) and 8 * H * W <= 9 * OH * OW:
        shift = ((kh - 1) * dh - pads[0], (kw - 1) * dw - pads[1])
        di = direct_images(str(dtype), K, OH, OW, C, kh, kw, H, W, shift, not op.filter_flip, dense_out=True,
                           dil=(dh, dw))
        if di is not None:
            return di.variant, di
    gt = gx_taps(op, dtype, dims, tuple(pads)) if batched and pads is not None else None
    if gt is not None:
        return gt.variant, gt
    return "im2col", None


@lower.register(Conv2dGradInputs)
def lower_conv2d_grad_inputs(ctx, node, ins):
    b = ctx.b
    op = node.op
    out, g, B, K = grad_output(ctx, node, ins)
    dt = out.dtype
    wd = dense(ctx, pinned(b, ins[0], [K, g.C, g.kh, g.kw]), dt)
    top = pinned(b, ins[1], [B, K, g.OH, g.OW])
    dims = [B, g.C, g.H, g.W, K, g.kh, g.kw, g.OH, g.OW]
    variant, di = grad_inputs_variant(op, dt, dims, batched=True)
    if isinstance(di, Pointwise):   # dx[n] = W^T @ top[n]: A[c, k] = W[k, c]
        emit_pointwise(ctx, di, G.Strided(dt, wd.ptr, 1, g.C), dense(ctx, top, dt), out,
                       body_name("gx", di.variant), threads())
        return [out]
    if isinstance(di, GxTaps):
        emit_gx_taps(ctx, di, wd.ptr, top, out, B, body_name("gx", di.variant), threads())
        return [out]
    if isinstance(di, PhaseGradInputs):
        _grad_inputs_phases(ctx, di, wd, top, out, B)
        return [out]
    if isinstance(di, WinogradImages):
        wt = transposed_filters(ctx, wd.ptr, dt, K, g.C, g.kh, g.kw)
        emit_winograd_images(ctx, di, top, top.dtype, wt.ptr, B, out, "gx")
        return [out]
    if di is not None:
        wt = transposed_filters(ctx, wd.ptr, dt, K, g.C, g.kh, g.kw)
        emit_direct_images(ctx, di, top, top.dtype, wt.ptr, B, out, "gx")
        return [out]
    _grad_inputs_im2col(ctx, op, dt, wd, dense(ctx, top, dt), out, dims, variant == "gemm 1x1")
    return [out]


def _grad_inputs_phases(ctx, pg, wd, top, out, B):
    dt = pg.dtype
    et = U.ll_type(dt)
    T = threads()
    wp = ctx.scratch(dt, [pg.weight_elems])
    offs = ctx.scratch("int64", [pg.n_offsets])
    pg.pack(ctx, wd.ptr, wp.ptr, offs.ptr)
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "top", top)
    cap.add("wp", wp.ptr)
    cap.add("offs", offs.ptr)
    cap.add("out", out.ptr)
    cap.add_parts("tbuf", PerThread(ctx, dt, [pg.top_elems], T))
    cap.add_parts("conv", PerThread(ctx, dt, [pg.scratch_elems], T))
    img = pg.C * pg.H * pg.W

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        tbuf = v.part("tbuf", dt)
        pg.zero_border(bb, tbuf)
        tv = v.array("top", top.dtype, [v["B"], pg.K, pg.OH, pg.OW])
        with U.for_range(bb, n1, start=n0, name="img") as n:
            pg.emit_image(bctx, image_view(bb, tv, n), tbuf, v["wp"], v["offs"], v.part("conv", dt),
                          gep(bb, v["out"], U.mul(bb, n, img), et))

    cap.run(ctx, body_name("gx", pg.variant), B, emit, item_flops=image_flops(pg.K, pg.OH, pg.OW, pg.C, pg.kh, pg.kw))


def transposed_filters(ctx, w_dense, dt, K, C, kh, kw):
    """The dense [K][C][kh][kw] filters copied as [C][K][kh][kw] (a scratch Array): the filters of the
    input gradient's direct correlation (the plan's flip turns them)."""
    b = ctx.b
    wt = ctx.scratch(dt, [C, K, kh, kw])
    khw = kh * kw
    et = U.ll_type(dt)
    with U.for_range(b, K, name="tk") as k:
        with U.for_range(b, C, name="tc") as c:
            with U.for_range(b, khw, name="tt") as t:
                v = b.load(gep(b, w_dense, U.add(b, U.mul(b, U.add(b, U.mul(b, k, C), c), khw), t), et), typ=et)
                b.store(v, gep(b, wt.ptr, U.add(b, U.mul(b, U.add(b, U.mul(b, c, K), k), khw), t), et))
    return wt


def _grad_inputs_im2col(ctx, op, dt, wd, td, out, dims, one):
    """one: a 1x1 convolution (pointwise): the GEMM writes dx[n] itself, with no col2im."""
    cap = capture_gemm_images(ctx, op, dt, dims, lambda g, K: (g.P, g.N, K), not one, threads())
    cap.add("w", wd.ptr)
    cap.add("top", td.ptr)
    cap.add("out", out.ptr)
    et = out.lltype

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        d, gg, Kv, dcols, packs = gemm_images_view(bctx, v, op, dt)
        img = U.product(bb, [gg.C, gg.H, gg.W])
        tn = U.mul(bb, Kv, gg.N)
        with U.for_range(bb, n1, start=n0, name="img") as n:
            dx = gep(bb, v["out"], U.mul(bb, n, img), et)
            emit_gemm(bctx, dt, gg.P, gg.N, Kv, Mat(v["w"], 1, gg.P),
                      Mat(gep(bb, v["top"], U.mul(bb, n, tn), et), gg.N), Mat(dx if one else dcols, gg.N),
                      packs=packs)
            if not one:
                zero_fill(bb, dx, 0, img, dt)
                emit_col2im(bctx, gg, dcols, dx, dt)

    cap.run(ctx, body_name("gx", "gemm 1x1" if one else "im2col"), dims[0], emit,
            item_flops=image_flops(*dims[1:2], *dims[4:]))


# -- weight gradient --------------------------------------------------------------------------

class TapChunks:
    """The weight gradient as tap-panel GEMMs over groups of G zero-bordered (C, Hb, Wb) images:
    the filters split into chunks (first filter, tap plan) of at most 256 bytes of filters each."""

    def __init__(self, dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip, dil=(1, 1)):
        self.dtype, self.C, self.H, self.W, self.K = dtype, C, H, W, K
        self.pads = pads
        self.Hb, self.Wb = H + 2 * pads[0], W + 2 * pads[1]
        most = 256 // U.itemsize(dtype)
        n = -(-K // most)
        sizes = [K // n + (1 if j < K % n else 0) for j in range(n)]
        self.chunks, k0 = [], 0
        for kc in sizes:
            self.chunks.append((k0, DG.TapPlan(dtype, C, self.Hb, self.Wb, kc, kh, kw, OH, OW, *stride, flip,
                                               dilation=dil)))
            k0 += kc
        self.G = min(tp.G for _, tp in self.chunks)
        self.N = OH * OW
        self.P = C * kh * kw
        self.img = C * self.Hb * self.Wb
        self.copy = pads != (0, 0)

    @property
    def variant(self):
        return "taps" if len(self.chunks) == 1 else "taps chunked"


def grad_weights_variant(op, dtype, dims, fewtaps=True, winograd=True):
    """(name, TapChunks / few-tap Plan or None) of a Conv2dGradWeights: 'gemm 1x1', 'fewtaps rows'
    (fewtaps: the few-tap kernel may be used), 'winograd' (winograd: it may be used), 'taps', 'taps chunked' or 'im2col'."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    # a static 1x1 convolution of at most KC channels takes the kernels below too: the tap panels
    # beat the per-image GEMMs, whose packing reads top transposed element by element (2 threads,
    # float32, ms: 128x64x16x16 by 64 filters 1.31 -> 1.03; batch 1, 64x32x32 by 64 0.146 -> 0.073;
    # 32x128x8x8 by 128 0.60 -> 0.30; the few-tap kernel, 9x3x20x20 by 16: 0.031 -> 0.022), but not
    # deeper ones (2x300x5x5 by 270: 0.21 -> 0.29)
    if pointwise(op, kh, kw) and not (pointwise_gemm(dtype, dims, False, 1) is not None and isinstance(OW, int)):
        return "gemm 1x1", None
    fp = grad_weights_plan(op, dtype, dims) if fewtaps else None
    if fp is not None:
        return fp.variant, fp
    pads = _static_pads(op, kh, kw)
    if pads is None or str(dtype) not in ("float32", "float64"):
        return "im2col", None
    if not all(isinstance(v, int) for v in (C, H, W, K, OH, OW)) or min(C, H, W, K, OH, OW) < 1:
        return "im2col", None
    wg = winograd_grad_weights(str(dtype), C, H, W, K, kh, kw, OH, OW, tuple(pads), tuple(op.subsample),
                               op.filter_flip) if winograd and dilation(op) == (1, 1) else None
    if wg is None and winograd and dilation(op) == (1, 1):   # strided: Winograd over phase channels
        wg = phase_grad_weights(str(dtype), C, H, W, K, kh, kw, OH, OW, tuple(pads), tuple(op.subsample),
                                op.filter_flip)
    if wg is not None:
        return wg.variant, wg
    tc = TapChunks(str(dtype), C, H, W, K, kh, kw, OH, OW, tuple(pads), tuple(op.subsample), op.filter_flip,
                   dilation(op))
    return tc.variant, tc


@lower.register(Conv2dGradWeights)
def lower_conv2d_grad_weights(ctx, node, ins):
    b = ctx.b
    op = node.op
    out, g, B, K = grad_output(ctx, node, ins)
    dt = out.dtype
    td = dense(ctx, pinned(b, ins[1], [B, K, g.OH, g.OW]), dt)
    xs = pinned(b, ins[0], [B, g.C, g.H, g.W])
    dims = [B, g.C, g.H, g.W, K, g.kh, g.kw, g.OH, g.OW]
    variant, tc = grad_weights_variant(op, dt, dims)
    if isinstance(tc, FT.Plan):
        emit_grad_weights(ctx, op, tc, xs, td, out, B, body_name("gw", variant))
    elif isinstance(tc, GradPlan):
        emit_grad_weights_winograd(ctx, tc, xs, td, out, B, body_name("gw", variant))
    elif tc is not None:
        _grad_weights_taps(ctx, tc, xs, td, out, B)
    else:
        one = variant == "gemm 1x1"
        _grad_weights_im2col(ctx, op, dt, dense(ctx, xs, dt) if one else xs, td, out, dims, one)
    return [out]


def _grad_weights_taps(ctx, tc, xs, td, out, B):
    b = ctx.b
    dt = tc.dtype
    et = U.ll_type(dt)
    T = threads()
    copy = tc.copy or not (xs.contiguous and xs.dtype == dt)
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "x", xs)
    cap.add("top", td.ptr)
    tt_off, dw_off = [], []
    tt_n = dw_n = 0
    for j, (k0, tp) in enumerate(tc.chunks):
        offs = ctx.scratch("int64", [tp.n_offsets])
        DG.tap_plan_offsets(ctx, tp, offs.ptr)
        cap.add(f"offs{j}", offs.ptr)
        tt_off.append(tt_n)
        dw_off.append(dw_n)
        tt_n += tc.G * tc.N * tp.KP
        dw_n += tc.P * tp.KP
    tT = PerThread(ctx, dt, [tt_n], T)
    S = panel_shares(B, T)
    # shares of the panels: each share writes its own taps of one buffer, the first group of images
    # storing rather than adding, so no partials are zeroed or summed; else per-thread partials.
    # Measured (2 threads, float32, ms, per-thread partials -> one buffer; batch, C -> K on HxW, 7x7):
    # 1, 128 -> 96 on 18x18 pad 1 1.22-1.24 -> 1.06-1.09 (PyTorch 0.98); 1, 48 -> 96 on 31x31 'valid'
    # 1.15-1.17 -> 1.06-1.08; 5, 64 -> 48 on 16x16 'half' 1.44-1.48 -> 1.37-1.42.
    dwT = PerThread(ctx, dt, [dw_n], 1 if S > 1 else T)
    cap.add_parts("tT", tT)
    if S > 1:
        cap.add("dw1", dwT.arr.ptr)
    else:
        cap.add_partials("dwT", dwT)
    cap.add_parts("xg", PerThread(ctx, dt, [tc.G * tc.img], T) if copy else None)
    N, K = tc.N, tc.K

    def groups(bctx, v, n0, n1, share):
        bb = bctx.b
        tt, xg = v.part("tT", dt), v.part("xg", dt)
        dw = v["dw1"] if share is not None else v.part("dwT", dt)
        xv = v.array("x", xs.dtype, [v["B"], tc.C, tc.H, tc.W])
        with U.for_range(bb, n1, start=n0, step=tc.G, name="grp") as g0:
            gn = U.smin(bb, bb.sub(U.as_value(bb, n1), g0), tc.G)
            with U.for_range(bb, gn, name="gi") as gi:
                n = bb.add(g0, gi)
                if xg is not None:
                    shift_copy(bctx, image_view(bb, xv, n), gep(bb, xg, U.mul(bb, gi, tc.img), et), dt,
                               tc.C, tc.H, tc.W, tc.Hb, tc.Wb, *tc.pads)
                top_n = gep(bb, v["top"], U.mul(bb, n, K * N), et)
                for j, (k0, tp) in enumerate(tc.chunks):
                    DG.transpose_top(bctx, tp, gep(bb, top_n, k0 * N, et), N,
                                     gep(bb, tt, U.add(bb, tt_off[j], U.mul(bb, gi, N * tp.KP)), et))
            group = xg if xg is not None else gep(bb, xv.ptr, U.mul(bb, g0, tc.img), et)
            acc = bb.icmp_signed(">", g0, U.as_value(bb, n0)) if share is not None else None
            for j, (k0, tp) in enumerate(tc.chunks):
                DG.emit_dw_group(bctx, tp, group, v[f"offs{j}"], gep(bb, tt, tt_off[j], et), gn,
                                 gep(bb, dw, dw_off[j], et), share, acc)

    def emit(bctx, v, i0, i1):
        bb = bctx.b
        zero_fill(bb, v.part("tT", dt), 0, tt_n, dt)   # the padding columns of the transposed tops stay zero
        if copy:
            zero_fill(bb, v.part("xg", dt), 0, tc.G * tc.img, dt)   # the borders stay zero
        if S == 1:   # items: images
            groups(bctx, v, i0, i1, None)
            return
        with U.for_range(bb, i1, start=i0, name="share") as s:   # items: shares of the panels, every image
            groups(bctx, v, 0, v["B"], (s, S))

    tp0 = tc.chunks[0][1]
    flops = image_flops(tc.C, tc.K, tp0.OH, tp0.OW, tp0.kh, tp0.kw)
    cap.run(ctx, body_name("gw", tc.variant if S == 1 else tc.variant + " shares"), B if S == 1 else S, emit,
            item_flops=flops if S == 1 else flops * B // S)
    for j, (k0, tp) in enumerate(tc.chunks):
        reduce_transposed(ctx, dwT, tp.KP, dw_off[j], tp.K, tc.P, gep(b, out.ptr, k0 * tc.P, et), dt, dwT.T)


def _grad_weights_im2col(ctx, op, dt, xs, td, out, dims, one):
    """one: a 1x1 convolution (pointwise) of dense images of dtype dt, which are their own patches."""
    b = ctx.b
    g = Geometry(b, op, *dims[1:4], *dims[5:])
    K = dims[4]
    T = threads()
    cap = capture_gemm_images(ctx, op, dt, dims, lambda g, K: (g.P, K, g.N), not one, T)
    add_array(cap, "x", xs)
    cap.add("top", td.ptr)
    dwT = PerThread(ctx, dt, [g.P, K], T)
    cap.add_partials("dwT", dwT)
    et = out.lltype

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        d, gg, Kv, cols, packs = gemm_images_view(bctx, v, op, dt)
        xv = v.array("x", xs.dtype, d[:4])
        dw = v.part("dwT", dt)
        tn = U.mul(bb, Kv, gg.N)
        with U.for_range(bb, n1, start=n0, name="img") as n:
            src = image_patches(bctx, gg, xv, n, cols, dt, one)
            # dWT[P, K] += cols[P, N] @ top[n]^T (top read transposed by the packing)
            emit_gemm(bctx, dt, gg.P, Kv, gg.N, Mat(src, gg.N, 1),
                      Mat(gep(bb, v["top"], U.mul(bb, n, tn), et), 1, gg.N), Mat(dw, Kv), accumulate=True,
                      packs=packs)

    cap.run(ctx, body_name("gw", "gemm 1x1" if one else "im2col"), dims[0], emit,
            item_flops=image_flops(*dims[1:2], *dims[4:]))
    reduce_transposed(ctx, dwT, K, 0, K, g.P, out.ptr, dt, T)
