"""MultinomialFromUniform (theano.sandbox.multinomial's op): the reference and its contract.
The native kernel is compared with it in tests/codegen/test_random.py."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.sandbox.multinomial import MultinomialFromUniform

from tests.helpers import assert_op_contract


def test_picks_the_first_outcome_whose_running_sum_exceeds_the_uniform():
    p = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], dtype="float32")
    u = np.array([0.1, 0.2, 0.99, 0.999], dtype="float32")
    got = assert_op_contract(lambda a, b: MultinomialFromUniform("int64")(a, b), [p, u])[0]
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])


def test_no_outcome_when_the_probabilities_sum_below_the_uniform():
    p = np.array([[0.1, 0.1]], dtype="float64")
    got = assert_op_contract(lambda a, b: MultinomialFromUniform("float32")(a, b), [p, np.array([0.5])])[0]
    np.testing.assert_array_equal(got, [[0, 0]])
    assert got.dtype == np.float32


def test_bad_inputs():
    with pytest.raises(TypeError, match="float matrix"):
        MultinomialFromUniform()(T.fvector("p"), T.fvector("u"))
    with pytest.raises(TypeError, match="float vector"):
        MultinomialFromUniform()(T.fmatrix("p"), T.lvector("u"))
    with pytest.raises(ValueError, match="3 rows"):
        MultinomialFromUniform()(T.fmatrix("p", shape=(3, 2)), T.fvector("u", shape=(2,)))


def test_not_differentiable():
    p, u = T.fmatrix("p"), T.fvector("u")
    node = MultinomialFromUniform()(p, u).owner
    assert node.op.connection_pattern(node) == [[False], [False]]
    assert node.op.grad(node.inputs, [None]) == [None, None]
