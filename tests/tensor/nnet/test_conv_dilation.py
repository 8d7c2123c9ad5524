"""conv2d(filter_dilation=) and its gradients, Theano's conv-shape helpers, the ignored
unroll_* arguments."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.gradient import verify_grad
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.abstract_conv import (conv2d_grad_wrt_inputs, conv2d_grad_wrt_weights,
                                              get_conv_output_shape, get_conv_shape_1axis)
from tests.helpers import check_native_vs_reference, make_rng


def loop_dilated_conv(x, w, dil, border_mode):
    """Direct definition: out[b,k,i,j] = sum_{c,u,v} xpad[b,c,i+u*dh,j+v*dw] * wflip[k,c,u,v]."""
    dh, dw = dil
    kh, kw = w.shape[2:]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    ph, pw = {"valid": (0, 0), "full": (eh - 1, ew - 1), "half": (eh // 2, ew // 2)}[border_mode]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wf = w[:, :, ::-1, ::-1]
    oh, ow = xp.shape[2] - eh + 1, xp.shape[3] - ew + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u * dh:u * dh + oh, v * dw:v * dw + ow]
            out += np.einsum("bchw,kc->bkhw", patch, wf[:, :, u, v])
    return out


@pytest.mark.parametrize("border_mode", ["valid", "full", "half"])
def test_dilated_conv_matches_the_definition_natively(border_mode):
    rng = make_rng(8)
    for _ in range(3):
        dil = tuple(int(d) for d in rng.integers(1, 4, size=2))
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        h, w_ = (kh - 1) * dil[0] + 1 + int(rng.integers(0, 4)), (kw - 1) * dil[1] + 1 + int(rng.integers(0, 4))
        xv = rng.standard_normal((2, 2, h, w_))
        wv = rng.standard_normal((3, 2, kh, kw))
        x, w = T.dtensor4("x"), T.dtensor4("w")
        out = conv2d(x, w, border_mode=border_mode, filter_dilation=dil)
        _, (got,) = check_native_vs_reference([x, w], out, [xv, wv], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got, loop_dilated_conv(xv, wv, dil, border_mode), rtol=1e-10, atol=1e-10)
        assert got.shape == get_conv_output_shape(xv.shape, wv.shape, border_mode, (1, 1), dil)


def test_dilated_conv_gradients():
    rng = make_rng(9)
    xv, wv = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((2, 2, 2, 2))
    verify_grad(lambda a, b: conv2d(a, b, filter_dilation=(2, 1)), [xv, wv])
    verify_grad(lambda a, b: conv2d(a, b, border_mode="half", filter_dilation=(2, 2),
                                    filter_shape=(2, 2, 2, 2)), [xv, wv])


def test_dilated_grad_wrt_inputs_and_weights_match_grad():
    rng = make_rng(10)
    xv, wv = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 2, 3))
    x, w = T.dtensor4("x"), T.dtensor4("w")
    dil = (2, 2)
    out = conv2d(x, w, filter_dilation=dil)
    gout = T.dtensor4("gout")
    gov = rng.standard_normal(get_conv_output_shape(xv.shape, wv.shape, "valid", (1, 1), dil))
    gx, gw = T.grad(None, [x, w], known_grads={out: gout})
    gx2 = conv2d_grad_wrt_inputs(gout, w, input_shape=xv.shape, filter_dilation=dil)
    gw2 = conv2d_grad_wrt_weights(x, gout, filter_shape=wv.shape, filter_dilation=dil)
    _, (got,) = check_native_vs_reference([x, w, gout], [gx, gw, gx2, gw2], [xv, wv, gov],
                                          rtol=1e-10, atol=1e-10, on_unused_input="ignore")
    np.testing.assert_allclose(got[2], got[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[3], got[1], rtol=1e-10, atol=1e-10)


def test_conv_output_shape_helpers():
    assert get_conv_output_shape((8, 3, 28, 28), (20, 3, 5, 5), "valid", (1, 1)) == (8, 20, 24, 24)
    assert get_conv_output_shape((8, 3, 28, 27), (20, 3, 5, 4), "full", (2, 1)) == (8, 20, 16, 30)
    assert get_conv_output_shape((8, 3, 28, 28), (20, 3, 3, 3), "half", (1, 1), (2, 2)) == (8, 20, 28, 28)
    assert get_conv_output_shape((8, 3, 10, 10), (20, 3, 3, 3), (1, 2), (1, 1)) == (8, 20, 10, 12)
    assert get_conv_output_shape((None, 3, 10, None), (20, 3, 3, 3), "valid", (1, 1)) == (None, 20, 8, None)
    assert get_conv_shape_1axis(10, 3, 2, 3, 2) == (10 + 4 - 5) // 3 + 1
    with pytest.raises(ValueError):
        get_conv_shape_1axis(10, 3, -1, 1)
    rows = T.lscalar("rows")
    assert int(get_conv_shape_1axis(rows, 3, "valid", 2).eval({rows: np.int64(11)})) == 5


def test_unroll_arguments_are_accepted_and_change_nothing():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    a = conv2d(x, w, unroll_batch=4, unroll_kern=2, unroll_patch=True, openmp=False, verbose=0)
    b = conv2d(x, w)
    assert a.owner.op == b.owner.op
    with pytest.raises(TypeError, match="unexpected keyword"):
        conv2d(x, w, unroll_everything=True)
