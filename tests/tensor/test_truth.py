"""Theano's truth rule: every variable is true except the result of a comparison operator."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import assert_starts_with_location, here


def test_variables_are_true():
    W = theano.shared(np.zeros(3))
    x = T.dmatrix("x")
    for v in (x, W, x + 1, T.constant(0.0), T.eq(x, 0)):
        assert bool(v) is True
    if not W:  # the tutorials' `if not W:` / `W = W or ...`
        raise AssertionError("a shared variable must be true")
    assert (None or W) is W


def test_comparison_results_raise():
    x, y = T.dscalar("x"), T.dscalar("y")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        if x < y:
            pass
    assert_starts_with_location(e, loc)
    assert "boolean operations" in str(e.value)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        x < y < 3  # noqa: B015  (a chained comparison would silently drop x < y)
    assert_starts_with_location(e, loc)
    for cmp in (x <= y, x > y, x >= y):
        with pytest.raises(TypeError):
            bool(cmp)


def test_vectors_of_static_length_unpack():
    x = T.dtensor3("x")
    a, b, c = x.shape
    f = theano.function([x], [a, b, c])
    assert [int(v) for v in f(np.zeros((2, 3, 4)))] == [2, 3, 4]
    with pytest.raises(TypeError, match="cannot be iterated"):
        iter(T.dvector("v"))
