"""The native memory plan (slot reuse and growth) and updates/aliasing of shared storage."""
import numpy as np
import pytest

import symcnn
from symcnn.compile.mode import Mode
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference


def _plan(fn):
    from codegen.lower import lower
    from codegen.plan import Plan
    return Plan(fn.runner.fgraph, lower)


def _chain(x, n):
    y = x
    for k in range(n):
        y = [T.exp, T.tanh, lambda v: v * 1.5, lambda v: v + 0.25, T.sqr][k % 5](y)
    return y


def _capacities(fn):
    return [int(c) for c in fn.runner._slots[1::2]]


# -- the plan ----------------------------------------------------------------------

def test_long_chain_reuses_buffers():
    x = T.matrix("x")
    y = _chain(x, 30)
    # Without fusion the chain is 30 nodes, each needing a buffer.
    fn = symcnn.function([x], y, mode=Mode("native", excluding=["fuse_elemwise"]))
    plan = _plan(fn)
    computed = [v for node in fn.runner.fgraph.toposort() for v in node.outputs]
    assert len(computed) >= 30
    assert plan.n_slots < len(computed)
    assert plan.n_slots <= 4, plan.n_slots
    a = np.random.RandomState(0).rand(5, 7).astype("float32") * 0.1
    check_native_vs_reference([x], y, [a], rtol=1e-4, atol=1e-5)


def test_live_values_never_share_a_slot():
    """A diamond: every intermediate is used at the end, so each needs its own buffer."""
    x = T.vector("x")
    parts = [x * k for k in range(1, 8)]
    total = parts[0]
    for p in parts[1:]:
        total = total + p * T.exp(p) - T.sqr(p)
    fn, _ = check_native_vs_reference([x], [total, parts[3]], [np.linspace(-1, 1, 17, dtype="float32")],
                                      rtol=1e-5, atol=1e-5, mode=Mode("native", excluding=["fuse_elemwise"]))
    plan = _plan(fn)
    owners = [v for v in plan.slot]
    # two owners alive at the same time must not share a slot (checked through the results above) and the
    # plan still reuses: fewer slots than computed variables
    assert plan.n_slots < len(owners)


def test_repeated_calls_do_not_grow_and_larger_batch_grows():
    rng = np.random.RandomState(1)
    x = T.matrix("x")
    w = T.matrix("w")
    h = T.tanh(T.dot(x, w) + 1)
    outs = [h.sum(axis=1), T.max(h, axis=0), _chain(h, 6)]
    fn = symcnn.function([x, w], outs, mode="native")
    ref = symcnn.function([x, w], outs, mode="reference")
    wv = rng.randn(6, 5).astype("float32") * 0.3

    def check(batch):
        xv = rng.randn(batch, 6).astype("float32") * 0.3
        for g, r in zip(fn(xv, wv), ref(xv, wv)):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)

    check(8)
    caps = _capacities(fn)
    assert all(c > 0 for c in caps[:1])
    for _ in range(4):
        check(8)
        assert _capacities(fn) == caps
    check(3)                       # smaller: reuses what is there
    assert _capacities(fn) == caps
    check(200)                     # larger: grows
    grown = _capacities(fn)
    assert sum(grown) > sum(caps) and all(g >= c for g, c in zip(grown, caps))
    check(200)
    assert _capacities(fn) == grown
    check(8)
    assert _capacities(fn) == grown


# -- updates -----------------------------------------------------------------------

def _both(make):
    """make(mode) -> (function, [shared variables]); returns both modes' pairs."""
    return make("native"), make("reference")


def _assert_same_state(nat_shared, ref_shared):
    for a, b in zip(nat_shared, ref_shared):
        va, vb = a.get_value(), b.get_value()
        assert va.dtype == vb.dtype and va.shape == vb.shape
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)


def test_accumulating_updates_over_calls():
    rng = np.random.RandomState(2)
    init_w = rng.randn(4, 3).astype("float32")
    init_n = np.int64(0)

    def make(mode):
        w = symcnn.shared(init_w.copy(), name="w")
        n = symcnn.shared(init_n, name="n")
        x = T.matrix("x")
        loss = T.sum(T.sqr(T.dot(x, w)))
        fn = symcnn.function([x], [loss, w * 1], updates=[(w, w - 0.01 * T.dot(x.T, T.dot(x, w))), (n, n + 1)],
                             mode=mode)
        return fn, [w, n]

    (fn_n, sh_n), (fn_r, sh_r) = _both(make)
    for k in range(5):
        xv = rng.randn(7, 4).astype("float32")
        out_n, out_r = fn_n(xv), fn_r(xv)
        for a, b in zip(out_n, out_r):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        _assert_same_state(sh_n, sh_r)
    assert sh_n[1].get_value() == 5


def test_swap_two_shared_variables_through_updates():
    def make(mode):
        a = symcnn.shared(np.arange(6, dtype="float64").reshape(2, 3), name="a")
        b = symcnn.shared(-np.arange(6, dtype="float64").reshape(2, 3), name="b")
        fn = symcnn.function([], [a + b, a], updates=[(a, b), (b, a)], mode=mode)
        return fn, [a, b]

    (fn_n, sh_n), (fn_r, sh_r) = _both(make)
    a0 = sh_n[0].get_value()
    for k in range(4):
        out_n, out_r = fn_n(), fn_r()
        for g, r in zip(out_n, out_r):
            np.testing.assert_array_equal(g, r)
        _assert_same_state(sh_n, sh_r)
        expect_a = a0 if k % 2 else -a0
        np.testing.assert_array_equal(sh_n[0].get_value(), expect_a)
        np.testing.assert_array_equal(sh_n[1].get_value(), -expect_a)


def test_update_is_another_shared_variable_and_transposed_self():
    def make(mode):
        a = symcnn.shared(np.zeros((3, 3), dtype="float32"), name="a")
        b = symcnn.shared(np.arange(9, dtype="float32").reshape(3, 3), name="b")
        c = symcnn.shared(np.arange(9, dtype="float32").reshape(3, 3) * 10, name="c")
        i = T.lscalar("i")
        fn = symcnn.function([i], a.sum() + T.cast(i, "float32"),
                             updates=[(a, b), (b, b + T.cast(i, "float32")), (c, c.T)], mode=mode)
        return fn, [a, b, c]

    (fn_n, sh_n), (fn_r, sh_r) = _both(make)
    for k in range(4):
        np.testing.assert_array_equal(fn_n(k), fn_r(k))   # a Python int argument
        _assert_same_state(sh_n, sh_r)
    # a and b must hold distinct storage after `a <- b`
    sh_n[1].get_value(borrow=True)[0, 0] = 1000
    assert sh_n[0].get_value()[0, 0] != 1000


def test_outputs_never_alias_shared_storage():
    a = symcnn.shared(np.arange(4, dtype="float32"), name="a")
    b = symcnn.shared(np.ones(4, dtype="float32"), name="b")
    fn = symcnn.function([], [a, a.T, b, a + 0, a.dimshuffle("x", 0)], updates=[(a, a * 2)], mode="native")
    outs = fn()
    np.testing.assert_array_equal(outs[0], np.arange(4))            # the old value
    np.testing.assert_array_equal(a.get_value(), np.arange(4) * 2)
    for o in outs:
        o[...] = -1
    np.testing.assert_array_equal(a.get_value(), np.arange(4) * 2)
    np.testing.assert_array_equal(b.get_value(), np.ones(4))
    outs2 = fn()
    np.testing.assert_array_equal(outs2[0], np.arange(4) * 2)
    # results of different calls do not share memory either
    assert not np.shares_memory(outs[3], outs2[3])


def test_same_expression_as_output_and_update():
    def make(mode):
        s = symcnn.shared(np.float64(1.0), name="s")
        new = s * 3
        fn = symcnn.function([], [new, new], updates=[(s, new)], mode=mode)
        return fn, [s]

    (fn_n, sh_n), (fn_r, sh_r) = _both(make)
    for _ in range(3):
        on, orf = fn_n(), fn_r()
        np.testing.assert_array_equal(on, orf)
        assert not np.shares_memory(on[0], on[1])
        _assert_same_state(sh_n, sh_r)
    on[0][...] = 0
    assert sh_n[0].get_value() == 27.0


def test_python_scalar_arguments():
    n = T.lscalar("n")
    i = T.iscalar("i")
    d = T.dscalar("d")
    v = T.vector("v", dtype="int64")
    outs = [T.arange(n) * i, v * n + i, d * n, T.cast(i, "float64") / d]
    fn_n = symcnn.function([n, i, d, v], outs, mode="native")
    fn_r = symcnn.function([n, i, d, v], outs, mode="reference")
    for args in [(5, 3, 2, [1, 2, 3]), (0, -7, 0.5, []), (1, 2 ** 30, -3, [10 ** 12])]:
        for g, r in zip(fn_n(*args), fn_r(*args)):
            assert g.dtype == r.dtype
            np.testing.assert_array_equal(g, r)


def test_constant_and_repeated_outputs_get_their_own_buffers():
    x = T.matrix("x")
    outs = [x, T.constant(np.arange(3.0)), T.constant(2) + 1, x * x, x + x.T.T, T.dot(x, x), x]
    fn, (res,) = check_native_vs_reference([x], outs, [np.arange(9, dtype="float32").reshape(3, 3)])
    assert not np.shares_memory(res[0], res[6])
    res[1][0] = 42   # a returned constant is a copy: the next call still returns the constant
    np.testing.assert_array_equal(fn(np.zeros((3, 3), "float32"))[1], np.arange(3.0))
