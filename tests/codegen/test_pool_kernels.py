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


def _check(shape, ws, stride, pad, ignore_border, mode, dtype, seed, static=False):
    """pool_2d, its gradient and (max) the gradient's gradient, natively vs the reference."""
    x = T.TensorType(dtype, shape=shape if static else (None,) * len(shape))("x")
    y = pool_2d(x, ws=ws, stride=stride, pad=pad, ignore_border=ignore_border, mode=mode)
    r = T.TensorType(dtype, shape=(None,) * len(shape))("r")
    gx = T.grad(None, x, known_grads={y: r})
    outs = [y, gx]
    if mode == "max":   # through MaxPoolGradGrad
        outs.append(T.grad((gx * x).sum(), r))
    rng = np.random.default_rng(seed)
    xv = _values(shape, mode, rng, dtype)
    pooled = tuple(shape[:-2]) + tuple(out_len(shape[-2 + k], ws[k], stride[k], pad[k], ignore_border)
                                       for k in range(2))
    rv = rng.standard_normal(pooled).astype(dtype)
    check_native_vs_reference([x, r], outs, [xv, rv], rtol=1e-4, atol=1e-5)


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


def vector_widths(p, w, ws, st, pad, ignore_border):
    """The block widths pool_vector.columns runs in one interior row of an image w wide, then
    whether columns are left to the scalar interior loop."""
    nc = out_len(w, ws, st, pad, ignore_border)
    lo, hi = _interior(nc, w, ws, st, pad)
    end = min(hi, (w + pad) // st - p.q)
    avail = max(end - lo, 0)
    widths = [p.L] * (avail // p.L) + [b for b in p.widths[1:] if (avail % p.L) & b]
    return widths, lo + sum(widths) < hi


# (shape, ws, stride, pad, ignore_border): every column stride 1-4, overlapping and disjoint windows,
# rows from 1 to 70 columns, single images and batches, padding and partial windows
COVERAGE = [
    ((1, 1, 6, 70), (2, 2), (2, 2), (0, 0), True),
    ((3, 5, 8, 29), (2, 2), (2, 2), (0, 0), False),
    ((2, 3, 7, 45), (3, 3), (1, 1), (1, 1), True),
    ((4, 2, 9, 53), (3, 3), (3, 3), (0, 0), False),
    ((1, 2, 5, 67), (2, 4), (2, 4), (1, 0), True),
    ((2, 2, 6, 38), (4, 2), (1, 2), (0, 1), True),
    ((1, 1, 2, 3), (2, 2), (1, 1), (0, 0), True),
]


def test_reaches_every_variant(target, threaded, monkeypatch):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")   # every kernel lowered here, so recorded
    P.EMITTED.clear()
    threaded_runs = serial_runs = 0
    widths, scalar_rest = set(), False
    for k, (shape, ws, stride, pad, ib) in enumerate(COVERAGE):
        for mode in MODES:
            _check(shape, ws, stride, pad, ib, mode, "float32", k, static=k % 2 == 0)
        n = int(np.prod(shape[:-2]))
        pooled = [out_len(shape[-2 + d], ws[d], stride[d], pad[d], ib) for d in range(2)]
        work = n * (shape[-2] * shape[-1] + pooled[0] * pooled[1])
        if n >= 2 and work >= MIN_PARALLEL:
            threaded_runs += 1
        else:
            serial_runs += 1
        p = V.plan(["float32"], ws[1], stride[1])
        ran, rest = vector_widths(p, shape[-1], ws[1], stride[1], pad[1], ib)
        widths |= set(ran)
        scalar_rest |= rest
    kernels = ["pool-" + m for m in MODES] + ["max-grad", "max-grad-grad"] + \
              ["avg-grad-" + m for m in MODES[1:]]
    strides = sorted({c[2][1] for c in COVERAGE})
    for kernel in kernels:
        for variant in ["serial", "threaded"] + [f"vector-s{s}" for s in strides]:
            assert (kernel, variant) in P.EMITTED, f"no case emits {kernel} {variant}"
    assert threaded_runs and serial_runs
    assert widths == set(V.plan(["float32"], 2, 2).widths), f"vector block widths run: {sorted(widths)}"
    assert scalar_rest


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
