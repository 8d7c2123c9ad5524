"""symcnn.layers: the tutorial's classes (initialisation, shapes, costs, pickling)."""
import pickle

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.layers import MLP, HiddenLayer, LeNetConvPoolLayer, LogisticRegression, build_lenet5

floatX = theano.config.floatX
TOL = dict(rtol=1e-4, atol=1e-5) if floatX == 'float32' else dict(rtol=1e-10, atol=1e-12)


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_conv_valid_flipped(x, w):
    """True 2-d convolution ('valid'): Theano's conv2d with filter_flip=True."""
    b, c, h, wd = x.shape
    k, c2, fh, fw = w.shape
    assert c == c2
    wf = w[:, :, ::-1, ::-1]
    out = np.zeros((b, k, h - fh + 1, wd - fw + 1))
    for u in range(fh):
        for v in range(fw):
            patch = x[:, :, u:u + h - fh + 1, v:v + wd - fw + 1]  # (b, c, oh, ow)
            out += np.einsum('bchw,kc->bkhw', patch, wf[:, :, u, v])
    return out


def np_maxpool(x, ph, pw):
    b, k, h, w = x.shape
    h2, w2 = h // ph, w // pw
    x = x[:, :, :h2 * ph, :w2 * pw].reshape(b, k, h2, ph, w2, pw)
    return x.max(axis=(3, 5))


# ----------------------------------------------------------------------------- LogisticRegression

def test_logistic_regression_init():
    x = T.matrix('x')
    clf = LogisticRegression(input=x, n_in=7, n_out=3)
    W, b = clf.W.get_value(), clf.b.get_value()
    assert W.shape == (7, 3) and b.shape == (3,)
    assert W.dtype == floatX and b.dtype == floatX
    assert not W.any() and not b.any()
    assert clf.W.name == 'W' and clf.b.name == 'b'
    assert clf.params == [clf.W, clf.b]
    assert clf.input is x
    assert clf.p_y_given_x.ndim == 2 and clf.y_pred.ndim == 1
    assert clf.y_pred.dtype.startswith('int')


def _random_lr(n_in=6, n_out=4, seed=0):
    rng = np.random.RandomState(seed)
    x = T.matrix('x')
    clf = LogisticRegression(x, n_in, n_out)
    W = rng.randn(n_in, n_out).astype(floatX)
    b = rng.randn(n_out).astype(floatX)
    clf.W.set_value(W)
    clf.b.set_value(b)
    X = rng.rand(9, n_in).astype(floatX)
    Y = rng.randint(0, n_out, size=9).astype('int32')
    return clf, x, W, b, X, Y


def test_logistic_regression_outputs_and_nll_match_numpy():
    clf, x, W, b, X, Y = _random_lr()
    y = T.ivector('y')
    f = theano.function([x, y], [clf.p_y_given_x, clf.y_pred, clf.negative_log_likelihood(y), clf.errors(y)])
    p, pred, nll, err = f(X, Y)
    p_ref = np_softmax(X.astype(np.float64) @ W.astype(np.float64) + b)
    nll_ref = -np.mean(np.log(p_ref)[np.arange(len(Y)), Y])
    assert np.allclose(p, p_ref, **TOL)
    assert np.array_equal(pred, p_ref.argmax(axis=1))
    assert float(nll) == pytest.approx(nll_ref, rel=1e-4)
    assert float(err) == pytest.approx(np.mean(p_ref.argmax(axis=1) != Y))


def test_errors_counts_mistakes():
    clf, x, W, b, X, Y = _random_lr(seed=3)
    y = T.ivector('y')
    f = theano.function([x, y], clf.errors(y))
    pred = np_softmax(X.astype(np.float64) @ W + b).argmax(axis=1).astype('int32')
    assert float(f(X, pred)) == 0.0
    wrong = (pred + 1) % 4
    assert float(f(X, wrong)) == 1.0
    half = pred.copy()
    half[:3] = wrong[:3]
    assert float(f(X, half)) == pytest.approx(3 / 9)
    # the tutorial's errors works with the int32 cast of a float shared vector, too
    ys = T.cast(theano.shared(pred.astype(floatX)), 'int32')
    g = theano.function([x], clf.errors(ys))
    assert float(g(X)) == 0.0


def test_errors_type_checks():
    clf = LogisticRegression(T.matrix('x'), 5, 3)
    with pytest.raises(TypeError) as e:
        clf.errors(T.imatrix('y'))
    assert e.value.args[0] == 'y should have the same shape as self.y_pred'
    assert e.value.args[1][0] == 'y' and e.value.args[1][2] == 'y_pred'
    assert e.value.args[1][3] is clf.y_pred.type or e.value.args[1][3] == clf.y_pred.type
    with pytest.raises(NotImplementedError):
        clf.errors(T.vector('y'))


def test_pickled_logistic_regression_predicts_the_same():
    clf, x, W, b, X, Y = _random_lr(n_in=8, n_out=5, seed=7)
    predict = theano.function(inputs=[clf.input], outputs=clf.y_pred)
    expected = predict(X)
    clone = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(clone.W.get_value(), W) and np.array_equal(clone.b.get_value(), b)
    predict2 = theano.function(inputs=[clone.input], outputs=clone.y_pred)
    assert np.array_equal(predict2(X), expected)
    # the copy is independent of the original
    clone.W.set_value(np.zeros_like(W))
    assert np.array_equal(predict(X), expected)


# ----------------------------------------------------------------------------- HiddenLayer, MLP

def test_hidden_layer_init_tanh():
    rng = np.random.RandomState(1234)
    x = T.matrix('x')
    layer = HiddenLayer(rng, x, 30, 20)
    W = layer.W.get_value()
    bound = np.sqrt(6. / (30 + 20))
    ref = np.random.RandomState(1234).uniform(low=-bound, high=bound, size=(30, 20)).astype(floatX)
    assert np.array_equal(W, ref)
    assert W.dtype == floatX and np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.9 * bound  # fills the interval
    assert not layer.b.get_value().any() and layer.b.get_value().shape == (20,)
    assert layer.params == [layer.W, layer.b] and layer.input is x
    assert layer.W.name == 'W' and layer.b.name == 'b'
    X = np.random.RandomState(0).rand(4, 30).astype(floatX)
    out = theano.function([x], layer.output)(X)
    assert np.allclose(out, np.tanh(X.astype(np.float64) @ W), **TOL)


def test_hidden_layer_sigmoid_is_four_times_wider():
    x = T.matrix('x')
    a = HiddenLayer(np.random.RandomState(5), x, 10, 6, activation=T.nnet.sigmoid)
    b = HiddenLayer(np.random.RandomState(5), x, 10, 6, activation=T.tanh)
    assert np.allclose(a.W.get_value(), 4 * b.W.get_value())
    X = np.random.RandomState(1).rand(3, 10).astype(floatX)
    out = theano.function([x], a.output)(X)
    assert np.allclose(out, 1 / (1 + np.exp(-(X.astype(np.float64) @ a.W.get_value()))), **TOL)


def test_hidden_layer_given_params_and_linear():
    x = T.matrix('x')
    W = theano.shared(np.ones((3, 2), dtype=floatX), name='W')
    b = theano.shared(np.full(2, 0.5, dtype=floatX), name='b')
    rng = np.random.RandomState(0)
    state = rng.get_state()[1].copy()
    layer = HiddenLayer(rng, x, 3, 2, W=W, b=b, activation=None)
    assert layer.W is W and layer.b is b
    assert np.array_equal(rng.get_state()[1], state)  # nothing drawn
    out = theano.function([x], layer.output)(np.ones((1, 3), dtype=floatX))
    assert np.allclose(out, [[3.5, 3.5]])


def test_mlp_structure_and_regularisers():
    rng = np.random.RandomState(1234)
    x = T.matrix('x')
    y = T.ivector('y')
    mlp = MLP(rng=rng, input=x, n_in=12, n_hidden=8, n_out=3)
    assert mlp.params == [mlp.hiddenLayer.W, mlp.hiddenLayer.b, mlp.logRegressionLayer.W, mlp.logRegressionLayer.b]
    assert mlp.input is x and mlp.logRegressionLayer.input is mlp.hiddenLayer.output
    ref = np.random.RandomState(1234).uniform(-np.sqrt(6. / 20), np.sqrt(6. / 20), size=(12, 8)).astype(floatX)
    assert np.array_equal(mlp.hiddenLayer.W.get_value(), ref)
    mlp.logRegressionLayer.W.set_value(np.random.RandomState(2).randn(8, 3).astype(floatX))
    W1, W2 = mlp.hiddenLayer.W.get_value(), mlp.logRegressionLayer.W.get_value()
    f = theano.function([x, y], [mlp.L1, mlp.L2_sqr, mlp.negative_log_likelihood(y), mlp.errors(y)])
    X = np.random.RandomState(3).rand(5, 12).astype(floatX)
    Y = np.array([0, 1, 2, 1, 0], dtype='int32')
    L1, L2, nll, err = f(X, Y)
    assert float(L1) == pytest.approx(np.abs(W1).sum() + np.abs(W2).sum(), rel=1e-5)
    assert float(L2) == pytest.approx((W1.astype(np.float64) ** 2).sum() + (W2.astype(np.float64) ** 2).sum(), rel=1e-5)
    p = np_softmax(np.tanh(X.astype(np.float64) @ W1) @ W2)
    assert float(nll) == pytest.approx(-np.mean(np.log(p[np.arange(5), Y])), rel=1e-4)
    assert float(err) == pytest.approx(np.mean(p.argmax(1) != Y))


# ----------------------------------------------------------------------------- LeNetConvPoolLayer

def test_conv_pool_layer_init():
    rng = np.random.RandomState(23455)
    inp = T.tensor4('input')
    filter_shape, image_shape = (4, 3, 5, 5), (2, 3, 12, 12)
    layer = LeNetConvPoolLayer(rng, inp, filter_shape=filter_shape, image_shape=image_shape, poolsize=(2, 2))
    fan_in = 3 * 5 * 5
    fan_out = 4 * 5 * 5 // 4
    bound = np.sqrt(6. / (fan_in + fan_out))
    ref = np.random.RandomState(23455).uniform(low=-bound, high=bound, size=filter_shape).astype(floatX)
    W = layer.W.get_value()
    assert np.array_equal(W, ref) and W.dtype == floatX
    assert np.abs(W).max() <= bound
    assert layer.b.get_value().shape == (4,) and not layer.b.get_value().any()
    assert layer.params == [layer.W, layer.b] and layer.input is inp


def test_conv_pool_layer_channel_mismatch_asserts():
    with pytest.raises(AssertionError):
        LeNetConvPoolLayer(np.random.RandomState(0), T.tensor4(), filter_shape=(4, 2, 5, 5),
                           image_shape=(2, 3, 12, 12))


def test_conv_pool_layer_output_matches_numpy():
    rng = np.random.RandomState(0)
    inp = T.tensor4('input')
    layer = LeNetConvPoolLayer(rng, inp, filter_shape=(4, 3, 3, 3), image_shape=(2, 3, 9, 8), poolsize=(2, 2))
    layer.b.set_value(np.array([0.1, -0.2, 0.3, 0.0], dtype=floatX))
    X = np.random.RandomState(1).randn(2, 3, 9, 8).astype(floatX)
    out = theano.function([inp], layer.output)(X)
    conv = np_conv_valid_flipped(X.astype(np.float64), layer.W.get_value().astype(np.float64))  # (2,4,7,6)
    ref = np.tanh(np_maxpool(conv, 2, 2) + layer.b.get_value()[None, :, None, None])
    assert out.shape == (2, 4, 3, 3)
    assert np.allclose(out, ref, **TOL)


# ----------------------------------------------------------------------------- build_lenet5

def test_build_lenet5_structure_and_draw_order():
    x = T.matrix('x')
    model = build_lenet5(np.random.RandomState(23455), x, batch_size=3, nkerns=(20, 50))
    layer0, layer1, layer2, layer3 = model.layers
    assert model.params == layer3.params + layer2.params + layer1.params + layer0.params
    assert sum(p.get_value().size for p in model.params) == 431080
    assert layer0.W.get_value().shape == (20, 1, 5, 5)
    assert layer1.W.get_value().shape == (50, 20, 5, 5)
    assert layer2.W.get_value().shape == (800, 500)
    assert layer3.W.get_value().shape == (500, 10) and not layer3.W.get_value().any()
    # layer0 W, layer1 W, layer2 W, in that order, from the same rng
    ref = np.random.RandomState(23455)
    b0 = np.sqrt(6. / (25 + 20 * 25 // 4))
    b1 = np.sqrt(6. / (20 * 25 + 50 * 25 // 4))
    b2 = np.sqrt(6. / (800 + 500))
    assert np.array_equal(layer0.W.get_value(), ref.uniform(-b0, b0, size=(20, 1, 5, 5)).astype(floatX))
    assert np.array_equal(layer1.W.get_value(), ref.uniform(-b1, b1, size=(50, 20, 5, 5)).astype(floatX))
    assert np.array_equal(layer2.W.get_value(), ref.uniform(-b2, b2, size=(800, 500)).astype(floatX))
    assert model.input is x and model.y_pred is layer3.y_pred


def test_build_lenet5_runs():
    x = T.matrix('x')
    y = T.ivector('y')
    model = build_lenet5(np.random.RandomState(23455), x, batch_size=2, nkerns=(3, 4))
    f = theano.function([x, y], [model.layers[3].p_y_given_x, model.negative_log_likelihood(y), model.errors(y)])
    X = np.random.RandomState(0).rand(2, 784).astype(floatX)
    p, nll, err = f(X, np.array([1, 7], dtype='int32'))
    assert p.shape == (2, 10)
    assert np.allclose(p, 0.1)  # logistic layer starts at zero
    assert float(nll) == pytest.approx(np.log(10), rel=1e-5)
    with pytest.raises(ValueError, match='nkerns'):
        build_lenet5(np.random.RandomState(0), x, 2, nkerns=(3,))
