"""PhaseSplit and PhaseMerge: a batch of images cut into the phases of a lattice and put back
(space-to-batch and batch-to-space, as TensorFlow's atrous convolution uses them).

With dilation (dh, dw), padding (ph, pw) and phases of (Hs, Ws):

    PhaseSplit:  P[b*dh*dw + r*dw + s, c, a, q] = X[b, c, dh*a + r - ph, dw*q + s - pw]   (0 outside X)
    PhaseMerge:  X[b, c, i, j] = P[b*dh*dw + r*dw + s, c, a, q]   where (a, r) = divmod(i + ph, dh),
                                 (q, s) = divmod(j + pw, dw)   (0 where a >= Hs or q >= Ws)

Each is the other's adjoint, so each one's gradient is the other. A dilated convolution is an
undilated one over the phases (symcnn/rewrite/dilated.py). X's rows and columns (H, W) are part of
the op: the merge cannot know them from P.
"""
import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..type import TensorType
from ..var import as_tensor_variable


def _pair(v, what, minimum):
    v = tuple(int(a) for a in v)
    if len(v) != 2 or min(v) < minimum:
        raise ValueError(f"{what} must be 2 integers >= {minimum}, got {v}")
    return v


class _Phases(Op):
    __props__ = ("dilation", "pad", "image_hw", "phase_hw")

    def __init__(self, dilation, pad, image_hw, phase_hw):
        self.dilation = _pair(dilation, "dilation", 1)
        self.pad = _pair(pad, "pad", 0)
        self.image_hw = _pair(image_hw, "image_hw", 1)
        self.phase_hw = _pair(phase_hw, "phase_hw", 1)

    @property
    def count(self):
        return self.dilation[0] * self.dilation[1]

    def _check(self, x, hw, what):
        x = as_tensor_variable(x)
        if x.ndim != 4:
            raise TypeError(f"{self}: {what} {x.describe()} must be a 4-d tensor (batch, channels, rows, cols)")
        for d, want in zip((2, 3), hw):
            if x.type.shape[d] not in (None, want):
                raise ValueError(f"{self}: {what} {x.describe()} has {x.type.shape[d]} in dimension {d}, "
                                 f"expected {want}")
        return x

    def _check_value(self, node, v, hw, what):
        if v.ndim != 4 or tuple(v.shape[2:]) != tuple(hw):
            raise ValueError(f"{self}: {what} {node.inputs[0].describe()} has shape {v.shape}, expected "
                             f"(batch, channels, {hw[0]}, {hw[1]})")

    def _padded(self):
        """(rows, cols) of the image's part inside the phases' extent."""
        (dh, dw), (ph, pw), (H, W), (Hs, Ws) = self.dilation, self.pad, self.image_hw, self.phase_hw
        return max(0, min(H, dh * Hs - ph)), max(0, min(W, dw * Ws - pw))


class PhaseSplit(_Phases):
    """(B, C, H, W) -> (B*dh*dw, C, Hs, Ws): the padded images' phases."""

    def make_node(self, x):
        x = self._check(x, self.image_hw, "input")
        B, C = x.type.shape[:2]
        return Apply(self, [x], [TensorType(x.dtype, shape=(None if B is None else B * self.count, C)
                                            + self.phase_hw)()])

    def perform(self, node, inputs, out):
        x, = inputs
        self._check_value(node, x, self.image_hw, "input")
        (dh, dw), (ph, pw), (Hs, Ws) = self.dilation, self.pad, self.phase_hw
        B, C = x.shape[:2]
        n, m = self._padded()
        z = np.zeros((B, C, dh * Hs, dw * Ws), dtype=x.dtype)
        if ph < dh * Hs and pw < dw * Ws:
            z[:, :, ph:ph + n, pw:pw + m] = x[:, :, :n, :m]
        z = z.reshape(B, C, Hs, dh, Ws, dw).transpose(0, 3, 5, 1, 2, 4)
        out[0][0] = np.ascontiguousarray(z).reshape(B * dh * dw, C, Hs, Ws)

    def infer_shape(self, node, shapes):
        B, C, _, _ = shapes[0]
        return [(B * self.count, C) + self.phase_hw]

    def grad(self, inputs, grads):
        return [PhaseMerge(self.dilation, self.pad, self.image_hw, self.phase_hw)(grads[0])]


class PhaseMerge(_Phases):
    """(B*dh*dw, C, Hs, Ws) -> (B, C, H, W): the phases back in place, the padding cut off."""

    def make_node(self, p):
        p = self._check(p, self.phase_hw, "phases")
        n, C = p.type.shape[:2]
        if n is not None and n % self.count:
            raise ValueError(f"{self}: the phases {p.describe()} number {n}, not a multiple of {self.count}")
        return Apply(self, [p], [TensorType(p.dtype, shape=(None if n is None else n // self.count, C)
                                            + self.image_hw)()])

    def perform(self, node, inputs, out):
        p, = inputs
        self._check_value(node, p, self.phase_hw, "phases")
        if p.shape[0] % self.count:
            raise ValueError(f"{self}: the phases {node.inputs[0].describe()} number {p.shape[0]}, not a "
                             f"multiple of {self.count}")
        (dh, dw), (ph, pw), (H, W), (Hs, Ws) = self.dilation, self.pad, self.image_hw, self.phase_hw
        B, C = p.shape[0] // self.count, p.shape[1]
        z = p.reshape(B, dh, dw, C, Hs, Ws).transpose(0, 3, 4, 1, 5, 2).reshape(B, C, dh * Hs, dw * Ws)
        n, m = self._padded()
        x = np.zeros((B, C, H, W), dtype=p.dtype)
        x[:, :, :n, :m] = z[:, :, ph:ph + n, pw:pw + m]
        out[0][0] = x

    def infer_shape(self, node, shapes):
        from .. import math as T
        n, C, _, _ = shapes[0]
        return [(T.int_div(n, self.count), C) + self.image_hw]

    def grad(self, inputs, grads):
        return [PhaseSplit(self.dilation, self.pad, self.image_hw, self.phase_hw)(grads[0])]
