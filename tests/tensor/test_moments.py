"""T.var and T.std with Theano 1.0's arguments (axis, ddof, keepdims, corrected)."""
import numpy as np
import pytest

import symcnn.tensor as T
from tests.helpers import (assert_starts_with_location, check_grad, check_native_vs_reference, compile_and_run, here,
                           make_rng, rand)


def test_values_against_numpy():
    x = T.dtensor3("x")
    v = rand((3, 4, 5), rng=make_rng(9))
    cases = [({}, {}), ({"axis": 1}, {"axis": 1}), ({"axis": (0, 2)}, {"axis": (0, 2)}),
             ({"axis": -1, "keepdims": True}, {"axis": -1, "keepdims": True}),
             ({"axis": 0, "ddof": 1}, {"axis": 0, "ddof": 1})]
    outs = [T.var(x, **a) for a, _ in cases] + [T.std(x, **a) for a, _ in cases]
    got = compile_and_run([x], outs, [v])
    want = [np.var(v, **b) for _, b in cases] + [np.std(v, **b) for _, b in cases]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert outs[0].name == "var" and outs[len(cases)].name == "std"


def test_ddof_over_several_axes_divides_by_each_length_minus_ddof():
    # Theano 1.0 divides by (n1 - ddof) * (n2 - ddof), not numpy's n1 * n2 - ddof
    x = T.dtensor3("x")
    v = rand((3, 4, 5), rng=make_rng(9))
    got = compile_and_run([x], T.var(x, axis=[1, 2], ddof=2), [v])
    centred = v - v.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, (centred ** 2).sum(axis=(1, 2)) / ((4 - 2) * (5 - 2)), rtol=1e-12)


def test_corrected_two_pass():
    x = T.dvector("x")
    v = 1e8 + rand((1000,), rng=make_rng(1))  # a large mean: the plain two-pass loses digits
    for ddof in (0, 1):
        got = compile_and_run([x], [T.var(x, ddof=ddof, corrected=True), x.var(ddof=ddof, corrected=True)], [v])
        np.testing.assert_allclose(got[0], np.var(v, ddof=ddof), rtol=1e-6)
        np.testing.assert_array_equal(got[0], got[1])


def test_dtypes_as_theano():
    f = T.fmatrix()
    assert T.var(f).dtype == "float32" and T.std(f, axis=0).dtype == "float32"
    assert T.var(f, ddof=1).dtype == "float64"  # divided by an int64 length, as Theano 1.0 does
    assert T.var(T.imatrix()).dtype == "float64"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_vs_reference(dtype):
    rng = make_rng(12)
    x = T.matrix("x", dtype=dtype)
    for shape in [(1, 1), (4, 7), (33, 5)]:
        v = rand(shape, dtype, rng, -3, 3)
        outs = [T.var(x), T.var(x, axis=0), T.std(x, axis=1, keepdims=True), T.var(x, axis=1, ddof=1, corrected=True),
                T.std(x, corrected=True)]
        check_native_vs_reference([x], outs, [v], rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-6)


def test_gradients():
    check_grad(lambda a: T.var(a, axis=1), [(3, 4)])
    check_grad(lambda a: T.var(a, ddof=1, corrected=True), [(3, 4)])
    check_grad(lambda a: T.std(a, axis=0, keepdims=True), [(5, 2)])


def test_errors():
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.var(T.dmatrix("m"), 0, True)  # the pre-1.0 order (input, axis, keepdims)
    assert_starts_with_location(e, loc)
    assert "keepdims is now the 4th argument" in str(e.value)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.std(T.dmatrix("m"), axis=3)
    assert_starts_with_location(e, loc)
