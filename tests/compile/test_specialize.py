"""A function whose convolutions' sizes the graph leaves open is compiled again for its arguments'
sizes (symcnn/compile/specialize.py): the kernels of static sizes, the reference's results, the
general code where the sizes change past the limit, Theano's errors kept."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.compile import specialize
from symcnn.config import config
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.signal.pool import pool_2d

from tests.helpers import assert_close


@pytest.fixture(autouse=True)
def specialising(monkeypatch):
    monkeypatch.setattr(config, "specialize_shapes", True)   # the suite turns it off (tests/conftest.py)

# kernels that only static sizes take (few-tap, Winograd, direct, vectors over filters)
STATIC_KERNELS = re.compile(r'define internal void @"?symcnn_(fewtaps|wino|dconv|kvec)_')


def _net(rng, mode=None, filters=16):
    """A conv -> ReLU -> max-pool -> dense net on T.tensor4 images, no sizes given, one SGD step."""
    x, y = T.tensor4("x"), T.ivector("y")
    W = symcnn.shared((rng.standard_normal((filters, 3, 3, 3)) * 0.2).astype("float32"), name="W")
    V = symcnn.shared((rng.standard_normal((filters * 8 * 8, 10)) * 0.05).astype("float32"), name="V")
    h = pool_2d(T.maximum(conv2d(x, W, border_mode="half"), 0), (2, 2), ignore_border=True)
    p = T.nnet.softmax(T.dot(h.flatten(2), V))
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    gW, gV = T.grad(cost, [W, V])
    fn = symcnn.function([x, y], cost, updates=[(W, W - 0.1 * gW), (V, V - 0.1 * gV)], mode=mode)
    return fn, W, V


def _batch(rng, n):
    return rng.standard_normal((n, 3, 16, 16)).astype("float32"), rng.integers(0, 10, n).astype("int32")


def test_open_sizes_take_the_static_kernels_and_the_references_results():
    rng = np.random.default_rng(0)
    fn, W, V = _net(np.random.default_rng(1))
    ref, Wr, Vr = _net(np.random.default_rng(1), mode="reference")
    assert fn._specializer is not None
    for n in (8, 8, 5, 8):   # a smaller batch keeps the sizes that choose the code
        xv, yv = _batch(rng, n)
        assert_close(fn(xv, yv), ref(xv, yv), rtol=1e-4, atol=1e-5)
        assert_close(W.get_value(), Wr.get_value(), rtol=1e-4, atol=1e-5)
        assert_close(V.get_value(), Vr.get_value(), rtol=1e-4, atol=1e-5)
    assert len(fn._specializer.runners) == 1
    assert STATIC_KERNELS.search(fn.dump_llvm())   # the code of the last call


def test_turned_off_the_general_kernels_run(monkeypatch):
    monkeypatch.setattr(config, "specialize_shapes", False)
    fn, _, _ = _net(np.random.default_rng(1))
    assert fn._specializer is None
    fn(*_batch(np.random.default_rng(0), 4))
    assert not STATIC_KERNELS.search(fn.dump_llvm())


def test_new_sizes_compile_again_and_past_the_limit_run_the_general_code(monkeypatch):
    monkeypatch.setattr(specialize, "MAX_SPECIALISATIONS", 2)
    x = T.tensor4("x")
    W = symcnn.shared(np.ones((4, 2, 3, 3), dtype="float32"), name="W")
    out = conv2d(x, W)
    fn = symcnn.function([x], out)
    ref = symcnn.function([x], out, mode="reference")
    rng = np.random.default_rng(2)
    for hw in (7, 9, 7, 11):
        xv = rng.standard_normal((3, 2, hw, hw)).astype("float32")
        assert_close(fn(xv), ref(xv), rtol=1e-5, atol=1e-5)
    keys = fn._specializer.runners
    assert len(keys) == 2 and all(v is not None for v in keys.values())
    assert fn.runner is fn._runner   # 11x11: past the limit, the general code ran
    # a shared variable given other sizes: its own code, the new filters' results
    W.set_value(rng.standard_normal((6, 2, 5, 5)).astype("float32"))
    monkeypatch.setattr(specialize, "MAX_SPECIALISATIONS", 4)
    xv = rng.standard_normal((2, 2, 9, 9)).astype("float32")
    got = fn(xv)
    assert got.shape == (2, 6, 5, 5)
    assert_close(got, ref(xv), rtol=1e-5, atol=1e-5)


def test_sizes_of_one_stay_open_so_mismatches_are_still_errors():
    # b has one row: fixing it would make it broadcastable, and b + m with m of 3 rows would then
    # run; Theano (and the general code) refuses it
    x, m = T.tensor4("x"), T.matrix("m")
    W = symcnn.shared(np.ones((2, 1, 3, 3), dtype="float32"))
    b = symcnn.shared(np.ones((1, 5), dtype="float32"))
    fn = symcnn.function([x, m], [conv2d(x, W).sum(), b + m])
    xv = np.ones((1, 1, 4, 4), dtype="float32")
    got = fn(xv, np.ones((1, 5), dtype="float32"))
    assert_close(got[1], np.full((1, 5), 2.0))
    with pytest.raises(ValueError):
        fn(xv, np.ones((3, 5), dtype="float32"))


def test_graphs_without_open_convolution_sizes_are_not_specialised():
    x = T.matrix("x")
    W = symcnn.shared(np.ones((4, 3), dtype="float32"))
    assert symcnn.function([x], T.dot(x, W))._specializer is None
    x4 = T.tensor4("x4")
    W4 = symcnn.shared(np.ones((3, 2, 3, 3), dtype="float32"))
    assert symcnn.function([x4], conv2d(x4, W4), mode="reference")._specializer is None
    # every size the convolution reads is known but the batch: no second compile
    xs = T.tensor4("xs", shape=(None, 2, 6, 6))
    Ws = symcnn.shared(np.ones((3, 2, 3, 3), dtype="float32"), shape=(3, 2, 3, 3))
    # declared shapes count as much as types (the tutorial's layers: shared filters with filter_shape)
    x4b = T.tensor4("x4b")
    hinted = conv2d(x4b, W4, input_shape=(None, 2, 6, 6), filter_shape=(3, 2, 3, 3))
    for fn, arg in ((symcnn.function([xs], conv2d(xs, Ws)), xs), (symcnn.function([x4b], hinted), x4b)):
        got = fn(np.ones((2, 2, 6, 6), dtype="float32"))
        assert_close(got, np.full((2, 3, 4, 4), 18.0))
        assert fn._specializer is None
        assert fn.runner is fn._runner


@pytest.mark.parametrize("cache", ["empty", "off"])
def test_the_general_code_is_compiled_only_when_a_call_needs_it(cache, tmp_path, monkeypatch):
    import threading
    from codegen import jit
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / "cache") if cache == "empty" else "off")
    monkeypatch.setattr(specialize, "MAX_SPECIALISATIONS", 1)
    x = T.tensor4("x")
    W = symcnn.shared(np.random.default_rng(6).standard_normal((5, 2, 3, 3)).astype("float32"))
    out = T.tanh(conv2d(x, W, border_mode="half"))
    ref = symcnn.function([x], out, mode="reference")
    before = jit.compiles_started()
    fn = symcnn.function([x], out)
    assert fn.wait() is fn and jit.compiles_started() == before   # nothing compiled yet
    rng = np.random.default_rng(7)
    xv = rng.standard_normal((3, 2, 9, 9)).astype("float32")
    assert_close(fn(xv), ref(xv), rtol=1e-5, atol=1e-5)
    assert jit.compiles_started() == before + 1   # the sizes' code alone
    assert STATIC_KERNELS.search(fn.dump_llvm())
    # the same graph compiled meanwhile, without specialising: it does not wait for the lazy one
    monkeypatch.setattr(config, "specialize_shapes", False)
    other = symcnn.function([x], out)
    got = []
    t = threading.Thread(target=lambda: got.append(other(xv)), daemon=True)
    t.start()
    t.join(120)
    assert got and not t.is_alive()
    assert_close(got[0], ref(xv), rtol=1e-5, atol=1e-5)
    # other sizes past MAX_SPECIALISATIONS: the general code, compiled now
    n = jit.compiles_started()
    yv = rng.standard_normal((2, 2, 7, 6)).astype("float32")
    assert_close(fn(yv), ref(yv), rtol=1e-5, atol=1e-5)
    assert fn.runner is fn._runner and not STATIC_KERNELS.search(fn.dump_llvm())
    assert jit.compiles_started() == n + (cache == "off")   # with the cache: the other's code


def test_a_forked_child_and_other_threads_run_the_specialised_code():
    import os
    import threading
    x = T.tensor4("x")
    W = symcnn.shared(np.random.default_rng(4).standard_normal((8, 3, 3, 3)).astype("float32"))
    fn = symcnn.function([x], conv2d(x, W, border_mode="half"))
    xv = np.random.default_rng(5).standard_normal((4, 3, 10, 10)).astype("float32")
    want = fn(xv)
    assert fn.runner is not fn._runner   # the specialisation ran
    got = [None] * 3
    workers = [threading.Thread(target=lambda i=i: got.__setitem__(i, fn(xv))) for i in range(3)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, want)
    pid = os.fork()
    if pid == 0:   # the child: its own calls, then a new size compiled there
        try:
            ok = np.array_equal(fn(xv), want) and fn(np.ones((1, 3, 12, 12), dtype="float32")).shape == (1, 8, 12, 12)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@settings(max_examples=8, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_graphs_with_open_sizes_match_the_reference(data):
    """Convolutions drawn from the space (border modes, strides, filter sizes, channels and batch
    from 1, an activation, max pooling or none, float32 and float64, 1 or 2 threads), no sizes
    given: the specialised forward and gradients against the reference, on two batch sizes."""
    from symcnn.tensor.nnet import relu
    draw = data.draw
    dtype = draw(st.sampled_from(["float32", "float64"]))
    C, K, k = draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.sampled_from([1, 2, 3, 5]))
    H, W = draw(st.integers(k, 14)), draw(st.integers(k, 14))
    border = draw(st.sampled_from(["valid", "half", "full", 1, (2, 1)]))
    stride = draw(st.sampled_from([(1, 1), (2, 2), (1, 2)]))
    act = draw(st.sampled_from([T.tanh, relu, lambda z: z * 0.5, T.nnet.sigmoid]))
    pool = draw(st.booleans())
    batches = draw(st.lists(st.integers(1, 5), min_size=2, max_size=2))
    threads = draw(st.integers(1, 2))
    # images typed past the batch: function() compiles their sizes' code (else the first call does)
    typed = draw(st.booleans())
    x = T.tensor4("x", dtype=dtype, shape=(None, C, H, W) if typed else None)
    rng = np.random.default_rng(C * 100 + K * 10 + k)
    W_ = symcnn.shared(rng.standard_normal((K, C, k, k)).astype(dtype), name="W")
    z = act(conv2d(x, W_, border_mode=border, subsample=stride))
    if pool:
        z = pool_2d(z, (2, 2), ignore_border=True)
    cost = (z * z).sum()
    outs = [z, T.grad(cost, x), T.grad(cost, W_)]
    old = config.num_threads
    config.num_threads = threads
    try:
        fn = symcnn.function([x], outs)
        ref = symcnn.function([x], outs, mode="reference")
        for n in batches:
            xv = rng.standard_normal((n, C, H, W)).astype(dtype)
            try:
                want = ref(xv)
            except ValueError:   # (pooling of an output smaller than its window)
                with pytest.raises(ValueError):
                    fn(xv)
                continue
            tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float32" else dict(rtol=1e-8, atol=1e-8)
            for g, w in zip(fn(xv), want):
                assert_close(g, w, **tol)
    finally:
        config.num_threads = old
    assert fn._specializer is not None
    if min(C, K, k) > 1:   # every size of the filters and the images' channels learnt: own code
        assert any(r is not None for r in fn._specializer.runners.values())
        if typed:   # compiled by function(); the general graph never lowered
            assert fn._runner is None and fn._build is None and fn._lazy is None


@pytest.mark.parametrize("cache", ["empty", "off"])
def test_sizes_known_when_compiling_are_compiled_then(cache, tmp_path, monkeypatch):
    """Images typed past the batch (here through givens on shared data, as the tutorial feeds its
    minibatches) and shared filters without filter_shape: the filters' sizes come from their value,
    so function() compiles that code at once and never lowers the general graph unless a call needs
    it (filters of another size later: their own code)."""
    from codegen import jit
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / "cache") if cache == "empty" else "off")
    rng = np.random.default_rng(8)
    data = symcnn.shared(rng.standard_normal((12, 2 * 9 * 9)).astype("float32"), name="data")
    W = symcnn.shared(rng.standard_normal((5, 2, 3, 3)).astype("float32"), name="W")
    index = T.lscalar("index")
    x = T.matrix("x")
    out = T.nnet.relu(conv2d(x.reshape((4, 2, 9, 9)), W, border_mode="half")).sum()
    cost = out + (W ** 2).sum()
    givens = {x: data[index * 4:(index + 1) * 4]}
    fn = symcnn.function([index], [out, T.grad(cost, W)], givens=givens)
    ref = symcnn.function([index], [out, T.grad(cost, W)], givens=givens, mode="reference")
    assert list(fn._specializer.runners) and fn.wait() is fn
    compiled = jit.compiles_started()
    for i in (0, 2, 1):
        for g, w in zip(fn(i), ref(i)):
            assert_close(g, w, rtol=1e-4, atol=1e-4)
    assert jit.compiles_started() == compiled   # the code compiled by function()
    assert STATIC_KERNELS.search(fn.dump_llvm())
    assert fn._runner is None and fn._build is None and fn._lazy is None   # the general graph: never lowered
    W.set_value(rng.standard_normal((3, 2, 5, 5)).astype("float32"))
    for g, w in zip(fn(1), ref(1)):
        assert_close(g, w, rtol=1e-4, atol=1e-4)
    assert len(fn._specializer.runners) == 2 and fn._runner is None


def test_known_sizes_an_op_refuses_leave_the_general_graph_lowered_by_function(monkeypatch):
    """The known sizes' code cannot be lowered (an op refuses them): function() lowers the general
    graph then (where a graph the backend cannot run is rejected, as without specialising), and
    the calls run it."""
    monkeypatch.setattr(specialize.Specializer, "_lower", lambda self, values: None)
    x = T.tensor4("x", shape=(None, 2, 6, 6))
    W = symcnn.shared(np.ones((3, 2, 3, 3), dtype="float32"))
    fn = symcnn.function([x], conv2d(x, W))
    assert fn._lazy is not None or fn._runner is not None   # lowered at once
    assert_close(fn(np.ones((2, 2, 6, 6), dtype="float32")), np.full((2, 3, 4, 4), 18.0))


def test_a_child_forked_while_the_known_sizes_compile_builds_them_itself():
    """fork() right after function(), while its specialisation compiles in a parent's thread: the
    child builds that code itself and matches the parent."""
    import os
    x = T.tensor4("x", shape=(None, 3, 10, 10))
    W = symcnn.shared(np.random.default_rng(9).standard_normal((8, 3, 3, 3)).astype("float32"))
    xv = np.random.default_rng(10).standard_normal((4, 3, 10, 10)).astype("float32")
    want = symcnn.function([x], T.tanh(conv2d(x, W, border_mode="half")), mode="reference")(xv)
    fn = symcnn.function([x], T.tanh(conv2d(x, W, border_mode="half")))
    pid = os.fork()
    if pid == 0:
        try:
            got = fn(xv)
            ok = np.allclose(got, want, rtol=1e-5, atol=1e-5) and fn._runner is None
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert_close(fn(xv), want, rtol=1e-5, atol=1e-5)
