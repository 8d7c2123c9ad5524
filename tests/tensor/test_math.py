"""Reductions (sum, mean, max, min, argmax) and dot."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, compile_and_run, here,
                           make_rng, rand)

AXES = [None, 0, 1, -1, (0, 1), (0, 2), 2]


def _np_axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reduction_values(name, axis, keepdims):
    a = rand((2, 3, 4), rng=make_rng(7))
    x = T.dtensor3("x")
    out = getattr(T, name)(x, axis=axis, keepdims=keepdims)
    want = getattr(np, name)(a, axis=_np_axis(axis), keepdims=keepdims)
    assert out.ndim == want.ndim
    got = compile_and_run([x], out, [a])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # the method spelling is the same
    meth = getattr(x, name)(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(compile_and_run([x], meth, [a]), want, rtol=1e-12)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction_grad(name, axis, keepdims):
    check_grad(lambda v: getattr(T, name)(v, axis=axis, keepdims=keepdims), [(2, 3, 4)], n_tests=1)


def test_min_grad():
    check_grad(lambda v: T.min(v, axis=1), [(3, 4)])


@pytest.mark.parametrize("name", ["sum", "max"])
def test_reduce_op_contract(name):
    op = {"sum": T.Sum, "max": T.Max}[name]
    got = assert_op_contract(lambda v: op((0, 2))(v), [rand((2, 3, 4))])
    np.testing.assert_allclose(got[0], getattr(np, name)(rand((2, 3, 4)), axis=(0, 2)))
    got = assert_op_contract(lambda v: T.argmax(v, axis=1), [rand((2, 3, 4))])
    np.testing.assert_array_equal(got[0], np.argmax(rand((2, 3, 4)), axis=1))


def test_static_shapes_of_reductions():
    x = T.TensorType("float32", shape=(2, None, 4))("x")
    assert T.sum(x, axis=1).type.shape == (2, 4)
    assert T.sum(x, axis=1, keepdims=True).type.shape == (2, 1, 4)
    assert T.max(x).type.shape == ()
    assert T.mean(x, axis=(0, 2)).type.shape == (None,)
    assert T.argmax(x, axis=-1, keepdims=True).type.shape == (2, None, 1)


def test_max_grad_ties_all_get_gradient():
    x = T.dvector("x")
    g = theano.grad(T.max(x), x)
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([1.0, 3.0, 3.0, 2.0])]), [0, 1, 1, 0])


def test_sum_of_ints_and_bools():
    i = T.bvector("i")
    a = np.array([100, 100, 100], "int8")
    got = compile_and_run([i], T.sum(i), [a])
    assert got.dtype == np.int64 and got == 300  # accumulated in int64, no overflow
    b = T.ivector("b")
    n = compile_and_run([b], T.sum(T.neq(b, 0)), [np.array([0, 3, 0, 1], "int32")])
    assert n == 2 and n.dtype == np.int64
    assert T.sum(b, dtype="float32").dtype == "float32"


def test_mean_of_int_and_bool():
    y, p = T.ivector("y"), T.ivector("p")
    err = T.mean(T.neq(y, p))
    got = compile_and_run([y, p], err, [np.array([1, 2, 3, 4], "int32"), np.array([1, 0, 3, 0], "int32")])
    assert got.dtype == np.float64 and got == 0.5
    got = compile_and_run([y], T.mean(y), [np.array([1, 2], "int32")])
    assert got.dtype == np.float64 and got == 1.5


def test_mean_of_float32_stays_float32():
    x = T.fmatrix("x")
    a = rand((3, 5), "float32")
    got = compile_and_run([x], T.mean(x, axis=0), [a])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a.mean(axis=0), rtol=1e-6)
    # a known static length makes the count a constant
    s = T.TensorType("float32", shape=(3, 5))("s")
    np.testing.assert_allclose(compile_and_run([s], T.mean(s), [a]), a.mean(), rtol=1e-6)


def test_argmax():
    x = T.dmatrix("x")
    a = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    r = compile_and_run([x], [T.argmax(x, axis=1), T.argmax(x, axis=0), T.argmax(x), x.argmax(axis=-1)], [a])
    np.testing.assert_array_equal(r[0], [1, 0])
    np.testing.assert_array_equal(r[1], [1, 0, 1])
    assert r[2] == 3 and r[2].dtype == np.int64 and r[2].shape == ()
    np.testing.assert_array_equal(r[3], [1, 0])
    t = T.dtensor3("t")
    b = rand((2, 3, 4), rng=make_rng(9))
    got = compile_and_run([t], T.argmax(t, axis=(1, 2)), [b])
    np.testing.assert_array_equal(got, b.reshape(2, -1).argmax(axis=1))


def test_argmax_gradient_is_zero():
    """Theano: argmax is connected to x with a zero gradient, also through a cast to float."""
    x = T.dvector("x")
    xv = np.array([0.5, 3.0, -1.0])
    for cost in (T.argmax(x), T.cast(T.argmax(x), "float64") * 3.0):
        g = theano.grad(cost, x)
        assert g.dtype == "float64"
        np.testing.assert_array_equal(compile_and_run([x], g, [xv], on_unused_input="ignore"), np.zeros(3))


def test_empty_max_raises():
    x = T.dvector("x")
    f = theano.function([x], T.max(x))
    with pytest.raises(ValueError, match="empty"):
        f(np.zeros(0))


@pytest.mark.parametrize("axis", [2, -3, (0, 0)])
def test_bad_axis(axis):
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="axis"):
        T.sum(x, axis=axis)
    with pytest.raises(ValueError, match="axis"):
        T.max(x, axis=axis)
    with pytest.raises(ValueError, match="axis"):
        T.mean(x, axis=axis)
    with pytest.raises(ValueError, match="axis"):
        T.argmax(x, axis=axis)


def test_bad_axis_op_directly():
    with pytest.raises(ValueError, match="axis out of range"):
        T.Sum((3,))(T.dmatrix("x"))


# -- dot ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sx,sy", [((3, 4), (4, 5)), ((3, 4), (4,)), ((4,), (4, 5)), ((4,), (4,))])
def test_dot_values_and_grad(sx, sy):
    a, b = rand(sx, rng=make_rng(1)), rand(sy, rng=make_rng(2))
    (got,) = assert_op_contract(T.dot, [a, b])
    np.testing.assert_allclose(got, np.dot(a, b), rtol=1e-12)
    check_grad(T.dot, [sx, sy])


def test_dot_method_and_float32():
    x, w = T.fmatrix("x"), T.fmatrix("w")
    a, b = rand((2, 3), "float32"), rand((3, 2), "float32")
    got = compile_and_run([x, w], x.dot(w), [a, b])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a @ b, rtol=1e-5)


def test_dot_static_shapes():
    a = T.TensorType("float64", shape=(2, None))("a")
    b = T.TensorType("float64", shape=(None, 5))("b")
    assert T.dot(a, b).type.shape == (2, 5)
    assert T.dot(b.T, T.dvector()).type.shape == (5,)
    assert T.dot(T.dvector(), T.dvector()).type.shape == ()


@pytest.mark.parametrize("x,y", [(T.dtensor3, T.dmatrix), (T.dmatrix, T.dtensor4)])
def test_dot_wrong_ndim(x, y):
    # The Dot op takes vectors and matrices; T.dot of other ndims is written with it (test_nd_dot.py).
    with pytest.raises(TypeError, match="1-d or 2-d") as ei:
        T.Dot()(x("a"), y("b"))
    assert_starts_with_location(ei, here(-1))


def test_dot_mismatch_build_and_run():
    a = T.TensorType("float64", shape=(2, 3))("a")
    with pytest.raises(ValueError, match="inner dimensions differ"):
        T.dot(a, T.TensorType("float64", shape=(4,))("v"))
    m, v = T.dmatrix("m"), T.dvector("v")
    f = theano.function([m, v], T.dot(m, v))
    with pytest.raises(ValueError, match="not aligned"):
        f(np.zeros((2, 3)), np.zeros(4))


def test_dot_int_operands_not_differentiable():
    x = T.dmatrix("x")
    i = T.imatrix("i")
    g = theano.grad(T.dot(x, i).sum(), x)
    a, b = rand((2, 3)), np.arange(12, dtype="int32").reshape(3, 4)
    np.testing.assert_allclose(compile_and_run([x, i], g, [a, b]), np.ones((2, 4)) @ b.T)


def test_outer():
    x, y = T.dvector("x"), T.dvector("y")
    a, b = rand((3,)), rand((4,), rng=make_rng(3))
    np.testing.assert_allclose(compile_and_run([x, y], T.outer(x, y), [a, b]), np.outer(a, b))


# -- dtype / acc_dtype of the reductions -----------------------------------------------------

def test_reduction_dtype_and_acc_dtype():
    x, i = T.fmatrix("x"), T.ivector("i")
    xv = rand((3, 4), "float32")
    iv = np.array([1, 2, 4], dtype="int32")
    assert x.mean(dtype="float64").dtype == "float64"
    assert i.mean().dtype == "float64" and i.sum().dtype == "int64"
    assert i.mean(dtype="float32").dtype == "float32"
    assert x.sum(acc_dtype="float64").dtype == "float32"
    assert x.sum(dtype="float64", acc_dtype="float64").dtype == "float64"
    f = theano.function([x, i], [x.mean(axis=1, dtype="float64"), x.sum(acc_dtype="float64"), i.mean(dtype="float32"),
                                 T.mean(x, acc_dtype="float64", keepdims=True), i.sum(dtype="int32")])
    got = f(xv, iv)
    np.testing.assert_allclose(got[0], xv.astype("float64").mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(got[1], xv.sum(dtype="float64"), rtol=1e-6)
    assert got[2] == np.float32(7 / 3) and got[2].dtype == np.float32
    assert got[3].shape == (1, 1) and got[3].dtype == np.float32
    assert got[4] == 7 and got[4].dtype == np.int32
    from tests.helpers import check_native_vs_reference
    check_native_vs_reference([x, i], [x.mean(axis=0, dtype="float64"), x.sum(axis=1, acc_dtype="float64"),
                                       i.mean(dtype="float32")], [xv, iv])
    check_grad(lambda v: v.mean(axis=0, dtype="float64", acc_dtype="float64"), [(3, 4)])


def test_acc_dtype_less_precise_than_the_input_is_an_error():
    x = T.dmatrix("x")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        x.sum(acc_dtype="float32")
    assert_starts_with_location(e, loc)
    assert "acc_dtype" in str(e.value)
