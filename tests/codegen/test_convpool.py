"""Native ConvPoolAct / ConvPoolActGrad against their numpy reference, and verify_grad of both:
every activation with and without pooling, the im2col and the direct-convolution kernels."""
import re

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad

from tests.fuzz.strategies import examples
from tests.helpers import CONV_ACTIVATIONS, check_native_vs_reference, conv_act_apply, conv_act_ops
from tests.helpers import target  # noqa: F401,E402 (target: a fixture, one run per target)

RTOL, ATOL = 1e-4, 1e-5

# (x shape, W shape, conv kwargs, pool kwargs)
CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 3), {}, dict(ws=(2, 2))),
    ((1, 2, 11, 10), (3, 2, 2, 3), {}, dict(ws=(3, 2), stride=(1, 2))),          # overlapping windows
    ((2, 2, 7, 7), (3, 2, 3, 3), dict(border_mode="half", subsample=(2, 1), filter_flip=False), dict(ws=(2, 2))),
    ((1, 1, 8, 9), (2, 1, 2, 2), dict(border_mode="full"), dict(ws=(3, 3), stride=(2, 3))),   # uint16 mask
    ((2, 2, 6, 12), (2, 2, 1, 3), dict(border_mode=(1, 0)), dict(ws=(1, 5), stride=(2, 2))),
    ((1, 1, 4, 4), (1, 1, 3, 3), {}, dict(ws=(3, 3))),                            # no window fits
]


def _values(xs, ws, dtype="float32", seed=0, ties=True):
    """Images of 0s and 1s with filters of +-0.25 (ties: the sums are exact, so many pooling
    windows tie); else Gaussian images (an input activation such as tanh makes those sums inexact,
    and which of two nearly tied sums is larger then depends on the order of the additions)."""
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 2, xs).astype(dtype) if ties else rng.standard_normal(xs).astype(dtype)
    W = ((rng.randint(0, 2, ws) * 2 - 1) * 0.25).astype(dtype)
    b = rng.uniform(-0.5, 0.5, ws[0]).astype(dtype)
    return x, W, b


def _ops(conv, pool_kw, static, xs, ws, act="tanh", dtype="float32", bias=True):
    kw = dict(conv, **pool_kw, has_bias=bias)
    if static:
        kw.update(imshp=xs, kshp=ws)
    return conv_act_ops(act, dtype, **kw)


def _outputs(fwd, bwd, bwd_nogx, x, W, b, g):
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    _, grads2 = conv_act_apply(fwd, bwd_nogx, x, W, b, g)
    return fouts + grads + grads2


def _check(xs, ws, ops, dtype="float32", seed=0, ties=True, **tol):
    fwd = ops[0]
    x, W, b, g = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
                  T.TensorType(dtype, (None,))("b"), T.TensorType(dtype, (None,) * 4)("g"))
    outs = _outputs(*ops, x, W, b, g)
    xv, Wv, bv = _values(xs, ws, dtype, seed=seed, ties=ties)
    ref = symcnn.function([x, W] + ([b] if fwd.has_bias else []), outs[0], mode="reference")(
        *([xv, Wv] + ([bv] if fwd.has_bias else [])))
    gv = np.random.RandomState(seed + 3).standard_normal(ref.shape).astype(dtype)
    if not tol:
        tol = dict(rtol=RTOL, atol=ATOL) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    ins, vals = ([x, W, b, g], [xv, Wv, bv, gv]) if fwd.has_bias else ([x, W, g], [xv, Wv, gv])
    return check_native_vs_reference(ins, outs, vals, **tol)[0]


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("xs,ws,conv,pool_kw", CASES)
def test_native_matches_reference(xs, ws, conv, pool_kw, static):
    _check(xs, ws, _ops(conv, pool_kw, static, xs, ws))


# every activation, pooled and not, on the im2col path (a strided 'half' conv) and the direct one
# (static 'valid' unit-stride), float32 and float64, batch 1 and odd batches
ACT_CASES = [
    ((3, 2, 9, 8), (4, 2, 3, 3), dict(border_mode="half", subsample=(2, 1)), False),
    ((1, 3, 10, 11), (5, 3, 3, 2), dict(border_mode="full", filter_flip=False), False),
    ((5, 2, 13, 14), (6, 2, 3, 4), {}, True),
    ((1, 1, 12, 12), (3, 1, 5, 5), {}, True),
]


# every activation on every geometry; each activation and each geometry with pooling and without,
# in both dtypes (the four combinations rotate over the activations)
EVERY_ACTIVATION = [(act, *case, combo < 2, ("float32", "float64")[combo % 2])
                    for a, act in enumerate(sorted(CONV_ACTIVATIONS)) for g, case in enumerate(ACT_CASES)
                    for combo in [(a + g) % 4]]


@pytest.mark.parametrize("act,xs,ws,conv,static,pooled,dtype", EVERY_ACTIVATION)
def test_every_activation_matches_reference(act, xs, ws, conv, static, pooled, dtype):
    pool_kw = dict(ws=(2, 2)) if pooled else dict(pool=None)
    _check(xs, ws, _ops(conv, pool_kw, static, xs, ws, act=act, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("mode", ["average_exc_pad", "average_inc_pad", "sum"])
@pytest.mark.parametrize("xs,ws,conv,static", ACT_CASES)
def test_average_pooling_matches_reference(mode, xs, ws, conv, static):
    for act, dtype in (("sigmoid", "float32"), ("switch", "float64")):
        pool_kw = dict(pool=mode, ws=(2, 3), stride=(1, 2))
        _check(xs, ws, _ops(conv, pool_kw, static, xs, ws, act=act, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("mode", ["average_exc_pad", "sum"])
def test_verify_grad_average_pooling(mode):
    rng = np.random.RandomState(2)
    fwd, bwd, _ = conv_act_ops("sigmoid", "float64", pool=mode, ws=(2, 2), stride=(1, 2))
    pts = [rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 2, 2, 2)) * 0.5, rng.standard_normal(2)]
    symcnn.verify_grad(lambda x, W, b: fwd(x, W, b), pts, mode="reference", rng=rng)
    gpts = [pts[0], pts[1], rng.uniform(0.1, 0.9, (1, 2, 3, 2)), rng.standard_normal((1, 2, 3, 2))]
    for k in range(3):
        symcnn.verify_grad(lambda x, W, out, g, k=k: bwd(x, W, out, g)[k], gpts, mode="reference", rng=rng)


@pytest.mark.parametrize("pooled", [True, False], ids=["pool", "nopool"])
def test_without_bias(pooled):
    xs, ws = (3, 2, 9, 8), (4, 2, 3, 3)
    pool_kw = dict(ws=(3, 2), stride=(2, 2)) if pooled else dict(pool=None)
    for act in ("maximum", "tanh"):
        _check(xs, ws, _ops({}, pool_kw, True, xs, ws, act=act, bias=False))


def test_float64_and_shape_errors():
    xs, ws = (2, 2, 6, 7), (3, 2, 3, 2)
    fwd = conv_act_ops("tanh", "float64", ws=(2, 2), imshp=xs, kshp=ws)[0]
    x, W, b = T.dtensor4("x"), T.dtensor4("W"), T.dvector("b")
    out, mask = fwd(x, W, b)
    xv, Wv, bv = _values(xs, ws, "float64")
    check_native_vs_reference([x, W, b], [out, mask], [xv, Wv, bv], rtol=1e-12, atol=1e-12)
    fn = symcnn.function([x, W, b], out, mode="native")
    with pytest.raises(ValueError):
        fn(xv[:, :, :5], Wv, bv)
    with pytest.raises(TypeError, match="dtype"):
        fwd(T.ftensor4(), W, b)
    with pytest.raises(TypeError, match="vector"):
        fwd(x, W, T.dmatrix())
    for unsupported in (dict(ignore_border=False), dict(pad=(1, 1)), dict(pool="median")):
        with pytest.raises(NotImplementedError):
            ConvPoolAct(ws=(2, 2), **unsupported)
    with pytest.raises(TypeError, match="has_bias=True"):
        fwd(x, W)
    with pytest.raises(TypeError, match="act must be a Composite"):
        ConvPoolAct(act="tanh")
    with pytest.raises(TypeError, match="dact must be a Composite"):
        ConvPoolActGrad(ws=(2, 2))
    with pytest.raises(TypeError, match="program computes float64"):
        fwd(T.ftensor4(), T.ftensor4(), T.fvector())


def test_infer_shape():
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    op = conv_act_ops("tanh", ws=(3, 2), stride=(2, 2), border_mode="full")[0]
    out, mask = op(x, W, b)
    xv, Wv, bv = _values((2, 3, 9, 8), (4, 3, 3, 3))
    fn = symcnn.function([x, W, b], [out.shape, mask.shape, out], mode="reference")
    s1, s2, o = fn(xv, Wv, bv)
    assert tuple(s1) == tuple(s2) == o.shape


@pytest.mark.parametrize("act,pooled", [("tanh", True), ("sigmoid", False), ("leaky_relu", True),
                                         ("switch", False), ("identity", True)])
def test_verify_grad_forward(act, pooled):
    rng = np.random.RandomState(0)
    pool_kw = dict(ws=(2, 2), stride=(1, 2)) if pooled else dict(pool=None)
    op = conv_act_ops(act, "float64", **pool_kw)[0]
    pts = [rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 2, 2, 2)) * 0.5, rng.standard_normal(2)]
    # every output the gradient reaches: out, and z when kept
    for k, role in enumerate(op.output_roles()):
        if role != "mask":
            symcnn.verify_grad(lambda x, W, b, k=k: op(x, W, b)[k] if len(op.output_roles()) > 1 else op(x, W, b),
                               pts, mode="reference", rng=rng)


@pytest.mark.parametrize("act,pooled", [("tanh", True), ("sigmoid", True), ("maximum", True), ("relu", False),
                                         ("scale", False)])
@pytest.mark.parametrize("need_gx", [True, False])
def test_verify_grad_backward(act, pooled, need_gx):
    """The gradient ops' own gradients (z and out treated as independent inputs; z is kept away
    from ReLU's kink, where the derivative is not differentiable)."""
    rng = np.random.RandomState(1)
    pool_kw = dict(ws=(2, 2)) if pooled else dict(pool=None)
    fwd, bwd_gx, bwd_nogx = conv_act_ops(act, "float64", **pool_kw)
    bwd = bwd_gx if need_gx else bwd_nogx
    b0 = T.constant(np.zeros(2))
    shape = (1, 2, 2, 2) if pooled else (1, 2, 4, 4)
    z0 = rng.uniform(0.2, 0.9, shape) * rng.choice([-1, 1], shape)
    pts = [rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 2, 2)) * 0.5, z0,
           rng.uniform(-0.9, 0.9, shape), rng.standard_normal(shape)]
    roles = bwd.input_roles()
    for k in range(len(bwd.output_roles())):
        def fun(x, W, z, out, g, k=k):
            named = {"x": x, "W": W, "z": z, "out": out, "g0": g}
            if pooled:
                named["mask"] = fwd(x, W, b0)[1]   # the ties of this x, W (piecewise constant: no gradient)
            return bwd(*[named[r] for r in roles])[k]
        symcnn.verify_grad(fun, pts, mode="reference", rng=rng)


# Static shapes that take the direct-convolution kernels (no im2col): (x shape, W shape, dtype,
# conv kwargs, expected layout with 64-byte vectors). 'wide' runs vectors along whole image rows; 'rows'
# packs whole output rows (OW dividing the vector length) into one vector, so with narrower vectors
# (AVX2, SSE2) a 'rows' case whose OW does not divide the lanes is 'wide'. With fewer than
# MIN_DIRECT_TAPS taps the fused op takes the few-tap kernels instead (FEW_TAP_CASES below).
DIRECT_CASES = [
    ((9, 1, 13, 14), (5, 1, 3, 4), "float32", {}, "wide"),                       # K % MR, odd OH
    ((9, 3, 11, 12), (7, 3, 4, 5), "float32", dict(filter_flip=False), "rows"),  # 2 rows per vector
    ((37, 3, 11, 12), (7, 3, 4, 5), "float32", {}, "rows"),      # several image groups per thread
    ((1, 2, 9, 6), (4, 2, 2, 3), "float32", {}, "rows"),                         # 4 rows, batch 1
    ((9, 2, 9, 10), (5, 2, 3, 3), "float32", {}, "rows"),                        # OH = 7: a row of padding
    ((9, 2, 12, 11), (3, 2, 5, 4), "float64", {}, "rows"),                       # float64: 8 lanes
    ((9, 1, 20, 19), (6, 1, 5, 5), "float64", {}, "wide"),
    ((9, 2, 13, 18), (5, 2, 5, 5), "float32", {}, "wide"),   # 50 taps: the fused op runs these kernels
]


@pytest.mark.parametrize("xs,ws,dtype,conv,layout", DIRECT_CASES)
def test_direct_kernels_match_reference(xs, ws, dtype, conv, layout, target):
    from codegen.microkernels import directconv as D
    kw = dict(conv, ws=(2, 2), imshp=xs, kshp=ws)
    fwd, bwd, bwd_nogx = ops = conv_act_ops("tanh", dtype, **kw)
    oh, ow = xs[2] - ws[2] + 1, xs[3] - ws[3] + 1
    plan = D.plan(fwd, dtype, [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], oh, ow])
    if target.vector_bytes == 64:
        assert plan is not None and plan.mode == layout
    else:   # 'rows' needs OW to divide the lanes; the wide layout may waste too much: im2col then
        assert plan is None or plan.mode == ("wide" if target.lanes(dtype) % ow else layout)
    _check(xs, ws, ops, dtype)
    # the same kernels with another prologue / epilogue (the cases take the two in turn)
    act = ("maximum", "sigmoid")[DIRECT_CASES.index((xs, ws, dtype, conv, layout)) % 2]
    _check(xs, ws, conv_act_ops(act, dtype, **kw), dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered")   # the reference's 0 * inf
def test_direct_weight_gradient_ignores_row_ends(target):
    """The wide layout computes (and must drop) outputs past each row's end; an Inf in the image there
    must not reach the weight gradient through them (NaN positions as in the reference)."""
    xs, ws = (9, 1, 13, 14), (5, 1, 3, 4)
    kw = dict(ws=(2, 2), imshp=xs, kshp=ws)
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    fwd, _, bwd = conv_act_ops("tanh", **kw)
    (out, mask), grads = conv_act_apply(fwd, bwd, x, W, b, g)
    xv, Wv, bv = _values(xs, ws)
    xv[2, 0, 4, 13] = np.inf      # last column: only wide-layout garbage outputs see it with s < 3
    xv[5, 0, 12, 0] = -np.inf
    ref = symcnn.function([x, W, b], out, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(4).standard_normal(ref.shape).astype("float32")
    check_native_vs_reference([x, W, b, g], [out, mask] + list(grads), [xv, Wv, bv, gv], rtol=RTOL, atol=ATOL)


def test_tap_tiles_fit_registers_and_match_reference(target):
    """The tutorial's second layer (50 filters of 5x5, 8x8 outputs; 3 input channels here, so the 75
    taps fill neither the 4- nor the 6-tap panels) with enough images for two groups per thread: the
    weight gradient's tap tiles stay within the target's accumulators, splitting the 50 filters into
    several column blocks with 16 vector registers, and the input gradient (fused with 8 or more lanes)
    reads W^T in gemm's panels whatever the tap tile, its taps in channel-minor order."""
    from codegen.microkernels import directconv as D, directconv_grad as DG, gemm
    xs, ws = (37, 3, 12, 12), (50, 3, 5, 5)
    kw = dict(pool="average_exc_pad", ws=(2, 2), imshp=xs, kshp=ws)   # (max pooling: the routed kernel)
    fwd, bwd, _ = conv_act_ops("tanh", **kw)
    tp = DG.tap_plan(fwd, "float32", [37, 3, 12, 12, 50, 5, 5, 8, 8])
    assert tp is not None and tp.gx_mr == gemm.params("float32")[1]
    assert DG.gx_fusable(tp)   # 8-wide output rows: whole rows per vector, or (4 lanes) two vectors per row
    assert [nv for _, nv in tp.blocks] and sum(nv for _, nv in tp.blocks) == tp.NV
    assert [j0 for j0, _ in tp.blocks] == [sum(nv for _, nv in tp.blocks[:j]) for j in range(len(tp.blocks))]
    assert tp.MR * max(nv for _, nv in tp.blocks) <= D.max_accumulators()
    assert len(tp.blocks) == (1 if target.vector_registers >= 32 else -(-tp.NV // 3))
    assert tp.P % tp.MR and tp.P % tp.gx_mr   # partial panels in both kernels
    assert tp.gx_offsets == tp.npan * tp.MR and tp.n_offsets == tp.gx_offsets + tp.P + tp.gx_mr - tp.P % tp.gx_mr
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    outs = fouts + grads
    xv, Wv, bv = _values(xs, ws)
    gv = np.random.RandomState(5).standard_normal((37, 50, 4, 4)).astype("float32")
    check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], rtol=RTOL, atol=ATOL)


def _random_case(seed):
    """A random static 'valid' conv + 2x2 pool: any filter size, 1-69 filters, output rows of widths
    that do or do not divide the vector length, odd batches, both dtypes, flipped or not."""
    rng = np.random.RandomState(seed)
    dtype = str(rng.choice(["float32", "float64"], p=[0.75, 0.25]))
    C, K, kh, kw = int(rng.randint(1, 5)), int(rng.randint(1, 70)), int(rng.randint(1, 6)), int(rng.randint(1, 6))
    OW = int(rng.choice([2, 4, 8, 16, 3, 5, 7, 12, 24, 30]))
    OH = int(rng.randint(2, 14))
    B = int(rng.choice([1, 2, 7, 9, 17, 33]))
    return dtype, (B, C, OH + kh - 1, OW + kw - 1), (K, C, kh, kw), bool(rng.rand() < 0.7)


@pytest.mark.parametrize("seed", range(12))
def test_random_static_shapes(seed):
    dtype, xs, ws, flip = _random_case(seed)
    act = sorted(CONV_ACTIVATIONS)[seed % len(CONV_ACTIVATIONS)]
    pool_kw = dict(ws=(2, 2)) if seed % 3 else dict(pool=None)
    kw = dict(pool_kw, imshp=xs, kshp=ws, filter_flip=flip)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    _check(xs, ws, conv_act_ops(act, dtype, **kw), dtype, seed=seed, **tol)


def test_random_shapes_reach_every_direct_kernel():
    """The seeds above cover both layouts, the fused input gradient and the im2col fallback (with
    64-byte vectors; for narrower ones the direct cases above are needed to reach the 'rows' layout)."""
    from codegen import target as targets
    from codegen.microkernels import directconv as D, directconv_grad as DG
    seen = set()
    cases = [_random_case(seed) for seed in range(12)]
    if targets.current().vector_bytes < 64:
        cases += [(dtype, xs, ws, conv.get("filter_flip", True)) for xs, ws, dtype, conv, _ in DIRECT_CASES]
    for dtype, xs, ws, flip in cases:
        op = ConvPoolAct(ws=(2, 2), imshp=xs, kshp=ws, filter_flip=flip)
        dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], xs[2] - ws[2] + 1, xs[3] - ws[3] + 1]
        p, tp = D.plan(op, dtype, dims), DG.tap_plan(op, dtype, dims)
        seen.add(p.mode if p is not None else "im2col")
        seen.add("gx fused" if DG.gx_fusable(tp) else "gx gemm")
    assert seen == {"wide", "rows", "im2col", "gx fused", "gx gemm"}, seen


@st.composite
def _configurations(draw):
    """A random point of the space: geometry (border mode, stride, filter size, channels, batch),
    pooling (any mode or none), activation, dtype, bias, static shapes or not."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    border = draw(st.sampled_from(["valid", "half", "full", (1, 0), (0, 2)]))
    sub = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    xs = (draw(st.sampled_from([1, 2, 5])), draw(st.integers(1, 3)), draw(st.integers(kh + 1, 10)),
          draw(st.integers(kw + 1, 10)))
    # filters past 256 bytes: the tap-panel weight gradient in chunks of filters
    ws = (draw(st.one_of(st.integers(1, 6), st.sampled_from([36, 70]))), xs[1], kh, kw)
    pool_kw = draw(st.sampled_from([dict(pool=None), dict(ws=(2, 2)), dict(ws=(2, 1), stride=(1, 1)),
                                    dict(pool="average_exc_pad", ws=(2, 2)), dict(pool="sum", ws=(1, 2))]))
    act = draw(st.sampled_from(sorted(CONV_ACTIVATIONS)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return xs, ws, dict(border_mode=border, subsample=sub, filter_flip=draw(st.booleans())), pool_kw, act, \
        dtype, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=examples(12), deadline=None)
@given(_configurations())
def test_random_configurations_match_reference(cfg):
    xs, ws, conv, pool_kw, act, dtype, bias, static = cfg
    _check(xs, ws, _ops(conv, pool_kw, static, xs, ws, act=act, dtype=dtype, bias=bias), dtype=dtype)


# Padded unit-stride static convolutions that take the direct kernels through zero-bordered copies:
# (x shape, W shape, conv kwargs, pool kwargs, dtype, activation). Channels differ from filters so the
# forward's kernel (P = C*kh*kw taps) and the input gradient's (P = K*kh*kw) have different names.
PADDED_CASES = [
    ((3, 16, 12, 12), (8, 16, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "maximum"),
    ((1, 8, 9, 10), (9, 8, 3, 3), dict(border_mode="full"), dict(pool=None), "float64", "tanh"),
    ((17, 8, 10, 12), (12, 8, 3, 3), dict(border_mode=(1, 2)), dict(ws=(2, 2)), "float32", "sigmoid"),
    ((3, 16, 12, 12), (8, 16, 3, 3), dict(border_mode="half", filter_flip=False), dict(pool=None), "float32", "relu"),
    ((9, 12, 8, 8), (6, 12, 5, 5), dict(border_mode="half"), dict(ws=(2, 2)), "float64", "leaky_relu"),
    ((1, 4, 11, 14), (5, 4, 3, 5), dict(border_mode=(2, 1)), dict(ws=(3, 3), stride=(2, 2)), "float32", "tanh"),
]


def _padded_plans(op, dtype, xs, ws):
    from codegen.kernels.conv_grad import grad_inputs_variant
    from codegen.kernels.convpool import forward_variant, tap_chunks
    from symcnn.tensor.nnet import conv_geometry as geometry
    o = geometry.out_shape(xs, ws, op.border_mode, op.subsample)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]]
    return forward_variant(op, dtype, dims), tap_chunks(op, dtype, dims), grad_inputs_variant(op, dtype, dims)[1]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", PADDED_CASES)
def test_padded_convolutions_take_the_direct_kernels(xs, ws, conv, pool_kw, dtype, act, target, monkeypatch):
    """Forward, weight gradient and input gradient of a padded unit-stride convolution read
    zero-bordered copies with the direct kernels (no im2col), and match the reference (the forward
    with vectors over filters on small images turned off: test_small_images_take_vectors_over_filters)."""
    from codegen.options import options
    monkeypatch.setattr(options, "kvec_small_images", False)
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    variant, taps, gx = _padded_plans(ops[0], dtype, xs, ws)
    if target.vector_bytes == 64:   # narrower vectors may waste too much of the direct tiles: im2col
        assert variant.startswith("direct padded") and taps is not None and gx is not None, (variant, taps, gx)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    kernels = set(re.findall(r"define internal void @\"?(symcnn_dconv_[A-Za-z0-9_]+)", fn.runner.ir))
    if variant.startswith("direct padded"):
        assert any(k.startswith(f"symcnn_dconv_{dtype}_") and f"_P{xs[1] * ws[2] * ws[3]}_" in k for k in kernels)
    if taps is not None:
        assert any(k.startswith("symcnn_dconv_dwt") for k in kernels), kernels
    if gx is not None:
        assert any(k.startswith(f"symcnn_dconv_{dtype}_") and f"_P{ws[0] * ws[2] * ws[3]}_" in k for k in kernels)


@pytest.mark.parametrize("dtype,act,pool_kw", [("float32", "relu", dict(pool=None)),
                                               ("float64", "tanh", dict(pool="average_exc_pad", ws=(2, 2)))])
def test_fused_input_gradient_of_rows_of_whole_vectors(dtype, act, pool_kw, target):
    """Output rows of two and three vectors (OW = 2L, 3L): the fused input gradient adds each
    accumulator vector into a part of a row of dx (the tap kernel's stores), against the reference."""
    L = target.lanes(dtype)
    for R in (2, 3):
        xs, ws = (5, 3, 7, R * L + 2), (6, 3, 3, 3)
        ops = conv_act_ops(act, dtype, **dict(pool_kw, imshp=xs, kshp=ws))
        tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
        fn = _check(xs, ws, ops, dtype, **tol)
        assert re.search(rf"define internal void @\"?symcnn_dconv_gx_{dtype}_\w*_OW{R * L}_", fn.runner.ir), R


@pytest.mark.parametrize("dtype,act,pool_kw,stride", [("float32", "relu", dict(pool=None), (2, 2)),
                                                      ("float64", "tanh", dict(ws=(2, 2)), (1, 3)),
                                                      ("float32", "sigmoid", dict(pool=None), (3, 2))])
def test_fused_input_gradient_of_strided_valid_layers(dtype, act, pool_kw, stride, target):
    """Strided 'valid' layers whose output rows divide the vector (2 and 4 wide): the fused input
    gradient's accumulator lanes are spread by the column stride as they are added into dx, against
    the reference."""
    sh, sw = stride
    for OW in (2, 4):
        xs, ws = (3, 5, 3 * sh + 3, (OW - 1) * sw + 3), (7, 5, 3, 3)
        ops = conv_act_ops(act, dtype, **dict(pool_kw, imshp=xs, kshp=ws, subsample=stride))
        tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
        fn = _check(xs, ws, ops, dtype, **tol)
        assert re.search(rf"define internal void @\"?symcnn_dconv_gx_{dtype}_\w*_OW{OW}_\w*_sw{sw}\"", fn.runner.ir), OW


# 'valid' layers whose output rows neither divide the vector nor are whole vectors on any target
# (30 and 13 wide), with 16 or more channels and filters: the input gradient is Winograd's
# correlation of the bordered output gradient (convpool.winograd_valid_grad_inputs), F(4x4) or F(2x2).
# (x shape, W shape, pool kwargs, dtype, activation)
VALID_WINOGRAD_GX_CASES = [
    ((3, 16, 32, 32), (16, 16, 3, 3), dict(ws=(2, 2)), "float32", "relu"),
    ((2, 32, 15, 15), (32, 32, 3, 3), dict(pool=None), "float64", "tanh"),
]


@pytest.mark.parametrize("xs,ws,pool_kw,dtype,act", VALID_WINOGRAD_GX_CASES)
def test_valid_input_gradient_by_winograd_where_rows_split_vectors(xs, ws, pool_kw, dtype, act):
    from codegen.kernels.convpool import winograd_valid_grad_inputs
    ops = conv_act_ops(act, dtype, **dict(pool_kw, imshp=xs, kshp=ws))
    OH, OW = xs[2] - ws[2] + 1, xs[3] - ws[3] + 1
    assert winograd_valid_grad_inputs(ops[1], dtype, list(xs) + [ws[0], 3, 3, OH, OW]) is not None
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, ties=False, **tol)
    # the input gradient's tile transform: the output gradient's ws[0] channels into xs[1] planes
    assert re.search(rf"define internal void @\"?symcnn_wino_in_{dtype}_F\d_C{ws[0]}_K{xs[1]}_OH{xs[2]}_", fn.runner.ir)


@st.composite
def _valid_winograd_layers(draw):
    """A 'valid' 3x3 fused layer with 16-32 channels and filters on 13-34 wide images (rows that
    split vectors or not): any activation, pooling mode (none, max, average, sum) and order, batch 1
    to 3, both dtypes."""
    dtype = draw(st.sampled_from(["float32", "float64"]))
    C, K = draw(st.sampled_from([16, 24, 32])), draw(st.sampled_from([16, 20, 32]))
    xs = (draw(st.integers(1, 3)), C, draw(st.integers(13, 20)), draw(st.integers(13, 34)))
    pool = draw(st.sampled_from([None, "max", "average_exc_pad", "sum"]))
    pool_kw = dict(pool=None) if pool is None else dict(pool=pool, ws=(2, 2),
                                                         order=draw(st.sampled_from(["pool_act", "act_pool"])))
    return xs, (K, C, 3, 3), pool_kw, dtype, draw(st.sampled_from(sorted(CONV_ACTIVATIONS)))


def test_drawn_valid_layers_with_winograd_gradients_match_reference():
    """Drawn 'valid' 3x3 layers (any activation, pooling and order) against the reference: their
    fused backward takes Winograd's input gradient where the rows split vectors (the tap kernel
    cannot store them) and it pays, and its weight gradient (without max pooling); both are reached."""
    from codegen.kernels.convpool import winograd_valid_grad_inputs
    from codegen.microkernels import directconv_grad as DG
    seen = set()

    @settings(max_examples=examples(8), deadline=None, database=None, derandomize=True)
    @given(_valid_winograd_layers())
    @example(((2, 16, 15, 15), (16, 16, 3, 3), dict(pool="average_exc_pad", ws=(2, 2), order="act_pool"),
              "float32", "leaky_relu"))   # 13 wide: Winograd's input gradient on every target
    def run(cfg):
        xs, ws, pool_kw, dtype, act = cfg
        ops = conv_act_ops(act, dtype, **dict(pool_kw, imshp=xs, kshp=ws))
        # (F(4x4)'s rounding over the batch's sums, as in _check_fused_gradients)
        tol = dict(rtol=RTOL, atol=1e-3) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
        ir = _check(xs, ws, ops, dtype, ties=False, **tol).runner.ir
        dims = list(xs) + [ws[0], 3, 3, xs[2] - 2, xs[3] - 2]
        if not DG.gx_fusable(DG.tap_plan(ops[1], dtype, dims)) and \
                winograd_valid_grad_inputs(ops[1], dtype, dims) is not None:
            assert re.search(rf"symcnn_wino_in_{dtype}_F\d_C{ws[0]}_K{xs[1]}_OH{xs[2]}_", ir)
            seen.add("gx")
        if re.search(r"define internal void @\"?symcnn_wgw_gemm_", ir):
            seen.add("gw")

    run()
    assert seen == {"gx", "gw"}, seen


# Fewer images than threads, the direct kernels: each image's blocks of filters are split over the
# threads, or left over past a multiple of them (the forward's symcnn_convpool_fwd_split). (x shape, W shape, conv kwargs, pool kwargs,
# dtype, activation): 'valid' (rows and wide), padded, strided (phase images and vectors over
# filters), pooled either order, biased or not.
SPLIT_CASES = [
    ((1, 8, 10, 10), (20, 8, 3, 3), {}, dict(ws=(2, 2)), "float32", "tanh", True),
    ((1, 16, 13, 21), (27, 16, 3, 3), {}, dict(pool=None), "float64", "relu", False),
    ((2, 12, 9, 9), (128, 12, 3, 3), dict(border_mode="half"), dict(pool="average_exc_pad", ws=(2, 2),
                                                                     order="act_pool"), "float32", "sigmoid", True),
    ((1, 16, 16, 16), (128, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32",
     "relu", True),
    ((1, 32, 12, 12), (130, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(ws=(2, 2), order="act_pool"),
     "float32", "leaky_relu", True),
    # more images than threads, not a multiple: whole images, then the images left over split
    ((5, 8, 10, 10), (20, 8, 3, 3), {}, dict(ws=(2, 2)), "float64", "tanh", True),
    ((7, 12, 12, 12), (48, 12, 3, 3), dict(border_mode="half"), dict(pool="max", ws=(2, 2), order="act_pool"),
     "float32", "relu", False),
    ((4, 16, 16, 16), (192, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32",
     "sigmoid", True),
]


# Padded unit-stride layers with fewer than 32 channels or filters on small images whose output rows
# are no whole number of vectors: the fused forward with vectors over filters
# (conv_forward.small_image_kvec). (x shape, W shape, conv kwargs, pool kwargs, dtype, activation,
# input activation): pooled either order, every padding, odd batches and batch 1, both dtypes.
# input activations that keep the images' 0s and 1s exact (so the pooling windows' ties survive)
EXACT_ON_INTEGERS = (None, "relu", "leaky_relu")
SMALL_KVEC_CASES = [
    ((5, 16, 6, 6), (32, 16, 3, 3), dict(border_mode="half"), dict(pool=None), "float32", "relu", None),
    ((3, 16, 11, 11), (64, 16, 3, 3), dict(border_mode="half", filter_flip=False), dict(ws=(2, 2)), "float64",
     "tanh", "relu"),
    ((1, 12, 7, 6), (32, 12, 3, 2), dict(border_mode=(1, 1)), dict(pool="average_exc_pad", ws=(2, 2),
                                                                   order="act_pool"), "float32", "leaky_relu", None),
    ((7, 8, 9, 9), (64, 8, 3, 3), dict(border_mode="full"), dict(pool="max", ws=(3, 3), stride=(2, 2)), "float64",
     "sigmoid", "tanh"),
]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act,in_act", SMALL_KVEC_CASES)
def test_small_images_take_vectors_over_filters(xs, ws, conv, pool_kw, dtype, act, in_act, target):
    """The fused forward of these layers runs the kernel with vectors over filters on the bordered
    (and activated) copies, and the forward and backward match the reference."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    if in_act is not None:
        kw["in_act"] = program_of(CONV_ACTIVATIONS[in_act], dtype)
    ops = conv_act_ops(act, dtype, **kw)
    assert _padded_plans(ops[0], dtype, xs, ws)[0] == "direct kvec"
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, ties=in_act in EXACT_ON_INTEGERS, **tol)
    assert re.search(r"define internal void @\"?symcnn_kvec_", fn.runner.ir)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act,bias", SPLIT_CASES)
def test_images_left_over_split_by_filters(xs, ws, conv, pool_kw, dtype, act, bias, n_threads, monkeypatch):
    """The forward of a batch that is not a multiple of the threads runs each image left over as
    shares of its blocks of filters, separate items (the outputs, mask, z and act of those filters
    only), against the reference."""
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", n_threads)
    ops = conv_act_ops(act, dtype, **dict(conv, **pool_kw, imshp=xs, kshp=ws, has_bias=bias))
    blocks = _filter_blocks(ops[0], dtype, xs, ws)
    assert blocks is not None and len(blocks) >= 2, blocks   # (one block: nothing to split)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    assert ("symcnn_convpool_fwd_split" in fn.runner.ir) == (xs[0] % n_threads != 0)


def _filter_blocks(op, dtype, xs, ws):
    """The blocks of filters of the direct plan the fused forward takes (None: no direct plan)."""
    from codegen.kernels.conv_forward import filter_blocks
    from codegen.kernels.convpool import padded_direct
    from codegen.microkernels import directconv as D
    from symcnn.tensor.nnet import conv_geometry as geometry
    o = geometry.out_shape(xs, ws, op.border_mode, op.subsample)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]]
    dp = D.plan(op, dtype, dims)
    di = padded_direct(op, dtype, dims) if dp is None else None
    plan = dp if dp is not None else (di.p if di is not None else None)
    return filter_blocks(plan) if plan is not None else None


# Convolutions with more than 256 bytes of filters (and no Winograd weight gradient): the fused
# weight gradient runs the tap panels over chunks of filters (conv_grad.TapChunks). (x shape, W
# shape, conv kwargs, pool kwargs, dtype, activation): padded and 'valid', strided and not, pooled
# and not, odd batches past a group of images.
CHUNKED_CASES = [
    ((19, 8, 8, 8), (72, 8, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32", "relu"),
    ((3, 6, 9, 7), (40, 6, 3, 3), dict(border_mode=(1, 2), subsample=(2, 1)), dict(ws=(2, 2)), "float64", "tanh"),
    ((2, 5, 6, 6), (130, 5, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=False), dict(pool=None),
     "float32", "sigmoid"),
    ((3, 4, 7, 7), (70, 4, 3, 3), dict(border_mode="full"), dict(pool="average_exc_pad", ws=(2, 2)), "float32",
     "leaky_relu"),
    # 'valid': the chunks read the images in place
    ((19, 8, 9, 9), (72, 8, 4, 4), {}, dict(pool=None), "float32", "relu"),
    ((3, 6, 10, 9), (40, 6, 3, 3), dict(filter_flip=False), dict(ws=(2, 2)), "float64", "tanh"),
    ((2, 5, 11, 12), (130, 5, 4, 3), dict(subsample=(2, 1)), dict(pool="sum", ws=(1, 2)), "float32", "sigmoid"),
]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", CHUNKED_CASES)
def test_filters_in_chunks_take_the_tap_panels(xs, ws, conv, pool_kw, dtype, act):
    """The weight gradient of a convolution with filters in more than one chunk runs the tap panels
    chunk by chunk (no im2col GEMM), and the gradients match the reference."""
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    _, taps, _ = _padded_plans(ops[0], dtype, xs, ws)
    assert taps is not None and len(taps.chunks) > 1, taps
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    kernels = set(re.findall(r"define internal void @\"?(symcnn_dconv_dwt[A-Za-z0-9_]*)", fn.runner.ir))
    assert kernels, "no tap-panel weight-gradient kernel"
    # no im2col weight gradient: dWT[P, K] += cols[P, N] @ top^T, the GEMM call (M, N, Q) = (P, K, OH*OW)
    oh, ow = _conv_out(ops[0], xs, ws)
    dims = f"(i64 {ws[1] * ws[2] * ws[3]}, i64 {ws[0]}, i64 {oh * ow},"
    assert f'@"symcnn_gemm_{dtype}_packed"{dims}' not in fn.runner.ir.replace('@symcnn', '@"symcnn')


# First layers (fewer than MIN_DIRECT_TAPS taps per output): (x shape, W shape, conv kwargs, pool
# kwargs, dtype, activation); the forward and the weight gradient without input gradient run the
# few-tap kernels on zero-bordered copies, whatever the border mode and pooling.
FEW_TAP_CASES = [
    ((3, 3, 16, 16), (32, 3, 3, 3), dict(border_mode="half"), dict(pool=None), "float32", "relu"),       # cifar's
    ((5, 1, 28, 28), (20, 1, 5, 5), {}, dict(ws=(2, 2)), "float32", "tanh"),                             # LeNet's
    ((1, 3, 9, 13), (7, 3, 3, 3), dict(border_mode="half", filter_flip=False), dict(ws=(2, 2)), "float64", "maximum"),
    ((3, 2, 7, 10), (5, 2, 2, 4), dict(border_mode=(1, 2)), dict(ws=(3, 2), stride=(1, 2)), "float32", "sigmoid"),
    ((5, 4, 8, 17), (6, 4, 3, 3), dict(border_mode="full"), dict(pool="average_exc_pad", ws=(2, 2)), "float32", "tanh"),
]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", FEW_TAP_CASES)
def test_few_taps_per_output_take_the_few_tap_kernels(xs, ws, conv, pool_kw, dtype, act, target):
    """A first layer's forward and weight gradient (with and without the input gradient) match the
    reference; the forward and the gradient without input gradient run the few-tap kernels."""
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    variant = _padded_plans(ops[0], dtype, xs, ws)[0]
    assert variant.startswith("fewtaps"), variant
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    mode = variant.split()[1]
    if mode == "pooled":   # pooled before the activation over windows equal to their stride: in the registers
        pool = pool_kw.get("pool", "max")
        assert re.search(rf"define internal void @\"?symcnn_fewtaps_pool_{dtype}_{pool}_", fn.runner.ir)
        assert re.search(rf"define internal void @\"?symcnn_fewtaps_(pool_)?dw_{dtype}_", fn.runner.ir)
        return
    kernels = set(re.findall(r"define internal void @\"?(symcnn_fewtaps_[a-z]+_[a-z0-9]+_[a-z]+)_", fn.runner.ir))
    assert f"symcnn_fewtaps_fwd_{dtype}_{mode}" in kernels, kernels
    assert f"symcnn_fewtaps_dw_{dtype}_{mode}" in kernels, kernels


# A first layer whose activation is its consumer's (the gradient passes unchanged): the few-tap weight
# gradient reads each image's output gradient in place, and its kernels prefetch the next block of
# filters' planes (the next image's after the last block; the batch's last image its own); the
# forward's kernels prefetch, for writing, the image's outputs that its epilogue stores. (x shape,
# W shape, conv kwargs, dtype): rows of one and two vectors, filters in whole and partial blocks,
# batch 1 and odd batches.
STREAMED_FEW_TAP_CASES = [
    ((3, 3, 16, 16), (13, 3, 3, 3), dict(border_mode="half"), "float32"),
    ((5, 3, 32, 32), (32, 3, 3, 3), dict(border_mode="half"), "float32"),
    ((1, 2, 14, 14), (7, 2, 3, 3), dict(border_mode=(1, 2), filter_flip=False), "float64"),
]


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("xs,ws,conv,dtype", STREAMED_FEW_TAP_CASES)
def test_first_layer_kernels_prefetch_what_comes_next(xs, ws, conv, dtype, n_threads, target, monkeypatch):
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", n_threads)
    ops = conv_act_ops("identity", dtype, **dict(conv, pool=None, imshp=xs, kshp=ws))
    assert _padded_plans(ops[0], dtype, xs, ws)[0].startswith("fewtaps"), _padded_plans(ops[0], dtype, xs, ws)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    assert re.search(rf"define internal void @\"?symcnn_fewtaps_dw_{dtype}_\w+_pf[1-4]\b", fn.runner.ir)
    assert re.search(rf"define internal void @\"?symcnn_fewtaps_fwd_{dtype}_\w+_pfw[0-9]+r[0-9]+\b", fn.runner.ir)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("xs,ws,dtype", [((6, 16, 16, 16), (16, 16, 3, 3), "float32"),
                                         ((5, 8, 12, 13), (6, 8, 3, 3), "float64")])
def test_strided_forward_kernels_prefetch_outputs_and_the_next_image(xs, ws, dtype, n_threads, monkeypatch):
    """A strided layer's forward on the phase images, image by image: its direct kernels prefetch the
    image's outputs (which its epilogue writes) and the next image (which the next phase split reads),
    and everything matches the reference (the batch's last image prefetches itself; a thread's last
    image the next thread's first), on 1 to 3 threads."""
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", n_threads)
    _phase_forwards(monkeypatch)
    ops = conv_act_ops("relu", dtype, **dict(border_mode="half", subsample=(2, 2), pool=None, imshp=xs, kshp=ws))
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    kernels = set(re.findall(r"define internal void @\"?(symcnn_dconv_{}_[A-Za-z0-9_]+)".format(dtype), fn.runner.ir))
    assert any(f"_P{xs[1] * ws[2] * ws[3]}_" in k and re.search(r"_pfw[0-9]+r[0-9]+$", k) for k in kernels), kernels


def test_few_tap_backward_verifies():
    """verify_grad of the fused op whose weight gradient runs the few-tap kernel (no input gradient:
    the gradient with respect to W and b of a first layer), a 3-channel 3x3 'half' convolution."""
    xs, ws = (2, 3, 5, 6), (3, 3, 3, 3)
    kw = dict(border_mode="half", pool=None, imshp=xs, kshp=ws)
    fwd, _, bwd = conv_act_ops("tanh", "float64", **kw)
    rng = np.random.RandomState(7)
    xv = rng.uniform(-1, 1, xs)
    gv = rng.uniform(-1, 1, (2, 3, 5, 6))

    def cost(W, b):
        return (fwd(T.constant(xv), W, b) * T.constant(gv)).sum()

    symcnn.verify_grad(cost, [rng.uniform(-1, 1, ws), rng.uniform(-1, 1, 3)], rng=rng, mode="native")
    W, b = T.dtensor4("W"), T.dvector("b")
    fn = symcnn.function([W, b], T.grad(cost(W, b), [W, b]))
    assert "symcnn_fewtaps_dw_float64" in fn.runner.ir


# First layers pooled before their activation over windows equal to their stride (LeNet's order): the
# kernels of microkernels/fewtaps_pool.py pool (forward) and route the pooled gradient (weight gradient
# without input gradient) in registers. (x shape, W shape, conv kwargs, pool kwargs, dtype, activation,
# bias): pooled planes that are and are not a whole number of vectors, every pool mode, 3x3 windows (9
# phases, a uint16 mask), rectangular ones, padding, batch 1 and odd batches, and conv outputs the windows
# do not cover (the forward only: the weight gradient keeps the few-tap kernel of fewtaps.py, whose zero
# gradient there meets the image as the reference's does).
POOLED_FEW_TAP_CASES = [
    ((5, 1, 28, 28), (20, 1, 5, 5), {}, dict(ws=(2, 2)), "float32", "tanh", True),                      # LeNet's
    ((1, 3, 10, 12), (7, 3, 3, 3), dict(border_mode="half", filter_flip=False), dict(ws=(2, 2)), "float64",
     "maximum", True),
    ((3, 1, 16, 16), (6, 1, 5, 5), {}, dict(pool="average_exc_pad", ws=(2, 2)), "float32", "sigmoid", True),
    ((7, 2, 10, 11), (5, 2, 3, 2), dict(border_mode=(1, 0)), dict(pool="average_inc_pad", ws=(2, 2)), "float64",
     "relu", False),
    ((3, 2, 12, 14), (9, 2, 3, 3), {}, dict(pool="sum", ws=(2, 3)), "float32", "leaky_relu", True),
    ((3, 2, 14, 14), (5, 2, 3, 3), {}, dict(ws=(3, 3)), "float32", "tanh", True),                       # 9 phases
    ((1, 1, 9, 20), (3, 1, 4, 4), dict(border_mode="full"), dict(ws=(1, 3)), "float64", "switch", True),  # 23 cols
    ((5, 1, 13, 13), (4, 1, 5, 5), {}, dict(ws=(2, 2)), "float32", "tanh", True),                       # 9x9
]


def _conv_out(op, xs, ws):
    from symcnn.tensor.nnet import conv_geometry as geometry
    return geometry.out_shape(xs, ws, op.border_mode, op.subsample)[2:]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act,bias", POOLED_FEW_TAP_CASES)
def test_pooled_first_layers_pool_in_registers(xs, ws, conv, pool_kw, dtype, act, bias, target):
    """The forward and (windows covering the conv output) the weight gradient without input gradient
    take the pooled few-tap kernels (read from the IR), and match the reference, ties included (0/1
    images and +-1/4 filters: every tied maximum gets the gradient)."""
    ops = conv_act_ops(act, dtype, **dict(conv, **pool_kw, imshp=xs, kshp=ws, has_bias=bias))
    assert _padded_plans(ops[0], dtype, xs, ws)[0] == "fewtaps pooled"
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    pool = pool_kw.get("pool", "max")
    assert re.search(rf"define internal void @\"?symcnn_fewtaps_pool_{dtype}_{pool}_", fn.runner.ir)
    (oh, ow), wsz = _conv_out(ops[0], xs, ws), pool_kw["ws"]
    covered = oh % wsz[0] == 0 and ow % wsz[1] == 0
    assert bool(re.search(rf"define internal void @\"?symcnn_fewtaps_pool_dw_{dtype}_{pool}_", fn.runner.ir)) == covered
    if not covered:
        assert re.search(rf"define internal void @\"?symcnn_fewtaps_dw_{dtype}_", fn.runner.ir)


@pytest.mark.filterwarnings("ignore:invalid value encountered")   # the reference's 0 * inf
def test_pooled_first_layer_ignores_lanes_past_the_positions(target):
    """The last vector's lanes past the pooled positions read the start of the next phase plane: an
    Inf there must reach only the taps the reference meets it with (NaN positions as in the
    reference). Pixel (0, 2) starts plane (0, 0, 1); the windows meet it with taps (0, 0..2) alone,
    the lanes past plane (0, 0, 0)'s positions with taps (0..2, 0)."""
    xs, ws = (3, 1, 14, 14), (5, 1, 3, 3)    # 12x12 conv output, 6x6 pooled: 36 positions
    fwd, _, bwd = conv_act_ops("tanh", imshp=xs, kshp=ws, ws=(2, 2))
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    (out, mask), grads = conv_act_apply(fwd, bwd, x, W, b, g)
    xv, Wv, bv = _values(xs, ws)
    xv[1, 0, 0, 2] = np.inf
    xv[2, 0, 0, 2] = -np.inf
    ref = symcnn.function([x, W, b], out, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(5).standard_normal(ref.shape).astype("float32")
    fn = check_native_vs_reference([x, W, b, g], [out, mask] + list(grads), [xv, Wv, bv, gv], rtol=RTOL, atol=ATOL)[0]
    assert "symcnn_fewtaps_pool_dw_float32" in fn.runner.ir


def test_pooled_first_layer_reads_strided_images(target):
    """Images whose rows are not contiguous (every second column of a wider input, a view) go through
    the per-thread bordered row; forward and weight gradient match the reference."""
    xs, ws = (3, 1, 12, 12), (6, 1, 5, 5)
    fwd, _, bwd = conv_act_ops("tanh", imshp=xs, kshp=ws, ws=(2, 2))
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    (out, mask), grads = conv_act_apply(fwd, bwd, x[:, :, :, ::2], W, b, g)
    xv, Wv, bv = _values((3, 1, 12, 24), ws)
    ref = symcnn.function([x, W, b], out, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(6).standard_normal(ref.shape).astype("float32")
    fn = check_native_vs_reference([x, W, b, g], [out, mask] + list(grads), [xv, Wv, bv, gv], rtol=RTOL, atol=ATOL)[0]
    assert "symcnn_fewtaps_pool_dw_float32" in fn.runner.ir


@st.composite
def _pooled_first_layers(draw):
    """A first layer pooled before its activation over windows equal to their stride: 1-3 channels,
    filters up to 5x5 (fewer than MIN_DIRECT_TAPS taps), any border mode, windows of 1-9 positions,
    pooled planes of a few positions to several vectors, conv outputs the windows cover or not,
    batch 1 or odd, every pool mode and activation, both dtypes, with or without bias, flipped or not."""
    from codegen.kernels.conv_forward import MIN_DIRECT_TAPS
    dtype = draw(st.sampled_from(["float32", "float64"]))
    C, kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    if C * kh * kw >= MIN_DIRECT_TAPS:
        C = 1
    wsz = draw(st.sampled_from([(2, 2), (2, 2), (3, 3), (2, 1), (1, 3), (2, 3)]))
    PH, PW = draw(st.integers(1, 6)), draw(st.integers(1, 13))
    OH, OW = PH * wsz[0] + draw(st.sampled_from([0, 0, 1])), PW * wsz[1] + draw(st.sampled_from([0, 0, 1]))
    border = draw(st.sampled_from(["valid", "half", "full", "pair"]))
    if border == "pair":
        border = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    pads = {"valid": (0, 0), "full": (kh - 1, kw - 1), "half": (kh // 2, kw // 2)}.get(border, border)
    H, W = OH + kh - 1 - 2 * pads[0], OW + kw - 1 - 2 * pads[1]
    if H < 1 or W < 1:
        border, H, W = "valid", OH + kh - 1, OW + kw - 1
    xs = (draw(st.sampled_from([1, 3, 5])), C, H, W)
    ws = (draw(st.sampled_from([1, 2, 5, 13, 20])), C, kh, kw)
    pool = draw(st.sampled_from(["max", "max", "average_exc_pad", "average_inc_pad", "sum"]))
    conv = dict(border_mode=border, filter_flip=draw(st.booleans()))
    return xs, ws, conv, dict(pool=pool, ws=wsz), draw(st.sampled_from(sorted(CONV_ACTIVATIONS))), dtype, \
        draw(st.booleans())


@settings(max_examples=examples(10), deadline=None)
@given(_pooled_first_layers())
def test_random_pooled_first_layers_match_reference(cfg):
    """Random first layers against the reference; the pooled few-tap kernels run exactly where their
    plan takes the layer (read from the IR: the weight gradient's where the windows cover the conv
    output too)."""
    from codegen.kernels.convpool_fewtaps import grad_plan, pooled_plan
    xs, ws, conv, pool_kw, act, dtype, bias = cfg
    ops = conv_act_ops(act, dtype, **dict(conv, **pool_kw, imshp=xs, kshp=ws, has_bias=bias))
    oh, ow = _conv_out(ops[0], xs, ws)
    dims = list(xs) + [ws[0], ws[2], ws[3], oh, ow]
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    fwd_here = re.search(r"define internal void @\"?symcnn_fewtaps_pool_float", fn.runner.ir)
    assert bool(fwd_here) == (pooled_plan(ops[0], dtype, dims) is not None)
    dw_here = re.search(r"define internal void @\"?symcnn_fewtaps_pool_dw_", fn.runner.ir)
    assert bool(dw_here) == (grad_plan(ops[0], dtype, dims, False) is not None)


def test_pooled_first_layers_reach_the_kernels():
    """The pooled plan takes every pool mode, 9-phase windows, pooled planes with a partial last
    vector, and declines planes wasting most of their lanes and windows that overlap."""
    from codegen.kernels.convpool_fewtaps import grad_plan, pooled_plan
    from codegen.target import current
    L = current().lanes("float32")
    for pool in ("max", "average_exc_pad", "average_inc_pad", "sum"):
        op = ConvPoolAct(pool=pool, ws=(2, 2), imshp=(3, 1, 28, 28), kshp=(20, 1, 5, 5))
        dims = [3, 1, 28, 28, 20, 5, 5, 24, 24]
        p = pooled_plan(op, "float32", dims)
        assert p is not None and p.variant == "fewtaps pooled" and p.n == 144
        assert grad_plan(op, "float32", dims, False) is not None and grad_plan(op, "float32", dims, True) is None
    op = ConvPoolAct(ws=(3, 3), imshp=(3, 2, 14, 14), kshp=(5, 2, 3, 3))
    p = pooled_plan(op, "float32", [3, 2, 14, 14, 5, 3, 3, 12, 12])
    assert p is not None and p.nph == 9 and p.ntop == 9 and p.n == 16
    op = ConvPoolAct(ws=(2, 2), imshp=(3, 1, 16, 16), kshp=(6, 1, 5, 5))   # 36 positions: a partial last vector
    p = pooled_plan(op, "float32", [3, 1, 16, 16, 6, 5, 5, 12, 12])
    assert p is not None and p.tail == 36 - (p.nvec - 1) * L and (L == 4 or p.tail < L)
    # a pooled plane of L // 4 positions: most lanes wasted
    op = ConvPoolAct(ws=(2, 2), imshp=(3, 1, 6, L // 2 + 4), kshp=(4, 1, 5, 5))
    assert pooled_plan(op, "float32", [3, 1, 6, L // 2 + 4, 4, 5, 5, 2, L // 2]) is None
    op = ConvPoolAct(ws=(3, 3), stride=(2, 2), imshp=(3, 1, 28, 28), kshp=(20, 1, 5, 5))   # overlapping
    assert pooled_plan(op, "float32", [3, 1, 28, 28, 20, 5, 5, 24, 24]) is None


def test_pooled_few_tap_plans_fit_registers(target):
    """The forward tiles (MR filters x NV vectors x the window's phases) and the weight-gradient
    blocks (MK x NT accumulators beside MK x phases routed gradients) fit the target's registers;
    the weights are read once per (phase, tap) pair, every pair once."""
    from codegen.microkernels import directconv as D, fewtaps_pool as FP
    regs = target.vector_registers
    for args in [(1, 28, 28, 20, 5, 5, (2, 2)), (3, 34, 34, 32, 3, 3, (2, 2)), (2, 14, 14, 5, 3, 3, (3, 3)),
                 (1, 9, 20, 3, 4, 4, (1, 3))]:
        for dtype in ("float32", "float64"):
            for pool in ("max", "sum"):
                p = FP.plan(dtype, *args[:6], args[6], True, pool)
                assert p is not None
                assert p.MR * p.NV * p.nph <= D.max_accumulators() + 4 and p.MR * p.NV * p.nph + p.NV + 2 <= regs
                assert p.MK * p.NT + p.MK * p.ntop + 2 <= regs
                pairs = [(ph, t) for _, _, _, prs in p.positions() for ph, t in prs]
                assert sorted(pairs) == [(ph, t) for ph in range(p.nph) for t in range(p.P)]
                assert len(FP.tap_sequence(p)) == p.P * p.nph


@pytest.mark.parametrize("pool_kw", [dict(ws=(2, 2)), dict(pool="average_exc_pad", ws=(2, 2))], ids=["max", "avg"])
def test_pooled_first_layer_thread_counts(monkeypatch, pool_kw):
    """The pooled few-tap forward and weight gradient on 1, 2 and 3 threads (per-thread phase planes,
    routed gradients and lane partials, added in thread order)."""
    xs, ws = (7, 1, 20, 20), (20, 1, 5, 5)
    _thread_counts_agree(monkeypatch, xs, ws, pool_kw, "tanh", (7, 20, 8, 8), 11, r"symcnn_fewtaps_pool_dw_")


# Strided static convolutions that take the phase kernels (conv_phases.py): (x shape, W shape, conv kwargs,
# pool kwargs, dtype, activation). The first two are allconv's stride-2 'half' layers (smaller batches).
STRIDED_CASES = [
    ((3, 32, 32, 32), (32, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32", "relu"),
    ((5, 64, 16, 16), (64, 64, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32", "relu"),
    ((1, 16, 20, 24), (20, 16, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=False), dict(ws=(2, 2)),
     "float32", "tanh"),
    ((3, 16, 17, 16), (12, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float64",
     "sigmoid"),                                                                  # phases of 9 and 8 rows
    ((2, 16, 16, 16), (12, 16, 4, 3), dict(border_mode=(1, 1), subsample=(2, 1)), dict(ws=(2, 2)), "float64",
     "tanh"),
    ((3, 8, 18, 25), (9, 8, 3, 5), dict(border_mode=(2, 1), subsample=(3, 2)), dict(pool=None), "float32",
     "maximum"),
]


def _phase_forwards(monkeypatch):
    """Strided forwards on the phase images (the kernel with vectors over filters turned off)."""
    from codegen.options import options
    monkeypatch.setattr(options, "kvec_forward", False)


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", STRIDED_CASES)
def test_strided_convolutions_take_the_phase_kernels(xs, ws, conv, pool_kw, dtype, act, monkeypatch):
    """The forward of a strided convolution runs the direct kernel on the images split into phases
    (its C*kh*kw taps on a (C, sh*sw*Hp, Wp) buffer), the input gradient one direct kernel per phase of
    dx (K*Ah*Aw taps each), and everything matches the reference, with and without the input gradient."""
    _phase_forwards(monkeypatch)
    _check_phase_kernels(xs, ws, conv, pool_kw, dtype, act)


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", STRIDED_CASES)
def test_strided_forwards_take_the_filter_vector_kernel(xs, ws, conv, pool_kw, dtype, act, target):
    """By default a strided forward runs the kernel with vectors over filters (microkernels/kvec.py),
    or the phase images where their shifted rows are one whole vector each (as many outputs as
    lanes) or the filters fill few lanes of their vectors; pooled or not, any activation, both
    dtypes, against the reference."""
    from codegen.kernels.conv_forward import MIN_KVEC_LANES, KVecImages
    from codegen.kernels.convpool import padded_direct
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    o = geometry_out(ops[0], xs, ws)
    di = padded_direct(ops[0], dtype, [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]])
    L = target.lanes(dtype)
    whole_rows = getattr(di, "shifted", False) and di.p.mode == "rows" and di.p.G == 1
    few = ws[0] < MIN_KVEC_LANES * -(-ws[0] // L) * L   # filters filling few lanes of their vectors
    assert isinstance(di, KVecImages) == (not whole_rows and not few), (di.variant, ws[0])
    if target.vector_bytes == 64:   # (every case has C*kh*kw >= 48 taps for the phase images)
        assert whole_rows == (o[3] == L), (di.variant, o)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    assert ("symcnn_kvec_" in fn.runner.ir) == isinstance(di, KVecImages)


def _check_phase_kernels(xs, ws, conv, pool_kw, dtype, act):
    """The checks of test_strided_convolutions_take_the_phase_kernels; returns the forward's PhaseImages
    and the input gradient's PhaseGradInputs."""
    from codegen.kernels.conv_phases import PhaseGradInputs, PhaseImages
    from codegen.kernels.convpool import padded_direct
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    variant, _, gx = _padded_plans(ops[0], dtype, xs, ws)
    o = geometry_out(ops[0], xs, ws)
    di = padded_direct(ops[0], dtype, [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]])
    assert variant.startswith("direct phases") and isinstance(di, PhaseImages), variant
    assert isinstance(gx, PhaseGradInputs)
    if di.p.mode == "rows":   # phase rows a whole number of output rows long (aligned row loads)
        assert di.p.W % o[3] == 0, (di.p.W, o[3])
    if di.shifted:   # rows of exactly OW, one copy per column offset: each vector one load (of G rows, or one)
        assert di.p.W == o[3] and (_layout(di.p) == "rows_whole" or di.p.G == 1), (di.p.W, o[3])
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, **tol)
    kernels = set(re.findall(r"define internal void @\"?(symcnn_dconv_[A-Za-z0-9_]+)", fn.runner.ir))
    assert any(k.startswith(f"symcnn_dconv_{dtype}_{_layout(di.p)}_") and f"_W{di.p.W}_" in k
               and f"_P{xs[1] * ws[2] * ws[3]}_" in k for k in kernels), kernels
    # each phase's kernel prefetches, as it computes, its share of dx (which the merge writes next)
    # and of the next image (which the next image's copy reads)
    for q in gx.phases:
        if q.p is not None:
            assert any(k.startswith(f"symcnn_dconv_{dtype}_{_layout(q.p)}_") and f"_W{q.p.W}_OW{q.V}_OH{q.U}_" in k
                       and f"_P{ws[0] * q.Ah * q.Aw}_" in k and re.search(r"_pfw[0-9]+r[0-9]+$", k)
                       for k in kernels), (q.U, q.V, kernels)
    return di, gx


def _layout(p):
    from codegen.microkernels import directconv as D
    return "rows_whole" if D.whole_rows(p) else p.mode


@pytest.mark.parametrize("xs,ws,dtype", [((5, 64, 16, 16), (64, 64, 3, 3), "float32"),
                                         ((3, 16, 8, 8), (12, 16, 3, 3), "float64")])
def test_small_strided_outputs_take_the_shifted_layout(xs, ws, dtype, monkeypatch):
    """Output rows a fraction of a vector wide (8 float32 / 4 float64 values: allconv's 16x16 -> 8x8
    layer): the forward and the input gradient take the shifted layouts (rows of exactly OW values, one
    copy per column offset), whose kernels load each vector of several rows at once, and match the
    reference; with 64 channels the forward's taps run in blocks of channels (accumulated in the conv
    scratch) under a 48 KB L1."""
    from codegen.microkernels import directconv as D
    monkeypatch.setattr(D, "l1_image_bytes", lambda: 40 * 1024)
    _phase_forwards(monkeypatch)
    if D.lanes(dtype) != 16 // (1 if dtype == "float32" else 2):
        pytest.skip("the shapes are chosen for 16 float32 lanes")
    di, gx = _check_phase_kernels(xs, ws, dict(border_mode="half", subsample=(2, 2)), dict(pool=None), dtype, "relu")
    assert di.shifted and di.nd == 2 and D.whole_rows(di.p), (di.variant, di.p.W)
    assert (di.p.tap_block < di.p.P) == (xs[1] == 64) and di.p.P % di.p.tap_block == 0, (di.p.tap_block, di.p.P)
    assert gx.cols == [1, 2] and gx.variant == "phases shifted"
    assert all(D.whole_rows(q.p) for q in gx.phases if q.p is not None)


@pytest.mark.parametrize("xs,ws,dtype", [((3, 32, 32, 32), (32, 32, 3, 3), "float32"),
                                         ((2, 16, 32, 32), (8, 16, 3, 3), "float64")])
def test_strided_outputs_a_vector_wide_take_the_shifted_input_gradient(xs, ws, dtype, monkeypatch):
    """Output rows of one float32 vector (allconv's 32x32 -> 16x16 layer): the input gradient takes the
    shifted layout too (one copy of the output gradient per column offset, rows of exactly OW), where
    every row load of every tap is aligned; the plain layout's taps read across two cache lines
    (its kernels 12 % slower). Values against the reference in both dtypes."""
    from codegen.microkernels import directconv as D
    _phase_forwards(monkeypatch)
    di, gx = _check_phase_kernels(xs, ws, dict(border_mode="half", subsample=(2, 2)), dict(pool=None), dtype, "relu")
    if D.lanes(dtype) == 16 and dtype == "float32":
        assert gx.cols == [1, 2] and gx.variant == "phases shifted", gx.variant
        assert all(q.p.G == 1 and q.p.W == q.V == 16 for q in gx.phases if q.p is not None)


def geometry_out(op, xs, ws):
    from symcnn.tensor.nnet import conv_geometry as geometry
    return geometry.out_shape(xs, ws, op.border_mode, op.subsample)


@st.composite
def _strided_configurations(draw):
    """A random static strided convolution with enough channels for the phase kernels: strides 2-3 (or
    along one axis), filters 1-5, every border mode, pooling or not, any activation, both dtypes."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    border = draw(st.sampled_from(["valid", "half", "full", (1, 0), (2, 2)]))
    sub = draw(st.sampled_from([(2, 2), (3, 3), (2, 1), (1, 2), (3, 2)]))
    xs = (draw(st.sampled_from([1, 3])), draw(st.sampled_from([8, 16, 32])), draw(st.integers(kh + 4, 24)),
          draw(st.integers(kw + 4, 24)))
    ws = (draw(st.sampled_from([5, 16, 20])), xs[1], kh, kw)
    pool_kw = draw(st.sampled_from([dict(pool=None), dict(ws=(2, 2))]))
    conv = dict(border_mode=border, subsample=sub, filter_flip=draw(st.booleans()))
    return xs, ws, conv, pool_kw, draw(st.sampled_from(sorted(CONV_ACTIVATIONS))), \
        draw(st.sampled_from(["float32", "float64"]))


def test_random_strided_configurations_match_reference():
    """Random strided configurations against the reference; the draws (with two allconv-like
    examples) reach the forward's kernel with vectors over filters and its phase kernels, and the
    input gradient's phase kernels."""
    from hypothesis import example
    from codegen.microkernels import directconv as D
    seen = set()

    @settings(max_examples=examples(8), deadline=None, database=None, derandomize=True)
    @given(_strided_configurations())
    @example(((2, 32, 16, 16), (16, 32, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=True),
              dict(pool=None), "relu", "float32"))
    @example(((2, 16, 32, 32), (16, 16, 3, 3), dict(border_mode="half", subsample=(2, 2), filter_flip=False),
              dict(ws=(2, 2)), "tanh", "float32"))
    def run(cfg):
        xs, ws, conv, pool_kw, act, dtype = cfg
        ops = _ops(conv, pool_kw, True, xs, ws, act=act, dtype=dtype)
        variant, _, gx = _padded_plans(ops[0], dtype, xs, ws)
        seen.add(variant.split()[1] if variant.startswith("direct") else variant)
        seen.add(type(gx).__name__)
        tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
        _check(xs, ws, ops, dtype, **tol)

    run()
    assert {"kvec", "PhaseGradInputs"} <= seen, seen
    if D.lanes("float32") == 16:   # (the second example's 16-wide output rows: one vector each)
        assert "phases" in seen, seen


# 3x3 unit-stride convolutions with enough channels take Winograd's kernels (conv_winograd.py) in the
# fused forward and in the fused input gradient: (x shape, W shape, conv kwargs, pool kwargs, dtype,
# activation). Sizes that are no multiple of the tiles, pooled and not, several images per GEMM panel
# in the forward (8x8 images: not in the input gradient, which works on one image at a time, and there
# a panel of one 8x8 image would waste 3/4 of it).
WINOGRAD_CASES = [
    ((3, 32, 16, 16), (32, 32, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "relu", True),
    ((5, 32, 15, 14), (33, 32, 3, 3), dict(border_mode="full", filter_flip=False), dict(pool=None), "float64",
     "tanh", True),
    ((3, 24, 32, 32), (16, 24, 3, 3), dict(border_mode="half"), dict(pool=None), "float32", "relu", True),
    ((8, 32, 8, 8), (32, 32, 3, 3), dict(border_mode=(1, 1)), dict(ws=(2, 2)), "float32", "sigmoid", False),
    # F(2x2, 5x5): LeNet's second layer (its input gradient: one 12x12 image per panel wastes too much);
    # ragged last tiles (15x15 outputs); 'half' with both gradients by Winograd
    ((32, 20, 12, 12), (50, 20, 5, 5), dict(border_mode="valid"), dict(ws=(2, 2)), "float32", "tanh", False),
    ((9, 20, 19, 19), (50, 20, 5, 5), dict(border_mode="valid", filter_flip=False), dict(ws=(2, 2)), "float32",
     "relu", False),
    ((3, 32, 16, 16), (33, 32, 5, 5), dict(border_mode="half"), dict(pool=None), "float64", "sigmoid", True),
    ((3, 32, 16, 16), (33, 32, 5, 5), dict(border_mode=(2, 2), filter_flip=False), dict(ws=(2, 2)), "float32",
     "tanh", True),
    # small images: the forward's vectors of tiles span images (a thread's last group short: 13 of 16)
    ((26, 64, 4, 4), (64, 64, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "relu", False),
    # (its input gradient: one 12x12 image's F(2x2) grid, 56% of it inside, which 32 channels and
    # filters take, MIN_EFFICIENCY_MANY_CHANNELS)
    ((8, 32, 12, 12), (32, 32, 3, 3), dict(border_mode="half"), dict(pool=None), "float32", "tanh", True),
]


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act,winograd_gx", WINOGRAD_CASES)
def test_winograd_convolutions_match_reference(xs, ws, conv, pool_kw, dtype, act, winograd_gx, target):
    """The fused forward (with its pooling / bias / activation epilogue) and input gradient (after
    its prologue) by Winograd's F(m x m, 3x3) and F(2x2, 5x5) against the reference. The data are Gaussian: the
    transforms round (float32: about 1e-6 of the largest output at most), so the exact ties of
    _values could pool differently; outputs here stay below ~30, atol 1e-3 is 3e-5 of that."""
    from codegen.kernels.convpool import winograd_grad_inputs
    from symcnn.tensor.nnet import conv_geometry as geometry
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, **dict(conv, **pool_kw, imshp=xs, kshp=ws))
    o = geometry.out_shape(xs, ws, fwd.border_mode, fwd.subsample)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]]
    variant = _padded_plans(fwd, dtype, xs, ws)[0]
    gx = winograd_grad_inputs(fwd, dtype, dims)
    x, W, b, g = (T.TensorType(dtype, (None,) * 4)(n) for n in "xWbg")
    b = T.TensorType(dtype, (None,))("b")
    outs = _outputs(fwd, bwd, bwd_nogx, x, W, b, g)
    rng = np.random.default_rng(sum(xs))
    xv, Wv, bv = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    Wv /= np.sqrt(ws[1] * ws[2] * ws[3])
    ref = symcnn.function([x, W, b], outs[0], mode="reference")(xv, Wv, bv)
    gv = rng.standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-3) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], **tol)[0]
    kernels = set(re.findall(r"define internal void @\"?(symcnn_wino_(?:in|out)_[A-Za-z0-9_]+)", fn.runner.ir))
    if target.vector_bytes == 64:
        assert variant == "winograd", variant
        assert (gx is not None) == winograd_gx, gx
    if variant == "winograd" or gx is not None:
        assert kernels, "no Winograd kernel in the IR"


def test_winograd_4x4_tiles_match_reference(monkeypatch):
    """F(4x4) tiles (options.winograd_max_tile = 4) in the fused forward and input gradient: 32x32
    images take them in both (float32 error about 2e-6 of the largest output with 32 channels)."""
    from codegen.kernels.convpool import winograd_forward, winograd_grad_inputs
    from codegen.options import options
    monkeypatch.setattr(options, "winograd_max_tile", 4)
    xs, ws = (3, 32, 32, 32), (32, 32, 3, 3)
    fwd, bwd, bwd_nogx = conv_act_ops("relu", "float32", border_mode="half", ws=(2, 2), imshp=xs, kshp=ws)
    dims = [3, 32, 32, 32, 32, 3, 3, 32, 32]
    assert winograd_forward(fwd, "float32", dims).p.m == 4
    assert winograd_grad_inputs(fwd, "float32", dims).p.m == 4
    fn = _check_gaussian_float32((fwd, bwd, bwd_nogx), xs, ws, (3, 32, 16, 16), seed=5)
    assert re.search(r"symcnn_wino_in_float32_F4_", fn.runner.ir)


def _as_list(outs):
    return list(outs) if isinstance(outs, (list, tuple)) else [outs]


def _near_ties(z, rel=3e-5):
    """Whether a 2x2 max-pooling window of z (the pre-activation values, windows at the edges cut) has
    its two largest values, or its largest and zero (where a ReLU family activation cuts), within
    rel of the largest |z|: Winograd's rounding (a few 1e-6 of it) could route the gradient of such
    a window elsewhere than the reference."""
    B, K, H, W = z.shape
    zp = np.full((B, K, H + H % 2, W + W % 2), -np.inf)
    zp[:, :, :H, :W] = z
    win = np.sort(zp.reshape(B, K, zp.shape[2] // 2, 2, zp.shape[3] // 2, 2).transpose(0, 1, 2, 4, 3, 5)
                  .reshape(B, K, zp.shape[2] // 2, zp.shape[3] // 2, 4), axis=-1)
    eps = rel * np.abs(z).max()
    return bool(((win[..., 3] - win[..., 2]) < eps).any() or (np.abs(win[..., 3]) < eps).any())


def _check_group_input_gradient(monkeypatch, threads, xs, ws, border, pool_kw, dtype, act, in_act):
    """The fused backward (with the input gradient; in_act: with the producer's derivative gx_act)
    of a unit-stride layer against the reference on Gaussian data; returns (the Winograd weight
    gradient's group, the input gradient's plan) where the lowering ran the input gradient on the
    weight gradient's group of images (convpool._grouped_gx), else None."""
    import codegen.kernels.convpool as CP
    from symcnn.config import config
    from symcnn.rewrite.convpool_chain import _with
    from symcnn.tensor.nnet.conv_epilogue import program_of
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(config, "num_threads", threads)
    grouped = []
    plain = CP._grouped_gx

    def recorded(gd, wg):
        if plain(gd, wg):
            grouped.append((wg.Gi, gd))
        return plain(gd, wg)

    monkeypatch.setattr(CP, "_grouped_gx", recorded)
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "off")   # (a cached function would not be lowered again)
    kw = dict(border_mode=border, imshp=xs, kshp=ws, **pool_kw)
    if in_act is not None:
        kw["in_act"] = program_of(CONV_ACTIVATIONS[in_act], dtype)
    fwd, bwd, _ = conv_act_ops(act, dtype, **kw)
    if in_act is not None:
        bwd = _with(bwd, gx_act=_derivative_program(in_act, dtype))
    x, W, g = (T.TensorType(dtype, (None,) * 4)(n) for n in "xWg")
    b = T.TensorType(dtype, (None,))("b")
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    conv = None
    if "ws" in pool_kw:   # the pooled values, to keep their windows clear of near ties
        plain_kw = dict(kw, pool=None)
        plain_kw.pop("ws")
        unpooled = conv_act_ops("identity", dtype, **plain_kw)[0]
        conv = symcnn.function([x, W, b], dict(zip(unpooled.output_roles(), _as_list(unpooled(x, W, b))))["out"],
                               mode="reference")
    for seed in range(sum(xs) + ws[0], sum(xs) + ws[0] + 50):
        rng = np.random.default_rng(seed)
        xv, Wv, bv = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
        Wv /= np.sqrt(ws[1] * ws[2] * ws[3])
        if conv is None or not _near_ties(conv(xv, Wv, bv)):
            break
    ref = symcnn.function([x, W, b], fouts[0], mode="reference")(xv, Wv, bv)
    gv = rng.standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-3) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn = check_native_vs_reference([x, W, b, g], grads, [xv, Wv, bv, gv], **tol)[0]
    if not grouped:
        return None
    group, gd = grouped[-1]
    assert f"symcnn_wino_in_{gd.p.name}_" in fn.runner.ir
    return group, gd


@pytest.mark.parametrize("threads,xs,ws,dtype,act,in_act,pool_kw,want", [
    (2, (7, 32, 16, 16), (64, 32, 3, 3), "float32", "relu", "relu", dict(pool=None), (4, 4, 4)),
    (1, (5, 32, 16, 16), (64, 32, 3, 3), "float64", "tanh", "leaky_relu", dict(ws=(2, 2)), (4, 4, 2)),
    (3, (10, 32, 16, 16), (64, 32, 3, 3), "float32", "sigmoid", None, dict(pool=None), (4, 4, 4)),
    (2, (37, 64, 8, 8), (64, 64, 3, 3), "float32", "relu", "relu", dict(ws=(2, 2)), (16, 2, 4)),
    (2, (70, 64, 4, 4), (64, 64, 3, 3), "float32", "tanh", "relu", dict(pool=None), (64, 4, 64)),
    (2, (23, 64, 6, 6), (64, 64, 3, 3), "float32", "relu", "leaky_relu", dict(pool=None), (7, 2, 4)),
    (2, (19, 32, 8, 8), (32, 32, 5, 5), "float32", "relu", "relu", dict(ws=(2, 2)), (6, 2, 4))],
    ids=["relu", "pooled_float64", "three_threads", "8x8", "4x4", "6x6", "5x5"])
def test_winograd_input_gradient_of_a_group_matches_reference(monkeypatch, target, threads, xs, ws, dtype, act,
                                                              in_act, pool_kw, want):
    """The Winograd weight gradient holds a group of images at a time, and their input gradient
    runs as panels of several images after each group. 16x16 images ('half' 3x3, 32 -> 64
    channels): F(4x4) panels of four images (float64: two), one image alone would take F(2x2) (its
    16 F(4x4) tiles fill a quarter of a panel); 8x8 images (64 -> 64): F(2x2) panels of four, in
    groups of 16 (one image alone: no Winograd input gradient, nor weight gradient); 4x4 images: one
    F(4x4) tile each, vectors of tiles spanning the group's 64 images (a thread's 35); 6x6 images:
    F(2x2) panels of four images spanning them, two for a group of seven (the second short); 5x5
    filters on 8x8 images: F(2x2, 5x5), panels of four, groups of six. Short last
    groups, with and without the producer's derivative (gx_act), against the reference on Gaussian
    data. want: (group, m, images a panel) on AVX-512 with a 48 KiB L1 data cache."""
    from codegen.kernels.convpool import winograd_grad_inputs
    from tests.helpers import pin_caches
    pin_caches(monkeypatch, l1d_bytes=48 * 1024)
    grouped = _check_group_input_gradient(monkeypatch, threads, xs, ws, "half", pool_kw, dtype, act, in_act)
    if target.vector_bytes == 64:
        group, gd = grouped
        assert (group, gd.p.m, gd.p.Gi) == want, (group, gd.p.m, gd.p.Gi)
        alone = winograd_grad_inputs(conv_act_ops(act, dtype, border_mode="half")[0], dtype,
                                     [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], xs[2], xs[3]])
        assert (alone.p.m if alone is not None else None) == (2 if xs[2] == 16 else None)
        assert gd.p.span == (xs[2] in (4, 6))


def test_one_image_input_gradient_takes_no_grid_spanning_images(monkeypatch, target):
    """The fused backward's input gradient one image at a time never takes a plan whose vectors of
    tiles span images (it has no group to span): a float64 layer on one 9x13 image, 32 -> 64
    channels, whose wasteful grids (MIN_EFFICIENCY_MANY_CHANNELS) include a spanning one, compiles
    and matches the reference."""
    from codegen.kernels.convpool import winograd_grad_inputs
    xs, ws = (1, 32, 9, 13), (64, 32, 3, 3)
    _check_group_input_gradient(monkeypatch, 1, xs, ws, "half", dict(pool=None), "float64", "leaky_relu", None)
    gx = winograd_grad_inputs(conv_act_ops("leaky_relu", "float64", border_mode="half")[0], "float64",
                              [1, 32, 9, 13, 64, 3, 3, 9, 13])
    assert gx is None or not gx.p.span


@st.composite
def _small_image_layers(draw):
    """A random unit-stride 3x3 or 5x5 layer on small images (4x4 to 18x18, where the Winograd weight
    gradient groups images): any border mode, 16 to 64 channels, 32 or 64 filters, batch 1 to 9,
    pooled or not, any activation, with or without an input activation, both dtypes, 1 to 3 threads.
    (The simplest draw, 32 -> 64 channels 'half' on 13x13 images, groups them.)"""
    xs = (draw(st.integers(1, 9)), draw(st.sampled_from([32, 64, 16])),
          draw(st.sampled_from([13, 8, 16, 4, 7, 14, 15, 17, 18, 9, 12, 5])),
          draw(st.sampled_from([13, 8, 16, 4, 7, 12, 14, 15, 17, 18, 9, 11, 6])))
    k = draw(st.sampled_from([3, 5]))
    ws = (draw(st.sampled_from([64, 32])), xs[1], k, k)
    acts = sorted(a for a in CONV_ACTIVATIONS if a not in ("identity", "scale"))
    threads, border = draw(st.integers(1, 3)), draw(st.sampled_from(["half", (1, 1), "full", "valid", (2, 0)]))
    pads = {"half": (k // 2,) * 2, "full": (k - 1,) * 2, "valid": (0, 0)}.get(border, border)
    assume(xs[2] + 2 * pads[0] >= k and xs[3] + 2 * pads[1] >= k)   # the filters fit the padded images
    return (threads, xs, ws, border,
            draw(st.sampled_from([dict(pool=None), dict(ws=(2, 2))])), draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(acts)), draw(st.sampled_from([None, "relu", "leaky_relu", "tanh"])))


def test_random_small_image_input_gradients_match_reference(monkeypatch, target):
    """Random layers on small images against the reference; the draws take the input gradient of
    the weight gradient's group of images (convpool._grouped_gx) and other plans."""
    seen = []

    @settings(max_examples=examples(12), deadline=None, database=None, derandomize=True)
    @given(_small_image_layers())
    def run(cfg):
        with monkeypatch.context() as m:
            seen.append(_check_group_input_gradient(m, *cfg) is not None)

    run()
    if target.vector_bytes == 64:
        assert any(seen) and not all(seen), seen


@pytest.mark.parametrize("xs,K,dtype,act,pool_kw,threads,m", [
    ((28, 64, 12, 12), 64, "float32", "relu", dict(pool=None), 2, 4),
    ((9, 32, 10, 10), 48, "float64", "tanh", dict(ws=(2, 2)), 2, 4),
    ((5, 128, 12, 12), 128, "float32", "sigmoid", dict(pool=None), 3, 2)])
def test_wasteful_winograd_grids_with_many_channels(monkeypatch, target, xs, K, dtype, act, pool_kw, threads, m):
    """A forward with many channels and filters on images whose tile grids waste more than
    MIN_EFFICIENCY allows (12x12 and 10x10: 56-66% of the tiles' columns inside) takes Winograd
    (conv_winograd.MIN_EFFICIENCY_MANY_CHANNELS: the plan with the fewest multiplications per output,
    F(4x4) tiles spanning images, or F(2x2) where two images a thread leave the spanning panel half
    empty) rather than the direct kernel, and matches the reference with its backward; 16 channels
    keep the direct kernel. 12x12: the fused backward's input gradient takes its wasteful F(2x2) grid
    too."""
    from codegen.kernels import conv_winograd as CW
    from codegen.kernels.convpool import winograd_forward, winograd_grad_inputs
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(config, "num_threads", threads)
    ws = (K, xs[1], 3, 3)
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, border_mode="half", imshp=xs, kshp=ws, **pool_kw)
    dims = [xs[0], xs[1], xs[2], xs[3], K, 3, 3, xs[2], xs[3]]
    n = -(-xs[0] // threads)
    few = conv_act_ops(act, dtype, border_mode="half", imshp=(xs[0], 16) + xs[2:], kshp=(16, 16, 3, 3))[0]
    fw = winograd_forward(few, dtype, [xs[0], 16, xs[2], xs[3], 16, 3, 3, xs[2], xs[3]])
    assert fw is None or fw.p.efficiency(n) >= CW.MIN_EFFICIENCY, fw.p.efficiency(n)
    wi = winograd_forward(fwd, dtype, dims)
    if target.vector_bytes == 64:
        eff = wi.p.efficiency(n)
        assert (wi.p.m, CW.MIN_EFFICIENCY_MANY_CHANNELS <= eff < CW.MIN_EFFICIENCY) == (m, True), (wi.p.m, eff)
    x, W, g = (T.TensorType(dtype, (None,) * 4)(n) for n in "xWg")
    b = T.TensorType(dtype, (None,))("b")
    outs = _outputs(fwd, bwd, bwd_nogx, x, W, b, g)
    rng = np.random.default_rng(sum(xs))
    xv, Wv, bv = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    Wv /= np.sqrt(ws[1] * 9)
    ref = symcnn.function([x, W, b], outs[0], mode="reference")(xv, Wv, bv)
    gv = rng.standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-3) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], **tol)[0]
    if wi is not None:
        assert f"symcnn_wino_in_{wi.p.name}_" in fn.runner.ir
    if target.vector_bytes == 64 and xs[2] == 12:   # the input gradient's grid too (the group's)
        group = _fused_winograd_grad(fwd, dtype, xs, ws, True).Gi
        gx = winograd_grad_inputs(fwd, dtype, dims, group)
        assert gx.p.efficiency(group) < CW.MIN_EFFICIENCY, gx.p.efficiency(group)
        assert f"symcnn_wino_in_{gx.p.name}_" in fn.runner.ir


def _check_gaussian_float32(ops, xs, ws, gshape, seed):
    """The fused forward and backward of ops on Gaussian images, filters scaled to unit outputs and
    a Gaussian pooled gradient of gshape, against the reference; returns the native function."""
    x, W, g = (T.TensorType("float32", (None,) * 4)(n) for n in "xWg")
    b = T.TensorType("float32", (None,))("b")
    outs = _outputs(*ops, x, W, b, g)
    rng = np.random.default_rng(seed)
    xv, Wv, bv = (rng.standard_normal(s).astype("float32") for s in (xs, ws, ws[:1]))
    Wv /= np.sqrt(ws[1] * ws[2] * ws[3])
    gv = rng.standard_normal(gshape).astype("float32")
    return check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], rtol=RTOL, atol=1e-3)[0]


@pytest.mark.parametrize("threads,act", [(1, "tanh"), (2, "relu"), (3, "sigmoid")])
def test_winograd_4x4_5x5_fused_match_reference(monkeypatch, target, threads, act):
    """LeNet's second layer (20 channels, 'valid' 5x5 on 12x12, 2x2 max pooling; 16 filters) with
    enough images per thread (70 a thread): the fused forward by F(4x4, 5x5) with vectors of tiles
    spanning images (four tiles an image; full groups of images read in place, each thread's short
    last group copied), its backward by the routed weight gradient and the tap panels, against the
    reference, tie masks included (Gaussian data: no two values of a window within the transforms'
    rounding of each other). x not dense, or an input activation to apply: the images are copied."""
    from codegen.kernels.convpool import _reads_in_place, winograd_forward
    from codegen.lower import Array
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(config, "num_threads", threads)
    B = 70 * threads
    xs, ws = (B, 20, 12, 12), (16, 20, 5, 5)
    fwd, bwd, bwd_nogx = conv_act_ops(act, "float32", border_mode="valid", ws=(2, 2), imshp=xs, kshp=ws)
    if target.vector_bytes == 64:
        wi = winograd_forward(fwd, "float32", [B, 20, 12, 12, 16, 5, 5, 8, 8])
        assert (wi.p.m, wi.p.span) == (4, True) and 70 % wi.p.Gi, (wi.p.m, wi.p.span, wi.p.Gi)
        assert _reads_in_place(fwd, "float32", Array("float32", None, list(xs)), wi, 12, 12)
        assert not _reads_in_place(fwd, "float32", Array("float32", None, list(xs), [2880 * 2, 144, 12, 1]), wi, 12, 12)
        assert not _reads_in_place(fwd, "float64", Array("float32", None, list(xs)), wi, 12, 12)
        with_in_act = conv_act_ops(act, "float32", border_mode="valid", ws=(2, 2), imshp=xs, kshp=ws,
                                   in_act=fwd.act)[0]
        assert not _reads_in_place(with_in_act, "float32", Array("float32", None, list(xs)), wi, 12, 12)
    fn = _check_gaussian_float32((fwd, bwd, bwd_nogx), xs, ws, (B, 16, 4, 4), seed=7)
    if target.vector_bytes == 64:
        assert re.search(r"symcnn_wino_in_float32_F4r5_\w+_\d+x\ds_", fn.runner.ir)


def test_winograd_one_thread_and_three_agree(monkeypatch):
    """The fused forward and backward by Winograd on 1 thread (the inline per-image loop) and on 3
    threads match the reference and each other (up to the order in which the weight-gradient
    partials are added)."""
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    xs, ws = (7, 32, 8, 8), (32, 32, 3, 3)
    got = {}
    for n in (1, 3):
        monkeypatch.setattr(config, "num_threads", n)
        fwd, bwd, bwd_nogx = conv_act_ops("relu", "float32", border_mode="half", ws=(2, 2), imshp=xs, kshp=ws)
        assert _padded_plans(fwd, "float32", xs, ws)[0] == "winograd"
        x, W, g = (T.TensorType("float32", (None,) * 4)(v) for v in "xWg")
        b = T.TensorType("float32", (None,))("b")
        outs = _outputs(fwd, bwd, bwd_nogx, x, W, b, g)
        rng = np.random.default_rng(7)
        xv, Wv, bv = (rng.standard_normal(s).astype("float32") for s in (xs, ws, ws[:1]))
        gv = rng.standard_normal((7, 32, 4, 4)).astype("float32")
        got[n] = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], rtol=RTOL, atol=1e-3)[1][0]
    for a, c in zip(got[1], got[3]):   # (float32 partials added in another order)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=max(1e-5, 4e-6 * np.abs(a).max()))


# The fused weight gradient by Winograd's F(2x2, 3x3) (conv_winograd_grad.py), in the same per-image
# loop as the prologue and the input gradient: (x shape, W shape, conv kwargs, pool kwargs, dtype,
# activation). Pooled and not, sizes that are no multiple of the tiles, more filters than channels (the
# GEMM's sides swapped), groups of small images per GEMM and chunks of tile rows of large ones.
WINOGRAD_WGRAD_CASES = [
    ((3, 32, 16, 16), (32, 32, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "relu"),
    ((5, 24, 15, 14), (40, 24, 3, 3), dict(border_mode="full", filter_flip=False), dict(pool=None), "float64",
     "tanh"),
    ((8, 16, 6, 6), (16, 16, 3, 3), dict(border_mode=(1, 1)), dict(ws=(2, 2)), "float32", "sigmoid"),
    ((2, 32, 34, 20), (16, 32, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "relu"),
    ((3, 16, 13, 11), (16, 16, 3, 3), dict(border_mode=(2, 1), filter_flip=False), dict(pool=None), "float32",
     "leaky_relu"),
]


def _fused_winograd_grad(op, dtype, xs, ws, need_gx):
    from codegen.kernels.conv_winograd_grad import fused_grad_weights
    from codegen.kernels.convpool import winograd_grad_inputs
    from symcnn.tensor.nnet import conv_geometry as geometry
    o = geometry.out_shape(xs, ws, op.border_mode, op.subsample)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]]
    return fused_grad_weights(op, dtype, dims, need_gx, winograd_grad_inputs)


def _check_fused_gradients(fwd, bwd, bwd_nogx, xs, ws, dtype, seed, taps, kernel):
    """The fused forward and backward (with and without the input gradient) against the reference,
    filters scaled by 1/sqrt(channels * taps); `kernel` is an IR pattern the native code must hold."""
    x, W, g = (T.TensorType(dtype, (None,) * 4)(n) for n in "xWg")
    b = T.TensorType(dtype, (None,))("b")
    outs = _outputs(fwd, bwd, bwd_nogx, x, W, b, g)
    rng = np.random.default_rng(seed)
    xv, Wv, bv = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1]))
    Wv /= np.sqrt(ws[1] * taps)
    ref = symcnn.function([x, W, b], outs[0], mode="reference")(xv, Wv, bv)
    gv = rng.standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-3) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], **tol)[0]
    assert re.search(kernel, fn.runner.ir)


@pytest.mark.parametrize("xs,ws,conv,pool_kw,dtype,act", WINOGRAD_WGRAD_CASES)
def test_winograd_weight_gradient_matches_reference(xs, ws, conv, pool_kw, dtype, act, target):
    """The fused backward with and without the input gradient, its weight gradient by Winograd
    (the backward without an input gradient always, the other where the input gradient is
    Winograd's too), against the reference."""
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, **dict(conv, **pool_kw, imshp=xs, kshp=ws))
    assert _fused_winograd_grad(fwd, dtype, xs, ws, False) is not None
    _check_fused_gradients(fwd, bwd, bwd_nogx, xs, ws, dtype, sum(xs) + 1, 9, r"define internal void @\"?symcnn_wgw_gemm_")


def _thread_counts_agree(monkeypatch, xs, ws, conv_kw, act, gshape, seed, kernel, scale=1.0, fused=None):
    """The fused backward of one layer on 1, 2 and 3 threads, taking the kernel `kernel` names (an IR
    pattern): repeated calls bit-identical, the thread counts equal up to the order in which the
    per-thread partials are added."""
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    got = {}
    for n in (1, 2, 3):
        monkeypatch.setattr(config, "num_threads", n)
        fwd, bwd, bwd_nogx = conv_act_ops(act, "float32", **conv_kw, imshp=xs, kshp=ws)
        if fused is not None:
            fused(fwd)
        x, W, g = (T.TensorType("float32", (None,) * 4)(v) for v in "xWg")
        b = T.TensorType("float32", (None,))("b")
        outs = _outputs(fwd, bwd, bwd_nogx, x, W, b, g)
        rng = np.random.default_rng(seed)
        xv, Wv, bv = (rng.standard_normal(s).astype("float32") for s in (xs, ws, ws[:1]))
        Wv *= scale
        gv = rng.standard_normal(gshape).astype("float32")
        fn, res = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], rtol=RTOL, atol=1e-3)
        assert re.search(kernel, fn.runner.ir)
        for a, c in zip(res[0], fn(xv, Wv, bv, gv)):
            np.testing.assert_array_equal(a, c)
        got[n] = res[0]
    for n in (2, 3):   # (float32 partials added in another order: a few 1e-6 of the largest value)
        for a, c in zip(got[1], got[n]):
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=max(1e-4, 4e-6 * np.abs(a).max()))


def test_winograd_weight_gradient_thread_counts(monkeypatch):
    """The fused backward with its Winograd weight gradient (and input gradient) on 1, 2 and 3 threads."""
    xs, ws = (7, 32, 16, 16), (32, 32, 3, 3)

    def winograd(fwd):
        assert _fused_winograd_grad(fwd, "float32", xs, ws, True) is not None

    _thread_counts_agree(monkeypatch, xs, ws, dict(border_mode="half", ws=(2, 2)), "relu", (7, 32, 8, 8), 9,
                         r"symcnn_wgw_gemm_", fused=winograd)


# The fused weight gradient of 'valid' 5x5 and 3x3 layers by Winograd's, on its own in the
# per-image loop (the input gradient stays the tap plan's): LeNet's second layer scaled down
# (average-pooled: max pooling takes the routed kernel), and ragged last tiles (9x7 outputs) with more
# filters than channels (the GEMM's sides swapped); 3x3 (F(4x4, 3x3) or F(2x2, 3x3)) with output rows
# that split vectors (30 and 13 wide: the input gradient Winograd's too) and that divide them (8 wide:
# the tap kernel's).
WINOGRAD_VALID_CASES = [
    ((16, 20, 12, 12), (50, 20, 5, 5), dict(pool="average_exc_pad", ws=(2, 2)), "float32", "tanh"),
    ((16, 20, 12, 12), (32, 20, 5, 5), dict(pool="sum", ws=(2, 2)), "float64", "tanh"),   # 256-byte top rows
    ((3, 16, 13, 11), (24, 16, 5, 5), dict(pool=None), "float32", "relu"),
    ((3, 16, 13, 11), (24, 16, 5, 5), dict(pool="average_inc_pad", ws=(2, 2)), "float64", "sigmoid"),
    ((3, 16, 32, 32), (32, 16, 3, 3), dict(pool=None), "float32", "relu"),
    ((2, 32, 15, 15), (32, 32, 3, 3), dict(pool=None), "float64", "tanh"),
    ((5, 24, 10, 10), (40, 24, 3, 3), dict(pool="average_exc_pad", ws=(2, 2)), "float32", "sigmoid"),
]


@pytest.mark.parametrize("xs,ws,pool_kw,dtype,act", WINOGRAD_VALID_CASES)
def test_winograd_valid_weight_gradient_matches_reference(xs, ws, pool_kw, dtype, act):
    """The fused backward of a 'valid' 5x5 or 3x3 layer, with and without the input gradient, its
    weight gradient by Winograd's (read from the IR), against the reference."""
    from codegen.kernels.conv_winograd_grad import fused_valid_grad_weights
    from codegen.microkernels.directconv_grad import tap_plan
    r = ws[2]
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, **dict(border_mode="valid", **pool_kw, imshp=xs, kshp=ws))
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], r, r, xs[2] - r + 1, xs[3] - r + 1]
    assert tap_plan(fwd, dtype, dims) is not None and fused_valid_grad_weights(fwd, dtype, dims).r == r
    _check_fused_gradients(fwd, bwd, bwd_nogx, xs, ws, dtype, sum(xs) + 2, r * r,
                           rf"define internal void @\"?symcnn_wgw_gemm_\w+_G\d+r\d+{'' if r == 3 else f'_f{r}'}(_m4)?\"?\(")


# The weight gradient of max-pooled 'valid' layers from the routed positions alone
# (microkernels/routed_grad.py): (x shape, W shape, pool kwargs, dtype, activation, conv kwargs).
# LeNet's second layer scaled down (20 channels, 16 lanes: 4 aligned copies; 8 lanes: 2), 18 channels
# (8 lanes: 4 copies; 4 lanes: 2), an odd
# channel count (read unaligned), windows wider than tall and strides past the windows (positions no
# window routes), pooled outputs that leave the last rows and columns out, filters unflipped. The
# integer images of _values make many ties: several bits of a window's mask set.
ROUTED_CASES = [
    ((16, 20, 12, 12), (50, 20, 5, 5), dict(ws=(2, 2)), "float32", "tanh", {}),
    ((5, 20, 12, 12), (32, 20, 5, 5), dict(ws=(2, 2)), "float64", "tanh", {}),
    ((4, 7, 10, 9), (6, 7, 3, 3), dict(ws=(2, 2)), "float32", "relu", dict(filter_flip=False)),
    ((3, 16, 14, 15), (9, 16, 3, 3), dict(ws=(2, 3), stride=(3, 4)), "float32", "sigmoid", {}),
    ((2, 24, 9, 9), (24, 24, 2, 4), dict(ws=(3, 3)), "float64", "leaky_relu", {}),
    ((3, 18, 10, 10), (8, 18, 3, 3), dict(ws=(2, 2)), "float32", "tanh", {}),
]


@pytest.mark.parametrize("xs,ws,pool_kw,dtype,act,conv", ROUTED_CASES)
def test_routed_weight_gradient_matches_reference(xs, ws, pool_kw, dtype, act, conv, target):
    """The fused backward of a max-pooled 'valid' layer with its input gradient takes the routed
    weight gradient (read from the IR) and matches the reference, ties included."""
    from codegen.microkernels.routed_grad import routed_plan
    kw = dict(border_mode="valid", **conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, **kw)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], xs[2] - ws[2] + 1, xs[3] - ws[3] + 1]
    p = routed_plan(ops[1], dtype, dims)
    assert p is not None and p.variant == "routed"
    assert p.nshift == (p.L // np.gcd(xs[1], p.L) if p.L // np.gcd(xs[1], p.L) <= 4 else 1)
    assert max(len(c) for c in p.chunks) <= max(1, 32 if target.vector_registers >= 32 else 16)
    fn = _check(xs, ws, ops, dtype, **(dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else {}))
    assert re.search(r"define internal void @\"?symcnn_routed_dw_" + dtype, fn.runner.ir)


def test_routed_plans_cover_every_layout():
    """The cases above reach aligned copies (4 and 2 per image) and the unaligned reads, and the
    routed kernel declines what it cannot take: average pools, overlapping windows, strided
    convolutions, padded borders, the 'act_pool' order."""
    from codegen.microkernels.routed_grad import routed_plan
    seen = set()
    for xs, ws, pool_kw, dtype, act, conv in ROUTED_CASES:
        op = conv_act_ops(act, dtype, border_mode="valid", **conv, **pool_kw, imshp=xs, kshp=ws)[1]
        dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], xs[2] - ws[2] + 1, xs[3] - ws[3] + 1]
        seen.add(routed_plan(op, dtype, dims).nshift)
    assert {1, 2, 4} <= seen, seen
    xs, ws = (2, 16, 10, 10), (8, 16, 3, 3)
    dims = [2, 16, 10, 10, 8, 3, 3, 8, 8]
    for kw in (dict(pool="average_exc_pad", ws=(2, 2)), dict(ws=(3, 3), stride=(2, 2)), dict(pool=None),
               dict(ws=(2, 2), order="act_pool")):
        op = conv_act_ops("relu", "float32", border_mode="valid", **kw, imshp=xs, kshp=ws)[1]
        assert routed_plan(op, "float32", dims) is None, kw
    op = conv_act_ops("relu", "float32", border_mode="valid", ws=(2, 2), subsample=(2, 2), imshp=xs, kshp=ws)[1]
    assert routed_plan(op, "float32", [2, 16, 10, 10, 8, 3, 3, 4, 4]) is None
    op = conv_act_ops("relu", "float32", border_mode="half", ws=(2, 2), imshp=xs, kshp=ws)[1]
    assert routed_plan(op, "float32", [2, 16, 10, 10, 8, 3, 3, 10, 10]) is None


@st.composite
def _routed_configurations(draw):
    """A max-pooled 'valid' unit-stride layer: 1-33 channels, filters up to 5x5, windows up to 3x3
    with strides up to one past them, any activation, both dtypes, flipped or not."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    wsz = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    stride = (wsz[0] + draw(st.integers(0, 1)), wsz[1] + draw(st.integers(0, 1)))
    C = draw(st.sampled_from([1, 3, 8, 12, 20, 33]))
    xs = (draw(st.sampled_from([1, 3, 6])), C, kh - 1 + draw(st.integers(wsz[0], 11)),
          kw - 1 + draw(st.integers(wsz[1], 11)))
    ws = (draw(st.sampled_from([1, 5, 16, 20])), C, kh, kw)
    return xs, ws, dict(ws=wsz, stride=stride), draw(st.sampled_from(sorted(CONV_ACTIVATIONS))), \
        draw(st.sampled_from(["float32", "float64"])), dict(filter_flip=draw(st.booleans()))


@settings(max_examples=examples(8), deadline=None)
@given(_routed_configurations())
def test_random_routed_configurations_match_reference(cfg):
    """Random max-pooled 'valid' layers: the backward with its input gradient reaches the routed weight
    gradient (windows of 4 or more positions, beside the tap plan's input gradient) and matches the
    reference."""
    from codegen.microkernels.directconv_grad import tap_plan
    from codegen.microkernels.routed_grad import routed_plan
    xs, ws, pool_kw, act, dtype, conv = cfg
    ops = conv_act_ops(act, dtype, border_mode="valid", **conv, **pool_kw, imshp=xs, kshp=ws)
    dims = [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], xs[2] - ws[2] + 1, xs[3] - ws[3] + 1]
    fn = _check(xs, ws, ops, dtype, **(dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else {}))
    routed = routed_plan(ops[1], dtype, dims) is not None and tap_plan(ops[1], dtype, dims) is not None
    assert routed == bool(re.search(r"define internal void @\"?symcnn_routed_dw_", fn.runner.ir))


def test_routed_weight_gradient_thread_counts(monkeypatch):
    """The routed weight gradient on 1, 2 and 3 threads (each thread adds into partials of its own,
    summed in thread order)."""
    xs, ws = (11, 20, 12, 12), (50, 20, 5, 5)
    _thread_counts_agree(monkeypatch, xs, ws, dict(border_mode="valid", ws=(2, 2)), "tanh", (11, 50, 4, 4), 5,
                         r"define internal void @\"?symcnn_routed_dw_", scale=1 / np.sqrt(ws[1] * 25))


# Input activations (in_act: the producing layer's activation, moved into its readers by
# symcnn/rewrite/convpool_chain.py): every convolution variant reads in_act(x) through an activated
# copy of each image. (x shape, W shape, conv kwargs, pool kwargs, dtype, act, in_act): Winograd's
# forward and gradients, the phase kernels of a stride-2 layer, a 'valid' 5x5 layer (Winograd weight
# gradient, tap-panel input gradient), a 'valid' 3x3 one (tap panels reading a group of images in place;
# without gx the direct weight gradient), a first layer's few-tap kernels.
IN_ACT_EXAMPLES = [
    ((3, 32, 16, 16), (32, 32, 3, 3), dict(border_mode="half"), dict(ws=(2, 2)), "float32", "relu", "maximum"),
    ((2, 16, 32, 32), (16, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32",
     "maximum", "relu"),
    ((4, 20, 12, 12), (50, 20, 5, 5), {}, dict(ws=(2, 2)), "float32", "tanh", "relu"),
    ((4, 16, 12, 12), (16, 16, 3, 4), {}, dict(pool=None), "float32", "mul_gt", "switch"),   # (3x3 and 5x5: Winograd)
    ((2, 3, 9, 10), (8, 3, 3, 3), dict(border_mode="half"), dict(pool=None), "float64", "switch", "tanh"),
]


@st.composite
def _in_act_configurations(draw):
    """A random fused layer with an input activation: filters 1-5, every border mode, strides 1-2,
    pooling or none, any activation, both dtypes; the input activations keep the sums exact (ties
    in the pooling windows then do not depend on the order of the sums)."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    border = draw(st.sampled_from(["valid", "half", "full", (1, 0)]))
    sub = draw(st.sampled_from([(1, 1), (2, 2), (1, 2)]))
    xs = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 3, 16])), draw(st.integers(kh + 2, 14)),
          draw(st.integers(kw + 2, 14)))
    ws = (draw(st.sampled_from([4, 16])), xs[1], kh, kw)
    pool_kw = draw(st.sampled_from([dict(pool=None), dict(ws=(2, 2))]))
    acts = sorted(a for a in CONV_ACTIVATIONS if a not in ("identity", "scale"))
    return (xs, ws, dict(border_mode=border, subsample=sub), pool_kw, draw(st.sampled_from(["float32", "float64"])),
            draw(st.sampled_from(acts)), draw(st.sampled_from(["maximum", "relu", "switch", "mul_gt"])))


def _in_act_values(xs, ws, dtype, seed):
    """x of -1, 0, 1 (the input activation cuts, and z == 0 ties occur), W of +-1/4: exact sums."""
    rng = np.random.RandomState(seed)
    return ((rng.randint(0, 3, xs) - 1).astype(dtype), ((rng.randint(0, 2, ws) * 2 - 1) * 0.25).astype(dtype),
            rng.uniform(-0.5, 0.5, ws[0]).astype(dtype))


def _check_in_act(cfg):
    """The forward and both gradients of the configuration against the reference; returns the
    forward's variant."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    xs, ws, conv, pool_kw, dtype, act, in_act = cfg
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    ops = conv_act_ops(act, dtype, in_act=program_of(CONV_ACTIVATIONS[in_act], dtype), **kw)
    assert all(op.in_act is not None for op in ops)
    x, W, b, g = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
                  T.TensorType(dtype, (None,))("b"), T.TensorType(dtype, (None,) * 4)("g"))
    outs = _outputs(*ops, x, W, b, g)
    xv, Wv, bv = _in_act_values(xs, ws, dtype, sum(xs))
    ref = symcnn.function([x, W, b], outs[0], mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(3).standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = check_native_vs_reference([x, W, b, g], outs, [xv, Wv, bv, gv], **tol)[0]
    return _padded_plans(ops[0], dtype, xs, ws)[0], fn.runner.ir


def _exact_winograd(monkeypatch):
    """F(2x2) tiles: the in_act checks' sums are exact on its transforms (0, +-1, +-1/2), so that
    the ties of their pooling windows are the reference's; F(4x4)'s (thirds, fifteenths) round
    them, and the rounding would decide the ties (test_winograd_4x4_tiles_match_reference checks
    F(4x4) on data without exact ties)."""
    from codegen.options import options
    monkeypatch.setattr(options, "winograd_max_tile", 2)


@pytest.mark.parametrize("cfg", IN_ACT_EXAMPLES + [
    ((2, 32, 16, 16), (16, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32",
     "sigmoid", "leaky_relu")], ids=["winograd", "phases", "valid5x5", "valid3x4", "fewtaps", "kvec"])
def test_input_activation_takes_every_kernel(cfg, target, monkeypatch):
    """A layer applying its producer's activation to x matches the reference on the Winograd, phase,
    direct, tap-panel and few-tap kernels."""
    _exact_winograd(monkeypatch)
    variant, ir = _check_in_act(cfg)
    k = IN_ACT_EXAMPLES.index(cfg) if cfg in IN_ACT_EXAMPLES else 5
    if target.vector_bytes == 64:
        want = ["winograd", "direct phases", "direct", "direct", "fewtaps", "direct kvec"][k]
        assert variant.startswith(want), variant
        if k == 3:   # the tap panels of the input gradient's weight gradient, the direct one without gx
            assert "symcnn_dconv_dwt" in ir and "symcnn_dconv_dw_" in ir
    if k == 2:   # max-pooled 'valid' 5x5: the routed weight gradient reads the activated image copy
        assert "symcnn_routed_dw_" in ir


@pytest.mark.parametrize("in_act,dtype,xs", [("sigmoid", "float32", (3, 16, 32, 32)), ("tanh", "float64", (1, 8, 17, 18)),
                                             ("relu", "float32", (2, 16, 31, 31))])
def test_phase_split_applies_the_input_activation_as_whole_vectors(in_act, dtype, xs, target):
    """The strided layer's phase split applies its producer's activation to each source vector
    before the shuffles that split it, behind an opaque copy (irutil.opaque) so that LLVM keeps it
    whole; the zero border stays zero where in_act(0) is not (sigmoid). Values against the
    reference, rows of whole, partial and odd vectors."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    ws = (16, xs[1], 3, 3)
    kw = dict(border_mode="half", subsample=(2, 2), pool=None, imshp=xs, kshp=ws)
    ops = conv_act_ops("maximum", dtype, in_act=program_of(CONV_ACTIVATIONS[in_act], dtype), **kw)
    x, W, b = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
               T.TensorType(dtype, (None,))("b"))
    out = ops[0](x, W, b)[0]
    rng = np.random.RandomState(sum(xs))
    vals = [rng.uniform(-2, 2, xs).astype(dtype), rng.uniform(-0.3, 0.3, ws).astype(dtype),
            rng.uniform(-0.5, 0.5, ws[:1]).astype(dtype)]
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = check_native_vs_reference([x, W, b], [out], vals, **tol)[0]
    variant = _padded_plans(ops[0], dtype, xs, ws)[0]
    if target.vector_bytes == 64 and xs[2] == 32:
        assert variant.startswith("direct phases"), variant
    if variant.startswith("direct phases") and (target.x86 or target.aarch64):
        assert re.search(r'asm\s+"", "=[vw],0"', fn.runner.ir), variant


def test_random_input_activations_match_reference(monkeypatch):
    """Random layers with an input activation against the reference (with the examples above, the
    draws reach the im2col, direct and phase kernels)."""
    _exact_winograd(monkeypatch)
    seen = set()

    @settings(max_examples=examples(8), deadline=None, database=None, derandomize=True)
    @given(_in_act_configurations())
    def run(cfg):
        seen.add(_check_in_act(cfg)[0].split()[0])

    run()
    assert len(seen) >= 2, seen


def test_input_activation_verifies():
    """verify_grad of the fused forward and of its gradient (gx: of in_act(x)) with a smooth input
    activation, pooled and not."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    rng = np.random.RandomState(5)
    for pool_kw in (dict(pool=None), dict(ws=(2, 2))):
        xs, ws = (2, 3, 6, 5), (4, 3, 3, 3)
        kw = dict(border_mode="half", imshp=xs, kshp=ws, in_act=program_of(T.tanh, "float64"), **pool_kw)
        fwd, bwd, _ = conv_act_ops("sigmoid", "float64", **kw)
        xv, Wv, bv = rng.uniform(-1, 1, xs), rng.uniform(-1, 1, ws), rng.uniform(-1, 1, ws[:1])
        shape = geometry_out(fwd, xs, ws) if not fwd.pool else (2, 4, 3, 2)
        gv = rng.uniform(-1, 1, shape)

        def cost(x, W, b):
            return (fwd(x, W, b)[0] * T.constant(gv)).sum()

        def grad_cost(x, W, b):
            outs, grads = conv_act_apply(fwd, bwd, x, W, b, T.constant(gv))
            return sum((gr * gr).sum() for gr in grads)

        symcnn.verify_grad(cost, [xv, Wv, bv], rng=rng, mode="native")
        symcnn.verify_grad(grad_cost, [xv, Wv, bv], rng=rng, mode="native")


def _derivative_program(name, dtype):
    """The derivative of activation `name` as a program of (x, g): what fold_dact_into_gx
    (symcnn/rewrite/convpool_chain.py) moves from a layer's gradient into its reader's."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    fn = CONV_ACTIVATIONS[name]
    return program_of(lambda x, g: symcnn.grad(None, x, known_grads={fn(x): g}), dtype, nin=2)


def _check_gx_act(cfg):
    """The gradient op of the configuration with gx_act (the derivative of its input activation)
    against the reference, and the reference's gx against T.grad's derivative applied to the plain
    op's gx; returns the input gradient's variant."""
    from symcnn.rewrite.convpool_chain import _with
    from symcnn.tensor.nnet.conv_epilogue import program_of
    xs, ws, conv, pool_kw, dtype, act, in_act = cfg
    kw = dict(conv, **pool_kw, imshp=xs, kshp=ws)
    fwd, bwd, _ = conv_act_ops(act, dtype, in_act=program_of(CONV_ACTIVATIONS[in_act], dtype), **kw)
    folded = _with(bwd, gx_act=_derivative_program(in_act, dtype))
    x, W, b, g = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
                  T.TensorType(dtype, (None,))("b"), T.TensorType(dtype, (None,) * 4)("g"))
    fouts, grads = conv_act_apply(fwd, folded, x, W, b, g)
    _, plain = conv_act_apply(fwd, bwd, x, W, b, g)
    expected = symcnn.grad(None, x, known_grads={CONV_ACTIVATIONS[in_act](x): plain[-1]})
    xv, Wv, bv = _in_act_values(xs, ws, dtype, sum(xs))
    ref = symcnn.function([x, W, b], fouts[0], mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(3).standard_normal(ref.shape).astype(dtype)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    got, want = symcnn.function([x, W, b, g], [grads[-1], expected], mode="reference")(xv, Wv, bv, gv)
    np.testing.assert_allclose(got, want, **tol)
    check_native_vs_reference([x, W, b, g], grads, [xv, Wv, bv, gv], **tol)
    return _padded_plans(fwd, dtype, xs, ws)[2]


@pytest.mark.parametrize("cfg", IN_ACT_EXAMPLES + [
    ((3, 16, 12, 12), (16, 16, 3, 3), dict(border_mode="valid"), dict(ws=(2, 2)), "float64", "relu", "mul_gt"),
    ((2, 32, 16, 16), (16, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float32",
     "sigmoid", "leaky_relu"),
    ((4, 24, 28, 28), (24, 24, 7, 7), dict(border_mode="half"), dict(pool=None), "float32", "relu", "maximum")],
    ids=["winograd", "phases", "valid5x5", "valid3x3", "fewtaps", "pooled3x3", "kvec", "winograd7x7"])
def test_input_gradient_applies_the_producers_derivative(cfg, target, monkeypatch):
    """gx_act: the gradient op applies its producer's derivative to gx as it stores it, on every
    input-gradient kernel (Winograd, phases, tap panels, direct, im2col), and gives what T.grad gives
    for the derivative of the plain op's gx."""
    _exact_winograd(monkeypatch)
    _check_gx_act(cfg)


@pytest.mark.parametrize("cfg", [
    ((2, 16, 26, 26), (16, 16, 3, 3), dict(border_mode="half", subsample=(3, 3)), dict(pool=None), "float32",
     "relu", "leaky_relu"),
    ((3, 16, 31, 29), (24, 16, 3, 3), dict(border_mode="half", subsample=(2, 2)), dict(pool=None), "float64",
     "tanh", "maximum")], ids=["stride3", "odd_stride2"])
def test_phase_input_gradients_apply_the_derivative_as_they_merge(cfg, target, monkeypatch):
    """The phase input gradient applies gx_act channel by channel as it merges its phases: strides 2
    (vector merges, odd widths: masked) and 3 (a scalar merge)."""
    from codegen.kernels.conv_phases import PhaseGradInputs
    _exact_winograd(monkeypatch)
    assert isinstance(_check_gx_act(cfg), PhaseGradInputs)


def test_random_input_gradients_apply_the_producers_derivative(monkeypatch):
    """Random layers (any border mode, stride, pooling, dtype, activation) with gx_act against the
    reference; the draws reach more than one input-gradient kernel."""
    _exact_winograd(monkeypatch)
    seen = set()

    @settings(max_examples=examples(8), deadline=None, database=None, derandomize=True)
    @given(_in_act_configurations())
    def run(cfg):
        seen.add(str(_check_gx_act(cfg)))

    run()
    assert len(seen) >= 2, seen


def test_input_gradient_with_the_producers_derivative_verifies():
    """verify_grad of the gradient op with gx_act (a smooth derivative: the producer's tanh)."""
    from symcnn.rewrite.convpool_chain import _with
    from symcnn.tensor.nnet.conv_epilogue import program_of
    rng = np.random.RandomState(6)
    xs, ws = (2, 3, 6, 5), (4, 3, 3, 3)
    kw = dict(border_mode="half", imshp=xs, kshp=ws, in_act=program_of(T.tanh, "float64"), pool=None)
    fwd, bwd, _ = conv_act_ops("sigmoid", "float64", **kw)
    folded = _with(bwd, gx_act=_derivative_program("tanh", "float64"))
    xv, Wv, bv = rng.uniform(-1, 1, xs), rng.uniform(-1, 1, ws), rng.uniform(-1, 1, ws[:1])
    gv = rng.uniform(-1, 1, geometry_out(fwd, xs, ws))

    def grad_cost(x, W, b):
        _, grads = conv_act_apply(fwd, folded, x, W, b, T.constant(gv))
        return sum((gr * gr).sum() for gr in grads)

    symcnn.verify_grad(grad_cost, [xv, Wv, bv], rng=rng, mode="native")


@st.composite
def _phase_in_act_configurations(draw):
    """A random strided layer the phase kernels take (C*kh*kw taps enough for the direct kernel),
    with any input activation, those that do not map 0 to 0 too (the split applies it to the image's
    values, the zero border is the padding of act(x)); batch 1 and odd batches, both dtypes, strides
    whose columns split by vectors (sw 2) and by scalars (sw 1, 3)."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sub = draw(st.sampled_from([(2, 2), (2, 1), (1, 2), (3, 3), (2, 3)]))
    border = draw(st.sampled_from(["valid", "half", "full", (1, 0)]))
    xs = (draw(st.sampled_from([1, 2, 5])), draw(st.sampled_from([16, 24])), draw(st.integers(kh + 3, 19)),
          draw(st.integers(kw + 3, 19)))
    ws = (draw(st.sampled_from([5, 16])), xs[1], kh, kw)
    return (xs, ws, dict(border_mode=border, subsample=sub), dict(pool=None),
            draw(st.sampled_from(["float32", "float64"])), draw(st.sampled_from(["relu", "tanh", "identity"])),
            draw(st.sampled_from(["sigmoid", "tanh", "leaky_relu", "relu", "scale"])))


@pytest.mark.parametrize("kvec", [False, True], ids=["phases", "kvec"])
def test_phase_split_applies_any_input_activation(monkeypatch, kvec):
    """Strided layers whose forward splits the image into phases (or copies it for the kernel with
    vectors over filters) apply the input activation as they copy it: forward and both gradients
    against the reference, for activations that keep 0 and those that do not; the draws reach the
    phase kernels (the kvec kernel)."""
    if not kvec:
        _phase_forwards(monkeypatch)
    want = "direct kvec" if kvec else "direct phases"
    seen = set()

    @settings(max_examples=examples(10), deadline=None, database=None, derandomize=True)
    @given(_phase_in_act_configurations())
    def run(cfg):
        variant = _check_in_act(cfg)[0]
        seen.add((variant.startswith(want), cfg[2]["subsample"][1] == 2))

    run()
    assert {(True, True), (True, False)} <= seen, seen


def test_phase_split_input_activation_thread_counts(monkeypatch):
    """The phase-split forward with a sigmoid input activation, and its backward, on 1, 2 and 3 threads
    (odd batch, shifted and plain phase layouts)."""
    from codegen.kernels.convpool import forward_variant
    from symcnn.tensor.nnet.conv_epilogue import program_of
    _phase_forwards(monkeypatch)
    for xs, o in (((7, 16, 16, 16), 8), ((3, 16, 32, 32), 16)):
        ws = (20, xs[1], 3, 3)
        conv_kw = dict(border_mode="half", subsample=(2, 2), pool=None,
                       in_act=program_of(T.nnet.sigmoid, "float32"))

        def phases(fwd):
            assert forward_variant(fwd, "float32", list(xs) + [20, 3, 3, o, o]).startswith("direct phases")

        _thread_counts_agree(monkeypatch, xs, ws, conv_kw, "relu", (xs[0], 20, o, o), 4, "symcnn", fused=phases)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("in_act", ["sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("subsample", [(1, 1), (2, 2)])
def test_bordered_copies_apply_any_input_activation(dtype, in_act, subsample):
    """The tap-panel weight gradient of a padded layer copies each image into a zero-bordered buffer and
    applies the input activation as it copies: activations that do not keep 0 leave the border zero
    (the padding of act(x)); batch 1 and an odd batch, against the reference."""
    for batch in (1, 3):
        xs, ws = (batch, 8, 9, 11), (8, 8, 3, 3)
        cfg = (xs, ws, dict(border_mode="half", subsample=subsample), dict(pool=None), dtype, "relu", in_act)
        from symcnn.tensor.nnet.conv_epilogue import program_of
        op = conv_act_ops("relu", dtype, border_mode="half", subsample=subsample, pool=None, imshp=xs, kshp=ws,
                          in_act=program_of(CONV_ACTIVATIONS[in_act], dtype))[0]
        assert _padded_plans(op, dtype, xs, ws)[1] is not None   # the bordered copies' tap panels
        _check_in_act(cfg)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("static", [True, False])
def test_bias_gradient_sums_planes_of_every_length(dtype, static, monkeypatch):
    """The fused backward's per-filter bias sums (kernels/row_sum.py, whose every branch and
    vector width tests/codegen/test_reduce.py's vector sums take) over planes shorter than a
    vector, of whole vectors, and of groups of vectors with vectors and a tail past them, with and
    without pooling; the activation, border mode and thread count rotate over the planes."""
    acts = ["relu", "tanh", "sigmoid", "identity"]
    borders = [{}, dict(border_mode="half"), dict(border_mode="full")]
    sides = (3, 4, 6, 11, 13)
    for i, side in enumerate(sides):
        monkeypatch.setattr(symcnn.config, "num_threads", 1 + i % 2)
        xs, ws = (2 + i % 2, 3, side, side), (5, 3, 3, 3)
        for pool_kw in (dict(pool=None), dict(ws=(2, 2))):
            if pool_kw.get("ws") and side < 4:
                continue
            ops = _ops(borders[i % 3], pool_kw, static, xs, ws, act=acts[i % 4], dtype=dtype)
            _check(xs, ws, ops, dtype=dtype)


# Layers without an activation of their own (a later layer applies it as its input activation, as
# in an all-convolutional network) and without pooling: (x shape, W shape, conv kwargs, dtype):
# Winograd, strided (phases and vectors over filters), few-tap, 'valid' 5x5 and 1x1, 'full'.
PASSED_CASES = [
    ((5, 16, 12, 12), (32, 16, 3, 3), dict(border_mode="half"), "float32"),
    ((3, 8, 16, 16), (16, 8, 3, 3), dict(border_mode="half", subsample=(2, 2)), "float64"),
    ((4, 32, 16, 16), (32, 32, 3, 3), dict(border_mode="half", subsample=(2, 2)), "float32"),
    ((3, 3, 12, 12), (8, 3, 3, 3), dict(border_mode="half"), "float32"),
    ((3, 6, 10, 10), (10, 6, 5, 5), {}, "float64"),
    ((3, 6, 10, 10), (10, 6, 1, 1), {}, "float32"),
    ((7, 20, 8, 8), (24, 20, 3, 3), dict(border_mode="full"), "float32"),
]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("xs,ws,conv,dtype", PASSED_CASES)
def test_identity_layers_read_the_incoming_gradient_in_place(xs, ws, conv, dtype, n_threads, monkeypatch):
    """The backward of a layer whose gradient program passes the incoming gradient on unchanged
    reads it in place for every image but the batch's last (convpool._passed_top), and matches the
    reference: the weight, bias and input gradients, on any thread count."""
    from symcnn.tensor.nnet.conv_epilogue import passed_input
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", n_threads)
    ops = conv_act_ops("identity", dtype, **dict(conv, pool=None, imshp=xs, kshp=ws))
    assert passed_input(ops[1].dact, 2) == 2
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, ties=False, **tol)
    assert "gbk_passed" in fn.runner.ir


@pytest.mark.parametrize("xs,ws,conv,dtype", [
    ((3, 3, 32, 32), (32, 3, 3, 3), dict(border_mode="half"), "float32"),
    ((2, 1, 20, 36), (8, 1, 5, 5), {}, "float32"),
    ((3, 3, 16, 16), (8, 3, 3, 3), dict(border_mode="half"), "float64")])
def test_first_layers_without_activation_read_the_incoming_gradient_in_place(xs, ws, conv, dtype):
    """A first layer (no input gradient) taking the few-tap weight gradient, whose output rows are
    whole vectors, reads the incoming gradient of every image in place when its gradient program
    passes it on unchanged; against the reference."""
    from codegen.kernels.convpool import few_tap_grad
    from codegen.irutil import lanes
    ops = conv_act_ops("identity", dtype, **dict(conv, pool=None, imshp=xs, kshp=ws))
    o = geometry_out(ops[0], xs, ws)
    assert o[3] % lanes(dtype) == 0
    assert few_tap_grad(ops[2], dtype, [xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o[2], o[3]], False)
    tol = dict(rtol=RTOL, atol=1e-4) if dtype == "float32" else dict(rtol=1e-9, atol=1e-9)
    fn = _check(xs, ws, ops, dtype, ties=False, **tol)
    assert "gbk_passed_fewtaps" in fn.runner.ir
