"""Shape, Shape_i, MakeVector, Reshape, Flatten, ARange."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, compile_and_run, here,
                           inferred_shapes, make_rng, rand)


def test_shape_and_shape_i():
    x = T.dtensor3("x")
    a = rand((2, 3, 4))
    s = x.shape
    assert s.owner.op == T.Shape() and s.type.shape == (3,)
    s1 = x.shape[1]
    assert isinstance(s1.owner.op, T.Shape_i) and s1.owner.op.i == 1 and s1.dtype == "int64" and s1.ndim == 0
    r = compile_and_run([x], [s, s1, x.shape[-1], T.shape(x)], [a])
    np.testing.assert_array_equal(r[0], [2, 3, 4])
    assert r[0].dtype == np.int64
    assert r[1] == 3 and r[1].shape == () and r[2] == 4
    np.testing.assert_array_equal(r[3], [2, 3, 4])
    with pytest.raises(IndexError, match="out of range"):
        x.shape[3]


def test_shape_op_contract():
    assert_op_contract(lambda v: T.Shape()(v), [rand((2, 5))])
    assert_op_contract(lambda v: T.Shape_i(1)(v), [rand((2, 5))])


def test_shape_with_symbolic_index():
    x = T.dmatrix("x")
    i = T.lscalar("i")
    assert compile_and_run([x, i], x.shape[i], [rand((2, 5)), 1]) == 5


def test_shape_is_not_differentiable():
    x = T.dmatrix("x")
    cost = T.cast(x.shape[0], "float64") * x.sum()
    g = theano.grad(cost, x)
    np.testing.assert_allclose(compile_and_run([x], g, [rand((3, 2))]), np.full((3, 2), 3.0))


def test_make_vector():
    a, b = T.lscalar("a"), T.iscalar("b")
    v = T.stack_scalars([a, b, 4])
    assert v.dtype == "int64" and v.type.shape == (3,)
    got = compile_and_run([a, b], v, [1, 2])
    np.testing.assert_array_equal(got, [1, 2, 4])
    with pytest.raises(TypeError, match="scalar"):
        T.stack_scalars([T.lvector()])
    assert_op_contract(lambda x, y: T.MakeVector("float64")(x, y), [np.float64(1), np.float64(2)])
    check_grad(lambda x, y: T.MakeVector("float64")(x, y) * 2, [(), ()])


# -- reshape -------------------------------------------------------------------------------
@pytest.mark.parametrize("src,target", [
    ((2, 6), (3, 4)), ((2, 6), (12,)), ((2, 6), (-1,)), ((2, 6), (4, -1)), ((2, 3, 4), (-1, 4)),
    ((2, 3, 4), (6, 2, 2)), ((12,), (2, 1, 6)), ((1,), ()),
])
def test_reshape_values_infer_shape_and_grad(src, target):
    a = rand(src, rng=make_rng(2))
    (got,) = assert_op_contract(lambda v: v.reshape(target), [a])
    np.testing.assert_array_equal(got, a.reshape(target))
    check_grad(lambda v: T.reshape(v, target), [src])


def test_reshape_symbolic_target_with_minus_one():
    x = T.dmatrix("x")
    n = T.lscalar("n")
    out = x.reshape((n, -1))
    a = rand((4, 6))
    got = compile_and_run([x, n], out, [a, 3])
    np.testing.assert_array_equal(got, a.reshape(3, -1))
    assert out.type.shape == (None, None)
    (shp,) = inferred_shapes(out.owner, [x, n], [a, 3])
    assert shp == (3, 8)


def test_reshape_to_shape_of_other_variable():
    x, y = T.dmatrix("x"), T.dvector("y")
    out = y.reshape(x.shape)
    got = compile_and_run([x, y], out, [rand((2, 3)), np.arange(6.0)])
    np.testing.assert_array_equal(got, np.arange(6.0).reshape(2, 3))
    out2 = T.reshape(y, (x.shape[1], x.shape[0]))
    np.testing.assert_array_equal(compile_and_run([x, y], out2, [rand((2, 3)), np.arange(6.0)]),
                                  np.arange(6.0).reshape(3, 2))


def test_reshape_symbolic_vector_needs_ndim():
    x = T.dvector("x")
    s = T.lvector("s")
    with pytest.raises(ValueError, match="ndim"):
        x.reshape(s)
    out = x.reshape(s, ndim=2)
    assert out.ndim == 2
    np.testing.assert_array_equal(compile_and_run([x, s], out, [np.arange(6.0), np.array([3, 2])]),
                                  np.arange(6.0).reshape(3, 2))


def test_reshape_static_shapes():
    x = T.TensorType("float32", shape=(2, 6))("x")
    assert x.reshape((3, 4)).type.shape == (3, 4)
    assert x.reshape((-1, 3)).type.shape == (4, 3)
    assert T.fmatrix().reshape((-1, 3)).type.shape == (None, 3)


def test_reshape_keeps_the_constant_entries_of_a_symbolic_target():
    from symcnn.tensor.basic import static_ints
    # the constants of a target with a symbolic entry stay constants (of the target's dtype), so the
    # result knows those dims: a convolution's kernels are chosen by them
    x = T.fmatrix("x")
    assert x.reshape((x.shape[0], 20, 12, 12)).type.shape == (None, 20, 12, 12)
    assert x.reshape((3, x.shape[1] // 3)).type.shape == (3, None)
    assert x.reshape((np.int16(4), x.shape[0], -1)).type.shape == (4, None, None)
    n = T.iscalar("n")
    v = T.stack_scalars([n, 7])
    assert v.dtype == "int32" and static_ints(v) == [None, 7]
    a = rand((6, 40)).astype("float32")
    got = compile_and_run([x], x.reshape((x.shape[0], 2, 4, 5)), [a])
    np.testing.assert_array_equal(got, a.reshape(6, 2, 4, 5))


def test_reshape_wrong_size_build_time():
    x = T.TensorType("float32", shape=(2, 6))("x")
    with pytest.raises(ValueError, match="cannot reshape") as ei:
        x.reshape((5, 2))
    assert_starts_with_location(ei, here(-1))
    with pytest.raises(ValueError, match="cannot reshape"):
        x.reshape((5, -1))
    with pytest.raises(ValueError, match="more than one -1"):
        T.fmatrix().reshape((-1, -1))


def test_reshape_wrong_size_run_time():
    x = T.dmatrix("x")
    out = x.reshape((5, 2)); loc = here()  # noqa: E702
    f = theano.function([x], out)
    with pytest.raises(ValueError, match="cannot reshape") as ei:
        f(np.zeros((3, 3)))
    assert_starts_with_location(ei, loc)
    assert "(3, 3)" in str(ei.value)


def test_reshape_bad_target_type():
    with pytest.raises(TypeError, match="integers"):
        T.Reshape(2)(T.dvector(), T.dvector())


# -- flatten --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,ndim", [((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 3, 4), 3), ((2, 3, 4, 5), 2),
                                        ((5,), 1), ((2, 0, 3), 2)])
def test_flatten(shape, ndim):
    a = rand(shape)
    (got,) = assert_op_contract(lambda v: v.flatten(ndim), [a])
    np.testing.assert_array_equal(got, a.reshape(shape[:ndim - 1] + (-1,)) if a.size else
                                  a.reshape(shape[:ndim - 1] + (int(np.prod(shape[ndim - 1:])),)))
    if a.size:
        check_grad(lambda v: T.flatten(v, ndim), [shape])


def test_flatten_static_shape_and_outdim_keyword():
    x = T.TensorType("float32", shape=(None, 3, 4))("x")
    assert x.flatten(2).type.shape == (None, 12)
    assert x.flatten(outdim=2).ndim == 2
    assert x.flatten().type.shape == (None,)
    with pytest.raises(ValueError, match="between 1 and 3"):
        x.flatten(4)
    with pytest.raises(ValueError, match="between 1 and 3"):
        x.flatten(0)


# -- arange --------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(5,), (2, 7), (1, 10, 3), (5, 1, -1), (4, 4), (3, 0)])
def test_arange_values_and_infer_shape(args):
    syms = [T.lscalar(f"a{i}") for i in range(len(args))]
    out = T.arange(*syms)
    got = compile_and_run(syms, out, list(args))
    np.testing.assert_array_equal(got, np.arange(*args))
    assert got.dtype == np.int64
    (shp,) = inferred_shapes(out.owner, syms, list(args))
    assert shp == got.shape


def test_arange_constant_static_length_and_dtype():
    assert T.arange(5).type.shape == (5,)
    assert T.arange(1, 10, 2).type.shape == (5,)
    assert T.arange(3, dtype="float32").dtype == "float32"
    assert T.arange(0.0, 1.0, 0.25).dtype == "float32"
    np.testing.assert_allclose(T.arange(0.0, 1.0, 0.25).eval(), [0, 0.25, 0.5, 0.75])


def test_arange_of_shape():
    y = T.ivector("y")
    r = T.arange(y.shape[0])
    assert r.dtype == "int64"
    np.testing.assert_array_equal(compile_and_run([y], r, [np.zeros(4, "int32")]), [0, 1, 2, 3])


def test_arange_bad_args():
    with pytest.raises(ValueError, match="zero"):
        T.arange(0, 5, 0)
    with pytest.raises(TypeError, match="scalars"):
        T.arange(T.lvector())
    s = T.lscalar("s")
    f = theano.function([s], T.arange(0, 5, s))
    with pytest.raises(ValueError, match="zero"):
        f(0)


def test_eval():
    x = T.dvector("x")
    np.testing.assert_allclose((x * 2).eval({x: np.array([1.0, 2.0])}), [2.0, 4.0])
    assert T.constant(3).eval() == 3


@pytest.mark.parametrize("args", [(0.0, 1.0, 0.3), (0.5, 3.0, 0.5), (2.0, -1.0, -0.75)])
def test_float_arange_infer_shape(args):
    syms = [T.dscalar(f"a{i}") for i in range(3)]
    out = T.arange(*syms)
    assert out.dtype == "float64"
    got = compile_and_run(syms, out, list(args))
    np.testing.assert_allclose(got, np.arange(*args))
    (shp,) = inferred_shapes(out.owner, syms, list(args))
    assert shp == got.shape


def test_fill_grad():
    check_grad(lambda a, b: T.fill(a, b), [(2, 3), (3,)])
    x = T.dmatrix("x")
    g = theano.grad(T.fill(x, 2.0).sum() + x.sum(), x)
    np.testing.assert_array_equal(compile_and_run([x], g, [rand((2, 2))]), np.ones((2, 2)))
