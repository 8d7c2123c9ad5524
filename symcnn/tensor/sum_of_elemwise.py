"""SumOfElemwise: a Sum whose input, an elementwise program, is computed as the sum reads it.

    SumOfElemwise(program, sum)(x_1..x_n) = sum(Elemwise(program)(x_1..x_n))

The fuse-phase rewrite fuse_sum_prologue (symcnn/rewrite/fusion.py) builds it where the Sum is
the only reader of the Elemwise's result: that result (often as large as a layer's activations,
as in a batch norm's backward `sum(-g * xc / std)`) is then never written and read back. `expand()`
rebuilds the plain Elemwise + Sum graph, which `grad` differentiates.
"""
import math

import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from .blas import eval_elementwise
from .composite import Composite
from .elemwise import Elemwise, broadcast_shape
from .math import Sum
from .type import TensorType
from .var import as_tensor_variable


class SumOfElemwise(Op):
    """sum(program(inputs...)) with `sum` a Sum op (its axis and dtype) and `program` a Composite."""

    __props__ = ("program", "sum")

    def __init__(self, program, sum):
        if not isinstance(program, Composite):
            raise ValueError(f"SumOfElemwise: program must be a Composite, got {program!r}")
        if not isinstance(sum, Sum):
            raise ValueError(f"SumOfElemwise: sum must be a Sum op, got {sum!r}")
        self.program, self.sum = program, sum

    @property
    def axis(self):
        return self.sum.axis

    def __str__(self):
        return f"SumOfElemwise{{{self.program.name}, axis={self.sum.axis}}}"

    __repr__ = __str__

    def elemwise_type(self, inputs):
        """The type of the elementwise result the sum reads."""
        ndim = max(i.ndim for i in inputs)
        if any(i.ndim != ndim for i in inputs):
            raise TypeError("inputs must have the same number of dimensions, got "
                            + ", ".join(i.describe() for i in inputs))
        return TensorType(self.program.out_dtype(*[i.dtype for i in inputs]),
                          shape=broadcast_shape(inputs, str(self)))

    def make_node(self, *inputs):
        if len(inputs) != self.program.nin:
            raise TypeError(f"{self} takes {self.program.nin} inputs, got {len(inputs)}")
        inputs = [as_tensor_variable(i) for i in inputs]
        summed = self.sum.make_node(self.elemwise_type(inputs)()).outputs[0]
        return Apply(self, inputs, [summed.type()])

    def expand(self, inputs):
        """The same computation as an Elemwise and a Sum node (what the rewrite fused)."""
        return self.sum(Elemwise(self.program)(*inputs))

    def perform(self, node, inputs, out):
        etype = self.elemwise_type(node.inputs)
        values = eval_elementwise(self.program, node.inputs, inputs, etype.dtype, str(self))
        out[0][0] = np.asarray(np.sum(values, axis=self.sum.axis, dtype=node.outputs[0].dtype))

    def infer_shape(self, node, shapes):
        from .basic import broadcast_dim
        full = [broadcast_dim([s[d] for s in shapes], [v.type.shape[d] for v in node.inputs])
                for d in range(node.inputs[0].ndim)]
        return [tuple(s for d, s in enumerate(full) if d not in self.sum.axis)]

    def flops(self, input_shapes, output_shapes=None):
        """One per element and scalar step, one per element for the sum."""
        n = math.prod(int(d) for d in np.broadcast_shapes(*map(tuple, input_shapes)))
        return n * (len(self.program.steps) + 1)

    def grad(self, inputs, grads):
        from ..gradient import grad_of_expansion
        return grad_of_expansion(self.expand, inputs, grads)
