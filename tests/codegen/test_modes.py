"""Modes: native (default), reference, debug; SYMCNN_MODE; fn.dump_llvm()."""
import os
import subprocess
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.mode import Mode


def _graph():
    x = T.matrix("x")
    W = theano.shared(np.arange(12, dtype="float32").reshape(4, 3) / 10, name="W")
    cost = T.tanh(T.dot(x, W)).sum()
    return x, W, cost


def test_native_and_reference_agree_with_updates():
    xv = np.random.RandomState(0).rand(5, 4).astype("float32")
    results = {}
    for mode in ("native", "reference"):
        x, W, cost = _graph()
        g = T.grad(cost, W)
        f = theano.function([x], cost, updates=[(W, W - 0.1 * g)], mode=mode)
        costs = [float(f(xv)) for _ in range(3)]
        results[mode] = (costs, W.get_value())
    np.testing.assert_allclose(results["native"][0], results["reference"][0], rtol=1e-5)
    np.testing.assert_allclose(results["native"][1], results["reference"][1], rtol=1e-5)
    assert results["native"][0][0] != results["native"][0][2]  # the updates took effect


def test_dump_llvm_returns_module_text():
    x, W, cost = _graph()
    f = theano.function([x], cost, mode="native")
    ir = f.dump_llvm()
    assert "define i32 @\"symcnn_entry\"" in ir or "define i32 @symcnn_entry" in ir
    assert "tanh" in ir
    fr = theano.function([x], cost, mode="reference")
    with pytest.raises(ValueError, match="reference"):
        fr.dump_llvm()


def test_mode_object_and_unknown_mode():
    x, W, cost = _graph()
    f = theano.function([x], cost, mode=Mode(linker="reference"))
    assert f.mode.linker == "reference"
    with pytest.raises(ValueError, match="unknown mode"):
        theano.function([x], cost, mode="no-such-mode")


def test_debug_mode_names_first_differing_node(monkeypatch):
    from codegen import DebugModeError
    from codegen.kernels import elemwise as kel
    import symcnn.scalar as ts
    x = T.vector("x")
    y = T.exp(x) * 2  # the line the error must name
    line = sys._getframe().f_lineno - 1
    f_ok = theano.function([x], y, mode="debug")
    np.testing.assert_allclose(f_ok(np.ones(3, dtype="float32")), 2 * np.e, rtol=1e-6)

    # Miscompile exp on purpose (exp(x) + 1): debug mode must catch it at the exp node.
    original = kel.SCALAR[ts.Exp]

    def wrong_exp(ctx, op, v, d, out):
        val, dt = original(ctx, op, v, d, out)
        return ctx.b.fadd(val, kel.U.const(dt, 1.0)), dt

    monkeypatch.setitem(kel.SCALAR, ts.Exp, wrong_exp)
    x2 = T.vector("x2")
    y2 = T.exp(x2) * 2
    line2 = sys._getframe().f_lineno - 1
    f_bad = theano.function([x2], y2, mode="debug")
    with pytest.raises(DebugModeError) as err:
        f_bad(np.ones(3, dtype="float32"))
    msg = str(err.value)
    assert msg.startswith(f"{__file__}:{line2}:"), msg
    assert "exp" in msg and "max abs difference" in msg
    assert line != line2


def test_symcnn_mode_environment_variable_sets_default():
    code = ("import symcnn, symcnn.tensor as T; x = T.vector('x'); "
            "f = symcnn.function([x], x * 2); print(symcnn.config.mode, type(f.runner).__name__)")
    env = dict(os.environ, SYMCNN_MODE="reference", PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["reference", "ReferenceRunner"]
    env["SYMCNN_MODE"] = "debug"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["debug", "DebugRunner"]


def test_native_only_methods_live_on_the_runner():
    x, W, cost = _graph()
    f = theano.function([x], cost, mode="native")
    f(np.ones((2, 4), dtype="float32"))
    assert [str(k) for k in f.runner.kernels] == [str(k) for k in f.kernels] and f.kernels
    assert f.runner.memory_report() == f.memory_report()
    assert f.runner.dump_llvm() == f.dump_llvm()
    p = theano.function([x], cost, mode="profile")
    p(np.ones((2, 4), dtype="float32"))
    assert [r.name for r in p.runner.profile()] == [r.name for r in p.profile()]
    r = theano.function([x], cost, mode="reference")
    for what, call in (("kernels", lambda: r.kernels), ("memory_report", r.memory_report)):
        with pytest.raises(ValueError, match=f"mode 'reference'; {what} needs mode='native'"):
            call()
    with pytest.raises(ValueError, match="profile\\(\\) needs a function compiled with mode='profile'"):
        f.profile()
