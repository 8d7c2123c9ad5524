"""T.round in Theano's two modes."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import (assert_starts_with_location, check_native_vs_reference, compile_and_run, here, make_rng,
                           rand)

HALVES = np.array([-2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 3.49, -3.51, 1e16 + 2], dtype="float64")


def test_round_default_is_half_away_from_zero():
    x = T.dvector("x")
    got = compile_and_run([x], T.round(x), [HALVES])
    np.testing.assert_array_equal(got, [-3, -2, -1, 0, 1, 2, 3, 3, -4, 1e16 + 2])
    np.testing.assert_array_equal(compile_and_run([x], T.round(x, mode="half_away_from_zero"), [HALVES]), got)


def test_round_half_to_even_is_numpy():
    x = T.dvector("x")
    np.testing.assert_array_equal(compile_and_run([x], T.round(x, "half_to_even"), [HALVES]), np.round(HALVES))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["half_away_from_zero", "half_to_even"])
def test_round_native_vs_reference(dtype, mode):
    rng = make_rng(2)
    x = T.matrix("x", dtype=dtype)
    vals = (rand((5, 7), dtype, rng, -4, 4) * 2).round() / 2  # many exact halves
    check_native_vs_reference([x], T.round(x, mode), [vals.astype(dtype)])
    check_native_vs_reference([x], T.round(x * 3 + 1, mode), [rand((3, 4), dtype, rng)])  # fused


def test_round_gradient_is_zero():
    x = T.dvector("x")
    g = T.grad(T.round(x * 2).sum(), x)
    np.testing.assert_array_equal(compile_and_run([x], g, [rand((4,))]), np.zeros(4))


def test_round_errors():
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.round(T.dvector(), mode="nearest")
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.round(T.ivector("i"))
    assert_starts_with_location(e, loc)
    assert "floats" in str(e.value)
