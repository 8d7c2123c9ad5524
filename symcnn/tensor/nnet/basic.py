"""Softmax (row-wise) and the sigmoid re-export."""
import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..math import sigmoid  # noqa: F401  (T.nnet.sigmoid is the same object as T.sigmoid)
from ..type import TensorType, is_float
from ..var import as_tensor_variable


class Softmax(Op):
    """softmax over the last axis of a vector or matrix, computed stably."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        if x.ndim not in (1, 2):
            raise TypeError(f"softmax takes a vector or a matrix, got {x.describe()}")
        if not is_float(x.dtype):
            raise TypeError(f"softmax takes floats, got {x.describe()}")
        return Apply(self, [x], [TensorType(x.dtype, shape=x.type.shape)()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        out[0][0] = (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)

    def infer_shape(self, node, shapes):
        return shapes

    def grad(self, inputs, grads):
        from .. import math as T
        sm = self(inputs[0])
        g, = grads
        return [sm * (g - T.sum(g * sm, axis=-1, keepdims=True))]


softmax_op = Softmax()


def softmax(c):
    return softmax_op(c)
