"""Native Elemwise/DimShuffle lowering against the reference (numpy) linker."""
import re
import sys

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)

DTYPES = ["float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
ODD_SIZES = [1, 3, 7, 17, 31, 33, 65]


def _values(rng, dtype, shape, special=True):
    """Random values of `dtype`, with the awkward ones (0, negatives, extremes, NaN/Inf) mixed in."""
    if dtype == "bool":
        return rng.rand(*shape) < 0.5
    if dtype.startswith("float"):
        v = (rng.randn(*shape) * 3).astype(dtype)
        if special and v.size:
            flat = v.reshape(-1)
            extras = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1.5, -2.5, 1.0], dtype=dtype)
            k = min(len(extras), flat.size // 2)
            idx = rng.choice(flat.size, size=k, replace=False)
            flat[idx] = extras[:k]
        return v
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -100), min(info.max, 100)
    v = rng.randint(lo, hi + 1, size=shape).astype(dtype)
    if special and v.size:
        flat = v.reshape(-1)
        extras = np.array([0, info.max, info.min, 1] + ([-1, -7] if info.min < 0 else [7, 3]), dtype=dtype)
        k = min(len(extras), flat.size // 2)
        idx = rng.choice(flat.size, size=k, replace=False)
        flat[idx] = extras[:k]
    return v


# -- binary arithmetic and comparisons, per dtype ---------------------------------

def _binary_outputs(x, y, dtype):
    outs = [x + y, x * y, T.true_div(x, y), T.maximum(x, y), T.minimum(x, y),
            T.eq(x, y), T.neq(x, y), T.lt(x, y), T.le(x, y), T.gt(x, y), T.ge(x, y)]
    if dtype != "bool":  # numpy refuses boolean subtraction
        outs.append(x - y)
    outs += [T.int_div(x, y), T.mod(x, y)]
    return outs


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_ops_per_dtype(dtype, target):
    rng = np.random.RandomState(DTYPES.index(dtype))
    x, y = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype)
    a = _values(rng, dtype, (7, 9))
    b = _values(rng, dtype, (7, 9))
    if dtype != "bool":
        b[0, :3] = 0          # division and modulo by zero
    if dtype.startswith("float"):
        b[1, :3] = np.nan     # NaN in the second operand too (maximum/minimum must propagate it)
        a[1, 3:5] = np.nan
        b[1, 3:5] = np.nan
        a[2, 0] = b[2, 0] = 0.0
    check_native_vs_reference([x, y], _binary_outputs(x, y, dtype), [a, b])


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8"])
def test_integer_division_edge_cases(dtype):
    """Floor semantics with negative operands, x // 0 == x % 0 == 0, and MIN // -1 (no trap)."""
    info = np.iinfo(dtype)
    x, y = T.vector("x", dtype=dtype), T.vector("y", dtype=dtype)
    if info.min < 0:
        a = np.array([7, -7, 7, -7, 0, 5, -5, info.min, info.min, info.max, 3, -3, 1], dtype=dtype)
        b = np.array([2, 2, -2, -2, 3, 0, 0, -1, 1, -1, 7, 7, -1], dtype=dtype)
    else:
        a = np.array([7, 0, 5, 255, 255, 3, 1], dtype=dtype)
        b = np.array([2, 3, 0, 1, 2, 7, 255], dtype=dtype)
    _, (res,) = check_native_vs_reference([x, y], [x // y, x % y], [a, b])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(res[0], np.floor_divide(a, b))
        np.testing.assert_array_equal(res[1], np.mod(a, b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_floor_divide_and_mod_like_numpy(dtype):
    """numpy's floor_divide is not floor(a / b): 1 // 0.1 == 9, inf // 1 is NaN, -1 // inf == -1."""
    x, y = T.vector("x", dtype=dtype), T.vector("y", dtype=dtype)
    a = np.array([1.0, -1.0, np.inf, -np.inf, 1.0, 0.0, -0.0, 7.0, -7.0, 0.3, 1e30, np.nan, 5.0, -5.5, 2.0],
                 dtype=dtype)
    b = np.array([0.1, np.inf, 1.0, 2.0, 0.0, 0.0, 3.0, -2.0, 2.0, 0.1, 1e-30, 1.0, np.nan, -np.inf, -0.0],
                 dtype=dtype)
    _, (res,) = check_native_vs_reference([x, y], [x // y, x % y], [a, b])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(res[0], np.floor_divide(a, b))
        np.testing.assert_array_equal(res[1], np.mod(a, b))


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "bool"])
def test_integer_pow(dtype):
    rng = np.random.RandomState(5)
    x, y = T.vector("x", dtype=dtype), T.vector("y", dtype=dtype)
    n = 40
    a = _values(rng, dtype, (n,), special=False)
    if dtype == "bool":
        b = rng.rand(n) < 0.5
    elif dtype == "uint8":
        b = rng.randint(0, 256, size=n).astype(dtype)   # exponents >= 128 are not negative
        b[:4] = [0, 1, 200, 255]
    else:
        b = rng.randint(0, 9, size=n).astype(dtype)      # numpy rejects negative integer powers
        b[:2] = [0, 1]
    check_native_vs_reference([x, y], x ** y, [a, b])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_pow(dtype):
    rng = np.random.RandomState(6)
    x, y = T.vector("x", dtype=dtype), T.vector("y", dtype=dtype)
    a = _values(rng, dtype, (33,))
    b = (rng.randn(33) * 2).astype(dtype)
    b[:4] = [0.0, 2.0, np.nan, np.inf]
    a[:4] = [np.nan, -3.0, 1.0, 0.5]
    check_native_vs_reference([x, y], [x ** y, x ** 2, 2 ** x], [a, b], rtol=2e-5)


# -- unary ops -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_unary_ops_per_dtype(dtype, target):
    rng = np.random.RandomState(10 + DTYPES.index(dtype))
    x = T.matrix("x", dtype=dtype)
    a = _values(rng, dtype, (5, 13))
    if dtype.startswith("float"):
        a[0, :4] = [-100.0, 100.0, 40.0, -40.0]   # sigmoid/tanh/exp saturation
    outs = [abs(x), T.sqr(x), T.exp(x), T.log(x), T.sqrt(x), T.tanh(x), T.sigmoid(x), T.identity(x)]
    if dtype != "bool":
        outs += [-x, T.sgn(x)]
    check_native_vs_reference([x], outs, [a], rtol=1e-5, atol=1e-6)


def test_unary_float_results_for_integers_have_theano_dtypes():
    x8, x32 = T.vector("x8", dtype="int8"), T.vector("x32", dtype="int32")
    fn, _ = check_native_vs_reference([x8, x32], [T.exp(x8), T.sqrt(x32)],
                                      [np.arange(5, dtype="int8"), np.arange(5, dtype="int32")])
    r = fn(np.arange(5, dtype="int8"), np.arange(5, dtype="int32"))
    assert r[0].dtype == np.float32 and r[1].dtype == np.float64


# -- casts between every pair of dtypes -------------------------------------------

@pytest.mark.parametrize("src", DTYPES)
def test_cast_all_pairs(src):
    rng = np.random.RandomState(20 + DTYPES.index(src))
    x = T.vector("x", dtype=src)
    outs = [T.cast(x, dst) for dst in DTYPES if dst != src]
    if src.startswith("float"):
        # Only values every integer dtype can hold (float -> int of out-of-range values is undefined).
        a = rng.uniform(-0.99, 127.0, size=37).astype(src)
        a[:3] = [0.0, -0.0, 0.5]
        z = T.vector("z", dtype=src)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30, -3.5, 1e39 if src == "float64" else 3e38],
                           dtype=src)
        outs += [T.cast(z, "bool"), T.cast(z, "float32" if src == "float64" else "float64")]
        check_native_vs_reference([x, z], outs, [a, special])
    else:
        a = _values(rng, src, (37,))
        check_native_vs_reference([x], outs, [a])


def test_cast_int64_wraps_like_numpy():
    x = T.lvector("x")
    a = np.array([300, -300, 2 ** 40 + 5, -(2 ** 33) - 1, 255, 256, 2 ** 31], dtype="int64")
    _, (res,) = check_native_vs_reference([x], [T.cast(x, d) for d in ("int8", "uint8", "int32", "float32", "bool")],
                                          [a])
    np.testing.assert_array_equal(res[0], a.astype("int8"))
    np.testing.assert_array_equal(res[1], a.astype("uint8"))


# -- switch, second, identity -------------------------------------------------------

@pytest.mark.parametrize("cond_dtype", ["bool", "int32", "float64"])
def test_switch(cond_dtype):
    rng = np.random.RandomState(30)
    c = T.col("c", dtype=cond_dtype)
    a = T.matrix("a", dtype="int8")
    f = T.row("f", dtype="float32")
    i = T.matrix("i", dtype="int32")
    cv = _values(rng, cond_dtype, (6, 1))
    if cond_dtype == "float64":
        cv[:3, 0] = [np.nan, 0.0, -0.0]   # NaN is true, as in numpy
    av = _values(rng, "int8", (6, 5))
    fv = _values(rng, "float32", (1, 5))
    iv = _values(rng, "int32", (6, 5))
    check_native_vs_reference([c, a, f, i], [T.switch(c, a, f), T.switch(c, i, f), T.switch(c, a, i),
                                             T.switch(c, 1.5, a)], [cv, av, fv, iv])


def test_second_fill_zeros_ones_identity():
    rng = np.random.RandomState(31)
    x = T.matrix("x", dtype="float32")
    v = T.vector("v", dtype="int32")
    s = T.scalar("s", dtype="float64")
    xv = _values(rng, "float32", (4, 7))
    vv = _values(rng, "int32", (7,))
    outs = [T.second(x, v), T.fill(x, s), T.zeros_like(x), T.ones_like(v), T.zeros_like(x, dtype="int8"),
            T.identity(v), T.second(v, x)]
    fn, (res,) = check_native_vs_reference([x, v, s], outs, [xv, vv, np.float64(2.5)])
    assert res[0].dtype == np.int32 and res[0].shape == (4, 7)
    assert res[4].dtype == np.int8


# -- broadcasting -------------------------------------------------------------------

def test_broadcast_row_col_scalar(target):
    rng = np.random.RandomState(40)
    x = T.matrix("x")
    r = T.row("r")
    c = T.col("c")
    s = T.scalar("s")
    v = T.vector("v")
    outs = [x + r, x * c, x - s, r + c, s * v, x + v, x / T.dimshuffle(v, "x", 0),
            x + T.dimshuffle(v, "x", 0) * s,
            T.maximum(c, r), r + 1.0, c * 2]
    vals = [_values(rng, "float32", (5, 7)), _values(rng, "float32", (1, 7)), _values(rng, "float32", (5, 1)),
            np.float32(1.25), _values(rng, "float32", (7,))]
    check_native_vs_reference([x, r, c, s, v], outs, vals)


def test_broadcast_x_dims_in_3d():
    rng = np.random.RandomState(41)
    t = T.tensor3("t")
    m = T.matrix("m")
    v5 = T.vector("v5")
    v4 = T.vector("v4")
    outs = [t + T.dimshuffle(m, 0, "x", 1),                               # m: (3, 5)
            t * T.dimshuffle(v5, "x", "x", 0),
            t - T.dimshuffle(v4, "x", 0, "x"),
            T.dimshuffle(m, 0, 1, "x") + T.dimshuffle(v4, "x", "x", 0),   # both sides broadcast
            T.dimshuffle(m, 1, "x", 0) * t.dimshuffle(2, 1, 0)]           # transposed and broadcast
    vals = [_values(rng, "float32", (3, 4, 5)), _values(rng, "float32", (3, 5)), _values(rng, "float32", (5,)),
            _values(rng, "float32", (4,))]
    check_native_vs_reference([t, m, v5, v4], outs, vals)


def test_broadcast_mixed_dtypes():
    rng = np.random.RandomState(42)
    a = T.matrix("a", dtype="int8")
    b = T.row("b", dtype="uint8")
    c = T.col("c", dtype="float32")
    d = T.vector("d", dtype="int64")
    outs = [a + b, a * c, a // b, b % a, T.lt(a, b), d + c, T.maximum(a, b), a + 3, b * 2.5, T.eq(d, a)]
    vals = [_values(rng, "int8", (4, 6)), _values(rng, "uint8", (1, 6)), _values(rng, "float32", (4, 1)),
            _values(rng, "int64", (6,))]
    check_native_vs_reference([a, b, c, d], outs, vals)


def test_non_contiguous_graph_views():
    rng = np.random.RandomState(43)
    x = T.matrix("x")
    y = T.matrix("y")
    t = T.tensor3("t")
    u = T.tensor3("u")
    outs = [x.T + y, x.T * y.T.T, T.exp(x.T), t.dimshuffle(2, 0, 1) - u, t.dimshuffle(1, 2, 0) * 2,
            T.maximum(t.dimshuffle(0, 2, 1), u.dimshuffle(0, 2, 1).dimshuffle(0, 2, 1).dimshuffle(0, 2, 1))]
    vals = [_values(rng, "float32", (5, 3)), _values(rng, "float32", (3, 5)),
            _values(rng, "float32", (4, 5, 6)), _values(rng, "float32", (6, 4, 5))]
    # u has shape (6, 4, 5): t.dimshuffle(0, 2, 1) is (4, 6, 5) vs u.dimshuffle(0, 2, 1) (6, 5, 4): use a
    # separate function for the last output with matching shapes.
    check_native_vs_reference([x, y, t, u], outs[:5], vals)
    uu = _values(rng, "float32", (4, 5, 6))
    check_native_vs_reference([t, u], [outs[5]], [vals[2], uu])


def test_non_contiguous_input_arrays():
    rng = np.random.RandomState(44)
    x = T.matrix("x")
    y = T.matrix("y")
    big = _values(rng, "float32", (8, 18))
    xv = big[::2, 1::3]          # strided
    yv = _values(rng, "float32", (6, 4)).T  # transposed (Fortran order)
    assert not xv.flags.c_contiguous and not yv.flags.c_contiguous
    check_native_vs_reference([x, y], [x * y + 1, T.sqr(x)], [xv, yv])


def test_odd_sizes_and_empty(target):
    rng = np.random.RandomState(45)
    x = T.vector("x")
    y = T.vector("y")
    i = T.vector("i", dtype="int32")
    b = T.vector("b", dtype="uint8")
    outs = [x * y + x, T.tanh(x), T.maximum(x, y), i // 3, i % -3, b + b, T.lt(x, y), T.cast(i, "float32") * x]
    calls = []
    for n in ODD_SIZES + [0, 2, 64, 129]:
        calls.append([_values(rng, "float32", (n,)), _values(rng, "float32", (n,)),
                      _values(rng, "int32", (n,)), _values(rng, "uint8", (n,))])
    check_native_vs_reference([x, y, i, b], outs, None, calls=calls)


def test_zero_size_dimensions():
    rng = np.random.RandomState(46)
    x = T.matrix("x")
    r = T.row("r")
    c = T.col("c")
    outs = [x + r, x * c, T.exp(x), x.T - 1, r + c]
    calls = [[np.zeros((0, 5), "float32"), _values(rng, "float32", (1, 5)), np.zeros((0, 1), "float32")],
             [np.zeros((4, 0), "float32"), np.zeros((1, 0), "float32"), _values(rng, "float32", (4, 1))],
             [np.zeros((0, 0), "float32"), np.zeros((1, 0), "float32"), np.zeros((0, 1), "float32")],
             [_values(rng, "float32", (3, 5)), _values(rng, "float32", (1, 5)), _values(rng, "float32", (3, 1))]]
    check_native_vs_reference([x, r, c], outs, None, calls=calls)


def test_row_of_length_zero_broadcasts_against_rows():
    x = T.matrix("x")
    r = T.row("r")
    check_native_vs_reference([x, r], x + r, [np.zeros((0, 3), "float32"), np.ones((1, 3), "float32")])


# -- the runtime broadcasting rule --------------------------------------------------

def test_non_broadcastable_length_one_raises_with_user_line():
    x = T.matrix("x")
    y = T.matrix("y")
    z = x + y; line = sys._getframe().f_lineno  # noqa: E702
    nat, ref = check_same_error([x, y], z, [np.ones((3, 4), "float32"), np.ones((1, 4), "float32")])
    for msg in (nat, ref):
        assert msg.startswith(f"{__file__}:{line}:"), msg
    # and the other way round, in the second dimension
    nat, ref = check_same_error([x, y], z, [np.ones((3, 1), "float32"), np.ones((3, 4), "float32")])
    assert nat.startswith(f"{__file__}:{line}:"), nat


def test_mismatched_lengths_raise():
    x = T.vector("x")
    y = T.vector("y")
    z = T.maximum(x, y) * 2; line = sys._getframe().f_lineno  # noqa: E702
    nat, _ = check_same_error([x, y], z, [np.ones(3, "float32"), np.ones(5, "float32")])
    assert nat.startswith(f"{__file__}:{line}:"), nat


def test_static_shape_against_runtime_length_one():
    x = T.matrix("x", shape=(3, None))
    y = T.matrix("y")
    z = x - y; line = sys._getframe().f_lineno  # noqa: E702
    nat, _ = check_same_error([x, y], z, [np.ones((3, 2), "float32"), np.ones((1, 2), "float32")])
    assert nat.startswith(f"{__file__}:{line}:"), nat
    check_native_vs_reference([x, y], z, [np.ones((3, 2), "float32"), np.full((3, 2), 2, "float32")])


def test_broadcast_error_after_good_call_keeps_function_usable():
    x = T.matrix("x")
    y = T.matrix("y")
    fn = symcnn.function([x, y], x * y, mode="native")
    a = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(fn(a, a), a * a)
    with pytest.raises(ValueError):
        fn(a, a[:1])
    np.testing.assert_array_equal(fn(a, a + 1), a * (a + 1))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [(1 << 15) - 1, 1 << 15, 100003], ids=["below", "at", "odd"])
def test_large_elemwise_on_threads(threads, size, monkeypatch):
    """Contiguous elementwise ops of a static size of options.elemwise_min_parallel elements and
    more run on the pool (an outlined symcnn_elemwise body), with scalars and constants broadcast;
    smaller ones on the calling thread; a run-time size is told apart when called
    (kernels/broadcast_loops.py). Every split matches the reference (special values included), in
    place too."""
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(config, "num_threads", threads)
    rng = np.random.RandomState(size % 97)
    x, y = T.vector("x", shape=(size,)), T.vector("y", shape=(size,))
    outs = [T.tanh(x) * 2 + y, T.maximum(y, 0), x * y - T.exp(-abs(x))]
    vals = [_values(rng, "float32", (size,)), _values(rng, "float32", (size,))]
    fn, _ = check_native_vs_reference([x, y], outs, vals, rtol=1e-6, atol=1e-6)
    assert bool(re.search(r"symcnn_elemwise\d", fn.dump_llvm())) == (threads > 1 and size >= 1 << 15), (threads, size)
    assert "symcnn_elemwise_nest" not in fn.dump_llvm()
    dynamic = T.vector("d")
    fd, _ = check_native_vs_reference([dynamic], [T.sqrt(abs(dynamic)) * 3], vals[:1], rtol=1e-6, atol=1e-6)
    assert ("symcnn_elemwise_nest" in fd.dump_llvm()) == (threads > 1)
    # in place: an update that overwrites its input (a shared variable of static shape)
    s = symcnn.shared(vals[0].copy(), shape=(size,))
    step = symcnn.function([y], [], updates=[(s, s * 0.5 + y)])
    step(vals[1])
    np.testing.assert_allclose(s.get_value(), vals[0] * np.float32(0.5) + vals[1], rtol=1e-6)
