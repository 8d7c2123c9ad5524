"""Conv2d natively, the batch split over the threads (conv_threads.py; a batch that is no multiple
of the threads has the images left over split by their blocks of filters: conv_threads.ImageItems).

The ways, chosen when compiling (forward_variant):

  winograd  2x2, 3x3, 5x5 or 7x7 filters, unit strides, static shapes, 16 or more channels and
          filters, a tile grid that wastes little: Winograd's F(4x4, 3x3) (conv_winograd.py; up to
          128 float32 channels where its grid wastes little, else F(2x2, 3x3), or always with
          options.winograd_max_tile = 2), 4x (2.25x) fewer multiplications than the direct kernel,
          F(4x4, 5x5) (up to 24 float32 channels) or F(2x2, 5x5), 6.25x (2.78x) fewer, F(2x2, 7x7).
  gemm batch  a 1x1 unpadded convolution, static shapes, at most KC channels: one GEMM over the
          whole batch, the filters packed once (conv_1x1.py); strided ones with enough filters.
  gemm 1x1  other 1x1 unit-stride unpadded convolutions: each image is its own patch matrix, so the
          packed GEMM reads it in place.
  direct  static shapes and unit strides, any padding: each image is copied into a per-thread,
          zero-bordered dense (C, H + 2*ph, W + 2*pw) buffer (no copy for an unpadded dense input),
          and the direct micro-kernels of microkernels/directconv.py run a 'valid' convolution on it
          with no patch matrix; the per-thread conv scratch is then copied into the output planes.
          The same routine (direct_images) computes the input gradient of a unit-stride convolution
          (conv_grad.py): a 'valid' correlation of the zero-bordered output gradient with the
          filters transposed.
  fewtaps as direct, with fewer than MIN_DIRECT_TAPS taps per output (first layers): the kernel of
          microkernels/fewtaps.py, its taps unrolled, on the same zero-bordered copy (with spare
          rows); its 'rows' layout writes the output planes directly, its 'wide' one the scratch.
  phases  static shapes and strides, output rows of one vector each: the direct kernel on a per-thread
          copy of each image split into its stride phases (conv_phases.py).
  kvec    other strided convolutions with static shapes (dilated ones too): the kernel with vectors
          over filters (microkernels/kvec.py) on a per-thread zero-bordered copy of each image,
          read at the strides in place (strided_images says which of the two); and padded
          unit-stride ones with few channels on small images whose output rows are no whole
          number of vectors (small_image_kvec), before Winograd and the direct kernel.
  im2col  everything else (dynamic image or filter sizes, a direct, few-tap or phase plan that would
          waste too much of its tiles): per image, a per-thread patch matrix and the packed GEMM
          (conv.py's helpers).
Dilated filters (filter_dilation): the direct kernel, the kvec kernel and im2col read the taps dh
rows and dw cols apart (scaled tap offsets, no zero-filled filter), and so does the few-tap kernel;
Winograd and the phase split decline them, so a dilated convolution is 'kvec' (static shapes; unit
strides too, where it beat the direct kernel on every shape measured, symcnn/rewrite/dilated.py),
'direct' or 'fewtaps' (unit strides, static shapes, where kvec's tiles fall into too many patterns)
or 'im2col'.
"""
from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv import Conv2d

from .. import irutil as U
from ..irutil import lanes
from ..lower import lower
from ..microkernels import directconv as D
from ..microkernels import fewtaps as FT
from ..microkernels import gemm as G
from ..microkernels import kvec as KV
from ..options import options
from ..parallel import run_parallel, threads
from .conv import Mat, dense, dilation, emit_gemm, forward_dims, gep, image_view, pinned, zero_fill
from .conv_1x1 import Pointwise, emit_pointwise, pointwise_gemm
from .conv_winograd import FEW_CHANNELS, WinogradImages, emit_winograd_images, winograd_images
from .conv_threads import (Captured, PerThread, add_array, capture_gemm_images, copy_planes, gemm_images_view,
                           image_flops, image_items, image_patches, shift_copy)
from .elemwise import emit_scalar


# Fewer taps than this per output and the direct kernel's short tap loop is slower than im2col +
# GEMM (one core, 3x3 filters on 32x32 images, 32 filters: 3 channels 35 vs 40 GFLOP/s, 8 channels
# 58 vs 52, 16 channels 76 vs 61; LeNet's first layer, 25 taps: 47 vs 57).
MIN_DIRECT_TAPS = 48


class _Valid:
    """The parts of a conv op directconv.plan reads, for a 'valid' unit-stride convolution."""
    border_mode = "valid"
    subsample = (1, 1)

    def __init__(self, flip, dilation=(1, 1)):
        self.filter_flip = flip
        self.filter_dilation = tuple(dilation)


class DirectImages:
    """A unit-stride convolution of (C, H, W) sources into (K, OH, OW) results, as the direct kernel's
    'valid' convolution of a (C, OH + kh - 1, OW + kw - 1) buffer holding the source moved down and
    right by shift = (rows, cols) (negative: cropped), zeros around it. copy: whether the buffer
    differs from the source (else a dense source of the kernel's dtype is read in place)."""

    def __init__(self, p, C, H, W, shift):
        self.p, self.C, self.H, self.W, self.shift = p, C, H, W, shift
        self.Hb, self.Wb = p.H, p.W
        self.copy = shift != (0, 0) or (self.Hb, self.Wb) != (H, W)

    @property
    def variant(self):
        return getattr(self.p, "variant", f"direct {self.p.mode}")

    def pack(self, ctx, w_dense, wp, offs):
        """The weights packed for the plan, and its tap offsets."""
        D.pack_weights(ctx, self.p, w_dense, wp, offs)

    def fill(self, ctx, src, buf, dtype):
        """buf (the plan's dense image) = src (one (C, H, W) Array) moved by shift; the rest of buf is
        not written (zeroed once)."""
        shift_copy(ctx, src, buf, dtype, self.C, self.H, self.W, self.Hb, self.Wb, *self.shift)


def few_taps(C, kh, kw):
    """Whether a convolution has few enough taps per output for the few-tap kernel."""
    return C * kh * kw < MIN_DIRECT_TAPS


def direct_images(dtype, C, H, W, K, kh, kw, OH, OW, shift, flip, dense_out=False, dil=(1, 1)):
    """A DirectImages when every size is a static int and the direct kernel (or, with fewer than
    MIN_DIRECT_TAPS taps, the few-tap kernel: dense_out lets its rows layout write dense output
    planes) applies, else None. dil: the filters' dilation (both kernels' tap offsets)."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(shift)):
        return None
    if OH < 1 or OW < 1:
        return None
    eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    if few_taps(C, kh, kw):
        p = FT.plan(dtype, C, OH + eh - 1, OW + ew - 1, K, kh, kw, OH, OW, flip, dense_out, tuple(dil))
        return DirectImages(p, C, H, W, tuple(shift)) if p is not None else None
    p = D.plan(_Valid(flip, dil), dtype, [None, C, OH + eh - 1, OW + ew - 1, K, kh, kw, OH, OW])
    if p is None:
        return None
    return DirectImages(p, C, H, W, tuple(shift))


def pointwise(op, kh, kw):
    """A 1x1, unit-stride, unpadded convolution (known when compiling): its patch matrix is the
    image itself, so the GEMMs read (and the input gradient's writes) the images in place."""
    return (isinstance(kh, int) and isinstance(kw, int) and (kh, kw) == (1, 1) and tuple(op.subsample) == (1, 1)
            and tuple(geometry.padding(op.border_mode, 1, 1)) == (0, 0))


def forward_variant(op, dtype, dims):
    """(name, DirectImages or None) of a Conv2d with dims (B, C, H, W, K, kh, kw, OH, OW) (ints where
    static): 'gemm 1x1', 'direct wide' / 'direct rows' (the direct kernel's layouts), 'fewtaps rows' /
    'fewtaps wide' (the few-tap kernel's), 'phases wide' / 'phases rows' (strided, conv_phases.py) or
    'im2col'."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if pointwise(op, kh, kw):
        pw = pointwise_gemm(dtype, dims, False, threads())
        return ("gemm batch", pw) if pw is not None else ("gemm 1x1", None)
    if (kh, kw) == (1, 1) and tuple(geometry.padding(op.border_mode, 1, 1)) == (0, 0) and dilation(op) == (1, 1):
        pw = pointwise_gemm(dtype, dims, False, threads(), tuple(op.subsample))   # strided
        if pw is not None:
            return "gemm batch", pw
    dil = dilation(op)
    if dil != (1, 1):
        return _dilated_forward_variant(op, dtype, dims, dil)
    if tuple(op.subsample) == (1, 1) and str(dtype) in ("float32", "float64") and isinstance(kh, int) \
            and isinstance(kw, int):
        kv = small_image_kvec(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                              op.filter_flip)
        if kv is not None:
            return kv.variant, kv
        wi = winograd_images(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                             op.filter_flip, batch=B, wasteful=True)
        if wi is not None:
            return wi.variant, wi
        di = direct_images(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                           op.filter_flip, dense_out=True)
        if di is not None:
            return di.variant, di
    if str(dtype) in ("float32", "float64") and isinstance(kh, int) and isinstance(kw, int):
        from .conv_winograd_strided import winograd_phases
        wp = winograd_phases(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                             tuple(op.subsample), op.filter_flip, batch=B)
        if wp is not None:
            return wp.variant, wp
        di = strided_images(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                            tuple(op.subsample), op.filter_flip)
        if di is not None:
            return di.variant, di
    return "im2col", None


def _dilated_forward_variant(op, dtype, dims, dil):
    """A dilated Conv2d: 'fewtaps rows' / 'fewtaps wide' (few taps), 'kvec' (static shapes), else
    'direct wide' / 'direct rows' with the taps dil apart (unit strides, static shapes), else 'im2col'
    (which takes any stride)."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if str(dtype) in ("float32", "float64") and isinstance(kh, int) and isinstance(kw, int):
        pads = geometry.padding(op.border_mode, kh, kw, dilation=dil)
        if tuple(op.subsample) == (1, 1):
            # (few taps, a first layer's: the few-tap kernel, which direct_images picks)
            di = None if few_taps(C, kh, kw) else \
                kvec_images(str(dtype), C, H, W, K, kh, kw, OH, OW, pads, (1, 1), op.filter_flip, dil)
            di = di or direct_images(str(dtype), C, H, W, K, kh, kw, OH, OW, pads, op.filter_flip, dense_out=True,
                                     dil=dil)
        else:
            di = kvec_images(str(dtype), C, H, W, K, kh, kw, OH, OW, pads, tuple(op.subsample), op.filter_flip, dil)
        if di is not None:
            return di.variant, di
    return "im2col", None


def body_name(op, variant):
    """The name of the outlined per-image function of one lowering: symcnn_conv_<op>_<variant>_ (op:
    fwd, gx or gw) and a number, so a compiled module's IR shows which variant each conv took."""
    return f"symcnn_conv_{op}_{variant.replace(' ', '_')}_"


def emit_direct_images(ctx, di, src, srcdt, w_dense, B, out, op):
    """out[n] (dense (B, K, OH, OW)) = the direct convolution of src[n] ((B, C, H, W) Array) by the
    filters w_dense (dense [K][C][kh][kw], flipped by the plan as it says), every image."""
    p = di.p
    dt = p.dtype
    T = threads()
    wp = ctx.scratch(dt, [packed_weight_elems(p)])
    offs = ctx.scratch("int64", [p.P])
    di.pack(ctx, w_dense, wp.ptr, offs.ptr)
    copy = di.copy or not (src.contiguous and srcdt == dt)
    nb = p.C * p.H * p.W
    cap = Captured()
    cap.add("B", B)
    add_array(cap, "src", src)
    cap.add("wp", wp.ptr)
    cap.add("offs", offs.ptr)
    cap.add("out", out.ptr)
    direct_out = getattr(p, "dense_out", False)   # the few-tap rows layout writes the planes itself
    cap.add_parts("conv", None if direct_out else PerThread(ctx, dt, [p.scratch_elems()], T))
    cap.add_parts("buf", PerThread(ctx, dt, [nb], T) if copy else None)
    plane = p.K * p.OH * p.OW
    et = U.ll_type(dt)
    # a batch not a multiple of the threads: the images left over split by their blocks of filters
    fb = None if direct_out else filter_blocks(p)
    items = image_items(B, fb)

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        conv = v.part("conv", dt)
        buf = v.part("buf", dt)
        if buf is not None:
            zero_fill(bb, buf, 0, nb, dt)
        xs = v.array("src", srcdt, [v["B"], di.C, di.H, di.W])
        with U.for_range(bb, n1, start=n0, name="img") as n:
            blocks, (k0, kc) = None, (0, p.K)
            if items is not None:
                n, blocks, (k0, kc) = items.image_part(bb, n, fb)
            img = image_view(bb, xs, n)
            if buf is not None:
                di.fill(bctx, img, buf, dt)
                x_img = buf
            else:
                x_img = img.ptr
            dst = gep(bb, v["out"], U.mul(bb, n, plane), et)
            if direct_out:
                FT.emit_image(bctx, p, x_img, v["wp"], dst)
            else:
                emit_image(bctx, p, x_img, v["wp"], v["offs"], conv, blocks)
                copy_planes(bctx, gep(bb, conv, U.mul(bb, k0, p.row_stride), et), p.rs, p.row_stride,
                            gep(bb, dst, U.mul(bb, k0, p.OH * p.OW), et), dt, kc, p.OH, p.OW)

    flops = image_flops(p.K, p.OH, p.OW, p.P)
    cap.run(ctx, body_name(op, di.variant), items.count if items else B, emit,
            item_flops=flops // items.S if items and flops else flops)


def emit_image(ctx, p, x_img, wp, offs, conv, blocks=None, ahead=None):
    """The conv scratch of one image by the kernel of plan p: directconv's or the few-tap one
    (blocks: (lo, hi) of filter_blocks(p), the direct and vectors-over-filters plans only; ahead:
    what the caller touches next, directconv.Streams' regions, which the few-tap and direct
    kernels prefetch)."""
    if isinstance(p, FT.Plan):
        assert blocks is None
        FT.emit_image(ctx, p, x_img, wp, conv, ahead)
    elif isinstance(p, KV.Plan):
        KV.emit_image(ctx, p, x_img, wp, offs, conv, blocks)
    else:
        D.emit_image(ctx, p, x_img, wp, offs, conv, blocks, ahead)


def filter_blocks(p):
    """[(first filter, end)] of the blocks of filters the kernel of plan p computes one at a time
    (emit_image's blocks), or None (the few-tap kernel: one image at a time only)."""
    if isinstance(p, FT.Plan):
        return None
    if isinstance(p, KV.Plan):
        return [(j0 * p.L, min(p.K, (j0 + nv) * p.L)) for j0, nv in p.blocks]
    return [(kb * p.MR, min(p.K, (kb + 1) * p.MR)) for kb in range(p.nkb)]


@lower.register(Conv2d)
def lower_conv2d(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w = ins
    dt = node.outputs[0].dtype
    B, C, H, W, K, kh, kw, OH, OW = forward_dims(ctx, op, x, w)
    out = ctx.alloc(node.outputs[0], [B, K, OH, OW])
    B, K, OH, OW = out.shape
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    xs = pinned(b, x, [B, C, H, W])
    variant, di = forward_variant(op, dt, [B, C, H, W, K, kh, kw, OH, OW])
    if isinstance(di, Pointwise):
        emit_pointwise(ctx, di, G.Strided(dt, wd.ptr, C), dense(ctx, xs, dt), out, body_name("fwd", di.variant),
                       threads())
        return [out]
    if isinstance(di, WinogradImages):
        emit_winograd_images(ctx, di, xs, xs.dtype, wd.ptr, B, out, "fwd")
        return [out]
    if getattr(di, "variant", None) == "winograd phases":   # strided (conv_winograd_strided.py)
        emit_winograd_images(ctx, di, xs, xs.dtype, wd.ptr, B, out, "fwd")
        return [out]
    if di is not None:
        emit_direct_images(ctx, di, xs, xs.dtype, wd.ptr, B, out, "fwd")
        return [out]
    one = variant == "gemm 1x1"
    _forward_im2col(ctx, op, dt, dense(ctx, xs, dt) if one else xs, wd, out, [B, C, H, W, K, kh, kw, OH, OW], one)
    return [out]


def _forward_im2col(ctx, op, dt, xs, wd, out, dims, one):
    """one: a 1x1 convolution (pointwise) of dense images of dtype dt, which are their own patches."""
    B = dims[0]
    cap = capture_gemm_images(ctx, op, dt, dims, lambda g, K: (K, g.N, g.P), not one, threads())
    add_array(cap, "x", xs)
    cap.add("w", wd.ptr)
    cap.add("out", out.ptr)

    def emit(bctx, v, n0, n1):
        bb = bctx.b
        d, gg, Kv, cols, packs = gemm_images_view(bctx, v, op, dt)
        xv = v.array("x", xs.dtype, d[:4])
        on = U.mul(bb, Kv, gg.N)
        with U.for_range(bb, n1, start=n0, name="img") as n:
            src = image_patches(bctx, gg, xv, n, cols, dt, one)
            emit_gemm(bctx, dt, Kv, gg.N, gg.P, Mat(v["w"], gg.P, 1), Mat(src, gg.N),
                      Mat(gep(bb, v["out"], U.mul(bb, n, on), out.lltype), gg.N), packs=packs)

    cap.run(ctx, body_name("fwd", "gemm 1x1" if one else "im2col"), B, emit,
            item_flops=image_flops(*dims[1:2], *dims[4:]))


class KVecImages(DirectImages):
    """A strided convolution of (C, H, W) sources into (K, OH, OW) results by the kernel with vectors
    over filters (microkernels/kvec.py), which reads each bordered image (zeros around the source,
    moved by the pads) in place: no phase split."""

    def __init__(self, p, C, H, W, pads):
        super().__init__(p, C, H, W, tuple(pads))

    @property
    def variant(self):
        return "kvec"

    def pack(self, ctx, w_dense, wp, offs):
        pack_kvec(ctx, self.p, w_dense, wp, offs)

    def fill(self, ctx, src, buf, dtype, in_act=None):
        """buf = act(src) moved by the pads (in_act: the program, applied as the values are copied;
        the zero border is then the padding of act(src))."""
        act = None if in_act is None else (lambda v: emit_scalar(ctx, in_act, [v], [dtype], dtype))
        shift_copy(ctx, src, buf, dtype, self.C, self.H, self.W, self.Hb, self.Wb, *self.shift, act=act)


# Multiply-adds that moving one filter element into the packed panels is counted as, for the rule
# that sends a loop to the threads (min_parallel_flops: 2 M in about 10 us): a scalar load and a
# store with a stride, a cycle or more.
PACK_ELEMENT_FLOPS = 32


def pack_kvec(ctx, p, w_dense, wp, offs):
    """The filters packed for the kernel with vectors over filters (KV.pack_taps), the taps shared
    by the threads: packed once per call on the calling thread alone, the filters of a 128 -> 256
    3x3 layer (1.2 MB) took 14 % of its forward's samples on an AVX-512 host."""
    T = threads()
    KV.tap_offsets(ctx.b, p, offs)
    if T == 1:
        KV.pack_taps(ctx.b, p, w_dense, wp, 0, p.P)
        return
    run_parallel(ctx, "symcnn_kvec_pack", [w_dense, wp], p.P, T,
                 lambda bctx, v, tid, t0, t1: KV.pack_taps(bctx.b, p, v[0], v[1], t0, t1),
                 item_flops=PACK_ELEMENT_FLOPS * p.K)


def kvec_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip, dil=(1, 1)):
    """A KVecImages for a convolution with static sizes (the bordered image just large enough
    for every tap the outputs read; dil: the taps dil apart), when the kernel's tiles fall into few
    patterns, else None."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)):
        return None
    if not options.kvec_forward:
        return None
    (sh, sw), (dh, dw) = stride, dil
    Hb, Wb = (OH - 1) * sh + (kh - 1) * dh + 1, (OW - 1) * sw + (kw - 1) * dw + 1
    p = KV.plan(dtype, C, Hb, Wb, K, kh, kw, OH, OW, sh, sw, flip, tuple(dil))
    return KVecImages(p, C, H, W, pads) if p is not None else None


# The share of the filter vectors' lanes that hold filters (K over K padded to whole vectors) below
# which the phase images, where they apply, beat the kernel with vectors over filters.
MIN_KVEC_LANES = 0.75


# small_image_kvec's images: at most this many outputs (12x12; larger images fill Winograd's tiles).
MAX_KVEC_PIXELS = 144


def small_image_kvec(dtype, C, H, W, K, kh, kw, OH, OW, pads, flip):
    """The kernel with vectors over filters for a padded unit-stride forward with few channels or
    filters (fewer than conv_winograd.FEW_CHANNELS) and filters of at most 3x3, on small images
    (MAX_KVEC_PIXELS outputs) whose output rows are no whole number of vectors: there the direct kernel's vectors of output rows are
    partly empty and Winograd's transforms outweigh the multiplications they save, while the filter
    vectors stay full (K at least MIN_KVEC_LANES of an even number of vectors: blocks of two). Else
    None (24 -> 24 on 6x6, three vectors of filters at AVX2: even with the direct kernel). Measured ('half' 3x3
    ReLU layer with ReLU input, 2 threads, float32, AVX2, validate / train ms, Winograd or direct ->
    vectors over filters; PyTorch eager): 16 -> 16 on 4x4 (batch 256) 0.94 / 2.79 -> 0.48 / 1.61
    (0.65-0.77 / 2.36-2.44), on 6x6 1.32-1.46 / 3.62-5.05 -> 0.93 / 3.39 (1.01-1.15 / 3.65-4.50),
    on 12x12 4.22-4.84 / 11.7-13.0 -> 3.70 / 10.65 (3.83-4.27 / 14.7-16.5); 32 -> 32 on 6x6 and 12x12
    even (Winograd keeps them), 16 -> 16 on 16x16 5.29 -> 6.05 (whole rows: the direct kernel)."""
    if not options.kvec_small_images or tuple(pads) == (0, 0) \
            or not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)):
        return None
    L = lanes(dtype)
    if kh * kw > 9 or min(C, K) >= FEW_CHANNELS or few_taps(C, kh, kw) or OW % L == 0 or OH * OW > MAX_KVEC_PIXELS:
        return None
    nv = -(-K // L)
    if nv % 2 or K < MIN_KVEC_LANES * nv * L:   # (blocks of one vector of filters: a broadcast per multiply-add)
        return None
    return kvec_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, (1, 1), flip)


def strided_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """The forward of a strided convolution: the direct kernel on the phase images where each of its
    vectors is one whole output row, loaded at once (the shifted layout with OW = L lanes), or where
    few filters would leave the kernel with vectors over filters mostly empty lanes; else that
    kernel (else the phase images in any layout, or None). Measured (2 threads, float32, ms, phase
    images -> kvec): 3x3 stride 2 64->64 on 16x16 (batch 100, 8x8 outputs) 2.97-3.06 -> 2.48-2.60,
    5x5 stride 3 16->32 on 33x33 (batch 32) 0.89-1.05 -> 0.60-0.63, 7x7 stride 2 3->64 on 64x64 pad 3
    (batch 32) 4.28-4.56 -> 3.27-3.66, 32->16 on 16x16 (batch 64) 0.44 -> 0.45; but with 16x16
    outputs (the shifted rows) 32->32 on 32x32 2.80-2.92 -> 2.96-3.08, 16->32 on 31x31 pad 1
    0.95-1.09 -> 1.08-1.11, and with few filters (batch 64, 32 channels on 16x16) 8 filters 0.21 ->
    0.25, 20 filters 0.46 -> 0.53 (33 filters on 14x14: 0.65 -> 0.60)."""
    from .conv_phases import phase_images   # (conv_phases builds on this module)
    ph = phase_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    if ph is not None and ph.shifted and ph.p.mode == "rows" and ph.p.G == 1:
        return ph
    L = lanes(dtype)
    if ph is not None and K < MIN_KVEC_LANES * -(-K // L) * L:
        return ph
    kv = kvec_images(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    return kv if kv is not None else ph


def packed_weight_elems(p):
    """Elements of the filters packed for plan p (the direct plans' [K/MR][P][MR], kvec's panels, KP wide)."""
    return p.weight_elems if isinstance(p, KV.Plan) else p.nkb * p.P * p.MR
