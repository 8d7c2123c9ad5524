"""Integer pairs and integer arithmetic for shape formulas.

The formulas are written once and evaluated on Python ints,
on symbolic int scalars (infer_shape) and, through an object with the same methods, on the
native backend's IR values (the backend supplies that object).

The formulas in nnet/conv_geometry.py and signal/pool_geometry.py take such an object; this
one is the default."""
import builtins

import numpy as np

from ..graph.basic import Variable


def int_pair(value, what, minimum, expected="a pair of ints"):
    """value (any 2-sequence of ints) as a tuple of 2 Python ints >= minimum; errors name `what`."""
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{what} must be {expected}, got {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                 for v in pair):
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    pair = tuple(int(v) for v in pair)
    if any(v < minimum for v in pair):
        raise ValueError(f"{what} entries must be >= {minimum}, got {pair}")
    return pair


class ScalarArith:
    """Python ints and symbolic int scalars (Python operators; max and select go through
    symcnn.tensor.math when a value is symbolic)."""

    @staticmethod
    def add(x, y):
        return x + y

    @staticmethod
    def sub(x, y):
        return x - y

    @staticmethod
    def mul(x, y):
        return x * y

    @staticmethod
    def floordiv(x, y):
        return x // y

    @staticmethod
    def max0(x):
        """max(x, 0)."""
        if isinstance(x, Variable):
            from . import math as T
            return T.maximum(x, 0)
        return builtins.max(x, 0)

    @staticmethod
    def select_ge(x, y, a, b):
        """a where x >= y, else b."""
        if isinstance(x, Variable) or isinstance(y, Variable):
            from . import math as T
            return T.switch(T.ge(x, y), a, b)
        return a if x >= y else b

    @staticmethod
    def if_positive(n, v):
        """v where n > 0, else 0."""
        if isinstance(n, Variable):
            from . import math as T
            return T.switch(T.gt(n, 0), v, 0)
        return v if n > 0 else 0


SCALAR = ScalarArith()
