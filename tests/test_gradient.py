"""T.grad: call forms, accumulation, broadcasting, disconnected inputs, consider_constant,
known_grads, and verify_grad itself."""
import warnings

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.gradient import DisconnectedInputError, GradientError
from tests.helpers import check_grad, compile_and_run, make_rng, rand


def test_grad_single_wrt_returns_variable():
    x = T.dvector("x")
    g = T.grad((x ** 2).sum(), x)
    assert isinstance(g, T.TensorVariable) and g.type == x.type
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([1.0, -3.0])]), [2.0, -6.0])


def test_grad_list_wrt_returns_list():
    x, y = T.dscalar("x"), T.dscalar("y")
    gs = T.grad(x * y + x, [x, y])
    assert isinstance(gs, list) and len(gs) == 2
    gx, gy = compile_and_run([x, y], gs, [2.0, 5.0])
    assert gx == 6.0 and gy == 2.0
    gt = T.grad(x * y, (x,))
    assert isinstance(gt, list) and len(gt) == 1


def test_grad_keywords_and_theano_grad_alias():
    x = T.dscalar("x")
    g = T.grad(cost=x * x, wrt=x)
    assert compile_and_run([x], g, [3.0]) == 6.0
    assert theano.grad is T.grad
    g2 = theano.grad(wrt=[x], cost=x * x * x)
    assert compile_and_run([x], g2, [2.0])[0] == 12.0


def test_contributions_from_several_clients_are_summed():
    x = T.dvector("x")
    e = T.exp(x)
    cost = (e * 2.0).sum() + (e * e).sum() + T.sum(x)
    g = T.grad(cost, x)
    v = np.array([0.1, -0.5])
    np.testing.assert_allclose(compile_and_run([x], g, [v]), 2 * np.exp(v) + 2 * np.exp(2 * v) + 1)
    check_grad(lambda a: T.exp(a) * 2 + T.exp(a) * T.exp(a) + a, [(3,)])


def test_same_variable_used_twice_in_one_node():
    x = T.dvector("x")
    g = T.grad((x * x).sum(), x)
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([3.0])]), [6.0])


def test_bias_vector_gradient_is_reduced_to_its_shape():
    x = T.dmatrix("x")
    b = T.dvector("b")
    W = T.dmatrix("W")
    out = T.tanh(T.dot(x, W) + b)
    cost = out.sum()
    gb, gW = T.grad(cost, [b, W])
    assert gb.ndim == 1 and gW.ndim == 2
    xv, Wv, bv = rand((5, 3), rng=make_rng(1)), rand((3, 4), rng=make_rng(2)), rand((4,), rng=make_rng(3))
    rgb, rgW = compile_and_run([x, W, b], [gb, gW], [xv, Wv, bv])
    d = 1 - np.tanh(xv @ Wv + bv) ** 2
    assert rgb.shape == (4,)
    np.testing.assert_allclose(rgb, d.sum(axis=0))
    np.testing.assert_allclose(rgW, xv.T @ d)
    check_grad(lambda m, v: m + v, [(3, 4), (4,)])
    check_grad(lambda m, v: T.dot(m, m.T) * v, [(3, 2), (3,)])


def test_row_and_col_broadcast_gradients():
    m = T.dmatrix("m")
    r = T.drow("r")
    c = T.dcol("c")
    gr, gc = T.grad((m * r * c).sum(), [r, c])
    assert gr.type.shape == (1, None) and gc.type.shape == (None, 1)
    mv, rv, cv = rand((3, 4)), rand((1, 4), rng=make_rng(2)), rand((3, 1), rng=make_rng(3))
    a, b = compile_and_run([m, r, c], [gr, gc], [mv, rv, cv])
    np.testing.assert_allclose(a, (mv * cv).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(b, (mv * rv).sum(axis=1, keepdims=True))


def test_disconnected_input_raises_naming_the_variable():
    x, y = T.dvector("x"), T.dvector("unused_y")
    with pytest.raises(DisconnectedInputError, match="unused_y") as ei:
        T.grad(x.sum(), [x, y])
    assert "disconnected" in str(ei.value)
    assert __file__ in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_disconnected_inputs_ignore_and_warn_give_zeros():
    x, y = T.dvector("x"), T.dvector("y")
    gx, gy = T.grad(x.sum(), [x, y], disconnected_inputs="ignore")
    r = compile_and_run([x, y], [gx, gy], [np.ones(2), np.ones(3)])
    np.testing.assert_array_equal(r[1], np.zeros(3))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        T.grad(x.sum(), [x, y], disconnected_inputs="warn")
    assert any("disconnected" in str(m.message) for m in w)
    assert T.grad(x.sum(), [y], disconnected_inputs="ignore", return_disconnected="None") == [None]
    with pytest.raises(ValueError):
        T.grad(x.sum(), x, disconnected_inputs="bogus")


def test_consider_constant_blocks_the_gradient():
    x = T.dscalar("x")
    y = x * x
    cost = y * x
    g_full = T.grad(cost, x)
    g_const = T.grad(cost, x, consider_constant=[y])
    a, b = compile_and_run([x], [g_full, g_const], [3.0])
    assert a == 27.0  # d(x^3)
    assert b == 9.0  # y treated as constant: d(y*x)/dx = y
    with pytest.raises(DisconnectedInputError):
        T.grad(y * 2.0, x, consider_constant=[y])


def test_known_grads():
    x = T.dvector("x")
    h = T.exp(x)
    g = T.grad(None, x, known_grads={h: T.ones_like(h) * 2.0})
    v = np.array([0.0, 1.0])
    np.testing.assert_allclose(compile_and_run([x], g, [v]), 2 * np.exp(v))
    with pytest.raises(ValueError, match="cost or known_grads"):
        T.grad(None, x)


def test_grad_argument_errors():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="scalar"):
        T.grad(x, x)
    # Integer variables and costs are allowed (Theano's rules, tests/gradient); a variable the
    # cost does not use is still disconnected.
    with pytest.raises(DisconnectedInputError):
        T.grad(x.sum(), T.ivector("i"))
    with pytest.raises(DisconnectedInputError):
        T.grad(T.sum(T.ivector("i")), x)
    with pytest.raises(TypeError, match="symbolic"):
        T.grad(x.sum(), np.ones(2))


def test_grad_through_shared_variables_and_float32():
    W = theano.shared(np.ones((2, 3), "float32"), name="W")
    x = T.fmatrix("x")
    cost = T.sum(T.dot(x, W) ** 2) * 0.5
    g = T.grad(cost, W)
    assert g.dtype == "float32"
    xv = np.arange(4, dtype="float32").reshape(2, 2)
    got = compile_and_run([x], g, [xv])
    np.testing.assert_allclose(got, xv.T @ (xv @ np.ones((2, 3))), rtol=1e-6)


def test_second_order_gradient():
    x = T.dscalar("x")
    g = T.grad(x ** 3, x)
    gg = T.grad(g, x)
    assert compile_and_run([x], gg, [2.0]) == pytest.approx(12.0)


def test_grad_does_not_modify_the_graph():
    x = T.dvector("x")
    cost = T.exp(x).sum()
    before = cost.owner.inputs[0].owner
    T.grad(cost, x)
    assert cost.owner.inputs[0].owner is before


def test_verify_grad_detects_a_wrong_gradient():
    from symcnn.graph import Apply, Op

    class BadSquare(Op):
        def make_node(self, x):
            x = T.as_tensor_variable(x)
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, out):
            out[0][0] = inputs[0] ** 2

        def grad(self, inputs, grads):
            return [grads[0] * inputs[0]]  # should be 2 * x

    with pytest.raises(GradientError, match="disagrees"):
        theano.verify_grad(lambda v: BadSquare()(v), [rand((3,))], rng=np.random.default_rng(0), mode="reference")
    with pytest.raises(AssertionError):
        check_grad(lambda v: BadSquare()(v), [(2, 2)])


def test_verify_grad_accepts_random_state_and_rejects_ints():
    theano.verify_grad(lambda v: v * 3.0, [rand((2,))], rng=np.random.RandomState(1))
    with pytest.raises(TypeError, match="float"):
        theano.verify_grad(lambda v: v * 3, [np.arange(3)])


def test_grad_of_variable_wrt_itself_and_wrt_intermediate():
    x = T.dscalar("x")
    assert compile_and_run([x], T.grad(x, x), [3.0]) == 1.0
    v = T.dvector("v")
    h = T.tanh(v)
    cost = (h * h).sum()
    gh = T.grad(cost, h)
    a = np.array([0.5, -0.2])
    np.testing.assert_allclose(compile_and_run([v], gh, [a]), 2 * np.tanh(a))


def test_non_differentiable_int_ops_contribute_nothing():
    x = T.dmatrix("x")
    g = T.grad((x // 2.0).sum() + (x % 2.0).sum() + x.sum(), x)
    np.testing.assert_array_equal(compile_and_run([x], g, [rand((2, 2))]), np.ones((2, 2)))
    i = T.ivector("i")
    g = T.grad((x * i).sum(), x)
    np.testing.assert_array_equal(compile_and_run([x, i], g, [rand((2, 2)), np.array([1, 2], "int32")]),
                                  [[1, 2], [1, 2]])


def test_fused_ops_differentiate_their_expansion_once_per_path():
    """A fused op whose second input is computed from its first (c and 2c) gives each input
    only its own paths; the outer grad adds the path through 2c: d(c * 2c)/dc = 4c."""
    from symcnn.tensor.composite import Composite
    from symcnn.tensor.elemwise import Elemwise
    import symcnn.scalar as ts
    c = T.dvector("c")
    prog = Composite.of(ts.mul, ["float64", "float64"], "float64")
    y = Elemwise(prog)(c, c * 2)
    value = np.arange(5.0)
    got = theano.function([c], theano.grad(y.sum(), c), mode="reference")(value)
    np.testing.assert_allclose(got, 4 * value)
