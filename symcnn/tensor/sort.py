"""Theano's theano.tensor.sort: T.sort and T.argsort along one axis.

Both sort stably (numpy's kind='stable'): equal keys keep their order, whatever `kind` asks, so
the reference and native modes agree on ties; NaNs go last, as numpy puts them. `axis` is a
Python int or None (sort the flattened tensor); Theano also accepts a symbolic axis, symcnn does
not. `order` (for structured arrays) must be None: tensors here have no fields.
"""
import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from .basic import arange, dimshuffle, flatten
from .type import TensorType
from .var import as_tensor_variable

__all__ = ["SortOp", "ArgSortOp", "sort", "argsort"]

KINDS = ("quicksort", "mergesort", "heapsort", "stable")


class _AxisSort(Op):
    """Common to SortOp and ArgSortOp: one axis (a non-negative int), the input's shape."""

    __props__ = ("axis",)

    def __init__(self, axis):
        self.axis = int(axis)

    def _check(self, x):
        if x.ndim == 0 or not 0 <= self.axis < x.ndim:
            raise ValueError(f"{type(self).__name__}: axis {self.axis} is out of range for {x.describe()} "
                             f"({x.ndim} dimensions)")

    def infer_shape(self, node, shapes):
        return [shapes[0]]


class SortOp(_AxisSort):
    """x sorted along `axis` (ascending, NaNs last)."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        self._check(x)
        return Apply(self, [x], [TensorType(x.dtype, shape=x.type.shape)()])

    def perform(self, node, inputs, out):
        out[0][0] = np.sort(inputs[0], axis=self.axis, kind="stable")

    def grad(self, inputs, grads):
        # sorted = x[perm] along the axis, so each input element gets the gradient of the place
        # it was sorted to: g_x = g_sorted[inverse perm], the inverse of a permutation being its
        # argsort
        x, = inputs
        g, = grads
        perm = ArgSortOp(self.axis)(x)
        inverse = ArgSortOp(self.axis)(perm)
        return [take_along_axis(g, inverse, self.axis)]


class ArgSortOp(_AxisSort):
    """The int64 indices that sort x along `axis` (stable; NaNs last)."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        self._check(x)
        return Apply(self, [x], [TensorType("int64", shape=x.type.shape)()])

    def perform(self, node, inputs, out):
        out[0][0] = np.asarray(np.argsort(inputs[0], axis=self.axis, kind="stable"), dtype="int64")

    def grad(self, inputs, grads):
        # connected, with a zero gradient: Theano's ArgSortOp.grad gives inp.zeros_like()
        return [None]


def take_along_axis(x, idx, axis):
    """numpy.take_along_axis(x, idx, axis) for idx of x's shape, by advanced indexing: the axis
    is moved last, the other dimensions flattened into rows, and row r reads x[r, idx[r, :]]."""
    nd = x.ndim
    order = [d for d in range(nd) if d != axis] + [axis]
    back = [order.index(d) for d in range(nd)]
    xm, im = dimshuffle(x, *order), dimshuffle(idx, *order)
    n = xm.shape[nd - 1]
    x2, i2 = xm.reshape((-1, n)), im.reshape((-1, n))
    rows = dimshuffle(arange(x2.shape[0]), 0, "x")
    return dimshuffle(x2[rows, i2].reshape(xm.shape), *back)


def _prepare(a, axis, kind, order, who):
    a = as_tensor_variable(a)
    if kind not in KINDS:
        raise ValueError(f"{who}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if order is not None:
        raise ValueError(f"{who}: order is for arrays with fields; {a.describe()} has none (give order=None)")
    if axis is None:
        return flatten(a), 0
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{who}: axis must be a Python int or None, got {type(axis).__name__}")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"{who}: axis {axis} is out of range for {a.describe()} ({a.ndim} dimensions)")
    return a, int(axis) % a.ndim


def sort(a, axis=-1, kind="quicksort", order=None):
    """Theano's T.sort: a sorted along axis (None: the flattened a). Stable whatever `kind`."""
    a, axis = _prepare(a, axis, kind, order, "sort")
    return SortOp(axis)(a)


def argsort(a, axis=-1, kind="quicksort", order=None):
    """Theano's T.argsort: int64 indices sorting a along axis (None: the flattened a). Stable
    whatever `kind` (ties keep their order)."""
    a, axis = _prepare(a, axis, kind, order, "argsort")
    return ArgSortOp(axis)(a)
