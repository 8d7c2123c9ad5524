"""The gradient-shaping identities (zero_grad, grad_clip, ...): a view of their input.
The canonicalizer normally removes them; this lowering serves graphs compiled without it."""
from symcnn.gradient_ops import GradientViewOp

from ..lower import Array, lower


def _identity_view(node, contig):
    return True, contig[0]


@lower.register(GradientViewOp, view=_identity_view)
def lower_gradient_view_op(ctx, node, ins):
    x, = ins
    if x.contiguous:
        return [Array(x.dtype, x.ptr, x.shape, b=ctx.b)]
    return [Array(x.dtype, x.ptr, x.shape, x.strides)]
