"""move_activation_to_consumers: a fused layer whose gradient reads z and whose activation feeds
only other fused convolutions stores z alone; its readers apply the activation (in_act), and the
training step gives what the unrewritten graph gives in the reference mode. fold_dact_into_gx: a
layer's derivative moves into the gradient op that produces the gradient it reads."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from symcnn.tensor.signal import pool

from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference, rewritten

NAME = "move_activation_to_consumers"


def _net(act, layers, rng, dense=True, pool_first=None, order="conv_act_pool", batch=2):
    """x -> conv layers ((out channels, subsample, pooled) each, 3x3 'half', bias, act) [-> dense]
    and the SGD step's cost and gradients: (inputs, outputs, values)."""
    x = T.tensor4("x")
    h, c, params, vals = x, 3, [], [rng.uniform(-1, 1, (batch, 3, 10, 10)).astype("float32")]
    size = 10
    for k, (co, s, pooled) in enumerate(layers):
        W, b = T.tensor4(f"W{k}"), T.vector(f"b{k}")
        params += [W, b]
        vals += [(rng.uniform(-1, 1, (co, c, 3, 3)) / 3).astype("float32"), rng.uniform(-0.2, 0.2, co).astype("float32")]
        z = conv2d(h, W, border_mode="half", subsample=(s, s)) + b.dimshuffle("x", 0, "x", "x")
        size = -(-size // s)
        if pooled and order == "conv_pool_act":
            h = CONV_ACTIVATIONS[act](pool.pool_2d(conv2d(h, W, border_mode="half", subsample=(s, s)), ws=(2, 2),
                                                   ignore_border=True) + b.dimshuffle("x", 0, "x", "x"))
        else:
            h = CONV_ACTIVATIONS[act](z)
            if pooled:
                h = pool.pool_2d(h, ws=(2, 2), ignore_border=True)
        if pooled:
            size //= 2
        c = co
    if dense:
        V = T.matrix("V")
        params.append(V)
        vals.append((rng.uniform(-1, 1, (c * size * size, 4)) / 8).astype("float32"))
        h = T.dot(h.flatten(2), V)
    cost = (h * h).sum()
    return [x] + params, [cost] + T.grad(cost, params), vals


def _fused(fn):
    nodes = fn.fgraph.toposort()
    return [n.op for n in nodes if isinstance(n.op, ConvPoolAct)], \
        [n.op for n in nodes if isinstance(n.op, ConvPoolActGrad)]


@pytest.mark.parametrize("act", ["maximum", "relu", "leaky_relu", "switch"])
def test_relu_chain_stores_the_pre_activation_alone(act):
    """Three ReLU-like layers (stride 1, stride 2, pooled before the activation) and a dense
    layer: the first two store z alone, their readers take the activation as in_act, the last one
    (read by the dense layer) keeps act and z; the step matches the reference."""
    rng = np.random.RandomState(0)
    ins, outs, vals = _net(act, [(8, 1, False), (16, 2, False), (16, 1, True)], rng, order="conv_pool_act")
    fn = symcnn.function(ins, outs, mode="native")
    assert NAME in {r.rewrite for r in fn.rewrite_log}
    fwd, bwd = _fused(fn)
    assert len(fwd) == 3 and len(bwd) == 3
    assert [op.act is None for op in fwd] == [True, True, False], fwd
    assert [op.keep_z for op in fwd] == [False, False, True], fwd
    assert [op.in_act is not None for op in fwd] == [False, True, True], fwd
    assert sorted(op.in_act is not None for op in bwd) == [False, True, True], bwd
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)


def test_pooled_after_the_activation_stays():
    """A layer pooling its activation (conv -> act -> pool) keeps it: the activation cannot move
    past the pooling; the layer before it still moves its own into it."""
    rng = np.random.RandomState(1)
    ins, outs, vals = _net("maximum", [(8, 1, False), (8, 1, True), (8, 1, False)], rng)
    fn = symcnn.function(ins, outs, mode="native")
    fwd, _ = _fused(fn)
    assert [op.act is None for op in fwd] == [True, False, False], fwd
    assert [op.in_act is not None for op in fwd] == [False, True, False], fwd
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)


def test_does_not_fire_when_the_activation_is_read_elsewhere():
    """The first layer's activation is also a function output, or the derivative reads only out
    (tanh): nothing moves; with the rewrite excluded nothing moves either."""
    rng = np.random.RandomState(2)
    ins, outs, vals = _net("maximum", [(8, 1, False), (8, 1, False)], rng, dense=False)
    fn = symcnn.function(ins, outs, mode=Mode("native", excluding=[NAME]))
    assert all(op.in_act is None for op in _fused(fn)[0])
    first = [n for n in symcnn.function(ins, outs, mode="native").fgraph.toposort()
             if isinstance(n.op, ConvPoolAct)][0]
    assert first.op.act is None
    tins, touts, tvals = _net("tanh", [(8, 1, False), (8, 1, False)], rng, dense=False)
    fn = symcnn.function(tins, touts, mode="native")
    assert all(op.in_act is None and op.act is not None for op in _fused(fn)[0])
    check_native_vs_reference(tins, touts, tvals, rtol=2e-4, atol=2e-4)
    # the first layer's activation as an output too
    x = ins[0]
    h1 = T.maximum(conv2d(x, ins[1], border_mode="half") + ins[2].dimshuffle("x", 0, "x", "x"), 0)
    h2 = T.maximum(conv2d(h1, ins[3], border_mode="half") + ins[4].dimshuffle("x", 0, "x", "x"), 0)
    cost = (h2 * h2).sum()
    outs2 = [cost, h1] + T.grad(cost, ins[1:5])
    fn = symcnn.function(ins[:5], outs2, mode="native")
    assert all(op.in_act is None for op in _fused(fn)[0])
    check_native_vs_reference(ins[:5], outs2, vals[:5], rtol=2e-4, atol=2e-4)


FOLD = "fold_dact_into_gx"


def _folded(fn):
    """(gradient ops with gx_act, gradient ops that read neither z nor out)."""
    _, bwd = _fused(fn)
    return [op for op in bwd if op.gx_act is not None], [op for op in bwd if not (op.reads_z or op.reads_out)]


# each activation in one order, the orders in turn: each order with ReLU-like derivatives (reading z)
# and tanh's or sigmoid's (reading out)
DERIVATIVE_CASES = [(act, ("conv_pool_act", "conv_act_pool")[i % 2]) for i, act in
                    enumerate(["maximum", "relu", "leaky_relu", "switch", "mul_gt", "tanh", "sigmoid"])]


@pytest.mark.parametrize("act,order", DERIVATIVE_CASES)
def test_derivative_moves_into_the_readers_input_gradient(act, order):
    """A chain of three layers (stride 1, stride 2 pooled, stride 1) and a dense layer: each layer
    whose gradient reads one stored array (z after the activation moved, or out: tanh, sigmoid) and
    the gx of the next layer's gradient (or terms computed from it alone: T.nnet.relu's, leaky or
    not, T.switch's) has its derivative applied by that gradient op and reads neither any more; a
    layer pooling after its activation keeps its derivative. The step matches the unrewritten graph
    in the reference mode."""
    rng = np.random.RandomState(3)
    ins, outs, vals = _net(act, [(8, 1, False), (16, 2, True), (16, 1, False)], rng, order=order)
    fn = symcnn.function(ins, outs, mode="native")
    assert FOLD in {r.rewrite for r in fn.rewrite_log}
    with_gx_act, pass_through = _folded(fn)
    # the second layer pools after its activation in 'conv_act_pool': its derivative stays
    want = 2 if order == "conv_pool_act" else 1
    assert len(with_gx_act) == len(pass_through) == want, fn.fgraph.toposort()
    assert all(op.need_gx for op in with_gx_act)
    assert all(op.dact.nin == 3 and op.input_roles()[-1] == "g0" for op in pass_through)
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)
    without = rewritten(ins, outs, Mode("native", excluding=[FOLD]))
    assert _folded(without) == ([], [])


def test_derivative_stays_when_the_gradient_is_shared():
    """Two readers of one layer's activation (its gradient is the sum of their gx): nothing folds;
    the step matches the reference."""
    rng = np.random.RandomState(4)
    x, W1, W2, W3 = T.tensor4("x"), T.tensor4("W1"), T.tensor4("W2"), T.tensor4("W3")
    h = T.maximum(conv2d(x, W1, border_mode="half"), 0)
    cost = (T.maximum(conv2d(h, W2, border_mode="half"), 0) ** 2).sum() + \
        (T.maximum(conv2d(h, W3, border_mode="half"), 0) ** 2).sum()
    ins = [x, W1, W2, W3]
    outs = [cost] + T.grad(cost, ins)
    vals = [rng.uniform(-1, 1, (2, 3, 8, 8)).astype("float32")] + \
        [(rng.uniform(-1, 1, (4, c, 3, 3)) / 3).astype("float32") for c in (3, 4, 4)]
    fn = symcnn.function(ins, outs, mode="native")
    assert FOLD not in {r.rewrite for r in fn.rewrite_log}
    assert _folded(fn) == ([], [])
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_folded_chain_on_any_thread_count(threads, monkeypatch):
    """An odd batch (7) through a folded chain (stride 1, stride 2 pooled, stride 1; ReLU) on 1, 2
    and 3 threads: each thread applies the derivative to the images it computes; the step matches
    the reference."""
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(config, "num_threads", threads)
    rng = np.random.RandomState(5)
    ins, outs, vals = _net("maximum", [(8, 1, False), (16, 2, True), (16, 1, False)], rng, order="conv_pool_act",
                           batch=7)
    fn, _ = check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)
    assert len(_folded(fn)[0]) == 2


ABSORB = "absorb_gradient_terms"


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "switch"])
def test_gradient_terms_go_into_the_program(act):
    """The last layer before the dense one (its gradient comes from the dense layer): T.nnet.relu's
    0.5 * g, the leaky form's two scaled terms and T.switch's fill of zeros go into its gradient's
    program, which reads the one gradient (T.switch's fill goes earlier, by canonicalize's fill_sink);
    with the rewrites excluded they stay tensors of their own. Both match the reference."""
    rng = np.random.RandomState(6)
    ins, outs, vals = _net(act, [(8, 1, True)], rng, order="conv_pool_act")
    fn = symcnn.function(ins, outs, mode="native")
    assert {"switch": "fill_sink"}.get(act, ABSORB) in {r.rewrite for r in fn.rewrite_log}
    (bwd,) = _fused(fn)[1]
    assert bwd.n_grads == 1, bwd
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)
    without = rewritten(ins, outs, Mode("native", excluding=[ABSORB, "fill_sink"]))
    assert ABSORB not in {r.rewrite for r in without.rewrite_log}
    (kept,) = _fused(without)[1]
    g_ops = [i.owner.op for i in [n for n in without.fgraph.toposort() if n.op is kept][0].inputs
             if i.owner is not None and str(i.owner.op) in ("mul", "second")]
    assert g_ops or kept.n_grads > 1, kept


def test_gradient_of_a_float64_dense_layer():
    """A float32 layer read by a float64 dense layer (the cast of its gradient goes into the product's
    kernel): the layer's gradient reads one float32 gradient; the step matches the reference."""
    rng = np.random.RandomState(7)
    x, W, b, V = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.dmatrix("V")
    h = T.nnet.relu(conv2d(x, W, border_mode="half") + b.dimshuffle("x", 0, "x", "x"))
    cost = T.dot(T.cast(h.flatten(2), "float64"), V).sum()
    ins = [x, W, b, V]
    outs = [cost] + T.grad(cost, [W, b, V])
    vals = [rng.uniform(-1, 1, (2, 3, 6, 6)).astype("float32"),
            (rng.uniform(-1, 1, (4, 3, 3, 3)) / 3).astype("float32"),
            rng.uniform(-0.2, 0.2, 4).astype("float32"), rng.uniform(-1, 1, (4 * 36, 3))]
    fn, _ = check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)
    (bwd,) = _fused(fn)[1]
    assert bwd.n_grads == 1


def test_terms_of_another_dtype_or_shape_are_not_one_gradient():
    """_one_source takes only terms of the gradients' own dtype and shape: a cast from float64, or a
    tensor of other static dims, is not the one gradient the program reads."""
    from symcnn.graph.fg import FunctionGraph
    from symcnn.rewrite.convpool_chain import _one_source
    g64 = T.TensorType("float64", shape=(2, 4, 3, 3))("g64")
    g32 = T.TensorType("float32", shape=(2, 4, 3, 3))("g32")
    for gs in ([g32, T.cast(g64, "float32")], [T.cast(g64, "float32") * 2]):
        fg = FunctionGraph([g32, g64], gs, clone=False)
        assert _one_source(fg, gs, None) is None
    scaled = g32 * 0.5
    fg = FunctionGraph([g32], [scaled, g32 + 0], clone=False)
    assert _one_source(fg, [scaled], None) is None    # g32 is read elsewhere
    fg = FunctionGraph([g32], [scaled], clone=False)
    gx, progs = _one_source(fg, [scaled], "output")
    assert gx is g32 and progs[0] is not None
