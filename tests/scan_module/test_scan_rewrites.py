"""The scan rewrites (symcnn/scan_module/scan_rewrites.py): each fires where it should (the
rewritten graph has the expected shape), not where it must not, and keeps the results: the
rewritten graph, run natively and by the reference runner, against the graph as written (the
reference mode does not rewrite), and its gradients against finite differences."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.scan_module.scan_op import Scan
from symcnn.tensor.math import Dot
from symcnn.tensor.subtensor import IncSubtensor
from tests.helpers import assert_close, check_native_vs_reference, make_rng, rand

F64 = "float64"
# the rewritten graph run by the reference runner: tells a wrong rewrite from a wrong lowering
REWRITTEN_REFERENCE = Mode(linker="reference", rewrite=True)


def _scans(fn):
    return [n for n in fn.fgraph.toposort() if isinstance(n.op, Scan)]


def _grad_scan(fn):
    found = [n for n in _scans(fn) if (n.op.info.name or "").startswith("grad_of")]
    assert len(found) == 1, [str(n.op) for n in _scans(fn)]
    return found[0]


def _fired(fn, name):
    return sum(1 for r in fn.rewrite_log if r.rewrite == name)


def _check_all_modes(inputs, outputs, values, rtol=1e-9, atol=1e-11):
    """native (rewritten) == reference (as written) == reference runner on the rewritten graph."""
    fn, _ = check_native_vs_reference(inputs, outputs, values, rtol=rtol, atol=atol)
    got = theano.function(inputs, outputs, mode=REWRITTEN_REFERENCE)(*values)
    want = theano.function(inputs, outputs, mode="reference")(*values)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=rtol, atol=atol)
    return fn


def _rnn(x, h0, W, U, b, go_backwards=False):
    """A batched RNN: h_t = tanh(h_{t-1} W + x_t U + b), rows of h are the batch."""
    def step(x_t, h, W, U, b):
        return T.tanh(T.dot(h, W) + T.dot(x_t, U) + b)
    return theano.scan(step, sequences=x, outputs_info=h0, non_sequences=[W, U, b],
                       go_backwards=go_backwards, name="rnn")[0]


def _rnn_values(rng, T_, B, D, H):
    return [rand((T_, B, D), F64, rng), rand((B, H), F64, rng), 0.5 * rand((H, H), F64, rng),
            rand((D, H), F64, rng), rand((H,), F64, rng)]


def _rnn_vars():
    return T.dtensor3("x"), T.dmatrix("h0"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("b")


# -- push-out of accumulators --------------------------------------------------------------------------

@pytest.mark.parametrize("go_backwards", [False, True])
def test_pushout_add_turns_weight_gradients_into_one_dot_after_the_loop(go_backwards):
    x, h0, W, U, b = _rnn_vars()
    cost = (_rnn(x, h0, W, U, b, go_backwards) ** 2).sum()
    grads = T.grad(cost, [x, h0, W, U, b])
    fn = theano.function([x, h0, W, U, b], [cost] + grads)
    node = _grad_scan(fn)
    # the carries of the weight gradients (W, U: dots; b: a sum) are gone; the state's window stays
    assert node.op.info.n_carries == 1, node.op.info.__dict__
    assert _fired(fn, "scan_pushout_add") >= 1
    inner_dots = [n for n in _inner_nodes(node.op) if isinstance(n.op, Dot)]
    # left inside: the step's own h W (recomputed) and the backward products through W and U
    assert len(inner_dots) <= 4
    outer_dots = [n for n in fn.fgraph.toposort() if n.op.__class__.__name__ in ("Dot", "FusedDot")
                  and any(_reads_scan(v, node) for v in n.inputs)]
    assert len(outer_dots) >= 2
    rng = make_rng(3)
    for shape in [(5, 3, 4, 6), (1, 2, 3, 2), (7, 1, 2, 5)]:
        _check_all_modes([x, h0, W, U, b], [cost] + grads, _rnn_values(rng, *shape))


def _inner_nodes(op):
    from symcnn.graph.basic import io_toposort
    return io_toposort(op.inner_outputs)


def _reads_scan(v, node, depth=6):
    """Is v computed from an output of `node` (through views)?"""
    while depth and v.owner is not None:
        if v.owner is node:
            return True
        v = v.owner.inputs[0]
        depth -= 1
    return False


@pytest.mark.parametrize("go_backwards", [False, True])
def test_pushout_add_keeps_gradients_numerically_right(go_backwards):
    rng = make_rng(4)
    vals = _rnn_values(rng, 4, 2, 3, 3)
    theano.verify_grad(lambda *a: _rnn(*a, go_backwards=go_backwards), vals, mode="native",
                       rng=np.random.default_rng(0))


def test_pushout_add_with_taps_and_several_accumulators():
    """h_t = tanh(h_{t-2} W2 + h_{t-1} W1 + x_{t-1} U + x_t V): taps on the state and on the
    sequence, four weight accumulators."""
    x, h0 = T.dtensor3("x"), T.dtensor3("h0")
    W1, W2, U, V = (T.dmatrix(n) for n in ("W1", "W2", "U", "V"))

    def step(xm1, xt, hm2, hm1, W1, W2, U, V):
        return T.tanh(T.dot(hm2, W2) + T.dot(hm1, W1) + T.dot(xm1, U) + T.dot(xt, V))

    def f(x, h0, W1, W2, U, V):
        return theano.scan(step, sequences=dict(input=x, taps=[-1, 0]),
                           outputs_info=dict(initial=h0, taps=[-2, -1]), non_sequences=[W1, W2, U, V])[0]

    hs = f(x, h0, W1, W2, U, V)
    cost = (hs ** 2).sum()
    grads = T.grad(cost, [x, h0, W1, W2, U, V])
    fn = theano.function([x, h0, W1, W2, U, V], [cost] + grads)
    node = _grad_scan(fn)
    assert node.op.info.n_carries == 1  # the window of the state; the four weight gradients are out
    assert _fired(fn, "scan_pushout_add") >= 1
    rng = make_rng(5)
    for steps, B, D, H in [(6, 2, 3, 4), (3, 1, 2, 2)]:
        vals = [rand((steps + 1, B, D), F64, rng), rand((2, B, H), F64, rng)] + \
               [0.5 * rand((H, H), F64, rng) for _ in range(2)] + [rand((D, H), F64, rng) for _ in range(2)]
        _check_all_modes([x, h0, W1, W2, U, V], [cost] + grads, vals)
    theano.verify_grad(f, [rand((4, 2, 2), F64, rng), rand((2, 2, 3), F64, rng)]
                       + [0.5 * rand((3, 3), F64, rng) for _ in range(2)] + [rand((2, 3), F64, rng)
                                                                              for _ in range(2)],
                       mode="native", rng=np.random.default_rng(1))


def test_pushout_add_of_vector_dots_and_truncated_gradient():
    """Unbatched RNN (h_t a vector: the accumulators are outer products, dot(h.T, g) of rows)
    with truncate_gradient: the pushed-out dots cover only the steps the gradient loop ran."""
    x, h0, W, U = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W"), T.dmatrix("U")

    def f(x, h0, W, U):
        return theano.scan(lambda xt, h, W, U: T.tanh(T.dot(h, W) + T.dot(xt, U)), sequences=x,
                           outputs_info=h0, non_sequences=[W, U], truncate_gradient=3)[0]

    cost = (f(x, h0, W, U) ** 2).sum()
    grads = T.grad(cost, [x, h0, W, U])
    rng = make_rng(6)
    vals = [rand((7, 3), F64, rng), rand((4,), F64, rng), 0.5 * rand((4, 4), F64, rng), rand((3, 4), F64, rng)]
    _check_all_modes([x, h0, W, U], [cost] + grads, vals)


def test_pushout_add_of_a_shared_variable_accumulated_by_the_step():
    """A user's accumulator, acc <- acc + x_t.T y_t as a shared update the step never reads:
    computed after the loop; the final value is numpy's."""
    rng = make_rng(7)
    x, y = T.dtensor3("x"), T.dtensor3("y")
    acc = theano.shared(rand((3, 4), F64, rng), name="acc")
    start = acc.get_value()

    def step(xt, yt):
        return T.sum(xt), {acc: acc + T.dot(xt.T, yt)}

    out, upd = theano.scan(step, sequences=[x, y])
    fn = theano.function([x, y], out, updates=upd)
    assert _fired(fn, "scan_pushout_add") == 1
    assert all(n.op.info.n_carries == 0 for n in _scans(fn))
    xv, yv = rand((5, 2, 3), F64, rng), rand((5, 2, 4), F64, rng)
    assert_close(fn(xv, yv), xv.sum(axis=(1, 2)))
    assert_close(acc.get_value(), start + np.einsum("tbm,tbn->mn", xv, yv), rtol=1e-12)


def test_pushout_add_does_not_fire_when_the_accumulator_feeds_back():
    rng = make_rng(8)
    x = T.dtensor3("x")
    acc = theano.shared(0.1 * rand((3, 3), F64, rng), name="acc")
    start = acc.get_value()

    def step(xt):
        h = T.tanh(T.dot(xt, acc))      # the step reads the accumulator
        return h, {acc: acc + T.dot(xt.T, h)}

    out, upd = theano.scan(step, sequences=x)
    fn = theano.function([x], out, updates=upd)
    assert _fired(fn, "scan_pushout_add") == 0
    assert [n.op.info.n_carries for n in _scans(fn)] == [1]
    xv = rand((4, 2, 3), F64, rng)
    a, want = start.copy(), []
    for t in range(4):
        h = np.tanh(xv[t] @ a)
        want.append(h)
        a = a + xv[t].T @ h
    assert_close(fn(xv), np.array(want), rtol=1e-12)
    assert_close(acc.get_value(), a, rtol=1e-12)


def test_pushout_add_does_not_fire_when_the_dot_is_also_used_in_the_step():
    """acc <- acc + d with d = dot(x_t.T, y_t) also an output of the step: the dot stays inside."""
    rng = make_rng(9)
    x, y = T.dtensor3("x"), T.dtensor3("y")
    acc = theano.shared(rand((3, 4), F64, rng), name="acc")

    def step(xt, yt):
        d = T.dot(xt.T, yt)
        return d, {acc: acc + d}

    out, upd = theano.scan(step, sequences=[x, y])
    fn = theano.function([x, y], out, updates=upd)
    assert _fired(fn, "scan_pushout_add") == 0


# -- unused outputs and inputs ---------------------------------------------------------------------------

def test_remove_unused_drops_gradients_nobody_reads():
    """A mask sequence: the gradient loop computes its gradient only if someone asks for it."""
    x, mask, h0, W = T.dtensor3("x"), T.dmatrix("mask"), T.dmatrix("h0"), T.dmatrix("W")

    def step(m, xt, h, W):
        new = T.tanh(T.dot(h, W) + xt)
        return m[:, None] * new + (1 - m)[:, None] * h

    hs = theano.scan(step, sequences=[mask, x], outputs_info=h0, non_sequences=W)[0]
    cost = (hs ** 2).sum()
    gW = T.grad(cost, W)
    # (without scan_pushout_add, which would add a per-step output for W's gradient)
    fn = theano.function([x, mask, h0, W], [cost, gW], mode=Mode(linker="native", excluding=["scan_pushout_add"]))
    node = _grad_scan(fn)
    assert node.op.info.n_nitsot == 0  # neither the mask's nor x's gradient is computed
    assert _fired(fn, "scan_remove_unused") >= 1
    assert _fired(fn, "scan_pushout_add") == 0
    fn = theano.function([x, mask, h0, W], [cost, gW])
    assert _grad_scan(fn).op.info.n_nitsot == 1  # the pushed-out accumulator's per-step term
    rng = make_rng(10)
    vals = [rand((5, 2, 3), F64, rng), (rng.random((5, 2)) > 0.3).astype(F64), rand((2, 3), F64, rng),
            0.5 * rand((3, 3), F64, rng)]
    _check_all_modes([x, mask, h0, W], [cost, gW], vals)


def test_remove_unused_keeps_a_state_a_kept_output_reads():
    """Only the second output is used, but it reads the first state: both stay."""
    x, a0, b0 = T.dvector("x"), T.dscalar("a0"), T.dscalar("b0")
    (a, bb), _ = theano.scan(lambda xt, a, b: [a + xt, b * 0.5 + a], sequences=x, outputs_info=[a0, b0])
    fn = theano.function([x, a0, b0], bb)
    assert [n.op.info.n_states for n in _scans(fn)] == [2]
    xv = np.arange(1.0, 5.0)
    _check_all_modes([x, a0, b0], [bb], [xv, np.float64(0.5), np.float64(2.0)])


def test_remove_unused_drops_an_unused_per_step_output_and_its_sequence():
    x, y = T.dvector("x"), T.dvector("y")
    (p, q), _ = theano.scan(lambda xt, yt: [xt * 2, T.exp(yt)], sequences=[x, y])
    fn = theano.function([x, y], p)
    node, = _scans(fn)
    assert node.op.info.n_nitsot == 1 and node.op.info.n_seqs == 1
    assert _fired(fn, "scan_remove_unused") == 1
    assert_close(fn(np.arange(3.0), np.ones(3)), np.arange(3.0) * 2)


# -- loop-invariant computations ---------------------------------------------------------------------------

def test_pushout_nonseqs_computes_invariant_expressions_once():
    x, h0, W, c = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W"), T.dscalar("c")

    def step(xt, h, W, c):
        return T.tanh(T.dot(h, T.exp(W) * c) + xt)   # exp(W) * c does not change from step to step

    hs = theano.scan(step, sequences=x, outputs_info=h0, non_sequences=[W, c])[0]
    cost = (hs ** 2).sum()
    outs = [hs, cost] + T.grad(cost, [x, h0, W, c])
    fn = theano.function([x, h0, W, c], outs)
    fwd = [n for n in _scans(fn) if not (n.op.info.name or "").startswith("grad_of")]
    assert len(fwd) == 1
    names = [n.op.__class__.__name__ for n in _inner_nodes(fwd[0].op)]
    inner_ops = [str(n.op) for n in _inner_nodes(fwd[0].op)]
    assert not any("exp" in s for s in inner_ops), inner_ops
    assert "Dot" in names
    assert _fired(fn, "scan_pushout_nonseqs") >= 1
    rng = make_rng(11)
    vals = [rand((5, 3), F64, rng), rand((3,), F64, rng), 0.5 * rand((3, 3), F64, rng), np.float64(0.7)]
    _check_all_modes([x, h0, W, c], outs, vals)
    theano.verify_grad(lambda x, h0, W, c: theano.scan(step, sequences=x, outputs_info=h0,
                                                       non_sequences=[W, c])[0],
                       vals, mode="native", rng=np.random.default_rng(2))


def test_pushout_nonseqs_leaves_a_random_draw_in_the_loop():
    """A draw reads a stream's state, which the step updates: it is not invariant."""
    from symcnn.tensor.shared_randomstreams import RandomStreams
    srng = RandomStreams(seed=3)
    W = T.dmatrix("W")
    out, upd = theano.scan(lambda W: T.sum(W * srng.uniform((2, 2), dtype=F64)), non_sequences=W, n_steps=4)
    fn = theano.function([W], out, updates=upd)
    v = fn(np.ones((2, 2)))
    assert len(set(np.round(v, 12))) == 4   # four different draws


# -- the padding of sequence gradients (scan_grad.py: not a rewrite, the gradient is built without it) ----

def test_gradient_of_a_fully_read_sequence_is_not_padded():
    x, h0, W, U, b = _rnn_vars()
    hs = _rnn(x, h0, W, U, b)
    cost = (hs ** 2).sum()
    gx = T.grad(cost, x)
    fn = theano.function([x, h0, W, U, b], gx)
    # (the gradient of the state's rows 1.. keeps its own padding: only row 0 is h0)
    assert not [n for n in fn.fgraph.toposort() if isinstance(n.op, IncSubtensor)
                and n.op.idx_list == (("slice", False, True, False),)]
    rng = make_rng(12)
    _check_all_modes([x, h0, W, U, b], [gx], _rnn_values(rng, 4, 2, 3, 3))


def test_gradient_of_a_partly_read_sequence_is_padded():
    """n_steps shorter than the sequence, and a truncated gradient: rows get zeros."""
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    n = T.lscalar("n")
    for kwargs in (dict(n_steps=n), dict(truncate_gradient=2)):
        hs = theano.scan(lambda xt, h, W: T.tanh(T.dot(h, W) + xt), sequences=x, outputs_info=h0,
                         non_sequences=W, **kwargs)[0]
        gx = T.grad((hs ** 2).sum(), x)
        ins = [x, h0, W] + ([n] if "n_steps" in kwargs else [])
        fn = theano.function(ins, gx)
        assert [nd for nd in fn.fgraph.toposort() if isinstance(nd.op, IncSubtensor)]
        rng = make_rng(13)
        vals = [rand((6, 3), F64, rng), rand((3,), F64, rng), 0.5 * rand((3, 3), F64, rng)]
        vals += [np.int64(4)] if "n_steps" in kwargs else []
        got = _check_all_modes(ins, [gx], vals)
        assert got is not None
        g = fn(*vals)
        assert not g[4:].any() if "n_steps" in kwargs else not g[:4].any()


# -- the gradient loop reusing the forward loop's products ---------------------------------------------------

def _inner_dots(node):
    return [n for n in _inner_nodes(node.op) if isinstance(n.op, Dot)]


@pytest.mark.parametrize("go_backwards", [False, True])
def test_reuse_forward_dots_reads_the_forward_products(go_backwards):
    x, h0, W, U, b = _rnn_vars()
    hs = _rnn(x, h0, W, U, b, go_backwards)
    cost = (hs ** 2).sum()
    grads = T.grad(cost, [x, h0, W, U, b])
    written = theano.function([x, h0, W, U, b], [cost] + grads,
                              mode=Mode(linker="native", excluding=["scan_reuse_forward_dots"]))
    fn = theano.function([x, h0, W, U, b], [cost] + grads)
    assert _fired(fn, "scan_reuse_forward_dots") == 1
    fwd = [n for n in _scans(fn) if n.op.info.name == "rnn"]
    assert len(fwd) == 1 and fwd[0].op.info.n_nitsot == 1   # h W + x U + b, one row per step
    # the gradient loop no longer computes the forward products (it keeps the backward ones)
    assert len(_inner_dots(_grad_scan(fn))) == len(_inner_dots(_grad_scan(written))) - 2
    rng = make_rng(14)
    for shape in [(5, 3, 4, 6), (1, 2, 3, 2)]:
        _check_all_modes([x, h0, W, U, b], [cost] + grads, _rnn_values(rng, *shape))
    theano.verify_grad(lambda *a: _rnn(*a, go_backwards=go_backwards), _rnn_values(rng, 3, 2, 2, 3),
                       mode="native", rng=np.random.default_rng(3))


def test_reuse_forward_dots_with_taps():
    """State taps [-2, -1] and sequence taps [-1, 0]: the forward products read from every tap."""
    x, h0 = T.dtensor3("x"), T.dtensor3("h0")
    W1, W2, U = T.dmatrix("W1"), T.dmatrix("W2"), T.dmatrix("U")

    def step(xm1, xt, hm2, hm1, W1, W2, U):
        return T.tanh(T.dot(hm2, W2) + T.dot(hm1, W1) + T.dot(xm1 - xt, U))

    hs = theano.scan(step, sequences=dict(input=x, taps=[-1, 0]), outputs_info=dict(initial=h0, taps=[-2, -1]),
                     non_sequences=[W1, W2, U])[0]
    cost = (hs ** 2).sum()
    grads = T.grad(cost, [x, h0, W1, W2, U])
    fn = theano.function([x, h0, W1, W2, U], [cost] + grads)
    assert _fired(fn, "scan_reuse_forward_dots") == 1
    rng = make_rng(15)
    vals = [rand((5, 2, 3), F64, rng), rand((2, 2, 4), F64, rng), 0.5 * rand((4, 4), F64, rng),
            0.5 * rand((4, 4), F64, rng), rand((3, 4), F64, rng)]
    _check_all_modes([x, h0, W1, W2, U], [cost] + grads, vals)


def test_reuse_forward_dots_does_not_fire_for_a_truncated_gradient():
    """The truncated gradient loop runs fewer steps than the forward loop: its rows are not
    the forward loop's rows one for one, and the products are computed again."""
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    hs = theano.scan(lambda xt, h, W: T.tanh(T.dot(h, W) + xt), sequences=x, outputs_info=h0,
                     non_sequences=W, truncate_gradient=2)[0]
    cost = (hs ** 2).sum()
    grads = T.grad(cost, [x, h0, W])
    fn = theano.function([x, h0, W], [cost] + grads)
    assert _fired(fn, "scan_reuse_forward_dots") == 0
    rng = make_rng(16)
    _check_all_modes([x, h0, W], [cost] + grads, [rand((5, 3), F64, rng), rand((3,), F64, rng),
                                                  0.5 * rand((3, 3), F64, rng)])


# -- push-out of a sit-sot state of which only the last value is read --------------------------------------

def test_pushout_add_of_a_reduce_accumulator():
    """theano.reduce with acc <- acc + x_t.T y_t and a second accumulator acc2 <- acc2 + sum(y_t, 0):
    both become sums after the loop; the third state feeds back (s <- tanh(s + x_t.sum())) and stays."""
    x, y = T.dtensor3("x"), T.dtensor3("y")
    a0, b0, s0 = T.dmatrix("a0"), T.dvector("b0"), T.dscalar("s0")

    def step(xt, yt, acc, acc2, s):
        return acc + T.dot(xt.T, yt), acc2 + T.sum(yt, axis=0), T.tanh(s + xt.sum())

    (acc, acc2, s), _ = theano.reduce(step, sequences=[x, y], outputs_info=[a0, b0, s0])
    fn = theano.function([x, y, a0, b0, s0], [acc, acc2, s])
    assert _fired(fn, "scan_pushout_add") == 1
    node, = _scans(fn)
    assert node.op.info.n_states == 1   # only s is left in the loop
    rng = make_rng(17)
    for steps in (1, 4):
        xv, yv = rand((steps, 2, 3), F64, rng), rand((steps, 2, 4), F64, rng)
        vals = [xv, yv, rand((3, 4), F64, rng), rand((4,), F64, rng), np.float64(0.3)]
        got = _check_all_modes([x, y, a0, b0, s0], [acc, acc2, s], vals)(*vals)
        assert_close(got[0], vals[2] + np.einsum("tbm,tbn->mn", xv, yv), rtol=1e-12)
        assert_close(got[1], vals[3] + yv.sum(axis=(0, 1)), rtol=1e-12)


def test_pushout_add_keeps_a_state_whose_every_value_is_read():
    x, y, a0 = T.dtensor3("x"), T.dtensor3("y"), T.dmatrix("a0")
    accs, _ = theano.scan(lambda xt, yt, acc: acc + T.dot(xt.T, yt), sequences=[x, y], outputs_info=a0)
    fn = theano.function([x, y, a0], [accs, accs[-1]])
    assert _fired(fn, "scan_pushout_add") == 0
    rng = make_rng(18)
    _check_all_modes([x, y, a0], [accs, accs[-1]], [rand((3, 2, 3), F64, rng), rand((3, 2, 4), F64, rng),
                                                    rand((3, 4), F64, rng)])


def test_pushout_add_of_a_state_keeps_its_gradient():
    """The gradient of the last value of an accumulator: the rewritten graph differentiates
    as the loop does (the gradient is built before rewriting; checked numerically)."""
    rng = make_rng(19)

    def f(x, y, a0):
        return theano.reduce(lambda xt, yt, acc: acc + T.dot(xt.T, T.tanh(yt)), sequences=[x, y],
                             outputs_info=a0)[0]

    theano.verify_grad(f, [rand((3, 2, 3), F64, rng), rand((3, 2, 4), F64, rng), rand((3, 4), F64, rng)],
                       mode="native", rng=np.random.default_rng(4))


def test_every_scan_rewrite_has_its_tests_here():
    from symcnn.rewrite import registered
    from symcnn.scan_module import scan_rewrites
    names = {r.name for r in registered() if r.fn.__module__ == scan_rewrites.__name__}
    # each is asserted to fire (and, elsewhere in this file, not to fire) by the tests above
    assert names == {"scan_remove_unused", "scan_pushout_nonseqs", "scan_pushout_add", "scan_reuse_forward_dots"}
