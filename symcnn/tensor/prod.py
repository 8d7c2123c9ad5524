"""T.prod (Theano's Prod, with its gradient that handles zeros) and ProdWithoutZeros."""
import numpy as np

from .basic import cast, zeros_like
from .math import Reduce, Sum, check_acc_dtype, keep_dims, normalize_axis, eq, neq, switch
from .math import sum as sum_
from .type import is_float
from .var import as_tensor_variable


class Prod(Reduce):
    """Product over `axis`. `no_zeros_in_input` promises no zero, which allows the cheaper
    gradient prod / x (Theano's flag)."""

    __props__ = ("axis", "dtype", "no_zeros_in_input")

    def __init__(self, axis, dtype=None, no_zeros_in_input=False):
        super().__init__(axis)
        self.dtype = dtype
        self.no_zeros_in_input = bool(no_zeros_in_input)

    def __str__(self):
        return f"{type(self).__name__}{{axis={self.axis}}}"

    def out_dtype(self, dtype):
        # Theano's rule, the same as Sum's: small ints accumulate in int64 / uint64
        return Sum(self.axis, self.dtype).out_dtype(dtype)

    def perform(self, node, inputs, out):
        out[0][0] = np.asarray(np.prod(inputs[0], axis=self.axis, dtype=node.outputs[0].dtype))

    def grad(self, inputs, grads):
        x, = inputs
        gz, = grads
        if not is_float(x.dtype):
            return [None]
        if not is_float(self.out_dtype(x.dtype)):  # an integer product: no gradient flows (Theano)
            return [zeros_like(x)]
        prod_out = self._expand(self(x), x.ndim)
        gz = self._expand(gz, x.ndim)
        # Where a group has no zero, d prod / dx_i = prod / x_i.
        without_zeros = gz * prod_out / x
        if self.no_zeros_in_input:
            return [cast(without_zeros, x.dtype)]
        # A group with one zero: only the zero gets a gradient, the product of the others.
        # A group with two or more zeros: every gradient is 0.
        where_zeros = eq(x, 0.0)
        zeros_per_group = sum_(where_zeros, axis=self.axis)
        single_zero_group = self._expand(eq(zeros_per_group, 1), x.ndim)
        where_single_zero = single_zero_group * where_zeros
        # the product of the others is only computed in single-zero groups with a nonzero gradient
        take = single_zero_group * neq(gz, 0.0)
        others = self._expand(ProdWithoutZeros(self.axis)(take * x), x.ndim)
        no_zero_group = self._expand(eq(zeros_per_group, 0), x.ndim)
        g = switch(no_zero_group, without_zeros, switch(where_single_zero, others, 0.0) * gz)
        return [cast(g, x.dtype)]


class ProdWithoutZeros(Reduce):
    """Product of the nonzero elements over `axis` (1 if all are zero); used by Prod's gradient."""

    def perform(self, node, inputs, out):
        x = inputs[0]
        out[0][0] = np.asarray(np.prod(np.where(x == 0, np.ones_like(x), x), axis=self.axis),
                               dtype=node.outputs[0].dtype)

    def grad(self, inputs, grads):
        from ..gradient_ops import grad_not_implemented
        return [grad_not_implemented(self, 0, inputs[0], "2nd derivatives of `prod` are not implemented")]


def prod(input, axis=None, dtype=None, keepdims=False, acc_dtype=None, no_zeros_in_input=False):
    """Theano's T.prod: the product over `axis` (all axes by default). `dtype` is the result's
    dtype, `acc_dtype` the accumulator's; `no_zeros_in_input=True` promises the input has no
    zero, for a cheaper gradient (a wrong promise gives NaN gradients)."""
    x = as_tensor_variable(input)
    axis = normalize_axis(axis, x.ndim, "prod")
    if acc_dtype is None:
        return keep_dims(x, Prod(axis, dtype, no_zeros_in_input)(x), axis, keepdims)
    check_acc_dtype(x, acc_dtype, "prod")
    total = Prod(axis, acc_dtype, no_zeros_in_input)(x)
    out_dtype = dtype if dtype is not None else Prod(axis).out_dtype(x.dtype)
    return keep_dims(x, cast(total, out_dtype), axis, keepdims)
