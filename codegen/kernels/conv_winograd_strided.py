"""Strided convolutions by Winograd over their phase channels (static shapes).

A stride-(sh, sw) kh x kw convolution is the 'valid' unit-stride correlation of the C*sh*sw phase
channels of the bordered image by (ceil(kh/sh), ceil(kw/sw)) sub-filters (phase_channels.py): a
3x3 filter with stride 2 becomes F(4x4, 2x2) over 4C channels (6.25 multiplications per output and
channel against the direct kernel's 9), 5x5 with stride 3 F(4x4, 2x2) over 9C, 5x5 with stride 2
F(m x m, 3x3) over 4C. The sub-filters are built once per call (in correlation form) and transformed
as any Winograd filters; each image's buffer is its phase split (conv_phases.PhaseSplit.fill, which
applies a fused layer's input activation as it splits), written into the Winograd plan's
zero-bordered (Cq, Hb, Wb) buffer; the tiles, GEMMs and output transforms are
microkernels/winograd.py's, as for a unit-stride convolution (conv_winograd.emit_winograd_images
runs a WinogradPhases as it runs a WinogradImages).
"""
from ..microkernels import winograd as WG
from .conv_winograd import winograd_images
from .phase_channels import PhaseChannels

SQUARE_SUB_FILTERS = (2, 3, 5)
# Taken where the direct kernel on the phase images (conv_phases.py) does at least this many times
# the multiplications of the Winograd plan over the phase channels (kh*kw against sh*sw*a*a/(m*m)
# per output and channel). Measured (one thread's CPU time, the fastest of 30 calls, C->K channels
# on HxW images, batch B):
#   3x3 stride 2 (F(4x4, 2x2) over 4C: 1.44x fewer) is slower: float32 32->32 on 32x32 (B 100)
#     5.0-5.4 ms against 3.2 ms, 16->32 on 31x31 pad 1 (B 64) 1.28-1.33 against 1.14-1.17, 32->128
#     on 32x32 (B 64) 9.1-9.4 against 7.5-7.9; float64 32->32 on 32x32 9.8-10.2 against 9.9-10.1.
#     The transforms and GEMMs over 4C phase channels (a 5x5 tile) run at ~150 GFLOP/s against the
#     direct kernel's ~220: the multiplications saved do not cover them.
#   5x5 stride 3 (F(4x4, 2x2) over 9C: 1.78x) is slower: float32 16->32 on 50x50 (B 32) 1.98 ms
#     against 1.76-1.89.
#   4x4 stride 2 (F(4x4, 2x2) over 4C: 2.56x) is faster: float32 64->64 on 32x32 pad 1 (B 64)
#     11.3-11.8 ms against 12.8-14.0 (10.7 against 11.6 with F(4x4, 2x2)'s points 0, -1, 1/2, 2),
#     8->16 (B 32) 0.34-0.35 against 0.32-0.40; float64 64->64 23.1-24.7 against 41.3-46.3.
#   5x5 stride 2 (F(4x4, 3x3) over 4C: 2.78x) is faster: float32 32->64 on 32x32 'half' (B 32)
#     3.5-4.0 ms against 4.5-4.9, 16->32 1.14-1.37 against 1.64-1.78, 32->32 on 64x64 (B 16) 4.5
#     against 6.6-8.5; float64 32->64 7.8-8.2 against 15.4-16.2.
MIN_SAVING = 2.5


def pays(kh, kw, stride, p):
    """Whether the Winograd plan p over the phase channels was measured faster than the direct kernel
    on the phase images (MIN_SAVING)."""
    sh, sw = stride
    return kh * kw * p.m * p.m >= MIN_SAVING * sh * sw * p.a * p.a


class WinogradPhases:
    """A strided convolution of (C, H, W) sources into (K, OH, OW) results as the Winograd plan p's
    'valid' correlation of the phase channels pc (phase_channels.PhaseChannels, its buffer the plan's)."""

    variant = "winograd phases"

    def __init__(self, p, pc):
        self.p, self.pc = p, pc
        self.C, self.H, self.W = pc.C, pc.H, pc.W

    def transform_filters(self, ctx, w_dense, up):
        """up = the transformed sub-filters of w_dense (dense [K][C][kh][kw], as stored: filter_flip
        is the phase channels' to apply)."""
        wq = ctx.scratch(self.p.dtype, [self.pc.filter_elems()])
        self.pc.emit_filters(ctx, w_dense, wq.ptr, self.p.dtype)
        WG.transform_filters(ctx, self.p, wq.ptr, up)

    def fill(self, ctx, src, buf, in_act=None):
        """buf (the plan's bordered buffer of one image, zeroed once) = the phase channels of src
        (one (C, H, W) Array), through the program in_act (None: as they are)."""
        self.pc.fill(ctx, src, buf, self.p.dtype, in_act)


def winograd_phases(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip, batch=None):
    """A WinogradPhases for a strided convolution with static sizes whose square sub-filters (2x2,
    3x3 or 5x5) conv_winograd.winograd_images takes over its phase channels (its channel, tile-grid
    and float32 error rules with C*sh*sw channels), else None."""
    if not all(isinstance(v, int) for v in (C, H, W, K, kh, kw, OH, OW) + tuple(pads) + tuple(stride)):
        return None
    if tuple(stride) == (1, 1) or str(dtype) not in ("float32", "float64") or min(OH, OW) < 1:
        return None
    pc = PhaseChannels(C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    if pc.rh != pc.rw or pc.rh not in SQUARE_SUB_FILTERS:
        return None
    # (no vectors of tiles spanning images: 4x4 filters with stride 2, 64->64 on 16x16 images into
    # 8x8, batch 32, one thread, 2.45-2.51 ms that way against the direct kernel's 1.55-1.60)
    wi = winograd_images(str(dtype), pc.Cq, pc.Hq, pc.Wq, K, pc.rh, pc.rw, OH, OW, (0, 0), False, batch=batch,
                         span=False)
    if wi is None or not pays(kh, kw, stride, wi.p):
        return None
    pc.set_buffer(wi.p.Hb, wi.p.Wb)
    return WinogradPhases(wi.p, pc)
