"""RandomStreams (theano.tensor.shared_randomstreams's API) on the Philox generator."""
import math

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.shared_randomstreams import RandomStreams

from tests.helpers import compare_random_modes, moments_within


def test_every_method_native_equals_reference():
    def build():
        x = T.matrix("x")
        lo = T.fvector("lo")
        r = RandomStreams(seed=234)
        return [x, lo], [r.uniform(size=x.shape), r.uniform(low=lo, high=lo + 2.0), r.normal(size=(3, 2), avg=lo[0]),
                         r.binomial(size=x.shape, n=1, p=0.4), r.binomial(size=(6,), n=5, p=0.5, dtype="int32"),
                         r.random_integers(size=(7,), low=-2, high=3), r.choice(size=(5,), a=4),
                         r.multinomial(pvals=[0.2, 0.3, 0.5]), r.choice(a=3, p=[0.0, 1.0, 0.0])]
    vals = [[np.zeros((3, 4), "float32"), np.array([0.0, 1.0, -1.0], "float32")]] * 3
    native, ref = compare_random_modes(build, vals, rtol=1e-6, atol=1e-6)
    u, uab, z, b1, b5, ri, ch, mn, chp = native[0]
    assert u.shape == (3, 4) and uab.shape == (3,) and z.shape == (3, 2)
    assert b1.dtype == np.int64 and b5.dtype == np.int32 and ri.dtype == np.int64
    assert ((uab > [0, 1, -1]) & (uab < [2, 3, 1])).all()
    assert ri.min() >= -2 and ri.max() <= 3 and ch.min() >= 0 and ch.max() <= 3
    assert mn.shape == (3,) and mn.sum() == 1
    assert int(chp) == 1
    assert not np.array_equal(native[0][0], native[1][0])


def test_integer_draws_cover_their_range_uniformly():
    r = RandomStreams(5)
    ri, ch, b5 = theano.function([], [r.random_integers((60000,), 1, 6), r.choice((60000,), a=3),
                                      r.binomial((60000,), n=5, p=0.3)])()
    counts = np.bincount(ri, minlength=7)[1:]
    assert set(np.unique(ri)) == set(range(1, 7))
    assert (np.abs(counts / 60000 - 1 / 6) < 5 * math.sqrt((1 / 6) * (5 / 6) / 60000)).all()
    assert set(np.unique(ch)) == {0, 1, 2}
    n, p = 5, 0.3
    v = n * p * (1 - p)
    moments_within(b5, n * p, v, v * (1 + 3 * (n - 2) * p * (1 - p)), what="binomial(5, 0.3)")


def test_size_none_takes_the_shape_of_the_parameters():
    r = RandomStreams(1)
    p = T.fmatrix("p")
    f = theano.function([p], [r.binomial(p=p), r.uniform(), r.normal(avg=p)])
    b, u, z = f(np.full((2, 5), 0.5, "float32"))
    assert b.shape == (2, 5) and u.shape == () and z.shape == (2, 5)


def test_prob_is_theanos_old_name_of_p():
    r = RandomStreams(1)
    b = theano.function([], r.binomial(size=(1000,), prob=1.0))()
    assert (b == 1).all()


def test_seed_resets_every_stream_and_none_seeds_randomly():
    r = RandomStreams(seed=77)
    f = theano.function([], [r.uniform((3,)), r.normal((3,))])
    first = f()
    f()
    r.seed(77)
    again = f()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    a = theano.function([], RandomStreams().uniform((8,)))()
    b = theano.function([], RandomStreams().uniform((8,)))()
    assert not np.array_equal(a, b)


def test_updates_lists_every_stream():
    r = RandomStreams(2)
    u, z = r.uniform((2,)), r.normal((2,))
    ups = r.updates()
    assert [s for s, _ in ups] == [u.rng, z.rng]
    assert all(s.get_value().dtype == np.uint32 for s, _ in ups)


def test_unsupported_arguments_say_so():
    r = RandomStreams(1)
    with pytest.raises(NotImplementedError, match="replace=False together with p"):
        r.choice((3,), a=5, replace=False, p=[0.2] * 5)
    with pytest.raises(NotImplementedError, match="n must be"):
        r.binomial((3,), n=T.lscalar("n"))
    with pytest.raises(TypeError, match="seed"):
        RandomStreams(seed=1.5)


def test_reachable_as_theano_code_writes_it():
    r = T.shared_randomstreams.RandomStreams(seed=3)
    assert isinstance(r, RandomStreams)
    from symcnn.sandbox import rng_mrg
    assert rng_mrg.MRG_RandomStreams(3).uniform((2,)).ndim == 1


def test_permutation_and_choice_without_replacement_native_equals_reference():
    """Bit for bit in both modes (the same Philox uniforms, argsorted stably), with symbolic
    sizes and n, and each call gives new permutations."""
    def build():
        x = T.matrix("x")
        n = T.lscalar("n")
        r = RandomStreams(seed=99)
        return [x, n], [r.permutation(n=7), r.permutation(size=(2, 3), n=5, dtype="int32"),
                        r.permutation(size=x.shape, n=n, ndim=2), r.choice((2, 3), a=9, replace=False),
                        r.choice(a=n, replace=False), r.choice(size=x.shape, a=n, replace=False, ndim=2)]
    vals = [[np.zeros((2, 2), "float32"), np.int64(6)]] * 3
    native, _ = compare_random_modes(build, vals)
    p7, p235, pxn, c23, c1, cx = native[0]
    assert p7.shape == (7,) and p235.shape == (2, 3, 5) and p235.dtype == np.int32 and pxn.shape == (2, 2, 6)
    for perms, n in ((p7, 7), (p235, 5), (pxn, 6)):
        np.testing.assert_array_equal(np.sort(perms, axis=-1), np.broadcast_to(np.arange(n), perms.shape))
    assert c23.shape == (2, 3) and len(set(c23.ravel())) == 6 and c23.min() >= 0 and c23.max() < 9
    assert c1.shape == () and 0 <= int(c1) < 6
    assert cx.shape == (2, 2) and len(set(cx.ravel())) == 4 and cx.max() < 6
    assert not np.array_equal(native[0][1], native[1][1])


def test_permutation_is_uniform():
    """Every value lands in every position about equally often (3000 permutations of 5)."""
    r = RandomStreams(12)
    perms = theano.function([], r.permutation(size=(3000,), n=5))()
    counts = np.array([[np.sum(perms[:, pos] == v) for v in range(5)] for pos in range(5)])
    # each count is Binomial(3000, 1/5): mean 600, sd about 22
    assert np.abs(counts - 600).max() < 5 * 22, counts


def test_choice_without_replacement_of_too_many():
    r = RandomStreams(1)
    with pytest.raises(ValueError, match="cannot take 6 distinct elements from range\\(5\\)"):
        r.choice((2, 3), a=5, replace=False)
    a = T.lscalar("a")
    for mode in ("reference", "native"):
        f = theano.function([a], RandomStreams(1).choice((2, 3), a=a, replace=False), mode=mode)
        assert len(set(f(6).ravel())) == 6
        with pytest.raises(ValueError):
            f(5)
    with pytest.raises(TypeError, match="n must be an integer scalar"):
        r.permutation(n=2.5)
