"""T.sort / T.argsort (SortOp, ArgSortOp): numpy's stable sort in both modes, gradients."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import assert_op_contract, check_grad, check_native_vs_reference, make_rng, rand, sym_like


@settings(max_examples=12, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3), axis_pick=st.integers(-3, 3),
       dtype=st.sampled_from(["float64", "float32", "int32", "uint8", "int64"]), seed=st.integers(0, 2 ** 16))
def test_native_equals_reference_and_numpy_stable(shape, axis_pick, dtype, seed):
    rng = make_rng(seed)
    # few distinct values: many ties, whose order must be the input order in both modes
    v = rand(shape, dtype, rng, low=0, high=4)
    axis = axis_pick % len(shape) - (len(shape) if axis_pick < 0 else 0)
    x = sym_like(v, "x")
    _, (got,) = check_native_vs_reference([x], [T.sort(x, axis=axis), T.argsort(x, axis=axis)], [v])
    np.testing.assert_array_equal(got[0], np.sort(v, axis=axis, kind="stable"))
    np.testing.assert_array_equal(got[1], np.argsort(v, axis=axis, kind="stable"))


def test_nans_infinities_ties_and_axis_none():
    v = np.array([[3.0, np.nan, -np.inf, 1.0, 1.0, np.inf],
                  [np.nan, 0.5, np.nan, 0.5, -0.0, 0.0]], dtype="float32")
    x = T.fmatrix("x")
    for axis in (None, 0, 1, -1):
        _, (got,) = check_native_vs_reference([x], [T.sort(x, axis=axis), T.argsort(x, axis=axis)], [v])
        np.testing.assert_array_equal(got[0], np.sort(v, axis=axis, kind="stable"))
        np.testing.assert_array_equal(got[1], np.argsort(v, axis=axis, kind="stable"))


def test_strided_input_and_longer_rows():
    v = rand((3, 200), "float64", make_rng(3))
    x = T.dmatrix("x")
    check_native_vs_reference([x], [T.sort(x.T, axis=0), T.argsort(x[:, ::-3], axis=1)], [v])


def test_op_contract():
    v = rand((3, 4, 2), "float64")
    for axis in (0, 1, 2):
        assert_op_contract(lambda x: T.sort(x, axis=axis), [v])
        assert_op_contract(lambda x: T.argsort(x, axis=axis), [v])
    assert T.argsort(T.fvector()).dtype == "int64"
    assert T.sort(T.fvector()).dtype == "float32"


@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_sort_gradient(axis):
    check_grad(lambda x: T.sort(x, axis=axis) * np.arange(1.0, 13.0).reshape(3, 4) if axis is not None
               else T.sort(x, axis=axis) * np.arange(1.0, 13.0), [(3, 4)])
    x = T.dmatrix("x")
    cost = (T.sort(x, axis=axis) ** 3).sum() + (T.sort(x, axis=axis)[..., :1] if axis is not None
                                                 else T.sort(x, axis=axis)[:1]).sum()
    check_native_vs_reference([x], T.grad(cost, x), [rand((3, 4), "float64", make_rng(5))], rtol=1e-12, atol=1e-12)


def test_argsort_gradient_is_zero_and_connected():
    x = T.dvector("x")
    g = T.grad((T.argsort(x) * x).sum(), x)
    v = rand((5,), "float64")
    np.testing.assert_array_equal(theano.function([x], g)(v), np.argsort(v, kind="stable").astype("float64"))


def test_bad_arguments():
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="kind"):
        T.sort(x, kind="bubble")
    with pytest.raises(ValueError, match="order"):
        T.argsort(x, order=["a"])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        T.sort(x, axis=2)
    with pytest.raises(TypeError, match="axis must be a Python int"):
        T.argsort(x, axis=T.iscalar())
    with pytest.raises(ValueError, match="out of range"):
        T.sort(T.dscalar())


def test_native_kernel_stays_in_bounds():
    """The boundscheck mode checks every element access of the insertion sort."""
    v = rand((4, 9, 3), "float32", make_rng(8), low=0, high=3).round()
    x = T.ftensor3("x")
    for axis in (0, 1, 2):
        f = theano.function([x], [T.sort(x[:, ::2], axis=axis), T.argsort(x, axis=axis)], mode="boundscheck")
        s, a = f(v)
        np.testing.assert_array_equal(s, np.sort(v[:, ::2], axis=axis))
        np.testing.assert_array_equal(a, np.argsort(v, axis=axis, kind="stable"))
