"""Native Conv2d / Conv2dGradInputs / Conv2dGradWeights against the reference linker."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet.conv import Conv2dGradInputs, Conv2dGradWeights, conv2d
from symcnn.tensor.signal.pool import pool_2d

from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)

RTOL, ATOL = 1e-4, 1e-5


def _rand(rng, shape, dtype="float32"):
    return rng.standard_normal(shape).astype(dtype)


def _conv_and_grads(xshape, wshape, static=False, dtype="float32", seed=0, atol=ATOL, more_shapes=(), **kw):
    """y = conv2d(x, w) and the gradients of sum(y * r) (both gradient ops), natively vs reference.
    more_shapes: further (xshape, wshape) calls of the same compiled functions (dynamic shapes)."""
    rng = np.random.default_rng(seed)
    x = T.tensor4("x", dtype=dtype, shape=xshape if static else None)
    w = T.tensor4("w", dtype=dtype, shape=wshape if static else None)
    y = conv2d(x, w, **kw)
    r = T.tensor4("r", dtype=dtype)
    gx, gw = T.grad((y * r).sum(), [x, w])
    ref = symcnn.function([x, w], y, mode="reference")
    calls = []
    for xs, ws in [(xshape, wshape)] + list(more_shapes):
        xv, wv = _rand(rng, xs, dtype), _rand(rng, ws, dtype)
        calls.append([xv, wv, _rand(rng, ref(xv, wv).shape, dtype)])
    check_native_vs_reference([x, w, r], [y, gx, gw], None, rtol=RTOL, atol=atol, calls=calls)


BORDERS = ["valid", "full", "half", (1, 2), 2]
STRIDES = [(1, 1), (2, 2), (1, 3)]


@pytest.mark.parametrize("border_mode", BORDERS)
@pytest.mark.parametrize("subsample", STRIDES)
def test_border_modes_and_strides(border_mode, subsample):
    _conv_and_grads((2, 3, 9, 11), (4, 3, 3, 2), border_mode=border_mode, subsample=subsample)


def test_odd_widths_and_batch_one(target):
    # output widths that do not divide the vector width (1, 3, 7, 13, 17 columns), batch 1;
    # one compiled function called with several shapes
    more = [((1, 2, 6, c), (5, 2, 3, 1)) for c in (3, 7, 13, 17)] + [((3, 2, 5, 40), (9, 2, 2, 1))]
    _conv_and_grads((1, 2, 6, 1), (5, 2, 3, 1), more_shapes=more)
    more = [((1, 2, 6, c), (3, 2, 2, 3)) for c in (3, 7, 13, 17)]
    _conv_and_grads((1, 2, 6, 1), (3, 2, 2, 3), border_mode="full", subsample=(1, 2), more_shapes=more)


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("border_mode", ["valid", "full", (2, 1)])
def test_filter_flip(flip, border_mode):
    _conv_and_grads((2, 2, 7, 8), (3, 2, 3, 4), border_mode=border_mode, filter_flip=flip, subsample=(2, 1))


def test_static_shapes_and_declared_shapes():
    _conv_and_grads((3, 5, 13, 12), (7, 5, 5, 5), static=True)
    _conv_and_grads((3, 5, 13, 12), (7, 5, 5, 5), static=True, border_mode="half", subsample=(2, 2))
    _conv_and_grads((2, 3, 10, 9), (17, 3, 3, 3), input_shape=(2, 3, 10, 9), filter_shape=(17, 3, 3, 3),
                    border_mode="full")


def test_lenet_layer_shapes_small_batch(target):
    # LeNet's layers (batch reduced): 1->20 channels 28x28, and 20->50 channels 12x12, 5x5 filters.
    # The filter gradients sum ~1000 float32 products of size ~1 (results up to ~100), so the
    # absolute tolerance follows the summation order's float32 rounding.
    _conv_and_grads((3, 1, 28, 28), (20, 1, 5, 5), static=True, atol=1e-3)
    _conv_and_grads((2, 20, 12, 12), (50, 20, 5, 5), static=True, atol=1e-3)


def test_float64(target):
    _conv_and_grads((2, 3, 8, 7), (5, 3, 3, 3), dtype="float64", border_mode="half")


def test_mixed_dtypes():
    rng = np.random.default_rng(1)
    x = T.tensor4("x", dtype="float32")
    w = T.tensor4("w", dtype="float64")
    y = conv2d(x, w, border_mode="full")
    check_native_vs_reference([x, w], y, [_rand(rng, (2, 2, 5, 6)), _rand(rng, (3, 2, 2, 3), "float64")],
                              rtol=RTOL, atol=ATOL)


def test_filter_as_larger_as_input():
    _conv_and_grads((2, 3, 4, 5), (2, 3, 4, 5))
    _conv_and_grads((1, 1, 1, 1), (2, 1, 3, 3), border_mode="full")


@pytest.mark.parametrize("hw", [(9, 9), (10, 10)])
def test_grad_inputs_direct_with_symbolic_shape(hw, target):
    # with stride 2, rows/cols 9 and 10 give the same output size: hw decides the input's size
    rng = np.random.default_rng(2)
    w = T.tensor4("w")
    g = T.tensor4("g")
    shp = T.lvector("shp")
    for bm in ["valid", (1, 1)]:
        op = Conv2dGradInputs(border_mode=bm, subsample=(2, 2))
        out = op(w, g, shp)
        oh = (hw[0] + 2 * (0 if bm == "valid" else 1) - 3) // 2 + 1
        vals = [_rand(rng, (4, 3, 3, 3)), _rand(rng, (2, 4, oh, oh)), np.asarray(hw, dtype="int64")]
        check_native_vs_reference([w, g, shp], out, vals, rtol=RTOL, atol=ATOL)


def test_grad_weights_direct_with_symbolic_shape(target):
    rng = np.random.default_rng(3)
    x = T.tensor4("x")
    g = T.tensor4("g")
    shp = T.lvector("shp")
    for flip in (True, False):
        out = Conv2dGradWeights(border_mode="half", subsample=(1, 2), filter_flip=flip)(x, g, shp)
        vals = [_rand(rng, (2, 3, 7, 8)), _rand(rng, (2, 5, 7, 4)), np.asarray([3, 3], dtype="int64")]
        check_native_vs_reference([x, g, shp], out, vals, rtol=RTOL, atol=ATOL)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = T.tensor4("x")
    w = T.tensor4("w")
    # transposed views feed the kernel non-contiguous arrays
    y = conv2d(x.dimshuffle(1, 0, 2, 3), w.dimshuffle(0, 1, 3, 2), border_mode="half")
    gx, gw = T.grad((y * y).sum(), [x, w])
    check_native_vs_reference([x, w], [y, gx, gw], [_rand(rng, (3, 2, 6, 7)), _rand(rng, (4, 3, 3, 2))],
                              rtol=RTOL, atol=ATOL)


def test_static_non_contiguous_and_mixed_dtype_inputs():
    # static shapes take the direct kernels, which then copy strided or other-dtype images first
    rng = np.random.default_rng(9)
    x = T.tensor4("x", shape=(9, 16, 7, 8))
    w = T.tensor4("w", shape=(5, 16, 3, 3))
    y = conv2d(x.dimshuffle(0, 1, 3, 2), w, border_mode="half")
    gx, gw = T.grad((y * y).sum(), [x, w])
    check_native_vs_reference([x, w], [y, gx, gw], [_rand(rng, (9, 16, 7, 8)), _rand(rng, (5, 16, 3, 3))],
                              rtol=RTOL, atol=1e-3)
    x = T.tensor4("x", dtype="float32", shape=(3, 8, 6, 6))
    w = T.tensor4("w", dtype="float64", shape=(4, 8, 3, 3))
    y = conv2d(x, w, border_mode=1)
    gx, gw = T.grad(y.sum(), [x, w])
    check_native_vs_reference([x, w], [y, gx, gw], [_rand(rng, (3, 8, 6, 6)), _rand(rng, (4, 8, 3, 3), "float64")],
                              rtol=RTOL, atol=ATOL)


def test_static_image_size_with_dynamic_batch():
    # a batch known only at run time still takes the direct kernels (their plans need only C, H, W, K)
    more = [((b, 16, 8, 9), (6, 16, 3, 3)) for b in (1, 12)]
    _conv_and_grads((5, 16, 8, 9), (6, 16, 3, 3), border_mode="half", input_shape=(None, 16, 8, 9),
                    filter_shape=(6, 16, 3, 3), atol=1e-3, more_shapes=more)


def test_declared_shape_mismatch_raises():
    x = T.tensor4("x")
    w = T.tensor4("w")
    y = conv2d(x, w, input_shape=(2, 3, 8, 8), filter_shape=(4, 3, 3, 3))
    rng = np.random.default_rng(5)
    nat, _ = check_same_error([x, w], y, [_rand(rng, (2, 3, 9, 8)), _rand(rng, (4, 3, 3, 3))], ValueError)
    assert "9" in nat and "8" in nat and "Conv2d" in nat


def test_runtime_shape_errors_raise():
    rng = np.random.default_rng(6)
    x = T.tensor4("x")
    w = T.tensor4("w")
    y = conv2d(x, w)
    # channel mismatch
    check_same_error([x, w], y, [_rand(rng, (2, 3, 8, 8)), _rand(rng, (4, 2, 3, 3))], ValueError)
    # filters larger than the input
    check_same_error([x, w], y, [_rand(rng, (2, 3, 2, 8)), _rand(rng, (4, 3, 3, 3))], ValueError)
    # output gradient of the wrong size for the gradient ops
    g = T.tensor4("g")
    gi = Conv2dGradInputs()(w, g, np.asarray([8, 8]))
    check_same_error([w, g], gi, [_rand(rng, (4, 3, 3, 3)), _rand(rng, (2, 4, 5, 6))], ValueError)
    gw = Conv2dGradWeights()(x, g, np.asarray([3, 3]))
    check_same_error([x, g], gw, [_rand(rng, (2, 3, 8, 8)), _rand(rng, (3, 4, 6, 6))], ValueError)


def test_static_type_mismatch_at_call():
    x = T.tensor4("x", shape=(2, 1, 8, 8))
    w = T.tensor4("w", shape=(3, 1, 3, 3))
    y = conv2d(x, w)
    rng = np.random.default_rng(7)
    check_same_error([x, w], y, [_rand(rng, (2, 1, 9, 8)), _rand(rng, (3, 1, 3, 3))], ValueError)


@pytest.mark.parametrize("static", [False, True])
def test_conv_pool_tanh_sum_gradients(static, target):
    rng = np.random.default_rng(8)
    xs, ws = (3, 2, 12, 13), (4, 2, 5, 5)
    x = T.tensor4("x", shape=xs if static else None)
    w = T.tensor4("w", shape=ws if static else None)
    h = T.tanh(pool_2d(conv2d(x, w, input_shape=xs if static else None), ws=(2, 2), ignore_border=True))
    cost = h.sum()
    gx, gw = T.grad(cost, [x, w])
    check_native_vs_reference([x, w], [cost, gx, gw], [_rand(rng, xs), _rand(rng, ws)], rtol=RTOL, atol=ATOL)
