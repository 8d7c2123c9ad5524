"""Native RuntimePool and its gradient ops (ws / stride / pad read when the function runs)
against the reference linker: random shapes and geometries, every mode, both border rules,
and the run-time checks of the geometry."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.signal.pool import pool_2d
from symcnn.tensor.signal.pool_runtime import RuntimePool
from tests.fuzz.strategies import examples
from tests.helpers import check_native_vs_reference, check_same_error

MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]


def _build(mode, ignore_border, dtype):
    """pool_2d with symbolic geometry, its gradient, and the gradient of that gradient's
    weighted sum (which for max goes through RuntimeMaxPoolGradGrad)."""
    x = T.TensorType(dtype, shape=(None,) * 4)("x")
    r = T.TensorType(dtype, shape=(None,) * 4)("r")
    ws, stride, pad = T.lvector("ws"), T.lvector("stride"), T.lvector("pad")
    y = pool_2d(x, ws=ws, stride=stride, pad=pad, ignore_border=ignore_border, mode=mode)
    assert isinstance(y.owner.op, RuntimePool)
    gx = T.grad((y * r).sum(), x)
    ggr = T.grad((gx * x).sum(), r)
    return [x, r, ws, stride, pad], [y, gx, ggr]


_FUNCTIONS = {}


def _functions(mode, ignore_border, dtype):
    # one compiled pair per (mode, border rule, dtype): the examples vary only values and shapes
    key = (mode, ignore_border, dtype)
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = _build(mode, ignore_border, dtype)
    return _FUNCTIONS[key]


@st.composite
def cases(draw):
    mode = draw(st.sampled_from(MODES))
    ignore_border = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    ws = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pad = (draw(st.integers(0, ws[0] - 1)), draw(st.integers(0, ws[1] - 1))) if ignore_border else (0, 0)
    seed = draw(st.integers(0, 2 ** 16))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    return mode, ignore_border, shape, ws, stride, pad, seed, dtype


@settings(max_examples=examples(40), deadline=None)
@given(cases())
def test_native_matches_reference(case):
    mode, ignore_border, shape, ws, stride, pad, seed, dtype = case
    inputs, outputs = _functions(mode, ignore_border, dtype)
    rng = np.random.default_rng(seed)
    xv = np.round(rng.standard_normal(shape) * 2).astype(dtype)  # ties inside windows
    x = inputs[0]
    pooled = symcnn.function([x] + inputs[2:], outputs[0], mode="reference")(xv, ws, stride, pad).shape
    rv = rng.standard_normal(pooled).astype(dtype)
    check_native_vs_reference(inputs, outputs, [xv, rv, np.array(ws), np.array(stride), np.array(pad)],
                              rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_one_function_many_geometries(mode):
    # the same compiled function called with different windows, strides, pads and shapes
    inputs, outputs = _build(mode, True, "float64")
    calls = []
    rng = np.random.default_rng(7)
    for shape, ws, stride, pad in [((2, 3, 7, 6), (2, 2), (2, 2), (0, 0)), ((1, 1, 5, 11), (3, 5), (1, 2), (1, 4)),
                                   ((2, 2, 4, 4), (5, 1), (1, 3), (0, 0)), ((1, 2, 1, 1), (1, 1), (1, 1), (0, 0)),
                                   ((1, 1, 20, 20), (20, 20), (20, 20), (19, 0))]:
        xv = np.round(rng.standard_normal(shape) * 2)
        y = symcnn.function(inputs[:1] + inputs[2:], outputs[0], mode="reference")(xv, ws, stride, pad)
        calls.append([xv, rng.standard_normal(y.shape), np.array(ws), np.array(stride), np.array(pad)])
    check_native_vs_reference(inputs, outputs, None, calls=calls, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ws,stride,pad,ignore_border,msg", [
    ((0, 2), (1, 1), (0, 0), True, "ws .* between 1"),
    ((2, 2), (1, -3), (0, 0), True, "stride .* between 1"),
    ((2, 2), (1, 1), (0, -1), True, "pad .* between 0"),
    ((2, 3), (1, 1), (1, 3), True, "smaller than the window"),
    ((2, 2), (1, 1), (1, 0), False, "ignore_border=True"),
    ((2 ** 40, 2), (1, 1), (0, 0), True, "2147483647"),
    ((2, 2), (2 ** 35, 1), (0, 0), False, "2147483647"),
    ((2, 2, 1), (1, 1), (0, 0), True, "2 values"),
])
def test_bad_geometry_same_error_natively(ws, stride, pad, ignore_border, msg):
    x = T.dtensor4("x")
    w, s, p = T.lvector("ws"), T.lvector("stride"), T.lvector("pad")
    y = pool_2d(x, ws=w, stride=s, pad=p, ignore_border=ignore_border, mode="average_exc_pad")
    g = T.grad(y.sum(), x)
    for out in (y, g):
        native, ref = check_same_error([x, w, s, p], out, [np.zeros((1, 1, 4, 4)), ws, stride, pad])
        assert native == ref
        assert re.search(msg, native), native


def test_int_input_and_int32_geometry():
    x = T.TensorType("int32", shape=(None,) * 3)("x")
    w = T.ivector("ws")
    s0 = T.iscalar("s0")
    outs = [pool_2d(x, ws=w, stride=(s0, 1), ignore_border=False, mode=m) for m in MODES]
    xv = np.random.default_rng(0).integers(-9, 9, size=(2, 5, 7)).astype("int32")
    check_native_vs_reference([x, w, s0], outs, [xv, np.array([2, 3], "int32"), np.int32(2)])


@pytest.mark.parametrize("mode,ignore_border", [(m, True) for m in MODES] + [("max", False)])
def test_vector_windows_and_threads(mode, ignore_border, monkeypatch):
    # the windows the run-time kernels have vector code for (codegen/kernels/pool.py RUNTIME_VECTOR),
    # and others, on rows wide enough for vector blocks, on two threads
    from codegen.kernels import pool as P
    from codegen.options import options
    from symcnn.config import config
    monkeypatch.setattr(config, "num_threads", 2)
    monkeypatch.setattr(options, "pool_min_parallel", 400)
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")   # lowered here, so recorded
    P.EMITTED.clear()
    inputs, outputs = _build(mode, ignore_border, "float32")
    rng = np.random.default_rng(11)
    calls = []
    geometries = [((ws0, ws1), (st0, st1)) for ws1, st1 in P.RUNTIME_VECTOR for ws0, st0 in ((2, 2), (3, 1))]
    geometries += [((2, 4), (2, 3)), ((1, 1), (1, 1))]
    for k, (ws, stride) in enumerate(geometries):
        pad = (k % ws[0], k % ws[1]) if ignore_border else (0, 0)
        for shape in ((3, 4, 9, 41), (1, 1, 5, 13)):
            xv = np.round(rng.standard_normal(shape) * 1.5).astype("float32")
            y = symcnn.function(inputs[:1] + inputs[2:], outputs[0], mode="reference")(xv, ws, stride, pad)
            calls.append([xv, rng.standard_normal(y.shape).astype("float32"), np.array(ws), np.array(stride),
                          np.array(pad)])
    check_native_vs_reference(inputs, outputs, None, calls=calls, rtol=1e-4, atol=1e-5)
    grad = "max-grad" if mode == "max" else "avg-grad-" + mode
    for kernel in ("pool-" + mode, grad):
        assert (kernel, "runtime-vector") in P.EMITTED and (kernel, "threaded") in P.EMITTED
