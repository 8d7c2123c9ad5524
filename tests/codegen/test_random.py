"""Native random draws (codegen/kernels/random.py) against the numpy Philox reference:
bit-identical uniforms, normals within rounding, the same numbers on 1 or 2 threads, size checks."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.config import config
from symcnn.sandbox.multinomial import MultinomialFromUniform
from symcnn.sandbox.rng_mrg import MRG_RandomStreams
from symcnn.tensor import philox
from symcnn.tensor.shared_randomstreams import RandomStreams

from tests.helpers import (assert_starts_with_location, check_native_vs_reference, check_same_error,
                           compare_random_modes, here)


@pytest.fixture
def threads():
    old = config.num_threads

    def set_threads(n):
        config.num_threads = n
    yield set_threads
    config.num_threads = old


def _draws(dtype, seed=7):
    """Uniform and normal draws of a symbolic 2-d size, plus a static odd-sized 3-d one."""
    def build():
        n, m = T.lscalar("n"), T.lscalar("m")
        rng = MRG_RandomStreams(seed)
        return [n, m], [rng.uniform(size=(n, m), dtype=dtype), rng.normal(size=(n, m), dtype=dtype),
                        rng.uniform(size=(3, 5, 7), low=-2.0, high=3.0, dtype=dtype)]
    return build


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_bit_identical_and_normal_within_rounding(dtype):
    rng = np.random.default_rng(0)
    calls = [[0, 3], [1, 1], [2, 3], [7, 1]] + [[int(a), int(b)] for a, b in rng.integers(1, 40, size=(6, 2))]
    native, ref = compare_random_modes(_draws(dtype), calls, rtol=1e-6 if dtype == "float32" else 1e-13,
                                       atol=1e-6 if dtype == "float32" else 1e-13)
    for got, want in zip(native, ref):
        np.testing.assert_array_equal(got[0], want[0])   # uniforms: the same bits
        np.testing.assert_array_equal(got[2], want[2])
        assert got[0].dtype == dtype and got[1].dtype == dtype
    # consecutive calls differ (the state advances) and the uniforms stay in the open interval
    assert not np.array_equal(native[2][2], native[3][2])
    allu = np.concatenate([r[0].ravel() for r in native])
    assert allu.min() > 0 and allu.max() < 1


def test_every_size_remainder_matches_the_reference():
    """Sizes 0..13 cover every partial last block (4 float32 / 2 float64 values per block)."""
    for dtype in ("float32", "float64"):
        def build():
            n = T.lscalar("n")
            return [n], RandomStreams(3).uniform(size=(n,), dtype=dtype)
        compare_random_modes(build, [[k] for k in range(14)])


def test_reference_is_philox_with_the_documented_layout():
    """The first draw of a stream is philox((block, 0, 0, 0), key) mapped as philox.py says."""
    rng = MRG_RandomStreams(99)
    u = rng.uniform(size=(6,), dtype="float32")
    state = rng.state_updates[0][0].get_value()
    got = symcnn.function([], u)()
    k0, k1 = philox.stream_key(99, 0)
    w = philox.philox4x32(np.arange(2, dtype=np.uint32), np.zeros(2, np.uint32), np.zeros(2, np.uint32),
                          np.zeros(2, np.uint32), k0, k1)
    words = np.stack(w, axis=1).ravel()[:6]
    want = ((words >> 9).astype(np.float64) * 2 + 1) * 2.0 ** -24
    assert list(state) == [k0, k1, 0, 0]
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_same_numbers_on_one_and_two_threads(threads, kind):
    """Large draws run in parallel chunks; the numbers do not depend on the thread count."""
    results = []
    for t in (1, 2):
        threads(t)
        rng = MRG_RandomStreams(5)
        x = T.matrix("x")
        draw = getattr(rng, kind)(size=x.shape, dtype="float32")
        fn = symcnn.function([x], draw)
        vals = [fn(np.zeros((301, 517), "float32")) for _ in range(2)]
        if t == 2:
            assert fn.runner.pool_threads == 2
            assert "symcnn_random0" in fn.dump_llvm()  # the outlined parallel body exists
        results.append(vals)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    # and both equal the reference
    rng = MRG_RandomStreams(5)
    x = T.matrix("x")
    ref = symcnn.function([x], getattr(rng, kind)(size=x.shape, dtype="float32"), mode="reference")
    want = ref(np.zeros((301, 517), "float32"))
    if kind == "uniform":
        np.testing.assert_array_equal(results[1][0], want)
    else:
        np.testing.assert_allclose(results[1][0], want, rtol=1e-6, atol=1e-6)


def test_large_float64_draw_on_two_threads_matches_reference(threads):
    threads(2)

    def build():
        n = T.lscalar("n")
        return [n], RandomStreams(11).uniform(size=(n,), dtype="float64")
    compare_random_modes(build, [[100003], [65537]])


def test_negative_size_raises_the_same_error_in_both_modes():
    n = T.lscalar("n")
    u = MRG_RandomStreams(1).uniform(size=(n, 3)); loc = here()
    nat, ref = check_same_error([n], u, [-2])
    assert "negative" in ref and "(-2, 3)" in ref
    assert nat.startswith(loc + ":") and ref.startswith(loc + ":")
    assert "negative" in nat


def test_size_overflow_is_caught_natively():
    n = T.lscalar("n")
    u = MRG_RandomStreams(1).normal(size=(n, n, n)); loc = here()
    fn = symcnn.function([n], u)
    with pytest.raises(ValueError) as info:
        fn(1 << 21)  # 2^63 elements: the byte count overflows int64
    assert_starts_with_location(info, loc)
    assert "too large" in str(info.value)
    with pytest.raises(ValueError, match="too large"):
        symcnn.function([n], u, mode="reference")(1 << 21)


def test_static_size_too_large_is_refused_when_compiling():
    u = MRG_RandomStreams(1).uniform(size=(1 << 31, 1 << 31, 4))
    with pytest.raises(ValueError, match="too large"):
        symcnn.function([], u)


def test_checking_modes_run_the_kernel():
    def build():
        n = T.lscalar("n")
        rng = MRG_RandomStreams(4)
        return [n], [rng.uniform(size=(n, 5)), rng.normal(size=(n,))]
    for mode in ("boundscheck", "debug", "nanguard"):
        compare_random_modes(build, [[3], [9]], mode=mode, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_multinomial_from_uniform_native_matches_reference(seed):
    rng = np.random.default_rng(seed)
    rows, k = int(rng.integers(0, 9)), int(rng.integers(1, 7))
    p = rng.random((rows, k)).astype("float32")
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(rows).astype("float32")
    u[: rows // 3] = 0.9999999  # above every running sum that rounds below 1: an all-zero row
    pv, uv = T.fmatrix("p"), T.fvector("u")
    for odt in ("int64", "float32"):
        _, res = check_native_vs_reference([pv, uv], MultinomialFromUniform(odt)(pv, uv), [p, u])
        assert res[0].dtype == odt and res[0].shape == (rows, k)
        assert set(np.unique(res[0].sum(axis=1))) <= {0, 1}


def test_multinomial_from_uniform_rows_must_agree():
    pv, uv = T.fmatrix("p"), T.fvector("u")
    out = MultinomialFromUniform("int64")(pv, uv)
    nat, ref = check_same_error([pv, uv], out, [np.full((3, 2), 0.5, "float32"), np.zeros(2, "float32")])
    assert "3 rows" in ref


def test_size_vector_of_the_wrong_length_is_refused():
    s = T.lvector("s")
    u = MRG_RandomStreams(1).uniform(s, ndim=2)
    nat, ref = check_same_error([s], u, [np.array([3], dtype="int64")])
    assert "length 2" in nat and "length 2" in ref


def test_a_state_of_the_wrong_length_is_refused():
    rng = MRG_RandomStreams(1)
    u = rng.uniform((3,))
    state = rng.state_updates[0][0]
    state.set_value(np.zeros(2, dtype="uint32"))
    for mode in ("native", "reference"):
        with pytest.raises(ValueError, match="4 words"):
            symcnn.function([], u, mode=mode)()
