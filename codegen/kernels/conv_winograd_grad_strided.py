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

The image copy is the only other difference: each image goes straight into the plan's channel-last
(Hb, Wb, Cp) buffer split into phases (PhaseGradPlan.copy_image: blocks of L channels by L columns
transposed in registers, each pixel's channels one store into its phase), applying ConvPoolActGrad's
in_act to the values as it copies them, so the zero border is the padding of in_act(x), as the
tap-panel kernel's copies have it. Positions that no tap of the filter reads (the image's last rows and
columns past the strided outputs' reach, the phases' rows of sub-filter taps past the filter) stay
zero, so values the convolution never reads (non-finite ones too) change nothing.
"""
from llvmlite import ir

from symcnn.tensor.nnet import conv_geometry as geometry

from .. import irutil as U
from ..microkernels import winograd_grad as WGG
from ..microkernels.directconv import Vec
from ..options import options
from .conv_threads import lanewise
from .elemwise import emit_scalar
from .phase_channels import PhaseChannels

# The weight gradient alone (Conv2dGradWeights), 1 thread, CPU time (min of 40 calls, a loaded machine),
# float32, tap panels -> Winograd over phase channels: 5x5 stride 2 'half' (F(4x4, 3x3), 2.78x fewer
# products): 32->32 on 32x32 (batch 64) 4.70 -> 3.44-3.57 ms, 32->64 on 16x16 2.12 -> 1.80, 8->16 on
# 32x32 1.52 -> 0.61-0.73, 16->16 on 16x16 0.47 -> 0.31-0.41; 4x4 stride 2 pad 1 (2.56x): 32->32 on
# 32x32 3.23 -> 2.28, 64->64 on 16x16 2.82 -> 2.13; 6x6 stride 2 (4x): 32->32 on 32x32 (batch 32)
# 3.29 -> 1.96. Below MIN_PRODUCT_RATIO it does not pay: 7x7 stride 3 from 3 channels (2.42x) 1.59 ->
# 1.54; 5x5 stride 3 (1.78x): 64->64 on 24x24 4.74-4.86 -> 4.79-4.80, 16->32 on 33x33 'valid'
# (batch 32) 0.47 -> 0.72; 5x5 stride 2 on 10x10 (F(2x2, 3x3), 1.56x) 0.90 -> 0.93; 3x3 stride 2
# (1.44x): allconv's 32->32 on 32x32 (batch 100) 3.0 -> 3.6-3.7, 64->64 on 16x16 2.5-2.7 -> 3.1-3.3,
# 64->128 on 16x16 3.1 -> 3.5, 128->128 3.4 -> 3.8: the GEMMs save what they should (2.0 against
# 3.0 ms on the first), but the copy into the channel-last buffer (1.1 ms), the transforms (0.65) and
# the partial products, 25/9 * sh*sw = 11 times the filters' size and re-read by every group of
# images, take more. Float64: 3x3 stride 2 1.79 -> 2.8, 5x5 stride 2 4.4 -> 4.2-4.6. The fused
# gradient (ConvPoolActGrad with the phase input gradient, ReLU in_act, 1 thread, whole
# forward + backward, min of 100 calls): 5x5 stride 2 32->32 on 32x32 (batch 64) 14.3-14.5 ->
# 13.4-13.7 ms; allconv's stride-2 layers (batch 100), were they taken: 10.5 -> 11.2-11.7 and
# 9.1 -> 10.3-10.9.
MIN_EFFICIENCY = 0.65    # share of the tiles' outputs inside the image (as conv_winograd_grad.py)
MIN_PRODUCT_RATIO = 2.5  # the direct kernel's products over the plan's (product_ratio)
PAYS_DTYPES = ("float32",)
MIN_CHANNELS = 8         # channels and filters (not measured below)


def _cdiv(a, b):
    return -(-a // b)


class PhaseGradPlan(WGG.GradPlan):
    """A GradPlan of the weight gradient of the strided convolution pc (a PhaseChannels) over its
    phase channels: C, H, W of the plan are Cq, Hq, Wq, r = rh = rw, no shift, no flip (the sub-filters
    are in correlation form; pc gathers them back into the filters as they are stored). In the
    plan's buffers the phase channels are phase-major, channel c of phase q = py*sw + px at q*C + c
    (a phase's channels contiguous: a vector of L channels of one pixel is one store), permuted
    into pc's order c*sh*sw + q before the gather."""

    variant = "winograd phases"

    def __init__(self, dtype, pc, m):
        super().__init__(dtype, pc.Cq, pc.Hq, pc.Wq, pc.K, pc.OH, pc.OW, (0, 0), False, pc.rh, m)
        self.pc = pc

    @property
    def name(self):
        sh, sw = self.pc.stride
        return f"{super().name}_ph{sh}x{sw}"

    def product_ratio(self):
        """The direct kernel's products per output and channel (kh*kw) over the plan's (sh*sw phase
        channels of a*a products per m*m outputs)."""
        pc = self.pc
        return pc.kh * pc.kw * self.m * self.m / (pc.stride[0] * pc.stride[1] * self.a * self.a)

    def source_shape(self):
        return self.pc.C, self.pc.H, self.pc.W

    def _reach(self, q, k, s, n):
        """Phase positions 0 .. reach-1 along an axis of stride s, filter k, n outputs, are read by
        some tap of the filter's phase q (q + s*a < k): the rest stays zero."""
        taps = _cdiv(k - q, s) if q < k else 0
        return n + taps - 1 if taps else 0

    def copy_image(self, ctx, src, xh, in_act=None):
        """xh[(u*Wb + v)*Cp + (py*sw + px)*C + c] = in_act(src[c, sh*u + py - ph, sw*v + px - pw]) where
        that pixel exists and some tap reads it (the rest is not written: zero, set once per thread),
        for a (C, H, W) Array src. Dense rows of the plan's dtype go L x L blocks at a time (L rows of
        L channels loaded, transposed in registers, each pixel's L channels one store into its phase);
        in_act (a program, or None) runs on the loaded rows."""
        pc = self.pc
        b = ctx.b
        act = None if in_act is None else (lambda v: emit_scalar(ctx, in_act, [v], [self.dtype], self.dtype))
        if src.dtype == self.dtype and isinstance(src.strides[2], int) and src.strides[2] == 1:
            self._copy_blocks(ctx, src, xh, act)
            return
        sh, sw = pc.stride
        ph, pw = pc.pads
        et, st = U.ll_type(self.dtype), src.lltype
        with U.for_range(b, pc.C, name="pcc") as c:
            for py in range(sh):
                u0, u1 = max(0, _cdiv(ph - py, sh)), min(self._reach(py, pc.kh, sh, pc.OH), (pc.H - 1 + ph - py) // sh + 1)
                if u1 <= u0:
                    continue
                with U.for_range(b, u1, start=u0, name="pcu") as u:
                    srow = U.gep(b, src.ptr, U.add(b, U.mul(b, c, src.strides[0]),
                                                   U.mul(b, U.add(b, U.mul(b, u, sh), py - ph), src.strides[1])), st)
                    for px in range(sw):
                        v0 = max(0, _cdiv(pw - px, sw))
                        v1 = min(self._reach(px, pc.kw, sw, pc.OW), (pc.W - 1 + pw - px) // sw + 1)
                        if v1 <= v0:
                            continue
                        drow = U.gep(b, xh, U.add(b, U.mul(b, u, self.Wb * self.Cp), U.add(b, c, (py * sw + px) * pc.C)), et)
                        with U.for_range(b, v1, start=v0, name="pcv") as v:
                            x = b.load(U.gep(b, srow, U.mul(b, U.add(b, U.mul(b, v, sw), px - pw), src.strides[2]), st),
                                       typ=st)
                            x = U.cast_value(b, x, src.dtype, self.dtype)
                            b.store(act(x) if act is not None else x, U.gep(b, drow, U.mul(b, v, self.Cp), et))

    def _copy_blocks(self, ctx, src, xh, act):
        pc = self.pc
        b = ctx.b
        sh, sw = pc.stride
        ph, pw = pc.pads
        L, C, W, Cp = self.L, pc.C, pc.W, self.Cp
        et = U.ll_type(self.dtype)
        vec = Vec(ctx.module, self.dtype, L)
        lane_t = ir.VectorType(U.I1, L)
        # each source column's target (phase column v, phase px), where some tap reads it
        reach = [self._reach(px, pc.kw, sw, pc.OW) for px in range(sw)]
        target = [divmod(j + pw, sw) for j in range(W)]
        target = [(v, px) if v < reach[px] else None for v, px in target]

        def block(c0, nch):
            part = ir.Constant(lane_t, [int(l < nch) for l in range(L)])
            for py in range(sh):
                u0, u1 = max(0, _cdiv(ph - py, sh)), min(self._reach(py, pc.kh, sh, pc.OH), (pc.H - 1 + ph - py) // sh + 1)
                if u1 <= u0:
                    continue
                with U.for_range(b, u1, start=u0, name="pcu") as u:
                    srow = U.gep(b, src.ptr, U.add(b, U.mul(b, c0, src.strides[0]),
                                                   U.mul(b, U.add(b, U.mul(b, u, sh), py - ph), src.strides[1])), et)
                    drow = U.gep(b, xh, U.add(b, U.mul(b, u, self.Wb * Cp), U.add(b, c0, py * sw * C)), et)
                    for j0 in range(0, W, L):
                        n = min(L, W - j0)
                        if all(t is None for t in target[j0:j0 + n]):
                            continue
                        mask = ir.Constant(lane_t, [int(l < n) for l in range(L)])
                        rows = []
                        for r in range(L):
                            if r >= nch:
                                rows.append(vec.zero)
                                continue
                            v = b.call(vec.mload, [U.gep(b, srow, U.add(b, U.mul(b, r, src.strides[0]), j0), et),
                                                   vec.align, mask, vec.zero])
                            rows.append(lanewise(b, v, act, range(n)) if act is not None else v)
                        for l, col in enumerate(WGG.transpose_lanes(b, rows)):
                            if l >= n or target[j0 + l] is None:
                                continue
                            v, px = target[j0 + l]
                            ptr = U.gep(b, drow, v * Cp + px * C, et)
                            if nch == L:
                                b.store(col, ptr, align=vec.size)
                            else:
                                b.call(vec.mstore, [col, ptr, vec.align, part])

        full = C // L
        if full:
            with U.for_range(b, full, name="pcb") as cb:
                block(b.mul(cb, U.i64(L)), L)
        if C % L:
            block(U.i64(full * L), C % L)

    def emit_result(self, ctx, base, stride, nparts, dw):
        """dw (dense [K][C][kh][kw]) = the sub-filters' gradient (reduced and transformed back in
        float64, rounded once) permuted into pc's channel order and gathered into the filters' taps."""
        b = ctx.b
        pc = self.pc
        et = U.ll_type(self.dtype)
        S, rr = pc.stride[0] * pc.stride[1], self.r * self.r
        gp = ctx.scratch(self.dtype, [pc.filter_elems()])
        WGG.reduce_and_untransform(ctx, self, base, stride, nparts, gp.ptr)
        gq = ctx.scratch(self.dtype, [pc.filter_elems()])
        with U.for_range(b, pc.K, name="pgk") as k:
            with U.for_range(b, pc.C, name="pgc") as c:
                for q in range(S):
                    src = U.mul(b, U.add(b, U.mul(b, k, pc.Cq), U.add(b, c, q * pc.C)), rr)
                    dst = U.mul(b, U.add(b, U.mul(b, k, pc.Cq), U.add(b, U.mul(b, c, S), q)), rr)
                    for t in range(rr):
                        b.store(b.load(U.gep(b, gp.ptr, U.add(b, src, t), et), typ=et),
                                U.gep(b, gq.ptr, U.add(b, dst, t), et))
        pc.emit_filter_grad(ctx, gq.ptr, dw, self.dtype)


def phase_grad_plan(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A PhaseGradPlan for the weight gradient of a strided convolution where the kernel applies
    (static sizes, float32 or float64, square 2x2 or 3x3 sub-filters, tiles that waste little), else None."""
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


def phase_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
    """A PhaseGradPlan where phase_grad_plan applies and it pays (PAYS_DTYPES, MIN_PRODUCT_RATIO), else None."""
    if str(dtype) not in PAYS_DTYPES or not (isinstance(C, int) and isinstance(K, int)) or min(C, K) < MIN_CHANNELS:
        return None
    p = phase_grad_plan(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip)
    return p if p is not None and p.product_ratio() >= MIN_PRODUCT_RATIO else None


def fused_phase_grad_weights(op, dtype, dims):
    """The PhaseGradPlan of a strided ConvPoolActGrad's weight gradient (dims: B, C, H, W, K, kh, kw,
    OH, OW, ..) where phase_grad_weights takes it, else None."""
    B, C, H, W, K, kh, kw, OH, OW = dims[:9]
    if tuple(op.subsample) == (1, 1) or not (isinstance(kh, int) and isinstance(kw, int)):
        return None
    return phase_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, geometry.padding(op.border_mode, kh, kw),
                              tuple(op.subsample), op.filter_flip)
