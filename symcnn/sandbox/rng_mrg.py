"""Theano's `theano.sandbox.rng_mrg.MRG_RandomStreams`, on the Philox generator.

`from symcnn.sandbox.rng_mrg import MRG_RandomStreams` replaces Theano's import; the methods take
Theano's arguments (nstreams is accepted and ignored: every element already has its own Philox
counter, so no stream count needs choosing). The generator is Philox4x32-10, not MRG31k3p: a seed
gives reproducible numbers in every mode and on any number of threads, not the numbers Theano gave.
"""
from ..tensor.random_streams import RandomStreamsBase

__all__ = ["MRG_RandomStreams"]


class MRG_RandomStreams(RandomStreamsBase):
    """Module component with an interface like numpy.random (Theano's docstring)."""

    def __init__(self, seed=12345, use_cuda=None):
        super().__init__(seed)

    def uniform(self, size, low=0.0, high=1.0, ndim=None, dtype=None, nstreams=None):
        """Floats in the open interval (low, high)."""
        return self._uniform(size, low, high, ndim, dtype)

    def normal(self, size, avg=0.0, std=1.0, ndim=None, dtype=None, nstreams=None):
        return self._normal(size, avg, std, ndim, dtype)

    def binomial(self, size=None, n=1, p=0.5, ndim=None, dtype="int64", nstreams=None):
        if n != 1:
            raise NotImplementedError("MRG_RandomStreams.binomial with n > 1")
        return self._bernoulli(size, p, ndim, dtype)

    def multinomial(self, size=None, n=1, pvals=None, ndim=None, dtype="int64", nstreams=None):
        """One-hot rows (counts of n draws) of a matrix pvals, one row of probabilities per draw."""
        if pvals is None:
            raise TypeError("You have to specify pvals")
        return self._multinomial(size, n, pvals, ndim, dtype, "MRG_RandomStreams")
