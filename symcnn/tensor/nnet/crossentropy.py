"""Theano's cross-entropy helpers: binary_crossentropy and categorical_crossentropy.

categorical_crossentropy with integer labels is written as the tutorial's selection
-log(p)[arange(len(y)), y]; when p is softmax(z), the stabilize rewrites
(symcnn/rewrite/stabilize.py: log_softmax, crossentropy_softmax, crossentropy_softmax_grad)
turn it and its gradient into the fused CrossEntropySoftmax ops, as Theano's
crossentropy_to_crossentropy_with_softmax does for its crossentropy_categorical_1hot.
"""
from ...graph.trace import user_trace, with_trace
from .. import basic as B
from .. import math as M
from ..type import is_float, is_int
from ..var import as_tensor_variable


def binary_crossentropy(output, target):
    """-(target * log(output) + (1 - target) * log(1 - output)), elementwise (Theano's formula)."""
    output, target = as_tensor_variable(output), as_tensor_variable(target)
    if not is_float(output.dtype):
        raise TypeError(with_trace(f"binary_crossentropy: output must be probabilities (floats), got "
                                   f"{output.describe()}", user_trace()))
    return -(target * M.log(output) + (1.0 - target) * M.log(1.0 - output))


def categorical_crossentropy(coding_dist, true_dist):
    """Per row: -sum(true_dist * log(coding_dist)) when true_dist is a matrix of probabilities
    (one-hot or not), or -log(coding_dist[i, true_dist[i]]) when true_dist is a vector of
    integer class labels. coding_dist: a matrix of predicted probabilities (rows sum to 1)."""
    trace = user_trace()
    p, t = as_tensor_variable(coding_dist), as_tensor_variable(true_dist)
    if not is_float(p.dtype):
        raise TypeError(with_trace(f"categorical_crossentropy: coding_dist must hold probabilities "
                                   f"(floats), got {p.describe()}", trace))
    if t.ndim == p.ndim:
        return -M.sum(t * M.log(p), axis=p.ndim - 1)
    if t.ndim == p.ndim - 1 and p.ndim == 2:
        if not is_int(t.dtype):
            raise TypeError(with_trace(f"categorical_crossentropy: a vector true_dist holds integer class "
                                       f"labels, got {t.describe()}", trace))
        rows = B.arange(B.shape(t)[0])
        return -(M.log(p)[rows, t])
    raise TypeError(with_trace(f"categorical_crossentropy: true_dist must be a matrix of probabilities or a "
                               f"vector of labels for the matrix coding_dist {p.describe()}, got "
                               f"{t.describe()}", trace))
