"""Theano's gradient-shaping ops (theano.gradient): identities in the forward pass whose
gradient is zero, disconnected, clipped or scaled, and the helpers an op's grad uses to say
that a gradient is undefined or not implemented."""
import numpy as np

from .graph.basic import Apply
from .graph.op import Op
from .gradient_types import DisconnectedType, NullType
from .tensor.var import as_tensor_variable


class GradientViewOp(Op):
    """Forward: the input unchanged (a view; the canonicalizer removes it before code
    generation). Subclasses define only how the gradient passes."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, out):
        out[0][0] = np.array(inputs[0], copy=True)

    def infer_shape(self, node, shapes):
        return [shapes[0]]


class ZeroGrad(GradientViewOp):
    """The gradient through it is zero (still connected)."""

    def grad(self, inputs, grads):
        from .tensor.basic import zeros_like
        return [zeros_like(grads[0])]


class ConsiderConstant(ZeroGrad):
    """Theano's consider_constant(x) op: like ZeroGrad, named for the old keyword."""


class DisconnectedGrad(GradientViewOp):
    """The cost does not depend on the input through it (its gradient is disconnected)."""

    def grad(self, inputs, grads):
        return [DisconnectedType()()]

    def connection_pattern(self, node):
        return [[False]]


class GradClip(GradientViewOp):
    """The gradient through it is clipped to [clip_lower_bound, clip_upper_bound]."""

    __props__ = ("clip_lower_bound", "clip_upper_bound")

    def __init__(self, clip_lower_bound, clip_upper_bound):
        self.clip_lower_bound = float(clip_lower_bound)
        self.clip_upper_bound = float(clip_upper_bound)
        if not self.clip_upper_bound >= self.clip_lower_bound:
            raise ValueError("grad_clip: the upper bound must be >= the lower bound, got "
                             f"[{clip_lower_bound}, {clip_upper_bound}]")

    def grad(self, inputs, grads):
        from .tensor.math import clip
        return [clip(grads[0], self.clip_lower_bound, self.clip_upper_bound)]


class GradScale(GradientViewOp):
    """The gradient through it is multiplied by `multiplier`."""

    __props__ = ("multiplier",)

    def __init__(self, multiplier):
        self.multiplier = multiplier

    def _props(self):
        m = self.multiplier
        return (m if np.isscalar(m) else id(m),)

    def grad(self, inputs, grads):
        return [grads[0] * self.multiplier]


zero_grad_ = ZeroGrad()
consider_constant_ = ConsiderConstant()
disconnected_grad_ = DisconnectedGrad()


def zero_grad(x):
    """x in the forward pass; its gradient is zero."""
    return zero_grad_(x)


def consider_constant(x):
    """x in the forward pass; treated as a constant by grad (its gradient is zero)."""
    return consider_constant_(x)


def disconnected_grad(x):
    """x in the forward pass; grad treats the cost as not depending on x through it."""
    return disconnected_grad_(x)


def grad_clip(x, lower_bound, upper_bound):
    """x in the forward pass; the gradient flowing back through it is clipped to the bounds."""
    return GradClip(lower_bound, upper_bound)(x)


def grad_scale(x, multiplier):
    """x in the forward pass; the gradient flowing back through it is multiplied by `multiplier`."""
    return GradScale(multiplier)(x)


def grad_not_implemented(op, x_pos, x, comment=""):
    """What an op's grad returns for input `x_pos` when that gradient is not implemented:
    a NullType variable; grad() raises NullTypeGradError if the cost's gradient needs it."""
    return NullType(f"This variable is Null because the grad method for input {x_pos} ({x}) of the {op} op "
                    f"is not implemented. {comment}")()


def grad_undefined(op, x_pos, x, comment=""):
    """What an op's grad returns for input `x_pos` when that gradient is mathematically undefined."""
    return NullType(f"This variable is Null because the grad method for input {x_pos} ({x}) of the {op} op "
                    f"is mathematically undefined. {comment}")()
