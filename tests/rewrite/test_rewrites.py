"""Each rewrite fires on its pattern, and the rewritten graph compiled natively gives
what the unrewritten graph gives in the reference mode."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.rewrite import registered, rewrite_graph
from symcnn.tensor.composite import Composite
from symcnn.tensor.elemwise import Elemwise

from tests.helpers import check_native_vs_reference, rewritten


def fired(fn):
    return {r.rewrite for r in fn.rewrite_log}


def ops(fn):
    return [str(n.op) for n in fn.fgraph.toposort()]


RNG = np.random.RandomState(0)
_Y = T.constant(np.array([4, 0, 2], "int32"))  # labels for the stabilize cases (3 rows of X)
X = RNG.rand(3, 5).astype("float32") + 0.5
V = RNG.rand(5).astype("float32")

CASES = {
    "merge": lambda x, v: [T.exp(x).sum() + T.exp(x).sum()],
    "constant_folding": lambda x, v: [x * (T.constant(2.0) * 3.0)],
    "identity_arithmetic": lambda x, v: [(x * 1 + 0) / 1 - 0],
    "double_negation": lambda x, v: [-(-x)],
    "pow_specialize": lambda x, v: [x ** 2, (x - v) ** 2.0, T.exp(x) ** 1],
    "cast_of_cast": lambda x, v: [T.cast(T.cast(x, "float64"), "float32") + 1],
    "useless_dimshuffle": lambda x, v: [x.T.T + 1, v.dimshuffle("x", 0).dimshuffle(1) * 2],
    "useless_reshape": lambda x, v: [x.reshape((15,)).reshape((5, 3)) * 2],
    "useless_sum": lambda x, v: [T.sum(v.dimshuffle("x", 0), axis=0) * 2],
    # (a reshape to constant sizes fixes them in its type; more cases: tests/rewrite/test_static_shape.py)
    "static_shape": lambda x, v: [x * T.cast(x.reshape((15,)).shape[0], "float32"),
                                  T.cast(x.reshape((3, 5)).shape, "float32") * v[:2]],
    # (an Elemwise whose shape alone is read stays: it checks its inputs' sizes)
    "shape_from_inputs": lambda x, v: [T.cast(T.exp(x).shape[1], "float32") * T.exp(x).sum(axis=1),
                                       T.cast((x * v).shape[0], "float32")],
    # (x's own sizes stay open)
    "static_shape_slice": lambda x, v: [T.cast(x.dimshuffle(0, "x", 1).shape[1:2], "float32") + v[:1]],
    "useless_fill": lambda x, v: [T.grad(T.sum(T.exp(x)), x)],
    # (x * v's fill keeps x's rows: v alone has none)
    "fill_sink": lambda x, v: [T.grad(T.sum(x * x), x), T.grad(T.sum(x * v), x)],
    "inc_subtensor_sum_to_join": lambda x, v: [T.grad((T.tanh(x[:, 0:2]) * 2 + T.exp(x[:, 3:5])).sum(), x)],
    "subtensor_of_inc_subtensor": lambda x, v: [T.grad((T.exp(x[1:]) * 2).sum(), x)[1:] * 3],
    # more cases: tests/rewrite/test_slice_sums.py
    "drop_gradient_view_ops": lambda x, v: [symcnn.gradient.grad_clip(x, -1.0, 1.0) * 2,
                                            symcnn.gradient.zero_grad(v) + 1],
    "fuse_elemwise": lambda x, v: [T.tanh(x * 2 + v) - T.exp(-x) / (1 + x * x)],
    # more cases: tests/rewrite/test_sum_fusion.py
    "fuse_sum_prologue": lambda x, v: [T.sqr(x - v).sum(axis=1), (T.exp(x) * 2).sum(), (-(x * v)).sum(axis=0)],
    "fuse_elemwise_into_readers": lambda x, v: [((x - v) * 2).sum(axis=1), ((x - v) / 3) * v, (x - v) + 1],
    # more cases: tests/rewrite/test_stabilize.py
    "log_softmax": lambda x, v: [T.log(T.nnet.softmax(x)), T.log(T.nnet.softmax(v))],
    "crossentropy_softmax": lambda x, v: [-T.mean(T.log(T.nnet.softmax(x))[T.arange(_Y.shape[0]), _Y])],
    "crossentropy_softmax_grad": lambda x, v: [T.grad(-T.mean(T.log(T.nnet.softmax(x * 2))[T.arange(_Y.shape[0]),
                                                                                             _Y]), x)],
    # more cases: tests/rewrite/test_gemm_fusion.py
    "fuse_dot_epilogue": lambda x, v: [T.tanh(T.dot(x, x.T) + 1) * 2, T.dot(x, v) - v[:3]],
    "fuse_dot_prologue": lambda x, v: [T.dot(x.T, T.exp(x) * 2), T.dot(x, v * v + 1)],
    # more cases: tests/rewrite/test_convpool.py
    "fuse_conv_epilogue": lambda x, v: [T.grad(T.tanh(T.signal.pool.pool_2d(T.nnet.conv2d(x.reshape((1, 1, 3, 5)), x[:2, :2].reshape(
        (2, 1, 1, 2))), ws=(1, 2), ignore_border=True) + v[:2].dimshuffle("x", 0, "x", "x")).sum(), x)],
    # more cases: tests/rewrite/test_convpool_chain.py
    "move_activation_to_consumers": lambda x, v: [T.grad(T.maximum(T.nnet.conv2d(T.maximum(T.nnet.conv2d(
        x.reshape((1, 1, 3, 5)), x[:2, :2].reshape((2, 1, 1, 2))) + v[:2].dimshuffle("x", 0, "x", "x"), 0),
        x[:2, :4].reshape((2, 2, 1, 2))) + v[2:4].dimshuffle("x", 0, "x", "x"), 0).sum(), x)],
    "absorb_gradient_terms": lambda x, v: [T.grad(T.dot(T.nnet.relu(T.nnet.conv2d(x.reshape((1, 1, 3, 5)), x[:2, :2].reshape(
        (2, 1, 1, 2))) + v[:2].dimshuffle("x", 0, "x", "x"), 0.1).flatten(2), T.concatenate([v] * 5)[:24]).sum(), x)],
    "fold_dact_into_gx": lambda x, v: [T.grad(T.maximum(T.nnet.conv2d(T.maximum(T.nnet.conv2d(
        x.reshape((1, 1, 3, 5)), x[:2, :2].reshape((2, 1, 1, 2))) + v[:2].dimshuffle("x", 0, "x", "x"), 0),
        x[:2, :4].reshape((2, 2, 1, 2))) + v[2:4].dimshuffle("x", 0, "x", "x"), 0).sum(), x)],
    # more cases: tests/rewrite/test_convpool_outputs.py
    "drop_unused_tie_masks": lambda x, v: [T.tanh(T.signal.pool.pool_2d(T.nnet.conv2d(x.reshape((1, 1, 3, 5)), x[:2, :2].reshape(
        (2, 1, 1, 2))), ws=(1, 2), ignore_border=True) + v[:2].dimshuffle("x", 0, "x", "x"))],
    # more cases: tests/rewrite/test_dilated.py
    "dilated_conv_by_phases": lambda x, v: [T.nnet.conv2d(T.ones((2, 32, 18, 17)) * T.arange(17) * x[0, 0],
                                                          T.ones((32, 32, 3, 3)) * x[1, 1] + x[0, 1],
                                                          border_mode="half", filter_dilation=(2, 2))],
    # more cases: tests/rewrite/test_full_conv.py
    "full_conv_as_valid": lambda x, v: [T.nnet.conv2d(T.ones((2, 24, 8, 8)) * T.arange(8) * x[0, 0],
                                                      T.ones((8, 24, 5, 5)) * x[1, 1] + x[0, 1], border_mode="full")],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rewrite_fires_and_preserves_results(name):
    x, v = T.matrix("x"), T.vector("v")
    outs = CASES[name](x, v)
    fn, _ = check_native_vs_reference([x, v], outs, [X, V], rtol=1e-5, atol=1e-6, on_unused_input="ignore")
    assert name in fired(fn), (name, fn.rewrite_log)
    without = rewritten([x, v], outs, Mode("native", excluding=[name]))
    assert name not in fired(without)


def test_every_registered_rewrite_has_a_case():
    # (the scan rewrites' cases: tests/scan_module/test_scan_rewrites.py)
    assert {r.name for r in registered() if not r.fn.__module__.startswith("symcnn.scan_module")} <= set(CASES) | {"fuse"}


def test_reference_mode_does_not_rewrite():
    x = T.matrix("x")
    fn = symcnn.function([x], -(-x), mode="reference")
    assert fn.rewrite_log == [] and ops(fn) == ["neg", "neg"]


def test_fused_chain_is_one_kernel_named_for_its_ops():
    x, v = T.matrix("x"), T.vector("v")
    # (without fuse_dot_epilogue, which would take the chain into the product's kernel)
    fn = symcnn.function([x, v], T.tanh(T.dot(x, x.T) + 1) * 2, mode=Mode("native", excluding=["fuse_dot_epilogue"]),
                         on_unused_input="ignore")
    fused = [n for n in fn.fgraph.toposort() if isinstance(n.op, Elemwise)
             and isinstance(n.op.scalar_op, Composite)]
    assert len(fused) == 1
    assert "add" in str(fused[0].op) and "tanh" in str(fused[0].op) and "mul" in str(fused[0].op)


def test_fusion_caps_inputs():
    from symcnn.rewrite.fusion import MAX_FUSED_INPUTS
    xs = [T.vector(f"x{i}") for i in range(MAX_FUSED_INPUTS + 6)]
    total = xs[0]
    for x in xs[1:]:
        total = total + T.exp(x)
    vals = [RNG.rand(4).astype("float32") for _ in xs]
    fn, _ = check_native_vs_reference(xs, total, vals, rtol=1e-5)
    for n in fn.fgraph.toposort():
        assert len(n.inputs) <= MAX_FUSED_INPUTS


def test_fusion_does_not_recompute_broadcast_values():
    x, v = T.matrix("x"), T.vector("v")
    fn = symcnn.function([x, v], x * T.exp(v), mode="native")
    # exp(v) is broadcast over rows: fusing it would compute exp once per element instead of per column
    assert any(str(n.op) == "exp" for n in fn.fgraph.toposort())


def test_rewrites_keep_the_users_line():
    x = T.matrix("x")
    y = T.tanh(x * 2) + 1
    import sys
    line = sys._getframe().f_lineno - 2
    fn = symcnn.function([x], y, mode="native")
    locs = {r.location for r in fn.rewrite_log}
    assert any(loc.endswith(f":{line}") for loc in locs), locs
    for node in fn.fgraph.toposort():
        assert node.trace is not None and node.trace.lineno == line


def test_excluding_unknown_rewrite_is_an_error():
    x = T.matrix("x")
    with pytest.raises(ValueError, match="unknown rewrite"):
        symcnn.function([x], x + 1, mode=Mode("native", excluding=["no_such_rewrite"]))


def test_trace_env_prints_fired_rewrites(monkeypatch, capsys):
    monkeypatch.setenv("SYMCNN_TRACE_REWRITES", "1")
    x = T.matrix("x")
    symcnn.function([x], -(-x) + 1, mode="native")
    assert "double_negation" in capsys.readouterr().out


def test_gradient_of_composite_matches_expanded_graph():
    x = T.dmatrix("x")
    fn = symcnn.function([x], T.tanh(x * 2) * x, mode="native")
    comp = [n for n in fn.fgraph.toposort() if isinstance(n.op, Elemwise) and isinstance(n.op.scalar_op, Composite)]
    assert comp
    op = comp[0].op
    symcnn.verify_grad(lambda a: op(a, np.asarray(2.0)), [RNG.rand(3, 4)])


def test_rewrite_graph_directly_on_a_function_graph():
    from symcnn.graph.fg import FunctionGraph
    x = T.matrix("x")
    fg = FunctionGraph([x], [-(-x)])
    log = rewrite_graph(fg)
    assert [r.rewrite for r in log] == ["double_negation"] and fg.outputs[0] is x
