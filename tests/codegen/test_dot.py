"""Native Dot against the reference linker."""
import sys

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from .native_helpers import check_native_vs_reference, check_same_error


def _rand(rng, shape, dtype="float32"):
    if dtype.startswith("float"):
        return rng.randn(*shape).astype(dtype)
    if dtype == "bool":
        return rng.rand(*shape) < 0.3
    return rng.randint(-20, 21, size=shape).astype(dtype)


def test_all_operand_kinds_many_shapes():
    rng = np.random.RandomState(0)
    A, B = T.matrix("A"), T.matrix("B")
    u, v = T.vector("u"), T.vector("v")
    outs = [T.dot(A, B), T.dot(A, v), T.dot(u, B), T.dot(u, v), A.dot(B) * 2]
    calls = []
    for m, k, n in [(1, 1, 1), (3, 7, 5), (17, 33, 31), (65, 3, 7), (2, 64, 1), (0, 3, 4), (3, 0, 4),
                    (3, 4, 0)]:
        calls.append([_rand(rng, (m, k)), _rand(rng, (k, n)), _rand(rng, (k,)), _rand(rng, (k,))])
    check_native_vs_reference([A, B, u, v], outs, None, calls=calls, rtol=1e-4, atol=1e-5)


def test_non_contiguous_operands():
    rng = np.random.RandomState(1)
    A, B = T.matrix("A"), T.matrix("B")
    t = T.tensor3("t")
    outs = [T.dot(A.T, B), T.dot(B.T, A.T.T), T.dot(A.T, A), T.dot(B.T, T.flatten(t.dimshuffle(2, 0, 1), 2))]
    vals = [_rand(rng, (5, 3)), _rand(rng, (5, 4)), _rand(rng, (2, 3, 5))]
    check_native_vs_reference([A, B, t], outs, vals, rtol=1e-4, atol=1e-5)


def test_non_contiguous_vectors_and_arrays():
    rng = np.random.RandomState(2)
    A = T.matrix("A")
    c = T.col("c")
    r = T.row("r")
    outs = [T.dot(A, c.dimshuffle(0)), T.dot(r.dimshuffle(1), A.T), T.dot(c.dimshuffle(0), c.dimshuffle(0))]
    big = _rand(rng, (8, 12))
    vals = [big[::2, ::3], _rand(rng, (8, 1))[::2], _rand(rng, (1, 4))]   # strided numpy inputs too
    check_native_vs_reference([A, c, r], outs, vals, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dx,dy", [("float64", "float64"), ("float32", "float64"), ("int32", "int32"),
                                   ("int8", "int8"), ("int64", "float32"), ("uint8", "int8"), ("bool", "bool")])
def test_dtypes(dx, dy):
    rng = np.random.RandomState(3)
    A = T.matrix("A", dtype=dx)
    B = T.matrix("B", dtype=dy)
    v = T.vector("v", dtype=dy)
    vals = [_rand(rng, (6, 9), dx), _rand(rng, (9, 5), dy), _rand(rng, (9,), dy)]
    if dx == "int8":   # products and sums wrap like numpy's int8 dot
        vals[0][0] = 100
        vals[1][:, 0] = 100
    check_native_vs_reference([A, B, v], [T.dot(A, B), T.dot(A, v)], vals, rtol=1e-5, atol=1e-5)


def test_static_shapes():
    rng = np.random.RandomState(4)
    A = T.matrix("A", shape=(4, 3))
    B = T.matrix("B", shape=(3, None))
    check_native_vs_reference([A, B], [T.dot(A, B), T.dot(A, B).T], [_rand(rng, (4, 3)), _rand(rng, (3, 6))],
                              rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["mm", "mv", "vm", "vv"])
def test_mismatched_inner_dims_raise_at_call(kind):
    A, B = T.matrix("A"), T.matrix("B")
    u, v = T.vector("u"), T.vector("v")
    x, y, xs, ys = {"mm": (A, B, (3, 4), (5, 2)), "mv": (A, v, (3, 4), (5,)),
                    "vm": (u, B, (4,), (5, 2)), "vv": (u, v, (4,), (5,))}[kind]
    out = T.dot(x, y); line = sys._getframe().f_lineno  # noqa: E702
    nat, _ = check_same_error([x, y], out, [np.ones(xs, "float32"), np.ones(ys, "float32")])
    assert nat.startswith(f"{__file__}:{line}:"), nat


def test_dot_error_then_good_call():
    A, B = T.matrix("A"), T.matrix("B")
    fn = symcnn.function([A, B], T.dot(A, B), mode="native")
    a = np.ones((2, 3), "float32")
    with pytest.raises(ValueError):
        fn(a, a)
    np.testing.assert_allclose(fn(a, a.T), np.full((2, 2), 3.0))
