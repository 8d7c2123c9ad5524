"""N-d T.dot, T.tensordot, T.batched_dot and T.batched_tensordot against numpy."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor.nd_dot import batched_tensordot
from tests.helpers import (assert_starts_with_location, check_grad, check_native_vs_reference, compile_and_run, here,
                           make_rng, rand)

DOT_CASES = [((2, 3, 4), (4, 5)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3)), ((2, 3, 4), (5, 4, 6)), ((), (2, 3)),
             ((3, 4), ())]


@pytest.mark.parametrize("sa,sb", DOT_CASES)
def test_nd_dot_is_numpy_dot(sa, sb):
    rng = make_rng(9)
    av, bv = rand(sa, rng=rng), rand(sb, rng=rng)
    a, b = T.tensor(dtype="float64", broadcastable=(False,) * len(sa)), \
        T.tensor(dtype="float64", broadcastable=(False,) * len(sb))
    np.testing.assert_allclose(compile_and_run([a, b], T.dot(a, b), [av, bv]), np.dot(av, bv), rtol=1e-12)
    check_native_vs_reference([a, b], T.dot(a, b), [av, bv], rtol=1e-10, atol=1e-12)
    check_grad(lambda x, y: T.dot(x, y), [sa, sb])


def test_lstm_dot_tensor3_matrix_float32():
    rng = make_rng(10)
    x, W = T.ftensor3("x"), T.fmatrix("W")
    for shape in [(5, 3, 4), (1, 2, 4), (7, 1, 4)]:
        check_native_vs_reference([x, W], T.dot(x, W) + 1, [rand(shape, "float32", rng), rand((4, 6), "float32", rng)])


@pytest.mark.parametrize("axes", [2, 1, 0, [[1, 2], [0, 1]], [[0], [1]], [[2, 0], [1, 0]]])
def test_tensordot(axes):
    rng = make_rng(11)
    av, bv = rand((3, 4, 5), rng=rng), rand((4, 5, 3), rng=rng)
    if axes == [[0], [1]]:
        bv = rand((5, 3, 2), rng=rng)
    if axes == [[2, 0], [1, 0]]:
        bv = rand((3, 5, 2), rng=rng)
    if axes == 2:
        bv = rand((4, 5, 2), rng=rng)
    if axes == 1:
        bv = rand((5, 2), rng=rng)
    a, b = T.dtensor3("a"), T.tensor(dtype="float64", broadcastable=(False,) * bv.ndim, name="b")
    want = np.tensordot(av, bv, axes)
    np.testing.assert_allclose(compile_and_run([a, b], T.tensordot(a, b, axes), [av, bv]), want, rtol=1e-12)
    check_native_vs_reference([a, b], T.tensordot(a, b, axes), [av, bv], rtol=1e-10, atol=1e-12)
    check_grad(lambda x, y: T.tensordot(x, y, axes), [av.shape, bv.shape])


@pytest.mark.parametrize("sa,sb", [((3, 2, 4), (3, 4, 5)), ((3, 4), (3, 4, 5)), ((3, 2, 4), (3, 4)), ((3, 4), (3, 4)),
                                   ((3,), (3, 4)), ((3, 2, 4, 5), (3, 5, 2))])
def test_batched_dot(sa, sb):
    rng = make_rng(12)
    av, bv = rand(sa, rng=rng), rand(sb, rng=rng)
    a = T.tensor(dtype="float64", broadcastable=(False,) * len(sa))
    b = T.tensor(dtype="float64", broadcastable=(False,) * len(sb))
    if len(sa) == 1:
        want = av[:, None] * bv
    elif len(sa) == 2 and len(sb) == 2:
        want = (av * bv).sum(axis=1)
    else:
        want = np.stack([np.dot(av[i], bv[i]) for i in range(sa[0])])
    np.testing.assert_allclose(compile_and_run([a, b], T.batched_dot(a, b), [av, bv]), want, rtol=1e-12)
    check_native_vs_reference([a, b], T.batched_dot(a, b), [av, bv], rtol=1e-10, atol=1e-12)
    check_grad(lambda x, y: T.batched_dot(x, y), [sa, sb])


def test_batched_tensordot():
    rng = make_rng(13)
    av, bv = rand((2, 3, 4, 5), rng=rng), rand((2, 5, 4, 6), rng=rng)
    a, b = T.dtensor4("a"), T.dtensor4("b")
    want = np.stack([np.tensordot(av[i], bv[i], [[1, 2], [1, 0]]) for i in range(2)])
    got = compile_and_run([a, b], batched_tensordot(a, b, [[2, 3], [2, 1]]), [av, bv])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_errors_name_the_line():
    a, b = T.dtensor3("a"), T.dmatrix("b")
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.tensordot(a, b, [[0, 1], [0]])
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.batched_dot(a, T.dscalar("s"))
    assert_starts_with_location(e, loc)
    c = T.TensorType("float64", shape=(2, 3, 4))("c")
    d = T.TensorType("float64", shape=(5, 6))("d")
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.dot(c, d)
    assert_starts_with_location(e, loc)
    assert "4" in str(e.value) and "5" in str(e.value)
