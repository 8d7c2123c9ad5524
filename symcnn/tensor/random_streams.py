"""What RandomStreams and MRG_RandomStreams share: one shared Philox state per draw expression.

Each call such as `rng.uniform(...)` makes a new stream: a shared uint32 state variable whose
`default_update` is the draw's new state, so a function computing the draw advances it (unless
compiled with `no_default_updates=True`), and two calls give different numbers. `seed(s)` puts every
stream of this object back to its seeded state; stream i gets key philox.stream_key(s, i).
"""
import os

import numpy as np

from ..compile.shared import shared
from ..config import config
from . import philox
from .basic import cast, dimshuffle, stack_scalars
from .raw_random import NormalDraw, UniformDraw, as_size
from .type import normalize_dtype
from .var import as_tensor_variable

SEED_LIMIT = 2 ** 64


def normalize_seed(seed, who):
    """A seed as an int in [0, 2^64): an int, or a sequence of ints (Theano MRG's 6 ints) folded
    into one. None draws one from the operating system."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{who}: seed must be an integer or a sequence of integers, got {seed!r}")
    if isinstance(seed, (int, np.integer)):
        if not 0 <= int(seed) < SEED_LIMIT:
            raise ValueError(f"{who}: seed must be in [0, 2**64), got {seed}")
        return int(seed)
    if isinstance(seed, (list, tuple, np.ndarray)):
        acc = 0
        for s in seed:
            acc = (acc * 2147483647 + normalize_seed(s, who)) % SEED_LIMIT
        return acc
    raise TypeError(f"{who}: seed must be an integer or a sequence of integers, got {type(seed).__name__}")


def upcast(*dtypes):
    return str(np.result_type(*[np.dtype(d) for d in dtypes]))


def bcast_size(*params):
    """size=None: the broadcast shape of the distribution's parameters (() for scalars)."""
    params = [as_tensor_variable(p) for p in params]
    if all(p.ndim == 0 for p in params):
        return ()
    acc = None
    for p in params:
        z = p * 0
        acc = z if acc is None else acc + z
    return acc.shape


class RandomStreamsBase:
    """The draws both stream classes offer; subclasses set the Theano signatures."""

    def __init__(self, seed):
        who = type(self).__name__
        self.default_instance_seed = seed
        self._seed = normalize_seed(seed, who)
        self.state_updates = []  # (state shared variable, its new-state expression) per stream

    def updates(self):
        """Theano's: the (state, new state) pairs of every stream, for function(updates=...)."""
        return list(self.state_updates)

    def seed(self, seed=None):
        """Re-initialize every stream of this object (seed None: the constructor's seed)."""
        if seed is None:
            seed = self.default_instance_seed
        self._seed = normalize_seed(seed, type(self).__name__)
        for i, (old_r, _) in enumerate(self.state_updates):
            old_r.set_value(philox.initial_state(self._seed, i), borrow=True)

    # -- the primitive draws -------------------------------------------------------------------
    def _draw(self, op_class, size, ndim, dtype):
        size, nd = as_size(size, ndim)
        index = len(self.state_updates)
        rstate = shared(philox.initial_state(self._seed, index), name=f"rng_state_{index}")
        rstate.is_rng = True
        new_r, sample = op_class(dtype, nd)(rstate, size)
        rstate.default_update = new_r
        self.state_updates.append((rstate, new_r))
        sample.rng = rstate
        sample.update = (rstate, new_r)
        return sample

    def _two_parameter_draw(self, draw_class, size, p, q, ndim, dtype, transform):
        """transform(draw, p, q) of a standard draw; the dtype (default: floatX upcast with the
        parameters') and the size (default: the parameters' broadcast shape) follow p and q."""
        p, q = as_tensor_variable(p), as_tensor_variable(q)
        dtype = normalize_dtype(dtype) if dtype is not None else upcast(config.floatX, p.dtype, q.dtype)
        if size is None:
            size = bcast_size(p, q)
        p, q = cast(p, dtype), cast(q, dtype)
        d = self._draw(draw_class, size, ndim, dtype)
        return keep_stream(d, transform(d, p, q))

    def _uniform(self, size, low, high, ndim, dtype):
        return self._two_parameter_draw(UniformDraw, size, low, high, ndim, dtype,
                                        lambda u, low, high: u * (high - low) + low)

    def _normal(self, size, avg, std, ndim, dtype):
        return self._two_parameter_draw(NormalDraw, size, avg, std, ndim, dtype, lambda z, avg, std: avg + std * z)

    def _bernoulli(self, size, p, ndim, dtype):
        p = as_tensor_variable(p)
        if size is None:
            size = bcast_size(p)
        u = self._draw(UniformDraw, size, ndim, config.floatX)
        return keep_stream(u, cast(u < p, dtype))

    def _binomial(self, size, n, p, ndim, dtype, who):
        if isinstance(n, (int, np.integer)) and int(n) == 1:
            return self._bernoulli(size, p, ndim, dtype)
        if not isinstance(n, (int, np.integer)) or int(n) < 0:
            raise NotImplementedError(f"{who}.binomial: n must be a non-negative Python int "
                                      f"(a symbolic n is not supported), got {n!r}")
        # n > 1: the sum of n Bernoulli draws along an extra last axis (cost grows with n)
        p = as_tensor_variable(p)
        if size is None:
            size = bcast_size(p)
        size, nd = as_size(size, ndim)
        entries = [size[d] for d in range(nd)] + [int(n)]
        u = self._draw(UniformDraw, stack_scalars(entries, dtype="int64"), nd + 1, config.floatX)
        pe = dimshuffle(p, *(list(range(p.ndim)) + ["x"])) if p.ndim else p
        return keep_stream(u, cast(cast(u < pe, "int64").sum(axis=nd), dtype))

    def _multinomial(self, size, n, pvals, ndim, dtype, who):
        from ..sandbox.multinomial import MultinomialFromUniform
        pvals = as_tensor_variable(pvals)
        if pvals.ndim == 1:
            if size is not None:
                raise NotImplementedError(f"{who}.multinomial: size with a 1-d pvals is not supported; "
                                          f"give pvals one row per draw (a matrix) instead")
            return self._multinomial(None, n, dimshuffle(pvals, "x", 0), ndim, dtype, who)[0]
        if pvals.ndim != 2:
            raise NotImplementedError(f"{who}.multinomial: pvals must be a vector or a matrix, "
                                      f"got {pvals.describe()}")
        if ndim is not None and ndim != 2:
            raise ValueError(f"{who}.multinomial: the result is a matrix like pvals; got ndim={ndim}")
        if not isinstance(n, (int, np.integer)) or int(n) < 1:
            raise NotImplementedError(f"{who}.multinomial: n must be a positive Python int, got {n!r}")
        rows = pvals.shape[0]
        if size is not None:
            size, nd = as_size(size, None)
            if nd != 1:
                raise ValueError(f"{who}.multinomial: size must be (number of rows of pvals,), got {nd} dims")
            rows = size[0]
        op = MultinomialFromUniform(dtype)
        u = self._draw(UniformDraw, stack_scalars([int(n), rows], dtype="int64"), 2, pvals.dtype)
        out = op(pvals, u[0])
        for k in range(1, int(n)):
            out = out + op(pvals, u[k])
        return keep_stream(u, out)


def keep_stream(sample, result):
    """Theano's draws carry .rng and .update; keep them on the final expression."""
    result.rng = sample.rng
    result.update = sample.update
    return result
