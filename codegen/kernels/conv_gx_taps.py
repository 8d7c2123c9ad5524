"""The input gradient of a convolution with far fewer outputs than inputs (large filters on small
images: LeNet's second layer) without im2col's patch matrix and col2im. A padded convolution's is
that of the 'valid' convolution of its zero-bordered image: computed into a per-thread bordered dx,
whose inside is copied out.

dx[n] = col2im(W^T @ top[n]) by the input-gradient kernel of the tap panels
(microkernels/directconv_grad.py, the one ConvPoolActGrad runs): W^T packed once, its taps in
channel-minor order, and col2im folded into the micro-kernel's stores (each accumulator vector holds
whole output rows or a part of one, and adds them into dx through the tap offsets, dilated or not).
It needs output rows that divide the vector or are whole vectors: other widths are copied into rows
padded to such a width. With a column stride, each vector's lanes are spread that far apart, zeros
between them, as they are added into dx (strided convolutions whose phases would multiply a wide
zero border: small outputs). The kernel's last tile reads its vectors of top
past the image's end, so each image's output gradient is copied into a per-thread buffer with
zeroed room after it. The batch is split over the threads (conv_threads.py); one that splits
unevenly gives each thread a share of the tap panels of every image instead, shares past the first
adding into copies of dx that are added in after them.
"""
from .. import irutil as U
from ..lower import Array
from ..microkernels import directconv_grad as DG
from ..microkernels import gemm as G
from ..microkernels import prepacked as PP
from ..parallel import run_by_work, run_parallel
from .conv import dilation, gep, image_view, zero_fill
from .conv_threads import Captured, PerThread, add_array, copy_planes, image_flops, panel_shares, shift_copy


class GxTaps:
    """The tap plan of a 'valid' input gradient and the elements of its padded top copy."""

    variant = "taps"

    def __init__(self, tp, pads=(0, 0)):
        self.tp, self.pads = tp, tuple(pads)
        self.top_elems = (tp.K - 1) * tp.OH * tp.gx_ow + DG.gx_reach(tp)
        # padded: dx of the bordered image (tp's H x W), whose inside is the input gradient
        self.bordered_elems = tp.C * tp.H * tp.W if any(self.pads) else 0


# Output rows padded to the kernel's row stride (DG.padded_rows) compute lanes they do not store.
# Rows narrower than the vector always pay (im2col's GEMM is as narrow, and adds col2im); wider ones
# where at least this share of the lanes is stored. Measured (2 threads, float32, ms, im2col ->
# padded rows; 'valid' convolutions, batch, C -> K on HxW): 5x5 64, 32 -> 64 on 14x14 (10 of 16 lanes)
# 3.65-3.93 -> 3.27-3.40; 128, 16 -> 32 on 9x9 (5 of 8) 0.87-0.95 -> 0.54-0.59; 64, 20 -> 50 on
# 13x13 (9 of 16) 1.75-1.84 -> 1.71-1.79; 3x3 64, 32 -> 64 on 14x14 (12 of 16) 1.85-1.90 ->
# 1.40-1.43; 217, 32 -> 50 on 8x8 (6 of 8) 1.94-1.95 -> 1.00-1.02; but 5x5 32, 32 -> 32 on 24x24
# (20 of 32) 2.77-2.95 -> 3.15-3.16, 3x3 dilated 3 32, 16 -> 32 on 24x24 (18 of 32) 0.49 -> 0.57.
MIN_STORED_LANES = 0.75


# Strided input gradients where the phases would multiply a wide zero border (small outputs) took
# im2col before the spread stores (2 threads, float32, ms, im2col -> taps; batch, C -> K on HxW):
# 122, 128 -> 32 on 8x8, 5x5 pad 1 stride 2 4.31 -> 2.40 (PyTorch 1.97); 86, 48 -> 8 on 31x31, 5x5
# 'valid' stride 2 5.96 -> 3.22 (4.67); 73, 96 -> 16 on 28x28, 3x3 'valid' stride 2 4.92 -> 3.21;
# 39, 128 -> 32 on 10x10, 7x7 'half' stride 2 4.74 -> 4.05 (1.93); 256, 32 -> 24 on 8x8, 3x3 pad 1
# stride 2 0.99 -> 0.69 (0.93).
def gx_taps(op, dtype, dims, pads):
    """A GxTaps for the input gradient of a convolution with static shapes, strided or not
    (dilated or not; padded: that of the 'valid' convolution of the zero-bordered image, whose inside
    it keeps), its output rows padded where they neither divide the vector nor are whole vectors
    (narrower than the vector, or MIN_STORED_LANES), else None."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if str(dtype) not in ("float32", "float64"):
        return None
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)) or min(C, K, OH, OW) < 1:
        return None
    Hb, Wb = H + 2 * pads[0], W + 2 * pads[1]
    tp = DG.TapPlan(str(dtype), C, Hb, Wb, K, kh, kw, OH, OW, *op.subsample, op.filter_flip, dilation(op))
    if not DG.gx_fusable(tp):
        tp = DG.padded_rows(tp)
        if tp is None or OW > tp.L and OW < MIN_STORED_LANES * tp.gx_ow:
            return None
    return GxTaps(tp, pads)


def emit_gx_taps(ctx, gt, wd, top, out, B, prefix, T):
    """out (dense (B, C, H, W)) = the input gradient of every image; wd the dense [K][C][kh][kw]
    filters, top the (B, K, OH, OW) output gradient (an Array of any strides and dtype)."""
    b = ctx.b
    tp = gt.tp
    dt = tp.dtype
    et = U.ll_type(dt)
    wa = ctx.scratch(dt, [PP.size(b, dt, tp.P, tp.K)])
    pack_gx_weights(ctx, tp, wd, wa.ptr, T)
    offs = ctx.scratch("int64", [tp.n_offsets])
    DG.tap_plan_offsets(ctx, tp, offs.ptr)
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "top", top)
    cap.add("wa", wa.ptr)
    cap.add("offs", offs.ptr)
    cap.add("out", out.ptr)
    cap.add_parts("tbuf", PerThread(ctx, dt, [gt.top_elems + gt.bordered_elems], T))
    ph, pw = gt.pads
    H, W = tp.H - 2 * ph, tp.W - 2 * pw
    img = tp.C * H * W

    # a batch split unevenly over the threads: shares of the tap panels of every image, share s > 0
    # adding into its own copy of the input gradient (taps of different shares add into the same
    # planes), which is added into out after them. Measured (2 threads, float32, ms, images ->
    # shares; batch, C -> K on HxW): 1, 128 -> 96 on 18x18, 7x7 pad 1 2.44 -> 1.83-1.97; 3, the same
    # 4.16-4.20 -> 3.42-3.58; 'valid' 5x5 3, 64 -> 48 on 12x12 0.21 -> 0.18-0.19, 5, 50 -> 32 on 8x8
    # 0.097 -> 0.090-0.092, 5, 20 -> 50 on 12x12 0.118-0.120 -> 0.107-0.114.
    S = panel_shares(B, T)
    more = ctx.scratch(dt, [(S - 1) * B * img]) if S > 1 else None
    cap.add("more", more.ptr if more is not None else None)

    def images(bctx, v, n0, n1, share, dst):
        bb = bctx.b
        tbuf = v.part("tbuf", dt)
        tv = v.array("top", top.dtype, [v["B"], tp.K, tp.OH, tp.OW])
        bordered = gep(bb, tbuf, gt.top_elems, et) if gt.bordered_elems else None
        with U.for_range(bb, n1, start=n0, name="img") as n:
            _copy_top(bctx, tv, n, tbuf, tp, dt)
            dx = gep(bb, dst, U.mul(bb, n, img), et)
            if bordered is None:
                zero_fill(bb, dx, 0, img, dt)
                DG.emit_gx_image(bctx, tp, v["wa"], tbuf, dx, v["offs"], share)
            else:
                zero_fill(bb, bordered, 0, gt.bordered_elems, dt)
                DG.emit_gx_image(bctx, tp, v["wa"], tbuf, bordered, v["offs"], share)
                shift_copy(bctx, Array(dt, bordered, [tp.C, tp.H, tp.W], [tp.H * tp.W, tp.W, 1]), dx, dt,
                           tp.C, tp.H, tp.W, H, W, -ph, -pw)

    def emit(bctx, v, i0, i1):
        bb = bctx.b
        zero_fill(bb, v.part("tbuf", dt), 0, gt.top_elems, dt)   # the room past the copy stays zero
        if S == 1:   # items: images
            images(bctx, v, i0, i1, None, v["out"])
            return
        with U.for_range(bb, i1, start=i0, name="share") as s:   # items: shares of the panels, every image
            mine = bb.icmp_unsigned("==", s, U.i64(0))
            dst = bb.select(mine, v["out"], gep(bb, v["more"], U.mul(bb, bb.sub(s, U.i64(1)), B * img), et))
            images(bctx, v, 0, v["B"], (s, S), dst)

    flops = image_flops(tp.C, tp.K, tp.OH, tp.OW, tp.kh, tp.kw)
    cap.run(ctx, prefix if S == 1 else prefix.rstrip("_") + "_shares_", B if S == 1 else S, emit,
            item_flops=flops if S == 1 else flops * B // S)
    if S > 1:
        add_shares(ctx, out.ptr, more.ptr, S - 1, B * img, dt, T)


def add_shares(ctx, out, more, n, size, dt, T):
    """out[:size] += more[j*size : (j+1)*size] for j < n, in order; split over the threads by the
    elementwise kernels' rule (n copies of a batch's input gradient: on many threads, megabytes)."""
    et = U.ll_type(dt)

    def body(bctx, v, tid, i0, i1):
        b = bctx.b
        with U.for_range(b, i1, start=i0, name="share_add") as i:
            x = b.load(gep(b, v[0], i, et), typ=et)
            for j in range(n):
                x = b.fadd(x, b.load(gep(b, v[1], b.add(i, U.i64(j * size)), et), typ=et))
            b.store(x, gep(b, v[0], i, et))

    run_by_work(ctx, "symcnn_gx_add_shares", [out, more], size, size * n, T, body)


# Multiply-adds that packing one filter element is counted as (PACK_ELEMENT_FLOPS of
# conv_forward.py): a load across the filters' rows, a store into a panel.
PACK_ELEMENT_FLOPS = 32


def pack_gx_weights(ctx, tp, wd, wa, T):
    """wa <- W^T (DG.GxWeights of the dense filters wd) packed by prepacked.pack_a, its panels of
    MR taps split over the threads: each element is read across the filters' rows (a cache line
    each), and a one-image 7x7 input gradient of 128 -> 96 channels spent a fifth of its time
    packing its 600 thousand on the calling thread."""
    MR = G.params(tp.dtype)[1]
    if T == 1:
        PP.pack_a(ctx, tp.dtype, DG.GxWeights(tp, wd), tp.P, tp.K, wa)
        return

    def body(bctx, v, tid, j0, j1):
        b = bctx.b
        i0 = b.mul(U.as_value(b, j0), U.i64(MR))
        rows = b.sub(U.smin(b, b.mul(U.as_value(b, j1), U.i64(MR)), U.i64(tp.P)), i0)
        A, pack = G.packer(bctx, tp.dtype, "a", DG.GxWeights(tp, v[0]))
        with b.if_then(b.icmp_signed(">", rows, U.i64(0))):
            pack(bctx, tp.dtype, A, U.i64(tp.P), i0, rows, U.i64(0), U.i64(tp.K),
                 gep(b, v[1], b.mul(i0, U.i64(tp.K)), U.ll_type(tp.dtype)))

    run_parallel(ctx, "symcnn_gx_pack", [wd, wa], -(-tp.P // MR), T, body,
                 item_flops=PACK_ELEMENT_FLOPS * MR * tp.K)


def _copy_top(ctx, tv, n, tbuf, tp, dt):
    """tbuf[:K*N] = top[n] (any strides and dtype, cast to dt; rows gx_ow apart)."""
    b = ctx.b
    src = image_view(b, tv, n)
    if tp.gx_ow != tp.OW:   # rows padded to the kernel's row stride
        shift_copy(ctx, src, tbuf, dt, tp.K, tp.OH, tp.OW, tp.OH, tp.gx_ow, 0, 0)
    elif src.dtype == dt and all(isinstance(s, int) for s in src.strides) and tuple(src.strides) == (tp.N, tp.OW, 1):
        copy_planes(ctx, src.ptr, tp.K * tp.N, tp.K * tp.N, tbuf, dt, 1, 1, tp.K * tp.N)
    else:
        shift_copy(ctx, src, tbuf, dt, tp.K, tp.OH, tp.OW, tp.OH, tp.OW, 0, 0)
