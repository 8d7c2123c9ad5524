"""theano.function: construction, calling, outputs, updates, givens and argument errors."""
from collections import OrderedDict

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.function import MissingInputError, UnusedInputError
from symcnn.tensor.subtensor import Subtensor
from tests.helpers import assert_starts_with_location, here, rand


# -- construction and calling ----------------------------------------------------------------
def test_positional_and_keyword_construction():
    x, y = T.dvector("x"), T.dvector("y")
    f1 = theano.function([x, y], x + y)
    f2 = theano.function(inputs=[x, y], outputs=x + y)
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_array_equal(f1(a, b), [4.0, 6.0])
    np.testing.assert_array_equal(f2(a, b), [4.0, 6.0])
    s = theano.shared(np.float64(0.0), name="s")
    f3 = theano.function(inputs=[x], outputs=x.sum(), updates=[(s, s + x.sum())], givens=None)
    f3(a)
    assert s.get_value() == 3.0


def test_call_with_python_numbers_and_lists():
    i = T.lscalar("i")
    k = T.iscalar("k")
    x = T.fscalar("x")
    f = theano.function([i, k, x], [i * 2, k + 1, x * 2])
    r = f(3, 4, 1.5)
    assert r[0] == 6 and r[0].dtype == np.int64
    assert r[1] == 5 and r[1].dtype == np.int32
    assert r[2] == 3.0 and r[2].dtype == np.float32
    v = T.fvector("v")
    np.testing.assert_array_equal(theano.function([v], v * 2)([1, 2, 3]), [2.0, 4.0, 6.0])


def test_call_by_keyword():
    x, y = T.dscalar("x"), T.dscalar("y")
    f = theano.function([x, y], x - y)
    assert f(y=1.0, x=5.0) == 4.0
    assert f(5.0, y=2.0) == 3.0
    with pytest.raises(TypeError, match="no input named 'z'"):
        f(1.0, z=2.0)
    with pytest.raises(TypeError, match="twice"):
        f(1.0, x=2.0, y=1.0)


def test_outputs_are_ndarrays_and_scalars_are_0d():
    x = T.dmatrix("x")
    f = theano.function([x], [x.sum(), x.shape[0], x[0, 0], x * 2])
    res = f(np.ones((2, 3)))
    for r in res:
        assert type(r) is np.ndarray
    assert res[0].shape == () and res[0] == 6.0
    assert res[1].shape == () and res[1] == 2
    assert res[2].shape == ()
    assert res[3].shape == (2, 3)


def test_single_vs_list_outputs():
    x = T.dscalar("x")
    f_single = theano.function([x], x * 2)
    f_list1 = theano.function([x], [x * 2])
    f_tuple = theano.function([x], (x * 2, x * 3))
    assert isinstance(f_single(1.0), np.ndarray)
    r = f_list1(1.0)
    assert isinstance(r, list) and len(r) == 1 and r[0] == 2.0
    assert [float(v) for v in f_tuple(1.0)] == [2.0, 3.0]
    assert theano.function([x], [], on_unused_input="ignore")(1.0) == []


def test_output_can_be_an_input_or_constant():
    x = T.dvector("x")
    a = np.array([1.0, 2.0])
    f = theano.function([x], [x, T.constant(np.float64(3.0))])
    out, c = f(a)
    np.testing.assert_array_equal(out, a)
    assert not np.shares_memory(out, a)  # outputs never alias inputs
    assert c == 3.0


def test_function_name_and_maker():
    x = T.dscalar("x")
    f = theano.function([x], x + 1, name="inc")
    assert f.name == "inc"
    assert f.maker.fgraph is f.fgraph
    assert len(f.fgraph.toposort()) >= 1
    with pytest.raises(TypeError, match="function 'inc'"):
        f()


# -- argument errors ---------------------------------------------------------------------------
def test_wrong_number_of_arguments():
    x, y = T.dvector("x"), T.dvector("y")
    f = theano.function([x, y], x + y)
    with pytest.raises(TypeError, match="takes 2 arguments") as ei:
        f(np.zeros(2))
    assert "missing: y" in str(ei.value)
    with pytest.raises(TypeError, match="got 3"):
        f(np.zeros(2), np.zeros(2), np.zeros(2))


def test_float64_into_fmatrix_raises_with_hint():
    x = T.fmatrix("x"); loc = here()  # noqa: E702
    f = theano.function([x], x * 2)
    with pytest.raises(TypeError) as ei:
        f(np.ones((2, 2)))
    msg = str(ei.value)
    assert_starts_with_location(ei, loc)
    assert "'x'" in msg and "float32" in msg and "float64" in msg
    assert "allow_input_downcast=True" in msg


def test_allow_input_downcast():
    x = T.fmatrix("x")
    f = theano.function([x], x * 2, allow_input_downcast=True)
    got = f(np.ones((2, 2)))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.full((2, 2), 2.0))
    i = T.ivector("i")
    g = theano.function([i], i + 1, allow_input_downcast=True)
    np.testing.assert_array_equal(g(np.array([1.7, 2.2])), [2, 3])
    g2 = theano.function([i], i + 1)
    with pytest.raises(TypeError, match="'i'"):
        g2(np.array([1.7, 2.2]))
    with pytest.raises(TypeError, match="'i'"):
        g2(np.array([1, 2], dtype="int64"))


def test_config_allow_input_downcast_default():
    x = T.fvector("x")
    old = theano.config.allow_input_downcast
    try:
        theano.config.allow_input_downcast = True
        f = theano.function([x], x + 1)
        assert f(np.zeros(2)).dtype == np.float32
    finally:
        theano.config.allow_input_downcast = old
    g = theano.function([x], x + 1)
    with pytest.raises(TypeError):
        g(np.zeros(2))


def test_wrong_ndim_names_the_input():
    x = T.dmatrix("images")
    f = theano.function([x], x.sum())
    with pytest.raises(TypeError, match="'images'") as ei:
        f(np.zeros(3))
    assert "expected 2-d" in str(ei.value)
    with pytest.raises(TypeError, match="'images'"):
        f(np.zeros((1, 2, 3)))


def test_wrong_static_shape_names_the_input():
    x = T.TensorType("float64", shape=(None, 3))("x")
    f = theano.function([x], x.sum())
    with pytest.raises(ValueError, match="'x'"):
        f(np.zeros((2, 4)))


def test_unused_input():
    x, y = T.dvector("x"), T.dvector("y_unused")
    with pytest.raises(UnusedInputError, match="y_unused"):
        theano.function([x, y], x * 2)
    f = theano.function([x, y], x * 2, on_unused_input="ignore")
    np.testing.assert_array_equal(f(np.ones(1), np.ones(5)), [2.0])
    with pytest.warns(UserWarning, match="y_unused"):
        theano.function([x, y], x * 2, on_unused_input="warn")


def test_missing_input():
    x, y = T.dvector("x"), T.dvector("y_missing")
    loc_y = y.trace.location()
    with pytest.raises(MissingInputError, match="y_missing") as ei:
        theano.function([x], x + y)
    assert_starts_with_location(ei, loc_y)


def test_bad_inputs_list():
    x = T.dvector("x")
    s = theano.shared(np.zeros(2))
    with pytest.raises(TypeError, match="list"):
        theano.function(x, x)
    with pytest.raises(TypeError, match="shared variable"):
        theano.function([s], s * 2)
    with pytest.raises(TypeError, match="computed from other variables"):
        theano.function([x * 2], x)
    with pytest.raises(TypeError, match="constant"):
        theano.function([T.constant(1.0)], x, on_unused_input="ignore")
    with pytest.raises(ValueError, match="twice"):
        theano.function([x, x], x)
    with pytest.raises(TypeError, match="not a symbolic variable"):
        theano.function([np.zeros(2)], x)


# -- updates -------------------------------------------------------------------------------------
def test_updates_use_old_values_and_are_assigned_together():
    a = theano.shared(np.array([1.0, 2.0]), name="a")
    b = theano.shared(np.array([3.0, 4.0]), name="b")
    swap = theano.function([], [], updates=[(a, b), (b, a)])
    swap()
    np.testing.assert_array_equal(a.get_value(), [3.0, 4.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 2.0])
    swap()
    np.testing.assert_array_equal(a.get_value(), [1.0, 2.0])
    np.testing.assert_array_equal(b.get_value(), [3.0, 4.0])


def test_outputs_are_computed_before_updates():
    c = theano.shared(np.float64(0.0), name="c")
    inc = T.dscalar("inc")
    f = theano.function([inc], [c, c * 10], updates=[(c, c + inc)])
    r = f(1.0)
    assert float(r[0]) == 0.0 and float(r[1]) == 0.0
    r = f(2.0)
    assert float(r[0]) == 1.0
    assert c.get_value() == 3.0


def test_update_forms():
    s = theano.shared(np.float64(1.0), name="s")
    t = theano.shared(np.float64(1.0), name="t")
    theano.function([], [], updates={s: s * 2})()
    theano.function([], [], updates=OrderedDict([(s, s * 2), (t, t + 1)]))()
    theano.function([], [], updates=(s, s + 1))()  # a single pair
    theano.function([], [], updates=[[t, t * 3]])()
    assert s.get_value() == 5.0
    assert t.get_value() == 6.0


def test_sgd_updates_with_shapes_and_grads():
    W = theano.shared(np.zeros((3, 2), "float32"), name="W")
    x = T.fmatrix("x")
    cost = T.sum((T.dot(x, W) - 1.0) ** 2)
    g = T.grad(cost, W)
    step = theano.function([x], cost, updates=[(W, W - 0.01 * g)])
    xv = np.ones((4, 3), "float32")
    c0 = step(xv)
    c1 = step(xv)
    assert c0 == pytest.approx(8.0) and c1 < c0
    np.testing.assert_allclose(W.get_value(), np.full((3, 2), 0.08 + 0.01 * 8 * 0.76), rtol=1e-5)
    assert W.get_value().dtype == np.float32


def test_update_dtype_mismatch():
    w = theano.shared(np.zeros(3, "float32"), name="w")
    x = T.dvector("x")
    with pytest.raises(TypeError, match="T.cast") as ei:
        theano.function([x], [], updates=[(w, w + x)])
    assert "'w'" in str(ei.value) and "float64" in str(ei.value)
    with pytest.raises(TypeError, match="has type"):
        theano.function([], [], updates=[(w, T.sum(w))])
    theano.function([x], [], updates=[(w, T.cast(w + x, "float32"))])(np.ones(3))
    np.testing.assert_array_equal(w.get_value(), np.ones(3))


def test_update_errors():
    w = theano.shared(np.zeros(3), name="w")
    x = T.dvector("x")
    with pytest.raises(TypeError, match="not a shared variable"):
        theano.function([x], [], updates=[(x, x + 1)])
    with pytest.raises(ValueError, match="updated twice"):
        theano.function([], [], updates=[(w, w + 1), (w, w + 2)])
    with pytest.raises(TypeError, match="pairs"):
        theano.function([], [], updates=[(w,)])
    with pytest.raises(TypeError):
        theano.function([], [], updates=3)


def test_update_can_change_shape():
    w = theano.shared(np.zeros(2), name="w")
    f = theano.function([], [], updates=[(w, T.arange(5).astype("float64"))])
    f()
    np.testing.assert_array_equal(w.get_value(), np.arange(5.0))


def test_update_from_an_input_does_not_alias_the_callers_array():
    w = theano.shared(np.zeros(3), name="w")
    x = T.dvector("x")
    f = theano.function([x], [], updates=[(w, x)])
    a = np.ones(3)
    f(a)
    a[0] = 99.0
    np.testing.assert_array_equal(w.get_value(), np.ones(3))


def test_update_with_view_expression_is_copied():
    w = theano.shared(np.arange(4.0), name="w")
    f = theano.function([], w[::-1] * 1.0, updates=[(w, w[::-1])])
    out = f()
    np.testing.assert_array_equal(w.get_value(), [3.0, 2.0, 1.0, 0.0])
    assert not np.shares_memory(out, w.get_value(borrow=True))


def test_outputs_do_not_alias_shared_storage():
    w = theano.shared(np.arange(6.0).reshape(2, 3), name="w")
    f = theano.function([], [w, w.T, w[0], w.reshape((3, 2)), w.flatten()])
    internal = w.get_value(borrow=True)
    for out in f():
        assert not np.shares_memory(out, internal)
    res = f()
    res[0][:] = -1
    np.testing.assert_array_equal(w.get_value(), np.arange(6.0).reshape(2, 3))


def test_outputs_do_not_alias_each_other():
    x = T.dvector("x")
    y = x * 2
    f = theano.function([x], [y, y])
    a, b = f(np.ones(2))
    assert not np.shares_memory(a, b)


def test_no_updates_leaves_shared_unchanged():
    w = theano.shared(np.ones(2), name="w")
    f = theano.function([], w * 2)
    np.testing.assert_array_equal(f(), [2.0, 2.0])
    np.testing.assert_array_equal(w.get_value(), [1.0, 1.0])
    w.set_value(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(f(), [10.0, 12.0])  # reads the current value at each call


# -- givens ---------------------------------------------------------------------------------------
def _dataset():
    data_x = np.arange(20, dtype="float32").reshape(10, 2)
    data_y = np.arange(10) % 3
    return (theano.shared(data_x, name="train_x", borrow=True),
            theano.shared(data_y.astype("float32"), name="train_y", borrow=True), data_x, data_y)


def test_givens_minibatch_slices_with_symbolic_bounds():
    shared_x, shared_y_f, data_x, data_y = _dataset()
    shared_y = T.cast(shared_y_f, "int32")
    index = T.lscalar("index")
    x = T.fmatrix("x")
    y = T.ivector("y")
    bs = 3
    out = [x.sum(axis=1), y * 2]
    f = theano.function([index], out, givens={x: shared_x[index * bs:(index + 1) * bs],
                                              y: shared_y[index * bs:(index + 1) * bs]})
    for i in range(4):
        sx, sy = f(i)
        np.testing.assert_array_equal(sx, data_x[i * bs:(i + 1) * bs].sum(axis=1))
        np.testing.assert_array_equal(sy, data_y[i * bs:(i + 1) * bs] * 2)
        assert sy.dtype == np.int32


def test_givens_list_form_and_expression():
    x = T.dscalar("x")
    t = T.dscalar("t")
    f = theano.function([t], x * x, givens=[(x, t + 1.0)])
    assert f(2.0) == 9.0
    f2 = theano.function([t], x * 3, givens=(x, t))
    assert f2(2.0) == 6.0


def test_givens_slice_is_a_view(monkeypatch):
    shared_x, _, data_x, _ = _dataset()
    records = []
    orig = Subtensor.perform

    def spy(self, node, inputs, out):
        orig(self, node, inputs, out)
        records.append((np.shares_memory(out[0][0], inputs[0]), inputs[0] is shared_x.get_value(borrow=True)))

    monkeypatch.setattr(Subtensor, "perform", spy)
    index = T.lscalar("index")
    x = T.fmatrix("x")
    # The reference linker's Subtensor.perform is what is observed here (the native view is tested in
    # tests/codegen/test_subtensor.py).
    f = theano.function([index], x.sum(), givens={x: shared_x[index * 2:(index + 1) * 2]}, mode="reference")
    assert f(1) == data_x[2:4].sum()
    assert records == [(True, True)]


def test_givens_shared_variable_not_copied_and_sees_set_value():
    shared_x, _, data_x, _ = _dataset()
    x = T.fmatrix("x")
    f = theano.function([], x.sum(), givens={x: shared_x}, mode="reference")
    assert f() == data_x.sum()
    shared_x.set_value(np.ones((2, 2), "float32"))
    assert f() == 4.0


def test_givens_type_mismatch():
    x = T.fmatrix("x")
    with pytest.raises(TypeError, match="givens"):
        theano.function([], x.sum(), givens={x: theano.shared(np.zeros((2, 2)))})
    with pytest.raises(TypeError, match="givens"):
        theano.function([], x.sum(), givens={x: T.fvector()})
    with pytest.raises(TypeError, match="keys"):
        theano.function([], x.sum(), givens={1: x})


def test_givens_replaced_input_listed_as_input_is_unused():
    x = T.dscalar("x")
    t = T.dscalar("t")
    with pytest.raises(UnusedInputError, match="givens"):
        theano.function([x, t], x * 2, givens={x: t})


def test_givens_does_not_change_user_graph():
    x, t = T.dscalar("x"), T.dscalar("t")
    out = x * 2
    theano.function([t], out, givens={x: t})
    assert out.owner.inputs[0] is x
    assert theano.function([x], out)(3.0) == 6.0


# -- modes ---------------------------------------------------------------------------------------
def test_modes():
    x = T.dscalar("x")
    for mode in (None, "reference", "FAST_COMPILE", "py", theano.Mode(linker="reference")):
        assert theano.function([x], x + 1, mode=mode)(1.0) == 2.0
    with pytest.raises(TypeError, match="mode"):
        theano.function([x], x, mode=3)
    assert theano.Mode().linker == theano.config.mode
    assert "reference" in repr(theano.Mode(linker="reference"))


def test_runtime_error_keeps_exception_type():
    x = T.dvector("x")
    i = T.lscalar("i")
    f = theano.function([x, i], x[i])
    with pytest.raises(IndexError):
        f(rand((2,)), 2)


def test_constant_output_is_not_the_graph_constant():
    c = T.constant(np.zeros(3))
    f = theano.function([], c)
    r = f()
    r[0] = 5.0
    np.testing.assert_array_equal(f(), np.zeros(3))
    np.testing.assert_array_equal(c.data, np.zeros(3))


def test_constant_update_does_not_alias_the_graph_constant():
    s = theano.shared(np.ones(2), name="s")
    c = T.constant(np.zeros(2))
    theano.function([], [], updates=[(s, c)])()
    s.get_value(borrow=True)[0] = 7.0
    np.testing.assert_array_equal(c.data, np.zeros(2))


def test_two_updates_from_one_expression_get_separate_storage():
    a = theano.shared(np.zeros(2), name="a")
    b = theano.shared(np.zeros(2), name="b")
    x = T.dmatrix("x")
    e = T.dot(T.ones_like(x[0]), x)  # Dot returns a fresh array (no base)
    theano.function([x], [], updates=[(a, e), (b, e)])(np.ones((2, 2)))
    np.testing.assert_array_equal(a.get_value(), [2.0, 2.0])
    np.testing.assert_array_equal(b.get_value(), [2.0, 2.0])
    a.get_value(borrow=True)[0] = 9.0
    assert b.get_value()[0] == 2.0
