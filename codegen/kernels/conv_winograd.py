"""2x2, 3x3, 5x5 and 7x7 unit-stride convolutions by Winograd's F(m x m, 3 x 3), F(m x m, 5 x 5),
F(2 x 2, 7 x 7) and F(4 x 4, 2 x 2)
(microkernels/winograd.py), the batch split over the threads (conv_threads.py).

A convolution of (C, H, W) sources into (K, OH, OW) results is the 'valid' correlation of a
zero-bordered per-thread copy of each source, moved down and right by shift (as conv_forward's
DirectImages): the forward of Conv2d with its padding, and the input gradient of a unit-stride
Conv2d (the output gradient bordered by kh-1-ph, the filters transposed and turned back).
winograd_images decides where it applies and pays: 2x2, 3x3, 5x5 or 7x7 filters, static sizes, enough
channels and filters that the GEMMs dominate the transforms (MIN_CHANNELS), and a tile grid that
wastes little. LeNet's second layer (20 -> 50 channels, 'valid' on 12x12, batch 500, 2 threads,
float32) runs its fused forward by F(4x4, 5x5) with vectors of tiles spanning images: the validate
step took 7.5 ms of CPU time per thread by the direct kernel, 5.5 by F(2x2, 5x5); F(4x4, 5x5) then
cut it from 6.09 to 5.03 ms (2 threads, wall time, median of 30 alternating steps). Its fused input
gradient sums 50 channels (past MAX_CHANNELS_F4_5X5) one image at a time, and by F(2x2, 5x5) would
run no faster than the tap kernel.
"""
from llvmlite import ir

from .. import irutil as U
from ..microkernels import winograd as WG
from ..options import options
from ..parallel import threads
from .conv import gep, image_view, zero_fill
from .conv_threads import Captured, PerThread, add_array, image_flops, image_splits, shift_copy

# Fewer channels or filters than this and the transforms (per tile: a*a*(C + K) values moved and
# added) cost more than the multiplications they save.
MIN_CHANNELS = 16
# With fewer than 32 channels or filters, the GEMMs of a thread's few tiles are too short: one 16x16
# image (64 F(2x2) tiles) of 16 channels runs at 0.96x (forward) / 0.83x (input gradient) the direct
# kernel's speed, 16 such images or one 32x32 image at 1.11-1.38x.
FEW_CHANNELS, MIN_TILES_FEW_CHANNELS = 32, 256
# F(4x4, 5x5) saves more multiplications: half as many tiles pay (LeNet at batch 64, 20 -> 50 channels,
# 32 images a thread, 128 tiles: its validate step 0.905x and train step 0.957x F(2x2, 5x5)'s, 2 threads).
MIN_TILES_FEW_CHANNELS_F4_5X5 = 128
MIN_EFFICIENCY = 0.75   # share of the GEMM columns that are tiles of the images
# Where no plan reaches MIN_EFFICIENCY, a forward or a fused backward's input gradient with many
# channels and filters (FEW_CHANNELS or more) takes the plan with the fewest multiplications per
# output (a*a / (m*m*efficiency)) down to this share: the direct kernel, reading 9C taps per output
# from L2, runs far below the core's peak there, and the fused backward without a Winograd input
# gradient has no Winograd weight gradient either. A 'half' 3x3 ReLU layer with ReLU input, 2
# threads, float32, direct -> Winograd (B C->K on HxW, ms): forward 14 128->128 on 12x12 4.6 -> 2.0,
# 28 64->64 on 12x12 2.4 -> 1.0, 28 32->32 on 12x12 0.45-0.69 -> 0.23, 28 128->128 on 10x10 7.2 ->
# 5.2, 28 64->64 on 10x10 1.8 -> 1.0, 28 128->128 on 5x5 1.5 -> 1.1 (PyTorch eager: 14 128->128 on
# 12x12 1.5-2.1); then with the fused backward, the input gradient too: 14 128->128 on 12x12 5.9 ->
# 4.1, 28 64->64 2.6-2.9 -> 2.0.
MIN_EFFICIENCY_MANY_CHANNELS = 0.5
# The output tile sizes m of F(m x m, 3x3) are tried from options.winograd_max_tile (4) down, 4 then
# 2: the first whose tile grid wastes little. F(2x2) does 2.25x fewer multiplications than the direct
# kernel (2 threads, float32, B=128, 'half': 32->32 on 32x32 images 381 GFLOP/s against the direct
# kernel's 133-245, 64->64 on 16x16 555 against 354, on 8x8 470 against 273), F(4x4) 4x fewer
# (500 and 643 there) but with 4-8x its rounding error (microkernels/winograd.py's POINTS), which
# grows with the channels summed: float32 takes F(4x4) up to MAX_CHANNELS_F4 channels, where it
# stays within about 3.3e-6 of the largest output (measured: 32 to 128 channels, 16x16 and 32x32
# images, Gaussian and positive data; the debug mode's float32 tolerance is 1e-5 of it). Unlike
# F(2x2)'s transforms (0, +-1, +-1/2), F(4x4)'s (thirds, fifteenths) round even sums of small
# integers and halves: equal conv outputs (max-pool ties) of such data may come out unequal.
MAX_CHANNELS_F4 = 128
# F(4x4, 2x2) (the 2x2 sub-filters of a stride-2 3x3 or 4x4 convolution over its phase channels,
# conv_winograd_strided.py) has four finite points (0, -1, 1/2, 2: microkernels/winograd.py's POINTS)
# and a 5x5 tile: its float32 error, measured natively (Gaussian and positive data), is 1.4-2.4e-6 of
# the largest output with 128 channels, 1.9-3.3e-6 with 256 (F(4x4, 3x3)'s at 128), 2.8-5.3e-6 with 512.
MAX_CHANNELS_F4_2X2 = 256
# F(2x2, 7x7) (a = 8) does 3.06x fewer multiplications than the direct kernel: 24->24 on 28x28
# 'half' (batch 16, 1 thread, CPU time) 8.6 -> 4.8 ms forward, 8.5 -> 4.8 input gradient. Its float32
# error (Gaussian data, natively) is 3.3-4.0e-6 of the largest output with 16 and 24 channels,
# 6.1e-6 with 64, 7.6e-6 with 128: float32 takes it up to MAX_CHANNELS_F2_7X7 channels, where it
# stays near F(4x4, 3x3)'s at its cap.
MAX_CHANNELS_F2_7X7 = 32
# F(4x4, 5x5) (a = 8 too) does 6.25x fewer multiplications than the direct kernel, 2.25x fewer than
# F(2x2, 5x5); its float32 error (microkernels/winograd.py's POINTS) is near F(2x2, 7x7)'s with
# hardware FMA (3.7-5.5e-6 of the largest output, 16 to 32 channels), 4.6-7.6e-6 without (x86-64):
# float32 takes it up to MAX_CHANNELS_F4_5X5 channels. On small images its vectors of tiles span images
# (LeNet's second layer: 8x8 outputs, 4 tiles an image) and it still pays, unlike F(4x4, 3x3)'s
# (below): 5x5 filters try it, whole-image grid or spanning, before F(2x2, 5x5).
MAX_CHANNELS_F4_5X5 = 24
# Vectors of tiles spanning images (small images, whose whole-image grids waste too much) are tried
# after every whole-image grid: one thread's CPU time, float32, 'half' 3x3 (B C->K on HxW): 32
# 64->64 on 4x4 0.18 ms against im2col's 0.89, 32 128->128 on 4x4 0.68-0.92 against 2.46-2.51,
# 64 64->64 on 6x6 0.83-1.05 against the direct kernel's 1.22, 64 32->32 on 12x12 0.66-0.80
# against 1.50-1.96, 32 32->32 on 6x6 0.15-0.22 against 0.17; but F(4x4) so on 8x8 images (32
# 128->128) 2.9 ms against F(2x2)'s whole-image grid's 1.9-2.0: a vector of 16 tiles gathered
# from 8 runs of 2 (8x8 outputs) costs more than the multiplications it saves.


class WinogradImages:
    """A unit-stride 3x3 convolution of (C, H, W) sources into (K, OH, OW) results as the Winograd
    plan p's 'valid' correlation of the source moved by shift into a zero-bordered buffer."""

    def __init__(self, p, C, H, W, shift):
        self.p, self.C, self.H, self.W, self.shift = p, C, H, W, shift

    variant = "winograd"

    def transform_filters(self, ctx, w_dense, up):
        """up = the plan's transformed filters of w_dense (dense [K][C][kh][kw])."""
        WG.transform_filters(ctx, self.p, w_dense, up)

    def fill(self, ctx, src, buf):
        """buf (the plan's bordered buffer of one image, zeroed once) = src (one (C, H, W) Array) moved
        by shift."""
        bordered_copy(ctx, src, buf, self)


def winograd_images(dtype, C, H, W, K, kh, kw, OH, OW, shift, flip, batch=None, span=True, per_thread=None,
                    wasteful=False):
    """A WinogradImages when every size is static and F(m x m, kh x kw) applies and pays (3x3: the
    first m of 4, 2 up to options.winograd_max_tile whose grid, for batch images split over the
    threads, wastes little, 4 in float32 only up to MAX_CHANNELS_F4 channels C; 5x5: m = 4 (in float32
    up to MAX_CHANNELS_F4_5X5 channels C) whole-image or spanning, else 2; 7x7:
    m = 2, in float32 up to MAX_CHANNELS_F2_7X7 channels C; 2x2:
    m = 4, in float32 up to MAX_CHANNELS_F4_2X2 channels), else None. Where no grid of whole images
    pays, span (for callers that convolve a group of images at once) tries the same with vectors of
    tiles that span images (microkernels/winograd.py's Plan.span). per_thread: the images a thread
    convolves at a time, where that is not its share of batch (a backward's group of images).
    wasteful: with many channels and filters, a grid that wastes more (MIN_EFFICIENCY_MANY_CHANNELS)
    where none wastes little."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(shift)):
        return None
    if str(dtype) not in ("float32", "float64") or kh != kw or kh not in (2, 3, 5, 7) or OH < 1 or OW < 1:
        return None
    if min(C, K) < MIN_CHANNELS or (kh == 7 and str(dtype) == "float32" and C > MAX_CHANNELS_F2_7X7):
        return None
    n = per_thread or (-(-batch // threads()) if isinstance(batch, int) and batch > 0 else None)
    sizes = [m for m in WG.tile_sizes(kh) if m <= options.winograd_max_tile]
    layouts = (False, True) if span else (False,)
    order = [(sp, m) for m in sizes for sp in layouts] if kh == 5 else [(sp, m) for sp in layouts for m in sizes]
    cap = {2: MAX_CHANNELS_F4_2X2, 5: MAX_CHANNELS_F4_5X5}.get(kh, MAX_CHANNELS_F4)
    best = None   # (multiplications per output, plan) of the wasteful grids
    for spans, m in order:
        if m == 4 and str(dtype) == "float32" and C > cap:
            continue   # its rounding error
        p = WG.Plan(str(dtype), C, K, OH, OW, m, flip, kh, span=spans)
        if spans and not p.span:
            continue   # (tried)
        least = MIN_TILES_FEW_CHANNELS_F4_5X5 if (kh, m) == (5, 4) else MIN_TILES_FEW_CHANNELS
        if min(C, K) < FEW_CHANNELS and n is not None and n * p.tH * p.tW < least:
            continue
        eff = p.efficiency(n)
        if eff >= MIN_EFFICIENCY:
            return WinogradImages(p, C, H, W, tuple(shift))
        if wasteful and min(C, K) >= FEW_CHANNELS and eff >= MIN_EFFICIENCY_MANY_CHANNELS:
            cost = p.a * p.a / (p.m * p.m * eff)
            if best is None or cost < best[0]:
                best = (cost, p)
    return WinogradImages(best[1], C, H, W, tuple(shift)) if best is not None else None


def image_slices(wi, B):
    """(wi, S): with a static batch B smaller than the threads, a WinogradImages whose images are split
    into S items each (panels of fewer tiles: WG.emit_image_panels), S = conv_threads.image_splits(B);
    else (wi, 1)."""
    p = wi.p
    S = image_splits(B)
    if S == 1 or not isinstance(wi, WinogradImages) or p.span or p.Gi > 1:
        return wi, 1
    if p.nblk % S == 0:
        return wi, S
    for panel in range(p.NR - p.L, 0, -p.L):
        q = WG.Plan(p.dtype, p.C, p.K, p.OH, p.OW, p.m, p.flip, p.r, panel=panel)
        if q.Gi == 1 and q.Timg == p.Timg and q.nblk % S == 0:
            return WinogradImages(q, wi.C, wi.H, wi.W, wi.shift), S
    return wi, 1


def emit_winograd_images(ctx, wi, src, srcdt, w_dense, B, out, op):
    """out[n] (dense (B, K, OH, OW)) = the convolution of src[n] ((B, C, H, W) Array) by the filters
    w_dense (dense [K][C][kh][kw]), every image: wi (a WinogradImages, or a strided convolution's
    conv_winograd_strided.WinogradPhases) transforms the filters and fills each image's buffer. A
    batch smaller than the threads is split into runs of each image's panels (image_slices)."""
    from .conv_forward import body_name
    wi, S = image_slices(wi, B)
    p = wi.p
    dt = p.dtype
    T = threads()
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "src", src)
    up = ctx.scratch(dt, [p.u_elems()])
    wi.transform_filters(ctx, w_dense, up.ptr)
    cap.add("up", up.ptr)
    cap.add("out", out.ptr)
    parts = WinogradParts(ctx, p, T)
    parts.capture(cap)
    plane = p.K * p.OH * p.OW
    et = U.ll_type(dt)

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        bufs, vp, mp = parts.view(bctx, v)
        xs = v.array("src", srcdt, [v["B"], wi.C, wi.H, wi.W])

        def prepare(n, buf):
            wi.fill(bctx, image_view(bb, xs, n), buf)

        if S > 1:
            WG.emit_image_panels(bctx, p, bufs, v["up"], vp, mp, n0, n1, S, prepare,
                                 lambda n: gep(bb, v["out"], U.mul(bb, n, plane), et), p.OH * p.OW, p.OW)
            return
        WG.emit_images(bctx, p, bufs, v["up"], vp, mp, n0, n1, prepare,
                       lambda n, gi: gep(bb, v["out"], U.mul(bb, n, plane), et), p.OH * p.OW, p.OW, step=plane)

    flops = image_flops(p.K, p.OH, p.OW, p.C, p.r, p.r)
    cap.run(ctx, body_name(op, wi.variant), U.mul(ctx.b, B, S), emit, item_flops=flops and flops // S)


class WinogradParts:
    """The per-thread buffers of a Winograd plan: Gi bordered images, the transformed tiles of one
    panel and their products."""

    def __init__(self, ctx, p, T):
        self.p = p
        self.bufs = PerThread(ctx, p.dtype, [p.buf_elems()], T)
        self.v = PerThread(ctx, p.dtype, [p.v_elems()], T)
        self.m = PerThread(ctx, p.dtype, [p.m_elems()], T)

    def capture(self, cap):
        cap.add_parts("wbuf", self.bufs)
        cap.add_parts("wv", self.v)
        cap.add_parts("wm", self.m)

    def view(self, bctx, v):
        """(bordered buffers, tiles, products) of this thread; the buffers' borders and the tile
        columns no image fills are zeroed here, once per thread (every image writes the same
        positions)."""
        p = self.p
        bufs, vp = v.part("wbuf", p.dtype), v.part("wv", p.dtype)
        zero_fill(bctx.b, bufs, 0, p.buf_elems(), p.dtype)
        zero_fill(bctx.b, vp, 0, p.v_elems(), p.dtype)
        return bufs, vp, v.part("wm", p.dtype)


def bordered_copy(ctx, src, dst, wi):
    """conv_threads.shift_copy of a (C, H, W) source into the plan's (C, Hb, Wb) buffer dst; where
    the source's rows are dense values of the plan's dtype, a row at a time in vectors (the last one
    masked), with no call per row."""
    p = wi.p
    if not (src.dtype == p.dtype and isinstance(src.strides[2], int) and src.strides[2] == 1):
        shift_copy(ctx, src, dst, p.dtype, wi.C, wi.H, wi.W, p.Hb, p.Wb, *wi.shift)
        return
    b = ctx.b
    et = U.ll_type(p.dtype)
    oh, ow = wi.shift
    i0, i1 = max(0, -oh), min(wi.H, p.Hb - oh)
    j0, j1 = max(0, -ow), min(wi.W, p.Wb - ow)
    if i1 <= i0 or j1 <= j0:
        return
    vec = WG.Vec(ctx.module, p.dtype, p.L)
    lane = ir.Constant(ir.VectorType(U.I64, p.L), list(range(p.L)))
    n = j1 - j0
    with U.for_range(b, wi.C, name="bc") as c:
        with U.for_range(b, i1, start=i0, name="bi") as i:
            s_ = gep(b, src.ptr, U.add(b, U.add(b, U.mul(b, c, src.strides[0]), U.mul(b, i, src.strides[1])), j0), et)
            d = gep(b, dst, U.add(b, U.mul(b, c, p.Hb * p.Wb), U.add(b, U.mul(b, U.add(b, i, oh), p.Wb), j0 + ow)), et)
            for k in range(0, n, p.L):
                if n - k >= p.L:
                    v = b.load(gep(b, s_, k, et), typ=vec.t, align=vec.size)
                    b.store(v, gep(b, d, k, et), align=vec.size)
                else:
                    mask = b.icmp_signed("<", lane, ir.Constant(ir.VectorType(U.I64, p.L), [n - k] * p.L))
                    v = b.call(vec.mload, [gep(b, s_, k, et), vec.align, mask, vec.zero])
                    b.call(vec.mstore, [v, gep(b, d, k, et), vec.align, mask])
