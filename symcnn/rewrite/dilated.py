"""A dilated unit-stride convolution as an undilated one over the input's phases (the atrous
convolution by space-to-batch).

With taps d apart, output row d*a + r reads only padded input rows d*(a + i) + r: the rows of
phase r. So the padded input, cut into its dh*dw phases (every dh-th row from r, every dw-th column
from s), is a batch of dh*dw times as many images, each convolved 'valid' with the same, undilated
filters; the outputs' phases, put back in place, are the dilated convolution's output:

    x (B, C, H, W) -> zeros (B, C, dh*Hs, dw*Ws), x at (ph, pw) -> (B*dh*dw, C, Hs, Ws)
    y = conv 'valid' (B*dh*dw, K, Hs-kh+1, Ws-kw+1) -> (B, K, dh*(Hs-kh+1), dw*(Ws-kw+1))[:OH, :OW]

Hs = ceil((H + 2*ph) / dh) (the padded rows rounded up to whole phases; the rows past them are zero
and the outputs they reach are cut off). Both gradients follow the same way: the weight gradient is
the undilated one over the phase batch (its sum over the images is the sum over the phases); the
input gradient is a 'valid' forward convolution of the output gradient's phases padded by the
filters' extent, with the filters' channels and filters swapped (and flipped the other way), for
the phase rows and columns that land inside the input only, put back in place.

The undilated convolutions then take every kernel an undilated convolution has (Winograd, the
direct kernels, on both cores), where a dilated one has only the kernel with vectors over filters
and the direct kernels with the taps dilation apart. The phases cost two copies of the input (and of
the output), and pay where Winograd takes the phases, which needs many channels: only convolutions
with at least MIN_CHANNELS channels and filters change, with static channels, filter and image sizes
(the batch may stay open).
Strided dilated convolutions keep their kernels.
"""
import numpy as np

from ..tensor import basic as tb
from ..tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from ..tensor.nnet.conv_geometry import padding
from ..tensor.nnet.phases import PhaseMerge, PhaseSplit
from .core import node_rewrite

# Fewer channels or filters than this, or phases with fewer output rows or columns than
# MIN_PHASE_OUTPUTS, keep the dilated kernels: the two copies of the phases are then a large share of
# the work, and small phase images waste the undilated kernels' tiles. Measured (2 threads, float32,
# ms, forward / input gradient / weight gradient, dilated kernels -> phases, AVX-512): 32->32 'half'
# on 32x32 with dilation 2 (batch 32, 16x16 outputs a phase, Winograd) 2.1 / 4.6 / 4.1 -> 1.8 / 3.5 /
# 3.6 (AVX2 code: 3.2 / 6.7 / 6.7 -> 3.7 / 4.4 / 4.2); but 16->32 on 32x32 'valid' with dilation 2
# 1.7 / 2.3 / 1.9 -> 1.7 / 2.4 / 2.3, 16->32 'half' on 24x24 with dilation 3 1.2 / 1.7 / 1.4 -> 1.5 /
# 1.9 / 1.7, 8->16 on 32x32 'valid' 0.6 / 0.9 / 0.75 -> 1.0 / 1.4 / 1.3 (AVX2 likewise).
MIN_CHANNELS = 32
MIN_PHASE_OUTPUTS = 8


def _plan(node):
    """((C, H, W), (K, kh, kw), (ph, pw), (dh, dw), (Hs, Ws)) where the rewrite applies, else None."""
    op = node.op
    if op.filter_dilation == (1, 1) or op.subsample != (1, 1):
        return None
    (C, H, W), (K, _, kh, kw) = op.kernel_sizes(node)
    if None in (C, H, W, K, kh, kw) or min(C, K) < MIN_CHANNELS:
        return None
    dh, dw = op.filter_dilation
    ph, pw = padding(op.border_mode, kh, kw, dilation=(dh, dw))
    if H + 2 * ph < (kh - 1) * dh + 1 or W + 2 * pw < (kw - 1) * dw + 1:
        return None   # no output (the op reports it)
    Hs, Ws = -(-(H + 2 * ph) // dh), -(-(W + 2 * pw) // dw)
    if min(Hs - kh, Ws - kw) + 1 < MIN_PHASE_OUTPUTS:
        return None
    return (C, H, W), (K, kh, kw), (ph, pw), (dh, dw), (Hs, Ws)


def _undilated(op, cls, imshp, kshp, border_mode="valid", flip=None):
    return cls(imshp=(None,) + imshp, kshp=kshp, border_mode=border_mode,
               filter_flip=op.filter_flip if flip is None else flip)


@node_rewrite("specialize", (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
def dilated_conv_by_phases(fgraph, node):
    plan = _plan(node)
    if plan is None:
        return None
    (C, H, W), (K, kh, kw), pads, d, (Hs, Ws) = plan
    op = node.op
    OH, OW = H + 2 * pads[0] - (kh - 1) * d[0], W + 2 * pads[1] - (kw - 1) * d[1]
    A, Aw = Hs - kh + 1, Ws - kw + 1   # a phase's outputs
    if isinstance(op, Conv2d):
        x, w = node.inputs
        yp = _undilated(op, Conv2d, (C, Hs, Ws), (K, C, kh, kw))(PhaseSplit(d, pads, (H, W), (Hs, Ws))(x), w)
        out = PhaseMerge(d, (0, 0), (OH, OW), (A, Aw))(yp)
    elif isinstance(op, Conv2dGradInputs):
        # the transposed convolution of the output gradient's phases: a 'full' one with the filters'
        # channels and filters swapped (and flipped the other way), written as a 'valid' one over
        # phases padded by the filters' extent (the forward's kernels), for the phase rows and
        # columns that land inside the input only (from lo to hi)
        w, g, _ = node.inputs
        lo = [min(p // dd, k - 1) for p, dd, k in zip(pads, d, (kh, kw))]
        hi = [min(-(-(n + p) // dd), m) for n, p, dd, m in zip((H, W), pads, d, (Hs, Ws))]
        n_out = (hi[0] - lo[0], hi[1] - lo[1])
        gp = PhaseSplit(d, ((kh - 1 - lo[0]) * d[0], (kw - 1 - lo[1]) * d[1]), (OH, OW),
                        (n_out[0] + kh - 1, n_out[1] + kw - 1))(g)
        gxp = _undilated(op, Conv2d, (K, n_out[0] + kh - 1, n_out[1] + kw - 1), (C, K, kh, kw), "valid",
                         not op.filter_flip)(gp, w.dimshuffle(1, 0, 2, 3))
        out = PhaseMerge(d, (pads[0] - d[0] * lo[0], pads[1] - d[1] * lo[1]), (H, W), n_out)(gxp)
    else:
        x, g, _ = node.inputs
        out = _undilated(op, Conv2dGradWeights, (C, Hs, Ws), (K, C, kh, kw))(
            PhaseSplit(d, pads, (H, W), (Hs, Ws))(x), PhaseSplit(d, (0, 0), (OH, OW), (A, Aw))(g),
            tb.constant(np.asarray([kh, kw], dtype="int64")))
    if out.dtype != node.outputs[0].dtype:
        out = tb.cast(out, node.outputs[0].dtype)
    return [out]
