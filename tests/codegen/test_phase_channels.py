"""A strided convolution as a unit-stride one over phase channels (codegen/kernels/phase_channels.py):
its geometry against numpy, and its native filter rearrangement, filter-gradient gather and phase
split against the same geometry."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.kernels.phase_channels import PhaseChannels
from codegen.lower import Array

from tests.helpers import jit_ir_function


def _strided_corr(x, w, pads, stride, flip):
    """The reference: (C, H, W) image, (K, C, kh, kw) filters -> (K, OH, OW)."""
    C, H, W = x.shape
    K, _, kh, kw = w.shape
    (ph, pw), (sh, sw) = pads, stride
    xb = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    wc = w[:, :, ::-1, ::-1] if flip else w
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((K, OH, OW))
    for r in range(kh):
        for s in range(kw):
            patch = xb[:, r:r + sh * (OH - 1) + 1:sh, s:s + sw * (OW - 1) + 1:sw]
            out += np.einsum("kc,cij->kij", wc[:, :, r, s], patch)
    return out


def _phase_channels(pc, x):
    """The (Cq, Hq, Wq) phase channels of image x, as PhaseChannels.fill lays them out."""
    (ph, pw), (sh, sw) = pc.pads, pc.stride
    big = np.zeros((pc.C, sh * (pc.Hq + 1) + ph + pc.H, sw * (pc.Wq + 1) + pw + pc.W))
    big[:, ph:ph + pc.H, pw:pw + pc.W] = x
    out = np.zeros((pc.Cq, pc.Hq, pc.Wq))
    for c in range(pc.C):
        for py in range(sh):
            for px in range(sw):
                out[c * sh * sw + py * sw + px] = big[c, py:py + sh * pc.Hq:sh, px:px + sw * pc.Wq:sw]
    return out


def _sub_filters(pc, w):
    wq = np.zeros((pc.K, pc.Cq, pc.rh, pc.rw))
    for c, r, s, cq, a, b in pc.taps():
        wq[:, cq, a, b] = w[:, c, r, s]
    return wq


def _valid_corr(x, w):
    K, C, kh, kw = w.shape
    OH, OW = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((K, OH, OW))
    for r in range(kh):
        for s in range(kw):
            out += np.einsum("kc,cij->kij", w[:, :, r, s], x[:, r:r + OH, s:s + OW])
    return out


@st.composite
def _geometries(draw):
    C, K = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    H = draw(st.integers(max(1, kh - 2 * ph), 12))
    W = draw(st.integers(max(1, kw - 2 * pw), 12))
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return PhaseChannels(C, H, W, K, kh, kw, OH, OW, (ph, pw), (sh, sw), draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(pc=_geometries(), seed=st.integers(0, 2 ** 16))
def test_valid_conv_of_phase_channels_is_the_strided_conv(pc, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pc.C, pc.H, pc.W))
    w = rng.standard_normal((pc.K, pc.C, pc.kh, pc.kw))
    got = _valid_corr(_phase_channels(pc, x), _sub_filters(pc, w))
    np.testing.assert_allclose(got, _strided_corr(x, w, pc.pads, pc.stride, pc.flip), rtol=1e-10, atol=1e-10)


def test_every_filter_tap_is_one_sub_filter_tap():
    pc = PhaseChannels(2, 9, 9, 3, 3, 3, 5, 5, (1, 1), (2, 2), True)
    assert (pc.rh, pc.rw, pc.Cq, pc.Hq, pc.Wq) == (2, 2, 8, 6, 6)
    targets_ = [(cq, a, b) for *_, cq, a, b in pc.taps()]
    assert len(targets_) == len(set(targets_)) == 2 * 9
    with pytest.raises(ValueError, match="cannot hold"):
        pc.set_buffer(5, 8)


def _native(pc, dtype, emit, nargs):
    return jit_ir_function(nargs, emit)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pc=_geometries(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_native_sub_filters_and_their_gradient(pc, dtype, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((pc.K, pc.C, pc.kh, pc.kw)).astype(dtype)
    wq = np.full(pc.filter_elems(), np.nan, dtype)
    engine, f = _native(pc, dtype, lambda ctx, src, dst: pc.emit_filters(ctx, src, dst, dtype), 2)
    f(w.ctypes.data, wq.ctypes.data)
    np.testing.assert_array_equal(wq.reshape(pc.K, pc.Cq, pc.rh, pc.rw), _sub_filters(pc, w))

    gq = rng.standard_normal((pc.K, pc.Cq, pc.rh, pc.rw)).astype(dtype)
    expect = np.zeros_like(w)
    for c, r, s, cq, a, b in pc.taps():
        expect[:, c, r, s] = gq[:, cq, a, b]
    for accumulate in (False, True):
        gw = rng.standard_normal(w.shape).astype(dtype)
        before = gw.copy()
        engine2, g = _native(pc, dtype, lambda ctx, src, dst: pc.emit_filter_grad(ctx, src, dst, dtype, accumulate), 2)
        g(gq.ctypes.data, gw.ctypes.data)
        np.testing.assert_array_equal(gw, expect + before if accumulate else expect)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pc=_geometries(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16),
       extra=st.tuples(st.integers(0, 3), st.integers(0, 20)))
def test_native_phase_split_into_a_bordered_buffer(pc, dtype, seed, extra):
    pc.set_buffer(pc.Hq + extra[0], pc.Wq + extra[1])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pc.C, pc.H, pc.W)).astype(dtype)
    buf = np.zeros((pc.Cq, pc.Hb, pc.Wb), dtype)

    def emit(ctx, src, dst):
        pc.fill(ctx, Array(dtype, src, [pc.C, pc.H, pc.W], b=ctx.b), dst, dtype)

    engine, f = _native(pc, dtype, emit, 2)
    f(x.ctypes.data, buf.ctypes.data)
    expect = _phase_channels(pc, x)
    sh, sw = pc.stride
    for cq in range(pc.Cq):   # phases no tap reads are left zero
        py, px = divmod(cq % (sh * sw), sw)
        if py >= pc.kh or px >= pc.kw:
            expect[cq] = 0
    np.testing.assert_array_equal(buf[:, :pc.Hq, :pc.Wq], expect)
