"""Strided convolutions by Winograd over their phase channels (codegen/kernels/conv_winograd_strided.py):
Conv2d and the fused ConvPoolAct (with input activations) against the reference on drawn strided
configurations, the variant read from the compiled IR and checked against the chooser (taken where
its rule says, declined where it must be), and its float32 rounding error with 256 to 512 phase
channels."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv import conv2d

from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference, conv_act_ops

BODY = re.compile(r'define internal void @"?symcnn_conv_(fwd|gx|gw)_([a-z0-9_]+?)_\d+"?\(')
# the Winograd tile transforms: (dtype, "F4r2" | "F4" | "F2", channels)
WINO_TILES = re.compile(r'define internal void @"?symcnn_wino_in_(float32|float64)_(F\d(?:r\d)?)_C(\d+)_')


def _border(border):
    return (border, border) if isinstance(border, int) else border


def _pads(border, kh, kw):
    return tuple(geometry.padding(_border(border), kh, kw))


def _chosen(dtype, xs, ws, border, stride, flip):
    """The chooser's WinogradPhases (or None) for the convolution."""
    from codegen.kernels.conv_winograd_strided import winograd_phases
    (B, C, H, W), (K, _, kh, kw) = xs, ws
    OH, OW = geometry.out_shape(xs, ws, _border(border), stride)[2:]
    return winograd_phases(dtype, C, H, W, K, kh, kw, OH, OW, _pads(border, kh, kw), stride, flip, batch=B)


@st.composite
def strided_configs(draw):
    """(dtype, x shape, w shape, border_mode, subsample, filter_flip): strides 2 and 3, filters 2 to 5
    (4x4 and 5x5 with stride 2 are the ones the rule takes), every kind of padding, batch 1 and odd,
    4 to 64 channels (16 to 256 phase channels with stride 2)."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    stride = draw(st.sampled_from([(2, 2)] * 4 + [(3, 3), (2, 3)]))
    k = draw(st.sampled_from([4, 5, 4, 5, 2, 3]))
    kh, kw = (k, k) if draw(st.integers(0, 5)) else (k, draw(st.integers(2, 5)))
    border = draw(st.sampled_from(["valid", "full", "half", "int", "pair"]))
    if border == "int":
        border = draw(st.integers(0, 2))
    elif border == "pair":
        border = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    ph, pw = _pads(border, kh, kw)
    C = draw(st.sampled_from([4, 8, 16, 24, 64]))
    K = draw(st.sampled_from([16, 24, 33]))
    B = draw(st.sampled_from([1, 3, 7]))
    H = draw(st.integers(max(1, kh - 2 * ph), 36))
    W = draw(st.integers(max(1, kw - 2 * pw), 36))
    return dtype, (B, C, H, W), (K, C, kh, kw), border, stride, draw(st.booleans())


def _conv(dtype, xs, ws, border, stride, flip):
    x = T.tensor4("x", dtype=dtype, shape=xs)
    w = T.tensor4("w", dtype=dtype, shape=ws)
    return [x, w], conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=stride,
                          filter_flip=flip)


def _check_conv(cfg, seen):
    dtype, xs, ws, border, stride, flip = cfg
    ins, y = _conv(*cfg)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    vals = [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)]
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference(ins, y, vals, **tol)
    ir_text = fn.dump_llvm()
    variants = set(BODY.findall(ir_text))
    wp = _chosen(*cfg)
    assert (("fwd", "winograd_phases") in variants) == (wp is not None), (variants, wp)
    if wp is not None:   # the tiles over the phase channels
        sh, sw = stride
        assert (dtype, f"F{wp.p.m}r2" if wp.p.r == 2 else f"F{wp.p.m}", str(xs[1] * sh * sw)) in \
            set(WINO_TILES.findall(ir_text))
        seen.add(("taken", wp.p.r, dtype))
    else:
        seen.add(("declined",))


_EXAMPLES = [
    # 4x4 stride 2 (F(4x4, 2x2) over 64 phase channels), 5x5 stride 2 (F(m x m, 3x3)) in both dtypes
    ("float32", (7, 16, 32, 32), (32, 16, 4, 4), 1, (2, 2), True),
    ("float64", (3, 16, 29, 31), (32, 16, 5, 5), "half", (2, 2), False),
    ("float32", (3, 16, 28, 27), (33, 16, 5, 5), "full", (2, 2), True),
    ("float32", (7, 24, 30, 33), (33, 24, 4, 4), (2, 1), (2, 2), False),
    ("float64", (1, 16, 64, 63), (32, 16, 4, 4), "valid", (2, 2), True),
    # declined: a batch of one image (a GEMM panel of several images' tiles would waste too much),
    # 3x3 stride 2 and 5x5 stride 3 (too few multiplications saved), sub-filters not square (4x5
    # with stride 2, 4x4 with strides (2, 3)), 2x2 stride 2 (1x1 sub-filters), too few phase channels
    ("float64", (1, 16, 33, 34), (32, 16, 4, 4), "valid", (2, 2), True),
    ("float32", (7, 32, 32, 32), (32, 32, 3, 3), "half", (2, 2), True),
    ("float32", (7, 16, 38, 38), (32, 16, 5, 5), "valid", (3, 3), True),
    ("float32", (7, 16, 32, 32), (32, 16, 4, 5), 1, (2, 2), True),
    ("float32", (7, 16, 32, 33), (32, 16, 4, 4), 1, (2, 3), True),
    ("float32", (7, 16, 32, 32), (32, 16, 2, 2), "valid", (2, 2), True),
    ("float32", (7, 3, 32, 32), (32, 3, 4, 4), 1, (2, 2), True),
]


def test_strided_convolutions_match_reference():
    """Drawn strided Conv2d forwards against the reference: the Winograd-over-phase-channels variant
    where the chooser takes it (F(4x4, 2x2) and F(m x m, 3x3) sub-filters, both dtypes), the
    phase images' direct kernel where it declines."""
    seen = set()

    @settings(max_examples=10, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strided_configs())
    def run(cfg):
        _check_conv(cfg, seen)

    for cfg in _EXAMPLES:
        run = example(cfg)(run)
    run()
    assert {("declined",), ("taken", 2, "float32"), ("taken", 3, "float64")} <= seen, sorted(seen)


@pytest.mark.parametrize("cfg", _EXAMPLES[5:])
def test_declined_where_it_does_not_pay_or_apply(cfg):
    from codegen import target as targets
    if cfg is _EXAMPLES[5] and targets.current().vector_bytes != 64:
        pytest.skip("one image's tile grid wastes too much only with 16-lane float32 / 8-lane float64 vectors")
    assert _chosen(*cfg) is None


def test_rule_follows_the_multiplications_saved():
    """4x4 and 5x5 filters with stride 2 save at least MIN_SAVING times the multiplications; 3x3
    stride 2 (1.44x) and 5x5 stride 3 (1.78x) do not."""
    from codegen.kernels.conv_winograd_strided import MIN_SAVING
    taken = _chosen("float32", (8, 16, 32, 32), (32, 16, 4, 4), 1, (2, 2), True)
    assert taken is not None and (taken.p.m, taken.p.r, taken.p.C) == (4, 2, 64)
    taken = _chosen("float32", (8, 16, 32, 32), (32, 16, 5, 5), "half", (2, 2), True)
    assert taken is not None and (taken.p.m, taken.p.r) == (4, 3)
    # float32 F(4x4, 3x3) only up to 128 (phase) channels: 256 would take F(2x2, 3x3), 1.56x fewer
    assert _chosen("float32", (8, 64, 32, 32), (32, 64, 5, 5), "half", (2, 2), True) is None
    assert 1.56 < MIN_SAVING <= 2.56


@pytest.mark.parametrize("C", [32, 64])
def test_winograd_phases_float32_error(C):
    """F(4x4, 2x2) in float32 over 128 and 256 phase channels (4x4 filters, stride 2) against a float64
    reference: within 4e-6 of the largest output (measured up to 3.3e-6; the debug mode's float32
    tolerance is 1e-5). 512 phase channels (up to 5.3e-6) are past conv_winograd.MAX_CHANNELS_F4_2X2."""
    from codegen.kernels.conv_winograd import MAX_CHANNELS_F4_2X2
    assert MAX_CHANNELS_F4_2X2 == 256
    assert _chosen("float32", (8, 128, 32, 32), (32, 128, 4, 4), 1, (2, 2), True) is None
    assert _chosen("float64", (8, 128, 32, 32), (32, 128, 4, 4), 1, (2, 2), True).p.C == 512
    xs, ws = (8, C, 32, 32), (32, C, 4, 4)
    ins, y = _conv("float32", xs, ws, 1, (2, 2), True)
    fn = symcnn.function(ins, y)
    ir_text = fn.dump_llvm()
    assert ("fwd", "winograd_phases") in set(BODY.findall(ir_text))
    assert ("float32", "F4r2", str(4 * C)) in set(WINO_TILES.findall(ir_text))
    x64, w64 = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    ref_fn = symcnn.function([x64, w64], conv2d(x64, w64, border_mode=1, subsample=(2, 2)), mode="reference")
    rng = np.random.default_rng(2)
    for xv in (rng.standard_normal(xs).astype("float32"), np.abs(rng.standard_normal(xs)).astype("float32")):
        wv = (rng.standard_normal(ws) / np.sqrt(C * 16)).astype("float32")
        ref = ref_fn(xv.astype("float64"), wv.astype("float64"))
        err = np.abs(fn(*[xv, wv]) - ref).max() / np.abs(ref).max()
        assert err <= 4e-6, err


# The fused forward: (x shape, W shape, conv kwargs, pool kwargs, dtype, act, in_act). The input
# activation is applied as each image is split into its phase channels, whatever the program
# (sigmoid: in_act(0) != 0, the border stays the padding of in_act(x)).
FUSED_CASES = [
    ((7, 16, 32, 32), (32, 16, 4, 4), dict(border_mode=1, subsample=(2, 2)), dict(pool=None), "float32",
     "tanh", "relu"),
    ((5, 8, 31, 29), (32, 8, 5, 5), dict(border_mode="half", subsample=(2, 2)), dict(ws=(2, 2)), "float64",
     "leaky_relu", "sigmoid"),
    ((8, 16, 33, 34), (33, 16, 4, 4), dict(border_mode="valid", subsample=(2, 2), filter_flip=False),
     dict(ws=(2, 2)), "float32", "sigmoid", "maximum"),
    ((3, 8, 28, 28), (32, 8, 5, 5), dict(border_mode="full", subsample=(2, 2)), dict(pool=None), "float64",
     "relu", "tanh"),
    ((7, 16, 30, 32), (32, 16, 4, 4), dict(border_mode=(2, 1), subsample=(2, 2)), dict(pool=None), "float32",
     "leaky_relu", None),
]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act,in_act", FUSED_CASES)
def test_fused_forward_matches_reference(xs, ws, conv, pool_kw, dtype, act, in_act):
    """ConvPoolAct (pooled or not, with or without an input activation) over the phase channels."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    from codegen.kernels.convpool import forward_variant
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    if in_act is not None:
        kw["in_act"] = program_of(CONV_ACTIVATIONS[in_act], dtype)
    fwd = conv_act_ops(act, dtype, **kw)[0]
    o = geometry.out_shape(xs, ws, fwd.border_mode, fwd.subsample)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]]
    assert forward_variant(fwd, dtype, dims) == "winograd phases"
    x, W, b = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
               T.TensorType(dtype, (None,))("b"))
    outs = fwd(x, W, b)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    rng = np.random.default_rng(sum(xs))
    vals = [rng.standard_normal(xs).astype(dtype), (rng.standard_normal(ws) / np.sqrt(ws[1] * 4)).astype(dtype),
            rng.uniform(-0.5, 0.5, ws[0]).astype(dtype)]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference([x, W, b], outs, vals, **tol)
    sh, sw = fwd.subsample
    assert any(t[2] == str(xs[1] * sh * sw) for t in WINO_TILES.findall(fn.dump_llvm()))
