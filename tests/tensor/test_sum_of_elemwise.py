"""SumOfElemwise (symcnn/tensor/sum_of_elemwise.py): its type, shape, reference, gradient and
errors, as those of the Sum of the Elemwise it stands for."""
import numpy as np
import pytest

import symcnn.tensor as T
import symcnn.scalar as ts
from symcnn.tensor.composite import Composite
from symcnn.tensor.math import Sum
from symcnn.tensor.sum_of_elemwise import SumOfElemwise
from tests.helpers import assert_op_contract, check_grad, compile_and_run, make_rng, rand

# (x - y)^2 in float64, then its sum
SQ_DIFF = Composite(2, [(ts.sub, (0, 1), ("float64", "float64"), "float64"),
                        (ts.sqr, (2,), ("float64",), "float64")])


def _op(axis, dtype=None, program=SQ_DIFF):
    return SumOfElemwise(program, Sum(axis, dtype))


@pytest.mark.parametrize("axis", [(0,), (1, 2), (0, 1, 2), (2,)])
def test_contract_and_values(axis):
    rng = make_rng(2)
    x, y = rand((3, 4, 5), rng=rng), rand((1, 4, 1), rng=rng)
    got, = assert_op_contract(lambda a, b: _op(axis)(a, b.dimshuffle("x", 0, "x")),
                              [x, y[0, :, 0]])
    np.testing.assert_allclose(got, np.sum((x - y) ** 2, axis=axis))


def test_result_dtype_is_the_sums():
    x = T.fmatrix("x")
    to32 = Composite(1, [(ts.neg, (0,), ("float32",), "float32")])
    assert _op((1,), program=to32)(x).dtype == "float32"
    assert _op((1,), "float64", program=to32)(x).dtype == "float64"
    i = T.imatrix("i")
    ineg = Composite(1, [(ts.neg, (0,), ("int32",), "int32")])
    out = _op((0,), program=ineg)(i)
    assert out.dtype == "int64"   # Sum's rule: small ints accumulate in int64
    got = compile_and_run([i], [out], [np.array([[1, 2], [3, 4]], "int32")])[0]
    np.testing.assert_array_equal(got, [-4, -6])


@pytest.mark.parametrize("axis", [(0,), (1,), (0, 1)])
def test_gradient(axis):
    check_grad(lambda a, b: _op(axis)(a, b) * np.arange(1, 1 + (4 if axis == (0,) else 3 if axis == (1,) else 1))
               if axis != (0, 1) else _op(axis)(a, b), [(3, 4), (3, 4)])


def test_gradient_through_a_broadcast_input():
    check_grad(lambda a, b: _op((0, 1))(a, b.dimshuffle("x", 0)), [(3, 4), (4,)])


def test_errors_name_the_op_and_the_inputs():
    x, v = T.matrix("x"), T.vector("v")
    with pytest.raises(TypeError, match="takes 2 inputs, got 1"):
        _op((0,))(x)
    with pytest.raises(TypeError, match="same number of dimensions"):
        _op((0,))(x, v)
    with pytest.raises(ValueError, match="must be a Composite"):
        SumOfElemwise(ts.sub, Sum((0,)))
    with pytest.raises(ValueError, match="must be a Sum op"):
        SumOfElemwise(SQ_DIFF, T.max)
    with pytest.raises(ValueError, match="axis out of range"):
        _op((2,))(x, x)
    a, b = T.TensorType("float64", shape=(None, 3))("a"), T.TensorType("float64", shape=(None, 4))("b")
    with pytest.raises(ValueError, match="do not broadcast"):
        _op((0,))(a, b)
