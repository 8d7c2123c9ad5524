"""mode='nanguard': native code that checks every node's float outputs for NaN/Inf and
raises at the first bad node (user's line, op, output, element, which input was bad)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from codegen import NanGuardError
from codegen.build import build_module


def _here():
    return sys._getframe(1).f_lineno


def _raises(f, *args):
    with pytest.raises(FloatingPointError) as info:
        f(*args)
    assert isinstance(info.value, NanGuardError)
    return str(info.value)


def test_log_zero_names_the_log_node_and_its_line():
    x = T.vector("x")
    y = T.log(x); line = _here()  # noqa: E702
    z = (y * 2).sum()
    f = theano.function([x], z, mode="nanguard")
    assert f(np.array([1, 2, 3], dtype="float32")) == pytest.approx(2 * np.log(6), rel=1e-6)
    msg = _raises(f, np.array([1, 0, 3], dtype="float32"))
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "log" in msg and "-Inf" in msg and "flat element 1" in msg
    assert "'log.0'" in msg or "output 0" in msg
    assert "all inputs finite" in msg
    msg = _raises(f, np.array([1, -1, 3], dtype="float32"))
    assert msg.startswith(f"{__file__}:{line}:") and "NaN" in msg


def test_exp_overflow():
    x = T.vector("x")
    h = x * 3
    e = T.exp(h); line = _here()  # noqa: E702
    f = theano.function([x], T.tanh(e), mode="nanguard")
    msg = _raises(f, np.array([0, 1, 40], dtype="float32"))  # exp(120) overflows float32
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "exp" in msg and "+Inf" in msg and "flat element 2" in msg and "all inputs finite" in msg


def test_zero_times_inf_from_a_graph_input_names_the_input():
    x, y = T.vectors("x", "y") if hasattr(T, "vectors") else (T.vector("x"), T.vector("y"))
    p = x * y; line = _here()  # noqa: E702
    f = theano.function([x, y], p.sum(), mode="nanguard")
    msg = _raises(f, np.array([1, 0], dtype="float32"), np.array([2, np.inf], dtype="float32"))
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "NaN" in msg and "flat element 1" in msg
    assert "input 1 'y'" in msg and "graph input" in msg and "+Inf" in msg
    assert "input 0" not in msg  # x is finite


def test_nan_in_graph_input_is_reported_at_first_reader():
    x = T.matrix("x")
    W = theano.shared(np.ones((3, 2), dtype="float32"), name="W")
    a = T.dot(x, W); line = _here()  # noqa: E702
    f = theano.function([x], T.tanh(a), mode="nanguard")
    xv = np.ones((4, 3), dtype="float32")
    xv[2, 1] = np.nan
    msg = _raises(f, xv)
    assert msg.startswith(f"{__file__}:{line}:"), msg
    assert "input 0 'x'" in msg and "holds NaN at element 7" in msg
    assert "flat element 4" in msg  # row 2 of the (4, 2) product


def test_strided_view_of_a_graph_input_is_checked_in_c_order():
    x = T.matrix("x")
    t = x.T; line = _here()  # noqa: E702
    f = theano.function([x], t * 2, mode="nanguard")
    xv = np.zeros((2, 3), dtype="float32")
    xv[0, 1] = -np.inf
    msg = _raises(f, xv)
    assert msg.startswith(f"{__file__}:{line}:"), msg
    # t[1, 0] is the bad element: flat index 1 * 2 + 0 in the (3, 2) view
    assert "-Inf" in msg and "flat element 2" in msg and "graph input" in msg


def test_constant_holding_inf_is_named():
    x = T.vector("x")
    c = T.constant(np.array([np.inf, 1.0], dtype="float32"))
    p = x * c; line = _here()  # noqa: E702
    f = theano.function([x], p, mode="nanguard")
    msg = _raises(f, np.array([0, 1], dtype="float32"))
    assert msg.startswith(f"{__file__}:{line}:") and "a constant" in msg and "NaN" in msg


def _mlp(seed=0, n_in=20, n_hidden=16, n_out=5):
    rng = np.random.RandomState(seed)
    x = T.matrix("x")
    y = T.ivector("y")
    W1 = theano.shared((rng.randn(n_in, n_hidden) * 0.3).astype("float32"), name="W1")
    b1 = theano.shared(np.zeros(n_hidden, dtype="float32"), name="b1")
    W2 = theano.shared((rng.randn(n_hidden, n_out) * 0.3).astype("float32"), name="W2")
    b2 = theano.shared(np.zeros(n_out, dtype="float32"), name="b2")
    h = T.tanh(T.dot(x, W1) + b1)
    p = T.nnet.softmax(T.dot(h, W2) + b2)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    params = [W1, b1, W2, b2]
    grads = T.grad(cost, params)
    updates = [(w, w - 0.1 * g) for w, g in zip(params, grads)]
    return x, y, params, cost, p, updates


def test_clean_graph_gives_results_identical_to_native():
    rng = np.random.RandomState(1)
    xv = rng.randn(30, 20).astype("float32")
    yv = rng.randint(0, 5, 30).astype("int32")
    results = {}
    for mode in ("native", "nanguard"):
        x, y, params, cost, p, updates = _mlp()
        f = theano.function([x, y], [cost, p, T.argmax(p, axis=1)], updates=updates, mode=mode)
        outs = [f(xv, yv) for _ in range(3)]
        results[mode] = (outs, [w.get_value() for w in params])
    for (a, b) in zip(results["native"][0], results["nanguard"][0]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    for u, v in zip(results["native"][1], results["nanguard"][1]):
        np.testing.assert_array_equal(u, v)


def test_no_update_is_committed_when_the_guard_trips():
    x, y, params, cost, p, updates = _mlp()
    f = theano.function([x, y], cost, updates=updates, mode="nanguard")
    rng = np.random.RandomState(2)
    xv = rng.randn(10, 20).astype("float32")
    yv = rng.randint(0, 5, 10).astype("int32")
    f(xv, yv)  # one clean step commits
    before = [w.get_value().copy() for w in params]
    bad = xv.copy()
    bad[3, 4] = np.nan
    msg = _raises(f, bad, yv)
    assert "input 0 'x'" in msg and "graph input" in msg
    for w, old in zip(params, before):
        np.testing.assert_array_equal(w.get_value(), old)
    f(xv, yv)  # still usable afterwards
    assert not np.array_equal(params[0].get_value(), before[0])


def test_update_expression_that_overflows_is_caught_before_commit():
    W = theano.shared(np.array([1.0, 2.0], dtype="float32"), name="W")
    s = T.scalar("s")
    new = W * s; line = _here()  # noqa: E702
    f = theano.function([s], W.sum(), updates=[(W, new)], mode="nanguard")
    f(np.float32(1e20))  # 1e20, 2e20: finite
    msg = _raises(f, np.float32(1e20))  # 1e40 overflows float32
    assert msg.startswith(f"{__file__}:{line}:") and "+Inf" in msg
    np.testing.assert_array_equal(W.get_value(), np.array([1e20, 2e20], dtype="float32"))


def test_integer_outputs_are_not_checked_and_native_ir_is_unchanged():
    x = T.vector("x")
    f = theano.function([x], T.argmax(x, axis=0), mode="nanguard")
    assert int(f(np.array([1, np.nan, 2], dtype="float32"))) == 1  # int output: not checked
    # guard_nan off (the default) emits exactly the native module
    y = T.exp(x)
    fn = theano.function([x], y, mode="native")
    fg = fn.fgraph
    assert build_module(fg, [], guard_nan=False).ir_text == build_module(fg, []).ir_text
    guarded = build_module(fg, [], guard_nan=True).ir_text
    assert "nf0.head" in guarded and "nf0.head" not in fn.dump_llvm()


def test_symcnn_mode_environment_variable_selects_nanguard():
    code = ("import symcnn, symcnn.tensor as T; x = T.vector('x'); "
            "f = symcnn.function([x], T.log(x)); print(symcnn.config.mode, type(f.runner).__name__)\n"
            "import numpy as np\n"
            "try:\n    f(np.zeros(2, dtype='float32'))\nexcept FloatingPointError as e:\n    print('raised')")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, SYMCNN_MODE="nanguard", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["nanguard", "NanGuardRunner", "raised"]
