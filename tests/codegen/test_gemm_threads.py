"""Dot / FusedDot products split over the threads of the module's pool (codegen/kernels/dot.py)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from codegen.options import options
from symcnn.config import config

from tests.fuzz.strategies import examples
from tests.helpers import allow_more_threads_than_cores, check_native_vs_reference

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def threads(monkeypatch):
    old = config.num_threads
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")   # every variant compiled afresh

    def set_threads(n, min_parallel=None):
        config.num_threads = n
        if min_parallel is not None:
            monkeypatch.setattr(options, "gemm_min_parallel", min_parallel)
    yield set_threads
    config.num_threads = old


def _data(shape, seed):
    return np.random.RandomState(seed).standard_normal(shape).astype("float32")


# (M, K, N): tile edges (6-row and 64/32-column register tiles), sizes the thread count does not
# divide, single rows and columns, and products on either side of the threshold below
SHAPES = [(1, 37, 200), (200, 37, 1), (7, 5, 129), (13, 64, 65), (61, 70, 191), (95, 33, 64), (6, 300, 12),
          (130, 1, 97)]
THRESHOLD = 40_000   # multiply-adds: some SHAPES are below it, most above


def _check_dot(M, K, N, static, transposed=False, atol=ATOL):
    shape_x = (K, M) if transposed else (M, K)
    xv, yv = _data(shape_x, M), _data((K, N), N)
    x, y = T.matrix("x"), T.matrix("y")
    xx = x.T if transposed else x
    if static:  # static shapes let the lowering split the rows of a tall product
        xx, y2 = xx.reshape((M, K)), y.reshape((K, N))
    else:
        y2 = y
    fn, res = check_native_vs_reference([x, y], T.dot(xx, y2), [xv, yv], rtol=RTOL, atol=atol)
    return res[0]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_dot_threads_match_reference(threads, n, M, K, N):
    threads(n, THRESHOLD)
    _check_dot(M, K, N, static=False)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("M,K,N", [(97, 50, 31), (31, 50, 97), (200, 40, 1), (1, 40, 200), (20, 300, 19)])
def test_dot_static_shapes_and_strided_operands(threads, n, M, K, N):
    threads(n, THRESHOLD)
    _check_dot(M, K, N, static=True, transposed=True)
    _check_dot(M, K, N, static=True, transposed=False)


@pytest.mark.parametrize("M,K,N", [(61, 70, 191), (191, 70, 61), (6, 300, 12), (130, 1, 97)])
def test_thread_counts_agree_exactly(threads, M, K, N):
    """Every element is summed in the same order however the product is split."""
    res = []
    for n in (1, 2, 3):
        threads(n, THRESHOLD)
        res.append(_check_dot(M, K, N, static=(M > N)))
    for r in res[1:]:
        np.testing.assert_array_equal(r, res[0])


def _check_fused(M, K, N, dtype="float32"):
    """tanh(x @ W + b) (a FusedDot epilogue), with a prologue on either operand and a gradient."""
    x, W, b = T.matrix("x", dtype=dtype), T.matrix("W", dtype=dtype), T.vector("b", dtype=dtype)
    h = T.tanh(T.dot(x, W) + b)
    pro = T.dot(x * 2 - 1, T.exp(W) * 0.5)        # prologues on both operands
    cost = (h ** 2).sum() + pro.sum()
    gW, gb = symcnn.grad(cost, [W, b])
    vals = [_data((M, K), 1).astype(dtype), (_data((K, N), 2) * 0.2).astype(dtype), _data((N,), 3).astype(dtype)]
    check_native_vs_reference([x, W, b], [h, pro, gW, gb], vals, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("M,K,N", [(1, 40, 130), (130, 40, 1), (67, 45, 129), (128, 3, 65)])
def test_fused_dot_threads_match_reference(threads, n, M, K, N):
    threads(n, THRESHOLD)
    _check_fused(M, K, N)


@pytest.mark.parametrize("n", [2, 3])
def test_fused_dot_float64(threads, n):
    threads(n, THRESHOLD)
    _check_fused(67, 45, 129, "float64")


@pytest.mark.parametrize("n", [2, 3])
def test_default_threshold(threads, n):
    """Products on both sides of the default threshold (161^3 < 2^22 < 163^3)."""
    threads(n)
    for M, K, N in [(161, 161, 161), (163, 165, 163), (2, 1100, 1907)]:
        _check_dot(M, K, N, static=False, atol=1e-3)   # float32 sums of ~1000 unit-size terms


def test_small_products_stay_inline(threads):
    from codegen.build import build_module

    def ir_for(M, K, N, n):
        threads(n)
        x, y = T.matrix("x"), T.matrix("y")
        out = T.dot(x.reshape((M, K)), y.reshape((K, N)))
        f = symcnn.function([x, y], out, mode="reference")
        return build_module(f.fgraph, []).ir_text

    assert "symcnn_gemm_part" not in ir_for(100, 100, 100, 2)      # statically small
    assert "symcnn_pool_start" not in ir_for(100, 100, 100, 2)
    assert "symcnn_gemm_part" in ir_for(200, 200, 200, 2)
    assert "symcnn_pool_start" in ir_for(200, 200, 200, 2)
    assert "symcnn_gemm_part" not in ir_for(200, 200, 200, 1)


def test_bounds_checked_builds_stay_serial(threads):
    threads(2, THRESHOLD)
    x, y = T.matrix("x"), T.matrix("y")
    f = symcnn.function([x, y], T.dot(x, y), mode="boundscheck")
    assert "symcnn_pool" not in f.runner.ir
    xv, yv = _data((61, 70), 0), _data((70, 191), 1)
    np.testing.assert_allclose(f(xv, yv), xv @ yv, rtol=RTOL, atol=ATOL)


_ROWS_FNS = {}


def _rows_fn(n, dtype, ta, tb, epilogue):
    """f(x, y, b) = dot(x or x.T, y or y.T) (+ b, tanh) with run-time shapes, on n threads."""
    key = (n, dtype, ta, tb, epilogue)
    if key not in _ROWS_FNS:
        config.num_threads = n
        x, y, b = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype), T.vector("b", dtype=dtype)
        out = T.dot(x.T if ta else x, y.T if tb else y)
        if epilogue:
            out = T.tanh(out + b)
        _ROWS_FNS[key] = symcnn.function([x, y, b], out, on_unused_input="ignore")
    return _ROWS_FNS[key]


@st.composite
def _tall_cases(draw):
    from codegen.microkernels.gemm import params
    dtype = draw(st.sampled_from(["float32", "float64"]))
    L, MR, NV, KC, MC, NC = params(dtype)
    n = draw(st.sampled_from([2, 3]))
    M = draw(st.one_of(st.integers(n * MC, n * MC + 4 * MR), st.sampled_from([500, 800, 1201])))
    N = draw(st.one_of(st.integers(1, 3 * NV * L), st.sampled_from([500, NC + 1])))
    K = draw(st.one_of(st.integers(1, 40), st.sampled_from([KC - 1, KC, KC + 1, 2 * KC + 3])))
    return (n, dtype, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), M, N, K,
            draw(st.integers(0, 2 ** 16)))


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_tall_cases())
def test_tall_products_against_numpy_and_one_thread(threads, case):
    """Tall products split over n threads, with odd N and K, transposed operands and an epilogue,
    float32/64, against numpy, and bit for bit equal to the same function on one thread."""
    n, dtype, ta, tb, epi, M, N, K, seed = case
    threads(n, THRESHOLD)
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    yv = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    bv = rng.standard_normal(N).astype(dtype)
    got = _rows_fn(n, dtype, ta, tb, epi)(xv, yv, bv)
    want = (xv.T if ta else xv).astype("float64") @ (yv.T if tb else yv).astype("float64")
    if epi:
        want = np.tanh(want + bv)
    tol = 2e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(K + 1))
    np.testing.assert_array_equal(got, _rows_fn(1, dtype, ta, tb, epi)(xv, yv, bv))
