"""T.nnet.relu, with Theano's definition (so its gradient at 0 is Theano's too: 0.5 for alpha=0)."""
from .. import math as M
from ..var import as_tensor_variable


def relu(x, alpha=0):
    """max(x, alpha * x) for alpha < 1, written as Theano writes it:
    0.5 * (x + abs(x)) for alpha == 0, else 0.5 * (1 + alpha) * x + 0.5 * (1 - alpha) * abs(x)."""
    x = as_tensor_variable(x)
    if isinstance(alpha, (int, float)) and alpha == 0:
        return 0.5 * (x + M.abs_(x))
    alpha = as_tensor_variable(alpha)
    f1 = 0.5 * (1 + alpha)
    f2 = 0.5 * (1 - alpha)
    return f1 * x + f2 * M.abs_(x)
