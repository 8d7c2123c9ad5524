"""Elementwise ops whose inputs broadcast, and contiguous ones of a run-time size
(codegen/kernels/broadcast_loops.py): axes merged where every input is laid out alike, the rows on
the threads. Drawn broadcast patterns, sizes on both sides of options.elemwise_min_parallel,
static and run-time sizes, against the reference."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from codegen.kernels import broadcast_loops
from codegen.options import options
from symcnn.config import config
from tests.fuzz.strategies import examples
from tests.helpers import check_native_vs_reference, target  # noqa: F401 (target: a fixture, one run per target)


@pytest.fixture(params=[1, 2])
def threaded(request, monkeypatch):
    """One thread (the loop in place), or two and a low threshold, so small arrays take the pool too
    (both are read when a function is compiled)."""
    monkeypatch.setattr(config, "num_threads", request.param)
    monkeypatch.setattr(options, "elemwise_min_parallel", 64)


@st.composite
def cases(draw):
    """(shape, per input its broadcast axes, dtype, static, seed)."""
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    spread = [tuple(draw(st.booleans()) for _ in range(ndim)) for _ in range(draw(st.integers(1, 3)))]
    return shape, spread, draw(st.sampled_from(["float32", "float64", "int32"])), draw(st.booleans()), \
        draw(st.integers(0, 2 ** 16))


def _check(shape, spread, dtype, static, seed, calls=1):
    rng = np.random.default_rng(seed)
    ins = []
    for k, s in enumerate(spread):
        sizes = tuple(1 if b else (n if static else None) for b, n in zip(s, shape))
        ins.append(T.TensorType(dtype, shape=sizes)(f"x{k}"))
    total = ins[0]
    for i, x in enumerate(ins[1:]):
        total = total * x if i % 2 else total - x
    outs = [total, T.maximum(ins[0], ins[-1]) + 1]
    values = [[(rng.standard_normal(tuple(1 if b else n for b, n in zip(s, shape))) * 4).astype(dtype)
               for s in spread]]
    for _ in range(calls - 1):   # other sizes of the run-time axes
        other = tuple(n + 3 for n in shape)
        values.append([(rng.standard_normal(tuple(1 if b else n for b, n in zip(s, other))) * 4).astype(dtype)
                       for s in spread])
    return check_native_vs_reference(ins, outs, None, calls=values)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases())
def test_drawn_broadcasts_match_reference(threaded, case):
    shape, spread, dtype, static, seed = case
    _check(shape, spread, dtype, static, seed, calls=1 if static else 2)


@pytest.mark.parametrize("static", [True, False])
def test_channel_broadcasts_run_on_the_threads(static, target, monkeypatch):
    """(B, C, H, W) against (1, C, 1, 1): merged to (B, C, H*W), rows on both threads past the
    threshold, on the calling thread below it, in place over a dead input too."""
    monkeypatch.setattr(config, "num_threads", 2)
    rng = np.random.default_rng(1)
    big, small = (4, 16, 24, 40), (2, 3, 5, 7)   # 61k elements and 210 (threshold: 32k)
    x = T.TensorType("float32", shape=big if static else (None,) * 4)("x")
    m = T.TensorType("float32", shape=(1, big[1] if static else None, 1, 1))("m")
    outs = [(x - m) / (m * m + 1), T.exp(x - m)]
    calls = [[rng.standard_normal(big).astype("float32"), rng.standard_normal((1, big[1], 1, 1)).astype("float32")]]
    if not static:
        calls.append([rng.standard_normal(small).astype("float32"),
                      rng.standard_normal((1, small[1], 1, 1)).astype("float32")])
    fn, _ = check_native_vs_reference([x, m], outs, None, calls=calls)
    assert "symcnn_elemwise_nest" in fn.dump_llvm() and "bcast_row" in fn.dump_llvm()


def test_merged_axes_follow_the_broadcast_pattern():
    """Adjacent axes merge where every input is laid out alike; a transposed input keeps the
    general loop."""
    from codegen.lower import Array
    shape = [4, 16, 24, 40]

    def groups(*patterns, transposed=False):
        variables = [T.TensorType("float32", shape=tuple(1 if b else None for b in p))() for p in patterns]
        arrays = [Array("float32", None, [1 if b else n for b, n in zip(p, shape)]) for p in patterns]
        if transposed:
            arrays[0] = Array("float32", None, shape, strides=[1, 4, 64, 1536])
        merged = broadcast_loops.merged_axes(Array("float32", None, shape), arrays, arrays, variables)
        return None if merged is None else merged[0]

    assert groups((0, 0, 0, 0), (1, 0, 1, 1)) == [[0], [1], [2, 3]]
    assert groups((0, 0, 0, 0), (1, 1, 1, 0)) == [[0, 1, 2], [3]]
    assert groups((0, 0, 0, 0), (1, 1, 1, 1)) == [[0, 1, 2, 3]]
    assert groups((0, 0, 0, 0), (0, 0, 0, 0)) == [[0, 1, 2, 3]]
    assert groups((0, 0, 0, 0), (1, 0, 1, 1), transposed=True) is None


def test_updates_of_shared_variables_through_a_broadcast_rate():
    """W - lr * gW with W a shared variable (its sizes open in its type) and lr a (1, 1) constant:
    the update overwrites W in place."""
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((300, 200)).astype("float32")
    W = symcnn.shared(w0.copy())
    g = T.fmatrix("g")
    step = symcnn.function([g], [], updates=[(W, W - np.float32(0.1) * g)])
    gv = rng.standard_normal((300, 200)).astype("float32")
    step(gv)
    step(gv)
    np.testing.assert_allclose(W.get_value(), w0 - np.float32(0.1) * gv - np.float32(0.1) * gv, rtol=1e-6, atol=1e-6)


@st.composite
def strided_cases(draw):
    """(shape of x, a permutation of its axes, a step per axis, dtype, seed): x read transposed and
    sliced, against a contiguous y of the result's shape."""
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 40 if ndim == 2 else 9), min_size=ndim, max_size=ndim)))
    perm = tuple(draw(st.permutations(range(ndim))))
    steps = tuple(draw(st.sampled_from([1, 1, 2, -1])) for _ in range(ndim))
    return shape, perm, steps, draw(st.sampled_from(["float32", "float64", "int32"])), draw(st.integers(0, 2 ** 16))


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strided_cases())
def test_drawn_transposed_and_sliced_inputs_match_reference(threaded, case):
    """Inputs read across memory go by tiles of the last two axes (broadcast_loops.run_tiled)."""
    shape, perm, steps, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = T.TensorType(dtype, shape=(None,) * len(shape))("x")
    view = x.dimshuffle(*perm)[tuple(slice(None, None, s) for s in steps)]
    xv = (rng.standard_normal(shape) * 4).astype(dtype)
    want_shape = np.transpose(xv, perm)[tuple(slice(None, None, s) for s in steps)].shape
    y = T.TensorType(dtype, shape=(None,) * len(shape))("y")
    fn, _ = check_native_vs_reference([x, y], [view * 2 + y, view - 1], [xv, (rng.standard_normal(want_shape) * 4).astype(dtype)])
    if perm != tuple(range(len(shape))) or any(s != 1 for s in steps):
        assert "tile_row" in fn.dump_llvm()


def test_a_transposed_matrix_runs_on_the_threads(target, monkeypatch):
    monkeypatch.setattr(config, "num_threads", 2)
    rng = np.random.default_rng(4)
    x = T.fmatrix("x")
    xv = rng.standard_normal((300, 170)).astype("float32")   # 51k elements: past the threshold
    fn, _ = check_native_vs_reference([x], [x.T * 2 + 1], [xv])
    assert "symcnn_elemwise_tiles" in fn.dump_llvm()
