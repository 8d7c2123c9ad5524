"""Products of N-d tensors, written with the 2-d Dot, reshapes and reductions (as Theano
writes its own): numpy-style N-d T.dot, T.tensordot, T.batched_dot, T.batched_tensordot."""
import numpy as np

from ..graph.trace import user_trace, with_trace
from . import basic as B
from . import math as M
from .var import as_tensor_variable


def _dim(x, i):
    st = x.type.shape[i]
    return st if st is not None else B.shape(x)[i]


def _prod(dims):
    out = 1
    for d in dims:
        out = out * d
    return out


def _normalize_axes(a, b, axes, who):
    trace = user_trace()
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(with_trace(f"{who}: axes={n} must be between 0 and the operands' ndim "
                                        f"({a.describe()}, {b.describe()})", trace))
        return list(range(a.ndim - n, a.ndim)), list(range(n))
    try:
        a_axes, b_axes = axes
    except (TypeError, ValueError):
        raise TypeError(with_trace(f"{who}: axes must be an int or a pair of axis lists, got {axes!r}", trace)) \
            from None
    a_axes = [a_axes] if isinstance(a_axes, (int, np.integer)) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, (int, np.integer)) else list(b_axes)
    if len(a_axes) != len(b_axes):
        raise ValueError(with_trace(f"{who}: {len(a_axes)} axes of a but {len(b_axes)} axes of b", trace))
    for axes_, x in ((a_axes, a), (b_axes, b)):
        for k in axes_:
            if not -x.ndim <= k < x.ndim:
                raise ValueError(with_trace(f"{who}: axis {k} is out of range for {x.describe()}", trace))
    a_axes = [int(k) % a.ndim for k in a_axes]
    b_axes = [int(k) % b.ndim for k in b_axes]
    for ka, kb in zip(a_axes, b_axes):
        sa, sb = a.type.shape[ka], b.type.shape[kb]
        if sa is not None and sb is not None and sa != sb:
            raise ValueError(with_trace(f"{who}: summed axes differ in length: axis {ka} of {a.describe()} "
                                        f"has {sa}, axis {kb} of {b.describe()} has {sb}", trace))
    return a_axes, b_axes


def tensordot(a, b, axes=2):
    """numpy.tensordot: sum over `axes` (an int n: the last n of a with the first n of b; or a
    pair of axis lists); the result has a's free axes then b's."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    a_axes, b_axes = _normalize_axes(a, b, axes, "tensordot")
    a_free = [d for d in range(a.ndim) if d not in a_axes]
    b_free = [d for d in range(b.ndim) if d not in b_axes]
    a_free_dims = [_dim(a, d) for d in a_free]
    b_free_dims = [_dim(b, d) for d in b_free]
    summed = _prod([_dim(a, d) for d in a_axes])
    a2 = B.reshape(B.dimshuffle(a, *(a_free + a_axes)), [_prod(a_free_dims), summed], ndim=2)
    b2 = B.reshape(B.dimshuffle(b, *(b_axes + b_free)), [summed, _prod(b_free_dims)], ndim=2)
    out = M.dot(a2, b2)
    dims = a_free_dims + b_free_dims
    if not dims:
        return B.reshape(out, B.constant(np.zeros((0,), dtype="int64")), ndim=0)
    return B.reshape(out, dims, ndim=len(dims))


def nd_dot(a, b):
    """numpy.dot for operands of any ndim: the last axis of a with the second-to-last of b
    (the last if b is a vector); scalars multiply."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return tensordot(a, b, [[a.ndim - 1], [max(0, b.ndim - 2)]])


def batched_dot(a, b):
    """Theano's batched_dot: for each i along the first (batch) axis, dot(a[i], b[i]).
    Vectors are taken as one number per batch entry (an elementwise product); operands of
    more than 3 dimensions go through batched_tensordot."""
    trace = user_trace()
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        raise TypeError(with_trace(f"batched_dot: both operands need a batch axis, got {a.describe()} and "
                                   f"{b.describe()}", trace))
    sa, sb = a.type.shape[0], b.type.shape[0]
    if sa is not None and sb is not None and sa != sb:
        raise ValueError(with_trace(f"batched_dot: batch sizes differ: {a.describe()} and {b.describe()}", trace))
    if a.ndim == 1:
        return B.dimshuffle(a, *([0] + ["x"] * (b.ndim - 1))) * b
    if b.ndim == 1:
        return a * B.dimshuffle(b, *([0] + ["x"] * (a.ndim - 1)))
    if a.ndim > 3 or b.ndim > 3:
        return batched_tensordot(a, b, [[a.ndim - 1], [max(1, b.ndim - 2)]])
    return _batched_matmul(a, b)


def _batched_matmul(a, b):
    """(B, n, k) x (B, k, m) -> (B, n, m); a 2-d operand is (B, k) (one row / one column)."""
    k_a, k_b = a.type.shape[-1], b.type.shape[1]
    if k_a is not None and k_b is not None and k_a != k_b:
        raise ValueError(with_trace(f"batched_dot: inner dimensions differ: {a.describe()} and {b.describe()}",
                                    user_trace()))
    a3 = a if a.ndim == 3 else B.dimshuffle(a, 0, "x", 1)
    b3 = b if b.ndim == 3 else B.dimshuffle(b, 0, 1, "x")
    prod = B.dimshuffle(a3, 0, 1, 2, "x") * B.dimshuffle(b3, 0, "x", 1, 2)
    out = M.sum(prod, axis=2)
    drop = [0] + ([1] if a.ndim == 3 else []) + ([2] if b.ndim == 3 else [])
    return B.dimshuffle(out, *drop) if len(drop) < 3 else out


def batched_tensordot(x, y, axes=2):
    """Theano's batched_tensordot: tensordot of x[i] and y[i] for each i of the first axis;
    `axes` count the batch axis (an int n sums the last n axes of x with axes 1..n of y)."""
    x, y = as_tensor_variable(x), as_tensor_variable(y)
    trace = user_trace()
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        x_axes, y_axes = list(range(x.ndim - n, x.ndim)), list(range(1, n + 1))
    else:
        x_axes, y_axes = _normalize_axes(x, y, axes, "batched_tensordot")
    if 0 in x_axes or 0 in y_axes:
        raise ValueError(with_trace("batched_tensordot: the batch axis 0 cannot be summed", trace))
    x_free = [d for d in range(1, x.ndim) if d not in x_axes]
    y_free = [d for d in range(1, y.ndim) if d not in y_axes]
    batch = _dim(x, 0)
    x_free_dims = [_dim(x, d) for d in x_free]
    y_free_dims = [_dim(y, d) for d in y_free]
    summed = _prod([_dim(x, d) for d in x_axes])
    x3 = B.reshape(B.dimshuffle(x, *([0] + x_free + x_axes)), [batch, _prod(x_free_dims), summed], ndim=3)
    y3 = B.reshape(B.dimshuffle(y, *([0] + y_axes + y_free)), [batch, summed, _prod(y_free_dims)], ndim=3)
    out = _batched_matmul(x3, y3)
    dims = [batch] + x_free_dims + y_free_dims
    return B.reshape(out, dims, ndim=len(dims))
