"""T.nnet.softmax and the tutorial's negative log-likelihood."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import assert_op_contract, check_grad, compile_and_run, make_rng, rand


def np_softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", [(3, 5), (5,), (1, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_values(shape, dtype):
    a = rand(shape, dtype, low=-4, high=4)
    (got,) = assert_op_contract(T.nnet.softmax, [a])
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np_softmax(a.astype("float64")), rtol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)


def test_softmax_is_stable():
    x = T.dmatrix("x")
    got = compile_and_run([x], T.nnet.softmax(x), [np.array([[1000.0, 0.0], [-1000.0, -1000.0]])])
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.5, 0.5]])


@pytest.mark.parametrize("shape", [(3, 4), (4,)])
def test_softmax_grad(shape):
    check_grad(T.nnet.softmax, [shape])
    check_grad(lambda v: T.log(T.nnet.softmax(v)), [shape])


def test_softmax_bad_inputs():
    with pytest.raises(TypeError, match="vector or a matrix"):
        T.nnet.softmax(T.dtensor3())
    with pytest.raises(TypeError, match="floats"):
        T.nnet.softmax(T.imatrix())


def test_tutorial_negative_log_likelihood():
    """-T.mean(T.log(p_y_given_x)[T.arange(y.shape[0]), y]) and its gradient."""
    rng = make_rng(3)
    n_in, n_out, n = 4, 3, 6
    x = T.dmatrix("x")
    y = T.ivector("y")
    W = theano.shared(rand((n_in, n_out), rng=rng), name="W")
    b = theano.shared(np.zeros(n_out), name="b")
    p_y_given_x = T.nnet.softmax(T.dot(x, W) + b)
    nll = -T.mean(T.log(p_y_given_x)[T.arange(y.shape[0]), y])
    y_pred = T.argmax(p_y_given_x, axis=1)
    errors = T.mean(T.neq(y_pred, y))
    assert nll.dtype == "float64" and nll.ndim == 0
    assert errors.dtype == "float64"
    gW, gb = T.grad(cost=nll, wrt=[W, b])
    f = theano.function([x, y], [nll, errors, gW, gb])
    xv = rand((n, n_in), rng=rng)
    yv = np.array([0, 1, 2, 2, 2, 0], "int32")
    got_nll, got_err, got_gW, got_gb = f(xv, yv)
    p = np_softmax(xv @ W.get_value())
    np.testing.assert_allclose(got_nll, -np.mean(np.log(p[np.arange(n), yv])))
    assert got_err == np.mean(p.argmax(axis=1) != yv)
    onehot = np.eye(n_out)[yv]
    np.testing.assert_allclose(got_gW, xv.T @ (p - onehot) / n, atol=1e-12)
    np.testing.assert_allclose(got_gb, (p - onehot).mean(axis=0), atol=1e-12)


def test_nll_verify_grad():
    labels = np.array([0, 2, 2, 1], "int32")

    def nll(v):
        y = T.constant(labels)
        return -T.mean(T.log(T.nnet.softmax(v))[T.arange(y.shape[0]), y])

    check_grad(nll, [(4, 3)])


def test_float32_logistic_regression_step_keeps_float32():
    x = T.fmatrix("x")
    y = T.ivector("y")
    W = theano.shared(np.zeros((4, 3), "float32"), name="W")
    b = theano.shared(np.zeros(3, "float32"), name="b")
    p = T.nnet.softmax(T.dot(x, W) + b)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    assert cost.dtype == "float32"
    gW, gb = T.grad(cost, [W, b])
    assert gW.dtype == "float32" and gb.dtype == "float32"
    lr = 0.1
    f = theano.function([x, y], cost, updates=[(W, W - lr * gW), (b, b - lr * gb)])
    xv = rand((5, 4), "float32")
    yv = np.array([0, 1, 2, 0, 1], "int32")
    c0 = f(xv, yv)
    assert c0.dtype == np.float32
    np.testing.assert_allclose(c0, np.log(3), rtol=1e-6)
    costs = [float(f(xv, yv)) for _ in range(20)]
    assert costs[-1] < costs[0] < c0
    assert W.get_value().dtype == np.float32 and b.get_value().dtype == np.float32
