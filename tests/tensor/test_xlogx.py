"""T.xlogx.xlogx and T.xlogx.xlogy0."""
import numpy as np
import pytest

import symcnn.tensor as T
from tests.helpers import (assert_starts_with_location, check_grad, check_native_vs_reference, compile_and_run, here,
                           make_rng, rand, rand_pos)


def test_xlogx_values():
    x = T.dvector("x")
    v = np.array([0.0, 0.5, 1.0, 2.0])
    got = compile_and_run([x], T.xlogx.xlogx(x), [v])
    np.testing.assert_allclose(got, [0.0, 0.5 * np.log(0.5), 0.0, 2 * np.log(2)])
    assert T.xlogx.xlogx(T.ivector()).dtype == "float64"


def test_xlogy0_values():
    x, y = T.dvector("x"), T.dvector("y")
    xv, yv = np.array([0.0, 0.0, 1.5, 2.0]), np.array([0.0, 3.0, 0.5, 2.0])
    got = compile_and_run([x, y], T.xlogx.xlogy0(x, y), [xv, yv])
    np.testing.assert_allclose(got, [0.0, 0.0, 1.5 * np.log(0.5), 2 * np.log(2)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_vs_reference(dtype):
    rng = make_rng(8)
    x, y = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype)
    xv = rand_pos((4, 5), dtype, rng)
    xv[0, :2] = 0
    yv = rand_pos((4, 5), dtype, rng)
    yv[1, 0] = 0
    check_native_vs_reference([x, y], [T.xlogx.xlogx(x), T.xlogx.xlogy0(x, y), T.xlogx.xlogy0(x * 0, y) + x], [xv, yv])


def test_gradients():
    check_grad(lambda x: T.xlogx.xlogx(x), [(3, 4)], positive=True)
    check_grad(lambda x, y: T.xlogx.xlogy0(x, y), [(3, 4), (3, 4)], positive=True)


def test_errors():
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.xlogx.xlogy0(T.dvector("a"), T.dvector("b"), T.dvector("c"))
    assert_starts_with_location(e, loc)
