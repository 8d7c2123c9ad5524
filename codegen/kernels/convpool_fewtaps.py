"""ConvPoolAct / ConvPoolActGrad of a first layer (few taps per output, unit strides, static shapes)
pooled before its activation over windows that tile the conv output (LeNet's conv -> 2x2 max pool ->
+ b -> tanh): the kernels of microkernels/fewtaps_pool.py, which pool (forward) and route the pooled
gradient (weight gradient) in registers on each image's phase planes, so neither the conv output
nor its gradient is stored at full resolution.

  forward   per image: its phase planes (a per-thread buffer), the pooled conv values + b and the
            tie mask stored by the kernel into out (or z when kept), then out = act(z) in one
            contiguous loop (convpool.py's)
  backward  (no input gradient) per image: g_pre = dact(..) of the pooled values (one contiguous
            loop) and its per-filter sums into gb, the routed gradient of every phase, the phase
            planes, the weight-gradient kernel into per-thread lane partials, added in thread order
"""
from symcnn.tensor.nnet import conv_geometry as geometry

from .. import irutil as U
from ..microkernels import directconv_grad as DG
from ..microkernels import fewtaps_pool as FP
from .conv import gep, image_view, zero_fill
from .conv_forward import few_taps
from .conv_threads import Captured, PerThread, add_array, image_flops
from ..parallel import threads


def pooled_plan(op, dtype, dims):
    """The fewtaps_pool Plan of a fused op with static dims (B, C, H, W, K, kh, kw, OH, OW, ...):
    a unit-stride, undilated convolution with few taps per output, pooled before its activation
    (order 'pool_act') over windows equal to their stride, no in_act; else None."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not op.pool or op.pool_last or op.in_act is not None or tuple(op.subsample) != (1, 1):
        return None
    if tuple(op.ws) != tuple(op.stride) or str(dtype) not in ("float32", "float64"):
        return None
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW)) or min(C, H, W, K, OH, OW) < 1:
        return None
    if not few_taps(C, kh, kw):
        return None
    ph, pw = geometry.padding(op.border_mode, kh, kw)
    Hb, Wb = H + 2 * ph, W + 2 * pw
    if (Hb - kh + 1, Wb - kw + 1) != (OH, OW):
        return None
    return FP.plan(str(dtype), C, Hb, Wb, K, kh, kw, tuple(op.ws), op.filter_flip, op.pool)


def grad_plan(op, dtype, dims, need_gx):
    """pooled_plan for the backward without an input gradient (a first layer's) whose windows cover
    the conv output, else None. (Conv positions of no window get a zero gradient, which still meets
    the image there: an Inf in it makes the reference's weight gradient NaN.)"""
    OH, OW = dims[7:9]
    if need_gx or not (isinstance(OH, int) and isinstance(OW, int)) or op.pool is None or \
            OH % op.ws[0] or OW % op.ws[1]:
        return None
    return pooled_plan(op, dtype, dims)


def _reducer(op, dt):
    from .convpool_vector import reduce_window

    def reduce(b, vals, mt, zero_bits, one_bits, scale):
        return reduce_window(b, op, dt, vals, mt, zero_bits, one_bits, scale)
    return reduce


def _pads(op, p):
    return geometry.padding(op.border_mode, p.kh, p.kw)


def emit_forward(ctx, op, p, dt, xs, wd, bd, out, mask, zarr):
    """The fused forward: out (and mask, z) of images xs ((B, C, H, W) Array), filters wd (dense),
    biases bd (dense or None)."""
    from .conv_threads import apply_program
    from .convpool_after import activation
    et = U.ll_type(dt)
    B = xs.shape[0]
    wp = ctx.scratch(dt, [p.weight_elems()])
    FP.pack_weights(ctx, p, wd.ptr, wp.ptr)
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "x", xs)
    cap.add("wp", wp.ptr)
    cap.add("bias", bd.ptr if bd is not None else None)
    cap.add("z", zarr.ptr if zarr is not None else None)
    cap.add("out", out.ptr)
    cap.add("mask", mask.ptr if mask is not None else None)
    T = threads()
    cap.add_parts("buf", PerThread(ctx, dt, [p.buf_elems()], T))
    cap.add_parts("row", PerThread(ctx, dt, [p.row_len], T))
    img = p.K * p.n
    mt = U.ll_type(op.mask_dtype) if mask is not None else None
    reduce = _reducer(op, dt)
    run_act = op.act is not None or zarr is not None

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        buf, row = v.part("buf", dt), v.part("row", dt)
        zero_fill(bb, buf, 0, p.buf_elems(), dt)   # the borders stay zero: every image writes the same positions
        zero_fill(bb, row, 0, p.row_len, dt)
        xv = v.array("x", xs.dtype, [v["B"], p.C, xs.shape[2], xs.shape[3]])
        with U.for_range(bb, n1, start=n0, name="img") as n:
            FP.emit_planes(bctx, p, image_view(bb, xv, n), _pads(op, p), row, buf)
            base = U.mul(bb, n, img)
            o = gep(bb, v["out"], base, et)
            d = gep(bb, v["z"], base, et) if v["z"] is not None else o   # (one value: the loop vectorises in place)
            FP.emit_forward_image(bctx, p, op, buf, v["wp"], d,
                                  gep(bb, v["mask"], base, mt) if v["mask"] is not None else None, v["bias"], reduce)
            if run_act:
                apply_program(bctx, activation(op, dt), dt, [d], o, img)

    cap.run(ctx, "symcnn_fewtaps_pool_fwd", B, emit, item_flops=image_flops(p.K, p.OH, p.OW, p.C, p.kh, p.kw))


def emit_grad(ctx, op, p, dt, xs, md, prog_ptrs, gW, gb):
    """The fused backward without input gradient: gW (dense [K][C][kh][kw]) and gb (or None) from
    images xs, the tie mask md (dense, or None) and the gradient program's inputs prog_ptrs (z,
    out, g_1..g_m: dense pooled blocks, None where not read)."""
    from .conv_threads import apply_program
    b = ctx.b
    et = U.ll_type(dt)
    B = xs.shape[0]
    T = threads()
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "x", xs)
    cap.add("mask", md.ptr if md is not None else None)
    for i, q in enumerate(prog_ptrs):
        cap.add(f"g{i}", q)
    dwv = PerThread(ctx, dt, [p.partial_elems()], T)
    dwv.zero(b)
    gb64 = PerThread(ctx, "float64", [p.K], T)
    gb64.zero(b)
    cap.add_parts("dwv", dwv)
    cap.add_parts("gb64", gb64)
    cap.add_parts("buf", PerThread(ctx, dt, [p.buf_elems()], T))
    cap.add_parts("row", PerThread(ctx, dt, [p.row_len], T))
    cap.add_parts("top", PerThread(ctx, dt, [p.top_elems()], T))
    cap.add_parts("gpre", PerThread(ctx, dt, [p.K * p.n], T))
    img = p.K * p.n
    mt = U.ll_type(op.mask_dtype) if md is not None else None

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        buf, row, top, gpre = (v.part(k, dt) for k in ("buf", "row", "top", "gpre"))
        gsum = v.part("gb64", "float64")
        zero_fill(bb, buf, 0, p.buf_elems(), dt)   # the borders stay zero: every image writes the same positions
        zero_fill(bb, row, 0, p.row_len, dt)
        xv = v.array("x", xs.dtype, [v["B"], p.C, xs.shape[2], xs.shape[3]])
        with U.for_range(bb, n1, start=n0, name="img") as n:
            base = U.mul(bb, n, img)
            srcs = [gep(bb, v[f"g{i}"], base, et) if v[f"g{i}"] is not None else None for i in range(len(prog_ptrs))]
            apply_program(bctx, op.dact, dt, srcs, gpre, img)
            FP.emit_tops(bctx, p, op, gpre, gep(bb, v["mask"], base, mt) if v["mask"] is not None else None, top,
                         gsum)
            FP.emit_planes(bctx, p, image_view(bb, xv, n), _pads(op, p), row, buf)
            FP.emit_grad_image(bctx, p, buf, top, v.part("dwv", dt))

    cap.run(ctx, "symcnn_fewtaps_pool_bwd", B, emit, item_flops=image_flops(p.K, p.OH, p.OW, p.C, p.kh, p.kw))
    DG.reduce_lane_partials(ctx, p, dwv.arr.ptr, dwv.stride, T, gW.ptr)
    if gb is not None:
        with U.for_range(b, p.K, name="gk") as k:
            total = None
            for t in range(T):
                x_ = b.load(gep(b, gb64.arr.ptr, U.add(b, U.mul(b, t, gb64.stride), k), U.F64), typ=U.F64)
                total = x_ if total is None else b.fadd(total, x_)
            b.store(U.cast_value(b, total, "float64", dt), gep(b, gb.ptr, k, et))

