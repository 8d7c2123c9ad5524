"""ConvPoolAct / ConvPoolActGrad with the pooling after the activation (order='act_pool': conv ->
+ bias -> act -> pool): native kernels against the numpy reference, and verify_grad of both ops.
The reference itself is checked against the unfused graph (conv2d, add, the activation, pool_2d
and their gradients)."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.conv_epilogue import program_of
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from symcnn.tensor.signal import pool

from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference, conv_act_apply, conv_act_ops, target  # noqa: F401

MODES = ["max", "average_inc_pad", "average_exc_pad", "sum"]

# (x shape, W shape, conv kwargs, pool kwargs, static): im2col (strides, 'full'), the direct kernel
# ('valid' static), the padded direct kernel ('half' static), batch 1 and odd batches, odd conv
# outputs (windows that leave the last row / column out), overlapping and non-square windows
GEOMETRIES = [
    ((3, 2, 9, 8), (4, 2, 3, 3), dict(border_mode="half", subsample=(2, 1)), dict(ws=(2, 2)), False),
    ((1, 3, 8, 9), (5, 3, 3, 2), dict(border_mode="full", filter_flip=False), dict(ws=(3, 2), stride=(1, 2)), False),
    ((5, 2, 13, 14), (6, 2, 3, 4), {}, dict(ws=(2, 2)), True),                  # 11 x 11: odd
    ((1, 1, 12, 12), (3, 1, 5, 5), {}, dict(ws=(2, 2)), True),
    ((3, 4, 12, 12), (8, 4, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), True),
    ((2, 3, 11, 10), (4, 3, 3, 3), dict(border_mode="half"), dict(ws=(3, 3), stride=(2, 2)), True),
]


def _values(xs, ws, dtype, seed=0):
    """Integer-valued x and W (exact conv values: many ties) and a bias that leaves about half the
    values negative, so ReLU's windows of zeros occur."""
    rng = np.random.RandomState(seed)
    x = rng.randint(-2, 3, xs).astype(dtype)
    W = (rng.randint(-1, 2, ws) * 0.5).astype(dtype)
    b = rng.randint(-2, 2, ws[0]).astype(dtype)
    return x, W, b


def _symbols(dtype):
    return (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
            T.TensorType(dtype, (None,))("b"), T.TensorType(dtype, (None,) * 4)("g"))


def _ops(act, dtype, conv, pool_kw, static, xs, ws, mode="max", bias=True):
    kw = dict(conv, **pool_kw, pool=mode, order="act_pool", has_bias=bias)
    if static:
        kw.update(imshp=xs, kshp=ws)
    return conv_act_ops(act, dtype, **kw)


def _check(ops, xs, ws, dtype, seed=0):
    fwd, bwd, bwd_nogx = ops
    x, W, b, g = _symbols(dtype)
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    _, grads2 = conv_act_apply(fwd, bwd_nogx, x, W, b, g)
    xv, Wv, bv = _values(xs, ws, dtype, seed)
    ins, vals = ([x, W, b], [xv, Wv, bv]) if fwd.has_bias else ([x, W], [xv, Wv])
    ref = symcnn.function(ins, fouts, mode="reference")(*vals)
    gv = np.random.RandomState(seed + 3).standard_normal(ref[0].shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    check_native_vs_reference(ins + [g], fouts + grads + grads2, vals + [gv], **tol)
    return dict(zip(fwd.output_roles(), ref))


def test_reference_is_the_unfused_graph():
    """perform of both ops gives what conv2d -> + b -> act -> pool_2d and T.grad of it give."""
    rng = np.random.RandomState(0)
    for act in ("maximum", "tanh", "identity"):
        for mode in MODES:
            fwd, bwd, _ = conv_act_ops(act, "float64", pool=mode, ws=(2, 2), stride=(2, 1), order="act_pool")
            x, W, b, g = _symbols("float64")
            fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
            h = pool.pool_2d(CONV_ACTIVATIONS[act](conv2d(x, W) + b.dimshuffle("x", 0, "x", "x")), ws=(2, 2),
                             stride=(2, 1), ignore_border=True, mode=mode)
            want = [h] + T.grad(None, [W, b, x], known_grads={h: g})
            fn = symcnn.function([x, W, b, g], [fouts[0]] + grads + want, mode="reference")
            xv, Wv, bv = _values((2, 2, 7, 8), (3, 2, 3, 3), "float64")
            res = fn(xv, Wv, bv, rng.standard_normal((2, 3, 2, 5)))
            for got, exp in zip(res[:4], res[4:]):
                np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12, err_msg=f"{act} {mode}")


# every geometry with each activation; each activation and each geometry in both dtypes
AFTER_ACT = [(act, *case, ("float32", "float64")[(a + g) % 2])
             for g, case in enumerate(GEOMETRIES) for a, act in enumerate(["maximum", "tanh", "sigmoid", "leaky_relu"])]


@pytest.mark.parametrize("act,xs,ws,conv,pool_kw,static,dtype", AFTER_ACT)
def test_max_pool_after_act_matches_reference(act, xs, ws, conv, pool_kw, static, dtype):
    _check(_ops(act, dtype, conv, pool_kw, static, xs, ws), xs, ws, dtype)


@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("xs,ws,conv,pool_kw,static", GEOMETRIES[::2] + [GEOMETRIES[4]])
def test_average_pools_after_act_match_reference(mode, xs, ws, conv, pool_kw, static):
    for act, dtype in (("relu", "float32"), ("tanh", "float64")):
        _check(_ops(act, dtype, conv, pool_kw, static, xs, ws, mode=mode), xs, ws, dtype)


@pytest.mark.parametrize("act", sorted(CONV_ACTIVATIONS))
def test_every_activation(act):
    k = sorted(CONV_ACTIVATIONS).index(act)
    xs, ws, conv, pool_kw, static = GEOMETRIES[k % len(GEOMETRIES)]
    dtype = ("float32", "float64")[k % 2]
    _check(_ops(act, dtype, conv, pool_kw, static, xs, ws), xs, ws, dtype)


@pytest.mark.parametrize("xs,ws,conv,pool_kw,static", [GEOMETRIES[0], GEOMETRIES[4]])
def test_relu_ties_among_zeros(xs, ws, conv, pool_kw, static):
    """ReLU's windows of zeros: every zero is a tied maximum of the activated values and gets the
    gradient (then multiplied by the derivative at its z); the tie mask is that of the activated
    values, not of the conv values."""
    ref = _check(_ops("maximum", "float32", conv, pool_kw, static, xs, ws), xs, ws, "float32")
    bits = np.unpackbits(ref["mask"][..., None], axis=-1).sum(-1)
    zeros = ref["out"] == 0
    assert (bits[zeros] == 4).mean() > 0.5 and zeros.mean() > 0.1, (zeros.mean(), bits[zeros])
    assert (bits[~zeros] > 1).any()   # ties among positive values too


def _dact_reading_z_and_act(dtype):
    """ReLU's derivative as T.grad writes it for T.maximum(z, 0) in a graph: it reads both z and the
    activation (g * (act == z)); the forward then keeps only z and the backward computes act(z)."""
    return program_of(lambda z, a, g: g * T.cast(T.eq(a, z), dtype), dtype, nin=3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs,ws,conv,pool_kw,static", GEOMETRIES[:1] + GEOMETRIES[2:5])
def test_derivative_reading_z_and_act(xs, ws, conv, pool_kw, static, dtype):
    kw = dict(conv, **pool_kw, order="act_pool", imshp=xs if static else None, kshp=ws if static else None)
    act = program_of(CONV_ACTIVATIONS["maximum"], dtype)
    dact = _dact_reading_z_and_act(dtype)
    fwd = ConvPoolAct(act=act, keep_z=True, **kw)
    bwd = ConvPoolActGrad(act=act, dact=dact, **kw)
    assert bwd.recompute_act and "act" not in bwd.input_roles() and "z" in bwd.input_roles()
    ops = (fwd, bwd, ConvPoolActGrad(act=act, dact=dact, need_gx=False, **kw))
    _check(ops, xs, ws, dtype)


def test_without_bias():
    xs, ws, conv, pool_kw, static = GEOMETRIES[2]
    for act in ("maximum", "tanh"):
        for mode in ("max", "sum"):
            _check(_ops(act, "float32", conv, pool_kw, static, xs, ws, mode=mode, bias=False), xs, ws, "float32")


def test_shapes_and_errors():
    fwd, bwd, _ = conv_act_ops("tanh", "float64", ws=(3, 2), stride=(2, 2), order="act_pool")
    assert fwd.output_roles() == ["out", "mask", "act"] and bwd.input_roles() == ["x", "W", "b", "mask", "act", "g0"]
    x, W, b, g = _symbols("float64")
    out, mask, act = fwd(x, W, b)
    xv, Wv, bv = _values((2, 3, 9, 8), (4, 3, 3, 3), "float64")
    fn = symcnn.function([x, W, b], [out.shape, mask.shape, act.shape, out, act], mode="reference")
    s_out, s_mask, s_act, o, a = fn(xv, Wv, bv)
    assert tuple(s_out) == tuple(s_mask) == o.shape == (2, 4, 3, 3) and tuple(s_act) == a.shape == (2, 4, 7, 6)
    # a pooled-shaped act, or a conv-shaped gradient, is a clear error, natively too
    gv = np.zeros((2, 4, 3, 3))
    bfn = symcnn.function([x, W, b, g], bwd(x, W, b, mask, act, g), mode="native")
    with pytest.raises(ValueError):
        bfn(xv, Wv, bv, np.zeros((2, 4, 7, 6)))
    assert [r.shape for r in bfn(xv, Wv, bv, gv)] == [(4, 3, 3, 3), (4,), (2, 3, 9, 8)]
    static = ConvPoolActGrad(ws=(3, 2), stride=(2, 2), order="act_pool", imshp=(2, 3, 9, 8), kshp=(4, 3, 3, 3),
                             act=fwd.act, dact=bwd.dact)
    with pytest.raises(ValueError, match="conv output has shape"):
        static(x, W, b, mask, T.TensorType("float64", (2, 4, 3, 3))(), g)
    with pytest.raises(TypeError, match="3 inputs"):
        ConvPoolActGrad(ws=(2, 2), order="act_pool", dact=program_of(lambda z, o, g1, g2: g1 + g2, "float64", nin=4))
    with pytest.raises(ValueError, match="keep_act"):
        ConvPoolAct(ws=(2, 2), keep_act=True)
    with pytest.raises(ValueError, match="order"):
        ConvPoolAct(ws=(2, 2), order="act_then_pool")
    # without pooling the two orders are one op
    assert ConvPoolAct(pool=None, order="act_pool") == ConvPoolAct(pool=None)


@pytest.mark.parametrize("act,mode", [("tanh", "max"), ("leaky_relu", "max"), ("sigmoid", "average_exc_pad"),
                                      ("identity", "sum")])
def test_verify_grad(act, mode):
    """verify_grad of the forward (every differentiable output) and of the backward op, whose tie
    mask comes from the forward of the same x, W, b (piecewise constant: no gradient)."""
    rng = np.random.RandomState(0)
    fwd, bwd, bwd_nogx = conv_act_ops(act, "float64", pool=mode, ws=(2, 2), stride=(1, 2), order="act_pool")
    pts = [rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 2, 2, 2)) * 0.5, rng.standard_normal(2)]
    for k, role in enumerate(fwd.output_roles()):
        if role != "mask":
            symcnn.verify_grad(lambda x, W, b, k=k: fwd(x, W, b)[k] if len(fwd.output_roles()) > 1
                               else fwd(x, W, b), pts, mode="reference", rng=rng)
    g0 = rng.standard_normal((1, 2, 3, 2))
    for op in (bwd, bwd_nogx):
        for k in range(len(op.output_roles())):
            def fun(x, W, b, g, op=op, k=k):
                fouts, grads = conv_act_apply(fwd, op, x, W, b, g)
                return grads[k]
            symcnn.verify_grad(fun, pts + [g0], mode="reference", rng=rng)


def test_debug_mode_compares_the_mask_of_the_activated_values():
    """mode='debug' judges a differing tie bit against the values that were pooled: in a window of
    ReLU zeros (distinct negative conv values) every position is a tie, so a bit the native code
    dropped there is a rounding question, not an error; a bit set on a smaller value still is."""
    fwd = conv_act_ops("maximum", "float32", ws=(2, 2), order="act_pool")[0]
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    out, mask, z = fwd(x, W, b)
    xv = np.arange(25, dtype="float32").reshape(1, 1, 5, 5) / 25
    Wv, bv = np.full((1, 1, 2, 2), -1.0, "float32"), np.zeros(1, "float32")
    ref = symcnn.function([x, W, b], mask, mode="reference")(xv, Wv, bv)
    assert (ref == 0b1111).all()   # all conv values negative and distinct: ReLU's zeros tie
    dropped = ref.copy()
    dropped[0, 0, 1, 1] = 0b0111
    assert fwd.debug_mismatch(out.owner, [xv, Wv, bv], 1, dropped, ref, 1e-4, 1e-5) is None
    xv[0, 0, 0, 0] = -5.0   # window (0, 0) now has one positive value: the other bits are wrong
    ref = symcnn.function([x, W, b], mask, mode="reference")(xv, Wv, bv)
    assert ref[0, 0, 0, 0] == 0b0001
    wrong = ref.copy()
    wrong[0, 0, 0, 0] = 0b0011
    assert "differ" in fwd.debug_mismatch(out.owner, [xv, Wv, bv], 1, wrong, ref, 1e-4, 1e-5)


def test_debug_mode_runs_a_train_graph():
    x = T.tensor4("x")
    rng = np.random.RandomState(0)
    W = symcnn.shared((rng.standard_normal((4, 2, 3, 3)) * 0.5).astype("float32"))
    b = symcnn.shared(rng.uniform(-0.5, 0.5, 4).astype("float32"))
    h = pool.pool_2d(T.maximum(conv2d(x, W) + b.dimshuffle("x", 0, "x", "x"), 0), ws=(2, 2), ignore_border=True)
    cost = (h * h).sum()
    fn = symcnn.function([x], [cost] + T.grad(cost, [x, W, b]), mode="debug")
    assert any(isinstance(n.op, ConvPoolAct) and n.op.order == "act_pool" for n in fn.fgraph.toposort())
    fn(rng.randint(-2, 3, (3, 2, 9, 10)).astype("float32"))


@pytest.mark.parametrize("xs,ws,act", [((3, 2, 13, 14), (5, 2, 3, 4), "maximum"),    # conv rows of 11
                                       ((3, 6, 14, 14), (16, 6, 5, 5), "scale"),    # of 10, the forward by im2col
                                       ((1, 3, 9, 12), (4, 3, 3, 3), "leaky_relu"),   # of 10, batch 1
                                       ((2, 2, 20, 21), (3, 2, 3, 3), "sigmoid")])  # of 19
def test_rows_shorter_than_a_vector_fold_into_masked_steps(xs, ws, act, target):
    """The epilogue, the derivative pass and im2col's rows shorter than the target's vector ask LLVM
    for one masked vector step a row (loop metadata), not a loop that would run them value by value;
    longer rows are left to its usual choice; both match the reference."""
    ops = _ops(act, "float32", {}, dict(ws=(2, 2)), True, xs, ws)
    fwd, bwd, _ = ops
    x, W, b, g = _symbols("float32")
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    xv, Wv, bv = _values(xs, ws, "float32")
    ref = symcnn.function([x, W, b], fouts, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(3).standard_normal(ref[0].shape).astype("float32")
    fn = check_native_vs_reference([x, W, b, g], fouts + grads, [xv, Wv, bv, gv], rtol=1e-4, atol=1e-5)[0]
    ow = xs[3] - ws[3] + 1
    short = ow < target.lanes("float32")
    assert ("llvm.loop.vectorize.predicate.enable" in fn.runner.ir) == short, ow
    # the forward alone by im2col: its epilogue runs over whole planes, im2col's rows are the conv's
    from codegen.kernels.convpool import forward_variant
    oh = xs[2] - ws[2] + 1
    if short and forward_variant(fwd, "float32", [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], oh, ow,
                                                  oh // 2, ow // 2]) == "im2col":
        assert "llvm.loop.vectorize.predicate.enable" in symcnn.function([x, W, b], fouts).runner.ir
