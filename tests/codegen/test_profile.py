"""mode='profile': the native code plus a monotonic-clock timer around every kernel; fn.profile()."""
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.nnet.conv import conv2d


def _here():
    return sys._getframe(1).f_lineno


def _mlp(mode, seed=0):
    rng = np.random.RandomState(seed)
    x, y = T.matrix("x"), T.ivector("y")
    W1 = theano.shared(rng.randn(6, 8).astype("float32") * 0.3, name="W1")
    b1 = theano.shared(np.zeros(8, "float32"), name="b1")
    W2 = theano.shared(rng.randn(8, 3).astype("float32") * 0.3, name="W2")
    h = T.tanh(T.dot(x, W1) + b1)
    p = T.nnet.softmax(T.dot(h, W2))
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    params = [W1, b1, W2]
    grads = T.grad(cost, params)
    f = theano.function([x, y], cost, updates=[(q, q - 0.1 * g) for q, g in zip(params, grads)], mode=mode)
    return f, params


def _data(seed=1):
    rng = np.random.RandomState(seed)
    return rng.randn(5, 6).astype("float32"), rng.randint(0, 3, 5).astype("int32")


def test_mlp_train_step_same_as_native_and_counts_every_kernel():
    xv, yv = _data()
    fp, pp = _mlp("profile")
    fn, pn = _mlp("native")
    assert [str(k) for k in fp.kernels] == [str(k) for k in fn.kernels]
    for _ in range(4):
        np.testing.assert_allclose(fp(xv, yv), fn(xv, yv), rtol=1e-6, atol=1e-7)
    for a, b in zip(pp, pn):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-6, atol=1e-7)
    rep = fp.profile()
    assert len(rep) == len(fp.kernels)
    assert [r.index for r in rep] == list(range(len(fp.kernels)))
    for r, k in zip(rep, fp.kernels):
        assert r.name.startswith(k.name)
        assert r.calls == 4
        assert r.total_ms > 0 and r.mean_ms > 0
        assert r.bytes > 0
    assert abs(sum(r.share for r in rep) - 1) < 1e-9
    assert rep.step_ms > 0
    text = str(rep)
    assert "step:" in text and "GFLOP/s" in text and f"{rep.peak_gflops:.0f} GFLOP/s ceiling" in text
    assert "ceiling: " in text and "GHz" in text and "float32 lanes" in text
    assert "test_profile.py:" in text  # user's file:line of the kernels


def test_dot_flops_exact():
    m, k, n = 7, 11, 5
    a, b = T.matrix("a"), T.matrix("b")
    z = T.dot(a, b); line = _here()  # noqa: E702
    f = theano.function([a, b], z, mode="profile")
    av, bv = np.ones((m, k), "float32"), np.ones((k, n), "float32")
    for _ in range(3):
        np.testing.assert_allclose(f(av, bv), av @ bv)
    rep = f.profile()
    dots = [r for r in rep if "Dot" in r.name]
    assert len(dots) == 1
    r = dots[0]
    assert r.flops == 2 * m * n * k
    assert r.calls == 3
    assert r.where == f"{__file__}:{line}"
    assert r.bytes == 4 * (m * k + k * n + m * n)
    assert r.gflops > 0 and r.gbps > 0
    assert rep.step_gflop == pytest.approx(2 * m * n * k / 1e9)


def test_conv_layer_same_as_native_and_conv_flops_exact():
    N, C, H, W, K, kh, kw = 3, 2, 9, 8, 4, 3, 2
    OH, OW = H - kh + 1, W - kw + 1
    x, w = T.tensor4("x"), T.tensor4("w")
    y = conv2d(x, w)
    cost = (y * y).sum()
    gx, gw = T.grad(cost, [x, w])
    rng = np.random.RandomState(0)
    xv, wv = rng.randn(N, C, H, W).astype("float32"), rng.randn(K, C, kh, kw).astype("float32")
    fp = theano.function([x, w], [y, gx, gw], mode="profile")
    fn = theano.function([x, w], [y, gx, gw], mode="native")
    for a, b in zip(fp(xv, wv), fn(xv, wv)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    fp(xv, wv)
    rep = fp.profile()
    assert len(rep) == len(fp.kernels)
    conv = 2 * N * K * C * kh * kw * OH * OW
    convs = {r.name.split("{")[0]: r for r in rep if r.name.startswith("Conv2d")}
    assert set(convs) == {"Conv2d", "Conv2dGradInputs", "Conv2dGradWeights"}
    for r in convs.values():
        assert r.flops == conv and r.calls == 2 and r.mean_ms > 0


def test_reset_clears_the_counters():
    a, b = T.matrix("a"), T.matrix("b")
    f = theano.function([a, b], T.dot(a, b) + 1, mode="profile")
    av = np.ones((4, 4), "float32")
    f(av, av)
    f(av, av)
    before = f.profile(reset=True)
    assert all(r.calls == 2 for r in before)
    after = f.profile()
    assert all(r.calls == 0 and r.total_ms == 0 for r in after)
    f(av, av)
    assert all(r.calls == 1 for r in f.profile())


def test_peak_parameter():
    a = T.matrix("a")
    f = theano.function([a], T.dot(a, a), mode="profile")
    f(np.ones((32, 32), "float32"))
    r1, r2 = f.profile(), f.profile(peak_gflops=46.0)
    assert r2.peak_gflops == 46.0 and r2.peak_method == "given"
    assert r2.peak_share == pytest.approx(r1.peak_share * r1.peak_gflops / 46.0)


@pytest.mark.parametrize("level,lanes", [("x86-64", 4), ("x86-64-v3", 8), ("x86-64-v4", 16)])
def test_ceiling_follows_the_target(level, lanes, monkeypatch):
    """The default ceiling is lanes x FMA units x 2 x clock x cores of the function's target: an AVX2
    function does not claim an AVX-512 ceiling."""
    import platform
    from codegen import ceiling as C
    from codegen import target as targets
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 levels")
    monkeypatch.setattr(theano.config, "target_cpu", level)
    if not targets.current().host:
        pytest.skip(f"this CPU cannot run {level} code")
    a = T.matrix("a")
    f = theano.function([a], T.dot(a, a), mode="profile")
    f(np.ones((32, 32), "float32"))
    rep = f.profile()
    ghz, _ = C.clock_ghz()
    ghz = ghz or C.DEFAULT_GHZ
    units = 1 if level == "x86-64" else 2
    assert rep.peak_gflops == pytest.approx(lanes * units * 2 * ghz * C.cores(f.runner.pool_threads))
    assert f"{lanes} float32 lanes" in rep.peak_method and "GHz" in str(rep)


def test_ceiling_of_half_width_pipes():
    """Zen 1 issues a 256-bit FMA as two 128-bit halves: its AVX2 ceiling counts one FMA unit, half
    that of a CPU with full-width pipes (Haswell) at the same clock."""
    import platform
    from codegen import ceiling as C
    from codegen import target as targets
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 CPU names")
    zen1, haswell = targets.resolve("znver1"), targets.resolve("haswell")
    assert zen1.lanes("float32") == haswell.lanes("float32") == 8 and zen1.fma and haswell.fma
    a, b = C.ceiling(zen1, 1), C.ceiling(haswell, 1)
    assert a.gflops == pytest.approx(b.gflops / 2)
    assert "1 FMA unit x 2" in a.method and "half the vector width" in a.method and "2 FMA units" in b.method


@pytest.mark.parametrize("mode", ["native", "reference"])
def test_other_modes_raise(mode):
    a = T.matrix("a")
    f = theano.function([a], a * 2, mode=mode)
    with pytest.raises(ValueError, match="mode='profile'"):
        f.profile()


def test_ops_say_their_flops():
    """The profiler asks the op (Op.flops); ops that do not count say None."""
    from tests.helpers import conv_act_ops
    a, b = T.matrix("a"), T.matrix("b")
    ew = (T.exp(a) * b + 1).owner.op
    assert ew.flops([(3, 4), (3, 4)], [(3, 4)]) == 12
    assert T.sum(a).owner.op.flops([(3, 4)], [()]) is None
    x, w = (3, 2, 9, 8), (4, 2, 3, 2)
    conv = 2 * 3 * 4 * 2 * 3 * 2 * 7 * 7
    fwd, bwd_gx, bwd = conv_act_ops("tanh")
    assert fwd.flops([x, w, (4,)], []) == conv
    assert bwd.flops([x, w], []) == conv
    assert bwd_gx.flops([x, w], []) == 2 * conv
