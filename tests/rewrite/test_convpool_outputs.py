"""drop_unused_tie_masks: a max-pooling fused layer in a function without its gradient writes no
tie mask (its kernels compute the window maxima alone), a training step keeps the mask, and the
values are the reference's either way."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from symcnn.tensor.signal import pool

from tests.helpers import check_native_vs_reference


def _layer(xs, ws, order, dtype="float32"):
    x, W, b = T.tensor4("x", dtype=dtype, shape=xs), T.tensor4("W", dtype=dtype, shape=ws), T.vector("b", dtype=dtype)
    conv = conv2d(x, W, input_shape=xs, filter_shape=ws, border_mode="valid")
    bias = b.dimshuffle("x", 0, "x", "x")
    if order == "pool_act":
        out = T.tanh(pool.pool_2d(conv, ws=(2, 2), ignore_border=True) + bias)
    else:
        out = pool.pool_2d(T.maximum(conv + bias, 0), ws=(2, 2), ignore_border=True)
    return [x, W, b], out


def _values(xs, ws, seed, nan=False, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    if nan:   # a NaN in a window: the pooled value is NaN, as in the reference
        x[0, 0, 1, 1] = np.nan
    return [x, (rng.standard_normal(ws) / ws[1]).astype(dtype), rng.standard_normal(ws[0]).astype(dtype)]


def _fused(fn, cls=ConvPoolAct):
    return [n.op for n in fn.fgraph.toposort() if isinstance(n.op, cls)]


# a first layer pooled in the few-tap kernel's registers, the direct kernel and Winograd (the
# conv-pool epilogue), pooling before and after the activation
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["pool_act", "act_pool"])
@pytest.mark.parametrize("xs,ws", [((5, 1, 16, 16), (8, 1, 5, 5)), ((3, 8, 12, 14), (12, 8, 3, 3)),
                                   ((3, 20, 12, 12), (16, 20, 5, 5))])
def test_a_forward_alone_writes_no_mask(order, xs, ws, dtype):
    ins, out = _layer(xs, ws, order, dtype)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn, _ = check_native_vs_reference(ins, [out], _values(xs, ws, sum(xs), nan=True, dtype=dtype), **tol)
    ops = _fused(fn)
    assert ops and all(op.pool == "max" and not op.keep_mask and "mask" not in op.output_roles() for op in ops)
    if xs[1] == 1 and order == "pool_act" and dtype == "float32":   # the few-tap pooled kernel without the mask
        assert "symcnn_fewtaps_pool_" in fn.dump_llvm() and "_nm" in fn.dump_llvm()


@pytest.mark.parametrize("order", ["pool_act", "act_pool"])
def test_a_training_step_keeps_the_mask(order):
    xs, ws = (3, 8, 12, 14), (12, 8, 3, 3)
    ins, out = _layer(xs, ws, order)
    cost = (out * out).sum()
    outs = [cost] + T.grad(cost, ins[1:])
    fn, _ = check_native_vs_reference(ins, outs, _values(xs, ws, 1), rtol=1e-4, atol=1e-4)
    (op,) = _fused(fn)
    assert op.keep_mask and "mask" in op.output_roles()
    assert any(g.pool == "max" and "mask" in g.input_roles() for g in _fused(fn, ConvPoolActGrad))


def test_the_op_without_mask_is_a_different_op():
    a = ConvPoolAct(border_mode="valid", ws=(2, 2), act=None)
    b = ConvPoolAct(border_mode="valid", ws=(2, 2), act=None, keep_mask=False)
    assert a != b and a.output_roles() == ["out", "mask"] and b.output_roles() == ["out"]
    assert "keep_mask=False" in str(b) and "keep_mask" not in str(a)
