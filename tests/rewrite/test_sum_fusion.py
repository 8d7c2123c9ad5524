"""fuse_sum_prologue and fuse_elemwise_into_readers (symcnn/rewrite/fusion.py): where each fires,
where each must not, and that results are kept."""
import numpy as np

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.rewrite import fusion
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.math import Sum
from symcnn.tensor.nnet import bn
from symcnn.tensor.sum_of_elemwise import SumOfElemwise
from tests.helpers import check_native_vs_reference, make_rng, rewritten


def _nodes(outs, ins, mode="native"):
    return rewritten(ins, outs, mode).fgraph.toposort()


def _kinds(nodes):
    return [type(n.op) for n in nodes]


def _full_elemwise(nodes, ndim):
    """The Elemwise nodes that write a result of ndim dimensions none of which is broadcast."""
    return [n for n in nodes if isinstance(n.op, Elemwise) and n.outputs[0].ndim == ndim
            and not any(n.outputs[0].type.broadcastable)]


def test_a_chain_into_a_sum_is_one_node():
    x, v = T.matrix("x"), T.vector("v")
    outs = [(T.exp(x) * 2 - v).sum(axis=1), T.sqr(T.tanh(x) - 1).sum()]
    nodes = _nodes(outs, [x, v])
    assert _kinds(nodes).count(SumOfElemwise) == 2 and Elemwise not in _kinds(nodes) and Sum not in _kinds(nodes)
    rng = make_rng(1)
    check_native_vs_reference([x, v], outs, [rng.standard_normal((4, 5)).astype("float32"),
                                             rng.standard_normal(5).astype("float32")])


def test_a_sum_leaves_an_elemwise_that_something_else_reads():
    x, w = T.matrix("x"), T.matrix("w")
    h = T.tanh(x) * 2   # (tanh: too dear to compute twice)
    outs = [h.sum(axis=0), T.dot(h, w)]
    nodes = _nodes(outs, [x, w])
    assert SumOfElemwise not in _kinds(nodes) and Sum in _kinds(nodes)


def test_a_batch_norm_writes_its_normalised_values_once():
    """x_hat = (x - mean) / std feeds the scale and shift and the backward's products and sums:
    each computes it from x, and no full-size elementwise result but those something other than
    an elementwise op reads is written."""
    rng = make_rng(2)
    x = T.TensorType("float32", shape=(None, 3, None, None))("x")
    g = symcnn.shared(rng.uniform(0.5, 1.5, (1, 3, 1, 1)).astype("float32"), name="g")
    b = symcnn.shared(rng.standard_normal((1, 3, 1, 1)).astype("float32"), name="b")
    out, mean, invstd = bn.batch_normalization_train(x, g, b, axes="spatial")[:3]
    h = T.maximum(out, 0)
    cost = (h * h).sum()
    outs = [cost] + T.grad(cost, [x, g, b])
    fgraph = rewritten([x], outs).fgraph
    full = _full_elemwise(fgraph.toposort(), 4)
    before = _full_elemwise(_nodes(outs, [x], Mode("native", excluding=["fuse_elemwise_into_readers"])), 4)
    assert len(full) < len(before)
    for n in full:   # each written result: read by something that needs it in memory, or too dear to copy
        needed = any(c == "output" or not isinstance(c.op, (Elemwise, SumOfElemwise, Sum))
                     for c, _ in fgraph.clients[n.outputs[0]])
        assert needed or not fusion._cheap(fusion._program(n)), n
    assert len(full) <= 2
    xv = rng.standard_normal((4, 3, 5, 6)).astype("float32")
    check_native_vs_reference([x], outs, [xv], rtol=1e-4, atol=1e-4)


def test_not_inlined_where_it_would_move_more_memory_or_cost_more():
    x, y, z, v = T.matrix("x"), T.matrix("y"), T.matrix("z"), T.vector("v")
    three = x * y + z                    # three full-size inputs, two readers: 6 arrays either way
    dear = T.exp(x - v)                  # a libm call
    outs = [three * 2, three.sum(axis=1), dear + 1, dear.sum(axis=0)]
    nodes = _nodes(outs, [x, y, z, v])
    written = [str(n.op) for n in _full_elemwise(nodes, 2)]
    assert any("exp" in w for w in written) and any("add" in w and "mul" in w for w in written)
    rng = make_rng(3)
    vals = [rng.standard_normal((3, 4)).astype("float32") for _ in range(3)] + [rng.standard_normal(4).astype("float32")]
    check_native_vs_reference([x, y, z, v], outs, vals)


def test_inlined_into_sums_and_elementwise_readers():
    x, v = T.matrix("x"), T.vector("v")
    d = (x - v) * 0.5                    # one full-size input: always fewer arrays inlined
    outs = [d.sum(axis=1), T.sqr(d).sum(axis=0), d * v + 1]
    nodes = _nodes(outs, [x, v])
    assert _kinds(nodes).count(SumOfElemwise) == 2 and len(_full_elemwise(nodes, 2)) == 1
    rng = make_rng(4)
    fn, _ = check_native_vs_reference([x, v], outs, [rng.standard_normal((5, 6)).astype("float32"),
                                                     rng.standard_normal(6).astype("float32")])
    assert "fuse_elemwise_into_readers" in {f.rewrite for f in fn.rewrite_log}


def test_the_size_of_an_elementwise_result_is_read_from_its_input():
    """T.mean of an elementwise result reads its sizes: from the input, so the result fuses into
    the sum; an Elemwise whose shape alone is read keeps running, and its size check with it."""
    x, y = T.matrix("x"), T.matrix("y")
    outs = [T.sqr(x - 1).mean(axis=1)]
    nodes = _nodes(outs, [x])
    assert SumOfElemwise in _kinds(nodes) and not _full_elemwise(nodes, 2)
    rng = make_rng(5)
    check_native_vs_reference([x], outs, [rng.standard_normal((3, 4)).astype("float32")])
    fn = symcnn.function([x, y], (x + y).shape[0], mode="native")
    with __import__("pytest").raises(ValueError):
        fn(np.ones((3, 4), "float32"), np.ones((3, 5), "float32"))
