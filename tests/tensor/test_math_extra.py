"""argmin, max_and_argmax, power, divmod, isclose, allclose, dot of 0-d operands."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.gradient import verify_grad
from tests.helpers import check_native_vs_reference, make_rng, rand, rand_pos


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "int64", "uint8", "bool"])
def test_argmin_matches_numpy_on_random_shapes(dtype):
    rng = make_rng(11)
    for _ in range(3):
        shape = tuple(rng.integers(1, 5, size=rng.integers(1, 4)))
        x = T.TensorType(dtype, shape=(None,) * len(shape))("x")
        if dtype in ("int8", "uint8"):  # the extremes, where -x or MAX - x would overflow
            info = np.iinfo(dtype)
            xv = rng.choice([info.min, info.min + 1, 0, info.max - 1, info.max], size=shape).astype(dtype)
        else:
            xv = rand(shape, dtype, rng, -3, 3)
        outs = [T.argmin(x), T.argmin(x, axis=-1), T.argmin(x, axis=0, keepdims=True), x.argmin(axis=0)]
        _, (got,) = check_native_vs_reference([x], outs, [xv], rtol=0, atol=0)
        want = [np.argmin(xv), np.argmin(xv, axis=-1), np.argmin(xv, axis=0)[None], np.argmin(xv, axis=0)]
        for g, w in zip(got, want):
            assert g.dtype == "int64"
            np.testing.assert_array_equal(g, w)


def test_max_and_argmax():
    x = T.dmatrix("x")
    xv = rand((3, 5), rng=make_rng(2))
    for axis in (None, 0, 1, (0, 1)):
        mx, am = T.max_and_argmax(x, axis=axis)
        _, (got,) = check_native_vs_reference([x], [mx, am], [xv], rtol=0, atol=0)
        np.testing.assert_array_equal(got[0], np.max(xv, axis=axis))
        if axis in (None, (0, 1)):
            assert got[1] == np.argmax(xv)
        else:
            np.testing.assert_array_equal(got[1], np.argmax(xv, axis=axis))
    verify_grad(lambda a: T.max_and_argmax(a, axis=1)[0], [xv])


def test_power_and_divmod():
    rng = make_rng(3)
    x, y = T.dmatrix("x"), T.dmatrix("y")
    xv, yv = rand_pos((3, 4), rng=rng), rand((3, 4), rng=rng, low=-2, high=2)
    _, (got,) = check_native_vs_reference([x, y], [T.power(x, y)], [xv, yv])
    np.testing.assert_allclose(got[0], np.power(xv, yv))
    verify_grad(T.power, [xv, yv])
    a, b = T.ivector("a"), T.ivector("b")
    av, bv = np.array([7, -7, 7, -7, 0], "int32"), np.array([2, 2, -2, -2, 3], "int32")
    _, (got,) = check_native_vs_reference([a, b], list(T.divmod(a, b)), [av, bv], rtol=0, atol=0)
    q, r = divmod(av, bv)
    np.testing.assert_array_equal(got[0], q)
    np.testing.assert_array_equal(got[1], r)
    fv = np.array([7.5, -7.5, 1.0]), np.array([2.0, 2.0, 0.1])
    f1, f2 = T.dvectors("f1", "f2")
    _, (got,) = check_native_vs_reference([f1, f2], list(T.divmod(f1, f2)), list(fv), rtol=0, atol=0)
    np.testing.assert_array_equal(got[0], np.floor_divide(*fv))
    np.testing.assert_array_equal(got[1], np.mod(*fv))


@pytest.mark.parametrize("equal_nan", [False, True])
def test_isclose_and_allclose_match_numpy(equal_nan):
    a, b = T.dvectors("a", "b")
    av = np.array([1.0, np.nan, np.inf, -np.inf, np.inf, 1.0, np.nan, 1e10, 0.0])
    bv = np.array([1.0 + 1e-9, np.nan, np.inf, np.inf, 5.0, 2.0, 1.0, 1.00001e10, 1e-9])
    outs = [T.isclose(a, b, equal_nan=equal_nan), T.allclose(a, b, equal_nan=equal_nan),
            T.allclose(a[:1], b[:1]), T.isclose(a, b, rtol=0.5, atol=0.0, equal_nan=equal_nan)]
    _, (got,) = check_native_vs_reference([a, b], outs, [av, bv], rtol=0, atol=0)
    np.testing.assert_array_equal(got[0], np.isclose(av, bv, equal_nan=equal_nan))
    assert got[1] == np.allclose(av, bv, equal_nan=equal_nan) and got[2]
    np.testing.assert_array_equal(got[3], np.isclose(av, bv, rtol=0.5, atol=0.0, equal_nan=equal_nan))
    i, j = T.ivectors("i", "j")
    _, (got,) = check_native_vs_reference([i, j], T.isclose(i, j), [np.array([1, 2], "int32"),
                                                                      np.array([1, 3], "int32")], rtol=0, atol=0)
    np.testing.assert_array_equal(got, [True, False])


def test_dot_of_0d_operands_multiplies():
    s, v, m = T.dscalar("s"), T.dvector("v"), T.dmatrix("m")
    rng = make_rng(4)
    vals = [np.asarray(1.5), rand((3,), rng=rng), rand((2, 3), rng=rng)]
    _, (got,) = check_native_vs_reference([s, v, m], [T.dot(s, v), T.dot(m, s), T.dot(s, s)], vals)
    np.testing.assert_allclose(got[0], np.dot(vals[0], vals[1]))
    np.testing.assert_allclose(got[1], np.dot(vals[2], vals[0]))
    verify_grad(lambda a, b: T.dot(a, b), [vals[0], vals[2]])
