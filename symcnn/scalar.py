"""Elementwise math, defined once per scalar operation.

A ScalarOp knows its numpy implementation, its dtype rule and its gradient
(written with tensor operations on the broadcast shape). `Elemwise` lifts it to
tensors; fusion later combines ScalarOps into one loop.
"""
import numpy as np

from .tensor.type import is_float, upcast


def upgrade_to_float(dtype):
    """Theano's rule for transcendental functions of integers."""
    if is_float(dtype):
        return dtype
    return "float32" if dtype in ("bool", "int8", "uint8", "int16", "uint16") else "float64"


class ScalarOp:
    nin = 1
    name = None
    impl = None

    def out_dtype(self, *dtypes):
        return upcast(*dtypes)

    def compute_dtype(self, *dtypes):
        """The dtype the inputs are converted to before `impl` runs."""
        return self.out_dtype(*dtypes)

    def grad(self, inputs, output, g):
        raise NotImplementedError(f"{self.name} has no gradient")

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.__dict__.items()))))

    def __str__(self):
        return self.name or type(self).__name__.lower()

    __repr__ = __str__


class UnaryFloat(ScalarOp):
    """Transcendental: integer inputs are computed in float."""

    def out_dtype(self, d):
        return upgrade_to_float(d)


def _t():
    from .tensor import math
    return math


class Add(ScalarOp):
    nin, name, impl = 2, "add", staticmethod(np.add)

    def grad(self, inputs, output, g):
        return [g, g]


class Sub(ScalarOp):
    nin, name, impl = 2, "sub", staticmethod(np.subtract)

    def grad(self, inputs, output, g):
        return [g, -g]


class Mul(ScalarOp):
    nin, name, impl = 2, "mul", staticmethod(np.multiply)

    def grad(self, inputs, output, g):
        a, b = inputs
        return [g * b, g * a]


class TrueDiv(ScalarOp):
    nin, name, impl = 2, "true_div", staticmethod(np.true_divide)

    def out_dtype(self, a, b):
        # integer / integer gives floatX, under either cast policy (Theano's TrueDiv)
        if not is_float(a) and not is_float(b):
            from .config import config
            return config.floatX
        return upcast(a, b)

    def compute_dtype(self, a, b):
        # integers are divided in float64, then rounded once to floatX (Theano's TrueDiv.impl)
        if not is_float(a) and not is_float(b):
            return "float64"
        return self.out_dtype(a, b)

    def grad(self, inputs, output, g):
        a, b = inputs
        return [g / b, -g * output / b]


class IntDiv(ScalarOp):
    nin, name, impl = 2, "int_div", staticmethod(np.floor_divide)

    def grad(self, inputs, output, g):
        return [None, None]


class Mod(ScalarOp):
    nin, name, impl = 2, "mod", staticmethod(np.mod)

    def grad(self, inputs, output, g):
        return [None, None]


class Pow(ScalarOp):
    nin, name, impl = 2, "pow", staticmethod(np.power)

    def grad(self, inputs, output, g):
        a, b = inputs
        T = _t()
        ga = g * b * a ** (b - 1)
        gb = g * output * T.log(a) if is_float(b.dtype) else None
        return [ga, gb]


class Maximum(ScalarOp):
    nin, name, impl = 2, "maximum", staticmethod(np.maximum)

    def grad(self, inputs, output, g):
        T = _t()
        a, b = inputs
        # Theano 1.0: at a tie the whole gradient goes to the first input.
        first = T.cast(T.eq(output, a), g.dtype)
        return [g * first, g * (1 - first)]


class Minimum(Maximum):
    nin, name, impl = 2, "minimum", staticmethod(np.minimum)


class Neg(ScalarOp):
    name, impl = "neg", staticmethod(np.negative)

    def grad(self, inputs, output, g):
        return [-g]


class Abs(ScalarOp):
    name, impl = "abs", staticmethod(np.abs)

    def grad(self, inputs, output, g):
        return [g * _t().sgn(inputs[0])]


class Sgn(ScalarOp):
    name, impl = "sgn", staticmethod(np.sign)

    def grad(self, inputs, output, g):
        return [None]


class Sqr(ScalarOp):
    name, impl = "sqr", staticmethod(np.square)

    def grad(self, inputs, output, g):
        return [g * 2 * inputs[0]]


class Exp(UnaryFloat):
    name, impl = "exp", staticmethod(np.exp)

    def grad(self, inputs, output, g):
        return [g * output]


class Log(UnaryFloat):
    name, impl = "log", staticmethod(np.log)

    def grad(self, inputs, output, g):
        return [g / inputs[0]]


class Sqrt(UnaryFloat):
    name, impl = "sqrt", staticmethod(np.sqrt)

    def grad(self, inputs, output, g):
        return [g * 0.5 / output]


class Tanh(UnaryFloat):
    name, impl = "tanh", staticmethod(np.tanh)

    def grad(self, inputs, output, g):
        return [g * (1 - output * output)]


def _sigmoid(x):
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


class Sigmoid(UnaryFloat):
    name, impl = "sigmoid", staticmethod(lambda x: _sigmoid(np.asarray(x)))

    def grad(self, inputs, output, g):
        return [g * output * (1 - output)]


class Compare(ScalarOp):
    nin = 2

    def out_dtype(self, a, b):
        return "bool"

    def compute_dtype(self, a, b):
        return upcast(a, b)

    def grad(self, inputs, output, g):
        return [None, None]


class EQ(Compare): name, impl = "eq", staticmethod(np.equal)
class NEQ(Compare): name, impl = "neq", staticmethod(np.not_equal)
class LT(Compare): name, impl = "lt", staticmethod(np.less)
class LE(Compare): name, impl = "le", staticmethod(np.less_equal)
class GT(Compare): name, impl = "gt", staticmethod(np.greater)
class GE(Compare): name, impl = "ge", staticmethod(np.greater_equal)


class Switch(ScalarOp):
    nin, name = 3, "switch"

    @staticmethod
    def impl(c, a, b):
        return np.where(c, a, b)

    def out_dtype(self, c, a, b):
        return upcast(a, b)

    def compute_dtype(self, c, a, b):
        return None  # each input keeps its dtype; np.where upcasts

    def grad(self, inputs, output, g):
        T = _t()
        c = inputs[0]
        zero = T.zeros_like(g)
        return [None, T.switch(c, g, zero), T.switch(c, zero, g)]


class Second(ScalarOp):
    """second(a, b): b broadcast to the shape of a (Theano's `fill`)."""

    nin, name = 2, "second"

    @staticmethod
    def impl(a, b):
        return np.broadcast_to(b, np.broadcast_shapes(np.shape(a), np.shape(b))).copy()

    def out_dtype(self, a, b):
        return b

    def compute_dtype(self, a, b):
        return None

    def grad(self, inputs, output, g):
        return [None, g]


class Identity(ScalarOp):
    name = "identity"
    impl = staticmethod(lambda x: np.array(x, copy=True))

    def grad(self, inputs, output, g):
        return [g]


class Cast(ScalarOp):
    def __init__(self, dtype):
        self.dtype = dtype
        self.name = f"cast{{{dtype}}}"

    def impl(self, x):
        return np.asarray(x).astype(self.dtype)

    def out_dtype(self, d):
        return self.dtype

    def compute_dtype(self, d):
        return None

    def grad(self, inputs, output, g):
        x = inputs[0]
        if not is_float(self.dtype):
            return [None]
        # From an integer input the float gradient passes unchanged (Theano's rule).
        return [_t().cast(g, x.dtype) if is_float(x.dtype) else g]


add, sub, mul, true_div, int_div, mod, pow_ = Add(), Sub(), Mul(), TrueDiv(), IntDiv(), Mod(), Pow()
maximum, minimum, neg, abs_, sgn, sqr = Maximum(), Minimum(), Neg(), Abs(), Sgn(), Sqr()
exp, log, sqrt, tanh, sigmoid = Exp(), Log(), Sqrt(), Tanh(), Sigmoid()
eq, neq, lt, le, gt, ge = EQ(), NEQ(), LT(), LE(), GT(), GE()
switch, second, identity = Switch(), Second(), Identity()


class Clip(ScalarOp):
    """Theano's clip(x, min, max): min where x < min, else max where x > max, else x (so min
    wins when min > max). The gradient goes to exactly one of the three at each element."""

    nin, name = 3, "clip"

    @staticmethod
    def impl(x, lo, hi):
        return np.where(x < lo, lo, np.where(x > hi, hi, x))

    def grad(self, inputs, output, g):
        T = _t()
        x, lo, hi = inputs
        inside = T.cast(T.ge(x, lo), g.dtype) * T.cast(T.le(x, hi), g.dtype)
        return [g * inside, g * T.cast(T.lt(x, lo), g.dtype), g * T.cast(T.gt(x, hi), g.dtype)]


clip = Clip()
