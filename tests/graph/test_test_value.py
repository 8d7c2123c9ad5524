"""config.compute_test_value with .tag.test_value."""
import warnings

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.config import config
from tests.helpers import assert_starts_with_location, here


@pytest.fixture
def test_values():
    def set_mode(mode):
        config.compute_test_value = mode
    yield set_mode
    config.compute_test_value = "off"


def test_values_are_computed_while_building(test_values):
    test_values("raise")
    x = T.dmatrix("x")
    x.tag.test_value = np.arange(12.0).reshape(3, 4)
    W = theano.shared(np.ones((4, 2)), name="W")
    h = T.tanh(T.dot(x, W) + 1)
    np.testing.assert_allclose(h.tag.test_value, np.tanh(np.arange(12.0).reshape(3, 4) @ np.ones((4, 2)) + 1))
    c = T.nnet.categorical_crossentropy(T.nnet.softmax(h), T.constant(np.array([0, 1, 1], dtype="int32")))
    assert c.tag.test_value.shape == (3,)
    # the function itself is unaffected
    assert theano.function([x], h)(np.zeros((1, 4))).shape == (1, 2)


def test_shape_errors_show_at_the_building_line(test_values):
    test_values("raise")
    x = T.dmatrix("x")
    x.tag.test_value = np.ones((3, 4))
    W = theano.shared(np.ones((5, 2)), name="W")
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.dot(x, W)
    assert_starts_with_location(e, loc)
    assert "(3, 4)" in str(e.value) and "(5, 2)" in str(e.value)


def test_test_value_is_checked_on_assignment():
    x = T.fmatrix("x")
    x.tag.test_value = [[1.0, 2.0]]
    assert x.tag.test_value.dtype == np.float32
    with pytest.raises(TypeError):
        x.tag.test_value = np.ones(3)


def test_missing_test_values(test_values):
    x, y = T.dvector("x"), T.dvector("y")
    x.tag.test_value = np.ones(2)
    test_values("raise")
    loc = here(2)
    with pytest.raises(ValueError) as e:
        x + y
    assert_starts_with_location(e, loc)
    assert "'y'" in str(e.value) and "test value" in str(e.value)
    test_values("warn")
    with pytest.warns(UserWarning, match="test value"):
        z = x + y
    assert not hasattr(z.tag, "test_value")
    test_values("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = x + y
    assert not hasattr(z.tag, "test_value")
    test_values("off")
    x.tag.test_value = np.ones(2)
    assert not hasattr((x * 2).tag, "test_value")
