"""Native Softmax vs the reference: vectors and matrices, float32/float64, stability."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet.basic import Softmax
from tests.codegen.native_helpers import check_native_vs_reference, check_same_error

SIZES = (1, 7, 17, 33)


def _mat(dtype):
    return T.dmatrix("x") if dtype == "float64" else T.fmatrix("x")


def _vec(dtype):
    return T.dvector("v") if dtype == "float64" else T.fvector("v")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", SIZES)
def test_softmax_matrix_random(dtype, rows):
    rng = np.random.RandomState(rows)
    x = _mat(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    calls = [[(rng.randn(rows, cols) * 3).astype(dtype)] for cols in SIZES]
    fn, res = check_native_vs_reference([x], T.nnet.softmax(x), None, calls=calls, rtol=rtol, atol=1e-7)
    for r in res:
        assert r.dtype == dtype
        np.testing.assert_allclose(r.sum(axis=1), 1, rtol=1e-5)
    assert any(isinstance(n.op, Softmax) for n in fn.fgraph.toposort())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_vector(dtype):
    rng = np.random.RandomState(1)
    v = _vec(dtype)
    calls = [[(rng.randn(n) * 5).astype(dtype)] for n in SIZES]
    check_native_vs_reference([v], T.nnet.softmax(v), None, calls=calls, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_large_magnitudes_is_stable(dtype):
    rng = np.random.RandomState(2)
    x = _mat(dtype)
    xv = (rng.randn(17, 7) * 1e4).astype(dtype)
    xv[0] = 1e4           # all equal, large: uniform
    xv[1] = -1e4          # all equal, very negative: uniform, not 0/0
    xv[2, :] = [1e4, 1e4 - 1, -1e4, 0, 3e4, 3e4, -3e4]
    fn, (out,) = check_native_vs_reference([x], T.nnet.softmax(x), [xv], rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(out[1], 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(out[2, 4:6], 0.5, rtol=1e-6)


def test_softmax_non_contiguous_input_and_composition():
    rng = np.random.RandomState(3)
    x = T.fmatrix("x")
    xv = rng.randn(17, 33).astype("float32")
    outs = [T.nnet.softmax(x.T), T.nnet.softmax(x[::2, 1::3]), T.nnet.softmax(x[3]), T.nnet.softmax(x * 2 + 1),
            T.log(T.nnet.softmax(x)).sum(axis=1)]
    check_native_vs_reference([x], outs, [xv], rtol=1e-5, atol=1e-6)


def test_softmax_special_values():
    x = T.dmatrix("x")
    xv = np.array([[0.0, np.inf, 1.0], [np.nan, 0.0, 1.0], [-np.inf, 0.0, 0.0], [-np.inf, -np.inf, 1.0]])
    with np.errstate(invalid="ignore"):
        check_native_vs_reference([x], T.nnet.softmax(x), [xv])


def test_softmax_empty_rows_and_columns():
    x = T.fmatrix("x")
    check_native_vs_reference([x], T.nnet.softmax(x), [np.zeros((0, 5), "float32")])
    check_same_error([x], T.nnet.softmax(x), [np.zeros((3, 0), "float32")], exc=ValueError)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_gradient(dtype):
    rng = np.random.RandomState(4)
    x = _mat(dtype)
    w = _mat(dtype)
    cost = (T.nnet.softmax(x) * w).sum()
    g = T.grad(cost, x)
    calls = [[rng.randn(n, 7).astype(dtype), rng.randn(n, 7).astype(dtype)] for n in SIZES]
    check_native_vs_reference([x, w], [cost, g], None, calls=calls, rtol=1e-5, atol=1e-6)


def test_softmax_in_training_step():
    """Logistic regression on a shared minibatch: softmax, NLL indexing, gradients, updates."""
    rng = np.random.RandomState(5)
    data_x = rng.randn(100, 17).astype("float32")
    data_y = rng.randint(0, 10, size=100).astype("int64")
    results = {}
    for mode in ("native", "reference"):
        sx, sy = symcnn.shared(data_x), symcnn.shared(data_y)
        W = symcnn.shared(np.zeros((17, 10), "float32"))
        b = symcnn.shared(np.zeros(10, "float32"))
        index = T.lscalar("index")
        x, y = T.fmatrix("x"), T.lvector("y")
        p = T.nnet.softmax(T.dot(x, W) + b)
        cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
        gW, gb = T.grad(cost, [W, b])
        f = symcnn.function([index], cost, updates=[(W, W - 0.13 * gW), (b, b - 0.13 * gb)],
                            givens={x: sx[index * 33:(index + 1) * 33], y: sy[index * 33:(index + 1) * 33]},
                            mode=mode)
        costs = [float(f(i)) for i in (0, 1, 2, 3, 0, 1)]
        results[mode] = costs, W.get_value(), b.get_value()
    for got, want in zip(results["native"], results["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert results["native"][0][4] < results["native"][0][0]
