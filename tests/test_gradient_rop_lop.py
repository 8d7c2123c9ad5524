"""theano.gradient.jacobian / hessian and T.Rop / T.Lop against hand-computed values."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.gradient import DisconnectedInputError, hessian, jacobian
from tests.helpers import (assert_starts_with_location, check_native_vs_reference, compile_and_run, here, make_rng,
                           rand)


def _static(n, name):
    return T.TensorType("float64", shape=(n,))(name)


def test_lop_is_the_vector_jacobian_product():
    rng = make_rng(40)
    W, x, u = T.dmatrix("W"), T.dvector("x"), T.dvector("u")
    y = T.tanh(T.dot(x, W))
    Wv, xv, uv = rand((3, 2), rng=rng), rand((3,), rng=rng), rand((2,), rng=rng)
    gW, gx = T.Lop(y, [W, x], u)
    t = np.tanh(xv @ Wv)
    got = compile_and_run([W, x, u], [gW, gx], [Wv, xv, uv])
    np.testing.assert_allclose(got[0], np.outer(xv, uv * (1 - t ** 2)))
    np.testing.assert_allclose(got[1], Wv @ (uv * (1 - t ** 2)))
    check_native_vs_reference([W, x, u], [gW, gx], [Wv, xv, uv], rtol=1e-10)
    assert T.Lop(y, W, u).ndim == 2  # a single wrt gives a single result


def test_rop_is_the_jacobian_vector_product():
    rng = make_rng(41)
    W, V, x, v = T.dmatrix("W"), T.dmatrix("V"), T.dvector("x"), T.dvector("v")
    y = T.tanh(T.dot(x, W))
    Wv, Vv, xv, vv = rand((3, 2), rng=rng), rand((3, 2), rng=rng), rand((3,), rng=rng), rand((3,), rng=rng)
    r = T.Rop(y, [W, x], [V, v])
    t = np.tanh(xv @ Wv)
    want = (1 - t ** 2) * (xv @ Vv + vv @ Wv)
    np.testing.assert_allclose(compile_and_run([W, V, x, v], r, [Wv, Vv, xv, vv]), want)
    check_native_vs_reference([W, V, x, v], r, [Wv, Vv, xv, vv], rtol=1e-10)
    # finite differences: (f(W + eps V) - f(W - eps V)) / 2 eps
    eps = 1e-6
    fd = (np.tanh(xv @ (Wv + eps * Vv)) - np.tanh(xv @ (Wv - eps * Vv))) / (2 * eps)
    np.testing.assert_allclose(compile_and_run([W, V, x], T.Rop(y, W, V), [Wv, Vv, xv]), fd, rtol=1e-6)
    # through softmax and a reduction, a list of expressions
    s = T.nnet.softmax(T.dot(x, W))
    r2 = T.Rop([s, s.sum() * 2], W, V)
    assert isinstance(r2, list) and r2[0].ndim == 2 and r2[1].ndim == 0
    got = compile_and_run([W, V, x], r2, [Wv, Vv, xv])
    sm = np.exp(xv @ Wv) / np.exp(xv @ Wv).sum()
    dz = xv @ Vv
    np.testing.assert_allclose(got[0][0], sm * (dz - (sm * dz).sum()), rtol=1e-9)
    np.testing.assert_allclose(got[1], 0.0, atol=1e-12)


def test_rop_lop_errors():
    W, V, x = T.dmatrix("W"), T.dmatrix("V"), T.dvector("x")
    y = T.dot(x, W)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.Rop(y, W, x)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.Lop([y, y], W, [x])
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(DisconnectedInputError) as e:
        T.Rop(x * 2, W, V)
    assert_starts_with_location(e, loc)
    assert compile_and_run([x], T.Rop(x * 2, W, V, disconnected_outputs="ignore"), [np.ones(2)]).tolist() == [0, 0]


def test_jacobian():
    x = _static(3, "x")
    W = T.dmatrix("W")
    rng = make_rng(42)
    xv, Wv = rand((3,), rng=rng), rand((3, 4), rng=rng)
    t = np.tanh(xv @ Wv)
    want = (Wv * (1 - t ** 2)).T  # J[i, j] = d y_i / d x_j
    y4 = T.tanh(T.dot(x, W))
    y4 = T.reshape(y4, (4,), ndim=1)  # a static length for the rows
    J = jacobian(y4, [x, W])
    got = compile_and_run([x, W], J, [xv, Wv])
    np.testing.assert_allclose(got[0], want)
    assert got[1].shape == (4, 3, 4)
    np.testing.assert_allclose(got[1][2, :, 2], xv * (1 - t[2] ** 2))
    np.testing.assert_allclose(got[1][2, :, 1], 0.0)
    check_native_vs_reference([x, W], J, [xv, Wv], rtol=1e-10)
    # a scalar expression gives its gradient
    np.testing.assert_allclose(compile_and_run([x], jacobian((x ** 2).sum(), x), [xv]), 2 * xv)


def test_hessian():
    x = _static(3, "x")
    A = T.dmatrix("A")
    rng = make_rng(43)
    xv, Av = rand((3,), rng=rng), rand((3, 3), rng=rng)
    cost = T.dot(x, T.dot(A, x)) + (x ** 3).sum()
    H = hessian(cost, x)
    got = compile_and_run([x, A], H, [xv, Av])
    np.testing.assert_allclose(got, Av + Av.T + np.diag(6 * xv), rtol=1e-10)
    check_native_vs_reference([x, A], H, [xv, Av], rtol=1e-10)


def test_jacobian_and_hessian_of_unknown_length():
    """Rows computed at run time by an IndexMap (Theano uses scan): random shapes, both modes."""
    from symcnn.index_map import IndexMap
    from tests.helpers import inferred_shapes
    x, W, A = T.dvector("x"), T.dmatrix("W"), T.dmatrix("A")
    J = jacobian(T.tanh(T.dot(x, W)), [x, W])
    H = hessian(T.dot(x, T.dot(A, x)) + (x ** 3).sum(), x)
    assert isinstance(J[0].owner.op, IndexMap) and isinstance(H.owner.op, IndexMap)
    rng = make_rng(44)
    for n, m in [(3, 4), (1, 2), (2, 0), (0, 3)]:
        xv, Wv, Av = rand((n,), rng=rng), rand((n, m), rng=rng), rand((n, n), rng=rng)
        got = compile_and_run([x, W, A], J + [H], [xv, Wv, Av])
        t = np.tanh(xv @ Wv)
        np.testing.assert_allclose(got[0], (Wv * (1 - t ** 2)).T.reshape(m, n))
        assert got[1].shape == (m, n, m)
        np.testing.assert_allclose(got[2], Av + Av.T + np.diag(6 * xv), atol=1e-12)
        check_native_vs_reference([x, W, A], J + [H], [xv, Wv, Av], rtol=1e-10, atol=1e-12)
        assert inferred_shapes(H.owner, [x, W, A], [xv, Wv, Av]) == [(n, n)]


def test_jacobian_hessian_errors():
    x = T.dvector("x")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        jacobian(T.dmatrix("m"), x)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        hessian(x * 2, x)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(DisconnectedInputError) as e:
        jacobian(x * 2, T.dvector("y"))
    assert "y" in str(e.value)
    with pytest.raises(NotImplementedError, match="static length"):
        T.grad(jacobian(x * x, x).sum(), x)
