"""Dilated (atrous) convolution as Theano's filter_dilation: a filter dilated by (dh, dw) has
dh - 1 rows and dw - 1 columns of zeros between its taps, so conv2d with filter_dilation is
conv2d with the zero-inserted filter. Built from broadcasting, reshape and slicing, it lowers
natively through those ops and differentiates through them."""
import numpy as np

from ..var import as_tensor_variable, constant
from .. import basic as B


def dilated_size(k, d):
    """The extent of a k-tap filter dilated by d: (k - 1) * d + 1 (None if k is unknown)."""
    if k is None:
        return None
    return (k - 1) * d + 1


def _spread_last(w, d):
    """Insert d - 1 zeros between the entries of w's last axis."""
    if d == 1:
        return w
    taps = w.shape[w.ndim - 1]
    one_hot = constant(np.eye(1, d, dtype=w.dtype)[0])  # [1, 0, ..., 0]
    spread = B.dimshuffle(w, *range(w.ndim), "x") * one_hot
    lead = [w.shape[i] for i in range(w.ndim - 1)]
    flat = B.reshape(spread, lead + [taps * d], ndim=w.ndim)
    return flat[(slice(None),) * (w.ndim - 1) + (slice(None, (taps - 1) * d + 1),)]


def dilate_filters(filters, filter_dilation):
    """The (nkern, channels, (kh-1)*dh+1, (kw-1)*dw+1) filter equivalent to `filters` dilated."""
    w = as_tensor_variable(filters)
    dh, dw = filter_dilation
    w = _spread_last(w, dw)
    if dh != 1:
        w = B.dimshuffle(_spread_last(B.dimshuffle(w, 0, 1, 3, 2), dh), 0, 1, 3, 2)
    return w


def dilate_shape(shape, filter_dilation):
    """A filter_shape (4 entries, ints or None) of the dilated filter."""
    if shape is None:
        return None
    shape = list(shape)
    if len(shape) != 4:
        return shape
    dh, dw = filter_dilation
    return shape[:2] + [s if not isinstance(s, (int, np.integer)) else dilated_size(int(s), d)
                        for s, d in zip(shape[2:], (dh, dw))]
