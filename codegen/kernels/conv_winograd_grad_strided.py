"""The weight gradient of strided convolutions by Winograd over phase channels.

A stride-(sh, sw) kh x kw convolution is the unit-stride 'valid' correlation of the C*sh*sw phase
channels of the bordered image by (rh, rw) = (ceil(kh/sh), ceil(kw/sw)) sub-filters (phase_channels.py).
Where rh = rw = r is 2 or 3, its weight gradient is the unit-stride one of microkernels/winograd_grad.py
(F(4x4, 2x2), F(4x4, 3x3) or F(2x2, 3x3)) over those phase channels, and the sub-filters' gradient
is gathered back into the filters' taps (PhaseChannels.emit_filter_grad: each tap is one sub-filter
tap, a copy, so the result is still rounded once, after the float64 back-transform). A 3x3 stride-2
filter: 2x2 sub-filters over 4C channels, 25 products per 4x4 tile, filter and phase channel, 100
per 16 outputs against the direct kernel's 144 (1.44x fewer; 5x5 stride 3: 1.78x; 5x5 stride 2,
F(4x4, 3x3): 2.78x). The products of the sub-filter taps past the filter (7 of 16 for 3x3 stride 2)
are computed and dropped.

The image copy is the only other difference: each image is split into its phase channels (the
planar PhaseChannels.fill, which applies ConvPoolActGrad's in_act to the values as it splits them, so
the zero border is the padding of in_act(x), as the tap-panel kernel's copies have it), then
transposed channel-last into the plan's (Hb, Wb, Cp) buffer (winograd_grad._channel_last); the
planar buffer lies after the channel-last one in the same per-thread part, zeroed once with it.
"""
from ..lower import Array
from ..microkernels import winograd_grad as WGG
from ..options import options
from .. import irutil as U
from .phase_channels import PhaseChannels

MIN_EFFICIENCY = 0.65    # share of the tiles' outputs inside the image (as conv_winograd_grad.py)


class PhaseGradPlan(WGG.GradPlan):
    """A GradPlan of the weight gradient of the strided convolution pc (a PhaseChannels) over its
    phase channels: C, H, W of the plan are Cq, Hq, Wq, r = rh = rw, no shift, no flip (the sub-filters
    are in correlation form; pc gathers them back into the filters as they are stored)."""

    variant = "winograd phases"

    def __init__(self, dtype, pc, m):
        super().__init__(dtype, pc.Cq, pc.Hq, pc.Wq, pc.K, pc.OH, pc.OW, (0, 0), False, pc.rh, m)
        self.pc = pc
        self.planar = pc.Cq * pc.Hq * pc.Wq   # the planar phase channels, after the channel-last buffer

    @property
    def name(self):
        sh, sw = self.pc.stride
        return f"{super().name}_ph{sh}x{sw}"

    def image_elems(self):
        return super().image_elems() + self.planar

    def copy_image(self, ctx, src, xh, in_act=None):
        """The phase channels of src ((C, H, W) Array), in_act applied to its values (None: none),
        into the channel-last buffer xh, through the planar buffer after it."""
        b = ctx.b
        planar = U.gep(b, xh, WGG.GradPlan.image_elems(self), U.ll_type(self.dtype))
        pc = self.pc
        pc.fill(ctx, src, planar, self.dtype, in_act)
        phases = Array(self.dtype, planar, [pc.Cq, pc.Hq, pc.Wq], [pc.Hq * pc.Wq, pc.Wq, 1])
        WGG._channel_last(ctx, self, phases, xh, pc.Cq, pc.Hq, pc.Wq, self.Hb, self.Wb, self.Cp, 0, 0)

    def emit_result(self, ctx, base, stride, nparts, dw):
        """dw (dense [K][C][kh][kw]) = the sub-filters' gradient (reduced and transformed back in
        float64, rounded once) gathered into the filters' taps."""
        gq = ctx.scratch(self.dtype, [self.pc.filter_elems()])
        WGG.reduce_and_untransform(ctx, self, base, stride, nparts, gq.ptr)
        self.pc.emit_filter_grad(ctx, gq.ptr, dw, self.dtype)


def phase_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A PhaseGradPlan for the weight gradient of a strided convolution where it applies and pays,
    else None."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads)):
        return None
    sh, sw = stride
    if str(dtype) not in ("float32", "float64") or (sh, sw) == (1, 1) or min(C, K, OH, OW) < 1:
        return None
    pc = PhaseChannels(C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    if pc.rh != pc.rw or pc.rh not in (2, 3):
        return None
    for m in (4, 2) if options.winograd_max_tile >= 4 else (2,):
        if pc.rh == 2 and m != 4:   # (F(4x4, 2x2) only)
            continue
        p = PhaseGradPlan(str(dtype), pc, m)
        if p.efficiency() >= MIN_EFFICIENCY:
            return p
    return None


def fused_phase_grad_weights(op, dtype, dims):
    """The PhaseGradPlan of a strided ConvPoolActGrad's weight gradient (dims: B, C, H, W, K, kh, kw,
    OH, OW, ..) where phase_grad_weights takes it, else None."""
    from symcnn.tensor.nnet import conv_geometry as geometry
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if tuple(op.subsample) == (1, 1) or not (isinstance(kh, int) and isinstance(kw, int)):
        return None
    return phase_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                              tuple(op.subsample), op.filter_flip)
