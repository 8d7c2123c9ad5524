"""The stabilize rewrites: log(softmax) -> LogSoftmax, and the tutorial's negative
log-likelihood of softmax with integer labels (forward and the gradient T.grad builds)
-> CrossEntropySoftmax / CrossEntropySoftmaxGrad.

Every check compares the native mode of the rewritten graph with the reference mode of the
unrewritten graph (the reference mode never rewrites), or, where the unrewritten graph
overflows, with a float64 numpy computation."""
import sys

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.layers import LogisticRegression
from symcnn.tensor.composite import Composite
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.nnet.basic import (CrossEntropySoftmax, CrossEntropySoftmaxGrad, LogSoftmax, Softmax,
                                      SoftmaxGrad)
from symcnn.tensor.subtensor import AdvancedIncSubtensor, AdvancedSubtensor

from tests.helpers import check_native_vs_reference, compile_both, rewritten

import symcnn.scalar as ts

NAMES = ("log_softmax", "crossentropy_softmax", "crossentropy_softmax_grad")


def fired(fn):
    return [r.rewrite for r in fn.rewrite_log]


def op_types(fn):
    return [type(n.op) for n in fn.fgraph.toposort()]


def has_scalar_op(fn, cls):
    """Some Elemwise (or a fused Composite) of the compiled graph applies scalar op `cls`."""
    for n in fn.fgraph.toposort():
        if not isinstance(n.op, Elemwise):
            continue
        sop = n.op.scalar_op
        if isinstance(sop, cls) or (isinstance(sop, Composite) and cls.__name__.lower() in str(n.op).lower()):
            return True
    return False


def divides_by_softmax(fn):
    for n in fn.fgraph.toposort():
        if isinstance(n.op, Elemwise) and isinstance(n.op.scalar_op, ts.TrueDiv):
            den = n.inputs[1]
            if den.owner is not None and isinstance(den.owner.op, Softmax):
                return True
    return False


def nll(z, y):
    return -T.mean(T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y])


def np_log_softmax(z):
    z = np.asarray(z, dtype="float64")
    s = z - z.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def np_nll_and_grad(z, y):
    """float64: mean NLL over the len(y) first rows and its gradient w.r.t. z."""
    z = np.asarray(z, dtype="float64")
    n = len(y)
    ls = np_log_softmax(z[:n])
    cost = -ls[np.arange(n), y].mean() if n else np.nan
    g = np.zeros_like(z)
    onehot = np.zeros_like(ls)
    onehot[np.arange(n), y] = 1
    g[:n] = (np.exp(ls) - onehot) / n
    return cost, g


RNG = np.random.RandomState(42)


# -- each rewrite fires on its pattern, can be excluded, and changes no result ------------------

def _tutorial(dtype, rows, classes, n_labels):
    z = T.matrix("z", dtype=dtype)
    y = T.ivector("y")
    cost = nll(z, y)
    g = T.grad(cost, z)
    zv = (RNG.randn(rows, classes) * 3).astype(dtype)
    yv = RNG.randint(0, classes, size=n_labels).astype("int32")
    return [z, y], [cost, g], [zv, yv]


@pytest.mark.parametrize("name", NAMES)
def test_rewrite_fires_and_can_be_excluded(name):
    inputs, outs, vals = _tutorial("float32", 7, 5, 7)
    fn, _ = check_native_vs_reference(inputs, outs, vals, rtol=1e-5, atol=1e-6)
    assert name in fired(fn), fn.rewrite_log
    without, _ = check_native_vs_reference(inputs, outs, vals, rtol=1e-5, atol=1e-6,
                                           mode=Mode("native", excluding=[name]))
    assert name not in fired(without)


def test_excluding_each_rewrite_leaves_the_others():
    inputs, outs, vals = _tutorial("float64", 6, 4, 6)
    fn = rewritten(inputs, outs, Mode("native", excluding=["log_softmax"]))
    # the forward rewrite also matches log(softmax(z)) itself
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))
    fn = rewritten(inputs, outs, Mode("native", excluding=["crossentropy_softmax"]))
    assert "crossentropy_softmax" not in fired(fn) and "crossentropy_softmax_grad" in fired(fn)
    assert AdvancedSubtensor in op_types(fn) and LogSoftmax in op_types(fn)
    fn = rewritten(inputs, outs, Mode("native", excluding=["crossentropy_softmax_grad"]))
    assert SoftmaxGrad in op_types(fn) and AdvancedIncSubtensor in op_types(fn)
    assert CrossEntropySoftmax in op_types(fn) and CrossEntropySoftmaxGrad not in op_types(fn)
    fn = rewritten(inputs, outs, Mode("native", excluding=["stabilize"]))
    assert not set(NAMES) & set(fired(fn))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_rewrite(dtype):
    x, v = T.matrix("x", dtype=dtype), T.vector("v", dtype=dtype)
    outs = [T.log(T.nnet.softmax(x)), T.log(T.nnet.softmax(v)) * 2, T.grad(T.log(T.nnet.softmax(x)).sum(), x)]
    xv = (RNG.randn(5, 7) * 4).astype(dtype)
    vv = RNG.randn(9).astype(dtype)
    fn, _ = check_native_vs_reference([x, v], outs, [xv, vv], rtol=1e-5, atol=1e-5)
    assert fired(fn).count("log_softmax") >= 2
    assert not has_scalar_op(fn, ts.Log)
    assert LogSoftmax in op_types(fn)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,classes,n_labels", [(1, 1, 1), (7, 3, 7), (17, 10, 17), (33, 13, 20), (9, 5, 0),
                                                   (5, 2, 3)])
def test_tutorial_cost_and_gradient_odd_sizes(dtype, rows, classes, n_labels):
    inputs, outs, vals = _tutorial(dtype, rows, classes, n_labels)
    fn, res = check_native_vs_reference(inputs, outs, vals, rtol=1e-5 if dtype == "float32" else 1e-10,
                                        atol=1e-6 if dtype == "float32" else 1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))
    cost, g = np_nll_and_grad(*vals)
    if n_labels:
        np.testing.assert_allclose(res[0][0], cost, rtol=1e-5)
    np.testing.assert_allclose(res[0][1], g, rtol=1e-4, atol=1e-6)
    # rows of z beyond len(y) get exactly zero gradient
    assert not np.any(res[0][1][n_labels:])


def test_negative_labels_count_from_the_end():
    inputs, outs, vals = _tutorial("float64", 6, 4, 6)
    vals[1] = np.array([-1, -4, 0, 3, -2, 2], "int32")
    fn, _ = check_native_vs_reference(inputs, outs, vals, rtol=1e-10, atol=1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))


@pytest.mark.parametrize("ydtype", ["int8", "int32", "int64", "uint8"])
def test_label_dtypes(ydtype):
    z = T.dmatrix("z")
    y = T.vector("y", dtype=ydtype)
    cost = nll(z, y)
    outs = [cost, T.grad(cost, z)]
    vals = [RNG.randn(5, 4), np.array([3, 0, 1, 1, 2], ydtype)]
    fn, _ = check_native_vs_reference([z, y], outs, vals, rtol=1e-10, atol=1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))


def test_constant_labels_after_constant_folding():
    """y constant: arange(y.shape[0]) folds into a constant [0, 1, ..., n-1], still matched."""
    z = T.dmatrix("z")
    y = T.constant(np.array([2, 0, 1], "int32"))
    cost = nll(z, y)
    outs = [cost, T.grad(cost, z)]
    fn, _ = check_native_vs_reference([z], outs, [RNG.randn(4, 3)], rtol=1e-10, atol=1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))
    assert "constant_folding" in fired(fn)


def test_static_length_labels_with_a_constant_row_count():
    """arange(3) with labels of static length 3 is arange(len(y))."""
    z = T.dmatrix("z")
    y = T.TensorType("int32", shape=(3,))("y")
    cost = -T.mean(T.log(T.nnet.softmax(z))[T.arange(3), y])
    outs = [cost, T.grad(cost, z)]
    fn, _ = check_native_vs_reference([z, y], outs, [RNG.randn(5, 4), np.array([3, 1, 0], "int32")],
                                      rtol=1e-10, atol=1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))


def test_weighted_selection_gradient():
    """Any gradient of the selected log-probabilities (here per-row weights) is gsel."""
    z, y, w = T.dmatrix("z"), T.ivector("y"), T.dvector("w")
    lp = T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y]
    cost = -(lp * w).sum() + 3 * lp[1]
    outs = [cost, T.grad(cost, z)]
    vals = [RNG.randn(6, 4), np.array([1, 3, 0, 2], "int32"), RNG.rand(4)]
    fn, _ = check_native_vs_reference([z, y, w], outs, vals, rtol=1e-10, atol=1e-12)
    assert {"crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))


# -- near misses: not rewritten, results unchanged ------------------------------------------------

def _near_miss_cases():
    z, y, k = T.dmatrix("z"), T.ivector("y"), T.lscalar("k")
    ls = T.log(T.nnet.softmax(z))
    n = y.shape[0]
    return [z, y, k], {
        "rows from another length": ls[T.arange(k), y],
        "rows start at 1": ls[T.arange(1, n + 1), y],
        "rows as arithmetic": ls[T.arange(1, n + 1) - 1, y],
        "step 2": ls[T.arange(0, n, 2), y[::2]],
        "index order swapped": ls[y, T.arange(n)],
        "rows are the labels": ls[y, y],
        "log of something else": T.log(T.nnet.softmax(z) * 2)[T.arange(n), y],
        "softmax of a vector": T.log(T.nnet.softmax(z[0]))[0][y],
    }


@pytest.mark.parametrize("case", sorted(_near_miss_cases()[1]))
def test_near_misses_are_not_rewritten(case):
    inputs, cases = _near_miss_cases()
    out = cases[case]
    cost = -out.mean()
    outs = [cost, T.grad(cost, inputs[0])]
    vals = [RNG.randn(6, 4), np.array([1, 3, 0, 2], "int32"), 4]
    fn, _ = check_native_vs_reference(inputs, outs, vals, rtol=1e-10, atol=1e-12, on_unused_input="ignore")
    assert "crossentropy_softmax" not in fired(fn) and "crossentropy_softmax_grad" not in fired(fn)
    assert CrossEntropySoftmax not in op_types(fn) and CrossEntropySoftmaxGrad not in op_types(fn)


def test_other_gradient_into_the_log_probabilities_keeps_the_backward_pattern():
    """cost also reads all of log(softmax(z)): the gradient into it is not a one-hot scatter,
    so only the forward part is fused."""
    z, y = T.dmatrix("z"), T.ivector("y")
    ls = T.log(T.nnet.softmax(z))
    cost = -T.mean(ls[T.arange(y.shape[0]), y]) - 0.1 * ls.mean()
    outs = [cost, T.grad(cost, z)]
    vals = [RNG.randn(6, 4), np.array([1, 3, 0, 2, 2, 1], "int32")]
    fn, _ = check_native_vs_reference([z, y], outs, vals, rtol=1e-10, atol=1e-12)
    assert "crossentropy_softmax" in fired(fn) and "crossentropy_softmax_grad" not in fired(fn)


def test_set_subtensor_is_not_a_scatter_add():
    z, y = T.dmatrix("z"), T.ivector("y")
    sm = T.nnet.softmax(z)
    rows = T.arange(y.shape[0])
    dy = T.set_subtensor(T.zeros_like(T.log(sm))[rows, y], -1.0) / sm
    out = T.nnet.softmax_grad(dy, sm)
    vals = [RNG.randn(5, 3), np.array([1, 2, 0, 0, 1], "int32")]
    fn, _ = check_native_vs_reference([z, y], out, vals, rtol=1e-10, atol=1e-12)
    assert "crossentropy_softmax_grad" not in fired(fn)


def test_statically_too_many_labels_is_left_to_fail_at_run_time():
    z = T.TensorType("float64", shape=(2, 3))("z")
    y = T.TensorType("int32", shape=(3,))("y")
    cost = nll(z, y)
    fn_native, fn_ref = compile_both([z, y], [cost, T.grad(cost, z)])
    assert "crossentropy_softmax" not in fired(fn_native)
    for fn in (fn_native, fn_ref):
        with pytest.raises(IndexError):
            fn(RNG.randn(2, 3), np.array([0, 1, 2], "int32"))


# -- errors keep numpy's semantics and name the user's line ---------------------------------------

@pytest.mark.parametrize("bad", [3, -4, 100])
def test_out_of_range_label_raises_index_error_at_the_users_line(bad):
    z, y = T.fmatrix("z"), T.ivector("y")
    cost = -T.mean(T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y])
    line = sys._getframe().f_lineno - 1
    g = T.grad(cost, z)
    fn_native, fn_ref = compile_both([z, y], [cost, g])
    assert CrossEntropySoftmax in op_types(fn_native)
    yv = np.array([0, 2, bad, 1], "int32")
    zv = RNG.randn(5, 3).astype("float32")
    for fn in (fn_native, fn_ref):
        with pytest.raises(IndexError) as info:
            fn(zv, yv)
        assert str(info.value).startswith(f"{__file__}:{line}:"), str(info.value)
        assert str(bad) in str(info.value)


def test_more_labels_than_rows_raises_index_error_at_the_users_line():
    z, y = T.dmatrix("z"), T.ivector("y")
    cost = -T.mean(T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y])
    line = sys._getframe().f_lineno - 1
    fn_native, fn_ref = compile_both([z, y], [cost, T.grad(cost, z)])
    assert CrossEntropySoftmax in op_types(fn_native)
    for fn in (fn_native, fn_ref):
        with pytest.raises(IndexError) as info:
            fn(RNG.randn(3, 4), np.array([0, 1, 2, 3], "int32"))
        assert str(info.value).startswith(f"{__file__}:{line}:"), str(info.value)


def test_no_classes_is_a_value_error_in_both_modes():
    z, y = T.dmatrix("z"), T.ivector("y")
    cost = nll(z, y)
    fn_native, fn_ref = compile_both([z, y], [cost, T.grad(cost, z)])
    assert CrossEntropySoftmax in op_types(fn_native)
    for fn in (fn_native, fn_ref):
        with pytest.raises(ValueError):
            fn(np.zeros((3, 0)), np.array([0, 0], "int32"))


# -- large logits: the unfused graph overflows, the fused one stays finite and right ---------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_logits_are_finite_and_right(dtype):
    z, y = T.matrix("z", dtype=dtype), T.ivector("y")
    cost = nll(z, y)
    outs = [cost, T.grad(cost, z)]
    zv = (RNG.randn(9, 5) * 1e4).astype(dtype)
    zv[0] = [1e4, -1e4, 3e4, 3e4, 0]
    zv[1] = -1e4
    yv = np.array([1, 3, 0, 4, 2, 1, 0, 3], "int32")  # one row fewer than z
    want_cost, want_g = np_nll_and_grad(zv, yv)
    fn_native, fn_ref = compile_both([z, y], outs)
    with np.errstate(all="ignore"):
        ref_cost, ref_g = fn_ref(zv, yv)
    # the unfused graph: log(0) = -inf for the underflowed probabilities, then 0/0 in the gradient
    assert not np.isfinite(ref_cost) and not np.all(np.isfinite(ref_g))
    got_cost, got_g = fn_native(zv, yv)
    assert np.isfinite(got_cost) and np.all(np.isfinite(got_g))
    assert got_cost.dtype == dtype and got_g.dtype == dtype
    np.testing.assert_allclose(got_cost, want_cost, rtol=1e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-7)
    assert not np.any(got_g[8])


def test_large_logits_log_softmax():
    x = T.fmatrix("x")
    xv = (RNG.randn(6, 7) * 1e4).astype("float32")
    fn = symcnn.function([x], T.log(T.nnet.softmax(x)), mode="native")
    assert "log_softmax" in fired(fn)
    got = fn(xv)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np_log_softmax(xv), rtol=1e-6, atol=1e-3)


# -- the tutorial's LogisticRegression, trained with SGD ------------------------------------------

def _train_logreg(mode, data_x, data_y, batch, steps, lr=0.13):
    sx = symcnn.shared(data_x, borrow=False)
    sy = symcnn.shared(data_y, borrow=False)
    index = T.lscalar("index")
    x, y = T.matrix("x"), T.ivector("y")
    clf = LogisticRegression(input=x, n_in=data_x.shape[1], n_out=10)
    cost = clf.negative_log_likelihood(y)
    g_W, g_b = T.grad(cost, [clf.W, clf.b])
    fn = symcnn.function([index], cost, updates=[(clf.W, clf.W - lr * g_W), (clf.b, clf.b - lr * g_b)],
                         givens={x: sx[index * batch:(index + 1) * batch], y: sy[index * batch:(index + 1) * batch]},
                         mode=mode)
    costs = [float(fn(i % (data_x.shape[0] // batch))) for i in range(steps)]
    grads = symcnn.function([index], [g_W, g_b], givens={x: sx[index * batch:(index + 1) * batch],
                                                           y: sy[index * batch:(index + 1) * batch]}, mode=mode)
    return fn, costs, clf.W.get_value(), clf.b.get_value(), grads(0)


def test_logistic_regression_training_matches_the_unrewritten_reference():
    rng = np.random.RandomState(7)
    data_x = rng.randn(100, 23).astype("float32")
    data_y = rng.randint(0, 10, size=100).astype("int32")
    fn, *native = _train_logreg("native", data_x, data_y, batch=33, steps=7)
    _, *ref = _train_logreg("reference", data_x, data_y, batch=33, steps=7)
    assert {"log_softmax", "crossentropy_softmax", "crossentropy_softmax_grad"} <= set(fired(fn))
    costs, W, b, (gW, gb) = native
    costs_r, W_r, b_r, (gW_r, gb_r) = ref
    np.testing.assert_allclose(costs, costs_r, rtol=1e-5)
    np.testing.assert_allclose(W, W_r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b, b_r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gW, gW_r, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb, gb_r, rtol=1e-4, atol=1e-6)
    assert costs[-1] < costs[0]


def test_logistic_regression_graph_is_fused():
    rng = np.random.RandomState(8)
    data_x = rng.randn(60, 11).astype("float32")
    data_y = rng.randint(0, 10, size=60).astype("int32")
    fn, *_ = _train_logreg("native", data_x, data_y, batch=20, steps=1)
    types = op_types(fn)
    assert CrossEntropySoftmax in types and CrossEntropySoftmaxGrad in types
    assert Softmax not in types and LogSoftmax not in types and SoftmaxGrad not in types
    assert AdvancedSubtensor not in types and AdvancedIncSubtensor not in types
    assert not has_scalar_op(fn, ts.Log), [str(n.op) for n in fn.fgraph.toposort()]
    assert not divides_by_softmax(fn)


def test_logistic_regression_unfused_graph_has_log_and_division():
    x, y = T.matrix("x"), T.ivector("y")
    clf = LogisticRegression(input=x, n_in=5, n_out=10)
    cost = clf.negative_log_likelihood(y)
    g_W, g_b = T.grad(cost, [clf.W, clf.b])
    fn = symcnn.function([x, y], [cost, g_W, g_b], mode=Mode("native", excluding=list(NAMES)))
    assert has_scalar_op(fn, ts.Log) and divides_by_softmax(fn)
    fn = symcnn.function([x, y], [cost, g_W, g_b], mode="native")
    assert not has_scalar_op(fn, ts.Log) and not divides_by_softmax(fn)
