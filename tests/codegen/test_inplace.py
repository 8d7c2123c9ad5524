"""In-place work: SGD updates written into the shared storage, elementwise kernels
overwriting dead inputs; and the inspection helpers (kernels, memory report, DOT)."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.printing import to_dot

from tests.helpers import check_native_vs_reference


def _logreg(mode, rng):
    x, y = T.matrix("x"), T.ivector("y")
    W = symcnn.shared(rng.rand(4, 3).astype("float32"), name="W")
    b = symcnn.shared(np.zeros(3, "float32"), name="b")
    p = T.nnet.softmax(T.dot(x, W) + b)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    gW, gb = T.grad(cost, [W, b])
    f = symcnn.function([x, y], cost, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)], mode=mode)
    return f, W, b


def test_sgd_updates_write_into_shared_storage():
    data = np.random.RandomState(0)
    X, Y = data.rand(6, 4).astype("float32"), data.randint(0, 3, 6).astype("int32")
    f, W, b = _logreg("native", np.random.RandomState(1))
    fr, Wr, br = _logreg("reference", np.random.RandomState(1))
    storage = W.get_value(borrow=True)
    for _ in range(3):
        np.testing.assert_allclose(f(X, Y), fr(X, Y), rtol=1e-5)
    assert W.get_value(borrow=True) is storage  # same buffer, updated in place
    np.testing.assert_allclose(W.get_value(), Wr.get_value(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.get_value(), br.get_value(), rtol=1e-5, atol=1e-6)
    notes = [k.note for k in f.kernels]
    assert "in place into W" in notes and "in place into b" in notes
    assert not any(k.name == "copy" for k in f.kernels)


def test_update_not_in_place_when_its_old_value_is_returned():
    w = symcnn.shared(np.arange(4, dtype="float32"), name="w")
    f = symcnn.function([], [w * 1, w.T * 2], updates=[(w, w + 1)], mode="native")
    old, twice = f()
    np.testing.assert_array_equal(old, [0, 1, 2, 3])
    np.testing.assert_array_equal(twice, [0, 2, 4, 6])
    np.testing.assert_array_equal(w.get_value(), [1, 2, 3, 4])


def test_updates_reading_each_others_targets_stay_correct():
    a = symcnn.shared(np.ones(3, "float32"), name="a")
    c = symcnn.shared(np.full(3, 2, "float32"), name="c")
    f = symcnn.function([], [], updates=[(a, a + c), (c, c * a)], mode="native")
    f()
    np.testing.assert_array_equal(a.get_value(), [3, 3, 3])
    np.testing.assert_array_equal(c.get_value(), [2, 2, 2])
    assert sum("in place" in k.note for k in f.kernels) <= 1


def test_failed_call_leaves_every_shared_variable_unchanged():
    a = symcnn.shared(np.ones((2, 3), "float32"), name="a")
    c = symcnn.shared(np.ones((2, 3), "float32"), name="c")
    x = T.matrix("x")
    f = symcnn.function([x], [], updates=[(a, a + 1), (c, c - x)], mode="native")
    with pytest.raises(ValueError):
        f(np.ones((5, 3), "float32"))  # c - x cannot broadcast: no update may happen
    np.testing.assert_array_equal(a.get_value(), np.ones((2, 3)))
    np.testing.assert_array_equal(c.get_value(), np.ones((2, 3)))


def test_elementwise_kernels_overwrite_dead_inputs():
    x = T.matrix("x")
    y = T.exp(T.dot(x, x.T))
    z = T.tanh(y) * T.dot(x, x.T).sum()
    fn, _ = check_native_vs_reference([x], z, [np.random.RandomState(0).rand(3, 3).astype("float32")],
                                      rtol=1e-5, mode=Mode("native", excluding=["fuse_elemwise"]))
    assert any("overwrites its dead input" in k.note for k in fn.kernels)


def test_kernels_memory_report_and_dot_export():
    x = T.matrix("x")
    W = symcnn.shared(np.ones((3, 2), "float32"), name="W")
    h = T.tanh(T.dot(x, W) + 1)
    f = symcnn.function([x], h.sum(), mode="native")
    assert "Dot" in f.kernels[0].name
    assert any("composite" in k.name for k in f.kernels)
    f(np.ones((5, 3), "float32"))
    report = f.memory_report()
    assert report["buffers"] >= 1 and report["bytes"] >= 5 * 2 * 4
    before, after = to_dot(f.original_outputs), to_dot(f)
    assert before.startswith("digraph") and after.startswith("digraph")
    assert "tanh" in before and "composite" not in before and "composite" in after
    fr = symcnn.function([x], h.sum(), mode="reference")
    with pytest.raises(ValueError, match="native"):
        fr.kernels
