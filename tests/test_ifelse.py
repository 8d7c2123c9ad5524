"""theano.ifelse.ifelse: values, laziness (reference and native), gradients, errors."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.ifelse import IfElse, ifelse
from tests.helpers import (assert_starts_with_location, check_grad, check_native_vs_reference, compile_and_run, here,
                           make_rng, rand)


def test_values_and_multiple_outputs():
    a, b = T.dscalar("a"), T.dscalar("b")
    x, y = T.dvector("x"), T.dvector("y")
    out = ifelse(T.lt(a, b), [x * 2, x.sum()], [y + 1, y.max()])
    xv, yv = np.array([1.0, 2.0]), np.array([3.0, -1.0, 0.5])
    t = compile_and_run([a, b, x, y], out, [1.0, 2.0, xv, yv])
    e = compile_and_run([a, b, x, y], out, [3.0, 2.0, xv, yv])
    np.testing.assert_array_equal(t[0], xv * 2)
    assert t[1] == 3.0
    np.testing.assert_array_equal(e[0], yv + 1)
    assert e[1] == 3.0
    assert theano.ifelse.ifelse is ifelse


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_vs_reference_random_shapes(dtype):
    rng = make_rng(30)
    c = T.iscalar("c")
    x, W = T.matrix("x", dtype=dtype), T.matrix("W", dtype=dtype)
    out = ifelse(c, T.tanh(T.dot(x, W)), T.nnet.softmax(x)[:, :2] * 3)
    for k in range(4):
        n = int(rng.integers(1, 5))
        vals = [np.int32(k % 2), rand((n, 3), dtype, rng), rand((3, 2), dtype, rng)]
        check_native_vs_reference([c, x, W], [out, out.sum() * 2], vals)


@pytest.mark.parametrize("mode", ["reference", "native"])
def test_only_the_selected_branch_runs(mode):
    """The branch not taken would fail (an index out of range), so running it would raise."""
    c, i = T.bscalar("c"), T.lscalar("i")
    x = T.dvector("x")
    out = ifelse(c, x[i] * 2, x.sum())
    f = theano.function([c, i, x], out, mode=mode)
    assert f(0, 10, np.ones(3)) == 3.0  # x[10] is never computed
    assert f(1, 1, np.arange(3.0)) == 2.0
    with pytest.raises(IndexError):
        f(1, 10, np.ones(3))


def test_gradients():
    c = T.dscalar("c")

    def build(x, y):
        return ifelse(T.gt(c, 0), T.tanh(x) * y.sum(), x ** 2 + 1)

    for cv in (1.0, -1.0):
        check_grad(lambda x, y: theano.clone(build(x, y), replace={c: T.constant(np.float64(cv))}), [(3,), (2,)])
    x, y = T.dvector("x"), T.dvector("y")
    g = T.grad(build(x, y).sum(), [x, y])
    xv, yv = rand((3,)), rand((2,))
    check_native_vs_reference([c, x, y], g, [1.0, xv, yv])
    gy = compile_and_run([c, x, y], g[1], [-1.0, xv, yv])
    np.testing.assert_array_equal(gy, np.zeros(2))  # y is not used by the else branch


def test_shared_variables_and_cache_key():
    from codegen.build import graph_key
    W = theano.shared(np.array([1.0, 2.0]), name="W")
    c = T.bscalar("c")
    f = theano.function([c], ifelse(c, W * 2, W - 1), updates=[(W, W + 1)])
    np.testing.assert_array_equal(f(1), [2.0, 4.0])
    np.testing.assert_array_equal(f(0), [1.0, 2.0])
    nodes = f.fgraph.toposort()
    assert any(isinstance(n.op, IfElse) for n in nodes)
    assert graph_key(f.fgraph, nodes, [], {}) is not None  # cacheable


def test_errors_name_the_line():
    x, m = T.dvector("x"), T.dmatrix("m")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        ifelse(T.dvector("c"), x, x)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        ifelse(T.iscalar(), x, m)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        ifelse(T.iscalar(), [x, x], [x])
    assert_starts_with_location(e, loc)


def test_infer_shape_is_lazy_too():
    from tests.helpers import inferred_shapes
    c, x, y = T.iscalar("c"), T.dmatrix("x"), T.dvector("y")
    out = ifelse(c, x, T.stack([y, y]))
    for cv, want in ((1, (3, 4)), (0, (2, 5))):
        vals = [np.int32(cv), rand((3, 4)), rand((5,))]
        assert inferred_shapes(out.owner, [c, x, y], vals) == [want]


def test_gradient_that_reads_the_ifelse_output():
    """The output gradient depends on the IfElse output itself: the gradient's branches contain
    an IfElse node in turn (nested inner graphs), natively too."""
    c, x = T.iscalar("c"), T.dvector("x")
    W = theano.shared(np.array([1.0, 2.0]), name="W")
    z = ifelse(c, T.tanh(x * W), x ** 2)
    g = T.grad((z ** 2).sum() + z.mean(), [x, W])
    xv = np.array([0.5, -1.0])
    t = np.tanh(xv * [1, 2])
    for cv, want_x, want_w in ((1, (2 * t + 0.5) * (1 - t ** 2) * [1, 2], (2 * t + 0.5) * (1 - t ** 2) * xv),
                               (0, 4 * xv ** 3 + xv, [0.0, 0.0])):
        fn, (got,) = check_native_vs_reference([c, x], g, [np.int32(cv), xv], rtol=1e-10)
        np.testing.assert_allclose(got[0], want_x, rtol=1e-10)
        np.testing.assert_allclose(got[1], want_w, rtol=1e-10, atol=1e-14)
