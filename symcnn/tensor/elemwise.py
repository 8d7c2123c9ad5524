"""Elemwise (a ScalarOp lifted to tensors with broadcasting) and DimShuffle."""
import math

import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from .type import TensorType, is_float
from .var import as_tensor_variable


class DimShuffle(Op):
    """Reorder dimensions, insert broadcastable ones ('x') and drop length-1 ones."""

    __props__ = ("input_ndim", "new_order")

    def __init__(self, input_ndim, new_order):
        self.input_ndim = int(input_ndim)
        self.new_order = tuple("x" if o == "x" else int(o) for o in new_order)
        kept = [o for o in self.new_order if o != "x"]
        if len(set(kept)) != len(kept):
            raise ValueError(f"dimshuffle pattern {self.new_order} repeats a dimension")
        if any(o < 0 or o >= self.input_ndim for o in kept):
            raise ValueError(f"dimshuffle pattern {self.new_order} names a dimension a "
                             f"{self.input_ndim}-d input does not have")
        self.drop = tuple(i for i in range(self.input_ndim) if i not in kept)
        self.shuffle = tuple(kept)

    def __str__(self):
        return f"DimShuffle{{{','.join(map(str, self.new_order))}}}"

    def make_node(self, x):
        x = as_tensor_variable(x)
        if x.ndim != self.input_ndim:
            raise TypeError(f"{self} expects a {self.input_ndim}-d input, got {x.describe()}")
        for d in self.drop:
            if x.type.shape[d] != 1:
                raise ValueError(f"{self}: cannot drop dimension {d} of {x.describe()}: "
                                 f"it is not known to have length 1 (static shape {x.type.shape})")
        shape = tuple(1 if o == "x" else x.type.shape[o] for o in self.new_order)
        return Apply(self, [x], [TensorType(x.dtype, shape=shape)()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        res = x.transpose(self.shuffle + self.drop).reshape(
            tuple(1 if o == "x" else x.shape[o] for o in self.new_order))
        out[0][0] = res

    def infer_shape(self, node, shapes):
        return [tuple(1 if o == "x" else shapes[0][o] for o in self.new_order)]

    def grad(self, inputs, grads):
        from . import math as T
        x, = inputs
        g, = grads
        if not is_float(x.dtype):
            return [None]
        added = [p for p, o in enumerate(self.new_order) if o == "x"]
        if added:
            g = T.sum(g, axis=added)
        order = ["x" if i in self.drop else self.shuffle.index(i) for i in range(self.input_ndim)]
        return [DimShuffle(g.ndim, order)(g)]


def broadcast_shape(inputs, op):
    out = []
    for dim in range(inputs[0].ndim):
        sizes = {i.type.shape[dim] for i in inputs}
        known = {s for s in sizes if s is not None and s != 1}
        if len(known) > 1:
            desc = ", ".join(i.describe() for i in inputs)
            raise ValueError(f"{op}: shapes do not broadcast in dimension {dim}: {sorted(known)} ({desc})")
        if known:
            out.append(known.pop())
        elif None in sizes:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


class Elemwise(Op):
    """Apply a ScalarOp elementwise, broadcasting dimensions of static length 1.

    As in Theano, a dimension broadcasts only if its type says it has length 1;
    inputs with fewer dimensions get leading broadcastable ones.
    """

    __props__ = ("scalar_op",)

    def __init__(self, scalar_op, name=None):
        self.scalar_op = scalar_op
        self.name = name

    def __str__(self):
        return self.name or f"Elemwise{{{self.scalar_op}}}"

    def __reduce__(self):
        # Module-level instances (T.tanh, T.nnet.sigmoid) stay the same object through pickle.
        if self.name is not None and _REGISTRY.get(self.name) is self:
            return (_registered, (self.name,))
        return (Elemwise, (self.scalar_op, self.name))

    def make_node(self, *inputs):
        if len(inputs) != self.scalar_op.nin:
            raise TypeError(f"{self} takes {self.scalar_op.nin} inputs, got {len(inputs)}")
        inputs = [as_tensor_variable(i) for i in inputs]
        ndim = max(i.ndim for i in inputs)
        inputs = [i if i.ndim == ndim else DimShuffle(i.ndim, ["x"] * (ndim - i.ndim) + list(range(i.ndim)))(i)
                  for i in inputs]
        shape = broadcast_shape(inputs, self)
        dtype = self.scalar_op.out_dtype(*[i.dtype for i in inputs])
        return Apply(self, inputs, [TensorType(dtype, shape=shape)()])

    def perform(self, node, inputs, out):
        out_shape = np.broadcast_shapes(*[np.shape(x) for x in inputs])
        for var, x in zip(node.inputs, inputs):
            for d, (s, want) in enumerate(zip(np.shape(x), out_shape)):
                if s != want and var.type.shape[d] != 1:
                    raise ValueError(f"{self}: input {var.describe()} has length {s} in dimension {d} where the "
                                     f"result has {want}; only dimensions declared broadcastable "
                                     f"(static length 1) broadcast")
        cdt = self.scalar_op.compute_dtype(*[v.dtype for v in node.inputs])
        if cdt is not None:
            inputs = [np.asarray(x, dtype=cdt) for x in inputs]
        with np.errstate(all="ignore"):
            res = self.scalar_op.impl(*inputs)
        out[0][0] = np.asarray(res, dtype=node.outputs[0].dtype).reshape(out_shape)

    def infer_shape(self, node, shapes):
        from .basic import broadcast_dim
        return [tuple(broadcast_dim([s[d] for s in shapes], [i.type.shape[d] for i in node.inputs])
                      for d in range(node.outputs[0].ndim))]

    def flops(self, input_shapes, output_shapes=None):
        """One per output element and scalar op (the steps of a fused Composite)."""
        steps = getattr(self.scalar_op, "steps", None)
        out = output_shapes[0] if output_shapes else np.broadcast_shapes(*map(tuple, input_shapes))
        return math.prod(int(d) for d in out) * (len(steps) if steps else 1)

    def grad(self, inputs, grads):
        from . import math as T
        out = self(*inputs)
        g, = grads
        raw = self.scalar_op.grad(inputs, out, g)
        result = []
        for x, gx in zip(inputs, raw):
            # An integer input gets the float gradient it would have as a float (Theano's rule).
            if gx is None or not is_float(gx.dtype):
                result.append(None)
                continue
            axes = [d for d in range(x.ndim) if x.type.shape[d] == 1 and gx.type.shape[d] != 1]
            if axes:
                gx = T.sum(gx, axis=axes, keepdims=True)
            if is_float(x.dtype) and gx.dtype != x.dtype:
                gx = T.cast(gx, x.dtype)
            result.append(gx)
        return result


_REGISTRY = {}


def register(name, scalar_op):
    """A named module-level Elemwise; pickles by name, so identity survives."""
    op = Elemwise(scalar_op, name=name)
    _REGISTRY[name] = op
    return op


def _registered(name):
    return _REGISTRY[name]
