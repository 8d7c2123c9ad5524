"""full_conv_as_valid (symcnn/rewrite/full_conv.py): the ops of a static 'full' convolution become
those of the transposed 'valid' one. Where it fires (the input gradient always; the weight gradient
where the input has channels enough; the forward where the border is wide and the input deep),
where it does not, and that it preserves results against the reference (which runs the graph as
written), for both filter orientations and dtypes."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.rewrite import full_conv
from symcnn.tensor.nnet import conv2d
from tests.helpers import check_native_vs_reference, make_rng

NAME = "full_conv_as_valid"


def _step(xs, ws, dtype="float64", border="full", flip=True, **kw):
    x = T.TensorType(dtype, shape=xs)("x")
    w = T.TensorType(dtype, shape=ws)("w")
    r = T.tensor4("r", dtype=dtype)
    y = conv2d(x, w, border_mode=border, filter_flip=flip, **kw)
    return [x, w, r], [y] + T.grad((y * r).sum(), [x, w])


def _values(ins, outs, xs, ws, dtype="float64"):
    rng = make_rng(sum(xs) + sum(ws))
    xv, wv = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    yv = symcnn.function(ins[:2], outs[0], mode="reference")(xv, wv)
    return [xv, wv, rng.standard_normal(yv.shape).astype(dtype)]


def _fired(fn):
    return sorted(f.op.split("{")[0] for f in fn.rewrite_log if f.rewrite == NAME)


def _check(xs, ws, dtype="float64", **kw):
    ins, outs = _step(xs, ws, dtype, **kw)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == "float64" else dict(rtol=1e-4, atol=1e-4)
    fn, _ = check_native_vs_reference(ins, outs, _values(ins, outs, xs, ws, dtype), **tol)
    return _fired(fn)


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fires_for_the_forward_and_both_gradients_and_preserves_results(flip, dtype):
    # 7x7 filters on 10x10 images: the bordered output is 2.56 times the input
    assert _check((3, 24, 10, 9), (16, 24, 7, 5), dtype, flip=flip) == \
        ["Conv2d", "Conv2dGradInputs", "Conv2dGradWeights"]


@pytest.mark.parametrize("B", [1, 2])
def test_integer_pads_of_the_filter_extent_are_full(B):
    assert _check((B, 24, 8, 8), (8, 24, 5, 3), border=(4, 2)) == \
        ["Conv2d", "Conv2dGradInputs", "Conv2dGradWeights"]


@pytest.mark.parametrize("xs,ws,why", [
    ((3, 16, 8, 8), (16, 16, 5, 5), "few input channels: a shallow scattering GEMM"),
    ((3, 32, 12, 12), (16, 32, 3, 3), "a thin border (1.36 times the input)"),
])
def test_the_forward_keeps_its_kernels_but_the_gradients_change(xs, ws, why):
    assert _check(xs, ws) == ["Conv2dGradInputs", "Conv2dGradWeights"], why


@pytest.mark.parametrize("xs,ws", [((4, 3, 10, 10), (16, 3, 7, 7)), ((4, 2, 9, 9), (8, 2, 3, 3))])
def test_few_channels_keep_the_forward_and_weight_gradient_kernels(xs, ws):
    # the transposed weight gradient would vector over 3 (2) filters; the forward's scatter is shallow
    assert _check(xs, ws) == ["Conv2dGradInputs"]


@pytest.mark.parametrize("kw,why", [
    (dict(border="half"), "not full"),
    (dict(border=(4, 3)), "pads past the filter's extent"),
    (dict(subsample=(2, 2)), "strided"),
    (dict(filter_dilation=(2, 1)), "dilated"),
])
def test_does_not_fire(kw, why):
    assert _check((2, 32, 10, 9), (8, 32, 5, 3), **kw) == [], why


def test_open_sizes_do_not_fire():
    x, w, r = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64"), T.tensor4("r", dtype="float64")
    y = conv2d(x, w, border_mode="full")
    ins, outs = [x, w, r], [y] + T.grad((y * r).sum(), [x, w])
    fn, _ = check_native_vs_reference(ins, outs, _values(ins, outs, (2, 32, 10, 9), (8, 32, 5, 3)),
                                      rtol=1e-9, atol=1e-9)
    assert _fired(fn) == []


def test_can_be_excluded_by_name():
    xs, ws = (2, 32, 10, 9), (8, 32, 5, 3)
    ins, outs = _step(xs, ws)
    fn = symcnn.function(ins, outs, mode=Mode(excluding=[NAME]))
    fn(*_values(ins, outs, xs, ws))
    assert _fired(fn) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=st.integers(1, 3), c=st.sampled_from([1, 3, 4, 24, 33]), k=st.sampled_from([1, 5, 17]),
       h=st.integers(1, 9), w=st.integers(1, 9), kh=st.sampled_from([1, 2, 3, 5, 7]), kw=st.sampled_from([1, 3, 4, 5, 7]),
       flip=st.booleans(), dtype=st.sampled_from(["float32", "float64"]))
def test_drawn_full_convolutions_match_the_reference(b, c, k, h, w, kh, kw, flip, dtype):
    fired = _check((b, c, h, w), (k, c, kh, kw), dtype, flip=flip)
    assert ("Conv2dGradInputs" in fired) == ((kh, kw) != (1, 1))
    assert ("Conv2dGradWeights" in fired) == ((kh, kw) != (1, 1) and full_conv._weights_pay(c, kh, kw))


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("B", [1, 3])
def test_fused_full_layers_keep_their_kernels(act, B):
    """A 'full' convolution with a bias and an activation is a fused layer (fuse_conv_epilogue, an
    earlier phase): the rewrite leaves its forward and backward to the fused kernels, and the
    training step's values are the reference's."""
    xs, ws = (B, 24, 10, 9), (16, 24, 7, 5)
    x = T.TensorType("float64", shape=xs)("x")
    w = T.TensorType("float64", shape=ws)("w")
    bias = T.TensorType("float64", shape=(16,))("b")
    f = {"relu": lambda h: T.maximum(h, 0), "tanh": T.tanh, "sigmoid": T.nnet.sigmoid}[act]
    y = f(conv2d(x, w, border_mode="full") + bias.dimshuffle("x", 0, "x", "x"))
    cost = (y * y).sum()
    rng = make_rng(B)
    vals = [rng.standard_normal(xs), rng.standard_normal(ws) / 10, rng.standard_normal(16)]
    fn, _ = check_native_vs_reference([x, w, bias], [cost] + T.grad(cost, [x, w, bias]), vals,
                                      rtol=1e-9, atol=1e-9)
    fired = {f.rewrite for f in fn.rewrite_log}
    assert "fuse_conv_epilogue" in fired and NAME not in fired, fired
