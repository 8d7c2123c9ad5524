"""Shared variables: types, borrow semantics, set_value, pickling (with graphs)."""
import pickle

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.shared import SharedVariable, TensorSharedVariable


def test_shared_type_from_value():
    w = theano.shared(np.zeros((3, 4), "float32"), name="W")
    assert isinstance(w, SharedVariable) and isinstance(w, TensorSharedVariable)
    assert w.dtype == "float32" and w.ndim == 2 and w.name == "W"
    assert w.type.shape == (None, None)  # shape may change through set_value
    assert w.owner is None and w.is_shared
    assert str(w) == "W"
    assert theano.shared(0.5).dtype == "float64"  # no autocast for shared
    assert theano.shared(3).dtype == "int64"
    assert theano.shared(np.zeros(1), broadcastable=(True,)).type.shape == (1,)
    assert str(theano.shared(np.zeros(2))) == "<float64 vector>"


def test_shared_operators_build_graphs():
    w = theano.shared(np.arange(6.0).reshape(2, 3), name="w")
    f = theano.function([], [w * 2, w.T, w[1], w.sum(axis=0), w.shape, T.dot(w, w.T)])
    r = f()
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(r[0], a * 2)
    np.testing.assert_array_equal(r[1], a.T)
    np.testing.assert_array_equal(r[2], a[1])
    np.testing.assert_array_equal(r[3], a.sum(axis=0))
    np.testing.assert_array_equal(r[4], [2, 3])
    np.testing.assert_array_equal(r[5], a @ a.T)


def test_shared_copies_value_by_default():
    a = np.zeros(3)
    w = theano.shared(a)
    a[0] = 5.0
    assert w.get_value()[0] == 0.0
    assert not np.shares_memory(w.get_value(borrow=True), a)


def test_shared_borrow_true_aliases():
    a = np.zeros(3)
    w = theano.shared(a, borrow=True)
    assert w.get_value(borrow=True) is a
    a[0] = 5.0
    assert w.get_value()[0] == 5.0


def test_get_value_borrow():
    w = theano.shared(np.arange(3.0))
    internal = w.get_value(borrow=True)
    assert w.get_value(borrow=True) is internal
    copy = w.get_value()
    assert copy is not internal and not np.shares_memory(copy, internal)
    copy[0] = 100
    assert w.get_value()[0] == 0.0
    internal[0] = 7.0  # borrowing exposes the storage
    assert w.get_value()[0] == 7.0
    assert w.value is internal


def test_set_value_borrow():
    w = theano.shared(np.zeros(3))
    new = np.ones(3)
    w.set_value(new)
    new[0] = 9.0
    assert w.get_value()[0] == 1.0
    new2 = np.full(3, 2.0)
    w.set_value(new2, borrow=True)
    assert w.get_value(borrow=True) is new2


def test_set_value_checks_type_and_allows_new_shape():
    w = theano.shared(np.zeros((2, 2), "float32"), name="w")
    w.set_value(np.ones((5, 3), "float32"))
    assert w.get_value().shape == (5, 3)
    with pytest.raises(TypeError, match="float32"):
        w.set_value(np.ones((2, 2)))  # float64 would lose precision
    with pytest.raises(TypeError, match="2-d"):
        w.set_value(np.ones(3, "float32"))
    w.set_value([[1, 2]])  # lists convert when lossless
    assert w.get_value().dtype == np.float32


def test_shared_bad_values():
    with pytest.raises(TypeError, match="numeric"):
        theano.shared({"a": 1})
    w = theano.shared(np.zeros(2))
    with pytest.raises(TypeError, match="get_value"):
        theano.shared(w)


def test_compiled_function_reads_and_writes_the_container():
    w = theano.shared(np.zeros(2), name="w")
    f = theano.function([], [], updates=[(w, w + 1)])
    f()
    f()
    np.testing.assert_array_equal(w.get_value(), [2.0, 2.0])
    w.set_value(np.array([10.0, 10.0]))
    f()
    np.testing.assert_array_equal(w.get_value(), [11.0, 11.0])


def test_pickle_shared_variable():
    w = theano.shared(np.arange(4, dtype="float32"), name="w")
    w2 = pickle.loads(pickle.dumps(w))
    assert w2 is not w
    assert isinstance(w2, TensorSharedVariable)
    assert w2.name == "w" and w2.type == w.type
    np.testing.assert_array_equal(w2.get_value(), np.arange(4))
    assert w2.trace == w.trace
    w2.set_value(np.zeros(4, "float32"))
    assert w.get_value()[1] == 1.0  # independent storage


def test_pickle_graph_and_compile():
    x = T.fmatrix("x")
    W = theano.shared(np.ones((3, 2), "float32"), name="W")
    b = theano.shared(np.zeros(2, "float32"), name="b")
    out = T.nnet.softmax(T.tanh(T.dot(x, W) + b))
    x2, out2 = pickle.loads(pickle.dumps((x, out)))
    assert x2.name == "x" and out2.type == out.type
    assert out2.owner.inputs[0].owner.op is T.tanh  # registered ops keep their identity
    f = theano.function([x2], out2)
    xv = np.ones((2, 3), "float32")
    np.testing.assert_allclose(f(xv), theano.function([x], out)(xv), rtol=1e-6)


def test_pickle_preserves_sharing_inside_graph():
    W = theano.shared(np.ones(2), name="W")
    cost = (W * W).sum()
    W2, cost2 = pickle.loads(pickle.dumps((W, cost)))
    g = T.grad(cost2, W2)
    np.testing.assert_array_equal(theano.function([], g)(), [2.0, 2.0])
    W2.set_value(np.array([3.0, 4.0]))
    assert theano.function([], cost2)() == 25.0


def test_set_value_lossy_cast_message_fits_set_value():
    w = theano.shared(np.zeros((2, 2), dtype="float32"), name="W")
    with pytest.raises(TypeError) as info:
        w.set_value(np.ones((2, 2)))                   # float64: refused, as Theano's set_value does
    msg = str(info.value)
    assert "'W': expected float32, got float64" in msg
    assert "W.set_value(numpy.asarray(value, dtype='float32'))" in msg
    assert "allow_input_downcast" not in msg            # an argument of function(), not of set_value
    w.set_value(np.ones((2, 2)).astype("float32"))      # the advised fix works
