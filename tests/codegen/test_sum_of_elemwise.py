"""SumOfElemwise natively (codegen/kernels/sum_of_elemwise.py): the rows evaluated chunk by chunk
into the vector sums, or the elementwise result into a scratch buffer and summed. Drawn shapes,
summed axes, broadcast patterns and dtypes, on one thread and two, against the reference; the
fast path's bits equal the unfused Elemwise and Sum's."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from codegen.kernels.sum_of_elemwise import CHUNK
from codegen.options import options
from symcnn.compile.mode import Mode
from symcnn.config import config
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.math import Sum
from symcnn.tensor.sum_of_elemwise import SumOfElemwise
from tests.fuzz.strategies import examples
from tests.helpers import check_native_vs_reference, target  # noqa: F401 (target: a fixture, one run per target)

UNFUSED = Mode("native", excluding=["fuse_sum_prologue", "fuse_elemwise_into_readers"])


@pytest.fixture(params=[1, 2])
def threaded(request, monkeypatch):
    """One thread, or two and a low threshold, so that small sums take the pool too."""
    monkeypatch.setattr(config, "num_threads", request.param)
    monkeypatch.setattr(options, "elemwise_min_parallel", 64)


def _fused(fn):
    return [n for n in fn.fgraph.toposort() if isinstance(n.op, SumOfElemwise)]


def _rows(fn):
    """The chunked rows of the fast path are in the module."""
    return "sum_chunk" in fn.runner.ir


@st.composite
def cases(draw):
    """(shape, per input its broadcast axes, summed axes, dtype, static, seed)."""
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    spread = [tuple(draw(st.booleans()) for _ in range(ndim)) for _ in range(draw(st.integers(1, 3)))]
    axis = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    return shape, spread, axis, draw(st.sampled_from(["float32", "float64"])), draw(st.booleans()), \
        draw(st.integers(0, 2 ** 16))


def _program(ins):
    total = ins[0]
    for i, x in enumerate(ins[1:]):
        total = (total - x) * 1.5 if i % 2 == 0 else total * x
    return -T.sqr(total) if len(ins) == 1 else total


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases())
def test_drawn_sums_match_reference(threaded, case):
    shape, spread, axis, dtype, static, seed = case
    rng = np.random.default_rng(seed)
    ins = [T.TensorType(dtype, shape=tuple(1 if b else (n if static else None) for b, n in zip(s, shape)))(f"x{k}")
           for k, s in enumerate(spread)]
    out = T.sum(_program(ins), axis=axis)
    values = [(rng.standard_normal(tuple(1 if b else n for b, n in zip(s, shape))) * 2).astype(dtype) for s in spread]
    fn, _ = check_native_vs_reference(ins, [out], values, rtol=1e-5 if dtype == "float32" else 1e-10, atol=1e-5)
    # (a sum over axes of static length 1 is dropped, and an elementwise op of constants folded)
    assert not any(isinstance(n.op, Sum) and n.inputs[0].owner is not None and isinstance(n.inputs[0].owner.op, Elemwise)
                   for n in fn.fgraph.toposort())


def _bn_backward_like(dtype, static_shape=None):
    """Per-channel sums of a (B, C, H, W) gradient times a normalised activation, as a batch norm's
    backward reads them."""
    shape = static_shape or (None,) * 4
    g, x = T.TensorType(dtype, shape=shape)("g"), T.TensorType(dtype, shape=shape)("x")
    m = T.TensorType(dtype, shape=(1, shape[1], 1, 1))("m")
    s = T.TensorType(dtype, shape=(1, shape[1], 1, 1))("s")
    xhat = (x - m) / s
    return [g, x, m, s], [(g * xhat).sum(axis=(0, 2, 3)), (-g).sum(axis=(0, 2, 3)), T.sqr(x - m).sum(axis=(0, 2, 3)),
                          (g * x).sum(axis=(2, 3)), (g - xhat * 2).sum()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_sums_have_the_unfused_bits(dtype, target, monkeypatch):
    """Rows shorter than a vector, of whole groups, and longer than CHUNK (several chunks); outputs
    on one thread and on two: the result bits are those of the Elemwise and the Sum unfused, where
    both sum the same rows."""
    rng = np.random.default_rng(4)
    ins, outs = _bn_backward_like(dtype)
    shapes = [(2, 3, 1, 1), (3, 5, 4, 16), (2, 3, 7, 9), (3, 2, 40, 60), (4, 33, 12, 12)]
    assert 40 * 60 > 2 * CHUNK
    calls = []
    for b, c, h, w in shapes:
        calls.append([rng.standard_normal((b, c, h, w)).astype(dtype), rng.standard_normal((b, c, h, w)).astype(dtype),
                      rng.standard_normal((1, c, 1, 1)).astype(dtype), rng.uniform(1, 2, (1, c, 1, 1)).astype(dtype)])
    results = {}
    for nthreads in (1, 2):
        monkeypatch.setattr(config, "num_threads", nthreads)
        fn, results[nthreads] = check_native_vs_reference(ins, outs, None, calls=calls, rtol=1e-5, atol=1e-5)
        assert len(_fused(fn)) == len(outs) and _rows(fn)
        plain = symcnn.function(ins, outs, mode=UNFUSED)
        assert not any(isinstance(n.op, SumOfElemwise) for n in plain.fgraph.toposort())
        for call, got in zip(calls, results[nthreads]):
            # the whole sum's rows: (H, W) fused, where m and s change along C; all of x unfused
            for a, b in zip(got[:-1], plain(*call)[:-1]):
                np.testing.assert_array_equal(a, b)
    for one, two in zip(results[1], results[2]):
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


def test_the_scratch_buffer_path(monkeypatch):
    """A transposed input, summed axes that leave the last one, an integer result, bounds checks:
    the elementwise result goes into a scratch buffer (no chunked rows), still fused and right."""
    monkeypatch.setattr(config, "num_threads", 2)
    rng = np.random.default_rng(9)
    x, y = T.tensor3("x", dtype="float32"), T.tensor3("y", dtype="float32")
    i = T.tensor3("i", dtype="int32")
    xv, yv = rng.standard_normal((5, 6, 7)).astype("float32"), rng.standard_normal((7, 6, 5)).astype("float32")
    iv = rng.integers(-9, 9, (5, 6, 7)).astype("int32")
    cases = [([x, y], (x * y.dimshuffle(2, 1, 0) + 1).sum(axis=(1, 2)), [xv, yv]),
             ([x], T.sqr(x - 1).sum(axis=(0, 1)), [xv]),
             ([i], (i * 3 - 1).sum(axis=2), [iv])]
    for ins, out, values in cases:
        fn, _ = check_native_vs_reference(ins, [out], values)
        assert _fused(fn) and not _rows(fn), out
    fn, _ = check_native_vs_reference([x], [T.sqr(x - 1).sum(axis=2)], [xv], mode="boundscheck")
    assert _fused(fn) and not _rows(fn)
    fn, _ = check_native_vs_reference([x], [T.sqr(x - 1).sum(axis=2)], [xv])
    assert _fused(fn) and _rows(fn)


def test_shape_mismatch_is_an_error():
    x, y = T.matrix("x"), T.matrix("y")
    fn = symcnn.function([x, y], ((x - y) ** 2).sum(axis=1), mode="native")
    assert _fused(fn)
    with pytest.raises(ValueError):
        fn(np.ones((3, 4), "float32"), np.ones((3, 5), "float32"))
