"""Elementwise ops: values against numpy, gradients, broadcasting (Theano's rule), DimShuffle."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.elemwise import DimShuffle
from tests.helpers import (assert_op_contract, check_grad, compile_and_run, here, make_rng, rand, rand_pos,
                           assert_starts_with_location)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {
    "neg": (T.neg, np.negative, False),
    "abs": (T.abs_, np.abs, False),
    "exp": (T.exp, np.exp, False),
    "log": (T.log, np.log, True),
    "sqrt": (T.sqrt, np.sqrt, True),
    "sqr": (T.sqr, np.square, False),
    "tanh": (T.tanh, np.tanh, False),
    "sigmoid": (T.sigmoid, np_sigmoid, False),
    "nnet.sigmoid": (T.nnet.sigmoid, np_sigmoid, False),
    "identity": (T.identity, lambda a: a, False),
}

BINARY = {
    "add": (T.add, np.add, False),
    "sub": (T.sub, np.subtract, False),
    "mul": (T.mul, np.multiply, False),
    "true_div": (T.true_div, np.true_divide, True),
    "pow": (T.pow, np.power, True),
    "maximum": (T.maximum, np.maximum, False),
    "minimum": (T.minimum, np.minimum, False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_values(name, dtype):
    op, ref, positive = UNARY[name]
    x = rand_pos((3, 4), dtype) if positive else rand((3, 4), dtype, low=-3, high=3)
    (got,) = assert_op_contract(op, [x])
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref(x).astype(dtype), rtol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_grad(name):
    op, _, positive = UNARY[name]
    if name == "abs":
        # stay away from the kink at 0
        vals = [np.sign(rand((2, 3), rng=make_rng(3))) * rand_pos((2, 3))]
        check_grad(op, None, values=vals)
    else:
        check_grad(op, [(2, 3)], positive=positive)
        check_grad(op, [(4,)], positive=positive)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_values(name):
    op, ref, positive = BINARY[name]
    a = rand_pos((3, 4)) if positive else rand((3, 4), rng=make_rng(1))
    b = rand_pos((3, 4), rng=make_rng(2)) if positive else rand((3, 4), rng=make_rng(2))
    (got,) = assert_op_contract(op, [a, b])
    np.testing.assert_allclose(got, ref(a, b), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_grad(name):
    op, _, positive = BINARY[name]
    check_grad(op, [(2, 3), (2, 3)], positive=positive)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "true_div", "maximum"])
def test_binary_grad_with_broadcast_row(name):
    op, _, positive = BINARY[name]
    rng = make_rng(5)
    m = rand_pos((3, 4), rng=rng) if positive else rand((3, 4), rng=rng)
    b = rand_pos((4,), rng=rng) if positive else rand((4,), rng=rng)
    check_grad(lambda x, v: op(x, v.dimshuffle("x", 0)), None, values=[m, b])
    check_grad(lambda x, v: op(v.dimshuffle(0, "x"), x), None, values=[m.T.copy(), b])


def test_operators_build_the_same_ops():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    assert (x + y).owner.op is T.add and (x - y).owner.op is T.sub
    assert (x * y).owner.op is T.mul and (x / y).owner.op is T.true_div
    assert (x ** y).owner.op is T.pow and (-x).owner.op is T.neg and abs(x).owner.op is T.abs_
    assert (x // y).owner.op is T.int_div and (x % y).owner.op is T.mod
    assert (x < y).owner.op is T.lt and (x >= y).owner.op is T.ge
    assert (+x) is x
    a, b = rand((2, 3), rng=make_rng(1)), rand_pos((2, 3), rng=make_rng(2))
    f = theano.function([x, y], [2 - x, 2 / y, 2 ** x, x // y, x % y, 1 + x])
    r = f(a, b)
    np.testing.assert_allclose(r[0], 2 - a)
    np.testing.assert_allclose(r[1], 2 / b)
    np.testing.assert_allclose(r[2], 2 ** a)
    np.testing.assert_allclose(r[3], a // b)
    np.testing.assert_allclose(r[4], a % b)
    np.testing.assert_allclose(r[5], 1 + a)


@pytest.mark.parametrize("fn,ref", [
    (T.eq, np.equal), (T.neq, np.not_equal), (T.lt, np.less), (T.le, np.less_equal),
    (T.gt, np.greater), (T.ge, np.greater_equal),
])
def test_comparisons(fn, ref):
    a = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    b = np.array([[1, 0, 3], [9, 5, 0]], "int32")
    (got,) = assert_op_contract(fn, [a, b])
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref(a, b))


def test_comparison_mixed_dtypes_compares_values():
    i = T.ivector("i")
    f = T.fvector("f")
    np.testing.assert_array_equal(compile_and_run([i, f], T.lt(i, f), [np.array([1, 2], "int32"),
                                                                          np.array([1.5, 1.5], "float32")]),
                                  [True, False])


def test_int_ops():
    a = np.array([7, -7, 9], "int32")
    b = np.array([2, 2, 3], "int32")
    x, y = T.ivector("x"), T.ivector("y")
    r = compile_and_run([x, y], [x // y, x % y, x / y, T.sgn(x), abs(x)], [a, b])
    np.testing.assert_array_equal(r[0], a // b)
    np.testing.assert_array_equal(r[1], a % b)
    np.testing.assert_allclose(r[2], a / b, rtol=1e-6)
    assert r[2].dtype == theano.config.floatX  # int / int gives floatX, as Theano's true_div
    np.testing.assert_array_equal(r[3], np.sign(a))
    np.testing.assert_array_equal(r[4], np.abs(a))
    assert r[0].dtype == np.int32


def test_tanh_of_int_runs_in_float64():
    i = T.ivector("i")
    got = compile_and_run([i], T.tanh(i), [np.array([0, 1, 2], "int32")])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.tanh([0.0, 1.0, 2.0]))


def test_sigmoid_is_stable_for_large_inputs():
    x = T.dvector("x")
    got = compile_and_run([x], T.sigmoid(x), [np.array([-1000.0, 0.0, 1000.0])])
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(got))
    assert T.nnet.sigmoid is T.sigmoid


def test_switch_values_and_grad():
    c = np.array([True, False, True])
    a, b = rand((3,), rng=make_rng(1)), rand((3,), rng=make_rng(2))
    cv, av, bv = T.bvector("c"), T.dvector("a"), T.dvector("b")
    got = compile_and_run([cv, av, bv], T.switch(cv, av, bv), [c.astype("int8"), a, b])
    np.testing.assert_allclose(got, np.where(c, a, b))
    check_grad(lambda x, y: T.switch(T.gt(x, 0), x * 2, y * y), [(3, 4), (3, 4)])
    x = T.dvector("x")
    g = theano.grad(T.switch(x > 0, x, 0.0).sum(), x)
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([-1.0, 2.0, 3.0])]), [0.0, 1.0, 1.0])


def test_clip():
    x = T.dvector("x")
    got = compile_and_run([x], T.clip(x, -1, 1), [np.array([-3.0, 0.5, 2.0])])
    np.testing.assert_allclose(got, [-1.0, 0.5, 1.0])


@pytest.mark.parametrize("mode", ["reference", "native"])
@pytest.mark.parametrize("fn", [T.maximum, T.minimum])
def test_maximum_minimum_grad_on_ties_goes_to_the_first_input(fn, mode):
    """Theano 1.0's rule: at a tie the first input takes the whole gradient (unlike max-pool,
    where every tied maximum gets it)."""
    x, y = T.dvector("x"), T.dvector("y")
    gx, gy = theano.grad(fn(x, y).sum(), [x, y])
    xv, yv = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    rx, ry = compile_and_run([x, y], [gx, gy], [xv, yv], mode=mode)
    first_wins = (xv >= yv) if fn is T.maximum else (xv <= yv)
    np.testing.assert_array_equal(rx, first_wins.astype(float))
    np.testing.assert_array_equal(ry, 1.0 - first_wins)
    np.testing.assert_array_equal(rx[0] + ry[0], 1.0)  # the tie is counted once


def test_pow_grad_wrt_exponent_and_int_exponent():
    check_grad(lambda a, b: a ** b, [(3,), (3,)], positive=True)
    check_grad(lambda a: a ** 3, [(2, 2)])
    x = T.dvector("x")
    g = theano.grad((x ** 2).sum(), x)
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([1.0, -2.0])]), [2.0, -4.0])


# -- cast --------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [("float64", "float32"), ("float32", "float64"), ("float64", "int32"),
                                     ("int32", "float32"), ("int64", "int8"), ("bool", "float32")])
def test_cast_values(src, dst):
    a = (rand((2, 3), src, low=-5, high=5) if src != "bool" else np.array([[True, False, True]] * 2))
    (got,) = assert_op_contract(lambda v: T.cast(v, dst), [a])
    assert got.dtype == np.dtype(dst)
    np.testing.assert_array_equal(got, a.astype(dst))


def test_cast_is_noop_for_same_dtype_and_grad():
    x = T.dvector("x")
    assert T.cast(x, "float64") is x
    assert x.astype("float32").dtype == "float32"
    # the output has float32 precision, so the finite-difference step is float32's
    check_grad(lambda v: T.cast(v, "float32") * 2, [(3,)], eps=3e-4, abs_tol=1e-3, rel_tol=1e-3)
    g = theano.grad(T.cast(x, "float32").sum(), x)
    assert g.dtype == "float64"
    with pytest.raises(TypeError, match="unsupported dtype"):
        T.cast(x, "complex128")


def test_cast_to_int_is_not_differentiable():
    x = T.dvector("x")
    y = T.cast(x, "int32")
    g = theano.grad((y * 2.0).sum() + x.sum(), x)
    np.testing.assert_allclose(compile_and_run([x], g, [np.array([1.5, 2.5])]), [1.0, 1.0])


# -- broadcasting ---------------------------------------------------------------------------
def test_broadcast_row_col_and_scalar():
    m, r, c, s = T.dmatrix("m"), T.drow("r"), T.dcol("c"), T.dscalar("s")
    out = m + r + c + s
    assert out.type.shape == (None, None)
    a, rv, cv = rand((3, 4), rng=make_rng(1)), rand((1, 4), rng=make_rng(2)), rand((3, 1), rng=make_rng(3))
    np.testing.assert_allclose(compile_and_run([m, r, c, s], out, [a, rv, cv, 2.0]), a + rv + cv + 2.0)


def test_lower_ndim_inputs_get_leading_broadcastable_dims():
    m, v = T.dmatrix("m"), T.dvector("v")
    out = m * v
    assert out.owner.inputs[1].owner.op == DimShuffle(1, ("x", 0))
    a, b = rand((2, 3), rng=make_rng(1)), rand((3,), rng=make_rng(2))
    np.testing.assert_allclose(compile_and_run([m, v], out, [a, b]), a * b)


def test_static_shape_inference():
    a = T.TensorType("float64", shape=(3, None))("a")
    b = T.TensorType("float64", shape=(None, 4))("b")
    assert (a + b).type.shape == (3, 4)
    r = T.TensorType("float64", shape=(1, 4))("r")
    assert (a * r).type.shape == (3, 4)
    assert (r * r).type.shape == (1, 4)
    assert (a + 1.0).type.shape == (3, None)


def test_build_time_shape_mismatch():
    a = T.TensorType("float64", shape=(3, 4))("a")
    b = T.TensorType("float64", shape=(3, 5))("b")
    with pytest.raises(ValueError, match="do not broadcast in dimension 1"):
        a * b


def test_runtime_shape_mismatch():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    out = x + y; loc = here()  # noqa: E702
    f = theano.function([x, y], out)
    with pytest.raises(ValueError) as ei:
        f(np.zeros((2, 3)), np.zeros((2, 4)))
    assert_starts_with_location(ei, loc)


def test_runtime_length_one_in_non_broadcastable_dim_raises():
    """Theano's rule: a dimension broadcasts only if its type says it has length 1."""
    x, y = T.dmatrix("x"), T.dmatrix("y")
    out = x + y; loc = here()  # noqa: E702
    f = theano.function([x, y], out)
    with pytest.raises(ValueError, match="declared broadcastable") as ei:
        f(np.zeros((2, 3)), np.zeros((1, 3)))
    assert_starts_with_location(ei, loc)
    assert "'y'" in str(ei.value)
    v = T.dvector("v")
    g = theano.function([x, v], x + v)
    with pytest.raises(ValueError, match="declared broadcastable"):
        g(np.zeros((2, 3)), np.zeros(1))
    # the same values with a broadcastable type work
    r = T.drow("r")
    np.testing.assert_allclose(theano.function([x, r], x + r)(np.zeros((2, 3)), np.ones((1, 3))), np.ones((2, 3)))


def test_elemwise_wrong_number_of_inputs():
    with pytest.raises(TypeError, match="takes 2 inputs"):
        T.add(T.dvector())


def test_elemwise_infer_shape_with_broadcast():
    got = assert_op_contract(lambda a, b: a + b.dimshuffle("x", 0), [rand((3, 4)), rand((4,))])
    assert got[0].shape == (3, 4)
    got = assert_op_contract(lambda a, b: a * b.dimshuffle(0, "x"), [rand((3, 4)), rand((3,))])
    assert got[0].shape == (3, 4)


def test_fill_zeros_like_ones_like():
    x = T.fmatrix("x")
    a = rand((2, 3), "float32")
    z, o, s = compile_and_run([x], [T.zeros_like(x), T.ones_like(x), T.fill(x, 3.0)], [a])
    np.testing.assert_array_equal(z, np.zeros((2, 3)))
    np.testing.assert_array_equal(o, np.ones((2, 3)))
    np.testing.assert_array_equal(s, np.full((2, 3), 3.0))
    assert z.dtype == o.dtype == s.dtype == np.float32
    assert T.zeros_like(x, dtype="int32").dtype == "int32"


# -- DimShuffle ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,pattern", [
    ((2, 3), (1, 0)), ((2, 3), ("x", 0, 1)), ((2, 3), (0, "x", 1)), ((2, 3, 4), (2, 0, 1)),
    ((3,), ("x", 0)), ((3,), (0, "x")), ((), ("x", "x")),
])
def test_dimshuffle_values_and_grad(shape, pattern):
    a = rand(shape, rng=make_rng(4))
    (got,) = assert_op_contract(lambda v: v.dimshuffle(*pattern), [a])
    want = a
    perm = [p for p in pattern if p != "x"]
    want = np.transpose(a, perm) if perm else a
    want = np.expand_dims(want, [i for i, p in enumerate(pattern) if p == "x"])
    np.testing.assert_array_equal(got, want)
    check_grad(lambda v: v.dimshuffle(*pattern), [shape])


def test_dimshuffle_drop_broadcastable_dim():
    r = T.drow("r")
    v = r.dimshuffle(1)
    assert v.type.shape == (None,)
    a = rand((1, 4))
    np.testing.assert_array_equal(compile_and_run([r], v, [a]), a[0])
    check_grad(lambda x: x.dimshuffle(0, "x").dimshuffle(0), [(3,)])


def test_dimshuffle_dropping_non_broadcastable_dim_raises():
    m = T.dmatrix("m")
    with pytest.raises(ValueError, match="cannot drop dimension 0") as ei:
        m.dimshuffle(1)
    assert_starts_with_location(ei, here(-1))


def test_dimshuffle_bad_patterns():
    m = T.dmatrix("m")
    with pytest.raises(ValueError, match="repeats"):
        m.dimshuffle(0, 0)
    with pytest.raises(ValueError, match="does not have"):
        m.dimshuffle(0, 2)
    with pytest.raises(TypeError, match="expects a 3-d input"):
        DimShuffle(3, (0, 1, 2))(m)


def test_transpose_and_T():
    m = T.dtensor3("m")
    a = rand((2, 3, 4))
    r = compile_and_run([m], [m.T, m.transpose(1, 0, 2), T.transpose(m, (2, 1, 0)), m.dimshuffle([1, 2, 0])], [a])
    np.testing.assert_array_equal(r[0], a.T)
    np.testing.assert_array_equal(r[1], a.transpose(1, 0, 2))
    np.testing.assert_array_equal(r[2], a.transpose(2, 1, 0))
    np.testing.assert_array_equal(r[3], a.transpose(1, 2, 0))
    assert m.T.type.shape == (None, None, None)
    assert T.TensorType("float32", shape=(2, None))().T.type.shape == (None, 2)
