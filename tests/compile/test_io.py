"""theano.In / theano.Out, dict outputs, and copying / pickling compiled functions."""
import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import assert_starts_with_location, here

MODES = ["reference", "native"]


@pytest.mark.parametrize("mode", MODES)
def test_in_default_values(mode):
    x, lr = T.dvector("x"), T.dscalar("lr")
    f = theano.function([x, theano.In(lr, value=0.5)], x * lr, mode=mode)
    np.testing.assert_array_equal(f([2.0, 4.0]), [1.0, 2.0])
    np.testing.assert_array_equal(f([2.0, 4.0], 2.0), [4.0, 8.0])
    np.testing.assert_array_equal(f([2.0, 4.0], lr=3.0), [6.0, 12.0])
    assert f["lr"] == 0.5
    f["lr"] = 0.25  # a new default
    np.testing.assert_array_equal(f([4.0, 8.0]), [1.0, 2.0])
    # In(name=) is the keyword
    g = theano.function([x, theano.In(lr, value=1.0, name="rate")], x * lr, mode=mode)
    np.testing.assert_array_equal(g([1.0, 2.0], rate=2.0), [2.0, 4.0])


def test_in_strict_and_allow_downcast():
    x = T.fvector("x")
    f = theano.function([theano.In(x, allow_downcast=True)], x * 2)
    assert f(np.array([1.5], dtype="float64")).dtype == np.float32
    g = theano.function([theano.In(x, strict=True)], x * 2)
    g(np.array([1.5], dtype="float32"))
    with pytest.raises(TypeError, match="strict"):
        g([1.5])


def test_in_errors_name_the_line():
    x = T.dvector("x")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        theano.In(x, value=np.zeros((2, 2)))
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(NotImplementedError) as e:
        theano.In(x, value=np.zeros(2), update=x * 2)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        theano.In([1, 2])
    assert_starts_with_location(e, loc)


@pytest.mark.parametrize("mode", MODES)
def test_out_and_dict_outputs(mode):
    x = T.dvector("x")
    f = theano.function([x], theano.Out(x * 2, borrow=True), mode=mode)
    np.testing.assert_array_equal(f([1.0]), [2.0])
    g = theano.function([x], {"sum": x.sum(), "double": theano.Out(x * 2), "a": x + 1}, mode=mode)
    r = g([1.0, 2.0])
    assert isinstance(r, dict) and sorted(r) == ["a", "double", "sum"]
    np.testing.assert_array_equal(r["double"], [2.0, 4.0])
    np.testing.assert_array_equal(r["a"], [2.0, 3.0])
    assert r["sum"] == 3.0
    loc = here(2)
    with pytest.raises(TypeError) as e:
        theano.function([x], {1: x})
    assert_starts_with_location(e, loc)


def _model():
    x = T.dvector("x")
    W = theano.shared(np.arange(3.0), name="W")
    lr = T.dscalar("lr")
    f = theano.function([x, theano.In(lr, value=0.5)], (W * x).sum(), updates=[(W, W - lr * x)], name="train")
    return x, W, f


def test_pickle_round_trip_recompiles_and_keeps_values():
    x, W, f = _model()
    f(np.ones(3))
    g = pickle.loads(pickle.dumps(f))
    assert g.name == "train" and g["lr"] == 0.5
    W2 = g.shared_inputs[0]
    assert W2 is not W  # a pickle holds its own copy of the shared variable
    np.testing.assert_array_equal(W2.get_value(), W.get_value())
    assert g(np.ones(3)) == f(np.ones(3))  # same result from the same state
    np.testing.assert_array_equal(W2.get_value(), W.get_value())
    assert g.kernels  # natively compiled


def test_pickle_load_hits_the_compile_cache(tmp_path):
    """A fresh process loads the pickle and finds the native code in the cache (no code generation)."""
    _, _, f = _model()
    f.wait()  # its code is in the cache once compiled
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps(f))
    code = ("import pickle, sys, numpy as np\n"
            "import codegen.build as b\n"
            "calls = []\n"
            "orig = b._build_module\n"
            "b._build_module = lambda *a, **k: calls.append(1) or orig(*a, **k)\n"
            f"g = pickle.load(open({str(path)!r}, 'rb'))\n"
            "print(float(g(np.ones(3))), len(calls))\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    value, lowered = out.split()
    assert float(value) == 3.0 and lowered == "0"


def test_deepcopy_copies_shared_variables():
    x, W, f = _model()
    holder = {"f": f, "W": W}
    dup = copy.deepcopy(holder)
    assert dup["W"] is not W and dup["f"].shared_inputs[0] is dup["W"]  # one copy, used by the copied function
    dup["f"](np.ones(3))
    np.testing.assert_array_equal(W.get_value(), [0.0, 1.0, 2.0])  # the original is untouched
    np.testing.assert_array_equal(dup["W"].get_value(), [-0.5, 0.5, 1.5])


@pytest.mark.parametrize("share_memory", [False, True])
def test_copy_shares_shared_variables(share_memory):
    x, W, f = _model()
    c = f.copy(share_memory=share_memory)
    assert c.name == "train copy" and c.shared_inputs[0] is W
    c(np.ones(3))
    np.testing.assert_array_equal(W.get_value(), [-0.5, 0.5, 1.5])


def test_copy_swap_delete_updates_name():
    x, W, f = _model()
    V = theano.shared(np.full(3, 10.0), name="V")
    c = f.copy(swap={W: V}, delete_updates=True, name="eval")
    assert c.name == "eval"
    assert c(np.ones(3)) == 30.0
    np.testing.assert_array_equal(V.get_value(), [10.0] * 3)  # no updates
    np.testing.assert_array_equal(W.get_value(), [0.0, 1.0, 2.0])
    s = f.copy(swap={W: V})
    s(np.ones(3))
    np.testing.assert_array_equal(V.get_value(), [9.5] * 3)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        f.copy(swap={W: theano.shared(np.zeros((2, 2)))})
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        f.copy(swap={V: W})
    assert_starts_with_location(e, loc)
