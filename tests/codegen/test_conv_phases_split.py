"""The strided forward's phase split (codegen/kernels/conv_phases.py, PhaseSplit.fill): its whole
buffer against a numpy model, guards past it untouched, on random geometries (row lengths spanning
several vectors and partial ones, the plain and the shifted layouts); and Conv2d forwards that take
the phase kernels against the reference on random static shapes."""
import re

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import symcnn.tensor as T
from symcnn.tensor.nnet.conv import conv2d

from codegen.irutil import lanes
from codegen.kernels.conv_phases import _pieces, phase_images
from codegen.lower import Array

from tests.helpers import check_native_vs_reference, jit_ir_function

BODY = re.compile(r'define internal void @"?symcnn_conv_fwd_([a-z0-9_]+?)_\d+"?\(')
GUARD = 64   # NaN elements after the buffer: a store past it would overwrite them


def _cdiv(a, b):
    return -(-a // b)


def _expected_buffer(pi, x):
    """What fill leaves in a zeroed buffer: dst[c, ((py*sw + px)*nd + d)*Hp + u, v] =
    x[c, sh*u + py - ph, sw*(v + d) + px - pw] where that pixel exists, for the phases and copies a
    tap reads; zero everywhere else."""
    C, H, W = x.shape
    (sh, sw), (ph, pw) = pi.stride, pi.pads
    Hp, Wr, nd = pi.Hp, pi.Wr, pi.nd
    out = np.zeros((C, pi.chan_elems // Wr, Wr), x.dtype)
    for py in range(min(sh, pi.kh)):
        for px in range(min(sw, pi.kw)):
            for d in range(_cdiv(pi.kw - px, sw) if pi.shifted else 1):
                base = ((py * sw + px) * nd + d) * Hp
                for u in range(Hp):
                    row = sh * u + py - ph
                    if not 0 <= row < H:
                        continue
                    for v in range(Wr):
                        col = sw * (v + d) + px - pw
                        if 0 <= col < W:
                            out[:, base + u, v] = x[:, row, col]
    return out


def _native_fill(pi, dtype):
    return jit_ir_function(2, lambda ctx, src, dst: pi.fill(ctx, Array(dtype, src, [pi.C, pi.H, pi.W], b=ctx.b),
                                                             dst, dtype))


@st.composite
def _split_geometries(draw):
    """A PhaseImages of a stride-(sh, sw) convolution (sw 2-4: the vector split; 5: values one by
    one), or None where the direct kernel declines it."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh = draw(st.integers(1, 3))
    sw = draw(st.sampled_from([2, 2, 3, 4, 5]))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    H = draw(st.integers(max(1, kh - 2 * ph), 20))
    W = draw(st.integers(max(1, kw - 2 * pw), 70))
    C = draw(st.integers(_cdiv(48, kh * kw), _cdiv(48, kh * kw) + 3))
    K = draw(st.integers(1, 9))
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return dtype, phase_images(dtype, C, H, W, K, kh, kw, OH, OW, (ph, pw), (sh, sw), draw(st.booleans()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(geo=_split_geometries(), seed=st.integers(0, 2 ** 16))
def test_phase_split_writes_its_whole_buffer_and_nothing_past_it(geo, seed):
    dtype, pi = geo
    assume(pi is not None)
    _check_split(dtype, pi, seed)


def test_phase_split_of_allconvs_layers():
    """allconv's strided layers, 32x32 -> 16x16 and 16x16 -> 8x8, in the shifted layout (two copies
    of the even columns' phases, rows of exactly OW: 16 = one vector, 8 = two rows per vector), and
    a 30x30 -> 15x15 one in the plain layout (rows of 16, the last past the image). Those layouts are
    the choices of a 16-lane target; narrower targets split the same images in their own."""
    sixteen = lanes("float32") == 16
    for shape, seed in (((32, 32, 32, 32, 3, 3, 16, 16), 0), ((64, 16, 16, 64, 3, 3, 8, 8), 1)):
        shifted = phase_images("float32", *shape, (1, 1), (2, 2), True)
        assert shifted is not None
        if sixteen:
            assert shifted.variant == "phases shifted rows" and (shifted.nd, shifted.Wr) == (2, shape[-1])
        _check_split("float32", shifted, seed)
    plain = phase_images("float32", 32, 30, 30, 32, 3, 3, 15, 15, (1, 1), (2, 2), True)
    assert plain is not None
    if sixteen:
        assert plain.variant == "phases wide" and plain.Wr == 16
    _check_split("float32", plain, 2)


def _check_split(dtype, pi, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pi.C, pi.H, pi.W)).astype(dtype)
    n = pi.C * pi.chan_elems
    buf = np.zeros(n + GUARD, dtype)
    buf[n:] = np.nan
    engine, f = _native_fill(pi, dtype)
    f(x.ctypes.data, buf.ctypes.data)
    assert np.isnan(buf[n:]).all()
    np.testing.assert_array_equal(buf[:n].reshape(pi.C, -1, pi.Wr), _expected_buffer(pi, x))


def test_pieces_cover_the_row_from_its_start_within_it():
    L = 16
    for Wr in range(1, 70):
        for s1 in range(1, Wr + 1):
            pieces = _pieces(s1, Wr, L)
            assert pieces[0][0] == 0
            for (p, n), (q, _) in zip(pieces, pieces[1:]):
                assert q == p + n
            end = pieces[-1][0] + pieces[-1][1]
            assert s1 <= end <= Wr
            assert all(n & (n - 1) == 0 and n <= L for _, n in pieces)
    assert _pieces(8, 8, 16) == [(0, 8)]              # allconv's 16x16 -> 8x8 rows: one 32-byte store
    assert _pieces(17, 32, 16) == [(0, 16), (16, 1)]   # its 32x32 -> 16x16 ones: a vector and a value


@st.composite
def _strided_convs(draw):
    k = draw(st.sampled_from([3, 3, 5, 4]))
    s = draw(st.sampled_from([(2, 2), (2, 2), (3, 2), (3, 3), (1, 3), (2, 4)]))
    C = draw(st.integers(_cdiv(48, k * k), 40))
    K = draw(st.integers(1, 40))
    H, W = draw(st.integers(k, 34)), draw(st.integers(k, 40))
    B = draw(st.integers(1, 5))
    border = draw(st.sampled_from(["half", "valid", "full", 1]))
    return (B, C, H, W), (K, C, k, k), border, s, draw(st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conv=_strided_convs(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2 ** 16))
def test_strided_forward_by_phases_matches_reference(conv, dtype, seed):
    from symcnn.tensor.nnet import conv_geometry as geometry
    from symcnn.tensor.nnet.conv import Conv2d
    from codegen.kernels.conv_forward import forward_variant
    xs, ws, border, s, flip = conv
    op = Conv2d(border_mode=border, subsample=s, filter_flip=flip)
    o = geometry.out_shape(xs, ws, op.border_mode, op.subsample)
    assume(o[2] >= 1 and o[3] >= 1)
    variant, _ = forward_variant(op, dtype, list(xs) + [ws[0], ws[2], ws[3], o[2], o[3]])
    assume(variant.startswith("phases"))
    x = T.TensorType(dtype, (None,) * 4)("x")
    w = T.TensorType(dtype, (None,) * 4)("w")
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=s, filter_flip=flip)
    rng = np.random.default_rng(seed)
    vals = [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn, _ = check_native_vs_reference([x, w], [y], vals, **tol)
    assert variant.replace(" ", "_") in BODY.findall(fn.dump_llvm())
