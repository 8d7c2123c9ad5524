"""symcnn.compile.compare: the one policy by which mode='debug' and the tests decide whether a
native result matches the reference result."""
import numpy as np
import pytest

from symcnn.compile.compare import magnitude, mismatch, tolerance


def test_equal_results_match():
    a = np.array([[1.5, -2.0], [np.nan, np.inf]], dtype="float32")
    assert mismatch(a, a.copy(), 0, 0) is None
    assert mismatch(np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3), 0, 0) is None
    assert mismatch(np.zeros((0, 3)), np.zeros((0, 3)), 0, 0) is None
    assert mismatch(np.float64(2.0), np.asarray(2.0), 0, 0) is None


def test_dtype_and_shape_must_be_equal():
    assert mismatch(np.zeros(3, "float32"), np.zeros(3, "float64"), 1, 1) == \
        "dtype float32 (native) vs float64 (reference)"
    assert mismatch(np.zeros((2, 3)), np.zeros((3, 2)), 1, 1) == "shape (2, 3) (native) vs (3, 2) (reference)"
    # an empty result of the wrong shape is still a mismatch
    assert "shape" in mismatch(np.zeros((0, 2)), np.zeros((0, 3)), 1, 1)


def test_integers_are_compared_exactly_whatever_the_tolerance():
    got = np.array([1, 2, 3, 5], dtype="int32")
    want = np.array([1, 2, 4, 5], dtype="int32")
    msg = mismatch(got, want, 1.0, 10.0)
    assert msg.startswith("1 elements differ (first at index (2,): ")


def test_bools_are_compared_byte_for_byte():
    want = np.array([True, False, True])
    got = want.copy()
    got.view(np.uint8)[2] = 2  # true to numpy's ==, but not a valid bool byte
    assert (got == want).all()
    assert "1 elements differ (first at index (2,)" in mismatch(got, want, 0, 0)


@pytest.mark.parametrize("special, name", [(np.nan, "NaN"), (np.inf, "+inf"), (-np.inf, "-inf")])
def test_nan_and_infinities_stand_at_the_same_positions(special, name):
    want = np.array([0.0, special, 1.0])
    got = np.array([0.0, 1.0, special])
    msg = mismatch(got, want, 1e9, 1e9)  # no tolerance excuses a NaN or an infinity
    assert msg.startswith(f"{name} in one result and not the other (first at index (1,)"), msg
    if name != "NaN":  # an infinity of the other sign
        assert mismatch(-want, want, 1e9, 1e9).startswith("+inf in one result and not the other")


def test_floats_within_atol_plus_rtol_times_reference():
    want = np.array([1.0, 100.0, -np.inf, np.nan])
    assert mismatch(want + np.array([1e-6, 1e-4, 0, 0]), want, 1e-6, 1e-6) is None
    msg = mismatch(want + np.array([0, 2e-4, 0, 0]), want, 1e-6, 1e-6)
    assert msg.startswith("max abs difference 0.0002 (tolerance 1e-06 + 1e-06 * |ref|), beyond tolerance "
                          "at 1 of 4 elements (first at index (1,): "), msg
    # computed in float64: a float32 difference that would overflow is still a finite mismatch
    big = np.array([3e38], dtype="float32")
    assert "max abs difference 6e+38" in mismatch(-big, big, 0, 0)


def test_magnitude_scales_by_the_largest_finite_value():
    assert magnitude(np.array([0.5, -0.25])) == 1.0
    assert magnitude(np.array([3.0, -40.0, np.inf, np.nan])) == 40.0
    assert magnitude(np.array([np.nan])) == 1.0
    assert magnitude(np.array([7, 9])) == 1.0  # integers are compared exactly


def test_tolerance_per_dtype():
    assert tolerance("float32") == (2e-5, 1e-5)
    assert tolerance("float64") == (1e-9, 1e-10)
    assert tolerance(np.dtype("float32")) == tolerance("float32")
