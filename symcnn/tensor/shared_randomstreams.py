"""Theano's `theano.tensor.shared_randomstreams.RandomStreams`, on the Philox generator.

`from symcnn.tensor.shared_randomstreams import RandomStreams` replaces Theano's import. Each
draw method makes a stream whose state is a shared variable advanced by the function that draws
(its default update); see random_streams.py. The numbers are Philox4x32-10's, not numpy
RandomState's: the same seed gives the same numbers in every mode and on any number of threads,
but not the numbers Theano gave.
"""
import numpy as np

from .basic import cast, reshape
from .join import concatenate
from .math import int_div
from .raw_random import as_size
from .scalar_constant import NotScalarConstantError, get_scalar_constant_value
from .sort import argsort
from .random_streams import RandomStreamsBase, keep_stream
from .raw_random import UniformDraw
from .type import is_int, normalize_dtype
from .var import as_tensor_variable

__all__ = ["RandomStreams"]


class RandomStreams(RandomStreamsBase):
    """Module component with an interface like numpy.random.RandomState (Theano's docstring)."""

    def __init__(self, seed=None):
        super().__init__(seed)

    def uniform(self, size=None, low=0.0, high=1.0, ndim=None, dtype=None):
        """Floats in (low, high) (Philox's uniforms never reach either bound)."""
        return self._uniform(size, low, high, ndim, dtype)

    def normal(self, size=None, avg=0.0, std=1.0, ndim=None, dtype=None):
        return self._normal(size, avg, std, ndim, dtype)

    def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype="int64", prob=None):
        if prob is not None:  # Theano's deprecated name of p
            p = prob
        return self._binomial(size, n, p, ndim, dtype, "RandomStreams")

    def random_integers(self, size=None, low=0, high=1, ndim=None, dtype="int64"):
        """Integers in [low, high], both included (Theano's semantics)."""
        low, high = as_tensor_variable(low), as_tensor_variable(high)
        return self._integers(size, low, high + 1, ndim, dtype)

    def choice(self, size=None, a=2, replace=True, p=None, ndim=None, dtype="int64"):
        """Elements of range(a) (an int a) drawn uniformly with replacement; with p, drawn with
        those probabilities; with replace=False, prod(size) distinct elements (numpy's choice):
        the first ones of a permutation of range(a), shaped as size (size None: one element)."""
        if not replace:
            if p is not None:
                raise NotImplementedError("RandomStreams.choice: replace=False together with p is not supported")
            return self._choice_distinct(size, a, ndim, dtype)
        if p is not None:
            if size is not None:
                raise NotImplementedError("RandomStreams.choice: size together with p is not supported")
            onehot = self._multinomial(None, 1, p, None, "int64", "RandomStreams")
            from .math import argmax
            return cast(argmax(onehot), dtype)
        a = as_tensor_variable(a)
        if a.ndim != 0:
            raise NotImplementedError("RandomStreams.choice: a must be an integer (choose from range(a))")
        return self._integers(size, 0, a, ndim, dtype)

    def multinomial(self, size=None, n=1, pvals=[0.5, 0.5], ndim=None, dtype="int64"):
        return self._multinomial(size, n, pvals, ndim, dtype, "RandomStreams")

    def permutation(self, size=None, n=1, ndim=None, dtype="int64"):
        """Theano's: permutations of range(n), one for each element of `size`, shape size + (n,)
        (size None or (): one permutation, shape (n,)). Each is the stable argsort of n uniform
        float64 draws of the stream (ties, which almost never happen, keep their order)."""
        n = as_tensor_variable(n)
        if n.ndim != 0 or not is_int(n.dtype):
            raise TypeError(f"RandomStreams.permutation: n must be an integer scalar, got {n.describe()}")
        if size is None:
            size = ()
        size_vec, nd = as_size(size, ndim)
        full = concatenate([size_vec, reshape(cast(n, "int64"), (1,))])
        u = self._draw(UniformDraw, full, nd + 1, "float64")
        return keep_stream(u, cast(argsort(u, axis=-1), normalize_dtype(dtype)))

    def _choice_distinct(self, size, a, ndim, dtype):
        a = as_tensor_variable(a)
        if a.ndim != 0 or not is_int(a.dtype):
            raise NotImplementedError("RandomStreams.choice: a must be an integer (choose from range(a))")
        scalar = size is None
        size_vec, nd = as_size((1,) if scalar else size, None if scalar else ndim)
        k = as_tensor_variable(np.int64(1))
        for d in range(nd):
            k = k * size_vec[d]
        try:
            a_value, k_value = int(get_scalar_constant_value(a)), int(get_scalar_constant_value(k))
        except NotScalarConstantError:
            pass  # known at run time only: a larger sample fails in the reshape below
        else:
            if k_value > a_value:
                raise ValueError(f"RandomStreams.choice: cannot take {k_value} distinct elements from "
                                 f"range({a_value}) (replace=False)")
        perm = self.permutation(n=a, dtype=dtype)
        picked = perm[:k].reshape(() if scalar else size_vec, ndim=0 if scalar else nd)
        return keep_stream(perm, picked)

    def _integers(self, size, low, stop, ndim, dtype):
        """floor(low + u * (stop - low)) in [low, stop), u uniform float64 in (0, 1)."""
        low, stop = as_tensor_variable(low), as_tensor_variable(stop)
        dtype = normalize_dtype(dtype)
        if size is None:
            from .random_streams import bcast_size
            size = bcast_size(low, stop)
        u = self._draw(UniformDraw, size, ndim, "float64")
        lo64 = cast(low, "float64")
        span = cast(stop, "float64") - lo64
        return keep_stream(u, cast(int_div(lo64 + u * span, np.float64(1.0)), dtype))
