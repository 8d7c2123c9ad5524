"""A 'full' convolution (pads of the filter's extent less one, unit stride, undilated) as the
transposed 'valid' one, so that no kernel multiplies the zero border.

Padded by (kh-1, kw-1), an output near the border reads mostly zeros: the kernels of a padded
convolution read the zero-bordered image, and do (H+kh-1)(W+kw-1)/(HW) times the multiplications
that count (2.56x for 7x7 filters on 10x10 images). The three ops of a 'full' convolution are those
of the 'valid' convolution whose input is the full output, with the filters' channels and filters
swapped and flipped the other way:

    conv 'full' (x, W)         = grad_inputs 'valid' (W^T, x)         (scatter: each input read once)
    grad_inputs 'full' (W, g)  = conv 'valid' (g, W^T)                (each output reads only inside g)
    grad_weights 'full' (x, g) = grad_weights 'valid' (g, x)^T        (sums over the H x W inputs only)

with W^T = W.dimshuffle(1, 0, 2, 3) and filter_flip negated. The input gradient always changes (it
was measured as fast or faster everywhere). The weight gradient changes where the input has enough
channels for the transposed one's vectors over them (its filters): MIN_WEIGHT_CHANNELS, or
MIN_WINOGRAD_WEIGHT_CHANNELS with 3x3 and 5x5 filters, whose weight gradient is Winograd's either
way. The forward changes where the bordered output is at least MIN_WASTE times the input and the
input has at least MIN_CHANNELS channels (the depth of the scattering GEMM); elsewhere the forward's
own kernels (Winograd among them) keep it.
"""
import numpy as np

from ..tensor import basic as tb
from ..tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from ..tensor.nnet.conv_geometry import padding
from .core import node_rewrite

# Measured (2 threads, float32, ms, 'full' -> transposed 'valid'; batch, C -> K on HxW, filter):
#   weight gradient: 25, 50 -> 32 on 10x10, 7x7 3.86 -> 1.96; 63, 20 -> 32 3.80 -> 2.41; 1, 96 -> 48
#     on 28x28, 7x7 2.16 -> 1.66; 162, 48 -> 16 on 8x8, 5x5 2.12 -> 1.04; 2, 64 -> 128 on 32x32, 3x3
#     1.02 -> 0.79;
#   input gradient: 25, 50 -> 32 on 10x10, 7x7 3.52 -> 1.58; 63, 20 -> 32 3.57 -> 1.99; five others
#     even (0.69-1.64 ms: their kernels already read no border);
#   forward (bordered / input pixels): 2.25 (8x8, 5x5): 13, 32 -> 64 0.85 -> 0.41, 27, 64 -> 16
#     1.25 -> 0.36, 162, 48 -> 16 2.62 -> 1.41, 3, 64 -> 128 0.76 -> 0.72; 2.56 (10x10, 7x7): 25,
#     50 -> 32 3.53 -> 2.53, 15, 32 -> 16 0.90 -> 0.55, 3, 32 -> 64 0.73 -> 0.69; 1.56 (16x16, 5x5):
#     19, 32 -> 16 1.68 -> 0.50, 4, 32 -> 64 0.81 -> 0.46, 2, 64 -> 64 0.75 -> 0.56; but 63, 20 -> 32
#     (10x10, 7x7, Winograd's) 2.00 -> 2.74, 31, 16 -> 16 0.56 -> 0.59, and a thin border 1.36
#     (12x12, 3x3): 27, 64 -> 64 0.59 -> 0.68. One image (the scatter's threads take shares of its
#     taps): 1.47 (28x28, 7x7) 1, 96 -> 48 2.70 -> 1.77; 1.56 (24x24, 7x7) 1, 64 -> 64 3.28 -> 1.36,
#     1, 64 -> 128 3.38 -> 2.76, 1, 32 -> 64 0.65 -> 0.70; (16x16, 5x5) 1, 64 -> 128 0.78 -> 0.73;
#     2.56 (10x10, 7x7) 1, 32 -> 128 0.65 -> 0.60, 1, 64 -> 128 1.16 -> 1.28.
#   weight gradient with few channels (the transposed one's filters): 256, 1 -> 8 on 24x24, 3x3
#     0.27 -> 1.42 (the few-tap kernel's before), 16, 3 -> 64 on 32x32, 7x7 1.48 -> 6.89, 8, 6 -> 32
#     on 24x24, 7x7 0.48 -> 1.03, 16, 8 -> 48 on 16x16, 7x7 0.99 -> 1.34; 16, 12 -> 48 1.44 -> 1.36;
#     16, 16 -> 48 1.88 -> 1.35; Winograd's 3x3 and 5x5: 64, 4 -> 32 on 24x24 0.70 -> 0.53, 64, 6
#     -> 32 on 16x16 0.39 -> 0.32, 32, 8 -> 64 on 16x16, 5x5 0.98 -> 0.72.
MIN_WASTE = 1.4
MIN_CHANNELS = 24
MIN_WEIGHT_CHANNELS = 16
MIN_WINOGRAD_WEIGHT_CHANNELS = 4


def _plan(node):
    """((C, H, W), (K, kh, kw)) where the rewrite applies, else None."""
    op = node.op
    if op.subsample != (1, 1) or op.filter_dilation != (1, 1):
        return None
    (C, H, W), (K, _, kh, kw) = op.kernel_sizes(node)
    if None in (C, H, W, K, kh, kw) or min(C, H, W, K, kh, kw) < 1 or (kh, kw) == (1, 1):
        return None
    if padding(op.border_mode, kh, kw) != (kh - 1, kw - 1):
        return None
    return (C, H, W), (K, kh, kw)


def _forward_pays(C, H, W, kh, kw):
    return C >= MIN_CHANNELS and (H + kh - 1) * (W + kw - 1) >= MIN_WASTE * H * W


def _weights_pay(C, kh, kw):
    return C >= MIN_WEIGHT_CHANNELS or C >= MIN_WINOGRAD_WEIGHT_CHANNELS and kh == kw and kh in (3, 5)


def _valid(cls, K, OH, OW, C, kh, kw, flip):
    """The transposed convolution's op: its input the (K, OH, OW) full output, its filters (C, K, kh, kw)."""
    return cls(imshp=(None, K, OH, OW), kshp=(C, K, kh, kw), border_mode="valid", filter_flip=not flip)


@node_rewrite("fuse", (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
def full_conv_as_valid(fgraph, node):
    plan = _plan(node)
    if plan is None:
        return None
    (C, H, W), (K, kh, kw) = plan
    op = node.op
    OH, OW = H + kh - 1, W + kw - 1
    if isinstance(op, Conv2d):
        if not _forward_pays(C, H, W, kh, kw):
            return None
        x, w = node.inputs
        out = _valid(Conv2dGradInputs, K, OH, OW, C, kh, kw, op.filter_flip)(
            w.dimshuffle(1, 0, 2, 3), x, tb.constant(np.asarray([OH, OW], dtype="int64")))
    elif isinstance(op, Conv2dGradInputs):
        w, g, _ = node.inputs
        out = _valid(Conv2d, K, OH, OW, C, kh, kw, op.filter_flip)(g, w.dimshuffle(1, 0, 2, 3))
    else:
        if not _weights_pay(C, kh, kw):
            return None
        x, g, _ = node.inputs
        out = _valid(Conv2dGradWeights, K, OH, OW, C, kh, kw, op.filter_flip)(
            g, x, tb.constant(np.asarray([kh, kw], dtype="int64"))).dimshuffle(1, 0, 2, 3)
    if out.dtype != node.outputs[0].dtype:
        out = tb.cast(out, node.outputs[0].dtype)
    return [out]
