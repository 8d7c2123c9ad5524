"""Variable, Constant, Apply and the graph walks (ancestors, io_toposort, clone_replace)."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.graph.basic import (Apply, Constant, Variable, ancestors, clone_graph, clone_replace, graph_inputs,
                                io_toposort)
from tests.helpers import compile_and_run


def test_variable_fields():
    x = T.fmatrix("x")
    assert isinstance(x, Variable)
    assert x.owner is None and x.index is None
    assert x.name == "x" and str(x) == "x"
    assert x.type == T.TensorType("float32", shape=(None, None))
    y = T.fmatrix()
    assert y.name is None
    assert str(y) == "<float32 matrix>"
    assert x.auto_name != y.auto_name


def test_apply_links_outputs():
    x, y = T.dvector("x"), T.dvector("y")
    z = x + y
    node = z.owner
    assert isinstance(node, Apply)
    assert node.inputs == [x, y]
    assert node.outputs == [z] and node.out is z
    assert z.index == 0 and node.nin == 2
    assert node.op is T.add
    assert str(z) == "add.0"
    assert str(node) == "add(x, y)"


def test_variable_equality_is_identity():
    x = T.dvector("x")
    assert (x == x) is True
    assert (x == T.dvector("x")) is False
    assert len({x, x, T.dvector("x")}) == 2


def test_constant():
    c = T.constant(np.arange(6, dtype="int32").reshape(2, 3))
    assert isinstance(c, Constant)
    assert c.type == T.TensorType("int32", shape=(2, 3))
    np.testing.assert_array_equal(c.data, np.arange(6).reshape(2, 3))
    assert c.clone() is c
    assert str(T.constant(2.5)) == "2.5"
    assert str(c) == "Constant{(2, 3)}"
    # signature: same dtype, shape and bytes give the same key
    c2 = T.constant(np.arange(6, dtype="int32").reshape(2, 3))
    assert c.signature() == c2.signature()
    assert c.signature() != T.constant(np.arange(6, dtype="int64").reshape(2, 3)).signature()
    assert c.signature() != T.constant(np.ones((2, 3), dtype="int32")).signature()


def test_constant_filter_rejects_bad_data():
    with pytest.raises(TypeError):
        Constant(T.TensorType("float32", shape=(None,)), np.zeros((2, 2), "float32"))


def test_variable_clone_is_detached():
    x = T.dvector("x")
    z = T.exp(x)
    c = z.clone()
    assert c is not z and c.owner is None and c.index is None
    assert c.type == z.type and c.name == z.name and c.auto_name != z.auto_name


def test_describe_mentions_name_type_and_location():
    x = T.fmatrix("xx")
    d = x.describe()
    assert d.startswith("'xx' (float32 matrix, created at ")
    assert __file__ in d


def _chain():
    x = T.dvector("x")
    a = T.exp(x)
    b = T.tanh(x)
    c = a * b
    d = c.sum()
    return x, a, b, c, d


def test_io_toposort_orders_producers_first():
    x, a, b, c, d = _chain()
    order = io_toposort([d])
    assert len(order) == 4
    pos = {n: i for i, n in enumerate(order)}
    assert pos[a.owner] < pos[c.owner] and pos[b.owner] < pos[c.owner] < pos[d.owner]
    assert order[-1] is d.owner


def test_io_toposort_shared_subexpression_once():
    x = T.dvector("x")
    e = T.exp(x)
    out = e + e * e
    order = io_toposort([out])
    assert [n.op for n in order].count(T.exp) == 1
    assert len(order) == 3


def test_io_toposort_blockers_stop_the_walk():
    x, a, b, c, d = _chain()
    order = io_toposort([d], blockers=[c])
    assert order == [d.owner]
    assert io_toposort([x]) == []


def test_ancestors_and_graph_inputs():
    x, a, b, c, d = _chain()
    w = T.dscalar("w")
    e = d * w + 1.0
    anc = ancestors([e])
    for v in (x, a, b, c, d, w, e):
        assert v in anc
    roots = graph_inputs([e])
    assert x in roots and w in roots
    assert all(v.owner is None for v in roots)
    assert any(isinstance(v, Constant) for v in roots)
    assert graph_inputs([d], blockers=[c]) == [c]


def test_clone_replace_substitutes_and_keeps_original():
    x, y = T.dvector("x"), T.dvector("y")
    z = T.exp(x) * 2.0
    (z2,) = clone_replace([z], {x: y})
    assert z2 is not z
    assert y in graph_inputs([z2]) and x not in graph_inputs([z2])
    assert x in graph_inputs([z])  # the original graph is untouched
    v = np.array([0.0, 1.0])
    np.testing.assert_allclose(compile_and_run([y], z2, [v]), np.exp(v) * 2)


def test_clone_replace_shares_untouched_nodes():
    x, y, w = T.dvector("x"), T.dvector("y"), T.dvector("w")
    a = T.exp(w)
    z = a + x
    (z2,) = clone_replace([z], {x: y})
    assert z2.owner.inputs[0] is a  # exp(w) does not depend on x: reused
    (same,) = clone_replace([a], {x: y})
    assert same is a


def test_clone_replace_reruns_type_inference():
    x = T.dmatrix("x")
    y = T.TensorType("float64", shape=(3, 4))("y")
    z = T.exp(x).sum(axis=0)
    (z2,) = clone_replace([z], {x: y})
    assert z.type.shape == (None,)
    assert z2.type.shape == (4,)


def test_clone_replace_with_expression():
    x = T.dscalar("x")
    t = T.dscalar("t")
    z = x * x
    (z2,) = clone_replace([z], {x: t + 1.0})
    assert float(compile_and_run([t], z2, [2.0])) == 9.0


def test_clone_graph_copies_nodes_keeps_roots():
    x, a, b, c, d = _chain()
    (d2,), memo = clone_graph([d])
    assert d2 is not d and d2.owner is not d.owner
    assert d2.owner.op == d.owner.op
    assert x in graph_inputs([d2])
    assert memo[c] is d2.owner.inputs[0]
    assert memo[c].trace == c.trace and memo[c].type == c.type
