"""The fused conv kernels' pooling epilogue and routing prologue (codegen/kernels/convpool_vector.py)
for windows and strides of every kind, against the numpy reference: masked L-column blocks (strides
1 and 2), pool_vector.columns blocks with a scalar tail (strides 3 and 4), the scalar loop alone
(stride 5), overlapping windows (the routing adds), rows long enough for several blocks and short
ones, float32 (16 lanes with AVX-512) and float64, both epilogue orders."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen.kernels import convpool_vector as CV
from codegen.kernels import pool_vector as V

from tests.helpers import check_native_vs_reference, conv_act_apply, conv_act_ops

# (ws, stride): what the column direction takes
WINDOWS = [
    ((2, 2), (2, 2)),   # masked blocks, windows tile the rows
    ((3, 3), (1, 1)),   # masked blocks, overlapping windows
    ((2, 3), (2, 1)),   # masked blocks, overlapping columns only
    ((3, 2), (2, 3)),   # pool_vector.columns blocks (stride 3), gaps between windows
    ((2, 4), (2, 4)),   # pool_vector.columns blocks (stride 4)
    ((1, 5), (2, 5)),   # no vector plan: the scalar loop
    ((4, 4), (3, 2)),   # masked blocks, overlapping rows and columns, 16-bit tie mask
]


def test_the_windows_reach_each_kind_of_code():
    kinds = set()
    for ws, st in WINDOWS:
        op = conv_act_ops("tanh", "float32", ws=ws, stride=st)[0]
        vp = CV.vector_plan(op, "float32")
        kinds.add("scalar" if vp is None else "masked" if CV.masked_blocks(op, vp) else "columns")
        kinds.add("overlapping" if CV.overlapping(op) else "disjoint")
    assert kinds == {"scalar", "masked", "columns", "overlapping", "disjoint"}
    assert V.plan(["float32"], 4, 4) is not None and V.plan(["float32"], 5, 5) is None


def _check(order, act, mode, ws, st, xs, dtype, static):
    wshape = (3, xs[1], 3, 3)
    kw = dict(ws=ws, stride=st, pool=mode, order=order, border_mode="half")
    if static:
        kw.update(imshp=xs, kshp=wshape)
    fwd, bwd, bwd_nogx = conv_act_ops(act, dtype, **kw)
    x, W, b, g = (T.TensorType(dtype, (None,) * 4)("x"), T.TensorType(dtype, (None,) * 4)("W"),
                  T.TensorType(dtype, (None,))("b"), T.TensorType(dtype, (None,) * 4)("g"))
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    _, grads2 = conv_act_apply(fwd, bwd_nogx, x, W, b, g)
    rng = np.random.RandomState(sum(ws) + 7 * sum(st))
    xv = rng.randint(-2, 3, xs).astype(dtype)      # exact conv values: ties
    Wv = (rng.randint(-1, 2, wshape) * 0.5).astype(dtype)
    bv = rng.randint(-1, 2, 3).astype(dtype)
    out = symcnn.function([x, W, b], fouts[0], mode="reference")(xv, Wv, bv)
    assert out.size
    gv = rng.standard_normal(out.shape).astype(dtype)
    # float32: the weight gradient sums about a thousand terms of order 1 that mostly cancel, so the
    # two summation orders differ by up to ~1e-4 absolute (as the other conv-pool tests allow)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    check_native_vs_reference([x, W, b, g], fouts + grads + grads2, [xv, Wv, bv, gv], **tol)


@pytest.mark.parametrize("order", ["pool_act", "act_pool"])
@pytest.mark.parametrize("ws,st", WINDOWS)
def test_max_pool_windows(ws, st, order):
    # 41 columns: several 16-column blocks and a remainder at stride 1 and 2; 9 rows: short rows below
    for xs, dtype, static in (((3, 2, 9, 41), "float32", True), ((2, 2, 7, 23), "float64", False)):
        _check(order, "maximum", "max", ws, st, xs, dtype, static)


@pytest.mark.parametrize("mode", ["average_exc_pad", "sum"])
@pytest.mark.parametrize("ws,st", WINDOWS[::2] + WINDOWS[3:4])
def test_average_pool_windows(ws, st, mode):
    for order, (xs, dtype, static) in (("pool_act", ((3, 2, 9, 41), "float32", True)),
                                       ("act_pool", ((2, 2, 7, 23), "float64", False))):
        _check(order, "tanh", mode, ws, st, xs, dtype, static)
