"""move_activation_to_consumers: a fused layer whose gradient reads z and whose activation feeds
only other fused convolutions stores z alone; its readers apply the activation (in_act), and the
training step gives what the unrewritten graph gives in the reference mode."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from symcnn.tensor.signal import pool

from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference

NAME = "move_activation_to_consumers"


def _net(act, layers, rng, dense=True, pool_first=None, order="conv_act_pool"):
    """x -> conv layers ((out channels, subsample, pooled) each, 3x3 'half', bias, act) [-> dense]
    and the SGD step's cost and gradients: (inputs, outputs, values)."""
    x = T.tensor4("x")
    h, c, params, vals = x, 3, [], [rng.uniform(-1, 1, (2, 3, 10, 10)).astype("float32")]
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
