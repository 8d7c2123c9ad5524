"""T.var and T.std, written as Theano 1.0 writes them (two-pass: centre, then mean of squares)."""
import numpy as np

from ..graph.trace import user_trace, with_trace
from .basic import shape
from .math import mean, sqrt, sum, true_div
from .var import as_tensor_variable


def _axes(axis, ndim, who):
    if axis is None:
        return list(range(ndim))
    if isinstance(axis, (int, np.integer)) or (isinstance(axis, np.ndarray) and axis.ndim == 0):
        axis = [int(axis)]
    out = []
    for a in axis:
        if not -max(ndim, 1) <= int(a) < max(ndim, 1):
            raise ValueError(with_trace(f"{who}: axis {a} is out of range for a {ndim}-d tensor", user_trace()))
        out.append(int(a) % max(ndim, 1))
    return out


def _check_ddof(ddof, who):
    if isinstance(ddof, bool):
        # Theano 1.0 moved keepdims after ddof; a bool here is an old call's keepdims
        raise ValueError(with_trace(f"{who}: ddof={ddof!r} is a bool; keepdims is now the 4th argument: "
                                    f"(input, axis=None, ddof=0, keepdims=False, corrected=False)", user_trace()))


def var(input, axis=None, ddof=0, keepdims=False, corrected=False):
    """Variance over `axis`; `ddof` is subtracted from the count (ddof=1: the unbiased estimate);
    `corrected=True` subtracts the rounding error of the mean (the corrected two-pass algorithm).
    As in Theano, with ddof != 0 the sum is divided by an int64 length, so float32 gives float64."""
    _check_ddof(ddof, "var")
    input = as_tensor_variable(input)
    axis = _axes(axis, input.ndim, "var")
    centered = input - mean(input, axis, keepdims=True)
    two = as_tensor_variable(np.asarray(2, dtype=centered.dtype))
    if ddof == 0:
        v = mean(centered ** two, axis, keepdims=keepdims)
    else:
        shp = shape(input) - ddof
        v = sum(centered ** two, axis=axis, keepdims=keepdims)
        for i in axis:
            v = true_div(v, shp[i])
    if corrected:
        if ddof == 0:
            error = mean(centered, axis, keepdims=keepdims) ** 2
        else:
            shp, shp_inp = shape(input) - ddof, shape(input)
            error = sum(centered, axis=axis, keepdims=keepdims) ** 2
            for i in axis:
                error = true_div(error, shp[i] * shp_inp[i])
        v = v - error
    v.name = "var"
    return v


def std(input, axis=None, ddof=0, keepdims=False, corrected=False):
    """sqrt(var(...)): the standard deviation with the same arguments."""
    _check_ddof(ddof, "std")
    ret = sqrt(var(input=input, axis=axis, ddof=ddof, keepdims=keepdims, corrected=corrected))
    ret.name = "std"
    return ret
