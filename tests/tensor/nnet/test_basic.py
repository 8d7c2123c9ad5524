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
    if a.ndim == 1:  # Theano 1.0: the softmax of a vector is a 1 x N matrix
        a = a[None, :]
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


# -- LogSoftmax, SoftmaxGrad, CrossEntropySoftmax and its gradient -------------------------------

from symcnn.tensor.nnet.basic import (CrossEntropySoftmax, CrossEntropySoftmaxGrad, LogSoftmax,  # noqa: E402
                                      SoftmaxGrad, crossentropy_softmax, crossentropy_softmax_grad, log_softmax,
                                      softmax_grad)


def np_log_softmax(a):
    a = np.asarray(a, dtype="float64")
    s = a - a.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("mode", [None, "native"])
@pytest.mark.parametrize("static", [False, True])
def test_new_ops_contract(mode, static):
    rng = make_rng(20)
    for shape in [(3, 5), (5,), (1, 1)]:
        a = rand(shape, "float64", rng, -4, 4)
        (got,) = assert_op_contract(log_softmax, [a], mode=mode, static=static)
        np.testing.assert_allclose(got, np_log_softmax(a), rtol=1e-12)
        (got,) = assert_op_contract(softmax_grad, [a, np_softmax(a)], mode=mode, static=static)
    z = rand((6, 4), "float32", rng, -3, 3)
    y = np.array([3, 0, -1, 2], "int32")
    (loss,) = assert_op_contract(crossentropy_softmax, [z, y], mode=mode, static=static)
    assert loss.dtype == np.float32 and loss.shape == (4,)
    np.testing.assert_allclose(loss, -np_log_softmax(z)[np.arange(4), y], rtol=1e-6)
    (g,) = assert_op_contract(crossentropy_softmax_grad, [np.ones(4, "float32"), z, y], mode=mode, static=static)
    assert g.shape == (6, 4) and g.dtype == np.float32 and not g[4:].any()
    assert_op_contract(crossentropy_softmax_grad, [np.float64(2.0), z, y], mode=mode, static=static)


@pytest.mark.parametrize("shape", [(3, 4), (4,), (1, 1)])
def test_log_softmax_verify_grad(shape):
    check_grad(log_softmax, [shape], mode="reference")


@pytest.mark.parametrize("shape", [(3, 4), (5,)])
def test_softmax_grad_verify_grad(shape):
    check_grad(softmax_grad, [shape, shape], mode="reference")
    rng = make_rng(21)
    check_grad(softmax_grad, None, values=[rand(shape, rng=rng), np_softmax(rand(shape, rng=rng))], mode="reference")


@pytest.mark.parametrize("labels,rows", [([0, 2, 2, 1], 4), ([1, -1, 0], 5), ([2], 1), ([0, 1], 2)])
def test_crossentropy_softmax_verify_grad(labels, rows):
    y = np.array(labels, "int32")
    check_grad(lambda z: crossentropy_softmax(z, T.constant(y)), [(rows, 3)], low=-3, high=3, mode="reference")


@pytest.mark.parametrize("labels,rows,gshape", [([0, 2, 2, 1], 4, (4,)), ([1, -1, 0], 5, (3,)), ([2, 0], 3, ()),
                                                ([2, 0, 1], 3, "broadcast")])
def test_crossentropy_softmax_grad_verify_grad(labels, rows, gshape):
    y = T.constant(np.array(labels, "int32"))
    rng = make_rng(22)
    values = [rand(() if gshape == "broadcast" else gshape, rng=rng), rand((rows, 3), rng=rng, low=-3, high=3)]
    if gshape == "broadcast":  # one value of static length 1 for every label
        def fn(g, z):
            return crossentropy_softmax_grad(g.dimshuffle("x"), z, y)
    else:
        def fn(g, z):
            return crossentropy_softmax_grad(g, z, y)
    check_grad(fn, None, values=values, mode="reference")


def test_gradients_use_the_new_ops():
    x = T.dmatrix("x")
    sm = T.nnet.softmax(x)
    g = T.grad((sm * sm).sum(), x)
    assert isinstance(g.owner.op, SoftmaxGrad)
    assert g.owner.inputs[1] is sm  # the forward node's output, not a second softmax
    ls = log_softmax(x)
    g = T.grad((ls * 2).sum(), x)
    assert any(v is ls for v in _ancestors(g))
    assert not any(isinstance(n.op, T.nnet.Softmax) for n in _nodes(g))
    y = T.ivector("y")
    loss = crossentropy_softmax(x, y)
    g = T.grad(loss.sum(), x)
    assert isinstance(g.owner.op, CrossEntropySoftmaxGrad)
    assert isinstance(loss.owner.op, CrossEntropySoftmax) and isinstance(ls.owner.op, LogSoftmax)


def _nodes(v):
    from symcnn.graph.basic import io_toposort
    return io_toposort([v])


def _ancestors(v):
    out = []
    for n in _nodes(v):
        out += list(n.inputs) + list(n.outputs)
    return out


def test_crossentropy_softmax_grad_of_tutorial_cost_is_softmax_minus_onehot():
    rng = make_rng(23)
    z, y = T.dmatrix("z"), T.ivector("y")
    cost = T.mean(crossentropy_softmax(z, y))
    gz = T.grad(cost, z)
    zv = rand((5, 4), rng=rng, low=-3, high=3)
    yv = np.array([1, 0, 3], "int32")
    c, g = compile_and_run([z, y], [cost, gz], [zv, yv])
    p = np_softmax(zv[:3])
    np.testing.assert_allclose(c, -np_log_softmax(zv)[np.arange(3), yv].mean(), rtol=1e-12)
    want = np.zeros((5, 4))
    want[:3] = (p - np.eye(4)[yv]) / 3
    np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-14)


def test_new_ops_bad_inputs():
    with pytest.raises(TypeError, match="vector or a matrix"):
        log_softmax(T.dtensor3())
    with pytest.raises(TypeError, match="floats"):
        log_softmax(T.imatrix())
    with pytest.raises(TypeError, match="differ in ndim"):
        softmax_grad(T.dmatrix(), T.dvector())
    with pytest.raises(ValueError, match="differ in dimension 1"):
        softmax_grad(T.TensorType("float64", shape=(None, 3))(), T.TensorType("float64", shape=(None, 4))())
    with pytest.raises(TypeError, match="labels must be an integer vector"):
        crossentropy_softmax(T.dmatrix(), T.dvector())
    with pytest.raises(TypeError, match="labels must be an integer vector"):
        crossentropy_softmax(T.dmatrix(), T.imatrix())
    with pytest.raises(TypeError, match="logits must be a float matrix"):
        crossentropy_softmax(T.dvector(), T.ivector())
    with pytest.raises(IndexError, match="only 2 rows"):
        crossentropy_softmax(T.TensorType("float64", shape=(2, 3))(), T.TensorType("int32", shape=(3,))())
    with pytest.raises(TypeError, match="float vector"):
        crossentropy_softmax_grad(T.dmatrix(), T.dmatrix(), T.ivector())
    with pytest.raises(ValueError, match="has 2 values for 3 labels"):
        crossentropy_softmax_grad(T.TensorType("float64", shape=(2,))(), T.dmatrix(),
                                  T.TensorType("int32", shape=(3,))())


def test_new_ops_perform_errors():
    z, y = T.dmatrix("z"), T.ivector("y")
    f = theano.function([z, y], crossentropy_softmax(z, y), mode="reference")
    with pytest.raises(IndexError, match="out of bounds"):
        f(np.zeros((3, 2)), np.array([0, 2], "int32"))
    with pytest.raises(IndexError, match="out of bounds"):
        f(np.zeros((1, 2)), np.array([0, 1], "int32"))
    with pytest.raises(ValueError):
        f(np.zeros((1, 0)), np.array([], "int32"))
