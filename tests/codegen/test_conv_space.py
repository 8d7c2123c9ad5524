"""Native Conv2d and both gradients against the reference on configurations drawn from the whole
space: border modes (named, int and pair pads), strides 1-3, filters 1x1 to 7x7, dilation, 1 to 128
channels and filters, batch 1 and odd batches, filter_flip, float32 and float64, static and dynamic
shapes. Each test also asserts that its draws reached every kernel variant the lowerings emit (read
from the compiled module's IR: each per-image body is named symcnn_conv_<op>_<variant>_<n>)."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.config import config
from symcnn.rewrite import full_conv
from symcnn.tensor.nnet.conv import conv2d

from tests.helpers import allow_more_threads_than_cores, check_native_vs_reference, target  # noqa: F401 (fixture)

BODY = re.compile(r'define internal void @"?symcnn_conv_(fwd|gx|gw)_([a-z0-9_]+?)_\d+"?\(')
# the Winograd forward / input-gradient tile transforms: ("tile", dtype, "F2" | "F4" | "F2r5" | "F4r5" | "F2r7")
WINO_TILES = re.compile(r'define internal void @"?symcnn_wino_in_(float32|float64)_(F\d(?:r\d)?)_')
# the Winograd weight gradient's: ("gw tile", dtype, "_m4" for F(4x4), "" for F(2x2))
WGW_TILES = re.compile(r'define internal void @"?symcnn_wgw_in_(float32|float64)_[A-Za-z0-9_]*?(_m4|)"?\(')

VARIANTS = {("fwd", "direct_wide"), ("fwd", "direct_rows"), ("fwd", "gemm_1x1"), ("fwd", "im2col"),
            ("gx", "direct_wide"), ("gx", "direct_rows"), ("gx", "gemm_1x1"), ("gx", "im2col"),
            ("gw", "taps"), ("gw", "taps_chunked"), ("gw", "gemm_1x1"), ("gw", "im2col"),
            ("fwd", "kvec"), ("gx", "phases"), ("fwd", "phases_shifted_rows"), ("gx", "phases_shifted"),
            ("fwd", "winograd"), ("gx", "winograd"), ("gw", "winograd"),
            ("gw", "taps_shares"), ("gw", "taps_chunked_shares")}
# the strided forwards with the kernel with vectors over filters turned off (options.kvec_forward)
PHASES = {("fwd", "phases_wide"), ("fwd", "phases_rows"), ("gx", "phases"), ("fwd", "phases_shifted_rows"),
          ("gx", "phases_shifted")}


def _draw_border(draw, eh, ew):
    """(border_mode, (pad rows, pad cols)) for a filter spanning eh x ew: every kind of border mode."""
    border = draw(st.sampled_from(["valid", "full", "half", "int", "pair"]))
    if border == "int":
        border = draw(st.integers(0, 3))
        return border, (border, border)
    if border == "pair":
        border = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        return border, border
    return border, {"valid": (0, 0), "full": (eh - 1, ew - 1), "half": (eh // 2, ew // 2)}[border]


@st.composite
def configs(draw, static=None):
    """(dtype, x shape, w shape, conv2d kwargs, static) with a small image that the (dilated,
    padded) filter fits."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    dil = draw(st.sampled_from([(1, 1)] * 4 + [(2, 1), (1, 2), (2, 2)]))
    eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    border, pads = _draw_border(draw, eh, ew)
    subsample = draw(st.sampled_from([(1, 1)] * 3 + [(2, 2), (1, 2), (2, 1), (3, 3), (3, 1)]))
    C = draw(st.sampled_from([1, 2, 3, 5, 16, 24, 64, 128]))
    K = draw(st.sampled_from([1, 2, 3, 7, 16, 20, 33, 50, 64, 70, 128]))
    B = draw(st.sampled_from([1, 3, 9]))
    H = draw(st.integers(max(1, eh - 2 * pads[0]), max(1, eh - 2 * pads[0]) + 9))
    W = draw(st.integers(max(1, ew - 2 * pads[1]), max(1, ew - 2 * pads[1]) + 17))
    flip = draw(st.booleans())
    static = draw(st.booleans()) if static is None else static
    kwargs = dict(border_mode=border, subsample=subsample, filter_flip=flip, filter_dilation=dil)
    return dtype, (B, C, H, W), (K, C, kh, kw), kwargs, static


def _graph(dtype, xs, ws, kwargs, static):
    x = T.tensor4("x", dtype=dtype, shape=xs if static else None)
    w = T.tensor4("w", dtype=dtype, shape=ws if static else None)
    y = conv2d(x, w, input_shape=xs if static else None, filter_shape=ws if static else None, **kwargs)
    r = T.tensor4("r", dtype=dtype)
    gx, gw = T.grad((y * r).sum(), [x, w])
    return [x, w, r], [y, gx, gw]


def _values(dtype, xs, ws, ins, outs, seed):
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal(xs).astype(dtype)
    wv = rng.standard_normal(ws).astype(dtype)
    shape = symcnn.function(ins[:2], outs[0].shape, mode="reference")(xv, wv)
    return [xv, wv, rng.standard_normal(tuple(shape)).astype(dtype)]


def _check(cfg, seen):
    """The native forward and both gradients of cfg against the reference; the kernel variants and
    tiles the IR names go into seen. Returns the native function."""
    dtype, xs, ws, kwargs, static = cfg
    ins, outs = _graph(dtype, xs, ws, kwargs, static)
    vals = _values(dtype, xs, ws, ins, outs, seed=sum(xs) + sum(ws))
    # float32 sums of up to C*kh*kw (forward, input gradient) or B*OH*OW (weight gradient) products
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference(ins, outs, vals, **tol)
    ir_text = fn.dump_llvm()
    seen.update(BODY.findall(ir_text))
    seen.update(("tile",) + t for t in WINO_TILES.findall(ir_text))
    seen.update(("gw tile",) + t for t in WGW_TILES.findall(ir_text))
    return fn


def _unshared(seen):
    """seen with the tap weight gradient's shares of panels ('taps shares': a batch split unevenly
    over the threads) named as the tap kernel they run."""
    return {(v[0], v[1].removesuffix("_shares")) if len(v) == 2 else v for v in seen}


def _run(strategy, n, extra):
    seen = set()

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(cfg):
        _check(cfg, seen)

    for cfg in extra:
        run = example(cfg)(run)
    run()
    return seen


# a few configurations every run includes (hypothesis draws the rest): output rows of 8 and of 4
# (the 'rows' layout at 16, 8 and 4 lanes), more filters than one 256-byte row of the weight gradient, odd batches,
# a 1x1 convolution
_STATIC_EXAMPLES = [
    ("float32", (9, 3, 8, 8), (16, 3, 5, 5), dict(border_mode=(2, 2), subsample=(1, 1), filter_flip=True,
                                                 filter_dilation=(1, 1)), True),
    ("float32", (3, 16, 6, 6), (70, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                   filter_dilation=(1, 1)), True),
    # an even batch: the chunked tap panels split by images (one image: by shares of the panels)
    ("float64", (2, 2, 9, 12), (40, 2, 3, 4), dict(border_mode="full", subsample=(2, 1), filter_flip=False,
                                                  filter_dilation=(1, 1)), True),
    ("float64", (1, 2, 9, 12), (40, 2, 3, 4), dict(border_mode="full", subsample=(2, 1), filter_flip=True,
                                                  filter_dilation=(1, 1)), True),
    ("float32", (5, 3, 4, 4), (16, 3, 5, 5), dict(border_mode=(2, 2), subsample=(1, 1), filter_flip=True,
                                                 filter_dilation=(1, 1)), True),
    ("float32", (9, 24, 5, 7), (33, 24, 1, 1), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    # a 1x1 convolution deeper than one KC slice of the GEMM both ways: a GEMM per image ('gemm 1x1')
    ("float32", (3, 260, 2, 3), (270, 260, 1, 1), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                      filter_dilation=(1, 1)), True),
    ("float32", (3, 32, 15, 15), (33, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    # strided: the phase kernels, 8-wide output rows (the shifted layout: two rows per 16-lane vector,
    # one load), 16-wide ones (shifted with 3x3 filters: one row per vector; with 5x5 ones, three copies
    # of a phase, the 'rows' layout on rows padded to 32) and 7-wide ones ('wide')
    ("float32", (3, 32, 16, 16), (20, 32, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (2, 16, 32, 32), (20, 16, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (2, 16, 31, 32), (20, 16, 5, 5), dict(border_mode="half", subsample=(2, 2), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 15, 21), (24, 16, 3, 5), dict(border_mode=(1, 2), subsample=(2, 3), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    # 13 outputs wide: the direct kernel's 'wide' layout, on every target
    ("float32", (3, 16, 12, 13), (16, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    # one 7x7 filter: a forward that no direct, few-tap or filter-vector plan takes, on every target
    ("float32", (2, 16, 17, 13), (1, 16, 7, 7), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                    filter_dilation=(1, 1)), True),
]


# strided output rows 17 and 5 wide, which the tap input gradient would pad to under 3/4 stored
# lanes on 16- and 8-lane targets (17) and on 4-lane ones (5): im2col
_IM2COL_STRIDED = [
    ("float32", (3, 8, 9, 35), (8, 8, 3, 3), dict(border_mode="valid", subsample=(2, 2), filter_flip=True,
                                                 filter_dilation=(1, 1)), True),
    ("float32", (3, 8, 9, 11), (8, 8, 3, 3), dict(border_mode="valid", subsample=(2, 2), filter_flip=False,
                                                 filter_dilation=(1, 1)), True),
]


def test_static_shapes_reach_every_direct_kernel():
    seen = _run(configs(static=True), 16, _STATIC_EXAMPLES + _NARROW_STRIDED + _IM2COL_STRIDED)
    want = {v for v in VARIANTS if v[1] != "im2col"} | {("fwd", "im2col"), ("gx", "im2col")}
    assert want <= seen, sorted(want - seen)


# strided outputs a fraction of a vector wide (the shifted phase layouts) on 16-, 8- and 4-lane targets
_NARROW_STRIDED = [
    ("float32", (3, 32, 8, 8), (32, 32, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (3, 32, 16, 4), (32, 32, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=False,
                                                    filter_dilation=(1, 1)), True),
]


@st.composite
def strided_configs(draw):
    """(dtype, x shape, w shape, conv2d kwargs, True): static strided convolutions with enough channels
    for the phase kernels (C*kh*kw and K*kh*kw >= 48 taps mostly): strides 2-3 (also only along one
    axis), filters 1-7, every border mode, batch 1 and odd, flipped or not, both dtypes."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    subsample = draw(st.sampled_from([(2, 2), (2, 2), (3, 3), (2, 3), (3, 2), (2, 1), (1, 3)]))
    border, pads = _draw_border(draw, kh, kw)
    C = draw(st.sampled_from([3, 16, 24, 48]))
    K = draw(st.sampled_from([7, 16, 20, 33]))
    B = draw(st.sampled_from([1, 3, 5]))
    H = draw(st.integers(max(1, kh - 2 * pads[0]), max(1, kh - 2 * pads[0]) + 6) if draw(st.booleans())
             else st.integers(12, 26))
    W = draw(st.integers(max(1, kw - 2 * pads[1]), max(1, kw - 2 * pads[1]) + 6) if draw(st.booleans())
             else st.integers(max(12, kw), 34))
    kwargs = dict(border_mode=border, subsample=subsample, filter_flip=draw(st.booleans()), filter_dilation=(1, 1))
    return dtype, (B, C, H, W), (K, C, kh, kw), kwargs, True


# + a padded 1x1 filter with stride 2: three of the four phases of dx get no tap (zeros)
_STRIDED_EXAMPLES = _STATIC_EXAMPLES[-4:] + [
    ("float32", (3, 64, 17, 16), (48, 64, 1, 1), dict(border_mode=(1, 1), subsample=(2, 2), filter_flip=True,
                                                     filter_dilation=(1, 1)), True)] + _NARROW_STRIDED


def test_strided_convolutions_take_the_phase_kernels(monkeypatch):
    """Strided convolutions and both gradients, against the reference, with the forward on the phase
    images (the kernel with vectors over filters turned off); the draws reach the forward's phase
    kernels in both layouts and the input gradient's phases (with im2col where the phase images
    would waste too much of the direct tiles)."""
    from codegen.options import options
    monkeypatch.setattr(options, "kvec_forward", False)
    seen = _run(strided_configs(), 12, _STRIDED_EXAMPLES)
    assert PHASES <= seen, sorted(PHASES - seen)


def test_strided_forwards_take_the_filter_vector_kernel(cache_dir):
    """The same space with the default choice: the forward takes the kernel with vectors over filters
    (microkernels/kvec.py) except where the phase images' shifted rows are one whole vector each, and
    matches the reference; its tiles (one, several, a last partial one), tap blocks (one, several) and
    vector blocks (one, two) and dilated taps are all reached."""
    from codegen.microkernels import kvec as KV
    plans = []
    real = KV.emit_image

    def spy(ctx, p, *a):
        plans.append(p)
        return real(ctx, p, *a)

    mp = pytest.MonkeyPatch()
    mp.setattr(KV, "emit_image", spy)
    try:
        seen = _run(strided_configs(), 6, _STRIDED_EXAMPLES + [
            # 80 filters: two vector blocks; 48 channels of 3x3: three blocks of taps
            ("float32", (2, 48, 15, 15), (80, 48, 3, 3), dict(border_mode="half", subsample=(2, 2),
                                                             filter_flip=False, filter_dilation=(1, 1)), True),
            ("float64", (3, 5, 13, 11), (9, 5, 4, 4), dict(border_mode=(1, 2), subsample=(3, 2), filter_flip=True,
                                                         filter_dilation=(1, 1)), True),
            # dilated taps with strides (im2col before)
            ("float32", (2, 8, 17, 16), (12, 8, 3, 3), dict(border_mode=(2, 1), subsample=(2, 2), filter_flip=True,
                                                           filter_dilation=(2, 1)), True)])
    finally:
        mp.undo()
    assert {("fwd", "kvec"), ("fwd", "phases_shifted_rows")} <= seen, sorted(seen)
    assert any(p.N > p.MR for p in plans) and any(p.N % p.MR for p in plans), [(p.N, p.MR) for p in plans]
    assert any(p.tap_block < p.P for p in plans) and any(p.tap_block == p.P for p in plans)
    assert any(len(p.blocks) > 1 for p in plans) and any(len(p.blocks) == 1 for p in plans)
    assert any((p.dh, p.dw) == (2, 1) for p in plans)


@st.composite
def winograd_configs(draw, k=3):
    """k x k unit-stride convolutions with enough channels for the Winograd kernel: odd image sizes
    and sizes that are no multiple of its tiles, every kind of padding, batch 1 and odd."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    border, pads = _draw_border(draw, k, k)
    C = draw(st.sampled_from([16, 24, 32, 64] if k == 3 else [16, 20, 32]))
    K = draw(st.sampled_from([16, 33, 64] if k == 3 else [16, 33, 50]))
    B = draw(st.sampled_from([1, 3, 8]))
    H = draw(st.integers(max(1, k - 2 * pads[0]), 34 if k == 3 else 24))
    W = draw(st.integers(max(1, k - 2 * pads[1]), 34 if k == 3 else 24))
    kwargs = dict(border_mode=border, subsample=(1, 1), filter_flip=draw(st.booleans()), filter_dilation=(1, 1))
    return dtype, (B, C, H, W), (K, C, k, k), kwargs, True


_WINOGRAD_EXAMPLES = [   # ragged last tiles, several images per GEMM panel, F(4x4) tiles where allowed
    ("float32", (3, 32, 32, 32), (32, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (8, 32, 15, 13), (33, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (1, 32, 17, 30), (33, 32, 3, 3), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (8, 32, 8, 8), (32, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (9, 16, 16, 16), (16, 16, 3, 3), dict(border_mode="full", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    # 8x8 images: F(4x4)'s forward tile grid wastes too much (F(2x2); float64 on AVX2 takes F(4x4));
    # 6x6: so does its weight gradient's (F(2x2), and no Winograd forward)
    ("float64", (8, 32, 8, 8), (32, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (3, 16, 6, 6), (16, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                   filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 6, 6), (16, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    # more channels than conv_winograd.MAX_CHANNELS_F4: float32 keeps F(2x2) (float64 takes F(4x4))
    ("float32", (1, 136, 16, 16), (16, 136, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                       filter_dilation=(1, 1)), True),
    ("float64", (1, 136, 16, 16), (16, 136, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                       filter_dilation=(1, 1)), True),
    # the weight gradient: more filters than channels (the GEMM's sides swapped), channels and filters
    # no multiple of the vectors, a padding pair, batch 1
    ("float64", (1, 24, 13, 11), (64, 24, 3, 3), dict(border_mode=(2, 1), subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
]


@pytest.mark.parametrize("max_tile", [2, 4])
def test_winograd_shapes(monkeypatch, max_tile):
    """The Winograd kernels (forward, input gradient, weight gradient) against the reference, F(4x4)
    tiles where they waste little (the default) and F(2x2) ones. Their float32 rounding error is at
    most about 1e-6 (F(2x2)) / 3.3e-6 (F(4x4), up to 128 channels) of the largest output, inside the
    tolerance (outputs here reach ~100: atol 2e-3 is 2e-5 of that). Both tile sizes are reached in
    both dtypes, in the forward and input gradient and in the weight gradient, with F(4x4) allowed
    (F(2x2): small images, and float32 forwards with more than MAX_CHANNELS_F4 channels), F(2x2)
    alone without."""
    from codegen.options import options
    monkeypatch.setattr(options, "winograd_max_tile", max_tile)
    seen = _run(winograd_configs(), 12 if max_tile == 2 else 8, _WINOGRAD_EXAMPLES)
    assert {("fwd", "winograd"), ("gx", "winograd"), ("gw", "winograd")} <= seen, sorted(seen)
    tiles = {t for t in seen if t[0] in ("tile", "gw tile")}
    both = ("float32", "float64")
    if max_tile == 2:
        assert tiles == {(kind, dt, tile) for dt in both for kind, tile in (("tile", "F2"), ("gw tile", ""))}, tiles
    else:   # (which small images keep F(2x2) in float64 depends on the target's vectors)
        want = {(kind, dt, tile) for dt in both for kind, tile in (("tile", "F4"), ("gw tile", "_m4"), ("gw tile", ""))}
        assert want | {("tile", "float32", "F2")} <= tiles <= want | {("tile", dt, "F2") for dt in both}, tiles


@pytest.mark.parametrize("dtype,C,m", [("float32", 128, 4), ("float32", 129, 2), ("float64", 256, 4),
                                       ("float32", 16, 4)])
def test_winograd_tile_size_by_channels(dtype, C, m):
    """float32 takes F(4x4) up to conv_winograd.MAX_CHANNELS_F4 channels (its rounding error grows
    with them), float64 with any; 32x32 outputs waste none of either tile grid."""
    from codegen.kernels.conv_winograd import MAX_CHANNELS_F4, winograd_images
    assert MAX_CHANNELS_F4 == 128
    wi = winograd_images(dtype, C, 32, 32, 64, 3, 3, 32, 32, (1, 1), True, batch=16)
    assert wi is not None and wi.p.m == m, (wi and wi.p.m)


@pytest.mark.parametrize("xs,ws", [((8, 64, 32, 32), (64, 64, 3, 3)), ((8, 128, 16, 16), (128, 128, 3, 3))])
def test_winograd_4x4_float32_error(xs, ws):
    """F(4x4)'s float32 forward against a float64 reference: its points (0, +-1, 1/2, -2) keep the
    error within about 3e-6 of the largest output up to 128 channels (Lavin & Gray's 0, +-1, +-2
    give 9e-6 with 64 channels on 32x32 images, 1.2e-5 with 128), a third of the debug mode's
    float32 tolerance."""
    _check_float32_forward(xs, ws, "half", "F4", 4e-6, 1, lambda rng: np.abs(rng.standard_normal(xs)))


def _check_float32_forward(xs, ws, border, tile, bound, seed, positive):
    """The float32 forward of a conv2d by the Winograd tile `tile` (read from the IR) within bound
    times the largest output of a float64 reference, for Gaussian images and positive(rng) ones."""
    x = T.tensor4("x", dtype="float32", shape=xs)
    w = T.tensor4("w", dtype="float32", shape=ws)
    fn = symcnn.function([x, w], conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border))
    assert re.search(rf"symcnn_wino_in_float32_{tile}_", fn.dump_llvm())
    x64, w64 = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    ref_fn = symcnn.function([x64, w64], conv2d(x64, w64, border_mode=border), mode="reference")
    rng = np.random.default_rng(seed)
    for xv in (rng.standard_normal(xs).astype("float32"), positive(rng).astype("float32")):
        wv = (rng.standard_normal(ws) / np.sqrt(ws[1] * ws[2] * ws[3])).astype("float32")
        ref = ref_fn(xv.astype("float64"), wv.astype("float64"))
        assert np.abs(fn(xv, wv) - ref).max() <= bound * np.abs(ref).max()


_WINOGRAD_5X5_EXAMPLES = [   # LeNet's second layer; ragged tiles; one image per panel; 'full'
    ("float32", (32, 20, 12, 12), (50, 20, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 13, 11), (33, 16, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (3, 32, 16, 16), (33, 32, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (3, 20, 9, 9), (50, 20, 5, 5), dict(border_mode="full", subsample=(1, 1), filter_flip=False,
                                                   filter_dilation=(1, 1)), True),
    # 12x12 outputs: panels of one image's 48 tiles, narrower than the GEMM's
    ("float32", (3, 32, 12, 12), (32, 32, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    # F(4x4, 5x5): enough images for its whole-image grid (16x16 outputs) and for short GEMMs of fewer
    # than 32 channels (conv_winograd.MIN_TILES_FEW_CHANNELS)
    ("float32", (32, 24, 16, 16), (33, 24, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    # more channels than MAX_CHANNELS_F4_5X5: float32 keeps F(2x2, 5x5) (float64 takes F(4x4))
    ("float32", (8, 40, 16, 16), (40, 40, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (8, 40, 16, 16), (40, 40, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
]


def test_winograd_5x5_shapes():
    """F(4x4, 5x5) (forward and input gradient, up to conv_winograd.MAX_CHANNELS_F4_5X5 channels summed
    in float32) and F(2x2, 5x5) (past them, and every weight gradient) against the reference. Their
    float32 rounding error is at most about 6e-6 of the largest output (outputs here reach ~100-200:
    atol 2e-3 is 1e-5 of that)."""
    seen = _run(winograd_configs(k=5), 12, _WINOGRAD_5X5_EXAMPLES)
    assert {("fwd", "winograd"), ("gx", "winograd"), ("gw", "winograd"), ("tile", "float32", "F4r5"),
            ("tile", "float32", "F2r5"), ("tile", "float64", "F4r5")} <= seen, sorted(seen)


@pytest.mark.parametrize("xs,ws", [((128, 20, 12, 12), (50, 20, 5, 5)), ((32, 24, 20, 20), (32, 24, 5, 5))])
def test_winograd_4x4_5x5_float32_error(xs, ws):
    """F(4x4, 5x5)'s float32 forward against a float64 reference, Gaussian and positive images: within
    8e-6 of the largest output up to MAX_CHANNELS_F4_5X5 channels (measured 3.7-5.5e-6 with hardware
    FMA, up to 7e-6 without), LeNet's second layer (8x8 outputs, vectors of tiles spanning images)
    and a whole-image grid."""
    from codegen.kernels.conv_winograd import MAX_CHANNELS_F4_5X5
    assert ws[1] <= MAX_CHANNELS_F4_5X5
    _check_float32_forward(xs, ws, "valid", "F4r5", 8e-6, 2, lambda rng: rng.random(xs))


@pytest.mark.parametrize("dtype,C,m", [("float32", 24, 4), ("float32", 25, 2), ("float64", 64, 4),
                                       ("float32", 16, 4)])
def test_winograd_5x5_tile_size_by_channels(dtype, C, m):
    """5x5 filters: float32 takes F(4x4, 5x5) up to conv_winograd.MAX_CHANNELS_F4_5X5 channels, float64
    with any, else F(2x2, 5x5) (32x32 outputs waste none of either grid); LeNet-sized images (8x8 outputs) take it with vectors of tiles spanning
    images, where F(2x2)'s whole-image grid would do (16 float32 lanes)."""
    from codegen import target as targets
    from codegen.kernels.conv_winograd import MAX_CHANNELS_F4_5X5, winograd_images
    assert MAX_CHANNELS_F4_5X5 == 24
    wi = winograd_images(dtype, C, 36, 36, 64, 5, 5, 32, 32, (0, 0), True, batch=16)
    assert wi is not None and wi.p.m == m, (wi and wi.p.m)
    if dtype == "float32" and targets.current().vector_bytes == 64:
        wi = winograd_images(dtype, C, 12, 12, 50, 5, 5, 8, 8, (0, 0), True, batch=500)
        assert wi is not None and wi.p.m == m and wi.p.span == (m == 4), (wi and (wi.p.m, wi.p.span))


# small images whose whole-image tile grids would waste too much: vectors of tiles spanning images
# (microkernels/winograd.py's Plan.span), forward and input gradient; (B, C, K, H, W, border)
_SPAN_EXAMPLES = [
    ("float32", (26, 64, 4, 4), (64, 64, 3, 3), "half", True),     # F(2x2), a thread's last group 13 of 16
    ("float64", (16, 32, 6, 6), (32, 32, 3, 3), "valid", False),   # 4x4 outputs, F(2x2)
    ("float32", (8, 32, 12, 12), (32, 32, 3, 3), "half", False),   # F(4x4), 3 tile rows of 3 (4 wide)
    ("float32", (32, 32, 6, 6), (32, 32, 3, 3), "half", True),     # F(4x4), 2 tile rows of 2
    ("float32", (31, 32, 5, 7), (48, 32, 3, 3), (1, 0), True),     # 5x5 outputs: F(4x4), ragged
]
SPAN_TILES = re.compile(r'define internal void @"?symcnn_wino_in_\w+?_\d+x\d+s_')


@pytest.mark.parametrize("dtype,xs,ws,border,flip", _SPAN_EXAMPLES)
def test_winograd_tiles_spanning_images(dtype, xs, ws, border, flip):
    """Forward, input and weight gradient against the reference where the Winograd forward's vectors of tiles
    span several images (each image's results written back through its own mask, a thread's last
    group short)."""
    cfg = (dtype, xs, ws, dict(border_mode=border, subsample=(1, 1), filter_flip=flip, filter_dilation=(1, 1)), True)
    ins, outs = _graph(*cfg)
    vals = _values(dtype, xs, ws, ins, outs, seed=sum(xs))
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference(ins, outs, vals, **tol)
    ir_text = fn.dump_llvm()
    assert ("fwd", "winograd") in set(BODY.findall(ir_text)), BODY.findall(ir_text)
    from codegen import target as targets
    if targets.current().vector_bytes == 64:   # (with 4 or 8 lanes some of these images' own grids waste little)
        assert SPAN_TILES.search(ir_text), BODY.findall(ir_text)


_WINOGRAD_7X7_EXAMPLES = [   # 24 channels on 28x28 (float32: forward and input gradient); float64: the weight gradient too
    ("float32", (3, 24, 28, 28), (24, 24, 7, 7), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 13, 11), (33, 16, 7, 7), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (2, 16, 9, 10), (16, 16, 7, 7), dict(border_mode="full", subsample=(1, 1), filter_flip=True,
                                                    filter_dilation=(1, 1)), True),
]


def test_winograd_7x7_shapes():
    """F(2x2, 7x7) (forward and input gradient; the weight gradient in float64) against the
    reference, ragged tiles and every border mode."""
    seen = _run(winograd_configs(k=7), 8, _WINOGRAD_7X7_EXAMPLES)
    assert {("fwd", "winograd"), ("gx", "winograd"), ("gw", "winograd"), ("tile", "float32", "F2r7"),
            ("tile", "float64", "F2r7")} <= seen, sorted(seen)


def test_winograd_7x7_float32_limits():
    """F(2x2, 7x7) in float32: the forward within 5e-6 of the largest output (24 channels); not for
    more than MAX_CHANNELS_F2_7X7 channels, nor for the weight gradient (its error would pass 1e-5)."""
    from codegen.kernels.conv_winograd import MAX_CHANNELS_F2_7X7
    xs, ws = (4, 24, 28, 28), (24, 24, 7, 7)
    x, w, r = T.tensor4("x", dtype="float32", shape=xs), T.tensor4("w", dtype="float32", shape=ws), T.tensor4("r")
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="half")
    fn = symcnn.function([x, w, r], [y, T.grad((y * r).sum(), w)])
    kinds = set(BODY.findall(fn.dump_llvm()))
    assert ("fwd", "winograd") in kinds and ("gw", "winograd") not in kinds, kinds
    x64, w64 = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    ref_fn = symcnn.function([x64, w64], conv2d(x64, w64, border_mode="half"), mode="reference")
    rng = np.random.default_rng(1)
    xv = np.tanh(rng.standard_normal(xs)).astype("float32")
    wv = (rng.standard_normal(ws) / np.sqrt(ws[1] * 49)).astype("float32")
    ref = ref_fn(xv.astype("float64"), wv.astype("float64"))
    got = fn(xv, wv, np.zeros(ref.shape, "float32"))[0]
    assert np.abs(got - ref).max() <= 5e-6 * np.abs(ref).max()
    C = 2 * MAX_CHANNELS_F2_7X7
    xw = T.tensor4("x", dtype="float32", shape=(2, C, 12, 12))
    ww = T.tensor4("w", dtype="float32", shape=(16, C, 7, 7))
    wide = symcnn.function([xw, ww], conv2d(xw, ww, input_shape=(2, C, 12, 12), filter_shape=(16, C, 7, 7),
                                            border_mode="half"))
    assert ("fwd", "winograd") not in set(BODY.findall(wide.dump_llvm()))


_WINOGRAD_2X2_EXAMPLES = [   # 2x2 filters: F(4x4, 2x2); ragged tiles, 'half' (one row and column more)
    ("float32", (7, 32, 16, 16), (32, 32, 2, 2), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 13, 14), (33, 16, 2, 2), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (8, 20, 20, 18), (50, 20, 2, 2), dict(border_mode="full", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    # 32 channels and filters: the input gradient by F(4x4, 2x2) too
    ("float32", (8, 32, 16, 16), (32, 32, 2, 2), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (4, 32, 15, 15), (32, 32, 2, 2), dict(border_mode="full", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
]


def test_winograd_2x2_shapes(monkeypatch):
    """Unit-stride 2x2 convolutions (F(4x4, 2x2), the tiles of the strided Winograd forward over
    phase channels) against the reference: the forward and the input gradient, both dtypes."""
    seen = _run(winograd_configs(k=2), 8, _WINOGRAD_2X2_EXAMPLES)
    assert ("fwd", "winograd") in seen, sorted(seen)
    # the input gradient of a 'full' one, with the rewrite to the transposed 'valid' forward off
    monkeypatch.setattr(full_conv, "_plan", lambda node: None)
    seen |= _run(winograd_configs(k=2), 4, [e for e in _WINOGRAD_2X2_EXAMPLES if e[3]["border_mode"] == "full"])
    assert ("gx", "winograd") in seen, sorted(seen)
    assert {("tile", "float32", "F4r2"), ("tile", "float64", "F4r2")} <= seen, sorted(seen)


@pytest.mark.parametrize("xs,ws,border", [((32, 20, 12, 12), (50, 20, 5, 5), "valid"),
                                         ((8, 32, 16, 16), (64, 32, 5, 5), "half")])
def test_winograd_5x5_weight_gradient_float32_error(xs, ws, border):
    """F(2x2, 5x5)'s float32 weight gradient against a float64 reference: its sums over the batch's
    tiles round like the direct kernel's, within 1e-5 of the largest value."""
    x = T.tensor4("x", dtype="float32", shape=xs)
    w = T.tensor4("w", dtype="float32", shape=ws)
    r = T.tensor4("r", dtype="float32")
    gw = T.grad((conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border) * r).sum(), w)
    fn = symcnn.function([x, w, r], gw)
    assert ("gw", "winograd") in set(BODY.findall(fn.dump_llvm()))
    x64, w64, r64 = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64"), T.tensor4("r", dtype="float64")
    gw64 = T.grad((conv2d(x64, w64, border_mode=border) * r64).sum(), w64)
    ref_fn = symcnn.function([x64, w64, r64], gw64, mode="reference")
    rng = np.random.default_rng(0)
    xv = np.tanh(rng.standard_normal(xs)).astype("float32")
    wv = (rng.standard_normal(ws) / np.sqrt(ws[1] * 25)).astype("float32")
    oh = xs[2] - 4 if border == "valid" else xs[2]
    rv = (rng.standard_normal((xs[0], ws[0], oh, oh)) * 0.01).astype("float32")
    ref = ref_fn(xv.astype("float64"), wv.astype("float64"), rv.astype("float64"))
    err = np.abs(fn(xv, wv, rv) - ref).max() / np.abs(ref).max()
    assert err <= 1e-5, err


@pytest.mark.parametrize("xs,ws,border", [((32, 20, 12, 12), (50, 20, 5, 5), "valid"),
                                         ((8, 64, 16, 16), (128, 64, 5, 5), "half")])
def test_winograd_5x5_float32_error(xs, ws, border):
    """F(2x2, 5x5)'s float32 forward against a float64 reference: its points (0, +-1, 1/2, -2) keep
    the error at the direct kernel's, about 1e-6 of the largest output (0, +-1, +-2 give 3-5e-6)."""
    x = T.tensor4("x", dtype="float32", shape=xs)
    w = T.tensor4("w", dtype="float32", shape=ws)
    fn = symcnn.function([x, w], conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border))
    assert re.search(r"symcnn_wino_in_float32_F2r5_", fn.dump_llvm())
    x64, w64 = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    ref_fn = symcnn.function([x64, w64], conv2d(x64, w64, border_mode=border), mode="reference")
    rng = np.random.default_rng(0)
    xv = np.tanh(rng.standard_normal(xs)).astype("float32")
    wv = (rng.standard_normal(ws) / np.sqrt(ws[1] * 25)).astype("float32")
    ref = ref_fn(xv.astype("float64"), wv.astype("float64"))
    assert np.abs(fn(xv, wv) - ref).max() <= 2.5e-6 * np.abs(ref).max()


def test_dynamic_shapes_take_im2col():
    seen = _run(configs(static=False), 6, [])
    assert seen == {("fwd", "im2col"), ("gx", "im2col"), ("gw", "im2col")}, seen


@pytest.fixture
def threads(monkeypatch):
    old = config.num_threads
    allow_more_threads_than_cores(monkeypatch)
    yield lambda n: setattr(config, "num_threads", n)
    config.num_threads = old


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("border_mode,subsample,K", [("half", (1, 1), 20), ("valid", (1, 1), 80),
                                                     ((1, 2), (2, 1), 12)])
def test_thread_counts_agree_and_calls_repeat(threads, static, border_mode, subsample, K):
    """1, 2 and 3 threads give the same forward and input gradient (each image is computed alone) and,
    up to the summation order of the per-thread partial sums, the same weight gradient; repeated
    calls of one function give bit-identical results."""
    xs, ws = (17, 3, 9, 10), (K, 3, 3, 3)
    kwargs = dict(border_mode=border_mode, subsample=subsample, filter_flip=True, filter_dilation=(1, 1))
    res = {}
    for n in (1, 2, 3):
        threads(n)
        ins, outs = _graph("float32", xs, ws, kwargs, static)
        vals = _values("float32", xs, ws, ins, outs, seed=1)
        fn, got = check_native_vs_reference(ins, outs, vals, rtol=1e-4, atol=2e-3)
        again = fn(*vals)
        for a, b in zip(got[0], again):
            assert np.array_equal(a, b)
        res[n] = got[0]
    for n in (2, 3):
        np.testing.assert_array_equal(res[n][0], res[1][0])
        np.testing.assert_array_equal(res[n][1], res[1][1])
        np.testing.assert_allclose(res[n][2], res[1][2], rtol=1e-5, atol=1e-4)


# -- few taps per output (first layers): the few-tap kernels of microkernels/fewtaps.py --------------

@st.composite
def few_tap_configs(draw):
    """A static unit-stride convolution with fewer than MIN_DIRECT_TAPS taps per output (1-4 channels,
    filters up to 7x7), output rows of one vector, a little more than one (the 'wide' layout) or
    several, any border mode, batch 1 or odd, both dtypes, flipped or not."""
    from codegen.kernels.conv_forward import MIN_DIRECT_TAPS
    from codegen.target import current
    dtype = draw(st.sampled_from(["float32", "float64"]))
    L = current().lanes(dtype)
    C = draw(st.integers(1, 4))
    kh = draw(st.integers(1, 7))
    kw = draw(st.integers(1 if kh > 1 else 2, 7))
    if C * kh * kw >= MIN_DIRECT_TAPS:
        C = max(1, (MIN_DIRECT_TAPS - 1) // (kh * kw))
    border = draw(st.sampled_from(["valid", "half", "full", "pair"]))
    if border == "pair":
        border = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    pads = {"valid": (0, 0), "full": (kh - 1, kw - 1), "half": (kh // 2, kw // 2)}.get(border, border)
    OW = draw(st.sampled_from([L, 2 * L, L + 1, 3 * L - 2, max(1, L // 2 + 1)]))
    OH = draw(st.integers(1, 7))
    H, W = OH + kh - 1 - 2 * pads[0], OW + kw - 1 - 2 * pads[1]
    if H < 1 or W < 1:   # too much padding for so few outputs: crop it
        border, H, W = "valid", OH + kh - 1, OW + kw - 1
    B = draw(st.sampled_from([1, 3, 5]))
    K = draw(st.sampled_from([1, 2, 5, 8, 13, 20, 32]))
    kwargs = dict(border_mode=border, subsample=(1, 1), filter_flip=draw(st.booleans()), filter_dilation=(1, 1))
    return dtype, (B, C, H, W), (K, C, kh, kw), kwargs, True


def test_few_taps_per_output_take_the_few_tap_kernels():
    """The forward (both layouts), the input gradient when it has few taps too (few filters) and the
    weight gradient of such convolutions run the few-tap kernels, and match the reference."""
    from codegen.target import current
    L = current().lanes("float32")
    flip = dict(subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    extra = [("float32", (3, 3, 2 * L, 2 * L), (32, 3, 3, 3), dict(flip, border_mode="half"), True),   # cifar's first layer
             ("float32", (5, 1, L + 5, L + 5), (20, 1, 5, 5), dict(flip, border_mode="valid"), True),  # LeNet's
             ("float32", (3, 2, 6, L + 1), (4, 2, 3, 1), dict(flip, border_mode="valid"), True),  # 'wide' at any L
             ("float64", (1, 2, 4, 9), (3, 2, 3, 4), dict(flip, border_mode=(1, 2), filter_flip=False), True)]
    seen = _run(few_tap_configs(), 14, extra)
    for want in [("fwd", "fewtaps_rows"), ("fwd", "fewtaps_wide"), ("gx", "fewtaps_rows"), ("gw", "fewtaps_rows")]:
        assert want in seen, (want, sorted(seen))


def test_few_tap_plans_fit_registers():
    """The forward tiles and the weight-gradient blocks stay within the target's accumulators, and
    'rows' tiles hold whole rows or lie within one (one base address per tile)."""
    from codegen.microkernels import directconv as D, fewtaps as FT
    from codegen.target import current
    for dims in [(3, 34, 34, 32, 3, 3, 32, 32), (1, 28, 28, 20, 5, 5, 24, 24), (2, 9, 70, 7, 3, 3, 7, 68)]:
        for dtype in ("float32", "float64"):
            for dense in (False, True):
                p = FT.plan(dtype, *dims, True, dense)
                assert p is not None and p.P < 48
                assert p.MR * p.NV <= D.max_accumulators() and p.MK * p.NT <= D.max_accumulators()
                regs = current().vector_registers   # with the vectors loaded for one step and a broadcast
                assert p.MR * p.NV + p.NV + 1 <= regs and p.MK * p.NT + p.MK + 1 <= regs
                if p.mode == "rows":
                    assert p.NV % p.nvr == 0 or p.nvr % p.NV == 0
                assert sum(c * nv for c, nv in FT.tiles(p)) == p.nvec


def test_few_tap_gradients_verify():
    """verify_grad of a few-tap convolution compiled natively (forward and both gradients run the
    few-tap kernels: 2 channels, 3 filters of 3x3)."""
    from tests.helpers import check_grad
    xs, ws = (3, 2, 5, 6), (3, 2, 3, 3)

    def fn(x, w):
        return conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="half")

    check_grad(fn, [xs, ws], mode="native")
    x, w = T.dtensor4("x"), T.dtensor4("w")
    y = fn(x, w)
    ir_ = symcnn.function([x, w], [y] + T.grad(y.sum(), [x, w])).dump_llvm()
    assert {v for o, v in BODY.findall(ir_)} <= {"fewtaps_rows", "fewtaps_wide"}, BODY.findall(ir_)
    assert {o for o, v in BODY.findall(ir_)} == {"fwd", "gx", "gw"}


def test_phase_kernels_agree_across_thread_counts(threads, monkeypatch):
    """The phase kernels keep per-thread phase images, bordered output gradients and conv scratch:
    1, 2 and 3 threads give bit-identical forwards and input gradients (8-wide output rows: the
    shifted layout at 16 lanes; 16-wide ones: the plain layout)."""
    from codegen.options import options
    monkeypatch.setattr(options, "kvec_forward", False)
    _phase_threads_agree(threads, (7, 16, 16, 16))
    _phase_threads_agree(threads, (3, 16, 32, 32))


def test_filter_vector_kernel_agrees_across_thread_counts(threads):
    """The kernel with vectors over filters keeps per-thread bordered images, tiles and conv scratch:
    1, 2 and 3 threads give bit-identical forwards (odd batch, 6-wide and 7-wide output rows). (The
    input gradients take the tap kernel, whose shares of the panels of an odd batch sum in another
    order: they match the reference.)"""
    def kvec(seen):
        assert ("fwd", "kvec") in seen, seen

    for xs, k in (((7, 16, 12, 12), 3), ((3, 24, 15, 13), 3)):
        kwargs = dict(border_mode="half", subsample=(2, 2), filter_flip=True, filter_dilation=(1, 1))
        _threads_agree(threads, xs, (32, xs[1], k, k), kwargs, 3, kvec, same_bits=1)


@pytest.mark.parametrize("xs,ws,kwargs,variants", [
    ((1, 50, 19, 17), (20, 50, 3, 3), dict(border_mode=(2, 1)), {("fwd", "direct_wide"), ("gx", "direct_wide")}),
    ((2, 16, 13, 21), (27, 16, 3, 3), dict(border_mode="valid", filter_flip=False), {("fwd", "direct_wide"),
                                                                                       ("fwd", "direct_rows")}),
    ((1, 24, 14, 14), (40, 24, 3, 3), dict(border_mode="half", filter_dilation=(2, 2)), {("fwd", "kvec")}),
    ((1, 16, 12, 12), (64, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), {("fwd", "kvec")}),
    ((5, 50, 11, 9), (20, 50, 3, 3), dict(border_mode=(2, 1)), {("fwd", "direct_wide"), ("gx", "direct_wide")}),
    ((7, 16, 12, 12), (64, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), {("fwd", "kvec")}),
])
def test_images_left_over_split_by_filters(threads, xs, ws, kwargs, variants):
    """Batches of 1, 2, 5 and 7 on 2 and 3 threads: the blocks of filters of each image left over
    past a multiple of the threads go to separate threads (the direct kernels' forward and input
    gradient; dilated and strided, with vectors over filters), with results bit-identical to one
    thread's and the reference's."""
    kw = dict(dict(border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)), **kwargs)

    def check(seen):
        assert seen & variants, seen

    _threads_agree(threads, xs, ws, kw, 4, check)


def _threads_agree(threads, xs, ws, kwargs, seed, check_variants, outputs=slice(None), same_bits=2):
    """The forward and input gradient of one convolution on 1, 2 and 3 threads: each matches the
    reference, `check_variants` accepts the (op, variant) pairs read from the IR, and the thread counts
    give bit-identical results for the first `same_bits` outputs (2: the forward and input gradient)."""
    res, seen = {}, set()
    for n in (1, 2, 3):
        threads(n)
        ins, outs = _graph("float32", xs, ws, kwargs, True)
        vals = _values("float32", xs, ws, ins, outs, seed=seed)
        fn, got = check_native_vs_reference(ins, outs[outputs], vals, rtol=1e-4, atol=2e-3)
        kinds = set(BODY.findall(fn.dump_llvm()))
        check_variants(kinds)
        seen |= kinds
        res[n] = got[0]
    for n in (2, 3):
        for k in range(same_bits):
            if k == 1 and ("gx", "taps_shares") in seen:
                # (where the vector width sends the input gradient to the tap kernel, an uneven batch
                # gives the threads shares of its panels whose copies of dx are added afterwards:
                # test_tap_input_gradient_shares_of_panels checks them against the reference)
                continue
            np.testing.assert_array_equal(res[n][k], res[1][k])


def _phase_threads_agree(threads, xs):
    def phases(seen):   # the forward's layout depends on the vector width
        assert seen & {("gx", "phases"), ("gx", "phases_shifted")}, seen
        assert seen & {("fwd", "phases_rows"), ("fwd", "phases_wide"), ("fwd", "phases_shifted_rows")}, seen

    kwargs = dict(border_mode="half", subsample=(2, 2), filter_flip=True, filter_dilation=(1, 1))
    _threads_agree(threads, xs, (20, xs[1], 3, 3), kwargs, 2, phases)


@pytest.mark.parametrize("k", [3, 5])
def test_winograd_thread_counts_agree(threads, k):
    """1, 2 and 3 threads give bit-identical Winograd forwards and input gradients (F(2x2, 3x3) and
    F(2x2, 5x5)): an image's tiles are columns of their own in every GEMM, whichever images share its
    panel (8x8 images: four to a panel, the last group of a thread's range short)."""
    def winograd(seen):
        assert {("fwd", "winograd"), ("gx", "winograd")} <= seen

    kwargs = dict(border_mode="half", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    _threads_agree(threads, (7, 32, 8, 8), (32, 32, k, k), kwargs, 2, winograd, slice(2))


@pytest.mark.parametrize("B,T,S,C", [(1, 2, 2, 16), (1, 4, 4, 16), (2, 4, 2, 16), (3, 4, 4, 16), (1, 2, 2, 32),
                                     (1, 4, 4, 32)])
def test_winograd_small_batches_split_images(threads, B, T, S, C):
    """A batch smaller than the threads splits each image's panels over them (image_slices: S items
    an image): the forward and input gradient match the reference and, bit for bit, one thread's
    (each tile's sums run over the channels in the same order in any panel). 16 channels: F(2x2),
    4 panels of 64 tiles an image; 32: F(4x4), 64 tiles, one panel unsplit, so smaller panels. The
    weight gradient splits each image's chunks of tile rows (image_chunks) the same way."""
    from codegen.kernels.conv_winograd import image_slices, winograd_images
    from codegen.kernels.conv_winograd_grad import image_chunks, winograd_grad_weights
    xs, ws = (B, C, 32, 32), (C, C, 3, 3)
    kwargs = dict(border_mode="half", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    res = {}
    for n in (1, T):
        threads(n)
        wi = winograd_images("float32", C, 32, 32, C, 3, 3, 32, 32, (1, 1), True, batch=B)
        sliced, s = image_slices(wi, B)
        assert s == (S if n > 1 else 1) and sliced.p.nblk % s == 0 and sliced.p.Timg == wi.p.Timg
        gp = winograd_grad_weights("float32", C, 32, 32, C, 3, 3, 32, 32, (1, 1), (1, 1), True)
        chunked, s = image_chunks(gp, B)
        assert s == (S if n > 1 else 1) and chunked.chunks() >= s
        ins, outs = _graph("float32", xs, ws, kwargs, True)
        vals = _values("float32", xs, ws, ins, outs, seed=B + T)
        fn, got = check_native_vs_reference(ins, outs, vals, rtol=1e-4, atol=2e-3)
        assert {("fwd", "winograd"), ("gx", "winograd"), ("gw", "winograd")} <= set(BODY.findall(fn.dump_llvm()))
        res[n] = got[0]
    for k in range(2):
        np.testing.assert_array_equal(res[T][k], res[1][k])
    # the weight gradient's partials are added in another order
    np.testing.assert_allclose(res[T][2], res[1][2], rtol=1e-5, atol=4e-6 * np.abs(res[1][2]).max())


@st.composite
def dilated_configs(draw):
    """(dtype, x shape, w shape, conv2d kwargs, static) of dilated convolutions: dilation 1-3 along
    each axis (never (1, 1)), filters 1-5, strides 1-2, every kind of border mode (padded by the
    dilated extent), channels and filters from 1 to 70, batch 1 and odd, flipped or not, both dtypes,
    mostly static shapes (the direct kernels) and some dynamic ones (im2col)."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dil = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)).filter(lambda d: d != (1, 1)))
    eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    border, pads = _draw_border(draw, eh, ew)
    subsample = draw(st.sampled_from([(1, 1)] * 3 + [(2, 2), (1, 2), (2, 1)]))
    C = draw(st.sampled_from([1, 3, 8, 16, 24]))
    K = draw(st.sampled_from([1, 3, 16, 20, 33, 70]))
    B = draw(st.sampled_from([1, 3, 5]))
    H = draw(st.integers(max(1, eh - 2 * pads[0]), max(1, eh - 2 * pads[0]) + 12))
    W = draw(st.integers(max(1, ew - 2 * pads[1]), max(1, ew - 2 * pads[1]) + 20))
    kwargs = dict(border_mode=border, subsample=subsample, filter_flip=draw(st.booleans()), filter_dilation=dil)
    return dtype, (B, C, H, W), (K, C, kh, kw), kwargs, draw(st.sampled_from([True, True, True, False]))


_DILATED_EXAMPLES = [   # the direct kernels' two layouts, strided (im2col), the chunked tap panels
    ("float32", (3, 16, 20, 20), (20, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(2, 2)), True),
    ("float64", (1, 8, 12, 8), (16, 8, 3, 3), dict(border_mode=(2, 3), subsample=(1, 1), filter_flip=False,
                                                  filter_dilation=(2, 3)), True),
    ("float32", (5, 16, 13, 14), (33, 16, 3, 2), dict(border_mode="full", subsample=(2, 1), filter_flip=True,
                                                     filter_dilation=(3, 2)), True),
    ("float32", (3, 24, 9, 11), (70, 24, 2, 3), dict(border_mode="valid", subsample=(1, 2), filter_flip=False,
                                                    filter_dilation=(1, 2)), True),
    ("float64", (3, 3, 11, 10), (7, 3, 3, 3), dict(border_mode=1, subsample=(1, 1), filter_flip=True,
                                                  filter_dilation=(2, 1)), False),
    # few taps (a first layer): the few-tap kernels, rows of 16 and 12 outputs
    ("float32", (3, 3, 16, 16), (16, 3, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(2, 2)), True),
    ("float32", (5, 1, 17, 18), (20, 1, 3, 4), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                   filter_dilation=(2, 2)), True),
    # rows 4 wide: the direct kernel's 'rows' layout on 4-lane targets too
    ("float32", (3, 16, 20, 4), (20, 16, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                    filter_dilation=(2, 2)), True),
]


def test_dilated_convolutions_take_the_direct_kernels(monkeypatch):
    """Dilated convolutions (filter_dilation != 1) and both gradients against the reference, with
    the rewrite to undilated convolutions over the input's phases off (symcnn/rewrite/dilated.py):
    the unit-stride static ones run the forward kernel with vectors over filters (without it the direct
    kernel; with few taps the few-tap one) and the direct input-gradient kernel with the taps dilation apart, the weight gradient the tap panels (or the few-tap kernel) at
    the dilated offsets; strided and dynamic ones im2col with dilated patches. Winograd and the phase
    split never take a dilated convolution."""
    from codegen.options import options
    from symcnn.rewrite import dilated
    monkeypatch.setattr(dilated, "MIN_CHANNELS", 1 << 30)
    seen = _unshared(_run(dilated_configs(), 16, _DILATED_EXAMPLES))
    want = {("fwd", "kvec"), ("fwd", "fewtaps_rows"), ("fwd", "im2col"),
            ("gx", "direct_wide"), ("gx", "im2col"), ("gw", "taps"), ("gw", "taps_chunked"), ("gw", "fewtaps_rows"),
            ("gw", "im2col")}
    assert want <= seen, sorted(want - seen)
    # without the kernel with vectors over filters, the direct kernel's two layouts
    monkeypatch.setattr(options, "kvec_forward", False)
    seen |= _unshared(_run(dilated_configs(), 12, _DILATED_EXAMPLES))
    assert {("fwd", "direct_wide"), ("fwd", "direct_rows")} <= seen, sorted(seen)
    assert not {v for v in seen if v[1].startswith(("winograd", "phases"))}, sorted(seen)
@st.composite
def phase_dilated_configs(draw):
    """Static unit-stride dilated convolutions that symcnn/rewrite/dilated.py turns into undilated ones
    over the input's phases: dilation 1-3 along each axis, filters 1-5, every kind of border mode,
    MIN_CHANNELS to 48 channels and filters, batch 1 and odd, images of 1 to 3 phases' rows past the
    smallest."""
    from symcnn.rewrite.dilated import MIN_CHANNELS, MIN_PHASE_OUTPUTS
    dtype = draw(st.sampled_from(["float32", "float64"]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dil = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)).filter(lambda d: d != (1, 1)))
    eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    border, pads = _draw_border(draw, eh, ew)
    C, K = draw(st.sampled_from([MIN_CHANNELS, 40])), draw(st.sampled_from([MIN_CHANNELS, 48]))
    # the padded rows a phase at least MIN_PHASE_OUTPUTS + k - 1 long (the rewrite's smallest)
    H = max(1, dil[0] * (MIN_PHASE_OUTPUTS + kh - 1) - 2 * pads[0]) + draw(st.integers(0, 3 * dil[0]))
    W = max(1, dil[1] * (MIN_PHASE_OUTPUTS + kw - 1) - 2 * pads[1]) + draw(st.integers(0, 3 * dil[1]))
    kwargs = dict(border_mode=border, subsample=(1, 1), filter_flip=draw(st.booleans()), filter_dilation=dil)
    return dtype, (draw(st.sampled_from([1, 3, 5])), C, H, W), (K, C, kh, kw), kwargs, True


_PHASE_DILATED_EXAMPLES = [   # 'half' 3x3 with dilation 2 (Winograd over the phases), uneven phases
    ("float32", (3, 32, 32, 32), (32, 32, 3, 3), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(2, 2)), True),
    ("float64", (1, 32, 29, 26), (40, 32, 3, 2), dict(border_mode=(3, 1), subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(3, 2)), True),
]


def test_dilated_convolutions_take_undilated_kernels_over_phases():
    """Dilated unit-stride convolutions with enough channels and phase outputs, and both gradients,
    against the reference: the forward and both gradients run as undilated convolutions over the
    input's phases (PhaseSplit / PhaseMerge around them), so they reach Winograd; the input
    gradient is a forward convolution."""
    seen, fired = set(), set()

    @settings(max_examples=10, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(phase_dilated_configs())
    def run(cfg):
        fired.update(f.rewrite for f in _check(cfg, seen).rewrite_log)

    for cfg in _PHASE_DILATED_EXAMPLES:
        run = example(cfg)(run)
    run()
    assert "dilated_conv_by_phases" in fired, fired
    assert ("fwd", "winograd") in seen and ("gw", "winograd") in seen, sorted(seen)
    assert not {v for v in seen if v[0] == "gx"}, sorted(seen)   # the input gradient is a forward one


@pytest.mark.parametrize("xs,ws", [((7, 32, 6, 6), (32, 32, 3, 3)), ((5, 16, 30, 18), (24, 16, 3, 3))])
def test_winograd_weight_gradient_thread_counts(threads, xs, ws):
    """The Winograd weight gradient on 1, 2 and 3 threads: each thread adds its images' products into
    partials of its own, added in thread order afterwards, so repeated calls are bit-identical and
    the thread counts agree up to the order of those sums. 6x6 images: a group of images per GEMM,
    a thread's last group short; 30x18: chunks of tile rows per GEMM, the last chunk short. Both
    batches (7 and 5 images) are split over the threads: an image is far more work than waking them."""
    kwargs = dict(border_mode="half", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    res = _weight_gradients_on_threads(threads, xs, ws, kwargs, 3, lambda seen, n: ("gw", "winograd") in seen)
    # (the float32 partials summed in another order: within Winograd's own error, a few 1e-6 of the
    # largest value)
    for n in (2, 3):
        np.testing.assert_allclose(res[n], res[1], rtol=1e-5, atol=4e-6 * np.abs(res[1]).max())


def _weight_gradients_on_threads(threads, xs, ws, kwargs, seed, variants_ok):
    """{n: the float32 weight gradient on n threads} for n = 1, 2, 3: each the reference's, a second
    call's the same bits, variants_ok(the IR's (op, variant) pairs, n) true."""
    res = {}
    for n in (1, 2, 3):
        threads(n)
        ins, outs = _graph("float32", xs, ws, kwargs, True)
        vals = _values("float32", xs, ws, ins, outs, seed=seed)
        fn, got = check_native_vs_reference(ins, outs[2:], vals, rtol=1e-4, atol=2e-3)
        seen = set(BODY.findall(fn.dump_llvm()))
        assert variants_ok(seen, n), (n, sorted(seen))
        np.testing.assert_array_equal(fn(*vals)[0], got[0][0])   # a second call
        res[n] = got[0][0]
    return res


def test_winograd_weight_gradient_verifies():
    """verify_grad of a convolution whose weight gradient, compiled natively, runs the Winograd
    kernel (16 channels and filters, 5x6 images: ragged tiles)."""
    from tests.helpers import check_grad
    xs, ws = (2, 16, 5, 6), (16, 16, 3, 3)

    def fn(x, w):
        return conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="half")

    check_grad(fn, [xs, ws], mode="native")
    x, w = T.dtensor4("x"), T.dtensor4("w")
    y = fn(x, w)
    ir_ = symcnn.function([x, w], T.grad(y.sum(), [w])).dump_llvm()
    assert ("gw", "winograd") in set(BODY.findall(ir_)), BODY.findall(ir_)


def test_winograd_weight_gradient_reads_strided_images():
    """Images that are a strided view (every other column) reach the Winograd weight gradient
    through its element-by-element copy, not the vector blocks: same results as the reference."""
    xs, ws = (3, 16, 10, 20), (16, 16, 3, 3)
    x = T.tensor4("x", dtype="float32", shape=xs)
    w = T.tensor4("w", dtype="float32", shape=ws)
    y = conv2d(x[:, :, :, ::2], w, input_shape=(3, 16, 10, 10), filter_shape=ws, border_mode="half")
    r = T.tensor4("r", dtype="float32")
    gw = T.grad((y * r).sum(), w)
    rng = np.random.default_rng(4)
    vals = [rng.standard_normal(s).astype("float32") for s in (xs, ws, (3, 16, 10, 10))]
    fn, _ = check_native_vs_reference([x, w, r], [gw], vals, rtol=1e-4, atol=2e-3)
    assert ("gw", "winograd") in set(BODY.findall(fn.dump_llvm()))


# -- 1x1 convolutions as one GEMM over the batch (conv_1x1.py) -------------------------------------

@st.composite
def pointwise_configs(draw):
    """(dtype, x shape, w shape, conv2d kwargs, True): static 1x1 convolutions (every border mode
    pads a 1x1 filter by nothing), mostly unit-stride, some strided, channels and filters up to one KC
    slice and past one register tile, images narrower and wider than a GEMM panel, batch 1, 2 and odd."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    C = draw(st.sampled_from([1, 3, 16, 64, 130, 256]))
    K = draw(st.sampled_from([1, 5, 33, 64, 200]))
    B = draw(st.sampled_from([1, 2, 3, 9]))
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    border = draw(st.sampled_from(["valid", "half", "full", 0, (0, 0)]))
    subsample = draw(st.sampled_from([(1, 1)] * 3 + [(2, 2), (3, 1), (1, 2)]))
    kwargs = dict(border_mode=border, subsample=subsample, filter_flip=draw(st.booleans()), filter_dilation=(1, 1))
    return dtype, (B, C, H, W), (K, C, 1, 1), kwargs, True


_POINTWISE_EXAMPLES = [   # batch 1 and 3 on 2 threads: column blocks of an image (ragged last one)
    ("float32", (1, 64, 20, 21), (48, 64, 1, 1), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 24, 17, 30), (20, 24, 1, 1), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pointwise_convolutions_take_one_gemm_over_the_batch(threads, n_threads):
    """1x1 convolutions: the forward and the input gradient are one GEMM over the whole batch (the
    filters packed once; with a small batch on 2 threads, column blocks of each image), the weight
    gradient the tap panels (or, with few channels, the few-tap kernel), against the reference."""
    threads(n_threads)
    seen = _unshared(_run(pointwise_configs(), 10, _POINTWISE_EXAMPLES))
    assert {("fwd", "gemm_batch"), ("gx", "gemm_batch"), ("gw", "taps"), ("gw", "fewtaps_rows")} <= seen, sorted(seen)
    assert ("gw", "gemm_1x1") not in seen


# Padded unit-stride forwards with fewer than 32 channels or filters on small images whose output
# rows are no whole number of vectors (conv_forward.small_image_kvec), on every target's width:
# 6-, 7-, 11- and 12-wide outputs, 32 or 64 filters (whole pairs of vectors at 4, 8 and 16 lanes), 3x3 and
# 2x3 filters, every kind of padding, odd batches and batch 1, flipped or not, both dtypes.
_SMALL_KVEC = [
    ("float32", (5, 16, 6, 6), (32, 16, 3, 3), "half", True),
    ("float64", (1, 12, 7, 6), (32, 12, 3, 2), (1, 1), False),
    ("float32", (3, 8, 9, 9), (64, 8, 3, 3), "full", True),
    ("float64", (2, 20, 9, 11), (64, 20, 3, 3), (2, 1), True),
]


@pytest.mark.parametrize("dtype,xs,ws,border,flip", _SMALL_KVEC)
def test_small_images_with_few_channels_take_vectors_over_filters(dtype, xs, ws, border, flip, target, threads):
    """These forwards take the kernel with vectors over filters (not Winograd, not the direct
    kernel), with 1 and 2 threads, and they and both gradients match the reference."""
    from codegen.kernels.conv_forward import small_image_kvec
    from symcnn.tensor.nnet import conv_geometry as geometry
    pads = geometry.padding(border, ws[2], ws[3])
    o = geometry.out_shape(xs, ws, border, (1, 1))
    assert small_image_kvec(dtype, xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3], pads, flip) is not None
    for n in (1, 2):
        threads(n)
        seen = set()
        _check((dtype, xs, ws, dict(border_mode=border, subsample=(1, 1), filter_flip=flip,
                                    filter_dilation=(1, 1)), True), seen)
        assert ("fwd", "kvec") in seen, sorted(seen)


def test_a_symbolic_batch_keeps_the_kernels_of_static_sizes(threads):
    """Images reshaped from rows with a symbolic batch, x.reshape((x.shape[0], C, H, W)), know C, H
    and W: the convolution and its gradients take the kernels of static sizes (here Winograd; the
    forward, 16 filters on 12x12, vectors over filters where 16 filters are whole pairs of vectors),
    not im2col, and agree with the reference for any batch."""
    threads(2)
    x = T.fmatrix("x")
    w = T.TensorType("float32", shape=(16, 20, 3, 3))("w")
    y = conv2d(x.reshape((x.shape[0], 20, 12, 12)), w, border_mode="half")
    cost = (y * y).sum()
    outs = [y, T.grad(cost, x), T.grad(cost, w)]
    rng = np.random.default_rng(3)
    wv = rng.standard_normal((16, 20, 3, 3)).astype("float32")
    calls = [[rng.standard_normal((n, 20 * 12 * 12)).astype("float32"), wv] for n in (5, 1, 12)]
    fn, _ = check_native_vs_reference([x, w], outs, None, calls=calls, rtol=1e-3, atol=2e-2)
    seen = set(BODY.findall(fn.dump_llvm()))
    assert {("gx", "winograd"), ("gw", "winograd")} <= seen and seen & {("fwd", "winograd"), ("fwd", "kvec")}, \
        sorted(seen)


@pytest.mark.parametrize("dtype,xs,ws,stride", [("float32", (3, 16, 9, 13), (40, 16, 1, 1), (2, 3)),
                                                 ("float64", (4, 24, 16, 16), (64, 24, 1, 1), (2, 2)),
                                                 ("float32", (1, 8, 7, 20), (33, 8, 1, 1), (3, 1))])
def test_strided_pointwise_forward_takes_one_gemm(threads, dtype, xs, ws, stride):
    """A strided 1x1 forward with enough filters: one GEMM over the batch on each image's sampled
    pixels (odd image sizes, strides along one axis), on 1 and 2 threads, against the reference."""
    kwargs = dict(border_mode="valid", subsample=stride, filter_flip=True, filter_dilation=(1, 1))
    for n in (1, 2):
        threads(n)
        ins, outs = _graph(dtype, xs, ws, kwargs, True)
        vals = _values(dtype, xs, ws, ins, outs, seed=7)
        tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
        fn, _ = check_native_vs_reference(ins, outs, vals, **tol)
        assert ("fwd", "gemm_batch") in set(BODY.findall(fn.dump_llvm()))


def test_pointwise_column_blocks_cover_the_image():
    """The column blocks of a small batch on several threads are whole GEMM panels that cover every
    pixel once; a batch that splits evenly over the threads keeps whole images."""
    from codegen.kernels.conv_1x1 import Pointwise
    from codegen.microkernels import gemm as G
    for dtype in ("float32", "float64"):
        L, MR, NV = G.params(dtype)[:3]
        for B, HW, T in [(1, 420, 2), (3, 510, 2), (1, 10, 2), (5, 1000, 3), (4, 300, 2), (1, 300, 1)]:
            pw = Pointwise(dtype, B, 8, 8, HW, T)
            assert pw.nblk * pw.cols >= HW > (pw.nblk - 1) * pw.cols
            if pw.nblk > 1:
                assert pw.cols % (NV * L) == 0
            if B % T == 0:
                assert (pw.nblk, pw.cols) == (1, HW)


def test_pointwise_thread_counts_agree(threads):
    """1, 2 and 3 threads give bit-identical 1x1 forwards and input gradients, whole images or column
    blocks (every output is one micro-kernel's sum over the channels in order)."""
    def batched(seen):
        assert {("fwd", "gemm_batch"), ("gx", "gemm_batch")} <= seen

    kwargs = dict(border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    for xs, ws in [((1, 40, 19, 23), (50, 40, 1, 1)), ((5, 16, 9, 30), (33, 16, 1, 1))]:
        _threads_agree(threads, xs, ws, kwargs, 5, batched, slice(2))


# -- 'valid' input gradients with few outputs: the tap panels' input-gradient kernel (conv_gx_taps.py) --

@st.composite
def few_output_configs(draw):
    """(dtype, x shape, w shape, conv2d kwargs, True): 'valid' convolutions with larger filters, so
    outputs are far fewer than inputs, whose output rows divide the target's vector (1, 2, 4 or 8
    outputs wide), are whole vectors (2 or 3), or neither (3, 5, 6, 7 or 1.5 vectors wide: padded
    rows): row and column strides 1-3 (a column stride spreads each vector's lanes), filters 1-7,
    dilated or not, channels and filters from 1 to 70, batch 1 and odd, both dtypes, flipped or not."""
    from codegen.target import current
    dtype = draw(st.sampled_from(["float32", "float64"]))
    L = current().lanes(dtype)
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh = draw(st.sampled_from([1, 1, 2, 3]))
    sw = draw(st.sampled_from([1, 1, 2, 3]))
    dh, dw = draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (2, 2)]))
    OW = draw(st.sampled_from([d for d in (1, 2, 4, 8) if L % d == 0] + [2 * L] + ([3 * L] if 3 * L <= 24 else [])
                              + [3, 5, 6, 7, L + L // 2]))
    OH = draw(st.integers(1, 9))
    C = draw(st.sampled_from([1, 3, 16, 20]))
    K = draw(st.sampled_from([1, 7, 32, 50, 70]))
    B = draw(st.sampled_from([1, 3, 5]))
    xs = (B, C, (OH - 1) * sh + (kh - 1) * dh + 1, (OW - 1) * sw + (kw - 1) * dw + 1)
    kwargs = dict(border_mode="valid", subsample=(sh, sw), filter_flip=draw(st.booleans()), filter_dilation=(dh, dw))
    return dtype, xs, (K, C, kh, kw), kwargs, True


_FEW_OUTPUT_EXAMPLES = [   # LeNet's second layer (8x8 outputs: two rows per 16-lane vector), k5 of bench_conv
    ("float32", (5, 20, 12, 12), (50, 20, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 8, 8), (32, 16, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (3, 7, 10, 10), (9, 7, 7, 7), dict(border_mode="valid", subsample=(2, 1), filter_flip=False,
                                                  filter_dilation=(1, 1)), True),
]

# output rows 7 and 3 wide, padded to the kernel's row stride on every target (8 or 4 of 2-16 lanes):
# undilated, dilated with a row stride, float64
_PADDED_ROW_EXAMPLES = [
    ("float32", (3, 20, 11, 11), (50, 20, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (5, 6, 13, 7), (13, 6, 3, 3), dict(border_mode="valid", subsample=(2, 1), filter_flip=False,
                                                  filter_dilation=(2, 2)), True),
    ("float64", (1, 16, 9, 9), (33, 16, 3, 3), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(3, 3)), True),
]


def test_valid_input_gradients_with_few_outputs_take_the_tap_kernel():
    """The input gradient of 'valid' convolutions with few outputs runs the tap panels' kernel
    (col2im folded into its stores), against the reference."""
    seen = _unshared(_run(few_output_configs(), 14, _FEW_OUTPUT_EXAMPLES))
    assert ("gx", "taps") in seen, sorted(seen)


@pytest.mark.parametrize("cfg", _PADDED_ROW_EXAMPLES, ids=["ow7", "ow3-dilated-strided", "ow3-float64"])
def test_tap_input_gradient_pads_rows_that_split_vectors(cfg):
    """Output rows that neither divide the vector nor are whole vectors are copied into wider rows:
    the tap kernel reads them at its own row stride and stores only each row's outputs (the
    reference's input gradient, dilated and row-strided too)."""
    seen = set()
    fn = _check(cfg, seen)
    assert ("gx", "taps") in _unshared(seen), sorted(seen)
    ow = cfg[1][3] - (cfg[2][3] - 1) * cfg[3]["filter_dilation"][1]
    assert re.search(rf'symcnn_dconv_gx_\w+_OW{ow}_\w+_rs(4|8)"', fn.dump_llvm())


# padded convolutions with outputs far fewer than inputs: the tap kernel on the zero-bordered image,
# its inside kept (pads on both sides or one, a row stride, dilation, float64)
_BORDERED_TAP_EXAMPLES = [
    ("float32", (3, 16, 16, 16), (24, 16, 5, 5), dict(border_mode=(1, 1), subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (2, 8, 12, 17), (11, 8, 5, 3), dict(border_mode=(2, 0), subsample=(2, 1), filter_flip=False,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (3, 6, 14, 14), (13, 6, 3, 3), dict(border_mode=1, subsample=(1, 1), filter_flip=True,
                                                   filter_dilation=(2, 2)), True),
]


@pytest.mark.parametrize("cfg", _BORDERED_TAP_EXAMPLES, ids=["pad1-5x5", "pad-rows-strided-float64", "dilated"])
def test_tap_input_gradient_of_padded_convolutions(cfg):
    """The input gradient of a padded convolution whose outputs are far fewer than its inputs is
    the tap kernel's on the zero-bordered image, its inside copied out: the reference's."""
    seen = set()
    _check(cfg, seen)
    assert ("gx", "taps") in _unshared(seen), sorted(seen)


# strided convolutions with small outputs, whose phases would multiply a wide zero border: the tap
# kernel with its lanes spread by the column stride (padded and 'valid', rows that divide the vector,
# padded rows, stride 3 along the columns alone, float64, one image)
_STRIDED_TAP_EXAMPLES = [
    ("float32", (3, 32, 8, 8), (16, 32, 5, 5), dict(border_mode=1, subsample=(2, 2), filter_flip=True,
                                                   filter_dilation=(1, 1)), True),
    ("float32", (5, 24, 6, 6), (20, 24, 7, 7), dict(border_mode="half", subsample=(2, 2), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float64", (3, 16, 16, 16), (24, 16, 3, 3), dict(border_mode="valid", subsample=(2, 2), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (1, 8, 7, 23), (9, 8, 3, 3), dict(border_mode="valid", subsample=(1, 3), filter_flip=False,
                                                 filter_dilation=(1, 1)), True),
]


@pytest.mark.parametrize("cfg", _STRIDED_TAP_EXAMPLES, ids=["pad1-5x5-s2", "half-7x7-s2", "valid-s2-float64",
                                                            "cols-s3-one-image"])
def test_tap_input_gradient_of_strided_convolutions(cfg):
    """The input gradient of a strided convolution with small outputs is the tap kernel's, each
    accumulator's lanes spread by the column stride as they are added into dx: the reference's."""
    seen = set()
    fn = _check(cfg, seen)
    assert ("gx", "taps") in _unshared(seen), sorted(seen)
    sw = cfg[3]["subsample"][1]
    if sw > 1:
        assert re.search(rf'symcnn_dconv_gx_\w+_sw{sw}"', fn.dump_llvm())


@pytest.mark.parametrize("B", [1, 3, 4])
def test_tap_input_gradient_groups_of_panels(threads, B):
    """Outputs one vector per tap (2x2) and 70 output-gradient channels: the input-gradient kernel
    takes several panels of W^T at once (directconv_grad.gx_group), then the panels left over and
    the short last one, on 1, 2 and 3 threads (shares of the panels for odd batches): the
    reference's."""
    from codegen.microkernels import directconv_grad as DG
    cfg = ("float32", (B, 20, 6, 6), (70, 20, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                          filter_dilation=(1, 1)), True)
    tp = DG.TapPlan("float32", 20, 6, 6, 70, 5, 5, 2, 2, 1, 1, True)
    nv = DG.gx_tile(tp)[0]
    assert nv == 1 and DG.gx_group(tp, nv) > 1 and (tp.P // tp.gx_mr) % DG.gx_group(tp, nv) and tp.P % tp.gx_mr
    for n in (1, 2, 3):
        threads(n)
        seen = set()
        fn = _check(cfg, seen)
        assert ("gx", "taps") in _unshared(seen), sorted(seen)
        assert re.search(r'symcnn_dconv_gx_float32_\w+_g\d"', fn.dump_llvm())


# unit-stride input gradients as forwards of the bordered output gradient: with few filters (the
# forward's input channels) and 7x7 filters, the kernel with vectors over filters ('kvec'); with many
# channels, Winograd's grid that wastes more (F(2x2, 5x5) on 10x10 images)
@pytest.mark.parametrize("cfg,want", [
    (("float32", (3, 16, 10, 10), (32, 16, 7, 7), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                       filter_dilation=(1, 1)), True), "kvec"),
    (("float64", (2, 16, 9, 9), (24, 16, 7, 7), dict(border_mode="half", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True), "kvec"),
    (("float32", (5, 64, 10, 10), (48, 64, 5, 5), dict(border_mode="half", subsample=(1, 1), filter_flip=True,
                                                       filter_dilation=(1, 1)), True), "winograd"),
], ids=["kvec-7x7", "kvec-float64", "winograd-wasteful"])
def test_input_gradients_as_bordered_forwards(cfg, want):
    seen = set()
    _check(cfg, seen)
    assert ("gx", want) in seen, sorted(seen)


# unit-stride input gradients ('valid' and padded) with few output-gradient channels whose rows split
# the vector (the tap kernel declines them): the direct kernel on the bordered output gradient, not im2col, whose GEMM
# of 8-24 deep products ran at a fraction of its speed (10 x 32 x 28 x 28 by 16 7x7 filters: 1.75 ->
# 1.56 ms; 8 x 64 x 24 x 24 by 8 5x5: 0.86 -> 0.50 ms)
@pytest.mark.parametrize("cfg", [
    ("float32", (2, 32, 28, 28), (16, 32, 7, 7), dict(border_mode="valid", subsample=(1, 1), filter_flip=True,
                                                      filter_dilation=(1, 1)), True),
    ("float64", (3, 12, 14, 14), (8, 12, 5, 5), dict(border_mode="valid", subsample=(1, 1), filter_flip=False,
                                                     filter_dilation=(1, 1)), True),
    ("float32", (2, 16, 20, 20), (8, 16, 5, 5), dict(border_mode=(1, 1), subsample=(1, 1), filter_flip=True,
                                                     filter_dilation=(1, 1)), True),
], ids=["7x7-16", "5x5-8-float64", "pad1-5x5-8"])
def test_input_gradients_of_few_channels_take_the_direct_kernel(cfg):
    """(With narrower vectors the tap kernel takes some: rows of 22 fill 22 of 24 AVX2 lanes.)"""
    from codegen import target as targets
    seen = set()
    _check(cfg, seen)
    gx = {kind[1] for kind in seen if kind[0] == "gx"}
    want = {"direct_wide", "direct_rows"}
    assert gx & (want if targets.current().vector_bytes == 64 else want | {"taps", "taps_shares"}), sorted(seen)
    assert "im2col" not in gx, sorted(seen)


def test_few_channel_direct_input_gradients_agree_across_threads(threads):
    """The few-channel direct input gradient on 1, 2 and 3 threads (3 images: one thread's share
    split by filters): the reference's, and bit-identical across the thread counts."""
    from codegen import target as targets

    def direct(seen):
        gx = {kind[1] for kind in seen if kind[0] == "gx"}
        assert "im2col" not in gx and (targets.current().vector_bytes != 64 or gx <= {"direct_wide", "direct_rows"}), seen

    kwargs = dict(border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    _threads_agree(threads, (3, 32, 28, 28), (16, 32, 7, 7), kwargs, 5, direct)


def test_padded_row_and_bordered_tap_input_gradients_agree_across_threads(threads):
    """The tap input gradient's per-thread padded-row copies and bordered dx buffers, on 1, 2 and 3
    threads over 6 images (split evenly: by images; test_tap_input_gradient_shares_of_panels takes
    the uneven splits): the reference's, the same bits on every count."""
    for xs, ws, border in [((6, 16, 9, 9), (24, 16, 3, 3), "valid"), ((6, 16, 16, 16), (24, 16, 5, 5), (1, 1))]:
        kwargs = dict(border_mode=border, subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
        res = {}
        for n in (1, 2, 3):
            threads(n)
            ins, outs = _graph("float32", xs, ws, kwargs, True)
            vals = _values("float32", xs, ws, ins, outs, seed=4)
            fn, got = check_native_vs_reference(ins, outs[1:2], vals, rtol=1e-4, atol=2e-3)
            assert ("gx", "taps") in set(BODY.findall(fn.dump_llvm())), n
            res[n] = got[0][0]
        for n in (2, 3):
            np.testing.assert_array_equal(res[n], res[1])


def test_tap_input_gradient_reads_strided_output_gradients():
    """An output gradient that is a strided view (every other column) reaches the tap kernel
    through the element-by-element copy: same results as the reference."""
    xs, ws = (3, 8, 8, 8), (16, 8, 5, 5)   # 4x4 outputs: rows that divide 4-, 8- and 16-lane vectors
    w = T.tensor4("w", dtype="float32", shape=ws)
    g = T.tensor4("g", dtype="float32", shape=(3, 16, 4, 8))
    from symcnn.tensor.nnet.conv import conv2d_grad_wrt_inputs
    gx = conv2d_grad_wrt_inputs(g[:, :, :, ::2], w, xs, ws, border_mode="valid")
    rng = np.random.default_rng(6)
    vals = [rng.standard_normal(ws).astype("float32"), rng.standard_normal((3, 16, 4, 8)).astype("float32")]
    fn, _ = check_native_vs_reference([w, g], [gx], vals, rtol=1e-4, atol=2e-3)
    assert ("gx", "taps") in _unshared(BODY.findall(fn.dump_llvm()))


def test_weight_gradient_partials_after_a_larger_batch(threads):
    """Each thread zeroes its own weight-gradient partials as its part starts; a batch too small for
    the pool runs as thread 0 alone, and the calling thread then zeroes the other threads'
    partials, which are added all the same: one function (dynamic shapes) called with a large batch,
    then small ones, gives the reference's gradient every time, none with an earlier call's sums."""
    threads(2)
    x, w, r = T.tensor4("x"), T.tensor4("w"), T.tensor4("r")
    y = conv2d(x, w, border_mode="half")
    gw = T.grad((y * r).sum(), w)
    native = symcnn.function([x, w, r], gw, mode="native")
    reference = symcnn.function([x, w, r], gw, mode="reference")
    rng = np.random.default_rng(5)
    wv = rng.standard_normal((8, 8, 3, 3)).astype("float32")
    for B, side in ((40, 20), (1, 6), (40, 20), (2, 6), (1, 20)):
        xv = rng.standard_normal((B, 8, side, side)).astype("float32")
        rv = rng.standard_normal((B, 8, side, side)).astype("float32")
        np.testing.assert_allclose(native(xv, wv, rv), reference(xv, wv, rv), rtol=1e-4, atol=2e-3)


def test_layers_share_their_winograd_filter_transforms():
    """Four Winograd convolutions of different channel and filter counts (40 and 26 filters: short
    last row blocks) take one filter-transform function per tile size and flip between them (strides
    and counts are arguments), and the weight gradient's back-transform; all match the reference."""
    rng = np.random.default_rng(3)
    B, C, H, K1, K2 = 32, 32, 16, 40, 26
    x = T.tensor4("x", shape=(B, C, H, H))
    w1 = T.tensor4("w1", shape=(K1, C, 3, 3))
    w2 = T.tensor4("w2", shape=(K2, K1, 3, 3))
    # (a smooth activation: with ReLU a pre-activation rounded to the other side of 0 flips a mask)
    h = T.tanh(conv2d(x, w1, border_mode="half", input_shape=(B, C, H, H), filter_shape=(K1, C, 3, 3)))
    y = conv2d(h, w2, border_mode="half", input_shape=(B, K1, H, H), filter_shape=(K2, K1, 3, 3))
    cost = (y ** 2).sum()
    outs = [cost] + T.grad(cost, [x, w1, w2])
    vals = [(scale * rng.standard_normal(s)).astype("float32")
            for scale, s in ((1.0, (B, C, H, H)), (0.05, (K1, C, 3, 3)), (0.05, (K2, K1, 3, 3)))]
    fn, _ = check_native_vs_reference([x, w1, w2], outs, vals, rtol=1e-3, atol=3e-3)
    ir_text = fn.dump_llvm()
    tiles = set(re.findall(r'define internal void @"?(symcnn_wino_in_\w+)', ir_text))
    filters = set(re.findall(r'define internal void @"?(symcnn_wino_filter_\w+)', ir_text))
    assert len(tiles) == 4 and 0 < len(filters) < len(tiles), (tiles, filters)
    assert WGW_TILES.search(ir_text) and re.search(r'define internal void @"?symcnn_wgw_untransform_', ir_text)


@pytest.mark.parametrize("B,K", [(1, 24), (3, 24), (1, 96)])
def test_tap_weight_gradient_shares_of_panels_agree_across_threads(threads, B, K):
    """A batch that splits unevenly over the threads (1 or 3 images) gives each thread a share of the
    tap panels of every image ('taps shares'; 96 float32 filters: 'taps chunked shares'): the
    reference's weight gradient, with the same bits as on one thread (each tap summed by one thread
    over the images in the same order; an even split sums per-thread partials)."""
    xs, ws = (B, 16, 12, 11), (K, 16, 7, 7)
    kwargs = dict(border_mode=(1, 2), subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    res = {}
    for n in (1, 2, 3):
        threads(n)
        ins, outs = _graph("float32", xs, ws, kwargs, True)
        vals = _values("float32", xs, ws, ins, outs, seed=B + K)
        fn, got = check_native_vs_reference(ins, outs[2:], vals, rtol=1e-4, atol=2e-3)
        seen = {v for op, v in BODY.findall(fn.dump_llvm()) if op == "gw"}
        want = "taps_chunked" if K > 64 else "taps"
        uneven = -(-B // n) * n > 1.1 * B   # (3 images on 3 threads split evenly)
        assert seen == {want + "_shares" if uneven else want}, (n, seen)
        if n == 1 or uneven:
            res[n] = got[0][0]
    assert len(res) > 1
    for n in res:
        np.testing.assert_array_equal(res[n], res[1])


def test_tap_weight_gradient_shares_over_several_groups(threads):
    """Shares of the panels write one buffer: each share's first group of images stores its taps'
    sums, later groups add to them (5 images in groups of 2: 256 outputs by 64 filter lanes); the
    reference's weight gradient on 2 and 3 threads, called twice (the buffer holds the last call's
    sums), with the same bits as on one thread."""
    from codegen.microkernels import directconv_grad as DG
    xs, ws = (5, 8, 22, 22), (50, 8, 7, 7)
    assert DG.TapPlan("float32", 8, 22, 22, 50, 7, 7, 16, 16, 1, 1, True).G == 2
    kwargs = dict(border_mode="valid", subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    res = _weight_gradients_on_threads(threads, xs, ws, kwargs, 7, lambda seen, n: {
        v for op, v in seen if op == "gw"} == {"taps_shares" if n > 1 else "taps"})
    for n in (2, 3):
        np.testing.assert_array_equal(res[n], res[1])


@pytest.mark.parametrize("xs,ws,border", [((1, 20, 12, 12), (50, 20, 5, 5), "valid"),
                                         ((3, 24, 12, 12), (40, 24, 7, 7), (1, 1)),
                                         ((1, 16, 10, 8), (20, 16, 7, 5), (1, 2))])
def test_tap_input_gradient_shares_of_panels(threads, xs, ws, border):
    """A batch that splits unevenly over the threads gives each thread a share of the tap input
    gradient's panels of every image ('taps shares'), shares past the first adding into their own
    copies of dx (padded: of the bordered dx's inside), added in afterwards: the reference's input
    gradient on 1, 2 and 3 threads."""
    kwargs = dict(border_mode=border, subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1))
    B = xs[0]
    for n in (1, 2, 3):
        threads(n)
        ins, outs = _graph("float32", xs, ws, kwargs, True)
        vals = _values("float32", xs, ws, ins, outs, seed=B + n)
        fn, _ = check_native_vs_reference(ins, outs[1:2], vals, rtol=1e-4, atol=2e-3)
        seen = {v for op, v in BODY.findall(fn.dump_llvm()) if op == "gx"}
        uneven = -(-B // n) * n > 1.1 * B
        assert seen == {"taps_shares" if uneven else "taps"}, (n, seen)
