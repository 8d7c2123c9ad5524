"""PhaseSplit / PhaseMerge (symcnn/tensor/nnet/phases.py): the reference against the definition, each
the other's adjoint, the op contract (static types, infer_shape), verify_grad, native against the
reference on random geometries (contiguous and strided inputs, an open batch), and errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.gradient import verify_grad
from symcnn.tensor.nnet.phases import PhaseMerge, PhaseSplit
from tests.helpers import assert_op_contract, check_native_vs_reference, check_same_error, make_rng, target  # noqa: F401,E501


def loop_split(x, d, pad, phase_hw):
    """P[b*dh*dw + r*dw + s, c, a, q] = X[b, c, dh*a + r - ph, dw*q + s - pw], 0 outside X."""
    (dh, dw), (ph, pw), (Hs, Ws) = d, pad, phase_hw
    B, C, H, W = x.shape
    p = np.zeros((B * dh * dw, C, Hs, Ws), x.dtype)
    for b in range(B):
        for r in range(dh):
            for s in range(dw):
                for a in range(Hs):
                    for q in range(Ws):
                        i, j = dh * a + r - ph, dw * q + s - pw
                        if 0 <= i < H and 0 <= j < W:
                            p[b * dh * dw + r * dw + s, :, a, q] = x[b, :, i, j]
    return p


@st.composite
def geometries(draw):
    """(dilation, pad, image_hw, phase_hw): phases covering the padded image, or less or more of it."""
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    cover = [-(-(n + 2 * p) // k) for n, p, k in zip(hw, pad, d)]
    phase = tuple(max(1, c + draw(st.integers(-2, 2))) for c in cover)
    return d, pad, hw, phase


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(geometries(), st.integers(1, 3), st.integers(1, 3))
def test_reference_is_the_definition_and_merge_its_adjoint(geo, B, C):
    d, pad, hw, phase = geo
    rng = make_rng(sum(hw) + B)
    x = rng.standard_normal((B, C) + hw)
    p = rng.standard_normal((B * d[0] * d[1], C) + phase)
    v = T.tensor4("v", dtype="float64")
    got = symcnn.function([v], PhaseSplit(*geo)(v), mode="reference")(x)
    np.testing.assert_array_equal(got, loop_split(x, d, pad, phase))
    merged = symcnn.function([v], PhaseMerge(*geo)(v), mode="reference")(p)
    assert merged.shape == (B, C) + hw
    # <split(x), p> == <x, merge(p)>: each is the other's adjoint (and so its gradient)
    np.testing.assert_allclose((got * p).sum(), (x * merged).sum(), rtol=1e-12)


@pytest.mark.parametrize("geo", [((2, 2), (2, 2), (9, 8), (7, 6)), ((3, 1), (0, 1), (7, 5), (2, 9))])
def test_contract_and_gradients(geo):
    rng = make_rng(1)
    d = geo[0]
    x = rng.standard_normal((2, 3) + geo[2])
    p = rng.standard_normal((2 * d[0] * d[1], 3) + geo[3])
    assert_op_contract(lambda v: PhaseSplit(*geo)(v), [x])
    assert_op_contract(lambda v: PhaseMerge(*geo)(v), [p])
    verify_grad(lambda v: PhaseSplit(*geo)(v), [x], rng=np.random.RandomState(0))
    verify_grad(lambda v: PhaseMerge(*geo)(v), [p], rng=np.random.RandomState(1))


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(geometries(), st.integers(1, 4), st.integers(1, 5), st.sampled_from(["float32", "float64"]),
       st.booleans())
def test_native_matches_reference(geo, B, C, dtype, strided):
    """Both ops natively on contiguous and strided (reversed) inputs, the batch open (the phases' every
    size: checked at run time)."""
    d, _, hw, phase = geo
    rng = make_rng(B * 7 + C)
    x, p = T.TensorType(dtype, shape=(None, C) + hw)("x"), T.TensorType(dtype, shape=(None,) * 4)("p")
    xv = rng.standard_normal((B, C) + hw).astype(dtype)
    pv = rng.standard_normal((B * d[0] * d[1], C) + phase).astype(dtype)
    xs = x[:, ::-1] if strided else x
    ps = p[:, :, :, ::-1] if strided else p
    check_native_vs_reference([x, p], [PhaseSplit(*geo)(xs), PhaseMerge(*geo)(ps)], [xv, pv], rtol=0, atol=0)


def test_errors_name_the_sizes():
    geo = ((2, 2), (1, 1), (6, 6), (4, 4))
    with pytest.raises(ValueError, match="has 5 in dimension 2, expected 6"):
        PhaseSplit(*geo)(T.TensorType("float64", shape=(None, 1, 5, 6))("x"))
    with pytest.raises(ValueError, match="number 6, not a multiple of 4"):
        PhaseMerge(*geo)(T.TensorType("float64", shape=(6, 1, 4, 4))("p"))
    with pytest.raises(ValueError, match="dilation must be 2 integers >= 1"):
        PhaseSplit((0, 2), (0, 0), (4, 4), (2, 2))
    x, p = T.tensor4("x", dtype="float64"), T.tensor4("p", dtype="float64")
    check_same_error([x], [PhaseSplit(*geo)(x)], [np.zeros((1, 1, 5, 6))])
    check_same_error([p], [PhaseMerge(*geo)(p)], [np.zeros((6, 1, 4, 4))])


def test_thread_counts_and_targets_agree(monkeypatch, target):
    """The ops on 1, 2 and 3 threads (planes split over them: the same results bit for bit) on every
    target of the fixture, and a dilated layer with ReLU through them (forward and both gradients)
    against the reference."""
    from symcnn.config import config
    from symcnn.tensor.nnet import conv2d
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    geo = ((2, 3), (2, 3), (20, 18), (12, 8))
    rng = make_rng(5)
    xv, pv = rng.standard_normal((4, 32, 20, 18)), rng.standard_normal((24, 32, 12, 8))
    wv, sv = rng.standard_normal((32, 32, 3, 3)), rng.standard_normal((3, 32, 20, 24))
    x, p = T.tensor4("x", dtype="float64"), T.tensor4("p", dtype="float64")
    w = T.TensorType("float64", shape=(32, 32, 3, 3))("w")
    xs = T.TensorType("float64", shape=(None, 32, 20, 24))("xs")   # phases of 10x8 outputs
    y = T.nnet.relu(conv2d(xs, w, border_mode="half", filter_dilation=(2, 3)))
    step = [y] + T.grad((y * y).sum(), [xs, w])
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(config, "num_threads", n)
        _, got = check_native_vs_reference([x, p], [PhaseSplit(*geo)(x), PhaseMerge(*geo)(p)], [xv, pv],
                                           rtol=0, atol=0)
        results.append(got[0])
        fn, _ = check_native_vs_reference([xs, w], step, [sv, wv], rtol=1e-9, atol=1e-9)
        assert "dilated_conv_by_phases" in {f.rewrite for f in fn.rewrite_log}
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
