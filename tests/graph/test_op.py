"""The Op contract: __props__ equality and hashing, __call__, str, a user-defined op."""

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.graph import Apply, Op
from symcnn.tensor.elemwise import DimShuffle, Elemwise
from tests.helpers import assert_op_contract, check_grad

# T.scalar is the variable constructor; the scalar-op module is reached by its full name.
import symcnn.scalar as ts


class Scale(Op):
    """x * factor: a minimal user-written op."""

    __props__ = ("factor",)

    def __init__(self, factor):
        self.factor = factor

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, out):
        out[0][0] = inputs[0] * np.asarray(self.factor, dtype=inputs[0].dtype)

    def grad(self, inputs, grads):
        return [grads[0] * self.factor]

    def infer_shape(self, node, shapes):
        return shapes


class Split2(Op):
    """Two outputs: first half and second half of a vector."""

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type(), x.type()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        h = len(x) // 2
        out[0][0] = x[:h].copy()
        out[1][0] = x[h:].copy()

    def infer_shape(self, node, shapes):
        n = shapes[0][0]
        return [(n // 2,), (n - n // 2,)]


def test_props_equality_and_hash():
    assert Scale(2.0) == Scale(2.0)
    assert hash(Scale(2.0)) == hash(Scale(2.0))
    assert Scale(2.0) != Scale(3.0)
    assert len({Scale(2.0), Scale(2.0), Scale(3.0)}) == 2
    assert DimShuffle(2, (1, 0)) == DimShuffle(2, [1, 0])
    assert DimShuffle(2, (1, 0)) != DimShuffle(2, (0, 1))
    assert T.Sum((0,)) == T.Sum((0,)) and T.Sum((0,)) != T.Sum((1,))
    assert T.Sum((0,), "float64") != T.Sum((0,))
    assert Elemwise(ts.Add()) == T.add
    assert hash(Elemwise(ts.Add())) == hash(T.add)
    assert Elemwise(ts.Cast("int32")) != Elemwise(ts.Cast("int64"))
    assert T.Dot() == T.Dot()


def test_props_equality_needs_same_class():
    class Scale2(Scale):
        pass

    assert Scale2(2.0) != Scale(2.0)


def test_op_str():
    assert str(Scale(2.0)) == "Scale{factor=2.0}"
    assert str(T.Dot()) == "Dot"
    assert str(T.add) == "add"
    assert str(DimShuffle(2, ("x", 1, 0))) == "DimShuffle{x,1,0}"


def test_call_returns_single_output_or_list():
    x = T.dvector("x")
    y = Scale(3.0)(x)
    assert y.owner.op == Scale(3.0)
    a, b = Split2()(x)
    assert a.index == 0 and b.index == 1 and a.owner is b.owner
    assert str(a) == "Split2.0" and str(b) == "Split2.1"


def test_user_op_runs_and_differentiates():
    x = T.dvector("x")
    f = theano.function([x], Scale(3.0)(x), mode="reference")  # a user op with only a numpy perform
    np.testing.assert_allclose(f(np.array([1.0, 2.0])), [3.0, 6.0])
    check_grad(lambda v: Scale(3.0)(v), [(4,)])
    got = assert_op_contract(lambda v: Scale(2.0)(v), [np.arange(5.0)])
    np.testing.assert_allclose(got[0], np.arange(5.0) * 2)


def test_multi_output_contract():
    got = assert_op_contract(lambda v: Split2()(v), [np.arange(5.0)])
    np.testing.assert_array_equal(got[0], [0.0, 1.0])
    np.testing.assert_array_equal(got[1], [2.0, 3.0, 4.0])


def test_contract_helper_catches_wrong_static_dtype():
    class Liar(Scale):
        def perform(self, node, inputs, out):
            out[0][0] = inputs[0].astype("float32")

    with pytest.raises(AssertionError, match="static dtype"):
        assert_op_contract(lambda v: Liar(1.0)(v), [np.arange(3.0)])


def test_contract_helper_catches_wrong_infer_shape():
    class BadShape(Scale):
        def infer_shape(self, node, shapes):
            return [(shapes[0][0] + 1,)]

    with pytest.raises(AssertionError, match="infer_shape"):
        assert_op_contract(lambda v: BadShape(1.0)(v), [np.arange(3.0)])


def test_default_methods_raise_not_implemented():
    class Bare(Op):
        def make_node(self, x):
            x = T.as_tensor_variable(x)
            return Apply(self, [x], [x.type()])

    x = T.dvector("x")
    y = Bare()(x)
    with pytest.raises(NotImplementedError, match="no gradient"):
        theano.grad(y.sum(), x)
    f = theano.function([x], y, mode="reference")
    with pytest.raises(NotImplementedError, match="no reference implementation"):
        f(np.zeros(2))
    with pytest.raises(NotImplementedError):
        Op().make_node(x)
    assert Bare().connection_pattern(y.owner) == [[True]]


def test_native_mode_names_an_op_without_a_lowering():
    class PythonOnly(Op):
        def make_node(self, x):
            x = T.as_tensor_variable(x)
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, out):
            out[0][0] = inputs[0] + 1

    x = T.dvector("x")
    with pytest.raises(NotImplementedError, match="no native lowering for PythonOnly; use mode='reference'"):
        theano.function([x], PythonOnly()(x), mode="native")
    np.testing.assert_array_equal(theano.function([x], PythonOnly()(x), mode="reference")(np.zeros(2)), [1, 1])
