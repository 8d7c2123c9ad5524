"""IndexMap: stack the results of one inner graph evaluated for i = 0 .. n-1.

What theano.gradient.jacobian/hessian use for rows whose count is known only at run time
(Theano writes them with scan): the inner graph computes row i (e.g. grad(expression[i], wrt))
from i and stand-ins of the variables the rows start from. `row_shape` inputs give each
result's row shape, so the output (n, *row_shape) is allocated before the first row; a row of
another shape is an error. Native code runs the inner graph's kernels in a loop (the native
backend's lowering of IndexMap).
"""
import numpy as np

from .graph.basic import Apply, Constant, Variable, clone_replace, graph_inputs
from .graph.fg import FunctionGraph
from .graph.op import Op
from .ifelse import graph_signature, evaluate
from .tensor.type import TensorType
from .tensor.var import as_tensor_variable


class IndexMap(Op):
    """IndexMap(n, *row dims, *inputs): out[k][i] = inner graph output k at index i."""

    __props__ = ("signature",)

    def __init__(self, fg, row_ndims):
        self.fg = fg  # inputs: [i (int64 scalar), stand-ins of the outer inputs]
        self.row_ndims = tuple(row_ndims)
        self.signature = (graph_signature(fg), self.row_ndims)

    def make_node(self, n, *rest):
        n = as_tensor_variable(n)
        n_dims = sum(self.row_ndims)
        dims = [as_tensor_variable(d) for d in rest[:n_dims]]
        inputs = [as_tensor_variable(v) for v in rest[n_dims:]]
        for v in [n] + dims:
            if v.ndim != 0 or v.dtype != "int64":
                raise TypeError(f"IndexMap: counts and dimensions must be int64 scalars, got {v.describe()}")
        for v, s in zip(inputs, self.fg.inputs[1:]):
            if v.type != s.type:
                raise TypeError(f"IndexMap: input {v.describe()} does not have the type {s.type} of the inner graph")
        n_static = int(n.data) if isinstance(n, Constant) else None
        outs = []
        for out in self.fg.outputs:
            outs.append(TensorType(out.dtype, shape=(n_static,) + out.type.shape)())
        return Apply(self, [n] + dims + inputs, outs)

    def _row_shapes(self, dims):
        shapes, k = [], 0
        for nd in self.row_ndims:
            shapes.append(tuple(int(d) for d in dims[k:k + nd]))
            k += nd
        return shapes

    def perform(self, node, inputs, out):
        n = int(inputs[0])
        n_dims = sum(self.row_ndims)
        shapes = self._row_shapes(inputs[1:1 + n_dims])
        free = inputs[1 + n_dims:]
        results = [np.empty((n,) + s, dtype=v.dtype) for s, v in zip(shapes, node.outputs)]
        for i in range(n):
            rows = evaluate(self.fg, [np.asarray(i, dtype="int64")] + list(free))
            for res, row, s in zip(results, rows, shapes):
                if np.shape(row) != s:
                    raise ValueError(f"IndexMap: row {i} has shape {np.shape(row)}, expected {s}")
                res[i] = row
        for cell, res in zip(out, results):
            cell[0] = res

    def infer_shape(self, node, shapes):
        n_dims = sum(self.row_ndims)
        dims = node.inputs[1:1 + n_dims]
        out, k = [], 0
        for nd in self.row_ndims:
            out.append((node.inputs[0],) + tuple(dims[k:k + nd]))
            k += nd
        return out

    def grad(self, inputs, grads):
        raise NotImplementedError("IndexMap (the rows of a jacobian/hessian of unknown length) has no gradient; "
                                  "give the expression a static length to get an unrolled, differentiable graph")

    def connection_pattern(self, node):
        return [[False] * len(node.outputs)] + [[True] * len(node.outputs) for _ in node.inputs[1:]]


def index_map(n, build, row_shapes):
    """Stack build(i) for i in range(n); `build` returns the list of row expressions, and
    `row_shapes` their shapes (lists of int64 scalars / ints)."""
    from .tensor import basic as B
    i = TensorType("int64", shape=())("i")
    rows = [as_tensor_variable(r) for r in build(i)]
    free = [v for v in dict.fromkeys(graph_inputs(rows))
            if isinstance(v, Variable) and not isinstance(v, Constant) and v.owner is None and v is not i]
    stand_ins = [v.type() for v in free]
    for s, v in zip(stand_ins, free):
        s.name = v.name
    inner = clone_replace(rows, dict(zip(free, stand_ins)))
    fg = FunctionGraph([i] + stand_ins, inner)
    dims = []
    for shp in row_shapes:
        for d in shp:
            d = as_tensor_variable(d) if isinstance(d, Variable) else B.constant(np.asarray(d, dtype="int64"))
            dims.append(d if d.dtype == "int64" else B.cast(d, "int64"))
    n = as_tensor_variable(n)
    n = n if n.dtype == "int64" else B.cast(n, "int64")
    outs = IndexMap(fg, [len(s) for s in row_shapes])(n, *dims, *free)
    return outs if isinstance(outs, list) else [outs]
