"""MRG_RandomStreams (Theano's module path): distributions, default updates, seeding, symbolic
sizes, tensor p, and a denoising-autoencoder training step, natively and in the reference mode."""
import math

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.sandbox.rng_mrg import MRG_RandomStreams

from tests.helpers import (KS_CRITICAL_0_001, compare_random_modes, ks_statistic, moments_within,
                           normal_cdf)

N = 10 ** 6


@pytest.fixture(scope="module")
def big_draws():
    """10^6 draws of each distribution, native, float32 and float64."""
    rng = MRG_RandomStreams(2024)
    outs = []
    for dtype in ("float32", "float64"):
        outs += [rng.uniform((1000, 1000), dtype=dtype), rng.normal((N,), dtype=dtype),
                 rng.uniform((N,), low=-3.0, high=5.0, dtype=dtype), rng.normal((N,), avg=2.0, std=3.0, dtype=dtype)]
    outs.append(rng.binomial((N,), p=0.3, dtype="int8"))
    fn = theano.function([], outs)
    return dict(zip(["u32", "n32", "uab32", "nms32", "u64", "n64", "uab64", "nms64", "b"], fn()))


@pytest.mark.parametrize("bits", ["32", "64"])
def test_uniform_moments_and_ks(big_draws, bits):
    u = big_draws["u" + bits]
    assert u.shape == (1000, 1000) and u.dtype == f"float{bits}"
    moments_within(u, 0.5, 1 / 12, 1 / 80, what="uniform(0, 1)")
    assert math.sqrt(N) * ks_statistic(u, lambda x: x) < KS_CRITICAL_0_001
    a, b = -3.0, 5.0
    w = b - a
    uab = big_draws["uab" + bits]
    assert uab.min() >= a and uab.max() <= b
    moments_within(uab, (a + b) / 2, w * w / 12, w ** 4 / 80, what="uniform(-3, 5)")
    assert math.sqrt(N) * ks_statistic(uab, lambda x: (x - a) / w) < KS_CRITICAL_0_001


@pytest.mark.parametrize("bits", ["32", "64"])
def test_normal_moments_and_ks(big_draws, bits):
    z = big_draws["n" + bits]
    moments_within(z, 0.0, 1.0, 3.0, what="normal(0, 1)")
    assert math.sqrt(N) * ks_statistic(z, normal_cdf) < KS_CRITICAL_0_001
    z2 = big_draws["nms" + bits]
    moments_within(z2, 2.0, 9.0, 3 * 81.0, what="normal(2, 3)")
    assert math.sqrt(N) * ks_statistic(z2, lambda x: normal_cdf((x - 2.0) / 3.0)) < KS_CRITICAL_0_001


def test_binomial_moments(big_draws):
    b = big_draws["b"]
    assert b.dtype == np.int8 and set(np.unique(b)) == {0, 1}
    p = 0.3
    moments_within(b, p, p * (1 - p), p * (1 - p) * (1 - 3 * p * (1 - p)), what="binomial(1, 0.3)")


def test_ks_detects_a_wrong_distribution(big_draws):
    """The KS check is not vacuous: uniforms squared are far from uniform."""
    assert math.sqrt(N) * ks_statistic(big_draws["u64"] ** 2, lambda x: x) > 10 * KS_CRITICAL_0_001


def test_two_calls_differ_and_seed_resets_every_stream():
    rng = MRG_RandomStreams(3)
    u, z = rng.uniform((5,)), rng.normal((2, 2))
    f = theano.function([], [u, z])
    a, b = f(), f()
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0][:2], a[1].ravel()[:2])
    rng.seed(3)
    c = f()
    np.testing.assert_array_equal(c[0], a[0])
    np.testing.assert_array_equal(c[1], a[1])
    rng.seed(4)
    assert not np.array_equal(f()[0], a[0])
    rng.seed()  # the constructor's seed
    np.testing.assert_array_equal(f()[0], a[0])


def test_same_seed_same_numbers_across_objects_and_modes():
    f1 = theano.function([], MRG_RandomStreams(8).uniform((4, 3)))
    f2 = theano.function([], MRG_RandomStreams(8).uniform((4, 3)), mode="reference")
    np.testing.assert_array_equal(f1(), f2())
    np.testing.assert_array_equal(f1(), f2())


def test_no_default_updates_and_explicit_updates():
    rng = MRG_RandomStreams(1)
    u = rng.uniform((3,))
    frozen = theano.function([], u, no_default_updates=True)
    np.testing.assert_array_equal(frozen(), frozen())
    state, new_state = rng.updates()[0]
    assert u.rng is state and u.update == (state, new_state)
    assert state.default_update is new_state
    explicit = theano.function([], u, updates=rng.updates(), no_default_updates=True)
    first = explicit()
    assert not np.array_equal(first, explicit())
    skip_listed = theano.function([], u, no_default_updates=[state])
    np.testing.assert_array_equal(skip_listed(), skip_listed())


def test_symbolic_size_from_a_shape():
    def build():
        x = T.tensor3("x")
        rng = MRG_RandomStreams(6)
        return [x], [rng.uniform(size=x.shape), rng.normal(size=(x.shape[0], 2 * x.shape[2])),
                     rng.binomial(size=x.shape[1:], p=0.5)]
    vals = [[np.zeros((2, 3, 4), "float32")], [np.zeros((1, 5, 1), "float32")], [np.zeros((0, 2, 2), "float32")]]
    native, _ = compare_random_modes(build, vals, rtol=1e-6, atol=1e-6)
    assert [r[0].shape for r in native] == [(2, 3, 4), (1, 5, 1), (0, 2, 2)]
    assert [r[1].shape for r in native] == [(2, 8), (1, 2), (0, 4)]
    assert [r[2].shape for r in native] == [(3, 4), (5, 1), (2, 2)]


def test_binomial_with_a_tensor_p():
    def build():
        p = T.fvector("p")
        rng = MRG_RandomStreams(9)
        return [p], rng.binomial(size=(4000, 3), p=p, dtype="float32")
    p = np.array([0.0, 0.25, 1.0], dtype="float32")
    native, _ = compare_random_modes(build, [[p], [p]])
    b = native[0]
    assert b.dtype == np.float32
    assert b[:, 0].sum() == 0 and b[:, 2].sum() == 4000
    assert abs(b[:, 1].mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 4000)


def test_multinomial_rows_are_one_hot_with_the_right_frequencies():
    def build():
        pv = T.fmatrix("pv")
        return [pv], MRG_RandomStreams(10).multinomial(pvals=pv)
    pv = np.tile(np.array([[0.1, 0.6, 0.3]], dtype="float32"), (20000, 1))
    native, _ = compare_random_modes(build, [[pv], [pv[:7]]])
    m = native[0]
    assert m.dtype == np.int64 and (m.sum(axis=1) == 1).all()
    freq = m.mean(axis=0)
    se = np.sqrt(pv[0] * (1 - pv[0]) / 20000)
    assert (np.abs(freq - pv[0]) < 5 * se).all()
    m2 = theano.function([], MRG_RandomStreams(1).multinomial(pvals=pv[:50], n=3, dtype="int32"))()
    assert m2.dtype == np.int32 and (m2.sum(axis=1) == 3).all()


def test_theano_argument_errors():
    rng = MRG_RandomStreams(1)
    with pytest.raises(NotImplementedError, match="n > 1"):
        rng.binomial((3,), n=2)
    with pytest.raises(TypeError, match="pvals"):
        rng.multinomial()
    with pytest.raises(ValueError, match="negative"):
        rng.uniform((3, -1))
    with pytest.raises(TypeError, match="size"):
        rng.uniform((2.5,))
    with pytest.raises(TypeError, match="size"):
        rng.normal(T.fvector("s"))
    with pytest.raises(ValueError, match="ndim"):
        rng.uniform(T.lvector("s"))
    with pytest.raises(ValueError, match="seed"):
        MRG_RandomStreams(-1)
    with pytest.raises(TypeError, match="seed"):
        MRG_RandomStreams("abc")


def test_gradient_flows_through_low_high_not_the_sample():
    rng = MRG_RandomStreams(12)
    lo, hi = T.dscalar("lo"), T.dscalar("hi")
    u = rng.uniform((50,), low=lo, high=hi, dtype="float64")
    cost = T.sum(u)
    glo, ghi = T.grad(cost, [lo, hi])
    f = theano.function([lo, hi], [u, glo, ghi])
    val, dlo, dhi = f(1.0, 3.0)
    unit = (val - 1.0) / 2.0  # the underlying uniforms
    np.testing.assert_allclose(dlo, np.sum(1 - unit), rtol=1e-10)
    np.testing.assert_allclose(dhi, np.sum(unit), rtol=1e-10)


# -- a denoising autoencoder step, the dA tutorial's graph ------------------------------

def _da_graph():
    """The dA tutorial's corruption and cost (get_corrupted_input / get_cost_updates)."""
    floatX = theano.config.floatX
    rng = np.random.RandomState(123)
    n_visible, n_hidden = 30, 12
    theano_rng = MRG_RandomStreams(rng.randint(2 ** 30))
    initial_W = np.asarray(rng.uniform(low=-4 * np.sqrt(6. / (n_hidden + n_visible)),
                                       high=4 * np.sqrt(6. / (n_hidden + n_visible)),
                                       size=(n_visible, n_hidden)), dtype=floatX)
    W = theano.shared(value=initial_W, name='W', borrow=True)
    bvis = theano.shared(value=np.zeros(n_visible, dtype=floatX), borrow=True)
    bhid = theano.shared(value=np.zeros(n_hidden, dtype=floatX), name='b', borrow=True)
    x = T.matrix('x')
    corruption_level, learning_rate = 0.3, 0.1
    tilde_x = theano_rng.binomial(size=x.shape, n=1, p=1 - corruption_level, dtype=floatX) * x
    y = T.nnet.sigmoid(T.dot(tilde_x, W) + bhid)
    z = T.nnet.sigmoid(T.dot(y, W.T) + bvis)
    L = - T.sum(x * T.log(z) + (1 - x) * T.log(1 - z), axis=1)
    cost = T.mean(L)
    params = [W, bhid, bvis]
    gparams = T.grad(cost, params)
    updates = [(param, param - learning_rate * gparam) for param, gparam in zip(params, gparams)]
    return x, cost, updates, params


def test_denoising_autoencoder_training_native_equals_reference():
    data = (np.random.RandomState(0).rand(40, 30) > 0.5).astype(theano.config.floatX)
    runs = []
    for mode in ("native", "reference"):
        x, cost, updates, params = _da_graph()
        train = theano.function([x], cost, updates=updates, mode=mode)
        costs = [float(train(data)) for _ in range(30)]
        runs.append((costs, [p.get_value() for p in params]))
    (c_nat, p_nat), (c_ref, p_ref) = runs
    np.testing.assert_allclose(c_nat, c_ref, rtol=2e-4)
    for a, b in zip(p_nat, p_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert np.mean(c_nat[-5:]) < 0.9 * np.mean(c_nat[:5])


def test_verify_grad_through_a_graph_with_a_draw():
    """Finite differences agree with T.grad through low/high of a draw (the draw reads a constant
    state here, so every evaluation sees the same sample)."""
    from symcnn.tensor import philox
    from symcnn.tensor.raw_random import UniformDraw, NormalDraw
    state = T.constant(philox.initial_state(3, 0))
    u = UniformDraw("float64", 1)(state, np.array([6]))[1]
    z = NormalDraw("float64", 1)(state, np.array([6]))[1]
    theano.gradient.verify_grad(lambda lo, hi: T.tanh(u * (hi - lo) + lo) * (z * hi), [np.array(0.3), np.array(1.7)],
                                rng=np.random.RandomState(0))
