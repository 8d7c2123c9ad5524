"""The weight gradient of 3x3, 5x5 and (float64) 7x7 unit-stride convolutions by Winograd's F(m x m, r x r)
(microkernels/winograd_grad.py; 3x3: m = 4 where its tiles waste little and
options.winograd_max_tile allows, else 2; 5x5: m = 2), the batch split over the threads
(conv_threads.py), each thread with its own partial products, added in thread order afterwards.
F(4x4, 3x3) does 36 products per 16 outputs against F(2x2)'s 16 per 4: in cifar_deep's fused
gradients (32->32 on 32x32, 64->64 on 16x16, batch 128, 1 thread, CPU time on a loaded machine)
24.2-24.5 -> 20.6-22.4 ms and 19.8-20.1 -> 17.6-19.6 ms. Its float32 error, about 1e-6 of the
largest value (32 to 128 channels, 8x8 to 32x32 images), is 4x F(2x2)'s, and does not grow with the
channels (the sums run over the tiles).

winograd_grad_weights decides where it applies and pays: static sizes, 3x3 or 5x5 filters, unit strides,
a few channels and filters (MIN_CHANNELS, MIN_CHANNELS_5X5) and output tiles that waste little (MIN_EFFICIENCY).
Measured against the tap-panel kernel (directconv_grad.py): see MIN_CHANNELS. The GEMMs run near
the core's peak; the transforms and copies take about a third of the kernel.
"""
from symcnn.tensor.nnet import conv_geometry as geometry

from .. import irutil as U
from ..microkernels import winograd_grad as WGG
from ..options import options
from ..parallel import threads
from .conv import image_view
from .conv_threads import Captured, PerThread, add_array, image_flops, image_splits

# The weight gradient alone, 1 thread (CPU time), float32, 'half', batch 128, tap panels -> Winograd:
# 32->32 on 32x32 images 19.5 -> 9.5 ms, 64->64 on 16x16 15.0 -> 7.3, on 8x8 3.2 -> 1.9, on 7x7
# 2.5 -> 1.9, on 5x5 (69% of the tiles' outputs inside) 1.43 -> 1.11, on 3x3 (56%) 0.54 -> 0.53;
# 128->128 on 8x8 12.4 -> 7.9; few channels or filters too: 6->32 on 32x32 9.0 -> 4.3, 64->4 on 16x16
# 5.2 -> 1.8, 8->8 on 32x32 3.8 -> 2.8, on 8x8 0.21 -> 0.19 (fewer than MIN_DIRECT_TAPS taps per
# output take the few-tap kernel before). Float64 32->32 on 32x32 31.9 -> 22.5.
# F(2x2, 5x5) (36 products per tile, filter and channel against the direct kernel's 100), same
# measure: 20->50 on 12x12 'valid' (LeNet's second layer, batch 500) 9.8 -> 7.7 ms, 32->64 on 16x16
# 15.9 -> 9.9, 64->64 on 8x8 7.9 -> 5.3, on 7x7 6.1 -> 5.3, on 5x5 (69%) 3.2 -> 3.1; 32->32 on 24x24
# 'valid' 13.1 -> 8.0, 16->32 on 14x14 'valid' (batch 100) 1.32 -> 0.96, 32->8 6.6 -> 2.4, 8->16 1.73
# -> 1.53, 12->32 3.35 -> 2.49; but 6->16 on 28x28 'valid' (batch 64) 1.43 -> 1.67: MIN_CHANNELS_5X5.
MIN_CHANNELS = 4         # (not measured below)
MIN_CHANNELS_5X5 = 8
MIN_EFFICIENCY = 0.65    # share of the tiles' outputs inside the image
# F(2x2, r x r) for r x r filters. 7x7 in float64 only: F(2x2, 7x7)'s float32 weight gradient
# (tanh-distributed images, Gaussian gradients) is 1.15-1.35e-5 off the largest value, past the 1e-5
# the float32 checks allow (24->24 on 28x28, 64->64 on 16x16, 16->32 on 14x14, 'half').
FILTER_SIZES = {"float32": (3, 5), "float64": (3, 5, 7)}


def winograd_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A winograd_grad.GradPlan for the weight gradient of a convolution where it applies and pays
    (the first tile size m, 4 then 2 for 3x3 filters, whose tiles waste little), else None."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)):
        return None
    if str(dtype) not in FILTER_SIZES or kh != kw or kh not in FILTER_SIZES[str(dtype)] or tuple(stride) != (1, 1):
        return None
    if OH < 1 or OW < 1 or min(C, K) < (MIN_CHANNELS if kh == 3 else MIN_CHANNELS_5X5):
        return None
    for m in (4, 2) if kh == 3 and options.winograd_max_tile >= 4 else (2,):
        p = WGG.GradPlan(str(dtype), C, H, W, K, OH, OW, pads, flip, kh, m)
        if p.efficiency() >= MIN_EFFICIENCY:
            return p
    return None


class GradParts:
    """The per-thread buffers of a GradPlan (the partial products are the caller's)."""

    def __init__(self, ctx, p, T):
        self.p = p
        self.parts = [(name, PerThread(ctx, p.dtype, [n], T)) for name, n in
                      (("wgx", p.image_elems()), ("wgy", p.top_elems()), ("wgv", p.v_elems()),
                       ("wgt", p.y_elems()))]

    def capture(self, cap):
        for name, part in self.parts:
            cap.add_parts(name, part)

    def view(self, bctx, v, m):
        bufs = WGG.Buffers(*(v.part(name, self.p.dtype) for name, _ in self.parts), m)
        WGG.zero_buffers(bctx, self.p, bufs)
        return bufs


def image_chunks(p, B):
    """(plan, S): with a static batch B smaller than the threads, p with each image split into S
    items of its chunks of tile rows (GradPlan.split_rows), S = conv_threads.image_splits(B); else
    (p, 1)."""
    S = image_splits(B)
    if S == 1 or p.Gi != 1:
        return p, 1
    q = p if p.chunks() >= S else p.split_rows(S)
    return (q, S) if q is not None else (p, 1)


def emit_grad_weights_winograd(ctx, p, xs, td, out, B, name):
    """out (dense [K][C][r][r], or [K][C][kh][kw] for a strided plan) = the weight gradient of images xs
    ((B, C, H, W) Array) and dense conv-output gradients td ((B, K, OH, OW) Array of the plan's dtype).
    A batch smaller than the threads is split into runs of each image's chunks of tile rows
    (image_chunks): every thread adds its own chunks' products into its partials."""
    b = ctx.b
    T = threads()
    p, S = image_chunks(p, B)
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "x", xs)
    add_array(cap, "top", td)
    parts = GradParts(ctx, p, T)
    parts.capture(cap)
    m = PerThread(ctx, p.dtype, [p.m_elems()], T)
    cap.add_partials("wgm", m)

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        bufs = parts.view(bctx, v, v.part("wgm", p.dtype))
        xv = v.array("x", xs.dtype, [v["B"], *p.source_shape()])
        tv = v.array("top", td.dtype, [v["B"], p.K, p.OH, p.OW])
        if S > 1:
            nch = p.chunks()
            with U.for_range(bb, n1, start=n0, name="wgs") as it:
                n, s = bb.udiv(it, U.i64(S)), bb.urem(it, U.i64(S))
                c0 = bb.udiv(bb.mul(s, U.i64(nch)), U.i64(S))
                c1 = bb.udiv(bb.mul(bb.add(s, U.i64(1)), U.i64(nch)), U.i64(S))
                WGG.emit_image_chunks(bctx, p, image_view(bb, xv, n), image_view(bb, tv, n), bufs, c0, c1)
            return
        with U.for_range(bb, n1, start=n0, step=p.Gi, name="wgg") as g0:
            gn = U.smin(bb, bb.sub(U.as_value(bb, n1), g0), p.Gi) if p.Gi > 1 else 1
            with U.for_range(bb, gn, name="wgi") as gi:
                n = bb.add(g0, gi)
                WGG.emit_image(bctx, p, image_view(bb, xv, n), image_view(bb, tv, n), bufs, gi)
            WGG.emit_group(bctx, p, bufs, gn)

    flops = image_flops(p.K, p.OH, p.OW, p.C, p.r, p.r)
    cap.run(ctx, name, U.mul(b, B, S), emit, item_flops=flops and flops // S)
    p.emit_result(ctx, m.arr.ptr, m.stride, T, out.ptr)


def fused_grad_weights(op, dtype, dims, need_gx, grad_inputs):
    """The GradPlan of a ConvPoolActGrad's weight gradient (dims: B, C, H, W, K, kh, kw, OH, OW, ..)
    where it applies and pays and, with an input gradient, that is Winograd's too, one image at a
    time or on the plan's group of images (grad_inputs(op, dtype, dims, group):
    convpool.winograd_grad_inputs), else None. 8x8 and 7x7 images, whose input gradient pays on
    groups of images only (F(2x2), four images a panel), so took the tap panels before: a 'half' 3x3
    layer with ReLU, its input's ReLU and both gradients (forward and fused backward, 2 threads)
    took 5.7 -> 3.1 ms with 64 -> 64 channels at batch 128 (PyTorch eager 7.7), 6.2 -> 3.3 with
    128 -> 128 at batch 32 (PyTorch 5.4), 1.77 -> 1.10 with 32 -> 32 at batch 128 (PyTorch 1.75),
    2.84 -> 1.68 with 64 -> 64 on 7x7 at batch 64 (PyTorch 2.43). 5x5 filters ('half', F(2x2, 5x5)
    for both gradients), batch 64, against the padded tap panels: 64 -> 64 on 8x8 7.0 -> 3.9 ms
    (PyTorch 5.8), 32 -> 32 1.9 -> 1.3-1.4 (1.8), 64 -> 64 on 16x16 16.0 -> 13.0 (22.3), 32 -> 32
    4.6 -> 3.9 (5.9)."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not (isinstance(kh, int) and isinstance(kw, int)) or (kh, kw) not in ((3, 3), (5, 5)):
        return None
    p = winograd_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                              op.subsample, op.filter_flip)
    if p is None or (need_gx and grad_inputs(op, dtype, dims, p.Gi) is None):
        return None
    return p


def fused_valid_grad_weights(op, dtype, dims):
    """The GradPlan of the weight gradient of a 'valid' 3x3 or 5x5 ConvPoolActGrad whose tap plan
    (directconv_grad.tap_plan) stays for its input gradient only (the fused tap-offset kernel, the
    packed GEMM or Winograd's, as without Winograd here): the weight gradient runs on its own in the
    same per-image loop. LeNet's second layer (20->50 on 12x12, batch 500, float32, 2x2 max pool,
    tanh): the fused backward with the input gradient, 1 thread (CPU time, with the forward) 22.9 ->
    21.5 ms; the tutorial's train step, 2 threads (a loaded machine) 36.4-37.3 -> 35.2-35.7 ms. 3x3
    (train steps, 2 threads, float32, new/old in alternating blocks): 'half' then 'valid' 3x3 ReLU
    layers, 32 and 64 channels on 32x32 (batch 128) 0.920; 'valid' 16 -> 32 -> 32 on 12x12 0.927;
    'valid' 3 -> 32 -> 64 -> 128 on 64x64 (batch 32) 0.948. Float64 takes it with at most 32
    filters (the tap plan's 256-byte top rows)."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if op.border_mode != "valid" or not (isinstance(kh, int) and isinstance(kw, int)) \
            or (kh, kw) not in ((3, 3), (5, 5)):
        return None
    return winograd_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, (0, 0), op.subsample, op.filter_flip)
