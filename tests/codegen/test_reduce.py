"""Native Sum/Max/Argmax against the reference linker (and numpy where the reference is stricter)."""
import itertools

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from symcnn.tensor.prod import ProdWithoutZeros

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


# -- the two walks (codegen/kernels/reduce.py): per output element, or into rows of accumulators -----

def _subsets(ndim):
    return [c for r in range(1, ndim + 1) for c in itertools.combinations(range(ndim), r)]


def _views(x, ndim):
    """The input as it is, transposed, and sliced with steps (one of them negative)."""
    steps = [slice(None, None, 2)] + [slice(None)] * (ndim - 2) + [slice(None, None, -3)]
    return {"contiguous": x, "transposed": x.dimshuffle(*reversed(range(ndim))),
            "sliced": x[tuple(steps[-ndim:]) if ndim > 1 else slice(None, None, -2)]}


def _every_fold(v, ndim, share=(0, 1)):
    """Every fold of v over every subset of its axes; share=(c, k): the folds whose index, plus the
    subset's, is c modulo k (so the k cases c = 0..k-1 of a group together take every fold of every
    subset, and each case takes every kind of fold)."""
    c, k = share
    outs = []
    for s, axis in enumerate(_subsets(ndim)):
        folds = [T.sum(v, axis=axis), T.prod(v, axis=axis), ProdWithoutZeros(axis)(v),
                 T.max(v, axis=axis), T.min(v, axis=axis), T.argmax(v, axis=axis)]
        outs += [f for i, f in enumerate(folds) if (i + s) % k == c % k]
    return outs


def _tied_values(rng, dtype, shape):
    """Few distinct values (many ties for max/argmax, exact sums), zeros included."""
    return (rng.randint(-4, 5, size=shape) * (0.5 if dtype.startswith("float") else 1)).astype(dtype)


# 4-d: every view, with every dtype laid out contiguously and two each transposed and sliced (a
# 4-d graph of 90 folds takes 10-30 s to compile; every dtype meets every view in fewer dimensions).
# In 3 and 4 dimensions the dtypes of a view share the folds (_every_fold): every fold of every
# subset of axes in each view, every kind of fold in each case.
_CASES = [(ndim, dtype, view) for ndim in (1, 2, 3, 4) for dtype in ("float32", "float64", "int32", "int8")
          for view in ("contiguous", "transposed", "sliced")
          if ndim < 4 or view == "contiguous" or (view == "transposed") == (dtype in ("float32", "int32"))]


def _share(ndim, dtype, view):
    """(index, count) of this case among those of its dimensions and view (_every_fold's share);
    (0, 1) below 3 dimensions."""
    group = [d for n, d, v in _CASES if n == ndim and v == view]
    return (group.index(dtype), min(len(group), 3)) if ndim >= 3 else (0, 1)


@pytest.mark.parametrize("ndim,dtype,view", _CASES)
def test_every_axis_subset_of_random_shapes(ndim, dtype, view):
    rng = np.random.RandomState(100 * ndim + 10 * ["float32", "float64", "int32", "int8"].index(dtype)
                                + ["contiguous", "transposed", "sliced"].index(view))
    x = T.TensorType(dtype, shape=(None,) * ndim)("x")
    outs = _every_fold(_views(x, ndim)[view], ndim, _share(ndim, dtype, view))
    sizes = [(1, 7), (2, 6), (5, 9)][min(ndim, 3) - 1] if ndim > 1 else (1, 40)
    calls = [[_tied_values(rng, dtype, tuple(rng.randint(*sizes, size=ndim)))] for _ in range(3)]
    shape = calls[0][0].shape   # and distinct values (products stay well inside float32's range)
    if dtype.startswith("float"):
        calls.append([(rng.uniform(0.6, 1.6, shape) * rng.choice([-1, 1], shape)).astype(dtype)])
    else:
        calls.append([rng.randint(-100, 100, size=shape).astype(dtype)])
    rtol = 1e-4 if dtype == "float32" else 1e-5   # a float32 product: numpy multiplies in float32
    check_native_vs_reference([x], outs, None, calls=calls, rtol=rtol)


def test_broadcast_dimension_of_a_view():
    rng = np.random.RandomState(3)
    m = T.fmatrix("m")
    v = m.dimshuffle(0, "x", 1)
    outs = []
    for axis in _subsets(3):
        outs += [T.sum(v, axis=axis), T.max(v, axis=axis), T.argmax(v, axis=axis)]
    outs += [T.sum(m.dimshuffle(1, "x", 0), axis=axis) for axis in _subsets(3)]
    check_native_vs_reference([m], outs, None, calls=[[_tied_values(rng, "float32", (5, 9))],
                                                       [_tied_values(rng, "float32", (1, 3))]])


def test_argmax_first_index_among_ties_and_nans_in_columns():
    x = T.matrix("x")
    a = np.array([[1.0, 5.0, np.nan, 2.0],
                  [3.0, 5.0, 1.0, np.nan],
                  [3.0, np.nan, np.nan, 2.0],
                  [0.0, 5.0, 4.0, 2.0]], dtype="float32")
    fn, (res,) = check_native_vs_reference([x], [x.argmax(axis=0), x.max(axis=0), x.T.argmax(axis=1)], [a])
    np.testing.assert_array_equal(res[0], [1, 2, 0, 1])
    np.testing.assert_array_equal(res[2], [1, 2, 0, 1])


def _walks(ir_text):
    return {"into rows": "reduce_rows0.head" in ir_text, "per output": "reduce_r0.head" in ir_text,
            "vector sums": "reduce_vt_sum" in ir_text, "vector max": "reduce_vt_max" in ir_text,
            "vector argmax": "reduce_vt_argmax" in ir_text,
            "vector chunks": "reduce_ck_" in ir_text}


def test_the_walk_follows_the_memory_order():
    """A kept innermost axis walks into rows, a reduced one per output element; a view whose
    strides are known only at run time has both, and static strides pick one at compile time."""
    m = T.fmatrix("m")
    x = T.tensor4("x")
    walks = lambda out, *ins: {k for k, v in _walks(symcnn.function(list(ins), out, mode="native").runner.ir).items()
                               if v}  # noqa: E731
    assert walks(T.sum(m, axis=0), m) == {"into rows"}
    assert walks(T.argmax(m, axis=0), m) == {"into rows"}
    assert walks(T.max(x, axis=(0, 2)), x) == {"into rows"}
    assert walks(T.max(m.astype("int8"), axis=1), m) == {"per output"}   # (narrow integers: scalar)
    assert walks(T.max(m.astype("int32"), axis=1), m) == {"vector max"}
    assert walks(T.argmax(m.astype("uint64"), axis=1), m) == {"vector argmax"}
    assert walks(T.argmax(m, axis=1), m) == {"vector argmax"}
    assert walks(T.argmax(x, axis=(2, 3)), x) == {"vector argmax"}
    assert walks(T.argmax(x, axis=(1, 3)), x) == {"per output"}   # (indices over more than a row)
    assert walks(T.sum(m.astype("int32"), axis=1), m) == {"per output"}
    # float maxima along memory: vector maxima
    assert walks(T.max(m, axis=1), m) == {"vector max"}
    assert walks(T.max(x, axis=(1, 2, 3)), x) == {"vector max"}
    # float sums along memory: vector partials
    assert walks(T.sum(m, axis=1), m) == {"vector sums"}
    assert walks(T.sum(x, axis=(1, 3)), x) == {"vector sums"}
    assert walks(T.sum(x), x) == {"vector chunks"}   # all of it: by chunks on the threads
    assert walks(T.max(m), m) == {"vector chunks"}
    assert walks(T.argmax(m), m) == {"vector argmax"}
    # a view's strides decide (at run time unless known), between the two scalar walks
    assert walks(T.sum(m.T, axis=0), m) == {"into rows", "per output"}
    s = T.TensorType("float32", shape=(6, 7))("s")
    assert walks(T.sum(s.T, axis=0), s) == {"per output"}
    assert walks(T.sum(s.T, axis=1), s) == {"into rows"}


# rows (the reduced axes adjacent at the end of memory) of 1 value, fewer than a vector, whole
# vectors, whole groups of CHAINS vectors with vectors and a tail past them, for 4 to 16 lanes
_ROW_SHAPES = [(2, 3, 1, 1), (3, 2, 1, 5), (2, 3, 2, 8), (1, 2, 4, 16), (2, 3, 3, 29), (3, 2, 5, 43),
               (2, 1, 7, 200)]
_SUM_AXES = [(3,), (2, 3), (1, 3), (0, 2, 3), (0, 1, 2, 3), (0, 3), (1, 2, 3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_sums_match_reference_for_rows_of_every_length(dtype, target, monkeypatch):
    """Float sums whose innermost reduced axis runs along memory (kernels/row_sum.py): every row
    length class, one or more rows per output element, on one thread and on two (a large call
    splits its outputs), the result bits the same for both."""
    rng = np.random.RandomState(5)
    x = T.TensorType(dtype, shape=(None,) * 4)("x")
    outs = [T.sum(x, axis=axis) for axis in _SUM_AXES] + [T.mean(x, axis=(0, 2, 3))]
    calls = [[rng.randn(*shape).astype(dtype)] for shape in _ROW_SHAPES]
    calls.append([rng.randn(4, 16, 24, 40).astype(dtype)])   # 61k values: the outputs go to both threads
    results = {}
    for nthreads in (1, 2):
        monkeypatch.setattr(symcnn.config, "num_threads", nthreads)
        fn, results[nthreads] = check_native_vs_reference([x], outs, None, calls=calls, rtol=1e-5, atol=1e-5)
        assert "reduce_vt_sum" in fn.runner.ir
    assert "symcnn_reduce_sums" in fn.runner.ir
    for one, two in zip(results[1], results[2]):
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


def _special_values(rng, dtype, shape, every):
    """_tied_values with about one value in `every` a NaN, +inf or -inf, and rows of -inf; integers:
    the dtype's largest and smallest values, and rows of the smallest."""
    v = _tied_values(rng, dtype, shape)
    if not dtype.startswith("float"):
        v = v.astype(dtype) if dtype.startswith("int") else (v - v.min()).astype(dtype)
        info = np.iinfo(dtype)
        specials = (info.max, info.min)
    else:
        specials = (np.nan, np.inf, -np.inf)
    flat = v.reshape(-1)
    for special in specials:
        flat[rng.randint(0, flat.size, size=max(1, flat.size // every))] = special
    v[..., 0, :] = specials[-1]   # whole rows of the lowest value
    return v


_VECTOR_MAX_DTYPES = ["float32", "float64", "int32", "int64", "uint32", "uint64"]


@pytest.mark.parametrize("dtype", _VECTOR_MAX_DTYPES)
def test_vector_maxima_match_reference_for_rows_of_every_length(dtype, target, monkeypatch):
    """Float and 32/64-bit integer maxima whose innermost reduced axis runs along memory
    (kernels/row_max.py): every row length class, one or more rows per output element, on one thread
    and on two; values with ties, NaNs (numpy's max is NaN then), infinities and rows of -inf, or the
    integer type's extremes and rows of its smallest value."""
    rng = np.random.RandomState(6)
    x = T.TensorType(dtype, shape=(None,) * 4)("x")
    outs = [T.max(x, axis=axis) for axis in _SUM_AXES]

    def values(shape):
        v = _special_values(rng, dtype, shape, 50)
        if not dtype.startswith("float"):
            return v
        return v + rng.randn(*shape).astype(dtype) * (rng.rand() < 0.5)
    calls = [[values(shape)] for shape in _ROW_SHAPES]
    calls.append([values((4, 16, 24, 40))])   # 61k values: the outputs go to both threads
    results = {}
    for nthreads in (1, 2):
        monkeypatch.setattr(symcnn.config, "num_threads", nthreads)
        fn, results[nthreads] = check_native_vs_reference([x], outs, None, calls=calls, rtol=0, atol=0)
        assert "reduce_vt_max" in fn.runner.ir
    for one, two in zip(results[1], results[2]):
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", _VECTOR_MAX_DTYPES)
def test_vector_argmax_matches_reference_for_rows_of_every_length(dtype, target, monkeypatch):
    """Float and 32/64-bit integer argmax over the last axes (kernels/row_max.py's RowArgmax): every
    row length class, on one thread and on two; ties (the first index wins), NaNs (the first NaN's
    index), infinities, rows of -inf and of equal values, or the integer type's extremes and rows of
    its smallest value."""
    rng = np.random.RandomState(7)
    x = T.TensorType(dtype, shape=(None,) * 4)("x")
    outs = [T.argmax(x, axis=axis) for axis in [(3,), (2, 3), (1, 2, 3), (0, 1, 2, 3)]]

    def values(shape):
        v = _special_values(rng, dtype, shape, 60)
        v[..., -1, :] = 1.5 if dtype.startswith("float") else 3      # rows of one value
        return v
    calls = [[values(shape)] for shape in _ROW_SHAPES]
    calls.append([values((4, 16, 24, 40))])   # the outputs go to both threads
    for nthreads in (1, 2):
        monkeypatch.setattr(symcnn.config, "num_threads", nthreads)
        fn, _ = check_native_vs_reference([x], outs, None, calls=calls, rtol=0, atol=0)
        assert "reduce_vt_argmax" in fn.runner.ir


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_totals_of_whole_arrays_by_chunks(dtype, target, monkeypatch):
    """A sum or max of all of a contiguous array (reduce._chunked_total): one chunk, a chunk and a
    tail, many chunks (on the threads from 2 * TOTAL_CHUNK values on), an empty array's sum; the
    same bits on 1, 2 and 3 threads and the reference's values (maxima exactly; sums within float64
    rounding, NaN and infinities included)."""
    from codegen.kernels.reduce import TOTAL_CHUNK
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    rng = np.random.RandomState(8)
    x = T.TensorType(dtype, shape=(None, None))("x")
    outs = [T.sum(x), T.max(x), T.mean(x) if dtype != "int32" else T.sum(x, dtype="int64")]
    sizes = [(1, 7), (3, TOTAL_CHUNK // 3 + 1), (2, TOTAL_CHUNK + 5), (5, TOTAL_CHUNK - 1), (33, 4 * TOTAL_CHUNK // 33 + 7)]
    calls = []
    for shape in sizes:
        v = _special_values(rng, dtype, shape, 1 << 14)
        calls.append([v if not dtype.startswith("float") else v + rng.randn(*shape).astype(dtype)])
    results = {}
    for n in (1, 2, 3):
        monkeypatch.setattr(symcnn.config, "num_threads", n)
        fn, results[n] = check_native_vs_reference([x], outs, None, calls=calls, rtol=1e-6, atol=1e-6)
        assert "reduce_ck_max" in fn.runner.ir   # (integer sums keep the scalar walk)
        assert ("reduce_ck_sum" in fn.runner.ir) == dtype.startswith("float")
    for n in (2, 3):
        for one, other in zip(results[1], results[n]):
            for a, b in zip(one, other):
                np.testing.assert_array_equal(a, b)
    empty = symcnn.function([x], T.sum(x), mode="native")(np.zeros((0, 5), dtype))
    assert empty == 0


def test_vector_sums_are_float64_sums():
    """A float32 sum adds in float64 partials: values that cancel in float32 do not lose the rest."""
    x = T.fvector("x")
    f = symcnn.function([x], T.sum(x), mode="native")
    a = np.concatenate([np.full(64, 1e8, "float32"), np.ones(100, "float32"), np.full(64, -1e8, "float32")])
    assert f(a) == 100.0


@pytest.mark.parametrize("axis", [0, 1, (0, 2), (1,)])
def test_bounds_checked_walks(axis):
    rng = np.random.RandomState(11)
    x = T.tensor3("x")
    views = [x, x.dimshuffle(2, 0, 1), x[::2, :, ::-1]]
    outs = [op(v, axis=axis) for v in views for op in (T.sum, T.max, T.argmax, T.prod)]
    fn, _ = check_native_vs_reference([x], outs, [_tied_values(rng, "float32", (5, 4, 6))],
                                      rtol=1e-4, mode="boundscheck")
    assert "ret i32 11" in fn.runner.ir    # the accesses are checked
