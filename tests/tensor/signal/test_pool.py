"""pool_2d (Theano 1.0 semantics): values against a direct loop over windows, gradients
(ties go to every maximum), the gradient ops' own gradients, static shapes, aliases and
argument errors."""
import warnings

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.signal import downsample, pool
from symcnn.tensor.signal.pool import AveragePoolGrad, MaxPoolGrad, MaxPoolGradGrad, Pool, pool_2d

from tests.helpers import assert_op_contract

MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]


# ------------------------------------------------------------------------------- references
def ref_out_len(n, ws, st, pad, ignore_border):
    """Theano's Pool.out_shape rule, written out."""
    if ignore_border:
        return max(0, (n + 2 * pad - ws) // st + 1)
    if st >= ws:
        return (n - 1) // st + 1
    return max(0, (n - 1 - ws + st) // st) + 1


def ref_windows(h, w, ws, st, pad, ignore_border):
    """For each output position: the window's (row range, col range) clipped to the image,
    and the window's element count including padding (clipped to the padded image)."""
    nr = ref_out_len(h, ws[0], st[0], pad[0], ignore_border)
    nc = ref_out_len(w, ws[1], st[1], pad[1], ignore_border)
    res = {}
    for i in range(nr):
        for j in range(nc):
            r0, c0 = i * st[0] - pad[0], j * st[1] - pad[1]
            r1, c1 = r0 + ws[0], c0 + ws[1]
            rows = range(max(r0, 0), min(r1, h))
            cols = range(max(c0, 0), min(c1, w))
            inc = (min(r1, h + pad[0]) - r0) * (min(c1, w + pad[1]) - c0)
            res[i, j] = rows, cols, inc
    return nr, nc, res


def loop_pool(x, ws, ignore_border=True, st=None, pad=(0, 0), mode="max"):
    st = st or ws
    h, w = x.shape[-2:]
    nr, nc, wins = ref_windows(h, w, ws, st, pad, ignore_border)
    out = np.zeros(x.shape[:-2] + (nr, nc))
    for lead in np.ndindex(*x.shape[:-2]):
        for (i, j), (rows, cols, inc) in wins.items():
            vals = [x[lead + (r, c)] for r in rows for c in cols]
            if mode == "max":
                out[lead + (i, j)] = max(vals)
            elif mode == "sum":
                out[lead + (i, j)] = sum(vals)
            elif mode == "average_exc_pad":
                out[lead + (i, j)] = sum(vals) / len(vals)
            else:  # average_inc_pad: padding counts as zeros
                out[lead + (i, j)] = sum(vals) / inc
    return out


def loop_pool_grad(x, gz, ws, ignore_border=True, st=None, pad=(0, 0), mode="max"):
    """Gradient of sum(pool(x) * gz); for max, every element equal to the window max gets gz."""
    st = st or ws
    h, w = x.shape[-2:]
    _, _, wins = ref_windows(h, w, ws, st, pad, ignore_border)
    gx = np.zeros(x.shape)
    for lead in np.ndindex(*x.shape[:-2]):
        for (i, j), (rows, cols, inc) in wins.items():
            g = gz[lead + (i, j)]
            cells = [(r, c) for r in rows for c in cols]
            if mode == "max":
                m = max(x[lead + rc] for rc in cells)
                for rc in cells:
                    if x[lead + rc] == m:
                        gx[lead + rc] += g
            else:
                div = {"sum": 1, "average_exc_pad": len(cells), "average_inc_pad": inc}[mode]
                for rc in cells:
                    gx[lead + rc] += g / div
    return gx


def distinct(shape, seed=0):
    """Values 0.1 apart in random order: no ties, so max pooling is differentiable there."""
    r = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return r.permutation(n).reshape(shape) * 0.1 - n * 0.05


def run(inputs, outputs, values):
    return symcnn.function(inputs, outputs)(*values)


CONFIGS = [
    # ws, stride, ignore_border, pad
    ((2, 2), None, True, (0, 0)),
    ((2, 2), None, False, (0, 0)),
    ((3, 2), None, True, (0, 0)),
    ((3, 2), None, False, (0, 0)),
    ((3, 3), (1, 1), True, (0, 0)),
    ((3, 3), (2, 1), False, (0, 0)),
    ((2, 3), (3, 2), True, (0, 0)),
    ((2, 3), (3, 4), False, (0, 0)),
    ((3, 3), (2, 2), True, (1, 1)),
    ((2, 3), None, True, (1, 2)),
    ((3, 2), (1, 2), True, (2, 0)),
    ((1, 1), None, True, (0, 0)),
    ((7, 6), None, False, (0, 0)),
    ((8, 2), None, True, (0, 0)),  # window taller than the image: no output rows
]


# ------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("ws,st,ignore_border,pad", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_loop(ws, st, ignore_border, pad, mode):
    xv = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    x = T.dtensor4("x")
    out = pool_2d(x, ws=ws, ignore_border=ignore_border, stride=st, pad=pad, mode=mode)
    got = run([x], out, [xv])
    want = loop_pool(xv, ws, ignore_border, st, pad, mode)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 6), (3, 7, 6), (2, 1, 2, 5, 4)])
@pytest.mark.parametrize("mode", MODES)
def test_any_number_of_leading_dimensions(shape, mode):
    xv = np.random.default_rng(2).standard_normal(shape)
    x = T.TensorType("float64", shape=(None,) * len(shape))("x")
    got = run([x], pool_2d(x, (2, 3), ignore_border=False, stride=(1, 2), mode=mode), [xv])
    np.testing.assert_allclose(got, loop_pool(xv, (2, 3), False, (1, 2), (0, 0), mode), rtol=1e-12)


def test_ignore_border_partial_windows():
    xv = np.arange(25, dtype="float64").reshape(1, 1, 5, 5)
    x = T.dtensor4()
    assert run([x], pool_2d(x, (2, 2), ignore_border=True), [xv]).shape == (1, 1, 2, 2)
    got = run([x], pool_2d(x, (2, 2), ignore_border=False), [xv])
    assert got.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(got[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    avg = run([x], pool_2d(x, (2, 2), ignore_border=False, mode="average_inc_pad"), [xv])
    assert avg[0, 0, 2, 2] == 24.0 and avg[0, 0, 0, 2] == (4 + 9) / 2


def test_padding_modes_differ_as_documented():
    xv = np.ones((1, 1, 3, 3))
    x = T.dtensor4()
    kw = dict(ws=(2, 2), ignore_border=True, pad=(1, 1))
    inc = run([x], pool_2d(x, mode="average_inc_pad", **kw), [xv])
    exc = run([x], pool_2d(x, mode="average_exc_pad", **kw), [xv])
    mx = run([x], pool_2d(x, mode="max", **kw), [-xv])
    np.testing.assert_allclose(exc, np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(inc[0, 0], [[0.25, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(mx, -np.ones((1, 1, 2, 2)))  # zero padding never wins the max


def test_dtypes():
    x32 = T.ftensor4()
    xv = np.random.default_rng(3).standard_normal((2, 2, 4, 4)).astype("float32")
    for mode in MODES:
        out = pool_2d(x32, (2, 2), ignore_border=True, mode=mode)
        assert out.dtype == "float32"
        assert run([x32], out, [xv]).dtype == np.float32
        g = T.grad(T.sum(out), x32)
        assert g.dtype == "float32" and run([x32], g, [xv]).dtype == np.float32
    xi = T.itensor4()
    xiv = np.arange(32, dtype="int32").reshape(1, 2, 4, 4)
    got = run([xi], pool_2d(xi, (2, 2), ignore_border=True), [xiv])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, loop_pool(xiv, (2, 2)))
    got = run([xi], pool_2d(xi, (3, 3), ignore_border=False, pad=(0, 0), mode="sum"), [xiv])
    np.testing.assert_array_equal(got, loop_pool(xiv, (3, 3), False, mode="sum"))


# ------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("ws,st,ignore_border,pad", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_grad_matches_loop(ws, st, ignore_border, pad, mode):
    xv = distinct((2, 2, 7, 6), seed=4)
    gzv = np.random.default_rng(5).standard_normal(loop_pool(xv, ws, ignore_border, st, pad, mode).shape)
    x, gz = T.dtensor4("x"), T.dtensor4("gz")
    out = pool_2d(x, ws=ws, ignore_border=ignore_border, stride=st, pad=pad, mode=mode)
    got = run([x, gz], T.grad(T.sum(out * gz), x), [xv, gzv])
    np.testing.assert_allclose(got, loop_pool_grad(xv, gzv, ws, ignore_border, st, pad, mode),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ws,st,ignore_border,pad", [c for c in CONFIGS if c[0] != (8, 2)][::2] + [CONFIGS[8]])
@pytest.mark.parametrize("mode", MODES)
def test_verify_grad(ws, st, ignore_border, pad, mode):
    xv = distinct((1, 2, 5, 6), seed=6)
    symcnn.verify_grad(lambda x: pool_2d(x, ws=ws, ignore_border=ignore_border, stride=st, pad=pad, mode=mode),
                       [xv], n_tests=1)


def test_max_grad_ties_go_to_every_maximum():
    xv = np.array([[[[1.0, 1.0, 0.0, 2.0],
                     [1.0, 0.0, 2.0, 2.0],
                     [3.0, 3.0, 5.0, 4.0],
                     [3.0, 3.0, 4.0, 4.0]]]])
    x = T.dtensor4()
    g = run([x], T.grad(T.sum(pool_2d(x, (2, 2), ignore_border=True) * np.array([[[[1.0, 2.0], [3.0, 4.0]]]])),
                        x), [xv])
    np.testing.assert_array_equal(g[0, 0], [[1, 1, 0, 2],
                                            [1, 0, 2, 2],
                                            [3, 3, 4, 0],
                                            [3, 3, 0, 0]])
    # overlapping windows (stride 1): each window sends its gradient to all of its maxima
    ones = np.ones((1, 1, 4, 4))
    got = run([x], T.grad(T.sum(pool_2d(x, (2, 2), ignore_border=True, stride=(1, 1))), x), [ones])
    np.testing.assert_array_equal(got[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    tied = np.round(np.random.default_rng(7).standard_normal((2, 3, 6, 7)))  # many ties
    gzv = np.random.default_rng(8).standard_normal((2, 3, 5, 3))
    gz = T.dtensor4()
    got = run([x, gz], T.grad(T.sum(pool_2d(x, (2, 3), ignore_border=False, stride=(1, 2)) * gz), x), [tied, gzv])
    np.testing.assert_allclose(got, loop_pool_grad(tied, gzv, (2, 3), False, (1, 2)), rtol=1e-12)


def test_max_grad_does_not_leak_non_finite_gradients():
    # an infinite output gradient reaches only its window's maximum, the rest stay exactly 0
    xv = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    x, gz = T.dtensor4(), T.dtensor4()
    for ws, st in [((2, 2), None), ((2, 1), (1, 1))]:
        out = pool_2d(x, ws, ignore_border=True, stride=st)
        gzv = np.full(loop_pool(xv, ws, True, st).shape, np.inf)
        got = run([x, gz], T.grad(T.sum(out * gz), x), [xv, gzv])
        np.testing.assert_array_equal(got, loop_pool_grad(xv, gzv, ws, True, st))
        assert not np.isnan(got).any()


def test_max_grad_reuses_the_forward_output():
    x = T.dtensor4()
    z = pool_2d(x, (2, 2), ignore_border=True)
    g = T.grad(T.sum(z), x)
    assert isinstance(g.owner.op, MaxPoolGrad) and g.owner.inputs[1] is z


def test_max_pool_grad_op_and_its_gradient():
    """MaxPoolGrad(x, maxout, gz): linear in gz; its gradient w.r.t. gz is MaxPoolGradGrad,
    w.r.t. x (also through maxout) zero."""
    for ws, st, ib, pad in [((2, 2), None, True, (0, 0)), ((3, 2), (1, 2), False, (0, 0)),
                            ((3, 3), (2, 2), True, (1, 1))]:
        op = MaxPoolGrad(ws, ib, st, pad)
        pool_op = Pool(ws, ib, st, pad, "max")
        xv = distinct((2, 2, 6, 5), seed=9)
        gzv = np.random.default_rng(10).standard_normal(loop_pool(xv, ws, ib, st, pad).shape)
        x, gz = T.dtensor4("x"), T.dtensor4("gz")
        got = run([x, gz], op(x, pool_op(x), gz), [xv, gzv])
        np.testing.assert_allclose(got, loop_pool_grad(xv, gzv, ws, ib, st, pad), rtol=1e-12)
        symcnn.verify_grad(lambda a, b: op(a, pool_op(a), b), [xv[:1], gzv[:1]], n_tests=1)
        assert_op_contract(lambda a, b: op(a, pool_op(a), b), [xv, gzv])


def test_max_pool_grad_grad_op():
    """MaxPoolGradGrad routes ggx back through the maxima (summing over ties) -- the transpose
    of MaxPoolGrad -- and is itself differentiable."""
    for ws, st, ib, pad in [((2, 2), None, True, (0, 0)), ((2, 3), (1, 2), False, (0, 0)),
                            ((3, 3), (2, 2), True, (1, 2))]:
        op = MaxPoolGradGrad(ws, ib, st, pad)
        pool_op = Pool(ws, ib, st, pad, "max")
        tied = np.round(np.random.default_rng(11).standard_normal((2, 2, 6, 7)))
        zv = loop_pool(tied, ws, ib, st, pad)
        ggxv = np.random.default_rng(12).standard_normal(tied.shape)
        x, ggx = T.dtensor4("x"), T.dtensor4("ggx")
        got = run([x, ggx], op(x, pool_op(x), ggx), [tied, ggxv])
        # transpose check: <MaxPoolGrad(gz), ggx> == <gz, MaxPoolGradGrad(ggx)>
        gzv = np.random.default_rng(13).standard_normal(zv.shape)
        lhs = np.sum(loop_pool_grad(tied, gzv, ws, ib, st, pad) * ggxv)
        assert np.isclose(lhs, np.sum(gzv * got), rtol=1e-12)
        xv = distinct((1, 2, 6, 7), seed=14)
        symcnn.verify_grad(lambda a, b: op(a, pool_op(a), b), [xv, ggxv[:1]], n_tests=1)
        assert_op_contract(lambda a, b: op(a, pool_op(a), b), [xv, ggxv[:1]])


@pytest.mark.parametrize("mode", ["sum", "average_inc_pad", "average_exc_pad"])
def test_average_pool_grad_op_and_its_gradient(mode):
    for ws, st, ib, pad in [((2, 2), None, True, (0, 0)), ((3, 2), (1, 2), False, (0, 0)),
                            ((3, 3), (2, 2), True, (1, 1))]:
        op = AveragePoolGrad(ws, ib, st, pad, mode)
        xv = np.random.default_rng(15).standard_normal((2, 2, 6, 5))
        gzv = np.random.default_rng(16).standard_normal(loop_pool(xv, ws, ib, st, pad, mode).shape)
        x, gz = T.dtensor4("x"), T.dtensor4("gz")
        got = run([x, gz], op(x, gz), [xv, gzv])
        np.testing.assert_allclose(got, loop_pool_grad(xv, gzv, ws, ib, st, pad, mode), rtol=1e-12)
        symcnn.verify_grad(lambda a, b: op(a, b), [xv[:1], gzv[:1]], n_tests=1)
        assert_op_contract(lambda a, b: op(a, b), [xv, gzv])


def test_second_order_through_pooling():
    xv = distinct((1, 2, 5, 5), seed=17)
    wv = np.random.default_rng(18).standard_normal((1, 2, 5, 5))

    def f(x, w):
        z = pool_2d(x * w, (2, 2), ignore_border=False, stride=(1, 2))
        return T.grad(T.sum(z * z), w)

    symcnn.verify_grad(f, [xv, wv], n_tests=1)


# ------------------------------------------------------------------------------- static shapes
def test_static_shape_inference():
    x = T.tensor4("x", shape=(500, 20, 24, 24))
    assert pool_2d(x, (2, 2), ignore_border=True).type.shape == (500, 20, 12, 12)
    x = T.tensor4("x", shape=(None, 3, 7, 6))
    assert pool_2d(x, (2, 2), ignore_border=True).type.shape == (None, 3, 3, 3)
    assert pool_2d(x, (2, 2), ignore_border=False).type.shape == (None, 3, 4, 3)
    assert pool_2d(x, (3, 3), ignore_border=False, stride=(1, 2)).type.shape == (None, 3, 5, 3)
    assert pool_2d(x, (3, 3), ignore_border=True, stride=(2, 2), pad=(1, 1)).type.shape == (None, 3, 4, 3)
    assert pool_2d(T.tensor4(), (2, 2), ignore_border=True).type.shape == (None,) * 4
    assert pool_2d(T.tensor3("t", shape=(5, 8, None)), (2, 2), ignore_border=True).type.shape == (5, 4, None)
    assert Pool((3, 3), False, (1, 1))._pooled_shape((0, 0)) == (0, 0)  # an empty image has no windows
    for h in range(1, 12):
        for ws, st, ib, pad in [((3, 3), (1, 1), False, (0, 0)), ((3, 3), (2, 2), False, (0, 0)),
                                ((2, 2), (3, 3), False, (0, 0)), ((3, 3), (2, 2), True, (1, 1))]:
            got = Pool(ws, ib, st, pad)._pooled_shape((h, h))
            assert got == (ref_out_len(h, 3 if ws == (3, 3) else 2, st[0], pad[0], ib),) * 2


@pytest.mark.parametrize("ws,st,ignore_border,pad", CONFIGS[:10])
def test_op_contract_infer_shape(ws, st, ignore_border, pad):
    xv = np.random.default_rng(19).standard_normal((2, 3, 7, 6))
    for static in (False, True):
        assert_op_contract(lambda x: pool_2d(x, ws=ws, ignore_border=ignore_border, stride=st, pad=pad), [xv],
                           static=static)


def test_grad_op_static_shape_mismatch_errors():
    x = T.tensor4("x", shape=(None, 3, 8, 8))
    op = MaxPoolGrad((2, 2), True)
    bad_gz = T.tensor4("badgz", shape=(None, 3, 5, 4))
    with pytest.raises(ValueError, match=r"badgz.*\(\?, 3, 4, 4\)"):
        op(x, pool_2d(x, (2, 2), ignore_border=True), bad_gz)
    with pytest.raises(ValueError, match="badgz"):
        AveragePoolGrad((2, 2), True, mode="sum")(x, bad_gz)
    with pytest.raises(TypeError, match="4-d"):
        op(x, pool_2d(x, (2, 2)), T.tensor3())


def test_runtime_shape_mismatch_errors():
    x, gz = T.dtensor4("xr"), T.dtensor4("gzr")
    f = symcnn.function([x, gz], MaxPoolGrad((2, 2), True)(x, pool_2d(x, (2, 2)), gz))
    with pytest.raises(ValueError) as e:
        f(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 2)))
    msg = str(e.value)
    assert "gzr" in msg and "(1, 1, 3, 2)" in msg and "(1, 1, 2, 2)" in msg
    g = symcnn.function([x, gz], AveragePoolGrad((2, 2), True, mode="sum")(x, gz))
    with pytest.raises(ValueError, match=r"gzr.*\(1, 1, 3, 2\).*\(1, 1, 2, 2\)"):
        g(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 2)))
    # a value contradicting a static shape
    xs = T.tensor4("xs", dtype="float64", shape=(None, None, 4, 4))
    z = T.dtensor4("zs")
    h = symcnn.function([xs, z, gz], MaxPoolGrad((2, 2), True)(xs, z, gz))
    with pytest.raises(ValueError, match=r"zs.*\(1, 1, 3, 3\)"):
        h(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2)))


# ------------------------------------------------------------------------------- arguments
def test_aliases():
    xv = np.random.default_rng(20).standard_normal((2, 2, 7, 7))
    x = T.dtensor4()
    want = loop_pool(xv, (3, 2), True, (2, 1), (1, 1), "average_exc_pad")
    for out in [pool_2d(x, ws=(3, 2), ignore_border=True, stride=(2, 1), pad=(1, 1), mode="average_exc_pad"),
                pool_2d(x, ds=(3, 2), ignore_border=True, st=(2, 1), padding=(1, 1), mode="average_exc_pad"),
                pool_2d(x, (3, 2), True, (2, 1), (1, 1), "average_exc_pad"),
                downsample.max_pool_2d(x, (3, 2), True, (2, 1), (1, 1), "average_exc_pad"),
                downsample.max_pool_2d(x, ds=(3, 2), ignore_border=True, st=(2, 1), padding=(1, 1),
                                       mode="average_exc_pad")]:
        np.testing.assert_allclose(run([x], out, [xv]), want, rtol=1e-12)
    stride_default = pool_2d(x, (2, 2), ignore_border=True).owner.op
    assert stride_default == Pool((2, 2), True, (2, 2), (0, 0), "max")  # stride defaults to ws
    with pytest.warns(UserWarning, match="ignore_border"):
        assert downsample.max_pool_2d(x, (2, 2)).owner.op.ignore_border is False


@pytest.mark.parametrize("mode", ["reference", "native"])
def test_ignore_border_default_warns_and_keeps_partial_windows(mode):
    """Theano 1.0: pool_2d without ignore_border warns and uses False, so a 5x5 image pooled
    2x2 gives 3x3 (the last row/column are partial windows)."""
    x = T.dtensor4()
    with pytest.warns(UserWarning, match="ignore_border"):
        out = pool_2d(x, (2, 2))
    assert out.owner.op.ignore_border is False
    xv = np.arange(25.0).reshape(1, 1, 5, 5)
    got = symcnn.function([x], out, mode=mode)(xv)
    np.testing.assert_array_equal(got[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool_2d(x, (2, 2), ignore_border=True)  # an explicit choice does not warn


@pytest.mark.filterwarnings("ignore:pool_2d\\(\\) was called without ignore_border")
def test_bad_arguments():
    x = T.dtensor4()
    with pytest.raises(NotImplementedError, match="ignore_border=True"):
        pool_2d(x, (3, 3), ignore_border=False, pad=(1, 1))
    with pytest.raises(ValueError, match="smaller than the window"):
        pool_2d(x, (2, 2), ignore_border=True, pad=(2, 0))
    with pytest.raises(ValueError, match="mode"):
        pool_2d(x, (2, 2), mode="average")
    with pytest.raises(NotImplementedError, match="at least 2"):
        pool_2d(T.dvector(), (2, 2))
    with pytest.raises(ValueError, match="ws"):
        pool_2d(x)
    with pytest.raises(ValueError, match="ds"):
        pool_2d(x, ws=(2, 2), ds=(2, 2))
    with pytest.raises(ValueError, match="st"):
        pool_2d(x, (2, 2), stride=(1, 1), st=(1, 1))
    with pytest.raises(ValueError, match="padding"):
        pool_2d(x, (2, 2), pad=(1, 1), padding=(1, 1))
    with pytest.raises(TypeError, match="pair"):
        pool_2d(x, 2)
    with pytest.raises(TypeError, match="pair"):
        pool_2d(x, (2, 2, 2))
    with pytest.raises(ValueError, match="stride"):
        pool_2d(x, (2, 2), stride=(0, 1))
    with pytest.raises(ValueError, match="ws"):
        pool_2d(x, (0, 2))
    with pytest.raises(ValueError, match="pad"):
        pool_2d(x, (2, 2), pad=(-1, 0))
    with pytest.raises(TypeError, match="ignore_border"):
        Pool((2, 2), ignore_border="yes")
    with pytest.raises(ValueError, match="MaxPoolGrad"):
        AveragePoolGrad((2, 2), mode="max")


def test_ops_props_equality():
    assert Pool((2, 2), True) == Pool([2, 2], True, (2, 2), (0, 0), "max")
    assert Pool((2, 2), True) != Pool((2, 2), False)
    assert Pool((2, 2), True) != Pool((2, 2), True, mode="sum")
    assert Pool((2, 2), True) != Pool((2, 2), True, stride=(1, 1))
    assert hash(MaxPoolGrad((2, 2))) == hash(MaxPoolGrad((2, 2), True, (2, 2)))
    assert set(Pool.__props__) == {"ws", "ignore_border", "stride", "pad", "mode"}


def test_max_pool_2d_same_size():
    xv = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 2.0, 1.0]]]])
    x = T.dtensor4()
    got = run([x], pool.max_pool_2d_same_size(x, (2, 2)), [xv])
    np.testing.assert_array_equal(got, [[[[0, 5, 2, 0], [0, 0, 2, 0]]]])
