"""User source traces: variables and nodes remember the user's file:line, and errors
raised while building or running a graph name that line first."""
import pickle

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.graph.trace import Trace, user_trace, with_trace
from tests.helpers import assert_starts_with_location, here


def test_variable_records_this_file_and_line():
    x = T.fmatrix("x"); loc = here()  # noqa: E702
    assert x.trace.filename == __file__
    assert x.trace.location() == loc
    assert "T.fmatrix" in x.trace.text


def test_apply_and_outputs_record_the_building_line():
    x = T.dvector("x")
    y = T.exp(x) * 2.0; loc = here()  # noqa: E702
    assert y.owner.trace.location() == loc
    assert y.trace.location() == loc
    # the DimShuffle inserted for broadcasting the constant is traced to the same line
    ds = y.owner.inputs[1].owner
    assert ds.trace.location() == loc


def test_shared_variable_trace():
    w = theano.shared(np.zeros(3), name="w"); loc = here()  # noqa: E702
    assert w.trace.location() == loc
    assert f"created at {loc}" in w.describe()


def test_trace_object():
    t = Trace("a.py", 12, "y = f(x)")
    assert (t.filename, t.lineno, t.text) == ("a.py", 12, "y = f(x)")
    assert str(t) == "a.py:12: y = f(x)" and t.location() == "a.py:12"
    assert str(Trace("a.py", 3)) == "a.py:3"
    assert pickle.loads(pickle.dumps(t)) == t
    assert isinstance(pickle.loads(pickle.dumps(t)), Trace)
    assert with_trace("boom", t).startswith("a.py:12: boom")
    assert with_trace("boom", None) == "boom"


def test_user_trace_from_test_code():
    t = user_trace(); loc = here()  # noqa: E702
    assert t.location() == loc


def test_build_error_dot_static_shapes():
    a = T.TensorType("float32", shape=(2, 3))("a")
    b = T.TensorType("float32", shape=(4, 5))("b")
    with pytest.raises(ValueError) as ei:
        T.dot(a, b)
    assert_starts_with_location(ei, here(-1))
    msg = str(ei.value)
    assert "inner dimensions differ" in msg and "'a'" in msg and "'b'" in msg


def test_build_error_through_operator():
    a = T.TensorType("float64", shape=(2, 3))("a")
    b = T.TensorType("float64", shape=(2, 4))("b")
    with pytest.raises(ValueError) as ei:
        a + b
    assert_starts_with_location(ei, here(-1))
    assert "do not broadcast in dimension 1" in str(ei.value)


def test_build_error_index_past_end():
    v = T.TensorType("float64", shape=(3,))("v")
    with pytest.raises(IndexError) as ei:
        v[3]
    assert_starts_with_location(ei, here(-1))
    assert "out of bounds" in str(ei.value)


def test_run_error_dot_misaligned():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    d = T.dot(a, b); loc = here()  # noqa: E702
    f = theano.function([a, b], d)
    with pytest.raises(ValueError) as ei:
        f(np.zeros((2, 3)), np.zeros((4, 5)))
    assert_starts_with_location(ei, loc)
    msg = str(ei.value)
    assert "not aligned" in msg and "(2, 3)" in msg and "(4, 5)" in msg


def test_run_error_advanced_index_out_of_bounds():
    m = T.dmatrix("m")
    y = T.ivector("y")
    r = m[T.arange(y.shape[0]), y]; loc = here()  # noqa: E702
    f = theano.function([m, y], r)
    np.testing.assert_array_equal(f(np.eye(3), np.array([0, 1, 2], "int32")), [1.0, 1.0, 1.0])
    with pytest.raises(IndexError) as ei:
        f(np.eye(3), np.array([0, 1, 7], "int32"))
    assert_starts_with_location(ei, loc)
    assert "out of bounds" in str(ei.value)


def test_run_error_basic_index_out_of_bounds():
    v = T.dvector("v")
    r = v[5]; loc = here()  # noqa: E702
    f = theano.function([v], r)
    with pytest.raises(IndexError) as ei:
        f(np.zeros(3))
    assert_starts_with_location(ei, loc)


def test_run_error_inside_compiled_graph_names_building_line_not_call():
    x = T.dmatrix("x")
    s = x.reshape((5,)); loc = here()  # noqa: E702
    out = T.exp(s)
    f = theano.function([x], out)
    with pytest.raises(ValueError) as ei:
        f(np.zeros((2, 3)))
    assert_starts_with_location(ei, loc)
    assert "cannot reshape" in str(ei.value)


def test_bad_argument_error_names_the_input_creation_line():
    x = T.fmatrix("x"); loc = here()  # noqa: E702
    f = theano.function([x], x * 2)
    with pytest.raises(TypeError) as ei:
        f(np.zeros((2, 2), dtype="float64"))
    assert_starts_with_location(ei, loc)
