"""T.prod: values, dtypes, and Theano's gradient, which is right where the input has zeros."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.prod import ProdWithoutZeros
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, check_native_vs_reference,
                           compile_and_run, here, make_rng, rand)


def test_values_axis_keepdims_dtype():
    x = T.matrix("x", dtype="float64")
    v = rand((3, 4), rng=make_rng(3))
    outs = [T.prod(x), T.prod(x, axis=0), T.prod(x, axis=-1, keepdims=True), x.prod(axis=(0, 1)),
            T.prod(x, axis=1, dtype="float32"), T.prod(x, acc_dtype="float64")]
    got = compile_and_run([x], outs, [v])
    np.testing.assert_allclose(got[0], np.prod(v))
    np.testing.assert_allclose(got[1], np.prod(v, axis=0))
    np.testing.assert_allclose(got[2], np.prod(v, axis=-1, keepdims=True))
    np.testing.assert_allclose(got[3], np.prod(v))
    assert got[4].dtype == np.float32
    assert T.prod(T.ivector()).dtype == "int64" and T.prod(T.bvector(), dtype="int16").dtype == "int16"


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_native_vs_reference(dtype):
    rng = make_rng(7)
    x = T.tensor3("x", dtype=dtype)
    for shape in [(1, 1, 1), (2, 3, 4), (5, 1, 7), (0, 3, 2)]:
        v = rand(shape, dtype, rng, -2, 3)
        if v.size and dtype.startswith("float"):
            v.flat[::3] = 0
        outs = [T.prod(x), T.prod(x, axis=1), T.prod(x, axis=(0, 2), keepdims=True), T.prod(x * 2, axis=-1)]
        if dtype.startswith("float"):
            outs.append(ProdWithoutZeros((0, 2))(x))
        check_native_vs_reference([x], outs, [v], rtol=1e-5 if dtype == "float32" else 1e-12)


def _grad_fn(no_zeros=False, axis=1):
    x = T.dmatrix("x")
    g = T.grad((T.prod(x, axis=axis, no_zeros_in_input=no_zeros) * np.arange(1, 5)).sum(), x)
    return x, g


def test_gradient_with_zeros_is_exact():
    # rows: no zero, one zero, two zeros, all zero
    v = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 0.0, 5.0, 1.0], [0.0, 3.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]).T
    x, g = _grad_fn(axis=0)
    want = np.zeros_like(v)
    for j in range(4):
        col = v[:, j]
        for i in range(4):
            want[i, j] = (j + 1) * np.prod(np.delete(col, i))
    for mode in ("reference", "native"):
        np.testing.assert_allclose(theano.function([x], g, mode=mode)(v), want)


def test_no_zeros_in_input_gradient_is_prod_over_x():
    x, g = _grad_fn(no_zeros=True)
    v = rand((4, 4), rng=make_rng(2), low=0.5, high=2.0)
    np.testing.assert_allclose(compile_and_run([x], g, [v]),
                               np.arange(1, 5)[:, None] * np.prod(v, axis=1, keepdims=True) / v)
    v[1, 2] = 0  # a broken promise gives 0/0 = NaN at the zero and 0 elsewhere in its row, as Theano's
    got = compile_and_run([x], g, [v])[1]
    assert np.isnan(got[2]) and np.all(got[[0, 1, 3]] == 0)


def test_verify_grad():
    check_grad(lambda a: T.prod(a, axis=1), [(3, 4)])
    check_grad(lambda a: T.prod(a), [(2, 3)])
    check_grad(lambda a: T.prod(a, axis=0, keepdims=True), [(3, 2)], positive=True)
    check_grad(lambda a: T.prod(a, axis=1, no_zeros_in_input=True), [(3, 4)], positive=True)
    rng = make_rng(4)
    v = rand((4, 5), rng=rng)
    v[0, 1] = 0  # a group with one zero: the gradient there is the product of the others
    check_grad(lambda a: T.prod(a, axis=1), None, values=[v])


def test_op_contract():
    assert_op_contract(lambda a: T.prod(a, axis=1), [rand((3, 4))])
    assert_op_contract(lambda a: ProdWithoutZeros((0,))(a), [rand((3, 4))])


def test_second_derivative_is_not_implemented():
    x = T.dvector("x")
    g = T.grad(T.prod(x), x)
    with pytest.raises(Exception, match="not implemented"):
        T.grad(g.sum(), x)


def test_errors():
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.prod(T.dmatrix("m"), axis=2)
    assert_starts_with_location(e, loc)
    assert "axis 2" in str(e.value)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.prod(T.dmatrix("m"), acc_dtype="float32")
    assert_starts_with_location(e, loc)
