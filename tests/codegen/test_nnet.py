"""Native Softmax vs the reference: vectors and matrices, float32/float64, stability."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet.basic import Softmax
from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)

SIZES = (1, 7, 17, 33)


def _mat(dtype):
    return T.dmatrix("x") if dtype == "float64" else T.fmatrix("x")


def _vec(dtype):
    return T.dvector("v") if dtype == "float64" else T.fvector("v")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", SIZES)
def test_softmax_matrix_random(dtype, rows, target):
    rng = np.random.RandomState(rows)
    x = _mat(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    calls = [[(rng.randn(rows, cols) * 3).astype(dtype)] for cols in SIZES]
    fn, res = check_native_vs_reference([x], T.nnet.softmax(x), None, calls=calls, rtol=rtol, atol=1e-7)
    for r in res:
        assert r.dtype == dtype
        np.testing.assert_allclose(r.sum(axis=1), 1, rtol=1e-5)
    assert any(isinstance(n.op, Softmax) for n in fn.fgraph.toposort())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_rows_on_the_threads(dtype, monkeypatch):
    """Rows of a run-time size: few in place, many on both threads (kernels/nnet.py's
    _parallel_softmax: the row sums in a fixed order, so the bits match one thread's), with
    special values in some rows."""
    rng = np.random.RandomState(3)
    x = _mat(dtype)
    calls = [[(rng.randn(*shape) * 3).astype(dtype)] for shape in [(3, 5), (40, 300), (257, 33)]]
    calls[1][0][7, 11], calls[1][0][9, 4], calls[1][0][12, 0] = np.inf, -np.inf, np.nan
    rtol = 1e-5 if dtype == "float32" else 1e-12
    results = {}
    for nthreads in (1, 2):
        monkeypatch.setattr(symcnn.config, "num_threads", nthreads)
        with np.errstate(invalid="ignore"):   # the reference's inf - inf in the row holding both
            fn, results[nthreads] = check_native_vs_reference([x], T.nnet.softmax(x), None, calls=calls, rtol=rtol,
                                                              atol=1e-7)
    ir_text = fn.dump_llvm()
    assert "symcnn_softmax" in ir_text
    assert "mg.head" in ir_text   # the row maxima in vectors (kernels/row_max.py)
    for one, two in zip(results[1], results[2]):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_vector(dtype):
    rng = np.random.RandomState(1)
    v = _vec(dtype)
    calls = [[(rng.randn(n) * 5).astype(dtype)] for n in SIZES]
    check_native_vs_reference([v], T.nnet.softmax(v), None, calls=calls, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_large_magnitudes_is_stable(dtype):
    rng = np.random.RandomState(2)
    x = _mat(dtype)
    xv = (rng.randn(17, 7) * 1e4).astype(dtype)
    xv[0] = 1e4           # all equal, large: uniform
    xv[1] = -1e4          # all equal, very negative: uniform, not 0/0
    xv[2, :] = [1e4, 1e4 - 1, -1e4, 0, 3e4, 3e4, -3e4]
    fn, (out,) = check_native_vs_reference([x], T.nnet.softmax(x), [xv], rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(out[1], 1 / 7, rtol=1e-6)
    np.testing.assert_allclose(out[2, 4:6], 0.5, rtol=1e-6)


def test_softmax_non_contiguous_input_and_composition():
    rng = np.random.RandomState(3)
    x = T.fmatrix("x")
    xv = rng.randn(17, 33).astype("float32")
    outs = [T.nnet.softmax(x.T), T.nnet.softmax(x[::2, 1::3]), T.nnet.softmax(x[3]), T.nnet.softmax(x * 2 + 1),
            T.log(T.nnet.softmax(x)).sum(axis=1)]
    check_native_vs_reference([x], outs, [xv], rtol=1e-5, atol=1e-6)


def test_softmax_special_values():
    x = T.dmatrix("x")
    xv = np.array([[0.0, np.inf, 1.0], [np.nan, 0.0, 1.0], [-np.inf, 0.0, 0.0], [-np.inf, -np.inf, 1.0]])
    with np.errstate(invalid="ignore"):
        check_native_vs_reference([x], T.nnet.softmax(x), [xv])


def test_softmax_empty_rows_and_columns():
    x = T.fmatrix("x")
    check_native_vs_reference([x], T.nnet.softmax(x), [np.zeros((0, 5), "float32")])
    check_same_error([x], T.nnet.softmax(x), [np.zeros((3, 0), "float32")], exc=ValueError)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_gradient(dtype):
    rng = np.random.RandomState(4)
    x = _mat(dtype)
    w = _mat(dtype)
    cost = (T.nnet.softmax(x) * w).sum()
    g = T.grad(cost, x)
    calls = [[rng.randn(n, 7).astype(dtype), rng.randn(n, 7).astype(dtype)] for n in SIZES]
    check_native_vs_reference([x, w], [cost, g], None, calls=calls, rtol=1e-5, atol=1e-6)


def test_softmax_in_training_step():
    """Logistic regression on a shared minibatch: softmax, NLL indexing, gradients, updates."""
    rng = np.random.RandomState(5)
    data_x = rng.randn(100, 17).astype("float32")
    data_y = rng.randint(0, 10, size=100).astype("int64")
    results = {}
    for mode in ("native", "reference"):
        sx, sy = symcnn.shared(data_x), symcnn.shared(data_y)
        W = symcnn.shared(np.zeros((17, 10), "float32"))
        b = symcnn.shared(np.zeros(10, "float32"))
        index = T.lscalar("index")
        x, y = T.fmatrix("x"), T.lvector("y")
        p = T.nnet.softmax(T.dot(x, W) + b)
        cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
        gW, gb = T.grad(cost, [W, b])
        f = symcnn.function([index], cost, updates=[(W, W - 0.13 * gW), (b, b - 0.13 * gb)],
                            givens={x: sx[index * 33:(index + 1) * 33], y: sy[index * 33:(index + 1) * 33]},
                            mode=mode)
        costs = [float(f(i)) for i in (0, 1, 2, 3, 0, 1)]
        results[mode] = costs, W.get_value(), b.get_value()
    for got, want in zip(results["native"], results["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert results["native"][0][4] < results["native"][0][0]


# -- LogSoftmax, SoftmaxGrad, CrossEntropySoftmax(Grad): the ops themselves, natively ----------

from symcnn.tensor.nnet.basic import (CrossEntropySoftmax, CrossEntropySoftmaxGrad, LogSoftmax,  # noqa: E402
                                      SoftmaxGrad, crossentropy_softmax, crossentropy_softmax_grad, log_softmax,
                                      softmax_grad)


def _np_log_softmax(a):
    a = np.asarray(a, dtype="float64")
    s = a - a.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _rtol(dtype):
    return 1e-5 if dtype == "float32" else 1e-12


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", SIZES)
def test_log_softmax_matrix_and_vector(dtype, rows, target):
    rng = np.random.RandomState(10 + rows)
    x, v = _mat(dtype), _vec(dtype)
    calls = [[(rng.randn(rows, cols) * 3).astype(dtype), (rng.randn(cols) * 3).astype(dtype)] for cols in SIZES]
    fn, res = check_native_vs_reference([x, v], [log_softmax(x), log_softmax(v)], None, calls=calls,
                                        rtol=_rtol(dtype), atol=1e-6)
    assert any(isinstance(n.op, LogSoftmax) for n in fn.fgraph.toposort())
    for (xv, vv), (ox, ov) in zip(calls, res):
        assert ox.dtype == dtype
        np.testing.assert_allclose(ox, _np_log_softmax(xv), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ov, _np_log_softmax(vv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_large_magnitudes_and_special_values(dtype):
    rng = np.random.RandomState(11)
    x = _mat(dtype)
    xv = (rng.randn(9, 7) * 1e4).astype(dtype)
    xv[0] = 1e4
    xv[1] = -1e4
    fn, ((out,),) = check_native_vs_reference([x], [log_softmax(x)], [xv], rtol=1e-5, atol=1e-3)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], -np.log(7), rtol=1e-6)
    np.testing.assert_allclose(out, _np_log_softmax(xv), rtol=1e-6, atol=1e-3)
    sv = np.array([[0.0, np.inf, 1.0], [np.nan, 0.0, 1.0], [-np.inf, 0.0, 0.0], [-np.inf, -np.inf, -np.inf]], dtype)
    with np.errstate(invalid="ignore"):
        check_native_vs_reference([x], [log_softmax(x)], [sv])


def test_log_softmax_non_contiguous_empty_and_errors():
    rng = np.random.RandomState(12)
    x = T.fmatrix("x")
    xv = rng.randn(17, 33).astype("float32")
    check_native_vs_reference([x], [log_softmax(x.T), log_softmax(x[::2, 1::3]), log_softmax(x[3]) * 2],
                              [xv], rtol=1e-5, atol=1e-5)
    check_native_vs_reference([x], log_softmax(x), [np.zeros((0, 5), "float32")])
    check_same_error([x], log_softmax(x), [np.zeros((3, 0), "float32")], exc=ValueError)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_grad_op(dtype):
    rng = np.random.RandomState(13)
    dy, sm = _mat(dtype), _mat(dtype)
    dv, sv = _vec(dtype), _vec(dtype)
    calls = [[rng.randn(r, c).astype(dtype), rng.rand(r, c).astype(dtype), rng.randn(c).astype(dtype),
              rng.rand(c).astype(dtype)] for r, c in [(1, 1), (7, 3), (17, 10), (33, 17), (0, 4)]]
    outs = [softmax_grad(dy, sm), softmax_grad(dv, sv), softmax_grad(dy.T, sm.T)]
    fn, res = check_native_vs_reference([dy, sm, dv, sv], outs, None, calls=calls, rtol=1e-5, atol=1e-6)
    assert any(isinstance(n.op, SoftmaxGrad) for n in fn.fgraph.toposort())
    for (a, p, _, _), (o, _, _) in zip(calls, res):
        a, p = a.astype("float64"), p.astype("float64")
        np.testing.assert_allclose(o, p * (a - (a * p).sum(axis=1, keepdims=True)), rtol=1e-5, atol=1e-6)


def test_softmax_grad_mixed_dtypes_and_shape_mismatch():
    rng = np.random.RandomState(14)
    dy, sm = T.dmatrix("dy"), T.fmatrix("sm")
    out = softmax_grad(dy, sm)
    assert out.dtype == "float64"
    check_native_vs_reference([dy, sm], out, [rng.randn(5, 3), rng.rand(5, 3).astype("float32")], rtol=1e-12)
    check_same_error([dy, sm], out, [rng.randn(5, 3), rng.rand(5, 4).astype("float32")], exc=ValueError)


def _labels(rng, n, c, dtype="int32"):
    return rng.randint(0, c, size=n).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,classes,n_labels", [(1, 1, 1), (7, 3, 7), (17, 10, 11), (33, 13, 33), (6, 4, 0)])
def test_crossentropy_softmax_op(dtype, rows, classes, n_labels, target):
    rng = np.random.RandomState(rows * 100 + classes)
    z, y = _mat(dtype), T.ivector("y")
    g = T.vector("g", dtype=dtype)
    zv = (rng.randn(rows, classes) * 3).astype(dtype)
    yv = _labels(rng, n_labels, classes)
    gv = rng.randn(n_labels).astype(dtype)
    outs = [crossentropy_softmax(z, y), crossentropy_softmax_grad(g, z, y)]
    fn, ((loss, grad),) = check_native_vs_reference([g, z, y], outs, [gv, zv, yv], rtol=_rtol(dtype), atol=1e-6)
    types = [type(n.op) for n in fn.fgraph.toposort()]
    assert CrossEntropySoftmax in types and CrossEntropySoftmaxGrad in types
    ls = _np_log_softmax(zv)
    np.testing.assert_allclose(loss, -ls[np.arange(n_labels), yv], rtol=1e-5, atol=1e-6)
    want = np.zeros((rows, classes))
    onehot = np.eye(classes)[yv]
    want[:n_labels] = gv[:, None] * (onehot - np.exp(ls[:n_labels]))
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    assert not np.any(grad[n_labels:])


def test_crossentropy_softmax_labels_negative_dtypes_and_strides():
    rng = np.random.RandomState(15)
    z = T.dmatrix("z")
    zv = rng.randn(9, 6)
    for ydt in ("int8", "int16", "int32", "int64", "uint8", "uint32"):
        y = T.vector("y", dtype=ydt)
        yv = _labels(rng, 9, 6, ydt)
        if not ydt.startswith("u"):
            yv[::2] -= 6  # -6 <= label < 0 counts from the end
        check_native_vs_reference([z, y], [crossentropy_softmax(z, y), crossentropy_softmax_grad(
            T.constant(np.float64(0.5)), z, y)], [zv, yv], rtol=1e-12)
    y = T.lvector("y")
    check_native_vs_reference([z, y], [crossentropy_softmax(z.T, y), crossentropy_softmax(z[::2, 1:], y[::2]),
                                       crossentropy_softmax_grad(T.exp(y[1:3] * 0.5), z[::2], y[1:3])],
                              [zv, _labels(rng, 6, 5, "int64")], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_crossentropy_softmax_large_logits(dtype):
    rng = np.random.RandomState(16)
    z, y, g = _mat(dtype), T.ivector("y"), T.vector("g", dtype=dtype)
    zv = (rng.randn(9, 7) * 1e4).astype(dtype)
    zv[0] = [1e4, 1e4, -1e4, 0, 3e4, 3e4, -3e4]
    zv[1] = -1e4
    yv = np.array([0, 3, 1, 2, 6, 5, 4, 0], "int32")
    gv = np.full(8, -1 / 8, dtype)
    fn, ((loss, grad),) = check_native_vs_reference(
        [g, z, y], [crossentropy_softmax(z, y), crossentropy_softmax_grad(g, z, y)], [gv, zv, yv],
        rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    ls = _np_log_softmax(zv)
    np.testing.assert_allclose(loss, -ls[np.arange(8), yv], rtol=1e-6)
    np.testing.assert_allclose(loss[0], 3e4 - 1e4 + np.log(2), rtol=1e-6)
    np.testing.assert_allclose(loss[1], np.log(7), rtol=1e-6)


def test_crossentropy_softmax_grad_broadcasts_one_value():
    rng = np.random.RandomState(17)
    z, y = T.dmatrix("z"), T.ivector("y")
    zv, yv = rng.randn(5, 3), np.array([2, 0, 1, 1], "int32")
    g1 = T.TensorType("float64", shape=(1,))("g1")   # statically one value
    gd = T.dvector("gd")                              # one value at run time
    gs = T.dscalar("gs")
    outs = [crossentropy_softmax_grad(g1, z, y), crossentropy_softmax_grad(gd, z, y),
            crossentropy_softmax_grad(gs, z, y)]
    fn, ((a, b, c),) = check_native_vs_reference([g1, gd, gs, z, y], outs,
                                                 [np.array([0.25]), np.array([0.25]), 0.25, zv, yv], rtol=1e-12)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c)
    # neither one value nor one per label
    check_same_error([gd, z, y], crossentropy_softmax_grad(gd, z, y), [np.ones(3), zv, yv], exc=ValueError)


@pytest.mark.parametrize("bad", [3, -4, 127])
def test_crossentropy_softmax_label_out_of_range(bad):
    z, y = T.fmatrix("z"), T.bvector("y")
    zv = np.zeros((4, 3), "float32")
    yv = np.array([0, bad, 1], "int8")
    nat, ref = check_same_error([z, y], crossentropy_softmax(z, y), [zv, yv], exc=IndexError)
    assert str(bad) in nat and str(bad) in ref
    check_same_error([z, y], crossentropy_softmax_grad(T.constant(np.float32(1)), z, y), [zv, yv], exc=IndexError)


def test_crossentropy_softmax_shape_errors():
    z, y = T.fmatrix("z"), T.ivector("y")
    outs = crossentropy_softmax(z, y)
    # more labels than rows: row index 2 is out of range
    check_same_error([z, y], outs, [np.zeros((2, 3), "float32"), np.zeros(3, "int32")], exc=IndexError)
    check_same_error([z, y], crossentropy_softmax_grad(T.constant(np.float32(1)), z, y),
                     [np.zeros((2, 3), "float32"), np.zeros(3, "int32")], exc=IndexError)
    # no classes
    check_same_error([z, y], outs, [np.zeros((2, 0), "float32"), np.zeros(1, "int32")], exc=ValueError)
    check_native_vs_reference([z, y], outs, [np.zeros((0, 0), "float32"), np.zeros(0, "int32")])
    check_native_vs_reference([z, y], outs, [np.zeros((3, 4), "float32"), np.zeros(0, "int32")])


def test_fused_nll_in_debug_mode():
    """mode='debug' re-checks every native node (the fused ones too) against its reference."""
    rng = np.random.RandomState(18)
    z, y = T.fmatrix("z"), T.ivector("y")
    cost = -T.mean(T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y])
    fn = symcnn.function([z, y], [cost, T.grad(cost, z)], mode="debug")
    types = [type(n.op) for n in fn.fgraph.toposort()]
    assert CrossEntropySoftmax in types and CrossEntropySoftmaxGrad in types
    fn(rng.randn(13, 10).astype("float32"), rng.randint(0, 10, size=11).astype("int32"))
