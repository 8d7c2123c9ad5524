"""A strided convolution as a unit-stride one over phase channels (static shapes).

With strides (sh, sw), tap (r, s) of output (i, j) reads bordered pixel (sh*i + r, sw*j + s), which is
pixel (i + r div sh, j + s div sw) of the phase image (r mod sh, s mod sw) (conv_phases.py). Stack the
sh*sw phase images of each channel as channels of their own, phase channel

    cq = c*sh*sw + (r mod sh)*sw + (s mod sw),

and the convolution is the 'valid' unit-stride correlation of those C*sh*sw phase channels, each
(Hq, Wq) = (OH + rh - 1, OW + rw - 1), by (rh, rw) = (ceil(kh / sh), ceil(kw / sw)) sub-filters:

    Wq[k, cq, a, b] = Wc[k, c, sh*a + (r mod sh), sw*b + (s mod sw)], 0 where that tap is past the filter,

Wc the filter in correlation form (turned 180 degrees when filter_flip). The forward, the input
gradient (of the phase channels, then interleaved back) and the weight gradient (of Wq, then gathered
back into the filter's taps) can then take the unit-stride kernels, Winograd's among them: a 3x3
filter with stride 2 becomes 2x2 sub-filters over 4C channels, which F(4x4, 2x2) computes with 25
products per 16 outputs and phase channel (6.25 per output and channel against the direct kernel's 9).
"""
from .. import irutil as U
from .conv import gep, zero_fill
from .conv_phases import PhaseSplit


def _cdiv(a, b):
    return -(-a // b)


class PhaseChannels(PhaseSplit):
    """The geometry of a strided convolution of (C, H, W) images into (K, OH, OW) outputs as a
    unit-stride 'valid' one over Cq = C*sh*sw phase channels of (Hq, Wq) by (rh, rw) sub-filters.
    fill (conv_phases.PhaseSplit) writes an image's phase channels into a zero-bordered (Cq, Hb, Wb)
    buffer, Hb >= Hq and Wb >= Wq (set_buffer)."""

    def __init__(self, C, H, W, K, kh, kw, OH, OW, pads, stride, flip):
        self.C, self.H, self.W, self.K, self.OH, self.OW = C, H, W, K, OH, OW
        self.pads, self.stride, self.flip = tuple(pads), tuple(stride), flip
        self.kh, self.kw = kh, kw
        sh, sw = self.stride
        self.rh, self.rw = _cdiv(kh, sh), _cdiv(kw, sw)
        self.Cq = C * sh * sw
        self.Hq, self.Wq = OH + self.rh - 1, OW + self.rw - 1
        self.nd, self.shifted = 1, False
        self.set_buffer(self.Hq, self.Wq)

    def set_buffer(self, Hb, Wb):
        """Phase channels (Hb, Wb) apart in the buffer fill writes (at least (Hq, Wq))."""
        if Hb < self.Hq or Wb < self.Wq:
            raise ValueError(f"a ({Hb}, {Wb}) buffer cannot hold ({self.Hq}, {self.Wq}) phase channels")
        self.Hb, self.Wb = Hb, Wb
        self.Hp, self.Wr = Hb, Wb
        self.chan_elems = self.stride[0] * self.stride[1] * Hb * Wb

    def taps(self):
        """[(c, r, s, cq, a, b)]: filter tap (r, s) of channel c (as stored: filter_flip applies) and
        the sub-filter tap (a, b) of phase channel cq it is, for every tap of one filter."""
        sh, sw = self.stride
        out = []
        for c in range(self.C):
            for r in range(self.kh):
                for s in range(self.kw):
                    rc, sc = (self.kh - 1 - r, self.kw - 1 - s) if self.flip else (r, s)   # correlation form
                    out.append((c, r, s, c * sh * sw + (rc % sh) * sw + sc % sw, rc // sh, sc // sw))
        return out

    def filter_elems(self):
        return self.K * self.Cq * self.rh * self.rw

    def _tap_loop(self, ctx, body):
        """body(k_times_C_plus_c (i64), [(r, s, cq, a, b)]) per (filter, channel), taps unrolled:
        a filter channel's taps are the same up to the offset c*sh*sw of cq."""
        b = ctx.b
        per_channel = [(r, s, cq, a, bb) for c, r, s, cq, a, bb in self.taps() if c == 0]
        with U.for_range(b, self.K * self.C, name="pk") as kc:
            body(kc, per_channel)

    def _offsets(self, b, kc, r, s, cq, a, bb):
        """(offset of tap (r, s) in the dense filters, offset of (cq, a, bb) in the dense sub-filters)
        for filter-channel pair kc = k*C + c."""
        sh, sw = self.stride
        k = b.udiv(kc, U.i64(self.C))
        c = b.urem(kc, U.i64(self.C))
        src = U.add(b, U.mul(b, kc, self.kh * self.kw), r * self.kw + s)
        cqv = U.add(b, U.add(b, U.mul(b, k, self.Cq), U.mul(b, c, sh * sw)), cq)
        dst = U.add(b, U.mul(b, cqv, self.rh * self.rw), a * self.rw + bb)
        return src, dst

    def emit_filters(self, ctx, w_dense, dst, dtype):
        """dst (dense [K][Cq][rh][rw] of dtype) = the sub-filters of w_dense (dense [K][C][kh][kw]);
        they are in correlation form (a unit-stride plan takes them with flip False)."""
        b = ctx.b
        et = U.ll_type(dtype)
        zero_fill(b, dst, 0, self.filter_elems(), dtype)

        def body(kc, taps):
            for r, s, cq, a, bb in taps:
                src, d = self._offsets(b, kc, r, s, cq, a, bb)
                b.store(b.load(gep(b, w_dense, src, et), typ=et), gep(b, dst, d, et))

        self._tap_loop(ctx, body)

    def emit_filter_grad(self, ctx, gq, gw, dtype, accumulate=False):
        """gw (dense [K][C][kh][kw] of dtype) = (or += with accumulate) the gradient of the filters from
        gq, that of the sub-filters (dense [K][Cq][rh][rw]); the sub-filter taps past the filter are
        dropped."""
        b = ctx.b
        et = U.ll_type(dtype)

        def body(kc, taps):
            for r, s, cq, a, bb in taps:
                src, d = self._offsets(b, kc, r, s, cq, a, bb)
                v = b.load(gep(b, gq, d, et), typ=et)
                out = gep(b, gw, src, et)
                if accumulate:
                    v = b.fadd(b.load(out, typ=et), v)
                b.store(v, out)

        self._tap_loop(ctx, body)
