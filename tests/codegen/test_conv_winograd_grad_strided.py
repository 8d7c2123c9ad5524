"""The weight gradient of strided convolutions by Winograd over phase channels
(codegen/kernels/conv_winograd_grad_strided.py): the plain Conv2dGradWeights and the fused
ConvPoolActGrad (input activations, pooling, with and without the input gradient) against the
reference on drawn strided configurations, the variant read from the compiled IR (the plain op's
per-image body symcnn_conv_gw_winograd_phases_<n>, the plan's tile transform
symcnn_wgw_in_<dtype>_..._ph<sh>x<sw>); thread counts; what the rule takes."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv import conv2d

from codegen.kernels import conv_winograd_grad_strided as S
from tests.helpers import (CONV_ACTIVATIONS, allow_more_threads_than_cores, check_native_vs_reference,
                           conv_act_apply, conv_act_ops)

GW_BODY = re.compile(r'define internal void @"?symcnn_conv_gw_([a-z0-9_]+?)_\d+"?\(')
PHASE_TILES = re.compile(r'define internal void @"?symcnn_wgw_in_(float32|float64)_[A-Za-z0-9_]*_ph(\d)x(\d)"?\(')


@pytest.fixture
def everywhere(monkeypatch):
    """The kernel wherever it applies, not only where it pays (float64, few channels, small product
    ratios), so that the draws reach it on small shapes."""
    monkeypatch.setattr(S, "MIN_PRODUCT_RATIO", 0.0)
    monkeypatch.setattr(S, "MIN_CHANNELS", 1)
    monkeypatch.setattr(S, "PAYS_DTYPES", ("float32", "float64"))


def _pads(border, kh, kw):
    return geometry.padding(border, kh, kw)


def _plan(dtype, xs, ws, border, stride, flip):
    """The PhaseGradPlan the rule takes for this convolution, or None."""
    B, C, H, W = xs
    K, _, kh, kw = ws
    pads = _pads(border, kh, kw)
    OH, OW = geometry.out_shape(xs, ws, border, stride)[2:]
    return S.phase_grad_weights(dtype, C, H, W, K, kh, kw, OH, OW, pads, stride, flip)


# -- Conv2dGradWeights ------------------------------------------------------------------------------

@st.composite
def strided_configs(draw):
    """(dtype, x shape, w shape, border, stride, flip): strides 2 and 3 (and mixed), filters 2..5
    (and 6), every border mode, batch 1 and odd, few and many channels and filters."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    stride = draw(st.sampled_from([(2, 2), (2, 2), (3, 3), (2, 3), (3, 2)]))
    kh, kw = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    border = draw(st.sampled_from(["valid", "half", "full", "pair"]))
    if border == "pair":
        border = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    ph, pw = _pads(border, kh, kw)
    C = draw(st.sampled_from([1, 3, 8, 16, 20]))
    K = draw(st.sampled_from([1, 5, 16, 33]))
    B = draw(st.sampled_from([1, 3, 5]))
    H = draw(st.integers(max(1, kh - 2 * ph), 26))
    W = draw(st.integers(max(1, kw - 2 * pw), 26))
    return dtype, (B, C, H, W), (K, C, kh, kw), border, stride, draw(st.booleans())


def _check_plain(cfg, seen):
    dtype, xs, ws, border, stride, flip = cfg
    x = T.tensor4("x", dtype=dtype, shape=xs)
    w = T.tensor4("w", dtype=dtype, shape=ws)
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=stride, filter_flip=flip)
    r = T.tensor4("r", dtype=dtype)
    gw = T.grad((y * r).sum(), w)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    os_ = geometry.out_shape(xs, ws, border, stride)
    vals = [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype),
            rng.standard_normal(os_).astype(dtype)]
    # float32 sums of B*OH*OW products; Winograd's transforms round about 1e-6 of the largest value
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference([x, w, r], [gw], vals, **tol)
    ir = fn.dump_llvm()
    took = ("gw", "winograd_phases") in {("gw", v) for v in GW_BODY.findall(ir)}
    assert took == (_plan(dtype, xs, ws, border, stride, flip) is not None), (cfg, GW_BODY.findall(ir))
    if took:
        assert (dtype, str(stride[0]), str(stride[1])) in set(PHASE_TILES.findall(ir))
        p = _plan(dtype, xs, ws, border, stride, flip)
        seen.add((dtype, p.r, p.m, stride))
    else:
        seen.add("declined")


_PLAIN_EXAMPLES = [
    # allconv's stride-2 layers (smaller batches): F(4x4, 2x2) over 4C phase channels
    ("float32", (3, 32, 32, 32), (32, 32, 3, 3), "half", (2, 2), True),
    ("float32", (1, 64, 16, 16), (64, 64, 3, 3), "half", (2, 2), False),
    # 5x5 stride 2: F(4x4, 3x3); small outputs: F(2x2, 3x3); 5x5 stride 3 'valid'; 3x5 by strides (2, 3)
    ("float64", (3, 8, 32, 32), (16, 8, 5, 5), "half", (2, 2), True),
    ("float32", (5, 16, 10, 9), (20, 16, 5, 5), "half", (2, 2), False),
    ("float32", (3, 16, 33, 33), (32, 16, 5, 5), "valid", (3, 3), True),
    ("float64", (3, 5, 21, 22), (7, 5, 3, 5), (1, 2), (2, 3), False),
    # channels not a whole number of vectors, more filters than phase channels (the GEMM's sides swapped)
    ("float32", (5, 3, 19, 17), (70, 3, 4, 4), "full", (2, 2), True),
]


def test_plain_weight_gradient_matches_reference(everywhere):
    """Conv2dGradWeights of drawn strided convolutions against the reference; the IR holds the new
    variant exactly where the rule takes it; the draws reach F(4x4, 2x2), F(4x4, 3x3) and F(2x2, 3x3),
    strides 2 and 3, both dtypes, and configurations it declines."""
    seen = set()

    @settings(max_examples=16, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strided_configs())
    def run(cfg):
        _check_plain(cfg, seen)

    for cfg in _PLAIN_EXAMPLES:
        run = example(cfg)(run)
    run()
    assert "declined" in seen
    kinds = {(r, m) for *_, r, m, _ in [s for s in seen if s != "declined"]}
    assert {(2, 4), (3, 4), (3, 2)} <= kinds, seen
    assert {d for d, *_ in [s for s in seen if s != "declined"]} == {"float32", "float64"}, seen
    assert {s[3][0] for s in seen if s != "declined"} >= {2, 3}, seen


@pytest.mark.parametrize("xs,ws", [((3, 8, 12, 12), (16, 8, 5, 5)),    # F(4x4, 3x3): rows 0..10 read
                                   ((3, 8, 17, 17), (16, 8, 4, 4))])   # F(4x4, 2x2): rows 0..15 read
def test_unread_pixels_change_nothing(everywhere, xs, ws):
    """Pixels the strided convolution never reads (the last row and column past the outputs' reach)
    stay out of the phase buffer: an infinity there leaves the gradient finite and the reference's
    (with 4x4 filters it would lie inside a tile)."""
    dtype = "float32"
    assert _plan(dtype, xs, ws, "valid", (2, 2), True) is not None
    last = xs[2] - 1
    x = T.tensor4("x", dtype=dtype, shape=xs)
    w = T.tensor4("w", dtype=dtype, shape=ws)
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="valid", subsample=(2, 2))
    r = T.tensor4("r", dtype=dtype)
    gw = T.grad((y * r).sum(), w)
    rng = np.random.default_rng(3)
    xv = rng.standard_normal(xs).astype(dtype)
    xv[:, :, last, :] = np.inf
    xv[:, :, :, last] = -np.inf
    os_ = geometry.out_shape(xs, ws, "valid", (2, 2))
    vals = [xv, rng.standard_normal(ws).astype(dtype), rng.standard_normal(os_).astype(dtype)]
    fn, res = check_native_vs_reference([x, w, r], [gw], vals, rtol=1e-4, atol=2e-3)
    assert np.all(np.isfinite(res[0][0]))
    assert "symcnn_conv_gw_winograd_phases_" in fn.dump_llvm()


def test_rule_takes_where_it_pays():
    """float32 with at least MIN_PRODUCT_RATIO times fewer products than the direct kernel: 5x5 and
    4x4 and 6x6 filters with stride 2; not allconv's 3x3 stride-2 layers (1.44x), 5x5 stride 3
    (1.78x), 5x5 stride 2 on small outputs (F(2x2, 3x3): 1.56x), float64, few channels."""
    takes = [("float32", (64, 32, 32, 32), (32, 32, 5, 5), "half", (2, 2)),
             ("float32", (64, 8, 32, 32), (16, 8, 5, 5), "half", (2, 2)),
             ("float32", (64, 64, 16, 16), (64, 64, 4, 4), (1, 1), (2, 2)),
             ("float32", (32, 32, 32, 32), (32, 32, 6, 6), (2, 2), (2, 2))]
    declines = [("float32", (100, 32, 32, 32), (32, 32, 3, 3), "half", (2, 2)),
                ("float32", (100, 64, 16, 16), (64, 64, 3, 3), "half", (2, 2)),
                ("float32", (64, 64, 24, 24), (64, 64, 5, 5), "half", (3, 3)),
                ("float32", (64, 32, 10, 10), (32, 32, 5, 5), "half", (2, 2)),
                ("float64", (32, 32, 32, 32), (32, 32, 5, 5), "half", (2, 2)),
                ("float32", (64, 4, 32, 32), (16, 4, 5, 5), "half", (2, 2)),
                ("float32", (64, 32, 32, 32), (32, 32, 7, 7), (3, 3), (2, 2))]   # 4x4 sub-filters
    for dtype, xs, ws, border, stride in takes:
        p = _plan(dtype, xs, ws, border, stride, True)
        assert p is not None and p.product_ratio() >= S.MIN_PRODUCT_RATIO, (xs, ws)
    for dtype, xs, ws, border, stride in declines:
        assert _plan(dtype, xs, ws, border, stride, True) is None, (xs, ws)


# -- ConvPoolActGrad ----------------------------------------------------------------------------------

def _fused_plan(op, dtype, xs, ws):
    o = geometry.out_shape(xs, ws, op.border_mode, op.subsample)
    return S.fused_phase_grad_weights(op, dtype, [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]])


@st.composite
def fused_configs(draw):
    """(x shape, W shape, conv kwargs, pool kwargs, dtype, act, in_act or None): strided layers with
    and without max pooling, input activations that keep 0 and those that do not."""
    kh, kw = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    stride = draw(st.sampled_from([(2, 2), (2, 2), (3, 3), (2, 3)]))
    border = draw(st.sampled_from(["valid", "half", "full", (1, 0)]))
    xs = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([8, 16, 24])), draw(st.integers(kh + 4, 22)),
          draw(st.integers(kw + 4, 22)))
    ws = (draw(st.sampled_from([5, 16, 20])), xs[1], kh, kw)
    pool_kw = draw(st.sampled_from([dict(pool=None), dict(ws=(2, 2))]))
    conv = dict(border_mode=border, subsample=stride, filter_flip=draw(st.booleans()))
    return (xs, ws, conv, pool_kw, draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(["relu", "tanh", "identity"])),
            draw(st.sampled_from([None, "relu", "sigmoid", "leaky_relu", "tanh"])))


def _check_fused(cfg):
    """The fused forward and both backwards (with and without the input gradient) against the
    reference; returns (the rule's plan or None, the native IR)."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    xs, ws, conv, pool_kw, dtype, act, in_act = cfg
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    if in_act is not None:
        kw["in_act"] = program_of(CONV_ACTIVATIONS[in_act], dtype)
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, **kw)
    x, W, g = (T.TensorType(dtype, (None,) * 4)(n) for n in "xWg")
    b = T.TensorType(dtype, (None,))("b")
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    _, grads2 = conv_act_apply(fwd, bwd_nogx, x, W, b, g)
    outs = fouts + grads + grads2
    rng = np.random.default_rng(sum(xs) + sum(ws))
    xv, Wv, bv = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    Wv /= np.sqrt(ws[1] * ws[2] * ws[3])
    ref = symcnn.function([x, W, b], outs[0], mode="reference")(xv, Wv, bv)
    gv = rng.standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], **tol)[0]
    return _fused_plan(bwd, dtype, xs, ws), fn.runner.ir


def test_fused_weight_gradient_matches_reference(everywhere):
    """ConvPoolActGrad of drawn strided layers (input activations, max pooling, batch 1 and odd,
    both dtypes) against the reference: the new weight gradient is in the IR exactly where the rule
    takes it (with the phase input gradient and the bias gradient as before), and the draws reach it
    with and without an input activation and with stride 3."""
    seen = set()

    @settings(max_examples=12, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(fused_configs())
    @example(((3, 32, 16, 16), (32, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None),
              "float32", "relu", "relu"))                                        # allconv's stride-2 layer
    @example(((1, 16, 17, 15), (12, 16, 5, 5), dict(border_mode="half", subsample=(2, 2), filter_flip=False),
              dict(ws=(2, 2)), "float64", "tanh", "sigmoid"))
    @example(((5, 8, 24, 24), (9, 8, 5, 5), dict(border_mode="full", subsample=(3, 3)), dict(pool=None),
              "float32", "identity", "leaky_relu"))
    @example(((3, 24, 20, 19), (16, 24, 4, 4), dict(border_mode="valid", subsample=(2, 2)), dict(ws=(2, 2)),
              "float32", "relu", None))
    def run(cfg):
        plan, ir = _check_fused(cfg)
        took = bool(PHASE_TILES.search(ir))
        assert took == (plan is not None), cfg
        seen.add((took, cfg[6] is not None, cfg[2]["subsample"][0]) if took else "declined")

    run()
    took = [s for s in seen if s != "declined"]
    assert "declined" in seen, seen
    assert any(in_act for _, in_act, _ in took) and any(not in_act for _, in_act, _ in took), seen
    assert {sh for *_, sh in took} == {2, 3}, seen


def _thread_counts(monkeypatch, build, reps=2):
    """build() -> (function, argument values) on 1, 2 and 3 threads: repeated calls bit-identical, the
    thread counts equal up to the order in which the per-thread partials are added."""
    from symcnn.config import config
    allow_more_threads_than_cores(monkeypatch)
    got = {}
    for n in (1, 2, 3):
        monkeypatch.setattr(config, "num_threads", n)
        fn, vals = build()
        first = fn(*vals)
        for _ in range(reps):
            for a, c in zip(first, fn(*vals)):
                np.testing.assert_array_equal(a, c)
        got[n] = first
    for n in (2, 3):
        for a, c in zip(got[1], got[n]):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("batch", [1, 7])
def test_fused_thread_counts(monkeypatch, everywhere, batch):
    """The fused backward with its phase-channel weight gradient (ReLU input activation, the phase
    input gradient) on 1, 2 and 3 threads: batch 1 (one thread busy) and an odd batch."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    xs, ws = (batch, 16, 16, 16), (16, 16, 5, 5)

    def build():
        kw = dict(border_mode="half", subsample=(2, 2), pool=None, imshp=xs, kshp=ws,
                  in_act=program_of(CONV_ACTIVATIONS["relu"], "float32"))
        fwd, bwd, _ = conv_act_ops("relu", "float32", **kw)
        assert _fused_plan(bwd, "float32", xs, ws) is not None
        x, W, g = (T.TensorType("float32", (None,) * 4)(v) for v in "xWg")
        b = T.TensorType("float32", (None,))("b")
        outs, grads = conv_act_apply(fwd, bwd, x, W, b, g)
        rng = np.random.default_rng(11)
        vals = [rng.standard_normal(s).astype("float32") for s in (xs, ws, ws[:1], (batch, 16, 8, 8))]
        fn, _ = check_native_vs_reference([x, W, b, g], grads, vals, rtol=1e-4, atol=1e-3)
        assert PHASE_TILES.search(fn.runner.ir)
        return fn, vals

    _thread_counts(monkeypatch, build)


@pytest.mark.parametrize("batch", [1, 9])
def test_plain_thread_counts(monkeypatch, batch):
    """Conv2dGradWeights by the new variant (where the rule takes it unforced) on 1, 2 and 3 threads."""
    xs, ws = (batch, 8, 20, 20), (16, 8, 5, 5)
    assert _plan("float32", xs, ws, "half", (2, 2), True) is not None

    def build():
        x = T.tensor4("x", shape=xs)
        w = T.tensor4("w", shape=ws)
        y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="half", subsample=(2, 2))
        r = T.tensor4("r")
        gw = T.grad((y * r).sum(), w)
        rng = np.random.default_rng(5)
        vals = [rng.standard_normal(s).astype("float32") for s in (xs, ws, (batch, 16, 10, 10))]
        fn, _ = check_native_vs_reference([x, w, r], [gw], vals, rtol=1e-4, atol=2e-3)
        assert "symcnn_conv_gw_winograd_phases_" in fn.dump_llvm()
        return fn, vals

    _thread_counts(monkeypatch, build)
