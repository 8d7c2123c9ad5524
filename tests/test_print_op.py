"""theano.printing.Print in the reference mode and natively (a callback from the native code)."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.printing import Print
from tests.helpers import assert_starts_with_location, check_grad, check_native_vs_reference, here, rand


@pytest.mark.parametrize("mode", ["reference", "native"])
def test_print_prints_and_passes_the_value_through(mode, capsys):
    x = T.dmatrix("x")
    p = Print("hello")(x * 2)
    f = theano.function([x], p.T.sum(axis=0) + 1, mode=mode)
    xv = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(xv), (xv * 2).T.sum(axis=0) + 1)
    assert capsys.readouterr().out == f"hello __str__ = {xv * 2}\n"
    y = Print("tr", attrs=("shape", "sum"))(x.T)  # a strided view is printed as its values
    np.testing.assert_array_equal(theano.function([x], y * 1, mode=mode)(xv), xv.T)
    assert capsys.readouterr().out == "tr shape = (3, 2)\ntr sum = 15.0\n"


def test_print_native_dtypes_and_global_fn(capsys):
    seen = []
    i = T.ivector("i")
    f = theano.function([i], Print("ints", global_fn=lambda op, v: seen.append((op.message, v.copy())))(i) + 1)
    np.testing.assert_array_equal(f(np.array([1, 2], dtype="int32")), [2, 3])
    assert seen[0][0] == "ints" and seen[0][1].dtype == np.int32 and seen[0][1].tolist() == [1, 2]
    x = T.fmatrix("x")
    check_native_vs_reference([x], Print("m")(x) * 2, [rand((3, 0), "float32")])
    assert "m __str__ = []" in capsys.readouterr().out


def test_print_is_not_cached_and_has_a_gradient():
    from codegen.build import graph_key
    x = T.dvector("x")
    f = theano.function([x], Print("p")(x) * 2)
    nodes = f.fgraph.toposort()
    assert graph_key(f.fgraph, nodes, [], {}) is None  # its global_fn is Python code
    check_grad(lambda v: Print("g", global_fn=lambda op, v: None)(v) ** 2, [(3,)])


def test_print_bad_arguments():
    loc = here(2)
    with pytest.raises(TypeError) as e:
        Print(42)(T.dvector())
    assert_starts_with_location(e, loc)
    assert "message" in str(e.value)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        Print("m", attrs="shape")
    assert_starts_with_location(e, loc)


def test_print_op_contract():
    from tests.helpers import assert_op_contract
    quiet = Print("q", global_fn=lambda op, v: None)
    got = assert_op_contract(quiet, [rand((2, 3))])
    np.testing.assert_array_equal(got[0], rand((2, 3)))
    got = assert_op_contract(quiet, [rand((4,), "int32")], mode="native")
    assert got[0].dtype == np.int32
