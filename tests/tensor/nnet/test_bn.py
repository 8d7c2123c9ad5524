"""T.nnet.bn (symcnn/tensor/nnet/bn.py): Theano's batch normalisation functions against numpy's
formulas, their gradients numerically, native against reference, and Theano's argument checks."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import bn
from tests.helpers import check_grad, check_native_vs_reference, make_rng


def _np_train(x, g, b, axes, eps=1e-4, rm=None, rv=None, factor=0.1):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(var + eps)
    out = (x - mean) * g * invstd + b
    m = x.size / mean.size
    new = None if rm is None else (rm * (1 - factor) + mean * factor, rv * (1 - factor) + m / (m - 1) * var * factor)
    return out, mean, invstd, new


CASES = [((6, 4), "per-activation", (0,)), ((5, 3, 4, 6), "spatial", (0, 2, 3)),
         ((4, 3, 5), (0, 2), (0, 2)), ((3, 4, 5, 2), "per-activation", (0,))]


@pytest.mark.parametrize("shape,axes,np_axes", CASES)
@pytest.mark.parametrize("full", [False, True], ids=["kept-axes params", "full-ndim params"])
def test_train_matches_numpy_with_running_averages(shape, axes, np_axes, full):
    rng = make_rng(len(shape))
    x = rng.standard_normal(shape).astype("float32") * 3 + 1
    pshape = tuple(1 if a in np_axes else n for a, n in enumerate(shape))
    kept = tuple(n for a, n in enumerate(shape) if a not in np_axes)
    g, b, rm, rv = [(rng.random(pshape) + 0.5).astype("float32") for _ in range(4)]
    sym = [T.TensorType("float32", shape=(None,) * (len(shape) if full else len(kept)))(n)
           for n in ("g", "b")]
    shared = [symcnn.shared(v if full else v.reshape(kept)) for v in (rm, rv)]
    xs = T.TensorType("float32", shape=(None,) * len(shape))("x")
    out, mean, invstd, new_rm, new_rv = bn.batch_normalization_train(xs, *sym, axes=axes, running_mean=shared[0],
                                                                     running_var=shared[1])
    f = symcnn.function([xs] + sym, [out, mean, invstd], updates=[(shared[0], new_rm), (shared[1], new_rv)])
    r = f(x, *[v if full else v.reshape(kept) for v in (g, b)])
    want_out, want_mean, want_invstd, (want_rm, want_rv) = _np_train(x, g, b, np_axes, rm=rm, rv=rv)
    np.testing.assert_allclose(r[0], want_out, rtol=1e-4, atol=1e-5)
    for got, want in [(r[1], want_mean), (r[2], want_invstd), (shared[0].get_value(), want_rm),
                      (shared[1].get_value(), want_rv)]:
        np.testing.assert_allclose(got, want if full else want.reshape(kept), rtol=1e-4, atol=1e-5)


def test_test_mode_and_the_original_function():
    rng = make_rng(7)
    x = rng.standard_normal((4, 3, 5, 5)).astype("float32")
    g, b, m, v = [(rng.random(3) + 0.5).astype("float32") for _ in range(4)]
    xs, gs, bs, ms, vs = T.ftensor4("x"), T.fvector("g"), T.fvector("b"), T.fvector("m"), T.fvector("v")
    out = bn.batch_normalization_test(xs, gs, bs, ms, vs, axes="spatial", epsilon=1e-3)
    c = (slice(None), None, None)
    want = (x - m[c]) * g[c] / np.sqrt(v[c] + 1e-3) + b[c]
    fn, (got,) = check_native_vs_reference([xs, gs, bs, ms, vs], [out], [x, g, b, m, v], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
    # the original function: the caller's mean and std, broadcasting as elementwise ops do
    x2, row = T.fmatrix("x2"), T.frow("row")
    orig = symcnn.function([x2, row], bn.batch_normalization(x2, row, row, row, row + 1, mode="high_mem"))
    xv, rv = x.reshape(12, 25), (rng.random((1, 25)) + 0.5).astype("float32")
    np.testing.assert_allclose(orig(xv, rv), (xv - rv) * (rv / (rv + 1)) + rv, rtol=1e-5)


@pytest.mark.parametrize("axes,shape", [("spatial", (3, 2, 3, 2)), ("per-activation", (4, 3))])
def test_gradients_verify(axes, shape):
    """The gradient through the batch statistics (every input, the output and the statistics)."""
    kept = (shape[1],) if axes == "spatial" else shape[1:]

    def normalised(x, g, b):
        out, mean, invstd = bn.batch_normalization_train(x, g, b, axes=axes)
        return (out * out).sum() + (mean * invstd).sum()
    check_grad(normalised, [shape, kept, kept])
    check_grad(lambda x, g, b, m, v: bn.batch_normalization_test(x, g, b, m, v, axes=axes),
               [shape, kept, kept, kept, kept], positive=True)


def test_native_training_step_matches_reference():
    """A conv -> batch norm -> ReLU step, its gradients with respect to everything, natively."""
    rng = make_rng(9)
    x, w = T.ftensor4("x"), T.ftensor4("w")
    g, b = T.fvector("g"), T.fvector("b")
    out, mean, invstd = bn.batch_normalization_train(T.nnet.conv2d(x, w, border_mode="half"), g, b, axes="spatial")
    cost = T.nnet.relu(out).sum() + mean.sum()
    values = [rng.standard_normal((3, 2, 6, 5)).astype("float32"), rng.standard_normal((4, 2, 3, 3)).astype("float32"),
              (rng.random(4) + 0.5).astype("float32"), rng.random(4).astype("float32")]
    check_native_vs_reference([x, w, g, b], [out] + T.grad(cost, [x, w, g, b]), values, rtol=1e-3, atol=1e-3)


def test_theanos_argument_checks():
    x, v = T.ftensor4("x"), T.fvector("v")
    with pytest.raises(ValueError, match="epsilon must be at least 1e-5"):
        bn.batch_normalization_train(x, v, v, "spatial", epsilon=1e-6)
    with pytest.raises(ValueError, match="invalid axes"):
        bn.batch_normalization_train(x, v, v, axes="channels")
    with pytest.raises(ValueError, match="out of range"):
        bn.batch_normalization_train(x, v, v, axes=(0, 4))
    with pytest.raises(ValueError, match="beta must have 1 dimensions"):
        bn.batch_normalization_train(x, v, T.fmatrix("b"), "spatial")
    with pytest.raises(ValueError, match="given together"):
        bn.batch_normalization_train(x, v, v, "spatial", running_mean=v)
    with pytest.raises(ValueError, match="low_mem"):
        bn.batch_normalization(x, v, v, v, v, mode="fast")
