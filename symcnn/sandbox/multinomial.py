"""MultinomialFromUniform: one multinomial draw per row of pvals from one uniform per row."""
import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from ..tensor.type import TensorType, is_float, normalize_dtype
from ..tensor.var import as_tensor_variable


class MultinomialFromUniform(Op):
    """Theano's op of the same name: out[i] is the one-hot vector of the first outcome m whose
    running sum pvals[i, 0] + ... + pvals[i, m] exceeds unis[i] (all zeros when none does, as
    Theano). The running sum is accumulated in float64, in order, by the reference and the
    native kernel alike, so both pick the same outcome."""

    __props__ = ("odtype",)

    def __init__(self, odtype="int64"):
        self.odtype = normalize_dtype(odtype)

    def make_node(self, pvals, unis):
        pvals = as_tensor_variable(pvals)
        unis = as_tensor_variable(unis)
        if pvals.ndim != 2 or not is_float(pvals.dtype):
            raise TypeError(f"MultinomialFromUniform: pvals must be a float matrix (one row of "
                            f"probabilities per draw), got {pvals.describe()}")
        if unis.ndim != 1 or not is_float(unis.dtype):
            raise TypeError(f"MultinomialFromUniform: unis must be a float vector, got {unis.describe()}")
        rows = pvals.type.shape[0], unis.type.shape[0]
        if None not in rows and rows[0] != rows[1]:
            raise ValueError(f"MultinomialFromUniform: pvals has {rows[0]} rows but unis has {rows[1]} values")
        out = TensorType(self.odtype, shape=(rows[0] if rows[0] is not None else rows[1], pvals.type.shape[1]))()
        return Apply(self, [pvals, unis], [out])

    def perform(self, node, inputs, out):
        pvals, unis = inputs
        if pvals.shape[0] != unis.shape[0]:
            raise ValueError(f"{self}: pvals has {pvals.shape[0]} rows but unis has {unis.shape[0]} values")
        cdf = np.cumsum(pvals.astype(np.float64), axis=1)
        above = cdf > unis.astype(np.float64)[:, None]
        first = np.argmax(above, axis=1)
        res = np.zeros(pvals.shape, dtype=self.odtype)
        hit = above.any(axis=1) if pvals.shape[1] else np.zeros(pvals.shape[0], bool)
        res[np.nonzero(hit)[0], first[hit]] = 1
        out[0][0] = res

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, grads):
        # A sample is not differentiable with respect to its probabilities or its uniforms.
        return [None, None]

    def connection_pattern(self, node):
        return [[False], [False]]
