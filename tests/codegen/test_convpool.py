"""Native ConvPoolTanh / ConvPoolTanhGrad against their numpy reference, and verify_grad of both."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet.convpool import ConvPoolTanh, ConvPoolTanhGrad

from tests.helpers import check_native_vs_reference

RTOL, ATOL = 1e-4, 1e-5

# (x shape, W shape, conv kwargs, pool kwargs)
CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 3), {}, dict(ws=(2, 2))),
    ((1, 2, 11, 10), (3, 2, 2, 3), {}, dict(ws=(3, 2), stride=(1, 2))),          # overlapping windows
    ((2, 2, 7, 7), (3, 2, 3, 3), dict(border_mode="half", subsample=(2, 1), filter_flip=False), dict(ws=(2, 2))),
    ((1, 1, 8, 9), (2, 1, 2, 2), dict(border_mode="full"), dict(ws=(3, 3), stride=(2, 3))),   # uint16 mask
    ((2, 2, 6, 12), (2, 2, 1, 3), dict(border_mode=(1, 0)), dict(ws=(1, 5), stride=(2, 2))),
    ((1, 1, 4, 4), (1, 1, 3, 3), {}, dict(ws=(3, 3))),                            # no window fits
]


def _values(xs, ws, dtype="float32", seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 2, xs).astype(dtype)                        # exact sums: many ties
    W = ((rng.randint(0, 2, ws) * 2 - 1) * 0.25).astype(dtype)
    b = rng.uniform(-0.5, 0.5, ws[0]).astype(dtype)
    return x, W, b


def _ops(conv, pool_kw, static, xs, ws):
    kw = dict(conv, **pool_kw)
    if static:
        kw.update(imshp=xs, kshp=ws)
    return ConvPoolTanh(**kw), ConvPoolTanhGrad(**kw, need_gx=True), ConvPoolTanhGrad(**kw, need_gx=False)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("xs,ws,conv,pool_kw", CASES)
def test_native_matches_reference(xs, ws, conv, pool_kw, static):
    fwd, bwd, bwd_nogx = _ops(conv, pool_kw, static, xs, ws)
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    out, mask = fwd(x, W, b)
    grads = bwd(x, W, out, mask, g * out)
    grads2 = bwd_nogx(x, W, out, mask, g)
    xv, Wv, bv = _values(xs, ws)
    ref = symcnn.function([x, W, b], out, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(3).standard_normal(ref.shape).astype("float32")
    check_native_vs_reference([x, W, b, g], [out, mask] + list(grads) + list(grads2), [xv, Wv, bv, gv],
                              rtol=RTOL, atol=ATOL)


def test_float64_and_shape_errors():
    xs, ws = (2, 2, 6, 7), (3, 2, 3, 2)
    fwd = ConvPoolTanh(ws=(2, 2), imshp=xs, kshp=ws)
    x, W, b = T.dtensor4("x"), T.dtensor4("W"), T.dvector("b")
    out, mask = fwd(x, W, b)
    xv, Wv, bv = _values(xs, ws, "float64")
    check_native_vs_reference([x, W, b], [out, mask], [xv, Wv, bv], rtol=1e-12, atol=1e-12)
    fn = symcnn.function([x, W, b], out, mode="native")
    with pytest.raises(ValueError):
        fn(xv[:, :, :5], Wv, bv)
    with pytest.raises(TypeError, match="dtype"):
        fwd(T.ftensor4(), W, b)
    with pytest.raises(TypeError, match="vector"):
        fwd(x, W, T.dmatrix())
    with pytest.raises(NotImplementedError):
        ConvPoolTanh(ws=(2, 2), mode="sum")


def test_infer_shape():
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    op = ConvPoolTanh(ws=(3, 2), stride=(2, 2), border_mode="full")
    out, mask = op(x, W, b)
    xv, Wv, bv = _values((2, 3, 9, 8), (4, 3, 3, 3))
    fn = symcnn.function([x, W, b], [out.shape, mask.shape, out], mode="reference")
    s1, s2, o = fn(xv, Wv, bv)
    assert tuple(s1) == tuple(s2) == o.shape


def test_verify_grad_forward():
    rng = np.random.RandomState(0)
    op = ConvPoolTanh(ws=(2, 2), stride=(1, 2))
    pts = [rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 2, 2, 2)) * 0.5, rng.standard_normal(2)]
    symcnn.verify_grad(lambda x, W, b: op(x, W, b)[0], pts, mode="reference", rng=rng)


@pytest.mark.parametrize("need_gx", [True, False])
def test_verify_grad_backward(need_gx):
    rng = np.random.RandomState(1)
    fwd = ConvPoolTanh(ws=(2, 2))
    bwd = ConvPoolTanhGrad(ws=(2, 2), need_gx=need_gx)
    b0 = T.constant(np.zeros(2))
    pts = [rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 2, 2)) * 0.5,
           rng.uniform(-0.9, 0.9, (1, 2, 2, 2)), rng.standard_normal((1, 2, 2, 2))]

    for k in range(len(bwd.make_node(*([T.dtensor4()] * 3 + [T.tensor4(dtype="uint8"), T.dtensor4()])).outputs)):
        def fun(x, W, out, g, k=k):
            mask = fwd(x, W, b0)[1]   # the ties of this x, W (piecewise constant: no gradient)
            return bwd(x, W, out, mask, g)[k]
        symcnn.verify_grad(fun, pts, mode="reference", rng=rng)
