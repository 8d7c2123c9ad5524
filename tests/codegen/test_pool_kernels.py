"""The vector and threaded paths of the pooling kernels (codegen/kernels/pool.py, pool_vector.py)
against the reference linker: hypothesis-drawn geometries (every mode, ws 1-4, stride 1-3, pad < ws,
both border rules), image counts on both sides of the threading threshold, rows long enough for
every vector block width and short enough for none, forward, gradient and (max) the gradient's
gradient, integer-valued inputs so max windows have many ties. The coverage tests check that the
cases reach every kernel variant the lowering emits and every vector block width it runs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from codegen.kernels import pool as P
from codegen.kernels import pool_vector as V
from codegen.options import options
from symcnn.config import config
from symcnn.tensor.signal.pool import pool_2d
from symcnn.tensor.signal.pool_geometry import out_len
from tests.fuzz.strategies import examples
from tests.helpers import check_native_vs_reference
from tests.helpers import target  # noqa: F401 (a fixture: one run per target)

MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]
MIN_PARALLEL = 400   # work (input + output elements) from which the tests' kernels use threads


@pytest.fixture
def threaded(monkeypatch):
    """Two threads and a low threading threshold, so small test images take both paths."""
    monkeypatch.setattr(config, "num_threads", 2)
    monkeypatch.setattr(options, "pool_min_parallel", MIN_PARALLEL)


def _values(shape, mode, rng, dtype):
    v = rng.standard_normal(shape)
    if mode == "max":
        v = np.round(v * 1.5)   # integer values: many ties inside each window
    return v.astype(dtype)


def _check(shapes, ws, stride, pad, ignore_border, mode, dtype, seed, static=False):
    """pool_2d, its gradient and (max) the gradient's gradient, natively vs the reference, for an input
    shape or a list of them (calls of one compiled function)."""
    shapes = shapes if isinstance(shapes, list) else [shapes]
    shape = shapes[0]
    x = T.TensorType(dtype, shape=shape if static else (None,) * len(shape))("x")
    y = pool_2d(x, ws=ws, stride=stride, pad=pad, ignore_border=ignore_border, mode=mode)
    r = T.TensorType(dtype, shape=(None,) * len(shape))("r")
    gx = T.grad(None, x, known_grads={y: r})
    outs = [y, gx]
    if mode == "max":   # through MaxPoolGradGrad
        outs.append(T.grad((gx * x).sum(), r))
    rng = np.random.default_rng(seed)
    calls = []
    for shape in shapes:
        pooled = tuple(shape[:-2]) + tuple(out_len(shape[-2 + k], ws[k], stride[k], pad[k], ignore_border)
                                           for k in range(2))
        calls.append([_values(shape, mode, rng, dtype), rng.standard_normal(pooled).astype(dtype)])
    check_native_vs_reference([x, r], outs, None, rtol=1e-4, atol=1e-5, calls=calls)


@st.composite
def cases(draw):
    mode = draw(st.sampled_from(MODES))
    ignore_border = draw(st.booleans())
    ws = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, ws[0] - 1)), draw(st.integers(0, ws[1] - 1))) if ignore_border else (0, 0)
    # 1-2 leading dims; widths up to 70 hold several vector blocks of 16 lanes at stride 3
    lead = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)))
    shape = lead + (draw(st.integers(1, 12)), draw(st.integers(1, 70)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return mode, ignore_border, shape, ws, stride, pad, dtype, draw(st.integers(0, 2 ** 16)), draw(st.booleans())


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases())
def test_native_matches_reference(target, threaded, case):
    mode, ignore_border, shape, ws, stride, pad, dtype, seed, static = case
    _check(shape, ws, stride, pad, ignore_border, mode, dtype, seed, static)


def test_overlapping_gradients_and_nan(threaded):
    # stride 1 and 3x3 / 2 windows add into shared elements; NaN and inf never equal a max
    _check((3, 2, 9, 40), (3, 3), (1, 1), (1, 1), True, "max", "float32", 1)
    _check((3, 2, 9, 40), (3, 3), (2, 2), (0, 0), False, "average_exc_pad", "float32", 2)
    x = T.ftensor4("x")
    y = pool_2d(x, ws=(2, 2), ignore_border=True)
    gx = T.grad(y.sum(), x)
    xv = np.round(np.random.default_rng(0).standard_normal((2, 3, 4, 40)).astype("float32"))
    xv[0, 0, 0, ::3] = np.nan
    xv[1, 2, 1, ::5] = np.inf
    xv[1, 1, 2, ::7] = -np.inf
    check_native_vs_reference([x], [y, gx], [xv])


# -- coverage ----------------------------------------------------------------------------------------

def _interior(n_out, size, ws, st, pad):
    """[lo, hi): the output positions whose windows lie inside the image (kernels/pool.py)."""
    lo = min(max(-(-pad // st), 0), n_out)
    hi = min(max((size - ws + pad) // st + 1, lo), n_out)
    return lo, hi


def vector_blocks(p, w, ws, st, pad, ignore_border, rewrite):
    """What pool_vector.columns runs in one interior row of an image w wide: the events "L" (full
    blocks), ("half", Lb) (the halving blocks), "last" (a block overlapping the previous one) and
    "scalar" (columns left to the scalar interior loop)."""
    nc = out_len(w, ws, st, pad, ignore_border)
    lo, hi = _interior(nc, w, ws, st, pad)
    end = min(hi, (w + pad) // st - p.q)
    full = max(end - lo, 0)
    nfull, rest = divmod(full, p.L)
    small = p.widths[-1]
    ran = {"L"} if nfull else set()
    short = not rewrite or nfull == 0
    if short:
        ran |= {("half", b) for b in p.widths[1:] if rest & b}
    if rewrite:
        if (rest and nfull) or (short and rest % small and full >= small):
            ran.add("last")
        start = end if nfull or full >= small else lo
    else:
        start = lo + nfull * p.L + (rest & (p.L - small))
    if start < hi:
        ran.add("scalar")
    return ran


# (leading dims, rows, row widths (one compiled function called with each), ws, stride, pad,
# ignore_border, static shapes): every column stride 1-4, overlapping and disjoint windows, rows from
# 1 to 70 columns, single images and batches, padding and partial windows
COVERAGE = [
    ((3, 5), 8, (70, 29, 13, 7, 3, 1), (2, 2), (2, 2), (0, 0), False, False),
    ((1, 1), 6, (70,), (2, 2), (2, 2), (0, 0), True, True),
    ((2, 3), 7, (45, 30, 20, 11, 5), (3, 3), (1, 1), (1, 1), True, False),
    ((4, 2), 9, (53, 12), (3, 3), (3, 3), (0, 0), False, False),
    ((1, 2), 5, (67, 17), (2, 4), (2, 4), (1, 0), True, False),
    ((2, 2), 6, (38, 21, 9), (4, 2), (1, 2), (0, 1), True, False),
    ((1, 1), 2, (3,), (2, 2), (1, 1), (0, 0), True, True),
]


def test_reaches_every_variant(target, threaded, monkeypatch):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")   # every kernel lowered here, so recorded
    P.EMITTED.clear()
    runs = set()
    blocks = {True: set(), False: set()}   # by rewrite
    for k, (lead, rows, widths, ws, stride, pad, ib, static) in enumerate(COVERAGE):
        shapes = [lead + (rows, w) for w in widths]
        for mode in MODES:
            _check(shapes, ws, stride, pad, ib, mode, "float32", k, static=static)
        p = V.plan(["float32"], ws[1], stride[1])
        overlap = ws[0] > stride[0] or ws[1] > stride[1]
        for shape in shapes:
            n = int(np.prod(shape[:-2]))
            pooled = [out_len(shape[-2 + d], ws[d], stride[d], pad[d], ib) for d in range(2)]
            work = n * (shape[-2] * shape[-1] + pooled[0] * pooled[1])
            runs.add(n >= 2 and work >= MIN_PARALLEL)
            blocks[True] |= vector_blocks(p, shape[-1], ws[1], stride[1], pad[1], ib, True)
            if overlap:
                blocks[False] |= vector_blocks(p, shape[-1], ws[1], stride[1], pad[1], ib, False)
    kernels = ["pool-" + m for m in MODES] + ["max-grad", "max-grad-grad"] + \
              ["avg-grad-" + m for m in MODES[1:]]
    strides = sorted({c[4][1] for c in COVERAGE})
    for kernel in kernels:
        for variant in ["serial", "threaded"] + [f"vector-s{s}" for s in strides]:
            assert (kernel, variant) in P.EMITTED, f"no case emits {kernel} {variant}"
        if "grad-" in kernel and kernel != "max-grad-grad":
            for variant in ("vector-add", "vector-store", "vector-carry"):
                assert (kernel, variant) in P.EMITTED, f"no case emits {kernel} {variant}"
    assert runs == {True, False}, "the cases run only one of the serial and threaded paths"
    p = V.plan(["float32"], 2, 2)
    every = {"L", "scalar"} | {("half", b) for b in p.widths[1:]}
    assert blocks[True] == every | {"last"}, blocks[True]
    assert blocks[False] == every, blocks[False]


def test_scalar_kernels_for_other_data(threaded, monkeypatch):
    # integer data, mixed dtypes and wide strides have no vector plan: the scalar kernel, threaded
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")
    P.EMITTED.clear()
    x = T.itensor4("x")
    xv = np.random.default_rng(4).integers(-9, 9, size=(3, 4, 7, 33)).astype("int32")
    check_native_vs_reference([x], [pool_2d(x, ws=(2, 3), ignore_border=False, mode=m) for m in MODES], [xv])
    _check((3, 2, 6, 40), (2, 5), (2, 5), (0, 0), True, "max", "float32", 3)
    assert ("pool-max", "scalar") in P.EMITTED and ("max-grad", "scalar") in P.EMITTED
    assert ("pool-max", "threaded") in P.EMITTED
    assert V.plan(["float32"], 5, 5) is None and V.plan(["int32"], 2, 2) is None


def test_plan_follows_the_target(target):
    p = V.plan(["float32"], 3, 2)
    assert p.L == target.lanes("float32") and p.q == 1 and p.widths[0] == p.L
    assert V.plan(["float64"], 2, 2).L == target.lanes("float64")
