"""conv2d (Theano 1.0 semantics): values against a nested-loop numpy convolution,
gradients of the forward op and of both gradient ops with verify_grad, static shape
inference and the errors for inconsistent shapes (when building and at run time)."""

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv, conv2d
from symcnn.tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights

from tests.helpers import assert_op_contract

BORDER_MODES = ["valid", "full", "half", 1, (2, 1), (0, 2), (0, 0)]
SUBSAMPLES = [(1, 1), (2, 2), (3, 2)]


# ------------------------------------------------------------------------------- references
def _pads(border_mode, kh, kw):
    if border_mode == "valid":
        return 0, 0
    if border_mode == "full":
        return kh - 1, kw - 1
    if border_mode == "half":
        return kh // 2, kw // 2
    if isinstance(border_mode, int):
        return border_mode, border_mode
    return tuple(border_mode)


def loop_conv(x, w, border_mode="valid", subsample=(1, 1), filter_flip=True):
    """Direct definition: out[n, m, i, j] = sum_{c,u,v} xpad[n, c, i*sh + u, j*sw + v] * w'[m, c, u, v]
    with w'[m, c, u, v] = w[m, c, kh-1-u, kw-1-v] for a true convolution (filter_flip)."""
    b, c, h, wd = x.shape
    nk, c2, kh, kw = w.shape
    assert c == c2
    ph, pw = _pads(border_mode, kh, kw)
    sh, sw = subsample
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((b, nk, oh, ow))
    for n in range(b):
        for m in range(nk):
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0
                    for ch in range(c):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < h and 0 <= s < wd:
                                    wu, wv = (kh - 1 - u, kw - 1 - v) if filter_flip else (u, v)
                                    acc += x[n, ch, r, s] * w[m, ch, wu, wv]
                    out[n, m, i, j] = acc
    return out


def loop_conv_grads(x, w, g, border_mode="valid", subsample=(1, 1), filter_flip=True):
    """d/dx and d/dw of sum(conv(x, w) * g) by the same loop (chain rule on each product)."""
    b, c, h, wd = x.shape
    nk, _, kh, kw = w.shape
    ph, pw = _pads(border_mode, kh, kw)
    sh, sw = subsample
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for n in range(b):
        for m in range(nk):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    for ch in range(c):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < h and 0 <= s < wd:
                                    wu, wv = (kh - 1 - u, kw - 1 - v) if filter_flip else (u, v)
                                    gx[n, ch, r, s] += g[n, m, i, j] * w[m, ch, wu, wv]
                                    gw[m, ch, wu, wv] += g[n, m, i, j] * x[n, ch, r, s]
    return gx, gw


def rng(seed=0):
    return np.random.default_rng(seed)


def run(inputs, outputs, values):
    return symcnn.function(inputs, outputs)(*values)


# ------------------------------------------------------------------------------- forward values
@pytest.mark.parametrize("border_mode", BORDER_MODES)
@pytest.mark.parametrize("subsample", SUBSAMPLES)
@pytest.mark.parametrize("filter_flip", [True, False])
def test_forward_matches_loop(border_mode, subsample, filter_flip):
    r = rng(1)
    xv = r.standard_normal((2, 3, 7, 8))
    wv = r.standard_normal((4, 3, 3, 2))
    x, w = T.dtensor4("x"), T.dtensor4("w")
    out = conv2d(x, w, border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    got = run([x, w], out, [xv, wv])
    np.testing.assert_allclose(got, loop_conv(xv, wv, border_mode, subsample, filter_flip), rtol=1e-10, atol=1e-10)


def test_default_is_true_convolution_valid():
    # a 1-channel delta image convolved with an asymmetric kernel reproduces the kernel
    # (convolution), not the flipped kernel (correlation)
    xv = np.zeros((1, 1, 5, 5))
    xv[0, 0, 2, 2] = 1.0
    wv = np.arange(9, dtype="float64").reshape(1, 1, 3, 3)
    x, w = T.dtensor4(), T.dtensor4()
    got = run([x, w], conv2d(x, w), [xv, wv])
    assert got.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(got[0, 0], wv[0, 0])
    corr = run([x, w], conv2d(x, w, filter_flip=False), [xv, wv])
    np.testing.assert_array_equal(corr[0, 0], wv[0, 0, ::-1, ::-1])


def test_full_mode_matches_numpy_convolve_1d():
    xv = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    wv = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 1, 3)
    x, w = T.dtensor4(), T.dtensor4()
    got = run([x, w], conv2d(x, w, border_mode="full"), [xv, wv])
    np.testing.assert_allclose(got.ravel(), np.convolve(xv.ravel(), wv.ravel(), mode="full"))


def test_float32_stays_float32_and_mixed_dtypes_upcast():
    r = rng(2)
    xv = r.standard_normal((2, 2, 6, 6)).astype("float32")
    wv = r.standard_normal((3, 2, 3, 3)).astype("float32")
    x, w = T.ftensor4(), T.ftensor4()
    out = conv2d(x, w)
    assert out.dtype == "float32"
    got = run([x, w], out, [xv, wv])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, loop_conv(xv.astype("float64"), wv.astype("float64")), rtol=1e-4, atol=1e-4)
    gx, gw = T.grad(T.sum(out), [x, w])
    assert gx.dtype == gw.dtype == "float32"
    vals = run([x, w], [gx, gw], [xv, wv])
    assert all(v.dtype == np.float32 for v in vals)

    wd = T.dtensor4()
    mixed = conv2d(x, wd)
    assert mixed.dtype == "float64"
    gx, gw = T.grad(T.sum(mixed), [x, wd])
    assert gx.dtype == "float32" and gw.dtype == "float64"
    run([x, wd], [mixed, gx, gw], [xv, wv.astype("float64")])


def test_integer_inputs_rejected():
    with pytest.raises(TypeError, match="float"):
        conv2d(T.itensor4("xi"), T.dtensor4())


# ------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("border_mode,subsample,filter_flip", [
    ("valid", (1, 1), True), ("valid", (2, 2), False), ("full", (1, 1), True), ("full", (2, 3), True),
    ("half", (1, 1), False), ("half", (2, 1), True), (1, (1, 2), True), ((2, 1), (3, 2), False),
])
def test_grad_values_match_loop(border_mode, subsample, filter_flip):
    r = rng(3)
    xv = r.standard_normal((2, 2, 7, 6))
    wv = r.standard_normal((3, 2, 3, 2))
    x, w, g = T.dtensor4("x"), T.dtensor4("w"), T.dtensor4("g")
    out = conv2d(x, w, border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    gv = r.standard_normal(run([x, w], out, [xv, wv]).shape)
    gx, gw = T.grad(T.sum(out * g), [x, w])
    got_x, got_w = run([x, w, g], [gx, gw], [xv, wv, gv])
    ref_x, ref_w = loop_conv_grads(xv, wv, gv, border_mode, subsample, filter_flip)
    np.testing.assert_allclose(got_x, ref_x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_w, ref_w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("border_mode", ["valid", "full", "half", (1, 2)])
@pytest.mark.parametrize("subsample", [(1, 1), (2, 3)])
@pytest.mark.parametrize("filter_flip", [True, False])
def test_verify_grad_forward(border_mode, subsample, filter_flip):
    r = rng(4)
    xv = r.standard_normal((2, 2, 5, 6))
    wv = r.standard_normal((2, 2, 3, 2))
    symcnn.verify_grad(lambda x, w: conv2d(x, w, border_mode=border_mode, subsample=subsample,
                                           filter_flip=filter_flip), [xv, wv], n_tests=1, rng=r)


def test_verify_grad_with_static_shapes():
    # with static shapes the grad ops get their spatial-shape argument as a constant
    r = rng(5)
    xv = r.standard_normal((1, 2, 5, 5))
    wv = r.standard_normal((2, 2, 2, 3))
    symcnn.verify_grad(lambda x, w: conv2d(x, w, input_shape=(1, 2, 5, 5), filter_shape=(2, 2, 2, 3),
                                           subsample=(2, 2), border_mode="half"), [xv, wv], n_tests=1, rng=r)


def _geometry_cases():
    return [("valid", (1, 1), True), ("full", (2, 1), False), ("half", (2, 2), True), ((1, 0), (1, 3), True)]


@pytest.mark.parametrize("border_mode,subsample,filter_flip", _geometry_cases())
def test_grad_inputs_op(border_mode, subsample, filter_flip):
    """Conv2dGradInputs: value = the loop gradient; its own gradient w.r.t. filters and topgrad."""
    r = rng(6)
    xv = r.standard_normal((2, 2, 6, 5))
    wv = r.standard_normal((3, 2, 3, 2))
    top_shape = loop_conv(xv, wv, border_mode, subsample, filter_flip).shape
    gv = r.standard_normal(top_shape)
    op = Conv2dGradInputs(border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    w, g = T.dtensor4("w"), T.dtensor4("g")
    got = run([w, g], op(w, g, (6, 5)), [wv, gv])
    np.testing.assert_allclose(got, loop_conv_grads(xv, wv, gv, border_mode, subsample, filter_flip)[0],
                               rtol=1e-10, atol=1e-10)
    symcnn.verify_grad(lambda a, b: op(a, b, (6, 5)), [wv, gv], n_tests=1, rng=r)
    # symbolic spatial shape argument
    hw = T.lvector("hw")
    got = run([w, g, hw], op(w, g, hw), [wv, gv, np.array([6, 5])])
    assert got.shape == xv.shape
    assert_op_contract(lambda a, b: op(a, b, (6, 5)), [wv, gv])
    assert_op_contract(lambda a, b: op(a, b, (6, 5)), [wv, gv], static=True)


@pytest.mark.parametrize("border_mode,subsample,filter_flip", _geometry_cases())
def test_grad_weights_op(border_mode, subsample, filter_flip):
    """Conv2dGradWeights: value = the loop gradient; its own gradient w.r.t. input and topgrad."""
    r = rng(7)
    xv = r.standard_normal((2, 2, 6, 5))
    wv = r.standard_normal((3, 2, 3, 2))
    gv = r.standard_normal(loop_conv(xv, wv, border_mode, subsample, filter_flip).shape)
    op = Conv2dGradWeights(border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    x, g = T.dtensor4("x"), T.dtensor4("g")
    got = run([x, g], op(x, g, (3, 2)), [xv, gv])
    np.testing.assert_allclose(got, loop_conv_grads(xv, wv, gv, border_mode, subsample, filter_flip)[1],
                               rtol=1e-10, atol=1e-10)
    symcnn.verify_grad(lambda a, b: op(a, b, (3, 2)), [xv, gv], n_tests=1, rng=r)
    assert_op_contract(lambda a, b: op(a, b, (3, 2)), [xv, gv])
    assert_op_contract(lambda a, b: op(a, b, (3, 2)), [xv, gv], static=True)


def test_second_order_gradient():
    # d/dx of a function of dcost/dw goes through the grad ops' own gradients
    r = rng(8)
    xv = r.standard_normal((2, 2, 5, 5))
    wv = r.standard_normal((2, 2, 3, 3))

    def f(x, w):
        out = conv2d(x, w, border_mode="half", subsample=(2, 1))
        gw = T.grad(T.sum(T.tanh(out)), w)
        return gw * gw

    symcnn.verify_grad(f, [xv, wv], n_tests=1, rng=r)


@pytest.mark.parametrize("border_mode,subsample", [("valid", (1, 1)), ("full", (2, 2)), ((1, 2), (3, 1))])
def test_forward_op_contract(border_mode, subsample):
    r = rng(9)
    xv = r.standard_normal((2, 3, 7, 6))
    wv = r.standard_normal((4, 3, 3, 2))
    for static in (False, True):
        assert_op_contract(lambda x, w: conv2d(x, w, border_mode=border_mode, subsample=subsample),
                           [xv, wv], static=static)


# ------------------------------------------------------------------------------- static shapes
def test_static_output_shape_from_given_shapes():
    x, w = T.tensor4("x"), T.tensor4("w")
    out = conv2d(x, w, input_shape=(500, 1, 28, 28), filter_shape=(20, 1, 5, 5))
    assert out.type.shape == (500, 20, 24, 24)
    assert conv2d(x, w, input_shape=(None, 1, 28, None), filter_shape=(20, 1, 5, 5)).type.shape == \
        (None, 20, 24, None)
    assert conv2d(x, w).type.shape == (None,) * 4
    assert conv2d(x, w, input_shape=(4, 3, 10, 9), filter_shape=(2, 3, 3, 4), border_mode="full",
                  subsample=(2, 3)).type.shape == (4, 2, 6, 4)
    assert conv2d(x, w, input_shape=(4, 3, 10, 9), filter_shape=(2, 3, 3, 4), border_mode="half").type.shape == \
        (4, 2, 10, 10)
    assert conv2d(x, w, input_shape=(4, 3, 10, 9), filter_shape=(2, 3, 3, 4), border_mode=(1, 0)).type.shape == \
        (4, 2, 10, 6)


def test_static_output_shape_from_variable_types():
    x = T.tensor4("x", shape=(8, 3, 12, 12))
    w = T.tensor4("w", shape=(5, 3, 5, 5))
    assert conv2d(x, w).type.shape == (8, 5, 8, 8)
    # partially known types and given shapes combine
    x2 = T.tensor4("x2", shape=(None, 3, 12, None))
    assert conv2d(x2, T.tensor4(), input_shape=(8, None, None, 10), filter_shape=(5, 3, 5, 5)).type.shape == \
        (8, 5, 8, 6)


def test_shared_filters_static_type():
    W = symcnn.shared(np.zeros((6, 2, 3, 3), dtype="float32"), name="W")
    out = conv2d(T.tensor4("x"), W)
    assert out.type.shape[1] in (6, None)


def test_given_shape_disagrees_with_variable_type():
    x = T.tensor4("xx", shape=(None, 3, 12, 12))
    with pytest.raises(ValueError) as e:
        conv2d(x, T.tensor4(), input_shape=(None, 1, 12, 12))
    assert "xx" in str(e.value) and "input_shape" in str(e.value) and "dimension 1" in str(e.value)
    w = T.tensor4("ww", shape=(5, 3, 5, 5))
    with pytest.raises(ValueError, match="ww"):
        conv2d(x, w, filter_shape=(5, 3, 3, 3))


def test_channel_mismatch_errors():
    x = T.tensor4("img", shape=(None, 3, 12, 12))
    w = T.tensor4("filt", shape=(5, 2, 3, 3))
    with pytest.raises(ValueError, match=r"3 channels.*img.*2 input channels.*filt"):
        conv2d(x, w)
    with pytest.raises(ValueError, match=r"channels"):
        conv2d(T.tensor4(), T.tensor4(), input_shape=(1, 3, 5, 5), filter_shape=(2, 1, 3, 3))


def test_filter_larger_than_input_error():
    with pytest.raises(ValueError, match="larger than"):
        conv2d(T.tensor4(), T.tensor4(), input_shape=(1, 1, 4, 4), filter_shape=(1, 1, 5, 5))
    # 'full' and 'half' padding make it fine
    assert conv2d(T.tensor4(), T.tensor4(), input_shape=(1, 1, 4, 4), filter_shape=(1, 1, 5, 5),
                  border_mode="full").type.shape == (1, 1, 8, 8)


def test_runtime_shape_mismatch_against_declared_shape():
    x, w = T.dtensor4("xin"), T.dtensor4("win")
    f = symcnn.function([x, w], conv2d(x, w, input_shape=(2, 3, 7, 6), filter_shape=(4, 3, 3, 3)))
    r = rng(10)
    f(r.standard_normal((2, 3, 7, 6)), r.standard_normal((4, 3, 3, 3)))
    with pytest.raises(ValueError) as e:
        f(r.standard_normal((2, 3, 8, 6)), r.standard_normal((4, 3, 3, 3)))
    msg = str(e.value)
    assert "xin" in msg and "(2, 3, 8, 6)" in msg and "(2, 3, 7, 6)" in msg
    with pytest.raises(ValueError, match=r"win.*\(4, 3, 2, 3\)"):
        f(r.standard_normal((2, 3, 7, 6)), r.standard_normal((4, 3, 2, 3)))


def test_runtime_channel_mismatch_and_too_large_filter():
    x, w = T.dtensor4("xin"), T.dtensor4("win")
    f = symcnn.function([x, w], conv2d(x, w))
    r = rng(11)
    with pytest.raises(ValueError, match=r"3 channels.*xin.*2 input channels.*win"):
        f(r.standard_normal((1, 3, 5, 5)), r.standard_normal((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="larger than"):
        f(r.standard_normal((1, 1, 2, 5)), r.standard_normal((2, 1, 3, 3)))


def test_grad_op_shape_checks():
    op = Conv2dGradInputs(border_mode="valid", subsample=(2, 2))
    x, w, g = T.dtensor4("x"), T.dtensor4("w"), T.tensor4("topg", dtype="float64", shape=(None, 3, 4, 4))
    # input 9x9, kernel 3x3, stride 2 -> 4x4: fine; 7x7 -> 3x3 disagrees with topgrad's static type
    assert op(w, g, (9, 9)).type.shape == (None, None, 9, 9)
    assert op(w, g, (10, 10)).type.shape == (None, None, 10, 10)
    with pytest.raises(ValueError, match=r"topg"):
        Conv2dGradInputs(kshp=(3, 2, 3, 3), subsample=(2, 2))(w, g, (7, 7))
    with pytest.raises(ValueError, match=r"number of filters"):
        Conv2dGradInputs(kshp=(5, 2, 3, 3))(w, g, (9, 9))
    with pytest.raises(TypeError, match="2 integers"):
        op(w, g, (9, 9, 9))
    # at run time: topgrad's spatial shape must be the forward output's
    gg = T.dtensor4("gg")
    f = symcnn.function([x, gg], Conv2dGradWeights()(x, gg, (2, 2)))
    r = rng(12)
    with pytest.raises(ValueError, match=r"gg.*\(1, 2, 4, 4\)"):
        f(r.standard_normal((1, 1, 4, 4)), r.standard_normal((1, 2, 4, 4)))  # should be 3x3


def test_grad_ops_infer_shape_matches_perform():
    # the forward output's symbolic shape, with unknown static shapes
    r = rng(13)
    xv, wv = r.standard_normal((2, 2, 7, 5)), r.standard_normal((3, 2, 3, 3))
    for bm in ["valid", "full", "half", (2, 1)]:
        assert_op_contract(lambda x, w: conv2d(x, w, border_mode=bm, subsample=(2, 1)), [xv, wv])


# ------------------------------------------------------------------------------- arguments
def test_bad_arguments():
    x, w = T.tensor4(), T.tensor4()
    with pytest.raises(ValueError, match="border_mode"):
        conv2d(x, w, border_mode="same")
    with pytest.raises(ValueError, match="border_mode"):
        conv2d(x, w, border_mode=-1)
    with pytest.raises(ValueError, match="border_mode"):
        conv2d(x, w, border_mode=(1, 2, 3))
    with pytest.raises(ValueError, match="subsample"):
        conv2d(x, w, subsample=(0, 1))
    with pytest.raises(TypeError, match="subsample"):
        conv2d(x, w, subsample="ab")
    with pytest.raises(ValueError, match="filter_dilation"):
        conv2d(x, w, filter_dilation=(0, 1))
    with pytest.raises(TypeError, match="4-d"):
        conv2d(T.matrix("m"), w)
    with pytest.raises(TypeError, match="4-d"):
        conv2d(x, T.tensor3("t3"))
    with pytest.raises(ValueError, match="4 entries"):
        conv2d(x, w, input_shape=(1, 2, 3))
    with pytest.raises(ValueError, match="image_shape"):
        conv2d(x, w, input_shape=(1, 1, 5, 5), image_shape=(2, 1, 5, 5))
    with pytest.raises(TypeError, match="unexpected keyword"):
        conv2d(x, w, bogus=1)


def test_border_mode_normalisation_and_props():
    assert Conv2d(border_mode=(0, 0)) == Conv2d(border_mode="valid")
    assert Conv2d(border_mode=2).border_mode == (2, 2)
    assert Conv2d(border_mode=2) == Conv2d(border_mode=(2, 2))
    assert Conv2d(border_mode="full") != Conv2d(border_mode="half")
    assert Conv2d(filter_flip=False) != Conv2d()
    assert Conv2d(subsample=(2, 2)) != Conv2d()
    assert Conv2d(imshp=(1, 2, 3, 4)) != Conv2d()
    assert hash(Conv2d(subsample=[2, 2])) == hash(Conv2d(subsample=(2, 2)))
    for cls in (Conv2d, Conv2dGradInputs, Conv2dGradWeights):
        assert set(cls.__props__) >= {"border_mode", "subsample", "filter_flip", "imshp", "kshp"}


def test_image_shape_alias_and_old_conv_module():
    r = rng(14)
    xv, wv = r.standard_normal((2, 1, 6, 6)), r.standard_normal((3, 1, 3, 3))
    x, w = T.dtensor4(), T.dtensor4()
    out = conv.conv2d(input=x, filters=w, filter_shape=(3, 1, 3, 3), image_shape=(2, 1, 6, 6))
    assert out.type.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(run([x, w], out, [xv, wv]), loop_conv(xv, wv), rtol=1e-10, atol=1e-10)
    # positional: input, filters, input_shape (image_shape in the old module), filter_shape
    out2 = conv.conv2d(x, w, (2, 1, 6, 6), (3, 1, 3, 3), border_mode="full")
    np.testing.assert_allclose(run([x, w], out2, [xv, wv]), loop_conv(xv, wv, "full"), rtol=1e-10, atol=1e-10)
    assert conv2d(x, w, input_shape=(2, 1, 6, 6), image_shape=(2, 1, 6, 6)).type.shape == (2, None, None, None)


def test_grad_helper_functions():
    r = rng(15)
    xv, wv = r.standard_normal((2, 2, 6, 6)), r.standard_normal((3, 2, 3, 3))
    gv = r.standard_normal((2, 3, 2, 2))
    w, g, x = T.dtensor4(), T.dtensor4(), T.dtensor4()
    gi = conv.conv2d_grad_wrt_inputs(g, w, (2, 2, 6, 6), subsample=(2, 2))
    gw = conv.conv2d_grad_wrt_weights(x, g, (3, 2, 3, 3), subsample=(2, 2))
    ref_x, ref_w = loop_conv_grads(xv, wv, gv, "valid", (2, 2))
    np.testing.assert_allclose(run([w, g], gi, [wv, gv]), ref_x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(run([x, g], gw, [xv, gv]), ref_w, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------- flops
@pytest.mark.parametrize("border_mode,subsample", [("valid", (1, 1)), ("full", (2, 1)), ("half", (1, 3)),
                                                   ((2, 1), (2, 2))])
def test_flops_count_two_per_multiply_add(border_mode, subsample):
    """2 * N*K*C*kh*kw*OH*OW, with the output size taken from running the convolution."""
    r = rng(16)
    xv, wv = r.standard_normal((2, 3, 9, 8)), r.standard_normal((4, 3, 3, 2))
    x, w = T.dtensor4(), T.dtensor4()
    out = conv2d(x, w, border_mode=border_mode, subsample=subsample)
    top = run([x, w], out, [xv, wv]).shape
    want = 2 * int(np.prod(top)) * 3 * 3 * 2
    assert out.owner.op.flops([xv.shape, wv.shape]) == want
    d_x, d_w = symcnn.grad(out.sum(), [x, w])
    gi = [n for n in _nodes(d_x) if isinstance(n.op, Conv2dGradInputs)][0]
    gw = [n for n in _nodes(d_w) if isinstance(n.op, Conv2dGradWeights)][0]
    assert gi.op.flops([wv.shape, top, (2,)]) == want
    assert gw.op.flops([xv.shape, top, (2,)], [wv.shape]) == want
    declared = Conv2dGradWeights(kshp=(None, None, 3, 2), border_mode=border_mode, subsample=subsample)
    assert declared.flops([xv.shape, top, (2,)]) == want
    with pytest.raises(ValueError, match="filter rows and cols"):
        Conv2dGradWeights(border_mode=border_mode, subsample=subsample).flops([xv.shape, top, (2,)])


def _nodes(v):
    from symcnn.graph.basic import ancestors
    return [a.owner for a in ancestors([v]) if a.owner is not None]
