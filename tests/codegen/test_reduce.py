"""Native Sum/Max/Argmax against the reference linker (and numpy where the reference is stricter)."""
import itertools

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)

DTYPES = ["float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
AXES = [None] + [c for r in range(0, 4) for c in itertools.combinations(range(3), r)]


def _values(rng, dtype, shape):
    if dtype == "bool":
        return rng.rand(*shape) < 0.5
    if dtype.startswith("float"):
        return (rng.randn(*shape) * 10).astype(dtype)
    info = np.iinfo(dtype)
    return rng.randint(max(info.min, -120), min(info.max, 120) + 1, size=shape).astype(dtype)


def _all_reductions(x):
    outs = []
    for axis in AXES:
        for keepdims in (False, True):
            outs.append(T.sum(x, axis=axis, keepdims=keepdims))
            outs.append(T.max(x, axis=axis, keepdims=keepdims))
            outs.append(T.argmax(x, axis=axis, keepdims=keepdims))
    return outs


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_axis_combination(dtype, target):
    rng = np.random.RandomState(DTYPES.index(dtype))
    x = T.tensor3("x", dtype=dtype)
    outs = _all_reductions(x)
    calls = [[_values(rng, dtype, (3, 5, 7))], [_values(rng, dtype, (1, 17, 2))]]
    if dtype == "int8":
        calls.append([np.full((2, 3, 4), -128, dtype="int8")])   # all equal to the lowest value
    fn, results = check_native_vs_reference([x], outs, None, calls=calls)
    # sum of bool / small ints is int64, of uint8 uint64
    want = {"bool": np.int64, "int8": np.int64, "int32": np.int64, "uint8": np.uint64}.get(dtype, np.dtype(dtype))
    assert results[0][0].dtype == want


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_non_contiguous_reductions(dtype):
    rng = np.random.RandomState(7)
    x = T.tensor3("x", dtype=dtype)
    m = T.matrix("m", dtype=dtype)
    xt = x.dimshuffle(2, 0, 1)
    outs = _all_reductions(xt) + [T.sum(m.T, axis=0), T.max(m.T, axis=1), T.argmax(m.T, axis=0),
                                  T.sum(m.dimshuffle(1, "x", 0), axis=(0, 2), keepdims=True)]
    check_native_vs_reference([x, m], outs, [_values(rng, dtype, (3, 4, 5)), _values(rng, dtype, (6, 7))])


def test_odd_sizes_vector_reductions(target):
    rng = np.random.RandomState(8)
    x = T.vector("x")
    i = T.vector("i", dtype="int64")
    outs = [x.sum(), x.max(), x.argmax(), i.sum(), i.max(), i.argmax(), x.min(), T.mean(x)]
    calls = [[_values(rng, "float32", (n,)), _values(rng, "int64", (n,))] for n in (1, 3, 7, 17, 31, 33, 65, 1000)]
    check_native_vs_reference([x, i], outs, None, calls=calls, rtol=1e-5, atol=1e-5)


def test_nan_and_inf():
    x = T.matrix("x")
    a = np.array([[1.0, np.nan, 3.0, np.nan, 5.0],
                  [np.nan, 2.0, 9.0, 1.0, 0.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                  [np.inf, 1.0, np.inf, np.nan, 2.0],
                  [-1.0, -2.0, -0.5, -7.0, -0.5],
                  [0.0, 0.0, 0.0, 0.0, 0.0]], dtype="float32")
    outs = [x.sum(axis=1), x.max(axis=1), x.argmax(axis=1), x.sum(axis=0), x.max(axis=0), x.argmax(axis=0),
            x.sum(), x.max(), x.argmax()]
    fn, (res,) = check_native_vs_reference([x], outs, [a])
    # numpy: argmax returns the first NaN; max propagates NaN
    np.testing.assert_array_equal(res[2], np.argmax(a, axis=1))
    np.testing.assert_array_equal(res[2], [1, 0, 0, 3, 2, 0])
    assert res[8] == 1
    assert np.isnan(res[7])
    # a column without NaN but with -inf everywhere else
    b = a[[2, 4, 5]]
    _, (res_b,) = check_native_vs_reference([x], outs, [b])
    np.testing.assert_array_equal(res_b[5], np.argmax(b, axis=0))


def test_nan_not_first_in_row_float64():
    x = T.dvector("x")
    a = np.array([0.5, 3.0, 1.0, np.nan, 7.0, np.nan], dtype="float64")
    fn, (res,) = check_native_vs_reference([x], [x.argmax(), x.max(), x.sum()], [a])
    assert res[0] == 3


def test_bool_reductions():
    b = T.matrix("b", dtype="bool")
    a = np.array([[True, False, True], [False, False, False], [True, True, True]])
    outs = [b.sum(), b.sum(axis=0), b.sum(axis=1, keepdims=True), b.max(axis=1), b.argmax(axis=1), b.argmax(),
            T.sum(b, dtype="float32"), T.mean(b)]
    fn, (res,) = check_native_vs_reference([b], outs, [a])
    assert res[0].dtype == np.int64 and res[0] == 5
    np.testing.assert_array_equal(res[1], [2, 1, 2])


def test_int_overflow_and_explicit_dtype():
    x = T.vector("x", dtype="int8")
    u = T.vector("u", dtype="uint8")
    a = np.full(300, 100, dtype="int8")
    c = np.full(300, 250, dtype="uint8")
    outs = [x.sum(), T.sum(x, dtype="int8"), T.sum(x, dtype="float64"), u.sum(), u.max(), u.argmax(),
            T.sum(u, dtype="int16")]
    fn, (res,) = check_native_vs_reference([x, u], outs, [a, c])
    assert res[0] == 30000 and res[3] == 75000


def test_sum_of_empty_is_zero():
    x = T.matrix("x")
    i = T.matrix("i", dtype="int32")
    outs = [x.sum(), x.sum(axis=0), x.sum(axis=1, keepdims=True), i.sum(axis=0), i.sum()]
    calls = [[np.zeros((0, 4), "float32"), np.zeros((0, 4), "int32")],
             [np.zeros((3, 0), "float32"), np.zeros((3, 0), "int32")]]
    check_native_vs_reference([x, i], outs, None, calls=calls)


@pytest.mark.parametrize("op", ["max", "argmax"])
@pytest.mark.parametrize("axis", [None, 0, (0, 1)])
def test_empty_max_raises(op, axis):
    x = T.matrix("x")
    out = getattr(T, op)(x, axis=axis)
    nat, _ = check_same_error([x], out, [np.zeros((0, 3), "float32")])
    assert "test_reduce.py" in nat.split(":")[0]


@pytest.mark.parametrize("op,word", [(lambda x: T.max(x), "max"), (lambda x: T.argmax(x, axis=1), "argmax"),
                                     (lambda x: T.nnet.softmax(x), "softmax")])
def test_empty_reduction_message_without_the_reference(op, word):
    """The message native code gives on its own (the reference normally explains first) comes
    from the error-message hook of the op's lowering."""
    from codegen.runtime import NativeRunner
    x = T.matrix("x")
    f = symcnn.function([x], op(x), mode="native")
    with pytest.raises(ValueError):
        f(np.zeros((2, 0), "float32"))
    with pytest.raises(ValueError, match=f"cannot reduce over an empty dimension \\(a {word} of length 0\\)"):
        NativeRunner._raise(f.runner, 1)


def test_max_over_nonempty_axis_of_empty_array_matches_numpy():
    """Reducing a non-empty axis of an empty array is fine in numpy (np.max(zeros((0, 3)), axis=1))."""
    x = T.matrix("x")
    fn = symcnn.function([x], [T.max(x, axis=1), T.argmax(x, axis=1), T.max(x, axis=0, keepdims=True)],
                         mode="native")
    a = np.zeros((0, 3), "float32")
    with pytest.raises(ValueError):
        fn(a)   # axis 0 is empty
    fn2 = symcnn.function([x], [T.max(x, axis=1), T.argmax(x, axis=1)], mode="native")
    r = fn2(a)
    assert r[0].shape == (0,) and r[0].dtype == np.float32
    assert r[1].shape == (0,) and r[1].dtype == np.int64
    np.testing.assert_array_equal(r[0], np.max(a, axis=1))
