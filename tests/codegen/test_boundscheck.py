"""mode='boundscheck': every element access through Array (load/store/addr/flat_addr,
load_scalar, copy) is checked against the extent of the allocation it points into.
Correct kernels never trip it (same results as native); a deliberately broken one does."""
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from codegen import irutil as U
from codegen import lower as L
from codegen.build import build_module
from symcnn.layers import MLP, LogisticRegression
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.math import Sum


def _here():
    return sys._getframe(1).f_lineno


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except Exception as e:  # noqa: BLE001  (compared across modes)
        return ("raised", type(e), str(e))


def _same_outcome(a, b):
    assert a[0] == b[0], (a, b)
    if a[0] == "raised":
        assert a[1] is b[1], (a, b)
        assert "out-of-bounds" not in a[2] and "out-of-bounds" not in b[2]
    else:
        outs_a = a[1] if isinstance(a[1], list) else [a[1]]
        outs_b = b[1] if isinstance(b[1], list) else [b[1]]
        for u, v in zip(outs_a, outs_b):
            _same(u, v)


# -- LeNet-style minibatches through givens over a shared dataset -------------------------------

N, BS, N_IN, N_OUT = 50, 20, 12, 4   # batches 0, 1 full; 2 short (10 rows); 3, 4 empty


def _dataset(bad_label=False):
    rng = np.random.RandomState(0)
    xs = rng.rand(N, N_IN).astype("float32")
    ys = rng.randint(0, N_OUT, N).astype("int32")
    if bad_label:
        ys[23] = N_OUT  # one label past the last class
    return theano.shared(xs, name="train_x"), theano.shared(ys, name="train_y")


def _logreg_fns(mode, reshape=False, bad_label=False):
    dx, dy = _dataset(bad_label)
    index = T.lscalar("index")
    x, y = T.matrix("x"), T.ivector("y")
    inp = x.reshape((BS, N_IN)) if reshape else x  # a graph that cannot take a short batch
    clf = LogisticRegression(inp, N_IN, N_OUT)
    cost = clf.negative_log_likelihood(y)
    params = clf.params
    grads = T.grad(cost, params)
    givens = {x: dx[index * BS:(index + 1) * BS], y: dy[index * BS:(index + 1) * BS]}
    train = theano.function([index], cost, updates=[(p, p - 0.13 * g) for p, g in zip(params, grads)],
                            givens=givens, mode=mode)
    test = theano.function([index], [clf.errors(y), clf.p_y_given_x], givens=givens, mode=mode)
    return train, test, params


def _mlp_fns(mode):
    dx, dy = _dataset()
    index = T.lscalar("index")
    x, y = T.matrix("x"), T.ivector("y")
    clf = MLP(np.random.RandomState(1234), x, N_IN, 9, N_OUT)
    cost = clf.negative_log_likelihood(y) + 0.001 * clf.L1 + 0.0001 * clf.L2_sqr
    grads = T.grad(cost, clf.params)
    givens = {x: dx[index * BS:(index + 1) * BS], y: dy[index * BS:(index + 1) * BS]}
    train = theano.function([index], cost, updates=[(p, p - 0.01 * g) for p, g in zip(clf.params, grads)],
                            givens=givens, mode=mode)
    test = theano.function([index], clf.errors(y), givens=givens, mode=mode)
    return train, test, clf.params


@pytest.mark.parametrize("make", [_logreg_fns, _mlp_fns], ids=["logreg", "mlp"])
def test_minibatch_givens_including_short_and_empty_batches(make):
    runs = {}
    for mode in ("native", "boundscheck"):
        train, test, params = make(mode)
        log = []
        for epoch in range(2):
            for i in range(5):  # 2 and up run past the end of the dataset
                log.append(_outcome(train, i))
                log.append(_outcome(test, i))
        runs[mode] = (log, [p.get_value() for p in params])
    for a, b in zip(runs["native"][0], runs["boundscheck"][0]):
        _same_outcome(a, b)
    for a, b in zip(runs["native"][1], runs["boundscheck"][1]):
        _same(a, b)
    if make is _logreg_fns:  # test(2) saw the short batch (rows 40..49), test(3) an empty one
        short, empty = runs["boundscheck"][0][2 * 2 + 1], runs["boundscheck"][0][2 * 3 + 1]
        assert short[0] == "ok" and short[1][1].shape == (10, N_OUT)
        assert empty[0] == "ok" and empty[1][1].shape == (0, N_OUT)


def test_graph_that_needs_a_full_batch_raises_on_the_short_one():
    train, test, params = _logreg_fns("boundscheck", reshape=True)
    train(0)
    train(1)
    before = [p.get_value().copy() for p in params]
    with pytest.raises(ValueError) as info:
        train(2)  # 10 rows cannot be reshaped to (20, 12)
    assert "reshape" in str(info.value) and "out-of-bounds" not in str(info.value)
    for p, old in zip(params, before):
        _same(p.get_value(), old)


def test_out_of_range_label_raises_index_error_before_any_access():
    for mode in ("native", "boundscheck"):
        train, test, params = _logreg_fns(mode, bad_label=True)
        train(0)
        before = [p.get_value().copy() for p in params]
        with pytest.raises(IndexError) as info:
            train(1)  # rows 20..39 hold the label N_OUT
        msg = str(info.value)
        assert f"index {N_OUT} is out of bounds for" in msg and str(N_OUT) in msg, msg
        assert "out-of-bounds load" not in msg and "out-of-bounds" not in msg.split("index")[0]
        for p, old in zip(params, before):
            _same(p.get_value(), old)


# -- every instrumented node kind: same results as native, no E_OOB --------------------------------

def _kitchen_sink():
    x = T.matrix("x")
    v = T.vector("v")
    idx = T.ivector("idx")
    i = T.lscalar("i")
    W = theano.shared(np.arange(20, dtype="float64").reshape(5, 4) / 7, name="W")
    xt = x.T
    outs = [
        x + v, x * 2 - 1, T.switch(x > 0, x, v.dimshuffle("x", 0)), T.maximum(x, 0.5), T.exp(xt) / 3,
        xt, v.dimshuffle("x", 0), x.dimshuffle(1, "x", 0) * 1,
        x.reshape((4, -1)), xt.reshape((-1,)), T.flatten(xt), T.flatten(x[:, 1:3]),
        x.shape, x.shape[0], T.arange(i), T.arange(i, 0, -1) * 2,
        x.sum(axis=0), xt.sum(axis=1), T.max(x, axis=1), T.argmax(xt, axis=0), x[::2].sum(), x.sum(),
        T.mean(x[1:], axis=0),
        T.dot(x, xt), T.dot(x, v), T.dot(v, xt), T.dot(v, v), T.dot(xt[::2], x),
        T.nnet.softmax(x), T.nnet.softmax(v), T.nnet.softmax(xt[1:]),
        x[1:4], x[::-1, 1], x[i], x[-1, ::2], x[i:], x[:, 1:3], x[i:i + 2, ::-2], x[i * 2:(i + 1) * 2],
        T.inc_subtensor(x[1:3], v), T.set_subtensor(x[:, 0], 1.0), T.inc_subtensor(xt[::2, i], 5.0),
        x[idx], x[idx, idx], v[idx], T.inc_subtensor(x[idx], v), T.set_subtensor(v[idx], 0.0),
        T.inc_subtensor(x[idx, :], 1.0), x[:, idx],
        T.cast(x, "int32") // 2, T.cast(x * 10, "int64") % 3,
    ]
    return [x, v, idx, i], outs, W


def test_every_node_kind_matches_native():
    rng = np.random.RandomState(3)
    calls = []
    for n_rows in (5, 7):
        xv = rng.randn(n_rows, 4).astype("float32")
        vv = rng.randn(4).astype("float32")
        for iv in (0, 2, -2, 3):
            calls.append([xv, vv, np.array([0, -1, 2, 2], dtype="int32"), np.int64(iv)])
    calls.append([xv[:5], vv, np.array([0, 9], dtype="int32"), np.int64(0)])  # bad idx
    calls.append([xv[:5], vv, np.array([0, 1], dtype="int32"), np.int64(9)])  # bad i
    fns = {}
    for mode in ("native", "boundscheck"):
        ins, outs, W = _kitchen_sink()
        fns[mode] = (theano.function(ins, outs, updates=[(W, W + ins[0][:, :4].sum() * W)], mode=mode), W)
    assert "ret i32 11" in fns["boundscheck"][0].dump_llvm()
    assert "ret i32 11" not in fns["native"][0].dump_llvm()
    for vals in calls:
        a = _outcome(fns["native"][0], *vals)
        b = _outcome(fns["boundscheck"][0], *vals)
        _same_outcome(a, b)
        _same(fns["native"][1].get_value(), fns["boundscheck"][1].get_value())
    assert sum(1 for vals in calls if _outcome(fns["boundscheck"][0], *vals)[0] == "raised") == 2


def test_empty_arrays_and_views_of_them():
    x = T.matrix("x")
    i = T.lscalar("i")
    outs = [x[i:], x[:, i:], x.sum(axis=0), x.T * 2, x[i:i], T.flatten(x.T)]
    fns = {m: theano.function([x, i], outs, mode=m) for m in ("native", "boundscheck")}
    for shape in ((0, 3), (3, 0), (0, 0)):
        for iv in (0, 1, 5):
            xv = np.ones(shape, dtype="float32")
            _same_outcome(_outcome(fns["native"], xv, np.int64(iv)),
                          _outcome(fns["boundscheck"], xv, np.int64(iv)))


def test_no_checks_are_emitted_when_off():
    x = T.matrix("x")
    f = theano.function([x], (x[1:] * 2).sum(axis=0), mode="native")
    plain = build_module(f.fgraph, []).ir_text
    assert build_module(f.fgraph, [], bounds_check=False).ir_text == plain
    assert "ret i32 11" in build_module(f.fgraph, [], bounds_check=True).ir_text
    assert L.bounds_checker() is None  # the checker is only active during a checked build


# -- a deliberately broken lowering is caught ---------------------------------------------------------

def _off_by_one_sum(ctx, node, ins):
    """sum(x) for a vector x that reads x[0..n] inclusive: one element past the end."""
    b = ctx.b
    x, = ins
    out = ctx.alloc(node.outputs[0], [])
    acc = ctx.local(U.F64, U.const("float64", 0.0))
    with U.for_range(b, U.add(b, x.shape[0], 1)) as k:  # BUG: <= n
        v = U.cast_value(b, x.load(b, [k]), x.dtype, "float64")
        b.store(b.fadd(b.load(acc, typ=U.F64), v), acc)
    out.store(b, [], U.cast_value(b, b.load(acc, typ=U.F64), "float64", out.dtype))
    return [out]


def test_broken_kernel_reading_past_the_end_is_caught(monkeypatch):
    monkeypatch.setitem(L.lower.table, Sum, (_off_by_one_sum, None))
    x = T.vector("x")
    s = x.sum(); line = _here()  # noqa: E702
    f = theano.function([x], s * 2, mode="boundscheck")
    with pytest.raises(IndexError) as info:
        f(np.arange(5, dtype="float32"))
    msg = str(info.value)
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "out-of-bounds load at element 5 of graph input 0 (x), which has 5 elements" in msg, msg


def test_broken_kernel_on_a_view_is_checked_against_the_base(monkeypatch):
    monkeypatch.setitem(L.lower.table, Sum, (_off_by_one_sum, None))
    x = T.vector("x")
    t = x[2:]
    s = t.sum(); line = _here()  # noqa: E702
    f = theano.function([x], s, mode="boundscheck")
    with pytest.raises(IndexError) as info:
        f(np.arange(6, dtype="float32"))
    msg = str(info.value)
    assert msg.startswith(f"{__file__}:{line}:") and "element 6 of graph input 0 (x), which has 6" in msg, msg
    # a view that stops short of the end reads inside the allocation: not an error (but wrong)
    f2 = theano.function([x], x[1:4].sum(), mode="boundscheck")
    assert float(f2(np.arange(6, dtype="float32"))) == 1 + 2 + 3 + 4


def test_broken_kernel_writing_past_the_end_is_caught(monkeypatch):
    original = L.lower.table[Elemwise]

    def writes_one_more(ctx, node, ins):
        outs = original[0](ctx, node, ins)
        o = outs[0]
        if o.ndim == 1:  # BUG: also writes out[n]
            o.store(ctx.b, [o.shape[0]], U.const(o.dtype, 0))
        return outs

    monkeypatch.setitem(L.lower.table, Elemwise, (writes_one_more, original[1]))
    x = T.vector("x")
    y = T.exp(x); line = _here()  # noqa: E702
    f = theano.function([x], y, mode="boundscheck")
    with pytest.raises(IndexError) as info:
        f(np.zeros(3, dtype="float32"))
    msg = str(info.value)
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "out-of-bounds store at element 3 of the buffer of" in msg and "which has 3 elements" in msg, msg
