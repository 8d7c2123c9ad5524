"""binary_crossentropy, categorical_crossentropy (and its stabilising rewrite), relu, softmax of a vector."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.nnet import CrossEntropySoftmax, CrossEntropySoftmaxGrad
from tests.helpers import (assert_starts_with_location, check_grad, check_native_vs_reference, compile_and_run, here,
                           make_rng, rand)


def _np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_binary_crossentropy():
    rng = make_rng(20)
    p, t = T.dmatrix("p"), T.dmatrix("t")
    pv, tv = rand((3, 4), rng=rng, low=0.05, high=0.95), rand((3, 4), rng=rng, low=0, high=1)
    want = -(tv * np.log(pv) + (1 - tv) * np.log(1 - pv))
    np.testing.assert_allclose(compile_and_run([p, t], T.nnet.binary_crossentropy(p, t), [pv, tv]), want)
    check_native_vs_reference([p, t], T.nnet.binary_crossentropy(p, t), [pv, tv], rtol=1e-10)
    check_grad(lambda a, b: T.nnet.binary_crossentropy(a, b), [(3, 4), (3, 4)], low=0.1, high=0.9)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.nnet.binary_crossentropy(T.ivector("i"), T.dvector())
    assert_starts_with_location(e, loc)


def test_categorical_crossentropy_with_distributions():
    rng = make_rng(21)
    p, t = T.dmatrix("p"), T.dmatrix("t")
    pv, tv = _np_softmax(rand((4, 5), rng=rng)), _np_softmax(rand((4, 5), rng=rng))
    want = -(tv * np.log(pv)).sum(axis=1)
    np.testing.assert_allclose(compile_and_run([p, t], T.nnet.categorical_crossentropy(p, t), [pv, tv]), want)
    check_native_vs_reference([p, t], T.nnet.categorical_crossentropy(p, t), [pv, tv], rtol=1e-10)
    check_grad(lambda a, b: T.nnet.categorical_crossentropy(T.nnet.softmax(a), b), [(4, 5), (4, 5)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_categorical_crossentropy_with_labels_is_stabilised(dtype):
    rng = make_rng(22)
    z, y = T.matrix("z", dtype=dtype), T.ivector("y")
    zv, yv = rand((6, 5), dtype, rng, -3, 3), rng.integers(0, 5, size=6).astype("int32")
    cost = T.nnet.categorical_crossentropy(T.nnet.softmax(z), y).mean()
    want = -np.log(_np_softmax(zv.astype("float64"))[np.arange(6), yv]).mean()
    np.testing.assert_allclose(compile_and_run([z, y], cost, [zv, yv]), want, rtol=1e-5)
    g = T.grad(cost, z)
    fn, _ = check_native_vs_reference([z, y], [cost, g], [zv, yv])
    ops = {type(n.op) for n in fn.fgraph.toposort()}
    assert CrossEntropySoftmax in ops and CrossEntropySoftmaxGrad in ops
    # no log of every probability: a huge logit gives a finite cost where log(softmax) would give inf
    big = np.array([[1000.0, 0.0]], dtype=dtype)
    f = theano.function([z, y], cost)
    assert np.isfinite(f(big, np.array([1], dtype="int32")))
    check_grad(lambda a: T.nnet.categorical_crossentropy(T.nnet.softmax(a), yv).mean(), [(6, 5)])


def test_categorical_crossentropy_errors():
    p = T.dmatrix("p")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.nnet.categorical_crossentropy(p, T.dvector("labels"))
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.nnet.categorical_crossentropy(p, T.dtensor3("t"))
    assert_starts_with_location(e, loc)


def test_softmax_of_a_vector_is_a_row():
    v = T.dvector("v")
    out = T.nnet.softmax(v)
    assert out.ndim == 2 and out.type.shape[0] == 1
    vv = rand((5,))
    np.testing.assert_allclose(compile_and_run([v], out, [vv]), _np_softmax(vv)[None, :])
    check_native_vs_reference([v], out, [vv], rtol=1e-10)
    check_grad(lambda a: T.nnet.softmax(a) * np.arange(5.0), [(5,)])


@pytest.mark.parametrize("alpha", [0, 0.1, -0.5])
def test_relu(alpha):
    x = T.dmatrix("x")
    xv = rand((4, 5), rng=make_rng(23))
    xv[0, 0] = 0.0
    want = np.where(xv > 0, xv, alpha * xv)
    np.testing.assert_allclose(compile_and_run([x], T.nnet.relu(x, alpha), [xv]), want, rtol=1e-6, atol=1e-7)
    check_native_vs_reference([x], [T.nnet.relu(x, alpha), T.grad(T.nnet.relu(x, alpha).sum(), x)], [xv],
                              rtol=1e-10)
    # Theano's gradient: 1 above 0, alpha below, (1 + alpha) / 2 at 0
    g = compile_and_run([x], T.grad(T.nnet.relu(x, alpha).sum(), x), [xv])
    np.testing.assert_allclose(g, np.where(xv > 0, 1.0, np.where(xv < 0, alpha, (1 + alpha) / 2)), rtol=1e-6)
    check_grad(lambda a: T.nnet.relu(a, alpha), [(4, 5)], low=0.1, high=1.0)
    check_grad(lambda a: T.nnet.relu(a, alpha), [(4, 5)], low=-1.0, high=-0.1)
    a = T.dscalar("a")  # a symbolic alpha
    assert compile_and_run([x, a], T.nnet.relu(x, a), [xv, alpha]).shape == (4, 5)
