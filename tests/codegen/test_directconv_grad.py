"""The tap-panel weight gradient (codegen/microkernels/directconv_grad.py): its panels grouped by the
pattern of their taps' distances, and both of its kernels (pattern kernels, the offset table's)
against the reference."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from codegen.microkernels import directconv_grad as DG
from symcnn.tensor.nnet.conv import conv2d
from tests.helpers import check_native_vs_reference
from tests.helpers import target  # noqa: F401 (a fixture: one run per target)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(C=st.integers(1, 9), kh=st.integers(1, 5), kw=st.integers(1, 5), H=st.integers(5, 12),
       W=st.integers(5, 12), flip=st.booleans(), dil=st.sampled_from([1, 2]), MR=st.integers(1, 12))
def test_panel_patterns_cover_every_panel_once(C, kh, kw, H, W, flip, dil, MR):
    tp = DG.TapPlan("float32", C, H + (kh - 1) * dil, W + (kw - 1) * dil, 16, kh, kw, H, W, 1, 1, flip,
                    dilation=(dil, dil))
    offs = tp.tap_offsets()
    npan = -(-len(offs) // MR)
    groups = DG.panel_patterns(offs, MR, kh * kw)
    distinct = {tuple(o - offs[p * MR] for o in offs[p * MR:p * MR + MR]) for p in range(npan)}
    if groups is None:
        assert len(distinct) > DG.MAX_PATTERNS
        return
    seen = []
    for deltas, first, step, count in groups:
        for k in range(count):
            pan = first + k * step
            p0 = pan * MR
            assert tuple(o - offs[p0] for o in offs[p0:p0 + MR]) == deltas
            seen.append(pan)
    assert sorted(seen) == list(range(npan))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(C=st.integers(1, 9), kh=st.integers(1, 7), kw=st.integers(1, 7), H=st.integers(7, 12),
       W=st.integers(7, 12), flip=st.booleans(), most=st.sampled_from([8, 10, 16, 28, 32]))
def test_row_panels_take_whole_filter_rows(C, kh, kw, H, W, flip, most):
    """row_panels: panels of whole filter rows (MR a multiple of kw, over the plain kernel's 6 and
    within the accumulators), each panel in exactly one pattern, at most MAX_ROW_PATTERNS distances."""
    tp = DG.TapPlan("float32", C, H + kh - 1, W + kw - 1, 16, kh, kw, H, W, 1, 1, flip)
    offs = tp.tap_offsets()
    mr, groups = DG.row_panels(offs, kh, kw, most, 6)
    if groups is None:
        assert mr == 6
        return
    assert mr % kw == 0 and 6 < mr <= most and mr <= kh * kw
    assert len({d for d, _, _, _ in groups}) <= DG.MAX_ROW_PATTERNS
    seen = []
    for deltas, first, step, count in groups:
        for k in range(count):
            p0 = (first + k * step) * mr
            assert tuple(o - offs[p0] for o in offs[p0:p0 + mr]) == deltas
            seen.append(first + k * step)
    assert sorted(seen) == list(range(-(-len(offs) // mr)))


# (dtype, x shape, W shape, border_mode, subsample, the kernels: panel taps x vectors of filters and
# whether they are the pattern kernels)
CASES = [
    ("float32", (5, 32, 15, 15), (32, 32, 3, 3), "half", (2, 2), "12x2", True),    # allconv's K=32
    ("float32", (3, 24, 11, 11), (64, 24, 3, 3), "half", (2, 2), "6x4", True),
    ("float32", (4, 7, 13, 12), (20, 7, 3, 3), (1, 1), (2, 2), "12x2", True),      # a shorter last panel
    ("float64", (3, 8, 12, 12), (32, 8, 3, 3), "half", (2, 2), "6x4", True),
    # panels of whole filter rows: two 5x5 rows (two vectors of filters: 20 accumulators), three 7x7 ones
    ("float32", (2, 16, 17, 17), (32, 16, 5, 5), "valid", (3, 3), "10x2", True),
    ("float32", (2, 3, 20, 20), (16, 3, 7, 7), (3, 3), (2, 2), "21x1", True),
    ("float32", (2, 16, 17, 17), (64, 16, 5, 5), "valid", (3, 3), "6x4", False),   # one row fits: the table
]


@pytest.mark.parametrize("dtype,xs,ws,border,subsample,tile,pattern", CASES)
def test_weight_gradient_kernels_match_reference(dtype, xs, ws, border, subsample, tile, pattern, target):
    x = T.tensor4("x", dtype=dtype, shape=xs)
    w = T.tensor4("w", dtype=dtype, shape=ws)
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=subsample)
    r = T.tensor4("r", dtype=dtype)
    gw = T.grad((y * r).sum(), w)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    xv = rng.standard_normal(xs).astype(dtype)
    wv = rng.standard_normal(ws).astype(dtype)
    rshape = tuple(symcnn.function([x, w], y.shape, mode="reference")(xv, wv))
    rv = rng.standard_normal(rshape).astype(dtype)
    tol = dict(rtol=1e-4, atol=2e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn, _ = check_native_vs_reference([x, w, r], [gw], [xv, wv, rv], **tol)
    kernels = set(re.findall(r"define internal void @\"?(symcnn_dconv_dwtp?_[A-Za-z0-9_]+)", fn.dump_llvm()))
    assert kernels, "the tap-panel weight gradient was not taken"
    if target.vector_bytes == 64:   # the tiles named are AVX-512's (16 float32 lanes, 32 registers)
        want = f"symcnn_dconv_{'dwtp' if pattern else 'dwt'}_{dtype}_{tile}_"
        assert any(k.startswith(want) for k in kernels), (want, kernels)
        assert all(k.startswith("symcnn_dconv_dwtp_") == pattern for k in kernels), kernels
