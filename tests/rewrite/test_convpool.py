"""fuse_conv_epilogue: act(pool_2d(conv2d(x, W)) + b) (any elementwise act, with or without the
pooling) and its gradient become ConvPoolAct / ConvPoolActGrad, and the fused graph compiled natively
gives what the unrewritten graph gives in the reference mode."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.layers import HiddenLayer, LeNetConvPoolLayer, LogisticRegression
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from symcnn.tensor.signal import pool

from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference, conv_act_ops, rewritten
from tests.helpers import assert_native_matches as _compare

NAME = "fuse_conv_epilogue"
RTOL, ATOL = 2e-4, 2e-5
UNFUSED = ("Conv2d", "Pool", "MaxPoolGrad", "Conv2dGradWeights", "Conv2dGradInputs")


def op_names(fn):
    return [type(n.op).__name__ for n in fn.fgraph.toposort()]


def fired(fn):
    return {r.rewrite for r in fn.rewrite_log}


def _layer_graph(xs, fs, poolsize=(2, 2), seed=0):
    rng = np.random.RandomState(seed)
    x = T.tensor4("x")
    layer = LeNetConvPoolLayer(rng, x, filter_shape=fs, image_shape=xs, poolsize=poolsize)
    layer.W.set_value(layer.W.get_value() * 4)   # larger weights: tanh' far from 1
    layer.b.set_value(rng.uniform(-0.5, 0.5, fs[0]).astype("float32"))
    return x, layer


def _inputs(xs, fs, layer, ties, seed=1):
    rng = np.random.RandomState(seed)
    if ties:
        # integer-valued x and W: exact conv values, many exact ties inside the pooling windows
        layer.W.set_value(((rng.randint(0, 2, fs) * 2 - 1) * 0.125).astype("float32"))
        return rng.randint(0, 2, xs).astype("float32")
    return rng.standard_normal(xs).astype("float32")


def _check(fns, vals):
    native, ref = fns
    got, want = native(*vals), ref(*vals)
    for k, (g, w) in enumerate(zip(got, want)):
        _compare(g, w, RTOL, ATOL * max(1.0, float(np.abs(w).max())), f"output {k}")


SHAPES = [
    # (input shape, filter shape, poolsize)
    ((2, 1, 28, 28), (5, 1, 5, 5), (2, 2)),     # LeNet layer 0 (fewer kernels)
    ((2, 20, 12, 12), (50, 20, 5, 5), (2, 2)),  # LeNet layer 1
    ((1, 3, 9, 8), (4, 3, 3, 3), (2, 2)),       # batch 1, odd conv output (7 x 6)
    ((3, 2, 10, 11), (3, 2, 2, 4), (3, 2)),     # odd sizes, non-square window; borders dropped
    ((2, 2, 7, 13), (2, 2, 3, 3), (1, 3)),
]


@pytest.mark.parametrize("ties", [True, False], ids=["ties", "random"])
@pytest.mark.parametrize("xs,fs,ps", SHAPES)
def test_layer_forward_and_gradients_match_reference(xs, fs, ps, ties):
    x, layer = _layer_graph(xs, fs, ps)
    proj = T.constant(np.random.RandomState(2).standard_normal(
        (xs[0], fs[0], (xs[2] - fs[2] + 1) // ps[0], (xs[3] - fs[3] + 1) // ps[1])).astype("float32"))
    cost = (layer.output * proj).sum() + (layer.output ** 2).sum()
    gx, gW, gb = T.grad(cost, [x, layer.W, layer.b])
    outs = [layer.output, gx, gW, gb]
    xv = _inputs(xs, fs, layer, ties)
    native = symcnn.function([x], outs, mode="native")
    ref = symcnn.function([x], outs, mode="reference")
    assert NAME in fired(native), native.rewrite_log
    names = op_names(native)
    assert "ConvPoolAct" in names and "ConvPoolActGrad" in names
    assert not set(UNFUSED) & set(names), names
    bw = [n for n in native.fgraph.toposort() if isinstance(n.op, ConvPoolActGrad)]
    assert bw[0].op.need_gx and not bw[0].op.reads_z   # tanh's derivative reads out only: no z kept
    _check((native, ref), [xv])
    if ties:
        mask = [n for n in native.fgraph.toposort() if isinstance(n.op, ConvPoolAct)][0]
        assert mask.outputs[1].dtype == ("uint8" if ps[0] * ps[1] <= 8 else "uint16")


def test_ties_really_occur():
    """The integer-valued inputs above produce windows with several maxima."""
    xs, fs = (1, 3, 9, 8), (4, 3, 3, 3)
    x, layer = _layer_graph(xs, fs)
    xv = _inputs(xs, fs, layer, True)
    op = conv_act_ops("tanh", ws=(2, 2))[0]
    f = symcnn.function([x], op(x, layer.W, layer.b)[1], mode="reference")
    bits = np.unpackbits(f(xv).astype(np.uint8)[..., None], axis=-1).sum(-1)
    assert (bits > 1).sum() >= 0.1 * bits.size, (bits > 1).sum()


def test_forward_only_graph_fuses_and_exclusion_stops_it():
    xs, fs = (3, 2, 11, 9), (4, 2, 4, 2)
    x, layer = _layer_graph(xs, fs)
    xv = _inputs(xs, fs, layer, True)
    native = symcnn.function([x], layer.output, mode="native")
    assert NAME in fired(native)
    assert [n for n in op_names(native) if n not in ("DimShuffle",)] == ["ConvPoolAct"]
    _check((native, symcnn.function([x], layer.output, mode="reference")), [xv])
    without = symcnn.function([x], layer.output, mode=Mode("native", excluding=[NAME]))
    assert NAME not in fired(without)
    assert "Conv2d" in op_names(without) and "ConvPoolAct" not in op_names(without)
    np.testing.assert_allclose(without(xv), native(xv), rtol=RTOL, atol=ATOL)


def test_gradient_without_gx_and_exclusion():
    xs, fs = (2, 1, 12, 12), (3, 1, 5, 5)
    x, layer = _layer_graph(xs, fs)
    cost = (layer.output ** 2).sum()
    outs = T.grad(cost, [layer.W, layer.b])
    native = symcnn.function([x], [cost] + outs, mode="native")
    bw = [n for n in native.fgraph.toposort() if isinstance(n.op, ConvPoolActGrad)]
    assert len(bw) == 1 and not bw[0].op.need_gx and len(bw[0].outputs) == 2
    xv = _inputs(xs, fs, layer, True)
    _check((native, symcnn.function([x], [cost] + outs, mode="reference")), [xv])
    without = rewritten([x], [cost] + outs, Mode("native", excluding=[NAME]))
    assert {"MaxPoolGrad", "Conv2dGradWeights"} <= set(op_names(without))


@pytest.mark.parametrize("pooled", [True, False])
def test_dilated_convolution_is_left_to_conv2d(pooled):
    """A dilated conv -> (pool ->) bias -> ReLU layer and its gradients are not fused (the fused kernels
    take undilated filters): the dilated Conv2d and its gradient ops stay, natively as the reference."""
    rng = np.random.RandomState(4)
    x, W, b = T.ftensor4("x"), T.ftensor4("W"), T.fvector("b")
    z = conv2d(x, W, border_mode="half", filter_dilation=(2, 2))
    if pooled:
        z = pool.pool_2d(z, ws=(2, 2), ignore_border=True)
    out = T.nnet.relu(z + b.dimshuffle("x", 0, "x", "x"))
    cost = (out ** 2).sum()
    gx, gW, gb = T.grad(cost, [x, W, b])
    vals = [rng.standard_normal((3, 16, 12, 12)).astype("float32"),
            rng.standard_normal((20, 16, 3, 3)).astype("float32"), rng.standard_normal(20).astype("float32")]
    fn, _ = check_native_vs_reference([x, W, b], [out, gx, gW, gb], vals, rtol=RTOL, atol=2e-3)
    names = op_names(fn)
    assert "ConvPoolAct" not in names and "ConvPoolActGrad" not in names, names
    convs = [n.op for n in fn.fgraph.toposort() if type(n.op).__name__.startswith("Conv2d")]
    assert sorted(type(c).__name__ for c in convs) == ["Conv2d", "Conv2dGradInputs", "Conv2dGradWeights"]
    assert all(c.filter_dilation == (2, 2) for c in convs)


def test_does_not_fire_outside_its_pattern():
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    c = conv2d(x, W)
    cases = {
        "ignore_border=False": T.tanh(pool.pool_2d(c, ws=(2, 2), ignore_border=False)
                                      + b.dimshuffle("x", 0, "x", "x")),
        "padding": T.tanh(pool.pool_2d(c, ws=(2, 2), pad=(1, 1), ignore_border=True)
                          + b.dimshuffle("x", 0, "x", "x")),
        "window > 32": T.tanh(pool.pool_2d(c, ws=(6, 6), ignore_border=True) + b.dimshuffle("x", 0, "x", "x")),
    }
    for what, out in cases.items():
        fn = symcnn.function([x, W, b], out, mode="native")
        assert NAME not in fired(fn), what
    # the pooled values are also an output: fusing would still need them
    p = pool.pool_2d(c, ws=(2, 2), ignore_border=True)
    fn = symcnn.function([x, W, b], [T.tanh(p + b.dimshuffle("x", 0, "x", "x")), p], mode="native")
    assert NAME not in fired(fn)
    # the tanh derivative is also read elsewhere: forward and backward stay unfused together
    out = T.tanh(p + b.dimshuffle("x", 0, "x", "x"))
    gW = T.grad((out ** 2).sum(), W)
    conv_g = T.grad((out ** 2).sum(), c)
    fn = symcnn.function([x, W, b], [gW, conv_g * 2], mode="native")
    assert NAME not in fired(fn) and "Conv2d" in op_names(fn)


# -- the LeNet of benchmarks/bench_lenet.py ------------------------------------------------------

def _lenet(batch, nkerns, mode, data_x, data_y):
    rng = np.random.RandomState(23455)
    index = T.lscalar()
    x = T.matrix("x")
    y = T.ivector("y")
    layer0 = LeNetConvPoolLayer(rng, input=x.reshape((batch, 1, 28, 28)), image_shape=(batch, 1, 28, 28),
                                filter_shape=(nkerns[0], 1, 5, 5), poolsize=(2, 2))
    layer1 = LeNetConvPoolLayer(rng, input=layer0.output, image_shape=(batch, nkerns[0], 12, 12),
                                filter_shape=(nkerns[1], nkerns[0], 5, 5), poolsize=(2, 2))
    layer2 = HiddenLayer(rng, input=layer1.output.flatten(2), n_in=nkerns[1] * 4 * 4, n_out=50, activation=T.tanh)
    layer3 = LogisticRegression(input=layer2.output, n_in=50, n_out=10)
    cost = layer3.negative_log_likelihood(y)
    params = layer3.params + layer2.params + layer1.params + layer0.params
    grads = T.grad(cost, params)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]
    sx = symcnn.shared(data_x, borrow=True)
    sy = symcnn.shared(data_y, borrow=True)
    givens = {x: sx[index * batch:(index + 1) * batch], y: sy[index * batch:(index + 1) * batch]}
    train = symcnn.function([index], cost, updates=updates, givens=givens, mode=mode)
    validate = symcnn.function([index], layer3.errors(y), givens=givens, mode=mode)
    return train, validate, params


@pytest.fixture(scope="module")
def lenet_data():
    rng = np.random.RandomState(0)
    batch = 20
    return batch, rng.rand(3 * batch, 784).astype("float32"), rng.randint(0, 10, 3 * batch).astype("int32")


def test_lenet_train_function_is_fused(lenet_data):
    batch, dx, dy = lenet_data
    train, validate, _ = _lenet(batch, (6, 8), "native", dx, dy)
    nodes = train.fgraph.toposort()
    names = [type(n.op).__name__ for n in nodes]
    assert names.count("ConvPoolAct") == 2 and names.count("ConvPoolActGrad") == 2, names
    assert not set(UNFUSED) & set(names), names
    needs = sorted(n.op.need_gx for n in nodes if isinstance(n.op, ConvPoolActGrad))
    assert needs == [False, True]   # layer 0's input is data: no gx
    # no separate bias add / tanh / tanh' pass over a conv layer's activations (batch-sized 4-d
    # arrays); the remaining 4-d Elemwise nodes are the SGD updates of W0 and W1
    for n in nodes:
        if isinstance(n.op, Elemwise) and n.outputs[0].ndim == 4:
            assert n.outputs[0].type.shape[0] != batch, n.op
            assert not any(i.owner is not None and isinstance(i.owner.op, (ConvPoolAct, ConvPoolActGrad))
                           and i.ndim == 4 and i.type.shape[0] == batch for i in n.inputs), n.op
    vnames = [type(n.op).__name__ for n in validate.fgraph.toposort()]
    assert vnames.count("ConvPoolAct") == 2 and not set(UNFUSED) & set(vnames)
    assert NAME in fired(train) and NAME in fired(validate)


def test_lenet_sgd_steps_match_reference(lenet_data):
    batch, dx, dy = lenet_data
    train_n, val_n, params_n = _lenet(batch, (6, 8), "native", dx, dy)
    train_r, val_r, params_r = _lenet(batch, (6, 8), "reference", dx, dy)
    for step in range(4):
        cn, cr = train_n(step % 3), train_r(step % 3)
        np.testing.assert_allclose(cn, cr, rtol=1e-4, atol=1e-5)
    for pn, pr in zip(params_n, params_r):
        np.testing.assert_allclose(pn.get_value(), pr.get_value(), rtol=1e-3, atol=1e-5)
    assert val_n(0) == val_r(0)


# -- every activation, with and without pooling: the whole compiled train graph ---------------------

# (x shape, W shape, conv kwargs, static shapes): im2col paths (strides, 'half'/'full'/pads, batch
# 1 and odd batches) and the direct-convolution path (static 'valid', unit stride)
GEOMETRIES = [
    ((3, 2, 9, 8), (4, 2, 3, 3), dict(border_mode="half", subsample=(2, 1)), False),
    ((1, 3, 8, 9), (5, 3, 3, 2), dict(border_mode="full"), False),
    ((5, 2, 11, 10), (3, 2, 2, 3), dict(border_mode=(1, 0), filter_flip=False), False),
    ((7, 2, 13, 14), (6, 2, 3, 4), {}, True),
    ((1, 1, 12, 12), (4, 1, 5, 5), {}, True),
]


def _act_graph(act, pooled, geometry, dtype, order="tutorial", seed=0, mode="max"):
    """A conv layer with `act` (a CONV_ACTIVATIONS name), a cost that reads its output twice, and
    the gradients with respect to x, W and b; the inputs, outputs and values."""
    xs, ws, conv, static = geometry
    rng = np.random.RandomState(seed)
    x = T.TensorType(dtype, (None,) * 4)("x")
    W = symcnn.shared((rng.standard_normal(ws) * 0.5).astype(dtype), name="W")
    b = symcnn.shared(rng.uniform(-0.5, 0.5, ws[0]).astype(dtype), name="b")
    kw = dict(conv, input_shape=xs, filter_shape=ws) if static else conv
    c = conv2d(x, W, **kw)
    f = CONV_ACTIVATIONS[act]
    bias = b.dimshuffle("x", 0, "x", "x")
    if not pooled:
        h = f(c + bias)
    elif order == "tutorial":
        h = f(pool.pool_2d(c, ws=(2, 2), ignore_border=True) + bias)
    else:   # conv -> bias -> act -> pool
        h = pool.pool_2d(f(c + bias), ws=(2, 2), ignore_border=True, mode=mode)
    cost = (h * h).sum() + T.tanh(h).sum()
    gx, gW, gb = T.grad(cost, [x, W, b])
    xv = rng.randint(-2, 3, xs).astype(dtype)   # integer-valued: exact ties in the pooling windows
    return [x], [cost, h, gx, gW, gb], [xv]


def _assert_fused(fn, pooled_op):
    names = op_names(fn)
    assert NAME in fired(fn), fn.rewrite_log
    assert "ConvPoolAct" in names and "ConvPoolActGrad" in names, names
    assert not {"Conv2d", "Conv2dGradWeights", "Conv2dGradInputs"} & set(names), names
    fwd = [n.op for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolAct)][0]
    assert (fwd.pool is not None) == pooled_op
    return fwd


@pytest.mark.parametrize("pooled", [True, False], ids=["pool", "nopool"])
@pytest.mark.parametrize("act", sorted(CONV_ACTIVATIONS))
def test_every_activation_fuses_and_matches_reference(act, pooled):
    k = sorted(CONV_ACTIVATIONS).index(act) + (0 if pooled else 1)
    dtype = ("float32", "float64")[k % 2]
    geometry = GEOMETRIES[k % len(GEOMETRIES)]
    ins, outs, vals = _act_graph(act, pooled, geometry, dtype)
    fn = symcnn.function(ins, outs, mode="native")
    fwd = _assert_fused(fn, pooled)
    # tanh's and sigmoid's derivatives read out only; ReLU's read z, which the forward then keeps
    assert fwd.keep_z == (act not in ("tanh", "sigmoid", "identity", "scale")), fwd
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    check_native_vs_reference(ins, outs, vals, **tol)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("act,pooled,dtype", [("maximum", True, "float32"), ("sigmoid", False, "float64"),
                                              ("leaky_relu", False, "float32")])
def test_geometries(act, pooled, dtype, geometry):
    ins, outs, vals = _act_graph(act, pooled, geometry, dtype, seed=1)
    _assert_fused(symcnn.function(ins, outs, mode="native"), pooled)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    check_native_vs_reference(ins, outs, vals, **tol)


@pytest.mark.parametrize("mode", ["average_exc_pad", "average_inc_pad", "sum"])
@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_average_pooling_fuses(act, mode):
    """The tutorial order with an average (or sum) pool: one kernel each way, no tie mask."""
    for geometry in (GEOMETRIES[0], GEOMETRIES[3]):
        xs, ws, conv, static = geometry
        rng = np.random.RandomState(0)
        x = T.tensor4("x")
        W = symcnn.shared((rng.standard_normal(ws) * 0.5).astype("float32"), name="W")
        b = symcnn.shared(rng.uniform(-0.5, 0.5, ws[0]).astype("float32"), name="b")
        c = conv2d(x, W, **(dict(conv, input_shape=xs, filter_shape=ws) if static else conv))
        h = CONV_ACTIVATIONS[act](pool.pool_2d(c, ws=(2, 2), stride=(2, 1), ignore_border=True, mode=mode)
                                  + b.dimshuffle("x", 0, "x", "x"))
        cost = (h * h).sum()
        outs = [cost, h] + T.grad(cost, [x, W, b])
        fn = symcnn.function([x], outs, mode="native")
        fwd = _assert_fused(fn, True)
        assert fwd.pool == mode and fwd.output_roles()[:2] != ["out", "mask"]
        assert not {"Pool", "AveragePoolGrad"} & set(op_names(fn))
        check_native_vs_reference([x], outs, [rng.standard_normal(xs).astype("float32")], rtol=2e-4, atol=2e-4)


POOLS = ("Pool", "MaxPoolGrad", "AveragePoolGrad")


@pytest.mark.parametrize("act,mode", [(a, "max") for a in sorted(CONV_ACTIVATIONS)]
                         + [("maximum", m) for m in ("average_inc_pad", "average_exc_pad", "sum")]
                         + [("tanh", "average_exc_pad"), ("sigmoid", "sum")])
def test_pooling_after_the_activation_fuses(act, mode):
    """conv -> bias -> act -> pool (the order PyTorch users write): one ConvPoolAct with the pooling
    after the activation and one ConvPoolActGrad; no Pool, MaxPoolGrad or AveragePoolGrad left, and
    the results of the unrewritten graph."""
    k = sorted(CONV_ACTIVATIONS).index(act)
    dtype = ("float32", "float64")[k % 2]
    geometry = GEOMETRIES[(k + len(mode)) % len(GEOMETRIES)]
    ins, outs, vals = _act_graph(act, True, geometry, dtype, order="conv_act_pool", mode=mode)
    fn = symcnn.function(ins, outs, mode="native")
    fwd = _assert_fused(fn, True)
    assert fwd.pool == mode and fwd.order == "act_pool", fwd
    assert not set(POOLS) & set(op_names(fn)), op_names(fn)
    # what the forward keeps at full resolution for the derivative: z (ReLU-like derivatives; the
    # graph's T.maximum one reads act too, which the backward computes from z again), act (tanh's,
    # sigmoid's), or nothing
    bwd = [n.op for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolActGrad)][0]
    assert not (fwd.keep_z and fwd.keep_act)
    assert fwd.keep_z == bwd.reads_z and fwd.keep_act == (bwd.reads_out and not bwd.reads_z)
    if act in ("tanh", "sigmoid"):
        assert fwd.keep_act
    if act in ("maximum", "relu", "leaky_relu", "mul_gt", "switch"):
        assert fwd.keep_z
    if act == "maximum":
        assert bwd.recompute_act
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    check_native_vs_reference(ins, outs, vals, **tol)


def test_pooling_after_the_activation_forward_only():
    """validate/test functions: the forward fuses with its pooling, keeping nothing at full resolution."""
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    rng = np.random.RandomState(0)
    vals = [rng.randint(-2, 3, (3, 2, 9, 10)).astype("float32"), rng.randint(-1, 2, (4, 2, 3, 3)).astype("float32"),
            rng.randint(-1, 2, 4).astype("float32")]
    for act in ("maximum", "tanh", "identity"):
        for mode in ("max", "average_exc_pad"):
            out = pool.pool_2d(CONV_ACTIVATIONS[act](conv2d(x, W) + b.dimshuffle("x", 0, "x", "x")), ws=(3, 2),
                               stride=(2, 2), ignore_border=True, mode=mode)
            fn = symcnn.function([x, W, b], out.flatten(2).max(axis=1), mode="native")
            nodes = [n for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolAct)]
            assert len(nodes) == 1 and nodes[0].op.order == "act_pool", (act, mode)
            assert nodes[0].op.output_roles() == ["out"]   # (no tie mask: nothing reads it)
            assert not {"Conv2d", "Pool"} & set(op_names(fn)), op_names(fn)
            check_native_vs_reference([x, W, b], out, vals, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["maximum", "tanh"])
def test_activation_read_elsewhere_keeps_the_pool(act):
    """conv -> bias -> act -> pool where the activation itself is read by something else too: it is
    needed at full resolution anyway, so the activation fuses without the pooling, which stays a
    Pool op (with its tie-routing gradient)."""
    xs, ws, conv, static = GEOMETRIES[3]
    rng = np.random.RandomState(0)
    x = T.tensor4("x")
    W = symcnn.shared((rng.standard_normal(ws) * 0.5).astype("float32"), name="W")
    b = symcnn.shared(rng.uniform(-0.5, 0.5, ws[0]).astype("float32"), name="b")
    a = CONV_ACTIVATIONS[act](conv2d(x, W, input_shape=xs, filter_shape=ws) + b.dimshuffle("x", 0, "x", "x"))
    h = pool.pool_2d(a, ws=(2, 2), ignore_border=True)
    cost = (h * h).sum() + (a * a).sum()
    ins, vals = [x], [rng.randint(-2, 3, xs).astype("float32")]
    outs = [cost, h] + T.grad(cost, [x, W, b])
    fn = symcnn.function(ins, outs, mode="native")
    _assert_fused(fn, False)
    assert {"Pool", "MaxPoolGrad"} <= set(op_names(fn))
    check_native_vs_reference(ins, outs, vals, rtol=2e-4, atol=2e-4)


def test_forward_only_graph_of_every_activation():
    """validate/test functions: the forward fuses alone, keeping no z (nothing reads it)."""
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    rng = np.random.RandomState(0)
    vals = [rng.standard_normal((3, 2, 8, 9)).astype("float32"), rng.standard_normal((4, 2, 3, 3)).astype("float32"),
            rng.standard_normal(4).astype("float32")]
    for act, f in CONV_ACTIVATIONS.items():
        for pooled in (True, False):
            c = conv2d(x, W)
            z = (pool.pool_2d(c, ws=(2, 2), ignore_border=True) if pooled else c) + b.dimshuffle("x", 0, "x", "x")
            out = f(z).flatten(2).max(axis=1)
            fn = symcnn.function([x, W, b], out, mode="native")
            nodes = [n for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolAct)]
            assert len(nodes) == 1 and not nodes[0].op.keep_z and "Conv2d" not in op_names(fn), (act, pooled)
            check_native_vs_reference([x, W, b], out, vals, rtol=1e-4, atol=1e-5)


def test_no_bias_fuses_the_activation():
    x, W = T.tensor4("x"), T.tensor4("W")
    rng = np.random.RandomState(0)
    vals = [rng.standard_normal((2, 2, 8, 9)).astype("float32"), rng.standard_normal((4, 2, 3, 3)).astype("float32")]
    for pooled in (True, False):
        c = conv2d(x, W)
        h = T.maximum(pool.pool_2d(c, ws=(2, 2), ignore_border=True) if pooled else c, 0)
        cost = (h * h).sum()
        outs = [cost] + T.grad(cost, [x, W])
        fn = symcnn.function([x, W], outs, mode="native")
        fwd = [n.op for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolAct)]
        assert len(fwd) == 1 and not fwd[0].has_bias and "ConvPoolActGrad" in op_names(fn)
        check_native_vs_reference([x, W], outs, vals, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cost", ["times_g", "squares"])
@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
@pytest.mark.parametrize("act,pooled", [("maximum", False), ("tanh", False), ("maximum", True), ("sigmoid", True)])
def test_gradients_alone_fuse(act, pooled, static, cost):
    """Only the gradients are outputs, of a cost that sums the layer's output times a tensor g, or
    its squares: nothing but the gradients reads the forward, and T.grad's fills go (useless_fill,
    fill_sink) or sink into the gradient's program. The squares' gradient reads no tensor of its
    own (dact of z and out alone)."""
    rng = np.random.RandomState(0)
    xs, ws = (3, 4, 9, 8), (5, 4, 3, 3)
    x = T.tensor4("x", shape=xs if static else None)
    g = T.tensor4("g")
    W = symcnn.shared(rng.standard_normal(ws).astype("float32") * 0.3, name="W")
    b = symcnn.shared(rng.standard_normal(5).astype("float32"), name="b")
    c = conv2d(x, W, border_mode="half", **(dict(input_shape=xs, filter_shape=ws) if static else {}))
    if pooled:
        c = pool.pool_2d(c, ws=(2, 2), ignore_border=True)
    h = CONV_ACTIVATIONS[act](c + b.dimshuffle("x", 0, "x", "x"))
    outs = T.grad(T.sum(h * g) if cost == "times_g" else T.sum(h ** 2), [x, W, b])
    fn = symcnn.function([x, g], outs, mode="native", on_unused_input="ignore")
    names = op_names(fn)
    assert "ConvPoolAct" in names and "ConvPoolActGrad" in names and "Sum" not in names, names
    bwd = [n.op for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolActGrad)][0]
    assert bwd.n_grads == (1 if cost == "times_g" else 0), bwd
    gs = (3, 5, 4, 4) if pooled else (3, 5, 9, 8)
    vals = [rng.standard_normal(xs).astype("float32"), rng.standard_normal(gs).astype("float32")]
    check_native_vs_reference([x, g], outs, vals, rtol=1e-4, atol=1e-4, on_unused_input="ignore")


@pytest.mark.parametrize("pooled", [False, True], ids=["nopool", "pool"])
def test_gradient_reading_no_tensor_verify_grad(pooled):
    """The fused gradient of sum(h ** 2) reads no gradient tensor (n_grads 0): its own gradient,
    with x and the forward values it reads as independent inputs, checks numerically."""
    rng = np.random.RandomState(3)
    xs, ws = (2, 3, 6, 6), (4, 3, 3, 3)
    x = T.dtensor4("x", shape=xs)
    W = symcnn.shared(rng.standard_normal(ws) * 0.3, name="W")
    b = symcnn.shared(rng.standard_normal(4) * 0.5, name="b")
    c = conv2d(x, W, border_mode="half", input_shape=xs, filter_shape=ws)
    h = T.tanh((pool.pool_2d(c, ws=(2, 2), ignore_border=True) if pooled else c) + b.dimshuffle("x", 0, "x", "x"))
    fn = symcnn.function([x], T.grad(T.sum(h ** 2), W))
    (node,) = [n for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolActGrad)]
    assert node.op.n_grads == 0, node.op
    xv = rng.standard_normal(xs)
    rest = symcnn.function([x], node.inputs[2:])(xv)
    Wc = T.constant(W.get_value())

    def fun(x_, *forward):
        if pooled:   # the ties of this x (piecewise constant: no gradient)
            forward = (node.inputs[2].owner.op(x_, Wc, b.get_value())[1],) + forward[1:]
        outs = node.op(x_, Wc, *forward)
        return outs[0] if isinstance(outs, (list, tuple)) else outs
    symcnn.verify_grad(fun, [xv] + [np.asarray(v, dtype="float64") for v in rest], mode="reference", rng=rng)


def test_does_not_fire_on_graphs_it_cannot_replace():
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    c = conv2d(x, W)
    bias = b.dimshuffle("x", 0, "x", "x")
    cases = {
        # a bare convolution (no bias, no activation) is Conv2d's
        "bare conv": [c],
        "bare conv, pooled": [pool.pool_2d(c, ws=(2, 2), ignore_border=True)],
        # the pooled values are also read elsewhere: the unfused forward would stay alive
        "pooled read elsewhere": [T.maximum(pool.pool_2d(c, ws=(2, 2), ignore_border=True) + bias, 0),
                                  pool.pool_2d(c, ws=(2, 2), ignore_border=True).sum()],
        # the conv output itself is read by something else
        "conv read elsewhere": [T.tanh(c + bias), c.sum()],
    }
    for what, outs in cases.items():
        fn = symcnn.function([x, W, b], outs, mode="native", on_unused_input="ignore")
        assert NAME not in fired(fn), what
        assert "ConvPoolAct" not in op_names(fn), what
    # the gradient of the pre-activation is also read elsewhere: forward and backward stay unfused
    h = T.maximum(c + bias, 0)
    cost = (h * h).sum()
    gz = T.grad(cost, c)
    fn = symcnn.function([x, W, b], T.grad(cost, [W, b]) + [gz.sum()], mode="native")
    assert NAME not in fired(fn) and "Conv2d" in op_names(fn)


def test_composite_comes_from_the_graph():
    """An activation no table lists (a softsign-like chain of several ops with its own constants)
    fuses all the same: the program is the graph's."""
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    z = pool.pool_2d(conv2d(x, W), ws=(2, 2), ignore_border=True) + b.dimshuffle("x", 0, "x", "x")
    h = 1.5 * z / (1 + abs(z)) - 0.25 * T.exp(-z * z)
    cost = (h * h).sum()
    outs = [cost] + T.grad(cost, [x, W, b])
    fn = symcnn.function([x, W, b], outs, mode="native")
    fwd = [n.op for n in fn.fgraph.toposort() if isinstance(n.op, ConvPoolAct)]
    assert len(fwd) == 1 and "ConvPoolActGrad" in op_names(fn)
    assert len(fwd[0].act.steps) >= 8
    rng = np.random.RandomState(0)
    vals = [rng.standard_normal((2, 2, 8, 9)).astype("float32"), rng.standard_normal((4, 2, 3, 3)).astype("float32"),
            rng.standard_normal(4).astype("float32")]
    check_native_vs_reference([x, W, b], outs, vals, rtol=1e-4, atol=1e-4)
