"""Property-based tests: malformed calls raise TypeError / ValueError / IndexError (never crash,
never return garbage), in the reference and the native mode alike, and every message starts
with a file:line -- the user's line of the offending graph node for graph errors, the input's
creation line for bad arguments (the function() call's line when no input corresponds).

Valid corner cases next to the invalid ones (short and empty minibatches through givens,
in-range labels) must give numpy's results.
"""
import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.type import TensorType
from tests.helpers import assert_native_matches
from tests.fuzz.strategies import examples
from tests.helpers import here

MODES = ("reference", "native")
DTYPES = ("bool", "int8", "int32", "int64", "float32", "float64")


def expect_error(fn, args, exc, location, kwargs=None):
    """fn(*args) raises exc (exactly that family) with a message starting with location + ':'."""
    with pytest.raises(exc) as ei:
        fn(*args, **(kwargs or {}))
    assert isinstance(ei.value, exc)
    msg = str(ei.value)
    assert msg.startswith(location + ":"), f"message should start with {location!r}:\n{msg}"
    return msg


def _type(dtype, ndim, static=None):
    """The type only: the variable must be made on the test's own line (its creation line)."""
    return TensorType(dtype, shape=static if static is not None else (None,) * ndim)


def _value(rng, dtype, shape):
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rng.uniform(-2, 2, size=shape).astype(dtype)


def _out(x):
    """A float graph of any input (so the function uses every input)."""
    return T.sum(T.cast(x, "float64"))


inputs_st = st.lists(st.tuples(st.sampled_from(DTYPES), st.integers(0, 3)), min_size=0, max_size=3)


# -- arguments ----------------------------------------------------------------------------------------
@settings(max_examples=examples(8))
@given(inputs_st, st.integers(0, 5), st.sampled_from(["positional", "keyword"]), st.sampled_from(MODES),
       st.integers(0, 2 ** 31))
def test_wrong_number_of_arguments(specs, n_args, style, mode, seed):
    assume(n_args != len(specs) or style == "keyword")
    rng = np.random.default_rng(seed)
    xs = [_type(d, nd)(f"x{i}") for i, (d, nd) in enumerate(specs)]; loc_inputs = here()  # noqa: E702
    outs = [_out(x) for x in xs] or [T.constant(1.0)]
    f = symcnn.function(xs, outs, mode=mode); loc_fn = here()  # noqa: E702
    vals = [_value(rng, d, (2,) * nd) for d, nd in specs]
    if style == "keyword":
        # an unknown keyword, or one given twice
        if specs and n_args % 2:
            expect_error(f, vals, TypeError, loc_inputs, kwargs={"x0": vals[0]})
        else:
            expect_error(f, vals, TypeError, loc_fn, kwargs={"nope": 1})
        return
    args = (vals + [np.zeros(2)] * n_args)[:n_args]
    if n_args > len(specs):
        expect_error(f, args, TypeError, loc_fn)
    else:
        expect_error(f, args, TypeError, loc_inputs)   # the first missing input's creation line


@settings(max_examples=examples(10))
@given(st.sampled_from(DTYPES), st.sampled_from(DTYPES), st.integers(0, 3), st.sampled_from(MODES),
       st.integers(0, 2 ** 31))
def test_unsafe_dtype_is_refused(want, got, ndim, mode, seed):
    """float64 into float32, float into int, int into bool, ...: whatever numpy cannot cast safely."""
    assume(not np.can_cast(got, want, "safe"))
    rng = np.random.default_rng(seed)
    x = _type(want, ndim)("x"); loc = here()  # noqa: E702
    f = symcnn.function([x], _out(x), mode=mode)
    expect_error(f, [_value(rng, got, (3,) * ndim)], TypeError, loc)


@settings(max_examples=examples(6))
@given(st.sampled_from(("bool", "int8", "int32", "int64")), st.floats(-1e6, 1e6).filter(lambda v: v != int(v)),
       st.sampled_from(MODES))
def test_non_integral_python_float_into_int_input(want, value, mode):
    i = _type(want, 0)("i"); loc = here()  # noqa: E702
    f = symcnn.function([i], _out(i), mode=mode)
    expect_error(f, [value], TypeError, loc)


@settings(max_examples=examples(8))
@given(st.sampled_from(DTYPES), st.integers(0, 4), st.integers(0, 4), st.sampled_from(MODES))
def test_wrong_ndim_is_refused(dtype, ndim, got_ndim, mode):
    assume(ndim != got_ndim)
    x = _type(dtype, ndim)("x"); loc = here()  # noqa: E702
    f = symcnn.function([x], _out(x), mode=mode)
    expect_error(f, [np.zeros((2,) * got_ndim, dtype=dtype)], TypeError, loc)


# -- shapes against static shapes ----------------------------------------------------------------------
@settings(max_examples=examples(8))
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data(), st.sampled_from(MODES))
def test_value_contradicting_a_static_shape(shape, data, mode):
    d = data.draw(st.integers(0, len(shape) - 1))
    bad = list(shape)
    bad[d] = data.draw(st.integers(0, 6).filter(lambda n: n != shape[d]))
    x = _type("float64", len(shape), static=tuple(shape))("x"); loc = here()  # noqa: E702
    f = symcnn.function([x], _out(x), mode=mode)
    expect_error(f, [np.zeros(bad)], ValueError, loc)


@settings(max_examples=examples(8))
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 8), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(MODES))
def test_reshape_to_a_batch_with_a_different_batch(batch, h, got_batch, ch, w, mode):
    """x.reshape((batch, ch, h, w)) of a (got_batch, ch*h*w) matrix: numpy's result or a ValueError
    naming the reshape's line."""
    x = T.matrix("x", dtype="float64")
    y = x.reshape((batch, ch, h, w)); loc = here()  # noqa: E702
    f = symcnn.function([x], [y, T.sum(y, axis=(1, 2, 3))], mode=mode)
    value = np.random.default_rng(batch).uniform(size=(got_batch, ch * h * w))
    if got_batch != batch:
        expect_error(f, [value], ValueError, loc)
    else:
        got = f(value)
        assert_native_matches(got[0], value.reshape(batch, ch, h, w), 0, 0, "reshape")


@settings(max_examples=examples(8))
@given(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 6), st.integers(2, 6)),
       st.integers(0, 3), st.integers(1, 3), st.sampled_from(MODES), st.data())
def test_conv_input_shape_mismatch(shape, dim, delta, mode, data):
    """conv2d(input_shape=...) called with an input of another shape: a ValueError naming the conv line."""
    bad = list(shape)
    bad[dim] += delta
    static = tuple(s if data.draw(st.booleans()) or k == dim else None for k, s in enumerate(shape))
    x, w = T.dtensor4("x"), T.dtensor4("w")
    c = conv2d(x, w, input_shape=static, border_mode=data.draw(st.sampled_from(["valid", "half", "full"]))); loc = here()  # noqa: E702,E501
    f = symcnn.function([x, w], c, mode=mode)
    filt = np.ones((2, bad[1] if dim == 1 else shape[1], 2, 2))
    expect_error(f, [np.zeros(bad), filt], ValueError, loc)


# -- givens: minibatches past the end of a shared dataset ---------------------------------------------
@settings(max_examples=examples(8))
@given(st.integers(1, 12), st.integers(1, 5), st.integers(-3, 8), st.sampled_from(MODES))
def test_givens_minibatch_past_the_end(n_rows, batch, index, mode):
    """Numpy slicing semantics: a short or empty last batch where the graph allows it,
    an error naming the user's line where a static shape forbids it."""
    rng = np.random.default_rng(n_rows * 100 + batch)
    data = rng.uniform(-1, 1, size=(n_rows, 6)).astype("float32")
    labels = rng.integers(0, 3, size=n_rows).astype("int32")
    sx = symcnn.shared(data, name="sx")
    sy = symcnn.shared(labels, name="sy")
    i = T.lscalar("i")
    x, y = T.fmatrix("x"), T.ivector("y")
    p = T.nnet.softmax(x[:, :3])
    nll = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    givens = {x: sx[i * batch:(i + 1) * batch], y: sy[i * batch:(i + 1) * batch]}
    f = symcnn.function([i], [nll, x.sum(axis=0), T.cast(y.shape[0], "int64")], givens=givens, mode=mode)
    xb, yb = data[index * batch:(index + 1) * batch], labels[index * batch:(index + 1) * batch]
    note(f"batch rows {len(xb)}")
    got = f(index)
    e = np.exp(xb[:, :3] - xb[:, :3].max(axis=1, keepdims=True)) if len(xb) else np.zeros((0, 3), "float32")
    pb = e / e.sum(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        want_nll = np.float32(-np.mean(np.log(pb)[np.arange(len(yb)), yb])) if len(yb) else np.float32(np.nan)
    assert_native_matches(got[0], want_nll, 1e-5, 1e-6, "nll")
    assert_native_matches(got[1], xb.sum(axis=0), 1e-5, 1e-6, "sum")
    assert_native_matches(got[2], np.int64(len(xb)), 0, 0, "rows")

    # the same minibatch through a static batch size: the short/empty batch is refused at the reshape
    img = x.reshape((batch, 1, 2, 3)); loc = here()  # noqa: E702
    g = symcnn.function([i], T.sum(img), givens={x: sx[i * batch:(i + 1) * batch]}, mode=mode)
    if len(xb) != batch:
        expect_error(g, [index], ValueError, loc)
    else:
        assert_native_matches(g(index), xb.sum(dtype="float32"), 1e-5, 1e-6, "full batch")


@settings(max_examples=examples(8))
@given(st.integers(1, 5), st.integers(1, 4), st.data(), st.sampled_from(MODES))
def test_advanced_indexing_with_out_of_range_labels(rows, classes, data, mode):
    labels = data.draw(st.lists(st.integers(-classes - 3, classes + 3), min_size=rows, max_size=rows))
    x, y = T.dmatrix("x"), T.ivector("y")
    p = T.nnet.softmax(x)
    picked = p[T.arange(y.shape[0]), y]; loc = here()  # noqa: E702
    f = symcnn.function([x, y], [picked, T.grad(T.sum(T.log(picked)), x)], mode=mode)
    xv = np.random.default_rng(rows).uniform(size=(rows, classes))
    yv = np.asarray(labels, dtype="int32")
    if all(-classes <= v < classes for v in labels):
        e = np.exp(xv - xv.max(axis=1, keepdims=True))
        want = (e / e.sum(axis=1, keepdims=True))[np.arange(rows), yv]
        assert_native_matches(f(xv, yv)[0], want, 1e-9, 1e-12, "picked")
    else:
        expect_error(f, [xv, yv], IndexError, loc)


# -- updates ------------------------------------------------------------------------------------------------
@settings(max_examples=examples(8))
@given(st.integers(1, 5), st.integers(0, 7), st.booleans(), st.sampled_from(["arange", "reshape", "slice"]),
       st.sampled_from(MODES))
def test_update_that_changes_a_shared_variables_shape(n, new_n, first, how, mode):
    """Theano (and the reference) let an update change a shared variable's shape. A backend may
    do the same or refuse it; refusing must be a ValueError naming the update's line that leaves
    every shared variable unchanged -- never a partial commit or garbage."""
    assume(n != new_n)
    w = symcnn.shared(np.arange(n, dtype="float64"), name="w")
    b = symcnn.shared(np.ones(2), name="b")
    k = T.lscalar("k")
    if how == "arange":
        new_w = T.cast(T.arange(k), "float64") * 2.0; loc = here()  # noqa: E702
        want_w = np.arange(new_n) * 2.0
    elif how == "reshape":
        new_w = T.cast(T.arange(k), "float64").reshape((1, -1)).flatten() * 2.0; loc = here()  # noqa: E702
        want_w = np.arange(new_n) * 2.0
    else:
        new_w = w[:k] * 2.0; loc = here()  # noqa: E702
        want_w = np.arange(n, dtype="float64")[:new_n] * 2.0
    updates = [(b, b + 1.0), (w, new_w)] if first else [(w, new_w), (b, b + 1.0)]
    f = symcnn.function([k], T.sum(w), updates=updates, mode=mode)
    try:
        out = f(new_n)
    except ValueError as e:
        assert mode != "reference", f"the reference refused a shape-changing update: {e}"
        assert str(e).startswith(loc + ":"), f"message should start with {loc!r}:\n{e}"
        np.testing.assert_array_equal(w.get_value(), np.arange(n, dtype="float64"))
        np.testing.assert_array_equal(b.get_value(), [1.0, 1.0])
        return
    np.testing.assert_array_equal(out, np.arange(n).sum())          # outputs see the old values
    np.testing.assert_array_equal(w.get_value(), want_w)
    np.testing.assert_array_equal(b.get_value(), [2.0, 2.0])
    # the next call sees the new shape (and may change it back)
    np.testing.assert_array_equal(f(n), want_w.sum())
    np.testing.assert_array_equal(b.get_value(), [3.0, 3.0])
