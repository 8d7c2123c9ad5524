"""Numerical stability rewrites (Theano's local_log_softmax and
local_advanced_indexing_crossentropy_onehot(_grad)).

* log_softmax: log(softmax(x)) -> LogSoftmax(x).
* crossentropy_softmax (forward): log(softmax(z))[arange(len(y)), y] (or LogSoftmax(z)[...])
  -> -CrossEntropySoftmax(z, y): no log of every probability, no -inf when one underflows.
* crossentropy_softmax_grad (backward): what T.grad builds for that selection,
      SoftmaxGrad(AdvancedIncSubtensor(zeros_like(..), gsel, arange(len(y)), y) / softmax(z), softmax(z))
  -> CrossEntropySoftmaxGrad(gsel, z, y): (onehot - softmax) * gsel, no division by the
  probabilities.

The patterns are matched exactly (row index arange(len(y)) with start 0 and step 1, the labels
as the column index, a scatter-add into zeros of z's shape); anything else is left alone.
"""
import numpy as np

from ..graph.basic import Constant
from ..tensor.basic import ARange, Shape_i
from ..tensor.elemwise import Elemwise
from ..tensor.math import neg
from ..tensor.nnet.basic import (LogSoftmax, Softmax, SoftmaxGrad, crossentropy_softmax,
                                 crossentropy_softmax_grad, log_softmax)
from ..tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor
from .canonicalize import const_value
from .core import node_rewrite

from .. import scalar as ts


def _elemwise(v, scalar_cls):
    """v's node if v is the output of an Elemwise of `scalar_cls`, else None."""
    node = v.owner
    if node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, scalar_cls):
        return node
    return None


def _softmax_input(v):
    """z if v is Softmax(z), else None."""
    node = v.owner
    return node.inputs[0] if node is not None and isinstance(node.op, Softmax) else None


def _log_softmax_input(v):
    """z if v is LogSoftmax(z) or log(Softmax(z)), else None."""
    node = v.owner
    if node is None:
        return None
    if isinstance(node.op, LogSoftmax):
        return node.inputs[0]
    if _elemwise(v, ts.Log) is not None:
        return _softmax_input(node.inputs[0])
    return None


def _int_const(v):
    if isinstance(v, Constant) and np.ndim(v.data) == 0 and np.asarray(v.data).dtype.kind in "iu":
        return int(v.data)
    return None


def _is_len_of(stop, y):
    """stop is len(y): Shape_i(0)(y), or a constant / Shape_i(0) of something with y's static length."""
    n = y.type.shape[0]
    node = stop.owner
    if node is not None and isinstance(node.op, Shape_i) and node.op.i == 0:
        src = node.inputs[0]
        return src is y or (n is not None and src.ndim >= 1 and src.type.shape[0] == n)
    k = _int_const(stop)
    return k is not None and n is not None and k == n


def _is_row_range(rows, y):
    """rows is arange(len(y)): ARange(0, len(y), 1), or its constant-folded value."""
    if rows.ndim != 1 or rows.dtype == "bool" or rows.dtype[0] not in "iu":
        return False
    node = rows.owner
    if node is not None and isinstance(node.op, ARange):
        start, stop, step = node.inputs
        return _int_const(start) == 0 and _int_const(step) == 1 and _is_len_of(stop, y)
    if isinstance(rows, Constant):
        n = y.type.shape[0]
        data = np.asarray(rows.data)
        return n is not None and data.shape == (n,) and np.array_equal(data, np.arange(n))
    return False


def _onehot_indices(indices):
    """(rows, y) if indices are exactly [arange(len(y)), y] with y an integer vector, else None."""
    if len(indices) != 2:
        return None
    rows, y = indices
    if y.ndim != 1 or y.dtype == "bool" or y.dtype[0] not in "iu":
        return None
    return (rows, y) if _is_row_range(rows, y) else None


def _rows_fit(z, y):
    """Not statically more labels than rows (then the original raises at run time: keep it)."""
    m, n = z.type.shape[0], y.type.shape[0]
    return m is None or n is None or n <= m


@node_rewrite("stabilize", [Elemwise], name="log_softmax")
def log_softmax_rewrite(fgraph, node):
    """log(softmax(x)) -> LogSoftmax(x)."""
    if not isinstance(node.op.scalar_op, ts.Log):
        return None
    x = _softmax_input(node.inputs[0])
    if x is None or node.outputs[0].type != node.inputs[0].type:
        return None
    return [log_softmax(x)]



@node_rewrite("stabilize", [AdvancedSubtensor], name="crossentropy_softmax")
def crossentropy_softmax_rewrite(fgraph, node):
    """log_softmax(z)[arange(len(y)), y] -> -CrossEntropySoftmax(z, y)."""
    if node.op.idx_list != ("array", "array"):
        return None
    z = _log_softmax_input(node.inputs[0])
    if z is None or z.ndim != 2:
        return None
    match = _onehot_indices(node.inputs[1:])
    if match is None:
        return None
    _, y = match
    if not _rows_fit(z, y):
        return None
    new = neg(crossentropy_softmax(z, y))
    if not node.outputs[0].type.is_compatible(new.type):
        return None
    return [new]


def _zeros_shaped_like(v, z, sm):
    """v is zeros of z's shape: second(w, 0) with w one of z, softmax(z), log(softmax(z)),
    LogSoftmax(z) (the gradient's zeros_like), or a constant zero array of z's static shape."""
    if isinstance(v, Constant):
        data = np.asarray(v.data)
        return data.shape == z.type.shape and not data.any()
    fill = _elemwise(v, ts.Second)
    if fill is None:
        return False
    w, zero = fill.inputs
    if const_value(zero) != 0 or not isinstance(zero, Constant):
        return False
    if any(d != 1 for d in np.shape(zero.data)):
        return False  # (zeros_like fills with a scalar; a larger constant could change the shape)
    same = w is z or w is sm or _softmax_input(w) is z or _log_softmax_input(w) is z
    return same and w.ndim == 2 and v.ndim == 2


@node_rewrite("stabilize", [SoftmaxGrad], name="crossentropy_softmax_grad")
def crossentropy_softmax_grad_rewrite(fgraph, node):
    """SoftmaxGrad(AdvancedIncSubtensor(zeros, gsel, arange(len(y)), y) / softmax(z), softmax(z))
    -> CrossEntropySoftmaxGrad(gsel, z, y)."""
    dy, sm = node.inputs
    z = _softmax_input(sm)
    if z is None or z.ndim != 2:
        return None
    div = _elemwise(dy, ts.TrueDiv)
    if div is None:
        return None
    num, den = div.inputs
    if not (den is sm or _softmax_input(den) is z):
        return None
    inc = num.owner
    if inc is None or not isinstance(inc.op, AdvancedIncSubtensor) or inc.op.set_instead_of_inc \
            or inc.op.idx_list != ("array", "array"):
        return None
    zeros, gsel = inc.inputs[:2]
    match = _onehot_indices(inc.inputs[2:])
    if match is None:
        return None
    _, y = match
    if not _zeros_shaped_like(zeros, z, sm) or gsel.ndim > 1 or gsel.dtype[0] != "f":
        return None
    # Types along the way: nothing broadcast, nothing upcast beyond z's dtype.
    for v in (num, dy, sm):
        if v.type.broadcastable != z.type.broadcastable:
            return None
    if num.dtype != z.dtype or dy.dtype != z.dtype or node.outputs[0].dtype != z.dtype:
        return None
    if not _rows_fit(z, y):
        return None
    if gsel.ndim == 1 and gsel.type.shape[0] not in (None, 1) and y.type.shape[0] not in (None, gsel.type.shape[0]):
        return None
    new = crossentropy_softmax_grad(gsel, z, y)
    if not node.outputs[0].type.is_compatible(new.type):
        return None
    return [new]
