"""TensorType, the typed constructors, constants and Theano's dtype rules."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.type import TensorType, upcast
from tests.helpers import compile_and_run


@pytest.mark.parametrize("name,dtype,ndim", [
    ("lscalar", "int64", 0), ("iscalar", "int32", 0), ("bscalar", "int8", 0), ("wscalar", "int16", 0),
    ("fscalar", "float32", 0), ("dscalar", "float64", 0),
    ("ivector", "int32", 1), ("lvector", "int64", 1), ("wvector", "int16", 1), ("bvector", "int8", 1),
    ("fvector", "float32", 1), ("dvector", "float64", 1),
    ("fmatrix", "float32", 2), ("dmatrix", "float64", 2), ("imatrix", "int32", 2), ("lmatrix", "int64", 2),
    ("ftensor3", "float32", 3), ("dtensor3", "float64", 3),
    ("ftensor4", "float32", 4), ("dtensor4", "float64", 4), ("itensor4", "int32", 4),
    ("dtensor5", "float64", 5),
    ("scalar", "float32", 0), ("vector", "float32", 1), ("matrix", "float32", 2),
    ("tensor3", "float32", 3), ("tensor4", "float32", 4),
])
def test_typed_constructors(name, dtype, ndim):
    v = getattr(T, name)("v")
    assert v.dtype == dtype and v.ndim == ndim
    assert v.type == TensorType(dtype, shape=(None,) * ndim)
    assert v.name == "v"
    assert v.broadcastable == (False,) * ndim
    assert isinstance(v, T.TensorVariable)


def test_row_col_are_broadcastable():
    assert T.row().broadcastable == (True, False)
    assert T.col().broadcastable == (False, True)
    assert T.drow().dtype == "float64" and T.fcol().type.shape == (None, 1)


def test_untyped_constructor_dtype_and_shape_args():
    assert T.matrix("m", dtype="int32").dtype == "int32"
    assert T.vector(shape=(4,)).type.shape == (4,)
    with pytest.raises(ValueError, match="2 dimensions"):
        T.matrix(shape=(3,))


def test_tensor_constructor_broadcastable():
    t = T.tensor("float32", (False, True), name="t")
    assert t.type.shape == (None, 1) and t.name == "t"
    assert T.tensor(shape=(2, None)).dtype == theano.config.floatX


def test_type_properties():
    x = T.fmatrix("x")
    assert x.type.dtype == "float32" and x.type.ndim == 2
    assert isinstance(x.shape, T.TensorVariable)
    assert x.shape.dtype == "int64" and x.shape.ndim == 1 and x.shape.type.shape == (2,)
    assert str(x.type) == "float32 matrix"
    assert str(TensorType("int8", shape=(3, None))) == "int8 matrix (3, ?)"
    assert str(TensorType("float64", shape=(3,))) == "float64 vector (3,)"


def test_tensor_type_equality_and_compatibility():
    a = TensorType("float32", shape=(None, 3))
    assert a == TensorType("float32", broadcastable=(False, False), shape=(None, 3))
    assert hash(a) == hash(TensorType("float32", shape=(None, 3)))
    assert a != TensorType("float64", shape=(None, 3))
    assert a != TensorType("float32", shape=(None, None))
    assert a.is_compatible(TensorType("float32", shape=(5, None)))
    assert not a.is_compatible(TensorType("float32", shape=(None, 4)))
    assert not a.is_compatible(TensorType("float32", shape=(None,)))
    assert TensorType("floatX", (False,)).dtype == theano.config.floatX
    assert a.clone(dtype="int32") == TensorType("int32", shape=(None, 3))


def test_tensor_type_bad_arguments():
    with pytest.raises(TypeError, match="unsupported dtype"):
        TensorType("complex64", (False,))
    with pytest.raises(TypeError):
        TensorType("float32")
    with pytest.raises(ValueError, match="negative"):
        TensorType("float32", shape=(-1,))
    with pytest.raises(ValueError, match="disagree"):
        TensorType("float32", broadcastable=(True,), shape=(None, None))


def test_filter():
    t = TensorType("float32", shape=(None, 2))
    a = np.zeros((3, 2), "float32")
    assert t.filter(a) is a  # no copy when already right
    assert t.filter([[1, 2]]).dtype == np.float32  # ints cast safely
    with pytest.raises(TypeError, match="expected 2-d"):
        t.filter(np.zeros(3, "float32"))
    with pytest.raises(ValueError, match="dimension 1 is 3, not 2"):
        t.filter(np.zeros((3, 3), "float32"))
    with pytest.raises(TypeError, match="allow_input_downcast"):
        t.filter(np.zeros((3, 2)))
    assert t.filter(np.zeros((3, 2)), allow_downcast=True).dtype == np.float32
    i = TensorType("int32", shape=())
    assert i.filter(5).dtype == np.int32  # python int that fits
    with pytest.raises(TypeError):
        i.filter(2.5)
    with pytest.raises(TypeError):
        i.filter(np.int64(5))
    assert not i.is_valid_value("abc") and i.is_valid_value(3)


def test_variable_from_type_call():
    v = TensorType("float32", (False,))("v")
    assert v.name == "v" and v.dtype == "float32" and v.ndim == 1


# -- constants and Theano's dtype rules --------------------------------------------
@pytest.mark.parametrize("value,dtype", [
    (3, "int8"), (-128, "int8"), (200, "int16"), (70000, "int32"), (2 ** 40, "int64"),
    (True, "bool"), (1.5, "float32"), (1e300, "float64"),
])
def test_python_constant_dtypes(value, dtype):
    assert T.constant(value).dtype == dtype
    assert T.as_tensor_variable(value).dtype == dtype


def test_constant_arrays_keep_dtype_and_static_shape():
    c = T.constant(np.zeros((2, 3), "float64"))
    assert c.dtype == "float64" and c.type.shape == (2, 3)
    assert T.constant(np.float32(1)).dtype == "float32"
    assert T.constant(2, dtype="float64").dtype == "float64"
    assert T.constant(2.0, ndim=2).type.shape == (1, 1)
    with pytest.raises(ValueError):
        T.constant(np.zeros((2, 2)), ndim=1)
    with pytest.raises(TypeError, match="cannot convert"):
        T.as_tensor_variable("abc")


def test_as_tensor_variable_list_of_symbols_makes_vector():
    a, b = T.lscalar("a"), T.lscalar("b")
    v = T.as_tensor_variable([a, b, 3])
    assert v.ndim == 1 and v.dtype == "int64" and v.type.shape == (3,)
    assert list(compile_and_run([a, b], v, [1, 2])) == [1, 2, 3]
    with pytest.raises(TypeError, match="2-d"):
        T.as_tensor_variable(T.dvector(), ndim=2)


@pytest.mark.parametrize("build,dtype", [
    (lambda: T.fmatrix() * 0.1, "float32"),          # python float keeps float32
    (lambda: 0.5 + T.fvector(), "float32"),
    (lambda: T.fmatrix() * 2, "float32"),            # python int constant is int8
    (lambda: T.ivector() * 2, "int32"),
    (lambda: T.bvector() + 1, "int8"),
    (lambda: T.bvector() + 1000, "int16"),
    (lambda: T.ivector() + T.fvector(), "float64"),  # numpy's upcast
    (lambda: T.fvector() + T.dvector(), "float64"),
    (lambda: T.neq(T.ivector(), 1), "bool"),
    (lambda: T.eq(T.fvector(), T.fvector()), "bool"),
    (lambda: T.fvector() < 0.5, "bool"),
    (lambda: T.mean(T.ivector()), "float64"),
    (lambda: T.mean(T.neq(T.ivector(), 1)), "float64"),
    (lambda: T.mean(T.fmatrix()), "float32"),
    (lambda: T.argmax(T.fmatrix(), axis=1), "int64"),
    (lambda: T.arange(T.ivector().shape[0]), "int64"),
    (lambda: T.arange(5), "int64"),
    (lambda: T.arange(T.iscalar()), "int64"),
    (lambda: T.ivector() / T.ivector(), "float32"),  # int / int gives floatX (Theano's true_div)
    (lambda: T.lscalar() / 2, "float32"),
    (lambda: T.ivector() // 2, "int32"),
    (lambda: T.tanh(T.ivector()), "float64"),
    (lambda: T.exp(T.lvector()), "float64"),
    (lambda: T.exp(T.bvector()), "float32"),
    (lambda: T.sqrt(T.wvector()), "float32"),
    (lambda: T.tanh(T.fvector()), "float32"),
    (lambda: T.sum(T.ivector()), "int64"),
    (lambda: T.sum(T.bvector()), "int64"),
    (lambda: T.sum(T.fvector()), "float32"),
    (lambda: T.sum(T.neq(T.ivector(), 0)), "int64"),
    (lambda: T.max(T.ivector()), "int32"),
    (lambda: T.cast(T.fvector(), "int32"), "int32"),
    (lambda: T.dot(T.fmatrix(), T.fvector()), "float32"),
    (lambda: T.dot(T.fmatrix(), T.dmatrix()), "float64"),
    (lambda: T.switch(T.fvector() > 0, T.fvector(), 0), "float32"),
    (lambda: T.fvector().shape[0], "int64"),
    (lambda: T.fvector() ** 2, "float32"),
    (lambda: T.sigmoid(T.fmatrix()), "float32"),
])
def test_dtype_rules(build, dtype):
    assert build().dtype == dtype


def test_dtype_rules_hold_at_runtime():
    x = T.fmatrix("x")
    i = T.ivector("i")
    f = theano.function([x, i], [x * 0.1, T.neq(i, 1), T.mean(i), i / i, T.tanh(i), T.argmax(x, axis=1)])
    res = f(np.ones((2, 3), "float32"), np.array([1, 2], "int32"))
    assert [str(r.dtype) for r in res] == ["float32", "bool", "float64", "float32", "float64", "int64"]
    np.testing.assert_allclose(res[0], np.full((2, 3), 0.1, "float32"))
    np.testing.assert_array_equal(res[1], [False, True])
    assert res[2] == 1.5


def test_upcast():
    assert upcast("int8", "float32") == "float32"
    assert upcast("int32", "float32") == "float64"
    assert upcast("bool", "int8") == "int8"


def test_float_x_default():
    assert theano.config.floatX == "float32"
    assert T.matrix().dtype == "float32"
    with pytest.raises(ValueError, match="floatX"):
        theano.config.floatX = "float16"
    assert theano.config.floatX == "float32"


def test_float_x_switch_changes_python_float_constants():
    old = theano.config.floatX
    try:
        theano.config.floatX = "float64"
        assert T.constant(0.1).dtype == "float64"
        assert T.constant(0.5).dtype == "float32"  # Theano's custom autocast: exact in float32
        assert T.matrix().dtype == "float64"
    finally:
        theano.config.floatX = old
    assert T.constant(0.5).dtype == "float32"


def test_variable_has_no_len_or_iter():
    # (truth values follow Theano's rule: tests/tensor/test_truth.py)
    x = T.dvector("x")
    with pytest.raises(TypeError, match="len"):
        len(x)
    with pytest.raises(TypeError, match="iterated"):
        iter(x)
