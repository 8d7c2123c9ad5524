"""ConvPoolAct and ConvPoolActGrad (symcnn/tensor/nnet/convpool.py): conv [+ max-pool] [+ bias] + any
elementwise activation, forward and backward.

Both work one image at a time, so the conv output (forward) and the conv-output gradient (backward)
exist only as one image's (K, OH*OW) scratch tile, which stays in cache, instead of a (B, K, OH, OW)
buffer written and re-read by separate kernels:

  forward, per image n:   conv = W (*) x[n]                                            (K x N scratch)
                          pooled: for k, i, j: m = max of the window, bits = window positions equal to m,
                                       z[n, k, i, j] = m + b[k], mask[n, k, i, j] = bits
                                  then out[n] = act(z[n]) (one contiguous loop over the image's block)
                          no pool: out[n, k, i, j] = act(conv[k, i, j] + b[k])
  backward, per image n:  gp = dact(z[n], out[n], g_1[n], ..)  (one contiguous loop: the prologue);
                          gb[k] += sum of gp[k];
                          pooled: top[k, window position of every set bit] = gp (0 elsewhere)
                          no pool: top[k, i, j] = gp[k, i, j]
                          dW += top (*) x[n]               (accumulated over images)
                          if need_gx: gx[n] = col2im(W^T @ top)

act and dact are the op's Composite programs, emitted with elemwise.py's emit_scalar inside plain
contiguous loops, which LLVM's loop vectoriser widens (vmath's tanh, sigmoid and exp are straight-line
code written for that), so any activation costs what tanh cost in the explicit-vector epilogue.

With static shapes, a 'valid' unit-stride convolution reads its patches straight from the image
(directconv.py, directconv_grad.py: no im2col). A padded unit-stride one does the same on a per-thread
zero-bordered copy of each image (conv_forward.direct_images, with its cut-offs), and the weight
gradient of any padded one runs the tap-panel kernel on groups of such copies (conv_grad.TapChunks:
chunks of filters, TapSet); with need_gx and unit strides, the input gradient is the direct kernel's 'valid'
correlation of the zero-bordered conv-output gradient with the filters transposed (as conv_grad.py's
Conv2dGradInputs); with few channels on small images its forward takes the kernel with vectors
over filters instead (conv_forward.small_image_kvec). A strided one (static shapes) runs that kernel
or the direct kernel on each image split into its stride phases (conv_forward.strided_images), and
its input gradient phase by phase of dx (conv_phases.py; the weight
gradient is the tap-panel kernel's, any stride, or where conv_winograd_grad_strided.py takes it
Winograd's over the phase channels). A 3x3 or 5x5 unit-stride one with 16 or more channels
and filters takes Winograd's kernels instead where conv_winograd.py's rule takes it: the forward a
group of images at a time (their conv results in the per-thread scratch, then each image's
epilogue), the input gradient one image's bordered conv-output gradient at a time, and (padded, where
conv_winograd_grad.py takes it, with the input gradient Winograd's too or none; 'valid' 5x5 with its
input gradient kept on the tap plan's kernels) the weight gradient:
each image's tiles and those of its conv-output gradient transformed right after the prologue, one GEMM
per transformed position over the tiles of a group of images or a chunk of one. A max-pooled 'valid'
one (order 'pool_act', windows that do not overlap, the tap plan's input gradient) takes its weight
gradient from the routed positions alone (routed_grad.py: the pooled gradient and the tie mask, no
dense top), before Winograd's. Other
convolutions build one image's im2col matrix and use the packed GEMM (conv.py). The pooling epilogue
and the routing prologue take any window and stride (convpool_vector.py: the pooling kernels' vector
blocks of pooled columns, a scalar loop for the rest). gb accumulates in float64 (a sum over batch *
pooled pixels).

Threads: the batch is split over the pool of codegen/threadpool.py; each thread has its own scratch
and partial sums, added in thread order afterwards. In the forward of the direct and vectors-over-
filters kernels, the images left over past a multiple of the threads are split by their blocks of
filters (conv_threads.ImageItems).
"""

from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv_epilogue import ScalarConstant, passed_input
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad


from .. import irutil as U
from ..lower import E_SHAPE, Array, lower
from ..microkernels import directconv as D
from ..microkernels import directconv_grad as DG
from ..microkernels import fewtaps as FT
from ..microkernels import gemm as G
from ..microkernels import kvec as KV
from ..microkernels import prepacked as PP
from ..microkernels import routed_grad as RG
from .conv import (Geometry, Mat, dense, emit_col2im, emit_gemm, emit_im2col, forward_dims, gep, pin,
                   pinned, zero_fill)
from .conv_forward import (KVecImages, direct_images, emit_image, few_taps, filter_blocks,
                           pack_kvec, packed_weight_elems, small_image_kvec, strided_images)
from .conv_phases import PhaseGradInputs, PhaseImages
from .convpool_after import act_grad_in_tile, act_in_tile, activation, bias_act
from .convpool_vector import covers, overlapping, pool_tile, scatter_tile
from .conv_grad import TapChunks, grad_inputs_variant, grad_weights_variant, transposed_filters
from .conv_gx_taps import pack_gx_weights
from .conv_threads import apply_program, copy_planes, image_flops, image_items, shift_copy
from .convpool_input import activate_copy, activated_image, in_act_of, keeps_zero
from . import convpool_fewtaps as FPK
from .conv_winograd import WinogradImages, bordered_copy, winograd_images
from .conv_winograd_strided import WinogradPhases, winograd_phases
from .conv_winograd_grad import fused_grad_weights, fused_valid_grad_weights
from .conv_winograd_grad_strided import PhaseGradPlan, fused_phase_grad_weights
from ..microkernels import winograd as WG
from ..microkernels import winograd_grad as WGG
from .pool import out_len as pool_out_len
from .elemwise import emit_scalar, scalar_lowering
from .row_sum import row_sum
from ..parallel import Parts as _Parts, part as _part, run_parallel as _run_parallel, threads as _threads


@scalar_lowering(ScalarConstant)
def _scalar_constant(ctx, op, v, d, out):
    return U.const(op.dtype, op.value), op.dtype


def _dims(ctx, op, x, w):
    """(B, C, H, W, K, kh, kw, OH, OW, PH, PW) with the declared static sizes pinned and checked."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW = forward_dims(ctx, op, x, w)
    if not op.pool:
        return B, C, H, W, K, kh, kw, OH, OW, OH, OW
    PH = pool_out_len(b, OH, op.ws[0], op.stride[0], 0, True)
    PW = pool_out_len(b, OW, op.ws[1], op.stride[1], 0, True)
    return B, C, H, W, K, kh, kw, OH, OW, PH, PW


def padded_direct(op, dtype, dims):
    """A DirectImages (conv_forward.py) for a padded unit-stride convolution with static shapes that
    the direct kernel takes (the generic Conv2d's cut-offs: MIN_DIRECT_TAPS, the plan's efficiency),
    or for any unit-stride one with fewer taps (the few-tap kernel): each image is copied into a
    zero-bordered per-thread buffer, then convolved as 'valid'. None for 'valid' convolutions with
    more taps (D.plan reads those in place) and everything else. A strided convolution: a
    PhaseImages (conv_phases.py) when the direct kernel takes its phase images."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if tuple(op.subsample) != (1, 1) and str(dtype) in ("float32", "float64") and isinstance(kh, int) \
            and isinstance(kw, int):   # strided: phase images or vectors over filters (strided_images)
        return strided_images(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                              tuple(op.subsample), op.filter_flip)
    if tuple(op.subsample) != (1, 1) or str(dtype) not in ("float32", "float64"):
        return None
    if not (isinstance(kh, int) and isinstance(kw, int)):
        return None
    if op.border_mode == "valid" and not few_taps(C, kh, kw):
        return None
    kv = small_image_kvec(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                          op.filter_flip)
    if kv is not None:
        return kv
    return direct_images(str(dtype), C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                         op.filter_flip)


def winograd_forward(op, dtype, dims):
    """A WinogradImages (conv_winograd.py) for the forward's convolution where it applies and pays;
    strided: a WinogradPhases (conv_winograd_strided.py)."""
    if not (isinstance(dims[5], int) and isinstance(dims[6], int)):
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if tuple(op.subsample) != (1, 1):
        return winograd_phases(dtype, C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                               tuple(op.subsample), op.filter_flip, batch=B)
    if str(dtype) in ("float32", "float64") and small_image_kvec(str(dtype), C, H, W, K, kh, kw, OH, OW,
                                                                 geometry.padding(op.border_mode, kh, kw),
                                                                 op.filter_flip) is not None:
        return None   # (padded_direct's)
    return winograd_images(dtype, C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                           op.filter_flip, batch=B, wasteful=True)


def winograd_grad_inputs(op, dtype, dims, group=1):
    """A WinogradImages for the backward's input gradient where it applies and pays: one image at a
    time (the conv-output gradient of one image exists at a time) or, where the backward holds a group
    of that many images (the Winograd weight gradient's) and a plan takes several of them into one
    panel, the group's panels after the group (vectors of tiles may span its images). 16x16 images,
    3x3: F(4x4) tiles of four images fill a panel that one image's 16 tiles would fill a quarter of,
    so one image at a time runs F(2x2) with 1.78x the multiplications; 4x4 images: one F(4x4) tile
    each, 64 images a panel (a 'half' 3x3 ReLU layer's forward and backward, 2 threads: 128 -> 128
    channels at batch 128 8.0 -> 3.9 ms, PyTorch eager 5.4; 64 -> 64 1.8 -> 1.2, PyTorch 1.5); a
    group that is no whole number of panels ends on a short one: 6x6 images, groups of seven in two
    panels of four, 128 -> 128 at batch 56 7.6 -> 4.3 ms (PyTorch 5.9), 64 -> 64 at batch 113 2.8 ->
    2.2 (PyTorch 3.7)."""
    if tuple(op.subsample) != (1, 1) or not (isinstance(dims[5], int) and isinstance(dims[6], int)):
        return None
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    ph, pw = geometry.padding(op.border_mode, kh, kw)
    args = (dtype, K, OH, OW, C, kh, kw, H, W, (kh - 1 - ph, kw - 1 - pw), not op.filter_flip)
    if group > 1:
        wi = winograd_images(*args, per_thread=group, wasteful=True)
        if wi is not None and wi.p.Gi > 1:
            return wi
    return winograd_images(*args, batch=1, span=False, wasteful=True)   # (one image: no vectors spanning images)


# A 'valid' convolution's input gradient whose rows the tap kernel cannot store whole (output rows
# that neither divide the vector nor are whole vectors) is the packed GEMM and col2im; Winograd's
# correlation of the bordered output gradient, over every input position, replaces it where its
# multiplications (a*a per tile, over its grid's efficiency for one image) are at most this share of
# the GEMM's (kh*kw per output). Measured: a CIFAR-style network of 3x3 ReLU layers, 'half' 3 -> 32,
# 'valid' 32 -> 32 on 32x32 (30 wide), 2x2 max pooling, 'half' 32 -> 64, 'valid' 64 -> 64 on 15x15 (13
# wide), pooling, 512 units (batch 128, 2 threads, float32): train step 58.7-66.9 -> 57.5 ms with the
# first 'valid' layer's F(4x4) (share 0.28), 51.5-53.3 with the second's F(2x2) too (0.67); smaller
# images keep the GEMM (6 wide on 8x8: F(2x2) 0.79).
MAX_VALID_WINOGRAD_SHARE = 0.75


def winograd_valid_grad_inputs(op, dtype, dims):
    """winograd_grad_inputs for a 'valid' unit-stride convolution's input gradient, one image at a
    time, where it does at most MAX_VALID_WINOGRAD_SHARE of the GEMM's multiplications, else None."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if not all(isinstance(v, int) for v in (H, W, OH, OW, kh, kw)):
        return None
    wi = winograd_grad_inputs(op, dtype, dims)
    if wi is None:
        return None
    p = wi.p
    mults = -(-H // p.m) * -(-W // p.m) * p.a * p.a / p.efficiency(1)
    return wi if mults <= MAX_VALID_WINOGRAD_SHARE * OH * OW * kh * kw else None


def forward_variant(op, dtype, dims):
    """How ConvPoolAct computes its convolution: 'winograd' (conv_winograd.py), 'winograd phases'
    (strided, conv_winograd_strided.py), 'direct wide' /
    'direct rows' ('valid', read in place), 'direct padded wide' / 'direct padded rows' (through a
    zero-bordered copy), 'fewtaps rows' / 'fewtaps wide' (the few-tap kernel, through a
    zero-bordered copy), 'direct phases wide' / 'direct phases rows' (strided: through a copy split
    into phases) or 'im2col'."""
    wi = winograd_forward(op, dtype, dims)
    if wi is not None:
        return wi.variant
    fp = FPK.pooled_plan(op, dtype, dims)
    if fp is not None:
        return fp.variant
    di = padded_direct(op, dtype, dims)
    if di is not None and isinstance(di.p, FT.Plan):
        return di.variant
    dp = D.plan(op, dtype, dims)
    if dp is not None:
        return f"direct {dp.mode}"
    if isinstance(di, (PhaseImages, KVecImages)):
        return f"direct {di.variant}"
    return f"direct padded {di.p.mode}" if di is not None else "im2col"


def tap_chunks(op, dtype, dims):
    """The weight gradient of a convolution with static shapes (any stride) as the tap-panel kernel
    over groups of images (a padded one's zero-bordered copies, a 'valid' one's in place):
    conv_grad.py's TapChunks (chunks of at most 256 bytes of filters, each its own panels over the
    same images), else None. ('valid' with one chunk is directconv_grad.tap_plan's.)"""
    variant, tc = grad_weights_variant(op, dtype, dims[:9], fewtaps=False, winograd=False)
    if not isinstance(tc, TapChunks) or (not tc.copy and len(tc.chunks) == 1):
        return None
    return tc


class TapSet:
    """The tap-panel weight gradient's chunks of filters over groups of G images: per chunk (first
    filter, TapPlan, and where its tap offsets, its transposed tops and its dWT[P][KP] partials
    start in the buffers the chunks share)."""

    def __init__(self, chunks, G):
        self.G, self.chunks = G, []
        o = t = a = 0
        for k0, tp in chunks:
            self.chunks.append((k0, tp, o, t, a))
            o, t, a = o + tp.n_offsets, t + G * tp.N * tp.KP, a + tp.P * tp.KP
        self.n_offsets, self.tt_elems, self.acc_elems = o, t, a


def few_tap_grad(op, dtype, dims, need_gx):
    """The weight gradient of a unit-stride convolution with few taps per output and no input
    gradient (a first layer) by the few-tap kernel (microkernels/fewtaps.py), on a zero-bordered
    copy of each image and the conv-output gradient in that plan's layout: its Plan, else None."""
    if need_gx:
        return None
    di = padded_direct(op, dtype, dims)
    return di.p if di is not None and isinstance(di.p, FT.Plan) else None


@lower.register(ConvPoolAct)
def lower_conv_pool_act(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w = ins[:2]
    bias = ins[2] if op.has_bias else None
    dt = node.outputs[0].dtype
    roles = op.output_roles()
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    if bias is not None:
        ctx.check_equal(bias.shape[0], K, E_SHAPE)
    outs = {}
    for role, var in zip(roles, node.outputs):
        if op.pool_last and role in ("z", "act"):   # the conv output's shape
            outs[role] = ctx.alloc(var, [B, K, OH, OW])
            B, K, OH, OW = outs[role].shape
        else:
            outs[role] = ctx.alloc(var, [B, K, PH, PW])
            B, K, PH, PW = outs[role].shape
    out = outs["out"]
    mask = outs.get("mask")
    zarr = outs.get("z")
    aarr = outs.get("act")
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    bd = dense(ctx, bias, dt) if bias is not None else None
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    fp = FPK.pooled_plan(op, dt, dims)
    if fp is not None:   # a first layer pooled in the kernel's registers
        FPK.emit_forward(ctx, op, fp, dt, xs, wd, bd, out, mask, zarr)
        return [outs[r] for r in roles]
    wi = winograd_forward(op, dt, dims)
    in_place = wi is not None and _reads_in_place(op, dt, xs, wi, H, W)
    di = padded_direct(op, dt, dims) if wi is None else None
    dp = D.plan(op, dt, dims) if wi is None and (di is None or not isinstance(di.p, FT.Plan)) else None
    di = di if dp is None else None
    if di is not None:
        dp = di.p
        di = di if di.copy else None
    if wi is not None:
        # the filters transformed once; per thread: the conv results of a group of images (+ 2L:
        # the vector epilogue's over-read), their bordered copies, the tiles and products of a panel
        wp = wi.p
        wptr, offp = ctx.scratch(dt, [wp.u_elems()]).ptr, None
        wi.transform_filters(ctx, wd.ptr, wptr)
        sizes = [wp.Gi * K * OH * OW + 2 * D.lanes(dt), wp.buf_elems(), wp.v_elems(), wp.m_elems()]
    elif dp is not None:
        # the direct kernel reads images as dense (C, H, W) blocks (padded: a per-thread bordered copy
        # of each image, the second buffer) and the weights packed once
        if di is None:
            xs = dense(ctx, xs, dt)
        wp = ctx.scratch(dt, [packed_weight_elems(dp)])
        offs = ctx.scratch("int64", [dp.P])
        if di is not None:   # (a strided convolution's taps point into its phase images)
            di.pack(ctx, wd.ptr, wp.ptr, offs.ptr)
        elif isinstance(dp, KV.Plan):   # vectors over filters, the image read in place
            pack_kvec(ctx, dp, wd.ptr, wp.ptr, offs.ptr)
        else:
            D.pack_weights(ctx, dp, wd.ptr, wp.ptr, offs.ptr)
        wptr, offp = wp.ptr, offs.ptr
        sizes = [dp.scratch_elems(), dp.C * dp.H * dp.W if di is not None else 0, 0, 0]
    else:
        wptr, offp = wd.ptr, None
        na, nb = G.pack_sizes(b, dt, K, g.N, g.P)
        # + 2L: the vector epilogue reads up to 2L values past a conv row's start
        sizes = [U.mul(b, g.P, g.N), U.add(b, U.mul(b, K, g.N), 2 * D.lanes(dt)), na, nb]
    sizes.append(U.product(b, [C, H, W]) if op.in_act is not None else 0)   # one activated input image
    ptrs = [wptr, bd.ptr if bd is not None else None, out.ptr, mask.ptr if mask is not None else None, offp,
            zarr.ptr if zarr is not None else None, aarr.ptr if aarr is not None else None]
    if T == 1:
        bufs = [ctx.scratch(dt, [n]).ptr if not (isinstance(n, int) and n == 0) else None
                for n in sizes[:4 if wi is not None else 2]]
        parts = [v for p in bufs for v in (p, 0)] + [None, 0] * (4 - len(bufs))
        parts += [ctx.scratch(dt, [sizes[4]]).ptr, 0] if op.in_act is not None else [None, 0]
        _forward_images(ctx, op, dt, xs.dtype, dims, xs, ptrs, parts, 0, 0, B, packs=False, dp=dp, di=di, wi=wi,
                        in_place=in_place)
        return [outs[r] for r in roles]
    bufs = [_Parts(ctx, dt, n, T) if not (isinstance(n, int) and n == 0) else None for n in sizes]
    present = [p is not None for p in bufs]
    dyn = [v for v in ptrs if v is not None]
    values = dims + [xs.ptr] + list(xs.strides) + dyn + [v for p in bufs if p is not None for v in p.values()]
    # a batch not a multiple of the threads: the images left over split by their blocks of filters
    fb = filter_blocks(dp) if dp is not None else None
    items = image_items(B, fb)
    split = (items, fb) if items is not None else None

    def emit(bctx, v, tid, n0, n1):
        it = iter(v[16:])
        inner = [next(it) if here is not None else None for here in ptrs]
        parts = []
        for here in present:
            parts += [next(it), next(it)] if here else [None, 0]
        _forward_images(bctx, op, dt, xs.dtype, v[:11], v[11:16], inner, parts, tid, n0, n1,
                        packs=dp is None and wi is None, dp=dp, di=di, wi=wi, in_place=in_place, split=split)

    flops = image_flops(K, OH, OW, C, kh, kw)
    _run_parallel(ctx, "symcnn_convpool_fwd_split" if split else "symcnn_convpool_fwd", values,
                  items.count if split else B, T, emit, item_flops=flops // items.S if split and flops else flops)
    return [outs[r] for r in roles]


def _forward_images(ctx, op, dt, xdt, dims, xv, ptrs, parts, tid, n0, n1, packs, dp=None, di=None, wi=None,
                    in_place=False, split=None):
    """The forward for images [n0, n1); parts: (base, stride) of cols, conv, packed A, packed B
    (direct plan dp: of the conv scratch and, padded (DirectImages di), of the bordered image copy;
    ptrs[0] is then the packed weights, ptrs[4] the taps; Winograd (wi): of the conv results of a
    group of images, their bordered copies, the tiles and the products; ptrs[0] the transformed filters).
    ptrs: weights, bias (None: no bias), out, mask (None: no pooling), tap offsets, z (None: not kept),
    act (order 'act_pool' only; None: not kept). split: (conv_threads.ImageItems, blocks of filters):
    [n0, n1) are its items, whole images or an image's share of the blocks."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, bptr, optr, mptr, offs, zptr, aptr = ptrs
    cols, conv, ap, bp, xa = (_part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None
                              else None for i in range(5))
    pk = (ap, bp) if packs else None
    if wi is not None:
        _forward_winograd(ctx, op, dt, dims, xs, wi, cols, conv, ap, bp, wptr, bptr, optr, mptr, zptr, aptr,
                          n0, n1, xa, in_place)
        return
    if di is not None:
        xbuf, conv = conv, None
        zero_fill(b, xbuf, 0, dp.C * dp.H * dp.W, dt)   # the borders stay zero: every image writes the same positions
    with U.for_range(b, n1, start=n0, name="img") as n:
        blocks = filters = None
        if split is not None:
            n, blocks, filters = split[0].image_part(b, n, split[1])
        if dp is not None:
            conv = cols   # the conv scratch
            if isinstance(di, (PhaseImages, KVecImages)):   # the activation as the image is copied (any program)
                di.fill(ctx, activated_image(ctx, op, dt, xs, n, None, False), xbuf, dt, op.in_act)
                emit_image(ctx, dp, xbuf, wptr, offs, conv, blocks, _ahead(ctx, dt, dims, xs, n, optr))
            elif di is not None:
                if keeps_zero(op, dt):   # the activation over the bordered copy, in cache
                    di.fill(ctx, activated_image(ctx, op, dt, xs, n, None, False), xbuf, dt)
                    activate_copy(ctx, op, dt, xbuf, dp.C * dp.H * dp.W)
                else:
                    di.fill(ctx, activated_image(ctx, op, dt, xs, n, xa), xbuf, dt)
                emit_image(ctx, dp, xbuf, wptr, offs, conv, blocks, _ahead(ctx, dt, dims, xs, n, optr))
            else:
                emit_image(ctx, dp, activated_image(ctx, op, dt, xs, n, xa).ptr, wptr, offs, conv, blocks,
                           _ahead(ctx, dt, dims, xs, n, optr))
            rs, crs = dp.rs, dp.row_stride
        else:
            emit_im2col(ctx, g, activated_image(ctx, op, dt, xs, n, xa), cols, dt)
            emit_gemm(ctx, dt, K, g.N, g.P, Mat(wptr, g.P, 1), Mat(cols, g.N), Mat(conv, g.N), packs=pk)
            rs, crs = OW, g.N
        _epilogue(ctx, op, dt, conv, crs, rs, n, dims, bptr, optr, mptr, zptr, aptr, filters)


def _ahead(ctx, dt, dims, xs, n, optr):
    """What image n's forward touches next in memory, as directconv.Streams' regions: its block of
    out, which the epilogue writes, and the next image of x, which the next copy reads (where their
    sizes are static)."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    out = None
    if all(isinstance(v, int) for v in (K, PH, PW)):
        img = K * PH * PW
        out = (gep(b, optr, U.mul(b, n, img), U.ll_type(dt)), img * U.itemsize(dt), True)
    return [out, _next_image(ctx, dims, xs, n)]


def _next_image(ctx, dims, xs, n):
    """(pointer, bytes, False) of x's image after n (n itself for the batch's last), when its size
    is static (else None)."""
    b = ctx.b
    B, C, H, W = dims[:4]
    if not all(isinstance(v, int) for v in (C, H, W)):
        return None
    nxt = U.smin(b, b.add(U.as_value(b, n), U.i64(1)), b.sub(U.as_value(b, B), U.i64(1)))
    return (gep(b, xs.ptr, U.mul(b, nxt, xs.strides[0]), U.ll_type(xs.dtype)), C * H * W * U.itemsize(xs.dtype), False)


def _epilogue(ctx, op, dt, conv, crs, rs, n, dims, bptr, optr, mptr, zptr, aptr, filters=None):
    """Image n's outputs from its conv results conv[k*crs + i*rs + j]: [pool,] bias, activation, or
    (order 'act_pool') bias, activation, then the pooling of the activated values. filters: (first,
    count): those filters' outputs only."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    et = U.ll_type(dt)
    mdt = op.mask_dtype
    if filters is not None:   # the filters' blocks of the image's outputs, as an image of kc filters
        k0, kc = filters
        first = U.add(b, U.mul(b, n, K), k0)
        pooled, full = U.mul(b, first, U.mul(b, PH, PW)), U.mul(b, first, U.mul(b, OH, OW))
        conv = gep(b, conv, U.mul(b, k0, crs), et)
        bptr = gep(b, bptr, k0, et) if bptr is not None else None
        optr = gep(b, optr, pooled, et)
        mptr = gep(b, mptr, pooled, U.ll_type(mdt)) if mptr is not None else None
        zptr = gep(b, zptr, full if op.pool_last else pooled, et) if zptr is not None else None
        aptr = gep(b, aptr, full, et) if aptr is not None else None
        n, K = U.i64(0), kc
        dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    img = U.product(b, [K, PH, PW])
    base = U.mul(b, n, img)
    if op.pool_last:
        # conv -> + bias -> act in the tile, then the pooling epilogue on the activated values
        full = U.product(b, [K, OH, OW])
        act_in_tile(ctx, op, dt, conv, crs, rs, U.mul(b, n, full), K, OH, OW, bptr, zptr, aptr)
        pool_tile(ctx, op, dt, mdt, conv, crs, rs, n, K, PH, PW, OW, None, optr, mptr)
    elif not op.pool:
        # no pooling: out = act(conv + b) (and z the same sum)
        bias_act(ctx, op, dt, conv, crs, rs, base, K, PH, PW, bptr, zptr, [optr])
    else:
        # the pooled, biased values go where the activation reads them: z if kept, else out
        dst = zptr if zptr is not None else optr
        pool_tile(ctx, op, dt, mdt, conv, crs, rs, n, K, PH, PW, OW, bptr, dst, mptr)
        if op.act is not None or zptr is not None:
            prog = activation(op, dt)
            apply_program(ctx, prog, dt, [gep(b, dst, base, et)], gep(b, optr, base, et), img)


def _forward_winograd(ctx, op, dt, dims, xs, wi, conv, wbuf, vp, mp, up, bptr, optr, mptr, zptr, aptr, n0, n1,
                      xa=None, in_place=False):
    """The forward for images [n0, n1) by Winograd: a group of images' conv results, then the
    epilogue of each (in_place: full groups read x where it is, _reads_in_place)."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    p = wi.p
    et = U.ll_type(dt)
    plane = K * OH * OW
    zero_fill(b, wbuf, 0, p.buf_elems(), dt)   # the borders stay zero: every image writes the same positions
    zero_fill(b, vp, 0, p.v_elems(), dt)       # the tile columns of a short group stay zero

    def prepare(n, buf):
        if isinstance(wi, WinogradPhases):   # the activation as the image is split (any program)
            wi.fill(ctx, activated_image(ctx, op, dt, xs, n, None, False), buf, op.in_act)
        elif keeps_zero(op, dt):   # the activation over the bordered copy, in cache
            bordered_copy(ctx, activated_image(ctx, op, dt, xs, n, None, False), buf, wi)
            activate_copy(ctx, op, dt, buf, wi.p.C * wi.p.Hb * wi.p.Wb)
        else:
            bordered_copy(ctx, activated_image(ctx, op, dt, xs, n, xa), buf, wi)

    def finish(n, gi):
        _epilogue(ctx, op, dt, gep(b, conv, U.mul(b, gi, plane), et), OH * OW, OW, n, dims, bptr, optr, mptr,
                  zptr, aptr)

    direct = (lambda g0: gep(b, xs.ptr, U.mul(b, g0, C * H * W), et)) if in_place else None
    WG.emit_images(ctx, p, wbuf, up, vp, mp, n0, n1, prepare, lambda n, gi: gep(b, conv, U.mul(b, gi, plane), et),
                   OH * OW, OW, finish, step=plane, direct=direct)


def _reads_in_place(op, dt, xs, wi, H, W):
    """Whether the Winograd forward reads the images of its full groups where they are: vectors of
    tiles spanning images (a group's buffers are its images one after another, as in a dense x of
    the op's dtype) with no border (the buffer is the image: LeNet's 'valid' 12x12 images) and no
    activation to apply as they are copied."""
    p = wi.p
    return (isinstance(wi, WinogradImages) and p.span and tuple(wi.shift) == (0, 0) and (p.Hb, p.Wb) == (H, W)
            and op.in_act is None and xs.contiguous and xs.dtype == dt)


def _vector_pool(op, dt):
    """2x2 max-pool windows with stride 2: the direct weight gradient's cut-off (convpool_vector.py's
    epilogues take any window)."""
    return op.pool == "max" and tuple(op.ws) == (2, 2) and tuple(op.stride) == (2, 2) and str(dt) in ("float32", "float64")


@lower.register(ConvPoolActGrad)
def lower_conv_pool_act_grad(ctx, node, ins):
    b = ctx.b
    op = node.op
    named = dict(zip(op.input_roles(), ins))
    x, w = named["x"], named["W"]
    dt = node.outputs[0].dtype
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    # the operands of the pooled shape (and, order 'act_pool', z and act of the conv output's);
    # b ('act_pool') is read only by the op's symbolic gradient
    pooled_roles = [r for r in op.input_roles() if r not in ("x", "W", "b")]
    full_roles = {r for r in pooled_roles if op.pool_last and r in ("z", "act")}
    for r in pooled_roles:
        for d, want in enumerate((B, K, OH, OW) if r in full_roles else (B, K, PH, PW)):
            ctx.check_equal(named[r].shape[d], want, E_SHAPE, d)
    first = [k for k, r in enumerate(op.input_roles()) if r in pooled_roles and r not in full_roles]
    st = node.inputs[first[0]].type.shape if first else (None,) * 4
    PH = PH if st[2] is None else pin(ctx, PH, st[2])
    PW = PW if st[3] is None else pin(ctx, PW, st[3])
    outs = {}
    for role, var in zip(op.output_roles(), node.outputs):
        shape = {"gW": [K, C, kh, kw], "gb": [K], "gx": [B, C, H, W]}[role]
        outs[role] = ctx.alloc(var, shape)
    gW = outs["gW"]
    K, C, kh, kw = gW.shape
    gb = outs.get("gb")
    gx = outs.get("gx")
    if gx is not None:
        B, C, H, W = gx.shape
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    et = U.ll_type(dt)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    # the pooled operands as dense arrays: mask, then the program's inputs z, out, g_1..g_m
    pooled_ptrs = {r: dense(ctx, pinned(b, named[r], [B, K, OH, OW] if r in full_roles else [B, K, PH, PW]),
                            named[r].dtype) for r in pooled_roles}
    md = pooled_ptrs.get("mask")
    prog_ptrs = [pooled_ptrs[r].ptr if r in pooled_ptrs else None
                 for r in ["z", "act" if op.pool_last else "out"] + [f"g{i}" for i in range(op.n_grads)]]
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    need_gx = gx is not None
    if op.gx_act is not None:   # read image by image beside gx
        xs = dense(ctx, xs, dt)
    fp = FPK.grad_plan(op, dt, dims, need_gx)
    if fp is not None:   # a first layer's weight gradient routed in the kernel's registers
        FPK.emit_grad(ctx, op, fp, dt, xs, md, prog_ptrs, gW, gb)
        return [outs[r] for r in op.output_roles()]
    dp = D.plan(op, dt, dims)
    # the direct weight gradient needs top zero outside the stored positions: it is zeroed once per
    # thread, and both the 2x2 vector scatter and the unpooled store write the same positions every image
    # (order 'act_pool': zeroed again before each image's scatter where windows may not cover it)
    dp = dp if DG.grad_plan(dp, op, need_gx) and (_vector_pool(op, dt) or not op.pool or op.pool_last) else None
    dp = few_tap_grad(op, dt, dims, need_gx) or dp
    tp = DG.tap_plan(op, dt, dims) if dp is None else None
    wg = fused_grad_weights(op, dt, dims, need_gx, winograd_grad_inputs) if dp is None and tp is None else None
    # max pooling: the weight gradient from the routed positions alone (tp stays for the input gradient)
    rp = RG.routed_plan(op, dt, dims) if tp is not None and dp is None and md is not None else None
    if tp is not None and dp is None and rp is None:   # 'valid' 3x3, 5x5: tp stays for the input gradient alone
        wg = fused_valid_grad_weights(op, dt, dims)
    if dp is None and wg is None and rp is None:   # strided: Winograd over phase channels
        wg = fused_phase_grad_weights(op, dt, dims)
    tc = tap_chunks(op, dt, dims) if dp is None and tp is None and wg is None else None
    if tc is not None:
        tp = tc.chunks[0][1]
    taps = (TapSet(tc.chunks, tc.G) if tc is not None else TapSet([(0, tp)], tp.G)) if tp is not None else None
    offs = pg = None
    if (dp is not None or tp is not None) and (tc is None or not tc.copy):
        xs = dense(ctx, xs, dt)   # both read patches through offsets into dense images
    if dp is not None:
        # weight gradient as inner products over the image's wide rows: top in the wide layout,
        # per-thread lane partials dwv[k][t][L]
        offs = ctx.scratch("int64", [dp.P])
        D.tap_offsets(ctx, dp, offs.ptr)
        ptrs = [None, md.ptr if md is not None else None, None, offs.ptr] + prog_ptrs
        sizes = [dp.scratch_elems(), 0, 0, 0, 0, 0, 0, 0]
        acc_n = dp.K * dp.P * dp.L
        gd = None
    else:
        # padded unit-stride: the input gradient as the direct correlation of the bordered top
        gd = None
        if need_gx and ((tc is not None and tc.copy) or (wg is not None and tp is None)):
            group = wg.Gi if wg is not None and tp is None else 1
            gd = winograd_grad_inputs(op, dt, dims, group) or grad_inputs_variant(op, dt, dims[:9])[1]
        if need_gx and tp is not None and tuple(op.subsample) != (1, 1):   # strided: phase by phase of dx
            gd = grad_inputs_variant(op, dt, dims[:9])[1]
        if need_gx and gd is None and tp is not None and tc is None and not DG.gx_fusable(tp):
            gd = winograd_valid_grad_inputs(op, dt, dims)
        pg = gd if isinstance(gd, PhaseGradInputs) else None
        prepack = need_gx and gd is None and PP.applies(dt, K)
        # the fused input gradient adds into dx through the tap offsets: unpadded images only
        gx_fused = DG.gx_fusable(tp) and tc is None
        wa = wd.ptr
        if prepack:   # W^T, the A of every image's input-gradient GEMM, packed once
            wa = ctx.scratch(dt, [PP.size(b, dt, g.P, K)]).ptr
            if gx_fused:
                pack_gx_weights(ctx, tp, wd.ptr, wa, T)
            else:
                PP.pack_a(ctx, dt, G.Strided(dt, wd.ptr, 1, g.P), g.P, K, wa)
        wgd = isinstance(gd, WinogradImages)
        ntaps = taps.n_offsets if taps is not None else 0
        if tp is not None or pg is not None:
            # the tap offsets, then (gd) those of the input gradient's direct plan
            offs = ctx.scratch("int64", [ntaps + (pg.n_offsets if pg is not None else
                                                  gd.p.P if gd is not None and not wgd else 0)])
            for _, tp_, o, _, _ in taps.chunks if taps is not None else ():
                DG.tap_plan_offsets(ctx, tp_, gep(b, offs.ptr, o, U.I64))
        if pg is not None:   # every phase's filters packed once for the direct kernel
            wa = ctx.scratch(dt, [pg.weight_elems]).ptr
            pg.pack(ctx, wd.ptr, wa, gep(b, offs.ptr, ntaps, U.I64))
        elif wgd:   # the filters transposed to [C][K] and transformed once for the Winograd kernel
            wt = transposed_filters(ctx, wd.ptr, dt, K, C, kh, kw)
            wa = ctx.scratch(dt, [gd.p.u_elems()]).ptr
            WG.transform_filters(ctx, gd.p, wt.ptr, wa)
        elif gd is not None:   # the filters transposed to [C][K], packed once for the direct kernel
            wt = transposed_filters(ctx, wd.ptr, dt, K, C, kh, kw)
            wa = ctx.scratch(dt, [gd.p.nkb * gd.p.P * gd.p.MR]).ptr
            D.pack_weights(ctx, gd.p, wt.ptr, wa, gep(b, offs.ptr, ntaps, U.I64))
        ptrs = [wa if need_gx else None, md.ptr if md is not None else None, gx.ptr if need_gx else None,
                offs.ptr if offs is not None else None] + prog_ptrs
        # top, transposed tops of a group, cols, dcols, packed A/B of the two GEMMs; + 4L: the
        # input-gradient kernel reads whole tiles of top rows (lanes past the end are never stored)
        fused_gx = prepack and gx_fused
        sizes = [U.add(b, U.mul(b, K, g.N), 4 * D.lanes(dt)),
                 taps.tt_elems if tp is not None and wg is None and rp is None else 0,
                 0 if tp is not None else U.mul(b, g.P, g.N),
                 U.mul(b, g.P, g.N) if need_gx and not fused_gx and gd is None else 0]
        sizes += [0, 0] if tp is not None else list(G.pack_sizes(b, dt, g.P, K, g.N))
        if fused_gx or gd is not None:
            sizes += [0, 0]
        elif need_gx:
            na2, nb2 = G.pack_sizes(b, dt, g.P, g.N, K)
            sizes += [0 if prepack else na2, nb2]
        else:
            sizes += [0, 0]
        acc_n = taps.acc_elems if tp is not None else U.mul(b, g.P, K)
        acc_n = acc_n if wg is None else wg.m_elems()   # Winograd: its partial products
        acc_n = rp.acc_elems() if rp is not None else acc_n
    # the pooled gradient g_pre of one image (pooling: the scatter reads it; without, it goes to top)
    sizes.append(U.add(b, U.product(b, [K, PH, PW]), 1) if op.pool and not op.pool_last else 0)   # + 1: never empty
    # padded taps: a group of zero-bordered image copies
    sizes.append(tc.G * tc.img if tc is not None and tc.copy else dp.buf_elems() if isinstance(dp, FT.Plan) else 0)
    # the direct input gradient: the bordered top of one image and the conv scratch (Winograd: the
    # bordered top, the tiles and the products of a panel)
    if pg is not None:
        sizes += [pg.top_elems, pg.scratch_elems, 0]
    elif isinstance(gd, WinogradImages):   # (a group's input gradient: a buffer per image of the group)
        sizes += [gd.p.buf_elems() * (_panels(gd, wg) if _grouped_gx(gd, wg) else 1), gd.p.v_elems(), gd.p.m_elems()]
    else:
        sizes += [gd.p.C * gd.p.H * gd.p.W, gd.p.scratch_elems(), 0] if gd is not None else [0, 0, 0]
    # the Winograd weight gradient: the channel-last image and conv-output gradient, their tiles
    sizes += [wg.image_elems(), wg.top_elems(), wg.v_elems(), wg.y_elems()] if wg is not None else [0] * 4
    # the routed weight gradient: the channel-last image and one filter's routes
    sizes += [rp.image_elems(), rp.route_elems()] if rp is not None else [0] * 2
    # in_act: the activated input images of a group (tap panels, Winograd) or of one image
    group = taps.G if tp is not None else wg.Gi if wg is not None else 1
    sizes.append(U.mul(b, group, U.product(b, [C, H, W])) if op.in_act is not None and
                 not isinstance(wg, PhaseGradPlan) else 0)   # (the phase split applies in_act itself)
    nparts = 1 if T == 1 else T
    bufs = [_Parts(ctx, dt, n, nparts) if not (isinstance(n, int) and n == 0) else None for n in sizes]
    parts = [v for p in bufs for v in (p.values() if p is not None else [None, 0])]
    dwT = _Parts(ctx, dt, acc_n, nparts)
    gb64 = _Parts(ctx, "float64", K, nparts)   # (also with no bias output: the kernels sum it anyway)
    zero_fill(b, dwT.arr.ptr, 0, U.mul(b, dwT.stride, nparts), dt)
    zero_fill(b, gb64.arr.ptr, 0, U.mul(b, gb64.stride, nparts), "float64")
    acc_parts = dwT.values() + gb64.values()
    if T == 1:
        _backward_images(ctx, op, dt, xs.dtype, dims, xs, ptrs, parts, acc_parts, 0, 0, B,
                         dp=dp, tp=tp, taps=taps, tc=tc, gd=gd, wg=wg, rp=rp)
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
            _backward_images(bctx, op, dt, xs.dtype, v[:11], v[11:16], pp, inner_parts, inner_acc,
                             tid, n0, n1, dp=dp, tp=tp, taps=taps, tc=tc, gd=gd, wg=wg, rp=rp)

        _run_parallel(ctx, "symcnn_convpool_bwd", values, B, T, emit,
                      item_flops=image_flops(2 if need_gx else 1, K, OH, OW, C, kh, kw))
    if dp is not None:
        DG.reduce_lane_partials(ctx, dp, dwT.arr.ptr, dwT.stride, nparts, gW.ptr)
    elif wg is not None:
        wg.emit_result(ctx, dwT.arr.ptr, dwT.stride, nparts, gW.ptr)
    elif rp is not None:
        RG.reduce(ctx, rp, dwT.arr.ptr, dwT.stride, nparts, gW.ptr)
    else:
        # gW = sum over threads of dWT^T (thread order): the chunks' [P][KP] (taps) or one [P][K]
        for k0, kc, acc_rs, a0 in ([(k0, tp_.K, tp_.KP, a) for k0, tp_, _, _, a in taps.chunks]
                                   if taps is not None else [(0, K, K, 0)]):
            with U.for_range(b, kc, name="ok") as k:
                with U.for_range(b, g.P, name="op") as p:
                    v = None
                    for t in range(nparts):
                        x_ = b.load(gep(b, dwT.arr.ptr, U.add(b, U.mul(b, t, dwT.stride),
                                                               U.add(b, U.mul(b, p, acc_rs), U.add(b, k, a0))), et),
                                    typ=et)
                        v = x_ if v is None else b.fadd(v, x_)
                    b.store(v, gep(b, gW.ptr, U.add(b, U.mul(b, U.add(b, k, k0), g.P), p), et))
    if gb is not None:
        with U.for_range(b, K, name="gk") as k:
            v = None
            for t in range(nparts):
                x_ = b.load(gep(b, gb64.arr.ptr, U.add(b, U.mul(b, t, gb64.stride), k), U.F64), typ=U.F64)
                v = x_ if v is None else b.fadd(v, x_)
            b.store(U.cast_value(b, v, "float64", dt), gep(b, gb.ptr, k, et))
    return [outs[r] for r in op.output_roles()]


def _backward_images(ctx, op, dt, xdt, dims, xv, ptrs, parts, acc_parts, tid, n0, n1, dp=None, tp=None, taps=None,
                     tc=None, gd=None, wg=None, rp=None):
    """The backward for images [n0, n1). ptrs: packed or plain W^T (input gradient), mask (None: no
    pooling), gx, tap offsets, then the gradient program's inputs z, out, g_1..g_m (None: not read);
    parts: (base, stride) of top, the group's transposed tops, cols, dcols, the packed A/B of the two
    GEMMs, the image's g_pre and the group's bordered image copies (padded taps tc) (base None: absent); acc_parts: (base, stride) of the weight-gradient
    partials (dWT, or dwv for the direct plan dp) and of gb64."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, mptr, gxptr, offs = ptrs[:4]
    prog_ptrs = ptrs[4:]
    top, tT, cols, dcols, ap1, bp1, ap2, bp2, gpre, xg, gxb, gxc, gxm, *wgp = (
        _part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None else None for i in range(20))
    wgp, (xcl, routes), xa = wgp[:4], wgp[4:6], wgp[6]
    dwT = _part(b, acc_parts[0], acc_parts[1], tid, dt)
    gb64 = _part(b, acc_parts[2], acc_parts[3], tid, "float64")
    et = U.ll_type(dt)
    mt = U.ll_type(op.mask_dtype) if op.mask_dtype else None
    if dp is not None:
        rs, trs, tlen = dp.rs, dp.row_stride, dp.scratch_elems()
    else:
        rs, trs, tlen = OW, g.N, U.mul(b, K, g.N)
    img = U.product(b, [C, H, W])
    pimg = U.product(b, [K, PH, PW])
    full = U.product(b, [K, OH, OW]) if op.pool_last else None
    # the routing of windows that do not overlap and the unpooled store write the same positions each
    # image: the rest stays zero. Overlapping windows add, so top is zeroed for each image; so it is
    # with order 'act_pool' when some positions have no window (the derivative pass writes them all).
    rezero = bool(op.pool) and (overlapping(op) or (op.pool_last and not covers(op, OH, OW)))
    zero_fill(b, top, 0, tlen, dt)
    if xg is not None:   # the borders stay zero: every image writes the same positions
        zero_fill(b, xg, 0, tc.G * tc.img if tc is not None else dp.buf_elems(), dt)
    wgd = isinstance(gd, WinogradImages)
    # the input gradient of the weight gradient's group of images at once: each image's bordered top
    # goes to its slot, the group's panels run after the group
    grouped = _grouped_gx(gd, wg)
    if gxb is not None and isinstance(gd, PhaseGradInputs):
        gd.zero_border(b, gxb)
    elif gxb is not None and wgd:   # the borders and the tile columns past the image stay zero
        zero_fill(b, gxb, 0, gd.p.buf_elems() * (_panels(gd, wg) if grouped else 1), dt)
        zero_fill(b, gxc, 0, gd.p.v_elems(), dt)
    elif gxb is not None:
        zero_fill(b, gxb, 0, gd.p.C * gd.p.H * gd.p.W, dt)
    if tT is not None:   # the padding columns of the transposed tops stay zero
        zero_fill(b, tT, 0, taps.tt_elems, dt)
    wgb = WGG.Buffers(*wgp, dwT) if wg is not None else None
    if wg is not None:
        WGG.zero_buffers(ctx, wg, wgb)
    if rp is not None:
        RG.zero_slack(ctx, rp, xcl)

    def x_image(n, slot, activate=True):
        """Image n of x as the kernels read it (in_act: activated into the group's slot, unless the
        caller activates its copy)."""
        return activated_image(ctx, op, dt, xs, n, gep(b, xa, U.mul(b, slot, img), et) if xa is not None else None,
                               activate)

    # a gradient program that passes one incoming gradient on unchanged, read in the layout top has
    # without a direct plan (dense planes): the kernels read that gradient in place
    passed = passed_input(op.dact, 2) if dp is None and not op.pool else None
    # the few-tap weight gradient reads dense rows of whole vectors exactly: every image in place
    # (no input gradient: a first layer's)
    ft_passed = passed_input(op.dact, 2) if (
        isinstance(dp, FT.Plan) and dp.mode == "rows" and isinstance(OW, int) and dp.rs == OW and OW % dp.L == 0
        and not op.pool and gxptr is None) else None

    def image(n, slot):
        t = top   # (the image's incoming gradient itself where it is passed on unchanged)
        base = U.mul(b, n, pimg)
        srcs = [gep(b, q, base, et) if q is not None else None for q in prog_ptrs]
        if op.pool_last:
            # the prologue: the pooled gradient routed to the activated values, then through dact
            if rezero:
                zero_fill(b, t, 0, tlen, dt)
            mbase = gep(b, mptr, base, mt) if mt is not None else None
            scatter_tile(ctx, op, dt, mt, t, trs, rs, K, PH, PW, OW, srcs[2], mbase)
            act_grad_in_tile(ctx, op, dt, t, trs, rs, U.mul(b, n, full), K, OH, OW, prog_ptrs[0], prog_ptrs[1],
                             gb64, row_sum)
        elif op.pool:
            # the prologue: g_pre of the whole image, then its per-filter sums and the routing
            apply_program(ctx, op.dact, dt, srcs, gpre, pimg)
            plane = U.mul(b, PH, PW)
            with U.for_range(b, K, name="gbk") as k:
                gbk = gep(b, gb64, k, U.F64)
                s_ = row_sum(ctx, dt, gep(b, gpre, U.mul(b, k, plane), et), 1, plane, plane)
                b.store(b.fadd(b.load(gbk, typ=U.F64), s_), gbk)
            mbase = gep(b, mptr, base, mt) if mt is not None else None
            if rezero:
                zero_fill(b, t, 0, tlen, dt)
            if rp is None or gxptr is not None:   # the routed weight gradient reads gpre and the mask
                scatter_tile(ctx, op, dt, mt, t, trs, rs, K, PH, PW, OW, gpre, mbase)
        elif passed is not None:
            t = _passed_top(ctx, op, dt, t, trs, rs, K, PH, PW, srcs, gb64, n, B, passed)
        elif ft_passed is not None:
            t = srcs[ft_passed]
        else:
            _store_top(ctx, op, dt, t, trs, rs, K, PH, PW, srcs, gb64)
        if isinstance(dp, FT.Plan):   # on the image's zero-bordered copy
            ph, pw = geometry.padding(op.border_mode, dp.kh, dp.kw)
            if keeps_zero(op, dt):   # the activation over the bordered copy, in cache
                shift_copy(ctx, x_image(n, 0, False), xg, dt, dp.C, dp.Hb - 2 * ph, dp.W - 2 * pw, dp.H, dp.W, ph, pw)
                activate_copy(ctx, op, dt, xg, dp.buf_elems())
            else:
                shift_copy(ctx, x_image(n, 0), xg, dt, dp.C, dp.Hb - 2 * ph, dp.W - 2 * pw, dp.H, dp.W, ph, pw)
            FT.emit_grad_image(ctx, dp, xg, t, dp.OH * dp.OW if ft_passed is not None else trs, dwT,
                               streamed=gep(b, prog_ptrs[ft_passed], U.mul(b, B, pimg), et)
                               if ft_passed is not None else None)
            if ft_passed is not None:   # after the kernel, which streams t from memory as it computes
                _add_plane_sums(ctx, dt, t, K, U.mul(b, OH, OW), gb64, name="gbk_passed_fewtaps")
        elif dp is not None:
            DG.emit_weight_grad_image(ctx, dp, x_image(n, 0).ptr, t, offs, dwT)
        elif rp is not None:
            RG.emit_image(ctx, rp, x_image(n, 0).ptr, gpre, mbase, xcl, routes, dwT)
        elif isinstance(wg, PhaseGradPlan):   # its phase split applies in_act (any program)
            WGG.emit_image(ctx, wg, x_image(n, slot, False), Array(dt, t, [K, OH, OW], [trs, rs, 1]), wgb, slot,
                           in_act=op.in_act)
        elif wg is not None:   # the image's tiles (a chunk's or, after the group, the group's GEMMs)
            here = keeps_zero(op, dt)   # then the activation over the zero-bordered copy, in cache
            WGG.emit_image(ctx, wg, x_image(n, slot, not here), Array(dt, t, [K, OH, OW], [trs, rs, 1]), wgb, slot,
                           (lambda buf, n_: activate_copy(ctx, op, dt, buf, n_)) if here else None)
        elif tp is not None:
            if xg is not None:   # the activation as the image is copied (any program: the border pads act(x))
                shift_copy(ctx, x_image(n, slot, False), gep(b, xg, U.mul(b, slot, tc.img), et), dt,
                           tc.C, tc.H, tc.W, tc.Hb, tc.Wb, *tc.pads, act=in_act_of(ctx, op, dt))
            elif xa is not None:   # the group's panels read the activated images in place
                x_image(n, slot)
            for k0, tp_, _, t0, _ in taps.chunks:
                DG.transpose_top(ctx, tp_, gep(b, t, k0 * trs, et), trs,
                                 gep(b, tT, U.add(b, t0, U.mul(b, slot, tp_.N * tp_.KP)), et))
        else:
            # gW: dWT[P, K] += cols[P, N] @ top^T[N, K] (top read transposed by the packing)
            emit_im2col(ctx, g, x_image(n, 0), cols, dt)
            emit_gemm(ctx, dt, g.P, K, g.N, Mat(cols, g.N, 1), Mat(t, 1, g.N), Mat(dwT, K), accumulate=True,
                      packs=(ap1, bp1))
        if gxptr is not None and isinstance(gd, PhaseGradInputs):   # strided: phase by phase of dx (and gx_act)
            gd.emit_image(ctx, Array(dt, t, [K, OH, OW], [trs, rs, 1]), gxb, wptr,
                          gep(b, offs, taps.n_offsets if taps is not None else 0, U.I64),
                          gxc, gep(b, gxptr, U.mul(b, n, img), et),
                          gep(b, xs.ptr, U.mul(b, n, img), et) if op.gx_act is not None else None, op.gx_act,
                          nxt=_next_image(ctx, dims, xs, n))
        elif gxptr is not None and grouped:
            bordered_copy(ctx, Array(dt, t, [K, OH, OW], [trs, rs, 1]),
                          gep(b, gxb, U.mul(b, slot, gd.p.C * gd.p.Hb * gd.p.Wb), et), gd)
        elif gxptr is not None and wgd:
            # dx = Winograd's 'valid' correlation of top, bordered, with the transposed filters
            src = Array(dt, t, [K, OH, OW], [trs, rs, 1])

            def prepare(_, buf):
                bordered_copy(ctx, src, buf, gd)

            WG.emit_images(ctx, gd.p, gxb, wptr, gxc, gxm, n, b.add(U.as_value(b, n), U.i64(1)), prepare,
                           lambda _, gi: gep(b, gxptr, U.mul(b, n, img), et), H * W, W)
        elif gxptr is not None and gd is not None:
            # dx = the 'valid' correlation of top, bordered, with the transposed filters (conv_grad.py)
            shift_copy(ctx, Array(dt, t, [K, OH, OW], [trs, rs, 1]), gxb, dt, gd.C, gd.H, gd.W, gd.p.H, gd.p.W,
                       *gd.shift)
            emit_image(ctx, gd.p, gxb, wptr, gep(b, offs, taps.n_offsets, U.I64), gxc)
            copy_planes(ctx, gxc, gd.p.rs, gd.p.row_stride, gep(b, gxptr, U.mul(b, n, img), et), dt,
                        gd.p.K, gd.p.OH, gd.p.OW)
        elif gxptr is not None and dcols is None:   # col2im folded into the GEMM's stores
            dx = gep(b, gxptr, U.mul(b, n, img), et)
            zero_fill(b, dx, 0, img, dt)
            DG.emit_gx_image(ctx, tp, wptr, t, dx, offs)
        elif gxptr is not None:
            if bp2 is not None and ap2 is None:   # wptr: W^T packed once
                PP.emit_gemm(ctx, dt, g.P, g.N, K, wptr, G.Strided(dt, t, g.N), dcols, g.N, False, bp2)
            else:
                emit_gemm(ctx, dt, g.P, g.N, K, Mat(wptr, 1, g.P), Mat(t, g.N), Mat(dcols, g.N), packs=(ap2, bp2))
            dx = gep(b, gxptr, U.mul(b, n, img), et)
            zero_fill(b, dx, 0, img, dt)
            emit_col2im(ctx, g, dcols, dx, dt)
        if gxptr is not None and op.gx_act is not None and not isinstance(gd, PhaseGradInputs) and not grouped:
            gx_act(n)

    def gx_act(n, _=None):
        """The producer's derivative applied to image n's dx, x and dx in cache."""
        dx = gep(b, gxptr, U.mul(b, n, img), et)
        apply_program(ctx, op.gx_act, dt, [gep(b, xs.ptr, U.mul(b, n, img), et), dx], dx, img)

    if wg is not None:
        with U.for_range(b, n1, start=n0, step=wg.Gi, name="grp") as g0:
            gn = U.smin(b, b.sub(U.as_value(b, n1), g0), wg.Gi) if wg.Gi > 1 else 1
            with U.for_range(b, gn, name="gi") as gi:
                image(b.add(g0, gi), gi)
            WGG.emit_group(ctx, wg, wgb, gn)
            if grouped and gxptr is not None:   # the slots hold the group's bordered tops, gd.p.Gi a panel
                per = gd.p.Gi
                with U.for_range(b, _panels(gd, wg), name="gxp") as k:
                    start = b.add(g0, b.mul(k, U.i64(per)))
                    WG.emit_images(ctx, gd.p, gep(b, gxb, b.mul(k, U.i64(gd.p.buf_elems())), et), wptr, gxc, gxm,
                                   start, U.smin(b, b.add(g0, gn), b.add(start, U.i64(per))), lambda n, buf: None,
                                   lambda n, gi: gep(b, gxptr, U.mul(b, n, img), et), H * W, W,
                                   finish=gx_act if op.gx_act is not None else None, step=img)
        return
    if tp is None or rp is not None:
        with U.for_range(b, n1, start=n0, name="img") as n:
            image(n, 0)
        return
    with U.for_range(b, n1, start=n0, step=taps.G, name="grp") as g0:
        gn = U.smin(b, b.sub(U.as_value(b, n1), g0), taps.G)
        with U.for_range(b, gn, name="gi") as gi:
            image(b.add(g0, gi), gi)
        group = xg if xg is not None else xa if xa is not None else gep(b, xs.ptr, U.mul(b, g0, tp.img), et)
        for _, tp_, o, t0, a0 in taps.chunks:
            DG.emit_dw_group(ctx, tp_, group, gep(b, offs, o, U.I64), gep(b, tT, t0, et), gn, gep(b, dwT, a0, et))


def _grouped_gx(gd, wg):
    """Whether the input gradient gd (Winograd's) runs after each group of the Winograd weight
    gradient wg, on the group's images."""
    return isinstance(gd, WinogradImages) and wg is not None and gd.p.Gi > 1 and wg.Gi > 1


def _panels(gd, wg):
    """The input gradient's runs of panels per group of the weight gradient (the last may be short)."""
    return -(-wg.Gi // gd.p.Gi)


def _passed_top(ctx, op, dt, top, trs, rs, K, OH, OW, srcs, gb64, n, B, k):
    """The top the kernels read for image n when the gradient program passes srcs[k] on unchanged
    (no direct plan: top's layout is dense, trs = OH*OW and rs = OW): srcs[k] itself, except for the
    batch's last image, whose copy in top keeps the kernels' reads of whole vectors past its last
    row inside a buffer; gb64[f] += the sums of filter f's rows either way."""
    b = ctx.b
    at = ctx.local(top.type)
    with b.if_else(b.icmp_signed("<", U.as_value(b, n), b.sub(U.as_value(b, B), U.i64(1)))) as (inside, last):
        with inside:
            _add_plane_sums(ctx, dt, srcs[k], K, U.mul(b, OH, OW), gb64)
            b.store(srcs[k], at)
        with last:
            _store_top(ctx, op, dt, top, trs, rs, K, OH, OW, srcs, gb64)
            b.store(top, at)
    return b.load(at, typ=top.type)


def _add_plane_sums(ctx, dt, g, K, plane, gb64, name="gbk_passed"):
    """gb64[f] += the sum of plane f of the K dense planes at g."""
    b = ctx.b
    et = U.ll_type(dt)
    with U.for_range(b, K, name=name) as f:
        gbk = gep(b, gb64, f, U.F64)
        b.store(b.fadd(b.load(gbk, typ=U.F64), row_sum(ctx, dt, gep(b, g, U.mul(b, f, plane), et), 1, plane, plane)),
                gbk)


def _store_top(ctx, op, dt, top, trs, rs, K, OH, OW, srcs, gb64):
    """No pooling: top[k*trs + i*rs + j] = dact(z, out, g_1..)[k, i, j] of one image (srcs: its
    blocks, None where the program does not read an input); gb64[k] += the sums of its rows."""
    b = ctx.b
    et = U.ll_type(dt)
    plane = U.mul(b, OH, OW)
    zero = U.const(dt, 0.0)
    # dense rows (rs == OW): one loop over the plane, which vectorises however narrow the rows are
    # (8-wide rows of 16 float32 lanes stayed scalar)
    rows, cols, step = (1, plane, 0) if rs is OW or (isinstance(rs, int) and rs == OW) else (OH, OW, rs)
    with U.for_range(b, K, name="k") as k:
        tk = gep(b, top, U.mul(b, k, trs), et)
        with U.for_range(b, rows, name="i") as i:
            row = gep(b, tk, U.mul(b, i, step), et)
            src = U.add(b, U.mul(b, k, plane), U.mul(b, i, cols))
            with U.for_range(b, cols, name="j") as j:
                p = U.add(b, src, j)
                vals = [b.load(gep(b, q, p, et), typ=et) if q is not None else zero for q in srcs]
                b.store(emit_scalar(ctx, op.dact, vals, [dt] * len(vals), dt), gep(b, row, j, et))
        gbk = gep(b, gb64, k, U.F64)
        b.store(b.fadd(b.load(gbk, typ=U.F64), row_sum(ctx, dt, tk, OH, OW, rs)), gbk)
