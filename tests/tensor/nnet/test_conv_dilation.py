"""conv2d(filter_dilation=) as a parameter of Conv2d, Conv2dGradInputs and Conv2dGradWeights: the
numpy reference against the definition, natively, shape inference, the gradients (verify_grad of
each op), errors naming the argument, Theano's conv-shape helpers, the ignored unroll_* arguments."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.gradient import verify_grad
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.abstract_conv import (conv2d_grad_wrt_inputs, conv2d_grad_wrt_weights,
                                              get_conv_output_shape, get_conv_shape_1axis)
from symcnn.tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from tests.helpers import assert_op_contract, check_native_vs_reference, check_same_error, make_rng


def loop_dilated_conv(x, w, dil, border_mode, subsample=(1, 1), flip=True):
    """Direct definition: out[b,k,i,j] = sum_{c,u,v} xpad[b,c,i*sh+u*dh,j*sw+v*dw] * w'[k,c,u,v] with
    w' the filters turned 180 degrees (flip) or as given."""
    dh, dw = dil
    sh, sw = subsample
    kh, kw = w.shape[2:]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if isinstance(border_mode, int):
        border_mode = (border_mode, border_mode)
    ph, pw = {"valid": (0, 0), "full": (eh - 1, ew - 1), "half": (eh // 2, ew // 2)}.get(
        border_mode, border_mode) if isinstance(border_mode, str) else border_mode
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wf = w[:, :, ::-1, ::-1] if flip else w
    oh, ow = (xp.shape[2] - eh) // sh + 1, (xp.shape[3] - ew) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u * dh:u * dh + sh * (oh - 1) + 1:sh, v * dw:v * dw + sw * (ow - 1) + 1:sw]
            out += np.einsum("bchw,kc->bkhw", patch, wf[:, :, u, v])
    return out


@pytest.mark.parametrize("border_mode", ["valid", "full", "half", 2, (1, 3)])
def test_dilated_conv_matches_the_definition_natively(border_mode):
    rng = make_rng(8)
    for _ in range(3):
        dil = tuple(int(d) for d in rng.integers(1, 4, size=2))
        sub = tuple(int(s) for s in rng.integers(1, 3, size=2))
        flip = bool(rng.integers(0, 2))
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        h, w_ = (kh - 1) * dil[0] + 1 + int(rng.integers(0, 4)), (kw - 1) * dil[1] + 1 + int(rng.integers(0, 4))
        xv = rng.standard_normal((2, 2, h, w_))
        wv = rng.standard_normal((3, 2, kh, kw))
        x, w = T.dtensor4("x"), T.dtensor4("w")
        out = conv2d(x, w, border_mode=border_mode, subsample=sub, filter_flip=flip, filter_dilation=dil)
        _, (got,) = check_native_vs_reference([x, w], out, [xv, wv], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got, loop_dilated_conv(xv, wv, dil, border_mode, sub, flip), rtol=1e-10,
                                   atol=1e-10)
        assert got.shape == get_conv_output_shape(xv.shape, wv.shape, border_mode, sub, dil)


def test_theano_api_conv2d_filter_dilation_gives_the_reference_answer():
    """T.nnet.conv2d(..., filter_dilation=(2, 2)), as a Theano program writes it, natively (float32)."""
    rng = make_rng(3)
    xv = rng.standard_normal((4, 16, 20, 18)).astype("float32")
    wv = rng.standard_normal((24, 16, 3, 3)).astype("float32")
    x, w = T.ftensor4("x"), T.ftensor4("w")
    out = T.nnet.conv2d(x, w, input_shape=xv.shape, filter_shape=wv.shape, border_mode="half",
                        filter_dilation=(2, 2))
    got = symcnn.function([x, w], out)(xv, wv)
    np.testing.assert_allclose(got, loop_dilated_conv(xv.astype("float64"), wv.astype("float64"), (2, 2), "half"),
                               rtol=1e-4, atol=1e-3)
    assert got.shape == (4, 24, 20, 18)


def test_the_dilation_is_a_parameter_of_the_ops_not_a_zero_filled_filter():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    out = conv2d(x, w, filter_dilation=(2, 3))
    assert isinstance(out.owner.op, Conv2d) and out.owner.op.filter_dilation == (2, 3)
    assert out.owner.inputs[1] is w
    gx, gw = T.grad(out.sum(), [x, w])
    assert isinstance(gx.owner.op, Conv2dGradInputs) and gx.owner.op.filter_dilation == (2, 3)
    assert isinstance(gw.owner.op, Conv2dGradWeights) and gw.owner.op.filter_dilation == (2, 3)
    assert gx.owner.inputs[0] is w
    assert conv2d(x, w, filter_dilation=2).owner.op == Conv2d(filter_dilation=(2, 2))
    assert Conv2d(filter_dilation=(2, 1)) != Conv2d(filter_dilation=(1, 2))
    assert "filter_dilation=(2, 3)" in str(out.owner.op)
    assert "filter_dilation" not in str(conv2d(x, w).owner.op)


def test_dilated_conv_gradients():
    rng = make_rng(9)
    xv, wv = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((2, 2, 2, 2))
    verify_grad(lambda a, b: conv2d(a, b, filter_dilation=(2, 1)), [xv, wv])
    verify_grad(lambda a, b: conv2d(a, b, border_mode="half", filter_dilation=(2, 2),
                                    filter_shape=(2, 2, 2, 2)), [xv, wv])
    verify_grad(lambda a, b: conv2d(a, b, border_mode=(1, 2), subsample=(2, 1), filter_flip=False,
                                    filter_dilation=(3, 2)), [xv, wv])


@pytest.mark.parametrize("kwargs", [dict(border_mode="valid", subsample=(1, 1), filter_dilation=(2, 2)),
                                    dict(border_mode="full", subsample=(2, 1), filter_dilation=(1, 3)),
                                    dict(border_mode=(2, 1), subsample=(1, 2), filter_dilation=(3, 2),
                                         filter_flip=False)])
def test_dilated_gradient_ops_verify_grad(kwargs):
    """verify_grad of Conv2dGradInputs and Conv2dGradWeights themselves (each differentiated through
    the other two ops, with the dilation carried along)."""
    rng = make_rng(11)
    xshape, wshape = (2, 2, 7, 8), (3, 2, 2, 3)
    top_shape = get_conv_output_shape(xshape, wshape, kwargs["border_mode"], kwargs["subsample"],
                                      kwargs["filter_dilation"])
    wv, tv, xv = rng.standard_normal(wshape), rng.standard_normal(top_shape), rng.standard_normal(xshape)
    verify_grad(lambda w, t: conv2d_grad_wrt_inputs(t, w, input_shape=xshape, **kwargs), [wv, tv])
    verify_grad(lambda x, t: conv2d_grad_wrt_weights(x, t, filter_shape=wshape, **kwargs), [xv, tv])


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


@pytest.mark.parametrize("border_mode", ["valid", "full", "half", (3, 1)])
def test_dilated_ops_infer_shape_matches_perform(border_mode):
    rng = make_rng(12)
    xv, wv = rng.standard_normal((2, 2, 11, 9)), rng.standard_normal((3, 2, 3, 2))
    kw = dict(border_mode=border_mode, subsample=(2, 1), filter_dilation=(2, 3))
    (top,) = assert_op_contract(lambda x, w: conv2d(x, w, **kw), [xv, wv])
    assert top.shape == get_conv_output_shape(xv.shape, wv.shape, border_mode, (2, 1), (2, 3))
    tv = rng.standard_normal(top.shape)
    (gx,) = assert_op_contract(lambda w, t: conv2d_grad_wrt_inputs(t, w, input_shape=xv.shape, **kw), [wv, tv])
    (gw,) = assert_op_contract(lambda x, t: conv2d_grad_wrt_weights(x, t, filter_shape=wv.shape, **kw), [xv, tv])
    assert gx.shape == xv.shape and gw.shape == wv.shape


def test_static_output_shape_uses_the_dilated_extent():
    x = T.tensor4("x", dtype="float64", shape=(2, 3, 20, 17))
    w = T.tensor4("w", dtype="float64", shape=(5, 3, 3, 4))
    assert conv2d(x, w, filter_dilation=(2, 3)).type.shape == (2, 5, 16, 8)       # 20 - 5 + 1, 17 - 10 + 1
    assert conv2d(x, w, border_mode="half", filter_dilation=(2, 3)).type.shape == (2, 5, 20, 18)  # pad 5 by 10
    assert conv2d(x, w, border_mode="full", filter_dilation=(2, 3)).type.shape == (2, 5, 24, 26)
    assert conv2d(x, w, border_mode=1, subsample=(2, 2), filter_dilation=(3, 1)).type.shape == (2, 5, 8, 8)


@pytest.mark.parametrize("bad", [(0, 1), (1, -2), (1, 2, 3), "ab", (1.5, 1), 0, None])
def test_bad_filter_dilation_names_the_argument(bad):
    x, w = T.dtensor4("x"), T.dtensor4("w")
    for build in (lambda: conv2d(x, w, filter_dilation=bad),
                  lambda: conv2d_grad_wrt_inputs(x, w, input_shape=(1, 1, 5, 5), filter_dilation=bad),
                  lambda: conv2d_grad_wrt_weights(x, w, filter_shape=(1, 1, 2, 2), filter_dilation=bad),
                  lambda: Conv2dGradWeights(filter_dilation=bad)):
        with pytest.raises(ValueError, match=r"filter_dilation must be an int >= 1 or a pair of ints >= 1 "
                                             r"\(rows, cols\), got " + repr(bad).replace("(", r"\(")
                                             .replace(")", r"\)")):
            build()


def test_dilated_filter_larger_than_the_input_is_an_error():
    x = T.tensor4("x", dtype="float64", shape=(1, 2, 6, 9))
    w = T.tensor4("w", dtype="float64", shape=(3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"dilated filter size 7 \(3 taps, filter_dilation 3\) > input size 6"):
        conv2d(x, w, filter_dilation=(3, 1))
    conv2d(x, w, border_mode=1, filter_dilation=(3, 1))   # 6 + 2 >= 7: fits
    # at run time, both modes
    xd, wd = T.dtensor4("xd"), T.dtensor4("wd")
    native, ref = check_same_error([xd, wd], conv2d(xd, wd, filter_dilation=(1, 4)),
                                   [np.zeros((1, 2, 9, 8)), np.zeros((3, 2, 3, 3))])
    assert "dilated filter size 9 (3 taps, filter_dilation 4) > input size 8" in ref
    assert "filter" in native


def test_output_gradient_of_the_wrong_size_names_the_dilation():
    w = T.tensor4("w", dtype="float64", shape=(3, 2, 3, 3))
    top = T.tensor4("top", dtype="float64", shape=(1, 3, 6, 6))
    with pytest.raises(ValueError, match=r"filter_dilation=\(2, 2\) convolution .* gives \(1, 3, 4, 4\)"):
        conv2d_grad_wrt_inputs(top, w, input_shape=(1, 2, 8, 8), filter_dilation=(2, 2))


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


def test_geometry_formulas_use_the_dilated_extent():
    from symcnn.tensor.nnet import conv_geometry as G
    assert G.extent(3, 2) == 5 and G.extent(1, 3) == 1 and G.extent(4, 1) == 4 and G.extent(None, 2) is None
    assert G.padding("half", 3, 4, dilation=(2, 3)) == (2, 5)      # extents 5 and 10
    assert G.padding("full", 3, 4, dilation=(2, 3)) == (4, 9)
    assert G.padding((1, 2), 3, 4, dilation=(2, 3)) == (1, 2)
    assert G.padding("half", 3, 4) == (1, 2)
    assert G.out_shape((2, 3, 20, 17), (5, 3, 3, 4), "valid", (2, 1), (2, 3)) == (2, 5, 8, 8)
    k = T.lscalar("k")
    ph, _ = G.padding("half", k, 1, dilation=(3, 1))
    assert int(ph.eval({k: np.int64(4)})) == 5                      # extent 10
