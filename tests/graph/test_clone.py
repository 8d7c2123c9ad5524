"""theano.clone."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import assert_starts_with_location, compile_and_run, here


def test_clone_replaces_and_leaves_the_original():
    x, y = T.dvector("x"), T.dvector("y")
    W = theano.shared(np.array([1.0, 2.0]), name="W")
    out = (x * W).sum() + 1
    new = theano.clone(out, replace={x: y * 2})
    assert compile_and_run([y], new, [np.array([1.0, 1.0])]) == 7.0
    assert compile_and_run([x], out, [np.array([1.0, 1.0])]) == 4.0  # the user's graph is unchanged
    # a list of outputs, pairs for replace; every node is a copy
    a, b = theano.clone([out, x * 3], replace=[(x, y)])
    assert a.owner is not out.owner and b.owner.inputs[0] is y
    same = theano.clone(out)
    assert same is not out and same.owner is not out.owner
    assert compile_and_run([x], same, [np.array([1.0, 1.0])]) == 4.0


def test_clone_strict_and_share_inputs():
    x, xi = T.dvector("x"), T.ivector("xi")
    out = x * 2
    loc = here(2)
    with pytest.raises(TypeError) as e:
        theano.clone(out, replace={x: xi})
    assert_starts_with_location(e, loc)
    loose = theano.clone(out, replace={x: xi}, strict=False)
    assert loose.dtype == "float64"
    assert compile_and_run([xi], loose, [np.array([1, 2], dtype="int32")]).tolist() == [2.0, 4.0]
    other = theano.clone(out, share_inputs=False)
    assert other.owner.inputs[0] is not x and other.owner.inputs[0].type == x.type
    loc = here(2)
    with pytest.raises(TypeError) as e:
        theano.clone(out, replace={"x": x})
    assert_starts_with_location(e, loc)
