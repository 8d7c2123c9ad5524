"""The plural constructors, TensorConstant.value, zeros_like(), flatten(outdim=),
iteration over vectors of known length, get_scalar_constant_value and NoneConst."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor.constructors import plural_names


def test_every_plural_constructor_makes_its_singulars_type():
    for many, one in plural_names():
        made = getattr(T, many)("a", "b")
        assert [v.name for v in made] == ["a", "b"]
        assert made[0].type == getattr(T, one)().type
    assert T.iscalars("x").name == "x" and T.iscalars("x").dtype == "int32"
    assert [v.name for v in T.dmatrices("xy")] == ["x", "y"]  # Theano splits one string into letters
    three = T.fvectors(3)
    assert len(three) == 3 and three[0].dtype == "float32" and three[0] is not three[1]
    assert isinstance(T.lscalars(1), list)
    assert T.matrices.__name__ == "matrices" and T.tensor4s.__name__ == "tensor4s"


def test_constant_value_zeros_like_and_flatten_outdim():
    c = T.constant(np.arange(3))
    np.testing.assert_array_equal(c.value, [0, 1, 2])
    x = T.dtensor3("x")
    z = x.zeros_like()
    assert z.dtype == "float64" and z.ndim == 3
    assert x.ones_like(dtype="int32").dtype == "int32"
    assert T.flatten(x, outdim=2).ndim == 2 and x.flatten(outdim=2).ndim == 2
    with pytest.raises(ValueError, match="not both"):
        T.flatten(x, ndim=2, outdim=2)
    xv = np.arange(24.0).reshape(2, 3, 4)
    assert T.flatten(x, outdim=2).eval({x: xv}).shape == (2, 12)
    assert z.eval({x: xv}).sum() == 0


def test_iterating_a_vector_of_known_length():
    x = T.dtensor3("x")
    dims = list(x.shape)
    assert len(dims) == 3
    xv = np.zeros((2, 3, 4))
    assert [int(d.eval({x: xv})) for d in dims] == [2, 3, 4]
    a, b = T.constant(np.array([5, 7]))
    assert int(a.eval()) == 5 and int(b.eval()) == 7
    with pytest.raises(TypeError, match="iterated"):
        iter(T.dvector("v"))


def test_get_scalar_constant_value():
    x = T.tensor4("x", shape=(2, 3, None, None))
    gscv = T.get_scalar_constant_value
    assert gscv(x.shape[1] * 2 + 1) == 7
    assert gscv(T.constant(np.full((2, 2), 3.0))) == 3.0
    assert gscv(T.cast(T.constant(2.7), "int32")) == 2
    assert gscv(T.constant(np.array([4, 9]))[1]) == 9
    assert gscv(5) == 5
    for bad in (x.shape[2], T.dscalar("s"), T.constant(np.array([1.0, 2.0])), None):
        with pytest.raises(T.NotScalarConstantError):
            gscv(bad)
    with pytest.raises(T.NotScalarConstantError):
        gscv(T.constant(2) + 1, only_process_constants=True)
    with pytest.raises(T.NotScalarConstantError):
        gscv(T.constant(2) + 1, elemwise=False)
    with pytest.raises(T.EmptyConstantError):
        gscv(T.constant(np.zeros(0)))


def test_none_const():
    assert T.NoneConst.data is None and str(T.NoneConst) == "NoneConst"
    with pytest.raises(TypeError):
        T.NoneConst.type.filter(3)
