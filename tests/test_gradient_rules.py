"""Theano 1.0's gradient rules, where a ported program would otherwise get other numbers:
known_grads, consider_constant, integer costs and variables, names and broadcastable flags,
and verify_grad's finite differences."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.gradient import DisconnectedInputError, GradientError, numeric_grad, verify_grad
from tests.helpers import check_native_vs_reference, compile_and_run, make_rng, rand

MODES = ["reference", "native"]


# -- known_grads --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_known_grads_replace_the_costs_gradient(mode):
    x = T.dvector("x")
    y = 2 * x
    given = T.constant(np.array([10.0]))
    g = T.grad(y.sum(), x, known_grads={y: given})
    # y's gradient is 10 (not 10 + 1): x's is 2 * 10
    np.testing.assert_array_equal(compile_and_run([x], g, [np.array([1.0])], mode=mode,
                                                  on_unused_input="ignore"), [20.0])
    g_none = T.grad(None, x, known_grads={y: given})
    np.testing.assert_array_equal(compile_and_run([x], g_none, [np.array([1.0])], mode=mode,
                                                  on_unused_input="ignore"), [20.0])


def test_known_grads_keep_the_other_paths_of_wrt():
    """Only the gradient of the listed variable is replaced: x's own path to the cost adds."""
    x = T.dvector("x")
    y = T.exp(x)
    cost = y.sum() + (3 * x).sum()
    g = T.grad(cost, x, known_grads={y: T.ones_like(y) * 5.0})
    xv = np.array([0.0, 1.0])
    np.testing.assert_allclose(compile_and_run([x], g, [xv]), 5 * np.exp(xv) + 3)


def test_known_grads_on_the_cost_itself_replace_the_seed():
    x = T.dscalar("x")
    cost = x * x
    g = T.grad(cost, x, known_grads={cost: T.constant(np.float64(4.0))})
    assert compile_and_run([x], g, [3.0]) == 24.0


def test_known_grads_must_be_float():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="float"):
        T.grad(None, x, known_grads={x * 2: T.ivector("i")})


# -- consider_constant ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_consider_constant_listing_a_wrt_still_gives_its_gradient(mode):
    x, y = T.dscalar("x"), T.dscalar("y")
    g = T.grad(x + y, x, consider_constant=[x])
    assert compile_and_run([x, y], g, [1.0, 2.0], mode=mode, on_unused_input="ignore") == 1.0


def test_consider_constant_stops_at_the_variable():
    x = T.dscalar("x")
    h = x * x
    cost = h * 3 + x
    gx, gh = T.grad(cost, [x, h], consider_constant=[h])
    # h receives its gradient (3) but passes none on to x
    assert compile_and_run([x], [gx, gh], [2.0], on_unused_input="ignore") == [1.0, 3.0]
    with pytest.raises(TypeError, match="iterable"):
        T.grad(cost, x, consider_constant=h)
    with pytest.raises(TypeError, match="variables"):
        T.grad(cost, x, consider_constant=[np.ones(2)])


# -- clip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_clip_gradient_counts_a_bound_that_is_x_once(mode):
    x, y = T.dscalar("x"), T.dscalar("y")
    outs = [T.grad(T.clip(x, y, x), x), T.grad(T.clip(x, x, x), x), T.grad(T.clip(x, x, y + 2), x)]
    got = compile_and_run([x, y], outs, [1.0, 0.0], mode=mode, on_unused_input="ignore")
    assert [float(v) for v in got] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_clip_min_above_max_returns_min_natively_and_in_reference(dtype):
    """Theano: x < min gives min, else x > max gives max, else x (numpy.clip gives max)."""
    x, lo, hi = (T.tensor(dtype, (False,)) for _ in range(3))
    xv = np.array([-3, 0, 1, 2, 5, 7], dtype=dtype)
    lov = np.array([2, 2, 2, 0, 3, 1], dtype=dtype)
    hiv = np.array([1, 1, 1, 4, 4, 9], dtype=dtype)
    _, (got,) = check_native_vs_reference([x, lo, hi], T.clip(x, lo, hi), [xv, lov, hiv], rtol=0, atol=0)
    np.testing.assert_array_equal(got, [2, 2, 2, 2, 4, 7])
    assert np.clip(xv[2], lov[2], hiv[2]) == 1  # numpy's answer differs


def test_clip_native_matches_reference_on_random_shapes_and_its_gradient_checks():
    rng = make_rng(5)
    for _ in range(4):
        shape = tuple(rng.integers(1, 6, size=rng.integers(1, 4)))
        x = T.TensorType("float32", shape=(None,) * len(shape))("x")
        xv = rand(shape, "float32", rng, -2, 2)
        check_native_vs_reference([x], T.clip(x, -0.5, 0.75), [xv], rtol=0, atol=0)
    # away from the kinks the gradient is the indicator of the open interval
    xv = np.array([-1.3, -0.2, 0.4, 1.7])
    verify_grad(lambda a, lo, hi: T.clip(a, lo, hi), [xv, np.full(4, -0.6), np.full(4, 0.9)])


# -- maximum / minimum (ties: see tests/tensor/test_elemwise.py) ------------------------------
def test_max_pool_keeps_every_tied_maximum():
    from symcnn.tensor.signal.pool import pool_2d
    x = T.dtensor4("x")
    g = T.grad(pool_2d(x, (2, 2), ignore_border=True).sum(), x)
    got = compile_and_run([x], g, [np.ones((1, 1, 2, 2))])
    np.testing.assert_array_equal(got, np.ones((1, 1, 2, 2)))


# -- arange ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_arange_gradient_wrt_start_and_step(mode):
    start, stop, step = T.dscalar("start"), T.dscalar("stop"), T.dscalar("step")
    r = T.arange(start, stop, step)
    w = T.dvector("w")
    cost = (r * r * w).sum()
    gstart, gstep = T.grad(cost, [start, step])
    vals = [1.0, 10.0, 2.0, np.array([1.0, 2.0, 0.5, -1.0, 3.0])]
    r_v = np.arange(1.0, 10.0, 2.0)
    gz = 2 * r_v * vals[3]
    got = compile_and_run([start, stop, step, w], [gstart, gstep], vals, mode=mode)
    np.testing.assert_allclose(got, [gz.sum(), (gz * np.arange(5)).sum()])
    with pytest.raises(DisconnectedInputError):
        T.grad(cost, stop)
    verify_grad(lambda a, s: T.arange(a, 4.0, s) ** 2, [np.asarray(0.3), np.asarray(0.7)])


def test_arange_of_ints_has_a_zero_gradient():
    n = T.lscalar("n")
    g = T.grad(T.arange(n, 10).sum(), n)
    assert g.dtype == theano.config.floatX
    assert compile_and_run([n], g, [2], on_unused_input="ignore") == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_arange_is_numpys_bit_for_bit(dtype):
    start = T.scalar("start", dtype=dtype)
    stop, step = T.dscalar("stop"), T.dscalar("step")
    rng = make_rng(7)
    calls = []
    for _ in range(40):
        a = rng.uniform(-10, 10)
        s = rng.uniform(0.01, 3) * rng.choice([-1, 1])
        calls.append([np.asarray(a, dtype=dtype), a + s * rng.uniform(0, 40), s])
    calls.append([np.asarray(-5, dtype=dtype), 1.1, 1.2])
    _, results = check_native_vs_reference([start, stop, step], T.arange(start, stop, step, dtype=dtype),
                                           calls[0], calls=calls, rtol=0, atol=0)
    for (a, b, s), got in zip(calls, results):
        np.testing.assert_array_equal(got, np.arange(float(a), b, s, dtype=dtype))
    if dtype == "float32":
        assert results[-1][-1] == 1.0  # start + step rounded once, then start + i * delta


# -- verify_grad ----------------------------------------------------------------------------
def test_numeric_grad_is_one_sided_with_theanos_steps():
    seen = []

    def f(x):
        seen.append(x.copy())
        return float((x ** 2).sum())

    for dtype, eps in [("float32", 3e-4), ("float64", 1e-7)]:
        seen.clear()
        x = np.array([1.0, -2.0], dtype=dtype)
        g = numeric_grad(f, [x])
        assert len(seen) == 3  # f(x), then one step per element
        assert seen[1].dtype == dtype
        np.testing.assert_array_equal(seen[1], np.array([1.0, -2.0], dtype=dtype) + np.array([eps, 0], dtype))
        np.testing.assert_allclose(g.gf[0], [2.0, -4.0], rtol=10 * eps / 2, atol=1e-3)
    # mixed inputs: the largest step (float32's), taken in the most precise dtype (float64)
    steps = []

    def g(a, b):
        steps.append(float(b[0]) - 1.0)
        return float(a.sum() + b.sum())

    numeric_grad(g, [np.ones(1, "float32"), np.ones(1)])
    assert steps[0] == 0.0 and steps[1] == 0.0 and steps[2] == pytest.approx(3e-4, rel=1e-9)


def test_verify_grad_tolerances_are_theanos():
    """A gradient off by 0.5% passes in float32 (tolerance 1e-2) and fails in float64 (1e-4)."""
    from symcnn.gradient import zero_grad

    def slightly_wrong(a):
        return a * 1.0 + 0.005 * (a - zero_grad(a))  # value a, true slope 1.005, symbolic slope 1

    with pytest.raises(GradientError):
        verify_grad(slightly_wrong, [np.array([0.5, 1.5])])
    verify_grad(slightly_wrong, [np.array([0.5, 1.5], dtype="float32")])
    with pytest.raises(GradientError):
        verify_grad(slightly_wrong, [np.array([0.5, 1.5], dtype="float32")], abs_tol=1e-3, rel_tol=1e-3)


def test_verify_grad_of_max_and_min_near_ties():
    """With Theano's small steps a 1e-3 gap between the maximum and the runner-up is resolved."""
    xv = np.array([[0.3, 0.301, -1.0], [2.0, 1.999, 0.0]])
    verify_grad(lambda a: T.max(a, axis=1), [xv])
    verify_grad(lambda a: T.min(a, axis=0), [xv])
    verify_grad(lambda a, b: T.maximum(a, b), [xv, xv + 1e-3])


def test_verify_grad_accepts_integer_outputs():
    xv = make_rng(3).standard_normal((3, 4))
    verify_grad(lambda a: T.argmax(a, axis=1), [xv])
    verify_grad(lambda a: T.argmax(a), [xv])
    with pytest.raises(TypeError, match="floating point"):
        verify_grad(lambda a: a * 2, [np.arange(3)])


def test_verify_grad_still_catches_a_wrong_gradient():
    with pytest.raises(GradientError):
        verify_grad(lambda a: a * 1.1 - 0.1 * T.zeros_like(a) + 0.1 * (a - theano.gradient.zero_grad(a)),
                    [np.array([1.0, 2.0])])


# -- integer costs and variables ------------------------------------------------------------
def test_grad_of_an_integer_variable_is_float():
    ix = T.iscalar("ix")
    g = T.grad(ix, ix)
    assert g.dtype == theano.config.floatX
    assert compile_and_run([ix], g, [3]) == 1.0
    iv, fv = T.ivector("iv"), T.dvector("fv")
    g = T.grad((iv * fv).sum(), iv)  # as if iv were float
    assert g.dtype == "float64"
    np.testing.assert_array_equal(compile_and_run([iv, fv], g, [np.array([1, 2], "int32"), np.array([3.0, 4.0])],
                                                  on_unused_input="ignore"), [3.0, 4.0])
    g = T.grad(T.cast(iv, "float64").sum(), iv)  # a cast to float passes the gradient
    np.testing.assert_array_equal(compile_and_run([iv], g, [np.array([5, 6], "int32")],
                                                  on_unused_input="ignore"), [1.0, 1.0])


@pytest.mark.parametrize("mode", MODES)
def test_an_integer_cost_has_zero_gradients(mode):
    iv, fv = T.ivector("iv"), T.dvector("fv")
    cost = T.sum(iv * 3) + T.sum(T.cast(fv, "int32"))
    g_i, g_f = T.grad(cost, [iv, fv])
    assert g_i.dtype == theano.config.floatX and g_f.dtype == "float64"
    got = compile_and_run([iv, fv], [g_i, g_f], [np.array([1, 2], "int32"), np.array([0.5, 9.0])], mode=mode,
                          on_unused_input="ignore")
    np.testing.assert_array_equal(got[0], [0, 0])
    np.testing.assert_array_equal(got[1], [0, 0])


def test_integer_side_paths_add_no_nodes():
    """A comparison on the way to the cost is connected with a zero gradient, which is not
    summed into the graph: relu written as x * (x > 0) has a single gradient term."""
    x = T.dvector("x")
    g = T.grad((x * T.cast(T.gt(x, 0), "float64")).sum(), x)
    from symcnn.graph.basic import io_toposort
    ops = [str(n.op) for n in io_toposort([g])]
    assert "add" not in ops, ops
    np.testing.assert_array_equal(compile_and_run([x], g, [np.array([-1.0, 2.0])]), [0.0, 1.0])


# -- names and broadcastable flags ----------------------------------------------------------
def test_gradients_are_named_like_theanos():
    x = T.dmatrix("x")
    cost = T.sum(x ** 2)
    cost.name = "cost"
    assert T.grad(cost, x).name == "(dcost/dx)"
    assert T.grad(T.sum(x ** 2), x).name is None  # an unnamed cost names nothing
    assert T.grad(cost, x, add_names=False).name is None


@pytest.mark.parametrize("mode", MODES)
def test_gradient_of_a_broadcastable_input_stays_broadcastable(mode):
    row, m = T.drow("row"), T.dmatrix("m")
    col = T.dcol("col")
    cost = T.sum(T.tanh(row * m + col))
    g_row, g_col = T.grad(cost, [row, col])
    assert g_row.broadcastable == (True, False) and g_col.broadcastable == (False, True)
    rv, mv, cv = rand((1, 3)), rand((4, 3), rng=make_rng(2)), rand((4, 1), rng=make_rng(3))
    got = compile_and_run([row, m, col], [g_row, g_col], [rv, mv, cv], mode=mode)
    d = 1 - np.tanh(rv * mv + cv) ** 2
    np.testing.assert_allclose(got[0], (d * mv).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(got[1], d.sum(axis=1, keepdims=True))


# -- smaller differences --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint32", "int8"])
def test_min_of_bool_and_unsigned(dtype):
    x = T.tensor(dtype, (False, False))
    info = np.iinfo(dtype) if dtype != "bool" else None
    xv = rand((3, 4), dtype, make_rng(4), 0, 2) if dtype == "bool" else \
        make_rng(4).integers(max(info.min, -100), min(info.max, 250), size=(3, 4)).astype(dtype)
    outs = [T.min(x), T.min(x, axis=0), T.min(x, axis=1, keepdims=True)]
    _, (got,) = check_native_vs_reference([x], outs, [xv], rtol=0, atol=0)
    for g, want in zip(got, [xv.min(), xv.min(axis=0), xv.min(axis=1, keepdims=True)]):
        assert g.dtype == xv.dtype
        np.testing.assert_array_equal(g, want)


def test_outer_flattens_operands_that_are_not_vectors():
    m, v = T.dmatrix("m"), T.dvector("v")
    mv, vv = rand((2, 3)), rand((4,), rng=make_rng(1))
    check_native_vs_reference([m, v], T.outer(m, v), [mv, vv])
    np.testing.assert_allclose(compile_and_run([m, v], T.outer(m, v), [mv, vv]), np.outer(mv, vv))


@pytest.mark.parametrize("shapes", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (4,)), ((3,), (4, 2))])
def test_dot_of_constants_with_mismatched_shapes_raises_value_error(shapes):
    a, b = (T.constant(np.ones(s)) for s in shapes)
    with pytest.raises(ValueError, match="dot"):
        T.dot(a, b)
