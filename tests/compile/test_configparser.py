"""change_flags (a context manager and a decorator), config.cast_policy, function(accept_inplace=)."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn import config
from symcnn.configparser import change_flags


def test_change_flags_as_context_manager_restores_on_exit_and_error():
    before = config.floatX
    with theano.change_flags(floatX="float64"):
        assert config.floatX == "float64"
        assert T.matrix().dtype == "float64"
    assert config.floatX == before
    with pytest.raises(RuntimeError):
        with change_flags({"floatX": "float64"}):
            raise RuntimeError("boom")
    assert config.floatX == before
    with pytest.raises(ValueError):
        with change_flags(floatX="float16"):
            pass
    assert config.floatX == before
    with pytest.raises(AssertionError, match="no_such_flag"):
        change_flags(no_such_flag=1)


def test_change_flags_as_decorator():
    @change_flags(floatX="float64", allow_input_downcast=True)
    def build():
        return T.vector().dtype, config.allow_input_downcast

    before = (config.floatX, config.allow_input_downcast)
    assert build() == ("float64", True)
    assert (config.floatX, config.allow_input_downcast) == before


def test_cast_policy():
    assert config.cast_policy == "custom"
    with change_flags(cast_policy="custom"):
        pass
    with change_flags(cast_policy="numpy+floatX"):
        assert config.cast_policy == "numpy+floatX"
    with pytest.raises(ValueError):
        config.cast_policy = "other"
    assert config.cast_policy == "custom"


def test_function_accepts_accept_inplace():
    x = T.dvector("x")
    f = theano.function([x], x * 2, accept_inplace=True)
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [2.0, 4.0])
