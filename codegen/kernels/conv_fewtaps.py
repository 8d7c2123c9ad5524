"""Conv2dGradWeights of a unit-stride convolution with few taps per output (a first layer) by the
few-tap kernel of microkernels/fewtaps.py: per image, a per-thread zero-bordered copy (with spare
rows) and the output gradient read in place, row by row (its rows' last vectors loaded under a mask
when OW is not a whole number of vectors); per-thread lane partials, added in thread order."""
from symcnn.tensor.nnet import conv_geometry as geometry

from .. import irutil as U
from ..microkernels import directconv_grad as DG
from ..microkernels import fewtaps as FT
from ..parallel import threads
from .conv import dilation, gep, image_view, zero_fill
from .conv_forward import few_taps
from .conv_threads import Captured, PerThread, add_array, image_flops, shift_copy


def grad_weights_plan(op, dtype, dims):
    """The few-tap Plan (rows layout over dense output-gradient planes) of a Conv2dGradWeights with
    static dims (B, C, H, W, K, kh, kw, OH, OW), unit strides and fewer than MIN_DIRECT_TAPS taps,
    else None."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if tuple(op.subsample) != (1, 1) or str(dtype) not in ("float32", "float64"):
        return None
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or min(C, H, W, K, OH, OW) < 1:
        return None
    if not few_taps(C, kh, kw):
        return None
    dh, dw = dilation(op)
    p = FT.Plan(str(dtype), C, OH + (kh - 1) * dh, OW + (kw - 1) * dw, K, kh, kw, OH, OW, op.filter_flip, "rows",
                dense_out=True, dilation=(dh, dw))
    return p if p.useful >= FT.MIN_EFFICIENCY else None


def emit_grad_weights(ctx, op, p, xs, td, out, B, body):
    """out (dense [K][C][kh][kw]) = the weight gradient of images xs ((B, C, H, W) Array) and dense
    output gradients td; body: the outlined function's name prefix."""
    dt = p.dtype
    et = U.ll_type(dt)
    T = threads()
    ph, pw = geometry.padding(op.border_mode, p.kh, p.kw, dilation=(p.dh, p.dw))
    H, W = p.Hb - 2 * ph, p.W - 2 * pw
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "x", xs)
    cap.add("top", td.ptr)
    dwv = PerThread(ctx, dt, [FT.partial_elems(p)], T)
    cap.add_partials("dwv", dwv)
    cap.add_parts("buf", PerThread(ctx, dt, [p.buf_elems()], T))
    plane = p.K * p.OH * p.OW

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        buf = v.part("buf", dt)
        zero_fill(bb, buf, 0, p.buf_elems(), dt)   # the borders stay zero: every image writes the same positions
        xv = v.array("x", xs.dtype, [v["B"], p.C, H, W])
        with U.for_range(bb, n1, start=n0, name="img") as n:
            shift_copy(bctx, image_view(bb, xv, n), buf, dt, p.C, H, W, p.H, p.W, ph, pw)
            FT.emit_grad_image(bctx, p, buf, gep(bb, v["top"], U.mul(bb, n, plane), et), p.OH * p.OW,
                               v.part("dwv", dt), masked_top=p.OW % p.L != 0)

    cap.run(ctx, body, B, emit, item_flops=image_flops(p.K, p.OH, p.OW, p.P))
    DG.reduce_lane_partials(ctx, p, dwv.arr.ptr, dwv.stride, T, out.ptr)
