"""Native Dot against the reference linker."""
import sys

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)


def _rand(rng, shape, dtype="float32"):
    if dtype.startswith("float"):
        return rng.randn(*shape).astype(dtype)
    if dtype == "bool":
        return rng.rand(*shape) < 0.3
    return rng.randint(-20, 21, size=shape).astype(dtype)


def test_all_operand_kinds_many_shapes(target):
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


# -- FusedDot (symcnn/tensor/blas.py): prologues on loads, epilogue on stores ---------------

from symcnn.compile.mode import Mode  # noqa: E402
from symcnn.tensor.blas import FusedDot  # noqa: E402


def _fused_outputs(A, B, u, v, c, r):
    """Products with prologues and epilogues of every operand kind (the rewrites build FusedDot)."""
    return [T.tanh(T.dot(A * 2 - 1, T.exp(B)) + r),        # matrix . matrix, both prologues, row extra
            T.dot(T.sqr(A), v) * c - 1,                     # matrix . vector, (m,) extra
            T.dot(u + 1, B) / 3,                            # vector . matrix
            T.dot(u * u, v - 1) + 2]                        # vector . vector


def test_fused_dot_operand_kinds_many_shapes(target):
    rng = np.random.RandomState(5)
    A, B, u, v, c, r = T.matrix("A"), T.matrix("B"), T.vector("u"), T.vector("v"), T.vector("c"), T.row("r")
    outs = _fused_outputs(A, B, u, v, c, r)
    calls = []
    for m, k, n in [(1, 1, 1), (3, 7, 5), (17, 33, 31), (33, 3, 17), (2, 64, 1), (0, 3, 4), (3, 0, 4),
                    (3, 4, 0)]:
        calls.append([_rand(rng, (m, k)) * 0.3, _rand(rng, (k, n)) * 0.3, _rand(rng, (k,)), _rand(rng, (k,)),
                      _rand(rng, (m,)), _rand(rng, (1, n))])
    fn, _ = check_native_vs_reference([A, B, u, v, c, r], outs, None, calls=calls, rtol=1e-4, atol=1e-5)
    fused = [n for n in fn.fgraph.toposort() if isinstance(n.op, FusedDot)]
    assert len(fused) == 4 and len(fn.fgraph.toposort()) == 4


def test_fused_dot_non_contiguous_and_broadcast_inputs():
    rng = np.random.RandomState(6)
    A, B, col, col4, row = T.matrix("A"), T.matrix("B"), T.col("col"), T.col("col4"), T.row("row")
    outs = [T.dot((A * col).T, B.T.T * 2) + col4,            # transposed prologue inputs, column extra
            T.dot(A.T * 3, B) * row.T.T - A.T[:, 1:6]]    # row extra, strided matrix extra
    big = _rand(rng, (12, 12))
    vals = [big[::2, 1::3], _rand(rng, (6, 5)), _rand(rng, (6, 1)), _rand(rng, (4, 1)), _rand(rng, (1, 5))]
    check_native_vs_reference([A, B, col, col4, row], outs, vals, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dx,dy", [("float64", "float64"), ("float32", "float64"), ("int32", "int32"),
                                   ("int8", "int8"), ("int64", "float32"), ("bool", "bool")])
def test_fused_dot_dtypes(dx, dy):
    rng = np.random.RandomState(7)
    A = T.matrix("A", dtype=dx)
    B = T.matrix("B", dtype=dy)
    v = T.vector("v", dtype=dy)
    vals = [_rand(rng, (6, 9), dx), _rand(rng, (9, 5), dy), _rand(rng, (9,), dy)]
    outs = [T.dot(A, B) * 2 + 1, T.cast(T.dot(A, v), "float32") - 0.5, T.gt(T.dot(A, B), 0)]
    if dx != "bool":
        outs.append(T.dot(A * 3, B - 1))
    check_native_vs_reference([A, B, v], outs, vals, rtol=1e-5, atol=1e-5)


def test_fused_dot_static_shapes_and_errors_name_the_users_line():
    rng = np.random.RandomState(8)
    A = T.matrix("A", shape=(4, 3))
    B = T.matrix("B", shape=(3, None))
    h = T.matrix("h")
    check_native_vs_reference([A, B], [T.tanh(T.dot(A * 2, B) + 1)], [_rand(rng, (4, 3)), _rand(rng, (3, 6))])
    x, W = T.matrix("x"), T.matrix("W")
    out = T.dot(x * 2, W) * h; line = sys._getframe().f_lineno  # noqa: E702
    fn = symcnn.function([x, W, h], out, mode="native")
    assert [type(n.op) for n in fn.fgraph.toposort()] == [FusedDot]
    for bad in ([np.ones((3, 4), "float32"), np.ones((5, 2), "float32"), np.ones((3, 2), "float32")],
                [np.ones((3, 4), "float32"), np.ones((4, 2), "float32"), np.ones((3, 3), "float32")]):
        nat, _ = check_same_error([x, W, h], out, bad)
        assert nat.startswith(f"{__file__}:{line}:"), nat
    np.testing.assert_allclose(fn(np.ones((3, 4), "float32"), np.ones((4, 2), "float32"),
                                  np.ones((3, 2), "float32")), np.full((3, 2), 8.0))


@pytest.mark.parametrize("mode", ["debug", "boundscheck"])
def test_fused_dot_in_checking_modes(mode):
    rng = np.random.RandomState(9)
    A, B, u, v, c, r = T.matrix("A"), T.matrix("B"), T.vector("u"), T.vector("v"), T.vector("c"), T.row("r")
    outs = _fused_outputs(A, B, u, v, c, r)
    vals = [_rand(rng, (3, 5)), _rand(rng, (5, 4)), _rand(rng, (5,)), _rand(rng, (5,)), _rand(rng, (3,)),
            _rand(rng, (1, 4))]
    fn, _ = check_native_vs_reference([A, B, u, v, c, r], outs, vals, rtol=1e-4, atol=1e-5, mode=mode)
    assert any(isinstance(n.op, FusedDot) for n in fn.fgraph.toposort())


def test_fused_dot_excluded_is_plain_dot():
    A, B = T.matrix("A"), T.matrix("B")
    fn = symcnn.function([A, B], T.tanh(T.dot(A * 2, B)),
                         mode=Mode("native", excluding=["fuse_dot_epilogue", "fuse_dot_prologue"]))
    assert not any(isinstance(n.op, FusedDot) for n in fn.fgraph.toposort())
