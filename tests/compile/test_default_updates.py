"""Theano's default updates: function() applies `shared.default_update` unless told not to."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T


@pytest.mark.parametrize("mode", ["native", "reference"])
def test_default_update_is_applied_after_each_call(mode):
    c = theano.shared(np.array(0, dtype="int64"), name="c")
    c.default_update = c + 1
    f = theano.function([], c * 10, mode=mode)
    assert [int(f()) for _ in range(3)] == [0, 10, 20]
    assert int(c.get_value()) == 3


def test_explicit_update_wins_and_no_default_updates_skips():
    c = theano.shared(np.array(0, dtype="int64"), name="c")
    c.default_update = c + 1
    f = theano.function([], c, updates=[(c, c + 5)])
    f()
    assert int(c.get_value()) == 5
    g = theano.function([], c, no_default_updates=True)
    g()
    assert int(c.get_value()) == 5
    h = theano.function([], c, no_default_updates=[c])
    h()
    assert int(c.get_value()) == 5


def test_default_update_reading_another_default_updated_variable():
    a = theano.shared(np.array(1.0), name="a")
    b = theano.shared(np.array(0.0), name="b")
    a.default_update = a * 2
    b.default_update = b + a  # reads a: a's own default update is added too
    x = T.dscalar("x")
    f = theano.function([x], x + b)
    f(0.0)
    assert float(a.get_value()) == 2.0 and float(b.get_value()) == 1.0


def test_unused_shared_variables_are_not_updated():
    c = theano.shared(np.array(0, dtype="int64"), name="c")
    c.default_update = c + 1
    x = T.dscalar("x")
    theano.function([x], x * 2)(1.0)
    assert int(c.get_value()) == 0
