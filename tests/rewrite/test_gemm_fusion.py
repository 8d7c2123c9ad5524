"""GEMM prologue/epilogue fusion (FusedDot): each rewrite fires on its pattern, can be
excluded, and the fused graph compiled natively gives what the unrewritten graph gives in
the reference mode; a tanh hidden layer trains identically with its bias, activation and
activation derivative fused into the matrix products."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.layers import MLP, HiddenLayer
from symcnn.tensor.blas import FusedDot
from symcnn.tensor.composite import Composite
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.math import Dot

from tests.helpers import check_native_vs_reference

import symcnn.scalar as ts

EPI, PRO = "fuse_dot_epilogue", "fuse_dot_prologue"
SHAPES = [(1, 1, 1), (3, 17, 1), (17, 3, 33), (33, 17, 3), (1, 33, 17), (3, 1, 3)]


def fired(fn):
    return [r.rewrite for r in fn.rewrite_log]


def nodes(fn, cls):
    return [n for n in fn.fgraph.toposort() if isinstance(n.op, cls)]


def scalar_ops(node):
    sop = node.op.scalar_op
    return [s for s, _, _, _ in sop.steps] if isinstance(sop, Composite) else [sop]


def rand(rng, *shape):
    return (rng.randn(*shape) * 0.5).astype("float32")


def check(inputs, outputs, calls, expect, excluded_stops=True):
    """Compile natively (rewrites fire: `expect` is {rewrite name: min count}) and compare
    with the reference mode on each call; excluding each rewrite stops it."""
    fn, _ = check_native_vs_reference(inputs, outputs, None, calls=calls, rtol=1e-4, atol=1e-5)
    log = fired(fn)
    for name, n in expect.items():
        assert log.count(name) >= n, (name, log)
    if excluded_stops:
        for name in expect:
            without = symcnn.function(inputs, outputs, mode=Mode("native", excluding=[name]))
            assert name not in fired(without)
            check_native_vs_reference(inputs, outputs, None, calls=calls[:2], rtol=1e-4, atol=1e-5,
                                      mode=Mode("native", excluding=[name]))
    return fn


# -- epilogue -----------------------------------------------------------------------------

def test_epilogue_bias_and_tanh_matrix_matrix():
    rng = np.random.RandomState(0)
    x, W, b = T.matrix("x"), T.matrix("W"), T.vector("b")
    out = T.tanh(T.dot(x, W) + b)
    calls = [[rand(rng, m, k), rand(rng, k, n), rand(rng, n)] for m, k, n in SHAPES]
    fn = check([x, W, b], out, calls, {EPI: 1})
    [node] = nodes(fn, FusedDot)
    assert not nodes(fn, Elemwise) and not nodes(fn, Dot)
    assert node.op.epilogue is not None and "tanh" in str(node.op) and "add" in str(node.op)


def test_epilogue_matrix_vector_and_vector_matrix():
    rng = np.random.RandomState(1)
    A, v, c, u = T.matrix("A"), T.vector("v"), T.vector("c"), T.vector("u")
    outs = [T.nnet.sigmoid(T.dot(A, v) * 2 - c),          # (m,) epilogue with an (m,) extra
            T.exp(-T.dot(u, A)) + 1,                       # vector . matrix
            T.dot(u, c) * 3 + 1]                           # vector . vector (a scalar)
    calls = []
    for m, k, _ in SHAPES:
        calls.append([rand(rng, m, k), rand(rng, k), rand(rng, m), rand(rng, m)])
    fn = check([A, v, c, u], outs, calls, {EPI: 3})
    assert len(nodes(fn, FusedDot)) == 3 and not nodes(fn, Elemwise)


def test_epilogue_reads_a_same_shape_matrix_and_the_gradient_shape():
    # the backward's tanh derivative: dot(g, W.T) * (1 - h*h)
    rng = np.random.RandomState(2)
    g, W, h = T.matrix("g"), T.matrix("W"), T.matrix("h")
    out = T.dot(g, W.T) * (1 - h * h)
    calls = [[rand(rng, m, n), rand(rng, k, n), np.tanh(rand(rng, m, k))] for m, k, n in SHAPES]
    fn = check([g, W, h], out, calls, {EPI: 1})
    assert not nodes(fn, Elemwise)


def test_epilogue_changing_dtype_and_integer_products():
    rng = np.random.RandomState(3)
    A, B = T.imatrix("A"), T.imatrix("B")
    x, W, V = T.matrix("x"), T.matrix("W"), T.matrix("V")
    outs = [T.cast(T.dot(A, B), "float32") / 7,           # int32 product, float32 result
            T.gt(T.dot(x, W), 0),                          # bool result
            T.cast(T.dot(x, V), "float64") * 2]
    calls = [[rng.randint(-9, 9, (m, k)).astype("int32"), rng.randint(-9, 9, (k, n)).astype("int32"),
              rand(rng, m, k), rand(rng, k, n), rand(rng, k, n)] for m, k, n in SHAPES]
    fn = check([A, B, x, W, V], outs, calls, {EPI: 3}, excluded_stops=False)
    assert len(nodes(fn, FusedDot)) == 3 and not nodes(fn, Elemwise)
    # one product read by two Elemwise nodes is computed once, unfused
    fn = symcnn.function([x, W], [T.gt(T.dot(x, W), 0), T.dot(x, W) * 2], mode="native")
    assert EPI not in fired(fn)


def test_epilogue_does_not_fuse_a_product_read_elsewhere_or_broadcast():
    x, W, v = T.matrix("x"), T.matrix("W"), T.vector("v")
    d = T.dot(x, W)
    fn = symcnn.function([x, W], [T.tanh(d), d], mode="native")     # the product is an output too
    assert EPI not in fired(fn)
    r = T.row("r")
    fn = symcnn.function([r, W, x], T.dot(r, W) + x, mode="native")  # a 1 x n product broadcast to m x n
    assert EPI not in fired(fn)
    fn = symcnn.function([v, W, x], T.dot(v, W) + x, mode="native")  # a vector product broadcast to rows
    assert EPI not in fired(fn)


def test_chained_epilogues_merge():
    # A product fused with a prologue first still takes its epilogue (and epilogues merge).
    rng = np.random.RandomState(4)
    x, W, b = T.matrix("x"), T.matrix("W"), T.vector("b")
    out = T.tanh(T.dot(x * 2, W) + b)
    calls = [[rand(rng, m, k), rand(rng, k, n), rand(rng, n)] for m, k, n in SHAPES]
    fn = check([x, W, b], out, calls, {EPI: 1, PRO: 1})
    [node] = fn.fgraph.toposort()[-1:]
    assert isinstance(node.op, FusedDot) and node.op.prologue_a is not None and node.op.epilogue is not None


# -- prologue -----------------------------------------------------------------------------

def test_prologue_single_reader_both_operands():
    rng = np.random.RandomState(5)
    A, B, v, c = T.matrix("A"), T.matrix("B"), T.vector("v"), T.vector("c")
    outs = [T.dot(T.tanh(A) * c, B),             # A's prologue reads a broadcast row vector
            T.dot(A, T.exp(B - 1)),              # B's prologue (packed)
            T.dot(A, T.sqr(v)),                  # matrix . vector, prologue on the vector
            T.dot(T.sqr(c), A.T)]                # vector . matrix, through a transposed operand
    calls = [[rand(rng, m, k), rand(rng, k, n), rand(rng, k), rand(rng, k)] for m, k, n in SHAPES]
    fn = check([A, B, v, c], outs, calls, {PRO: 4})
    assert not nodes(fn, Elemwise)


def test_prologue_duplicates_cheap_elementwise_into_every_product():
    # g_pre = g * (1 - h*h) read by dot(g_pre, W.T) and dot(x.T, g_pre) only
    rng = np.random.RandomState(6)
    g, h, W, x = T.matrix("g"), T.matrix("h"), T.matrix("W"), T.matrix("x")
    g_pre = g * (1 - h * h)
    outs = [T.dot(g_pre, W.T), T.dot(x.T, g_pre)]
    calls = [[rand(rng, m, n), np.tanh(rand(rng, m, n)), rand(rng, k, n), rand(rng, m, k)]
             for m, k, n in SHAPES]
    fn = check([g, h, W, x], outs, calls, {PRO: 2})
    assert not nodes(fn, Elemwise)
    fused = nodes(fn, FusedDot)
    assert len(fused) == 2 and fused[0].op.prologue_a is not None and fused[1].op.prologue_b is not None


def test_prologue_not_duplicated_when_materialized_anyway_or_expensive():
    g, h, W, x = T.matrix("g"), T.matrix("h"), T.matrix("W"), T.matrix("x")
    g_pre = g * (1 - h * h)
    # the bias gradient's Sum reads g_pre: it is computed once, and the products read it
    fn = symcnn.function([g, h, W, x], [T.dot(g_pre, W.T), T.dot(x.T, g_pre), g_pre.sum(axis=0)], mode="native")
    assert PRO not in fired(fn) and len(nodes(fn, Dot)) == 2
    # tanh is a libm call per element: not copied into two products
    t = T.tanh(g)
    fn = symcnn.function([g, W, x], [T.dot(t, W.T), T.dot(x.T, t)], mode="native")
    assert PRO not in fired(fn)
    # an output of the function is materialized anyway
    fn = symcnn.function([g, W], [T.dot(g * 2, W), g * 2], mode="native")
    assert PRO not in fired(fn)


def test_prologue_and_epilogue_together_errors_and_noncontiguous_inputs():
    rng = np.random.RandomState(7)
    A, B, h = T.matrix("A"), T.matrix("B"), T.matrix("h")
    out = T.tanh(T.dot((A * 2).T, 1 - B) + h)
    fn = symcnn.function([A, B, h], out, mode="native")
    big = rand(rng, 20, 20)
    vals = [big[:17:2, :3], big[1:18:2, 3:8].copy(), rand(rng, 3, 5)]   # a strided numpy input
    check_native_vs_reference([A, B, h], out, vals, rtol=1e-4, atol=1e-5)
    assert {EPI, PRO} <= set(fired(fn))
    with pytest.raises(ValueError):
        fn(vals[0], rand(rng, 7, 5), vals[2])          # inner dimensions differ
    with pytest.raises(ValueError):
        fn(vals[0], vals[1], rand(rng, 3, 4))          # the extra operand does not match the product
    with pytest.raises(ValueError):
        symcnn.function([A, B, h], out, mode="reference")(vals[0], vals[1], rand(rng, 3, 4))


# -- training ------------------------------------------------------------------------------

def _train(mode, steps=4, batch=17, n_in=33, n_hidden=17, n_out=3, hidden_only=False):
    """SGD steps of tanh(dot(x, W) + b) (a HiddenLayer with a squared error), or of a 1-hidden-layer
    MLP whose output layer is a sigmoid HiddenLayer, with L1 and L2 terms."""
    rng = np.random.RandomState(8)
    x, t = T.matrix("x"), T.matrix("t")
    hidden = HiddenLayer(rng, x, n_in, n_hidden)
    if hidden_only:
        params, cost = hidden.params, T.mean((hidden.output - 0.25) ** 2)
    else:
        top = HiddenLayer(rng, hidden.output, n_hidden, n_out, activation=T.nnet.sigmoid)
        params = hidden.params + top.params
        cost = (T.mean(T.sum((top.output - t) ** 2, axis=1)) + 0.001 * abs(hidden.W).sum()
                + 0.0001 * (top.W ** 2).sum())
    grads = T.grad(cost, params)
    fn = symcnn.function([x, t], cost, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)], mode=mode,
                         on_unused_input="ignore")
    data = np.random.RandomState(9)
    costs = []
    for _ in range(steps):
        costs.append(fn(data.randn(batch, n_in).astype("float32"), data.rand(batch, n_out).astype("float32")))
    return fn, costs, [p.get_value() for p in params]


@pytest.mark.parametrize("hidden_only", [True, False])
def test_training_steps_match_reference(hidden_only):
    fn, costs, params = _train("native", hidden_only=hidden_only)
    _, ref_costs, ref_params = _train("reference", hidden_only=hidden_only)
    assert EPI in fired(fn)
    np.testing.assert_allclose(costs, ref_costs, rtol=1e-5, atol=1e-6)
    for p, q in zip(params, ref_params):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def _mlp_train_graph(n_in=33, n_hidden=17, n_out=3):
    """The rewritten graph of the tutorial MLP's train function (the rewrites only: lowering
    is not needed to check its structure)."""
    from symcnn.graph.fg import FunctionGraph
    from symcnn.rewrite import rewrite_graph
    rng = np.random.RandomState(8)
    x, y = T.matrix("x"), T.ivector("y")
    mlp = MLP(rng, x, n_in, n_hidden, n_out)
    cost = mlp.negative_log_likelihood(y) + 0.001 * mlp.L1 + 0.0001 * mlp.L2_sqr
    grads = T.grad(cost, mlp.params)
    fg = FunctionGraph([x, y], [cost] + [p - 0.01 * g for p, g in zip(mlp.params, grads)])
    rewrite_graph(fg)
    return fg


@pytest.mark.parametrize("which", ["MLP", "sigmoid MLP (compiled)"])
def test_mlp_train_function_has_no_separate_bias_tanh_or_derivative_kernels(which):
    fg = _mlp_train_graph() if which == "MLP" else _train("native", steps=1)[0].fgraph
    order = fg.toposort()
    fused = [n for n in order if isinstance(n.op, FusedDot)]
    # forward: tanh(dot(x, W1) + b1); backward: dot(g, W2.T) * (1 - h*h)
    h_node = [n for n in fused if "tanh" in str(n.op)]
    assert len(h_node) == 1
    h = h_node[0].outputs[0]
    b1 = h_node[0].inputs[2]
    assert isinstance(b1.owner.op, T.DimShuffle)       # the bias row, read in the epilogue
    updates = set(fg.outputs[1:])
    for n in order:
        if isinstance(n.op, Elemwise):
            assert not any(isinstance(s, ts.Tanh) for s in scalar_ops(n)), n.op          # the activation
            assert h not in n.inputs, n.op                                              # its derivative
            if n.outputs[0] not in updates:
                assert not any(i.owner is not None and isinstance(i.owner.op, Dot) for i in n.inputs), n.op
    assert all(isinstance(c.op, FusedDot) for c, _ in fg.clients[b1])                   # the bias add
    derivative = [n for n in fused if h in n.inputs and n.op.epilogue is not None
                  and any(isinstance(s, ts.Sub) for s, _, _, _ in n.op.epilogue.steps)]
    assert derivative, [str(n.op) for n in fused]
    # the only plain products left are the weight gradients, read by the (in-place) SGD updates
    for n in order:
        if isinstance(n.op, Dot):
            [(reader, _)] = fg.clients[n.outputs[0]]
            assert isinstance(reader.op, Elemwise) and reader.outputs[0] in updates


def test_sgd_update_of_a_weight_gradient_stays_in_place():
    fn, _, _ = _train("native", steps=2)
    notes = [k.note for k in fn.kernels]
    assert "in place into W" in notes and not any(k.name == "copy" for k in fn.kernels), notes


# -- the op ----------------------------------------------------------------------------------

def _fused_ops(fn):
    return [n.op for n in nodes(fn, FusedDot)]


def test_verify_grad_of_fused_dot():
    rng = np.random.RandomState(10)
    x, W, b = T.dmatrix("x"), T.dmatrix("W"), T.dvector("b")
    fn = symcnn.function([x, W, b], T.tanh(T.dot(T.sqr(x) - x, W * 2) + b), mode="native")
    [op] = _fused_ops(fn)
    assert op.prologue_a is not None and op.prologue_b is not None and op.epilogue is not None

    def f(xv, Wv, bv):
        return op(xv, Wv, np.asarray(2.0), bv.dimshuffle("x", 0))
    symcnn.verify_grad(f, [rng.rand(3, 4), rng.rand(4, 5), rng.rand(5)], mode="reference")

    fn = symcnn.function([x, b], T.exp(T.dot(x, b) * b[:3]), mode="native")   # matrix . vector
    [op] = _fused_ops(fn)
    symcnn.verify_grad(lambda xv, bv: op(xv, bv, bv[:3]), [rng.rand(3, 4), rng.rand(4)], mode="reference")


def test_fused_dot_contract():
    x, W = T.matrix("x"), T.matrix("W")
    tanh_add = Composite(2, [(ts.add, (0, 1), ("float32", "float32"), "float32"),
                             (ts.tanh, (2,), ("float32",), "float32")])
    op = FusedDot(epilogue=tanh_add)
    assert str(op) == "FusedDot{epilogue=composite{add,tanh}}"
    assert op == FusedDot(epilogue=tanh_add) and hash(op) == hash(FusedDot(epilogue=tanh_add))
    with pytest.raises(TypeError, match="takes 3 inputs"):
        op(x, W)
    with pytest.raises(ValueError, match="inner dimensions"):
        op(T.matrix(shape=(2, 3)), T.matrix(shape=(4, 5)), T.vector())
    with pytest.raises(ValueError, match="does not broadcast"):
        op(T.row(), W, x)                                   # would broadcast a 1 x n product
    with pytest.raises(ValueError, match="Composite"):
        FusedDot(prologue_a=tanh_add, na=1)
    out = op(T.matrix(shape=(2, None)), T.matrix(shape=(None, 5)), T.vector())
    assert out.type.shape == (2, 5) and out.dtype == "float32"
    # infer_shape through the shape graph
    m = T.matrix("m")
    c = T.vector("c", shape=(1,))
    fn = symcnn.function([m, c], op(m, m.T, c).shape, mode="reference")
    assert tuple(fn(np.ones((4, 6), "float32"), np.ones(1, "float32"))) == (4, 4)
