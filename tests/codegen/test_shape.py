"""Native Shape, Shape_i, MakeVector, ARange, Reshape and Flatten against the reference linker."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, check_same_error


def test_shape_and_shape_i():
    x = T.tensor3("x")
    v = T.vector("v", dtype="int8")
    s = T.scalar("s")
    outs = [x.shape, x.shape[0], x.shape[1], x.shape[2], x.shape[-1], v.shape, s.shape,
            x.shape[0] * x.shape[2] + v.shape[0], x.T.shape, T.shape(x.dimshuffle(0, "x", 2, 1))]
    calls = [[np.zeros((2, 3, 4), "float32"), np.zeros(5, "int8"), np.float32(1)],
             [np.zeros((0, 7, 1), "float32"), np.zeros(0, "int8"), np.float32(2)],
             [np.zeros((1, 1, 1), "float32"), np.zeros(33, "int8"), np.float32(3)]]
    fn, results = check_native_vs_reference([x, v, s], outs, None, calls=calls)
    np.testing.assert_array_equal(results[0][0], [2, 3, 4])
    assert results[1][1] == 0 and results[0][0].dtype == np.int64


def test_make_vector():
    a = T.lscalar("a")
    b = T.iscalar("b")
    c = T.scalar("c", dtype="float64")
    d = T.scalar("d", dtype="uint8")
    outs = [T.stack_scalars([a, b]), T.stack_scalars([a, b, d]), T.stack_scalars([c, a]),
            T.stack_scalars([b, 3, d], dtype="int64"), T.MakeVector("int32")(b, b),
            T.stack_scalars([d, d], dtype="float32")]
    check_native_vs_reference([a, b, c, d], outs, [np.int64(-7), np.int32(2 ** 31 - 1), np.float64(2.75),
                                                   np.uint8(250)])


@pytest.mark.parametrize("args", [(0, 10, 1), (10, 0, -1), (3, 17, 4), (17, 3, -4), (5, 5, 1), (5, 0, 1),
                                  (0, 5, -1), (-7, 8, 3), (8, -7, -3), (0, 1, 5), (-3, -1, 1), (0, 0, -2)])
def test_arange_int_constant_and_symbolic(args):
    start, stop, step = T.lscalar("start"), T.lscalar("stop"), T.lscalar("step")
    outs = [T.arange(start, stop, step), T.arange(*args), T.arange(start, stop, step, dtype="int32"),
            T.arange(start, stop, step, dtype="float64")]
    fn, (res,) = check_native_vs_reference([start, stop, step], outs, [np.int64(v) for v in args])
    np.testing.assert_array_equal(res[0], np.arange(*args))
    np.testing.assert_array_equal(res[1], np.arange(*args))


def test_arange_int_many_calls_one_function():
    start, stop, step = T.iscalar("start"), T.iscalar("stop"), T.iscalar("step")
    calls = [[np.int32(a), np.int32(b), np.int32(c)]
             for a, b, c in [(0, 10, 1), (10, 0, -3), (0, 100, 7), (4, 4, 2), (1, -50, -1), (0, 3, 1000)]]
    fn, results = check_native_vs_reference([start, stop, step], T.arange(start, stop, step), None, calls=calls)
    for (a, b, c), r in zip(calls, results):
        np.testing.assert_array_equal(r, np.arange(int(a), int(b), int(c)))


@pytest.mark.parametrize("args", [(0.0, 1.0, 0.1), (1.0, 0.0, -0.25), (0.5, 3.2, 0.7), (2.0, 2.0, 0.5),
                                  (0.0, -1.0, 0.1), (-1.5, 1.5, 1.0), (0.0, 10.0, 3.0), (0.0, 1.0, 2.0)])
def test_arange_float(args):
    start, stop, step = T.dscalar("start"), T.dscalar("stop"), T.dscalar("step")
    outs = [T.arange(start, stop, step), T.arange(start, stop, step, dtype="float32"),
            T.arange(*[float(a) for a in args])]
    fn, (res,) = check_native_vs_reference([start, stop, step], outs, [np.float64(v) for v in args])
    np.testing.assert_allclose(res[0], np.arange(*args))


def test_arange_mixed_int_float():
    n = T.lscalar("n")
    h = T.dscalar("h")
    check_native_vs_reference([n, h], [T.arange(0, n, h), T.arange(n) * 2, T.arange(n, dtype="float32")],
                              [np.int64(5), np.float64(0.75)])


def test_arange_zero_step_raises():
    start, stop, step = T.lscalar("start"), T.lscalar("stop"), T.lscalar("step")
    check_same_error([start, stop, step], T.arange(start, stop, step), [np.int64(0), np.int64(5), np.int64(0)])
    a, b, c = T.dscalar("a"), T.dscalar("b"), T.dscalar("c")
    check_same_error([a, b, c], T.arange(a, b, c), [np.float64(0), np.float64(5), np.float64(0)])


# -- reshape ---------------------------------------------------------------------

def test_reshape_constant_targets():
    rng = np.random.RandomState(0)
    x = T.matrix("x")
    outs = [x.reshape((-1,)), x.reshape((3, -1)), x.reshape((-1, 2)), x.reshape((2, 3, 2)),
            x.reshape((-1, 1, 4)), x.reshape((12,)), x.reshape((1, 12))]
    check_native_vs_reference([x], outs, [rng.randn(4, 3).astype("float32")])


def test_reshape_symbolic_targets_and_minus_one():
    rng = np.random.RandomState(1)
    x = T.tensor3("x")
    a = T.lscalar("a")
    b = T.lscalar("b")
    outs = [x.reshape((a, b), ndim=2), x.reshape((a, -1)), x.reshape((-1, b)),
            T.reshape(x, T.stack_scalars([a, b, 1])), x.reshape((x.shape[0], -1)),
            x.reshape(x.shape), x.reshape((b, a)) * 2]
    calls = [[rng.randn(2, 3, 4).astype("float32"), np.int64(6), np.int64(4)],
             [rng.randn(3, 3, 2).astype("float32"), np.int64(9), np.int64(2)],
             [rng.randn(1, 1, 1).astype("float32"), np.int64(1), np.int64(1)]]
    check_native_vs_reference([x, a, b], outs, None, calls=calls)


def test_reshape_of_non_contiguous_input():
    rng = np.random.RandomState(2)
    x = T.matrix("x")
    t = T.tensor3("t")
    outs = [x.T.reshape((-1,)), x.T.reshape((2, -1)), t.dimshuffle(2, 0, 1).reshape((-1, 3)),
            t.dimshuffle(1, 0, 2).reshape((t.shape[1], -1)) + 1]
    check_native_vs_reference([x, t], outs, [rng.randn(3, 4).astype("float32"),
                                             rng.randn(2, 4, 3).astype("float32")])


def test_reshape_wrong_size_raises():
    x = T.matrix("x")
    a = T.lscalar("a")
    b = T.lscalar("b")
    vals = [np.zeros((3, 4), "float32")]
    check_same_error([x, a, b], x.reshape((a, b)), vals + [np.int64(5), np.int64(2)])
    check_same_error([x, a], x.reshape((a, -1)), vals + [np.int64(5)])       # 12 is not divisible by 5
    check_same_error([x, a, b], x.reshape((a, b)), vals + [np.int64(-1), np.int64(-1)])  # two unknowns
    check_same_error([x, a], x.reshape((a, 5, 2)), vals + [np.int64(1)])     # 12 != 10
    check_same_error([x, a], x.reshape((a, 2, -1)), vals + [np.int64(0)])    # 0 * 2 * ? cannot hold 12
    check_same_error([x, a], x.T.reshape((a, 5)), vals + [np.int64(2)])      # non-contiguous input


def test_reshape_error_then_good_call():
    x = T.vector("x")
    n = T.lscalar("n")
    fn = symcnn.function([x, n], x.reshape((n, -1)), mode="native")
    with pytest.raises(ValueError):
        fn(np.arange(6, dtype="float32"), 4)
    np.testing.assert_array_equal(fn(np.arange(6, dtype="float32"), 3), np.arange(6, dtype="float32").reshape(3, 2))


def test_reshape_result_does_not_alias_input():
    x = T.matrix("x")
    fn = symcnn.function([x], x.reshape((-1,)), mode="native")
    a = np.arange(6, dtype="float32").reshape(2, 3)
    r = fn(a)
    r[0] = 100
    assert a[0, 0] == 0


# -- flatten ---------------------------------------------------------------------

def test_flatten_contiguous_and_not():
    rng = np.random.RandomState(3)
    t = T.tensor4("t")
    outs = [T.flatten(t), T.flatten(t, 2), T.flatten(t, 3), T.flatten(t, 4),
            T.flatten(t.dimshuffle(3, 1, 2, 0)), T.flatten(t.dimshuffle(0, 2, 1, 3), 2),
            T.flatten(t.dimshuffle(1, 0, 3, 2), 3) * 2, T.flatten(t.T, 2)]
    calls = [[rng.randn(2, 3, 4, 5).astype("float32")], [rng.randn(1, 7, 1, 3).astype("float32")],
             [np.zeros((0, 3, 2, 2), "float32")], [rng.randn(3, 1, 2, 1).astype("float32")]]
    check_native_vs_reference([t], outs, None, calls=calls)


def test_flatten_ints_and_static_shapes():
    x = T.tensor3("x", dtype="int32", shape=(2, 3, 4))
    outs = [T.flatten(x, 2), T.flatten(x.dimshuffle(2, 1, 0), 2), T.flatten(x)]
    fn, (res,) = check_native_vs_reference([x], outs, [np.arange(24, dtype="int32").reshape(2, 3, 4)])
    np.testing.assert_array_equal(res[1], np.arange(24).reshape(2, 3, 4).transpose(2, 1, 0).reshape(4, 6))


def test_reshape_and_flatten_of_broadcast_views():
    r = T.row("r")
    v = T.vector("v")
    outs = [r.dimshuffle(1).reshape((2, -1)), T.flatten(r.dimshuffle("x", 1, 0), 1),
            v.dimshuffle("x", 0).reshape((-1,)), v.dimshuffle(0, "x").T.reshape((2, -1)),
            T.flatten(v.dimshuffle(0, "x") + v.dimshuffle("x", 0), 1)]
    check_native_vs_reference([r, v], outs, [np.arange(6, dtype="float32").reshape(1, 6),
                                             np.arange(4, dtype="float32")])
