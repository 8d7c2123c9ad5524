"""T.log1p, T.expm1, T.floor, T.ceil, T.trunc, T.iround."""
import numpy as np
import pytest

import symcnn.tensor as T
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, check_native_vs_reference,
                           compile_and_run, here, make_rng, rand)

TINY = np.array([0.0, -0.0, 1e-30, -1e-20, 1e-8, -1e-5, 0.3, -0.7, 5.0, 50.0, -50.0, 1e30])


def test_log1p_expm1_values():
    x = T.dvector("x")
    got = compile_and_run([x], [T.log1p(x), T.expm1(x)], [TINY])
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(got[0], np.log1p(TINY), rtol=1e-15)
        np.testing.assert_allclose(got[1], np.expm1(TINY), rtol=1e-15)
    assert got[0][2] == 1e-30  # where log(1 + x) would give 0
    assert T.log1p(T.ivector()).dtype == "float64" and T.expm1(T.bvector()).dtype == "float32"


def test_floor_ceil_trunc_values():
    x = T.dvector("x")
    v = np.array([-2.5, -1.0, -0.2, 0.0, 0.2, 1.0, 2.7])
    fl, ce, tr = compile_and_run([x], [T.floor(x), T.ceil(x), T.trunc(x)], [v])
    np.testing.assert_array_equal(fl, [-3, -1, -1, 0, 0, 1, 2])
    np.testing.assert_array_equal(ce, [-2, -1, -0.0, 0, 1, 1, 3])
    np.testing.assert_array_equal(tr, [-2, -1, -0.0, 0, 0, 1, 2])
    assert T.floor(T.ivector()).dtype == "float64"  # Theano upgrades integers to float
    i = T.iround(x)
    assert i.dtype == "int64"
    np.testing.assert_array_equal(compile_and_run([x], i, [v]), [-3, -1, 0, 0, 0, 1, 3])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_vs_reference(dtype):
    rng = make_rng(11)
    x = T.matrix("x", dtype=dtype)
    for shape in [(1, 1), (3, 7), (17, 33)]:
        v = rand(shape, dtype, rng, -3, 3)
        outs = [T.log1p(x), T.expm1(x), T.floor(x), T.ceil(x), T.trunc(x), T.iround(x),
                T.log1p(x * x) * T.expm1(x) + T.floor(x * 2)]  # fused with other ops
        check_native_vs_reference([x], outs, [v], rtol=2e-6 if dtype == "float32" else 1e-13)
    # the edges: tiny, huge, -1, below -1, infinities, NaN
    edge = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-7, -0.999, -1.0, -2.0, 80.0, 85.0, 700.0, 710.0, -200.0,
                     np.inf, -np.inf, np.nan, 1e30, -1e30], dtype=dtype)
    check_native_vs_reference([x], [T.log1p(x), T.expm1(x), T.floor(x), T.ceil(x), T.trunc(x)],
                              [edge.reshape(2, 9)], rtol=2e-6 if dtype == "float32" else 1e-13, atol=0)


def test_op_contract():
    for fn in (T.log1p, T.expm1, T.floor, T.ceil, T.trunc):
        assert_op_contract(fn, [rand((3, 4))])
        assert_op_contract(fn, [np.arange(6, dtype="int32").reshape(2, 3)])


def test_gradients():
    check_grad(T.log1p, [(3, 4)], positive=True)
    check_grad(T.expm1, [(3, 4)])
    x = T.dvector("x")
    for fn in (T.floor, T.ceil, T.trunc):
        g = compile_and_run([x], T.grad(fn(x * 3).sum(), x), [np.array([0.2, 1.4, -2.1])])
        np.testing.assert_array_equal(g, np.zeros(3))


def test_errors():
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.log1p(T.dvector("a"), T.dvector("b"))
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.iround(T.dvector("a"), mode="up")
    assert_starts_with_location(e, loc)
