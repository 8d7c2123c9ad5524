"""config.cast_policy: the result dtypes of mixed operations under Theano's 'custom' (the
default) and 'numpy+floatX' policies, with floatX float32 and float64. Each expected dtype
is worked out by hand from Theano's rules:
  custom:        Python int -> the smallest int dtype holding it; Python float -> floatX
                 (with floatX=float64, float32 when float32 holds it exactly); dtypes combine
                 by numpy's array rule.
  numpy+floatX:  Python int -> int64; Python float -> floatX; dtypes combine by numpy's
                 array rule, except that a float64 result is float32 when floatX is float32
                 and no operand is float64.
  both:          int / int -> floatX; transcendental functions of int32/int64 -> float64."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.configparser import change_flags
from symcnn.tensor.type import upcast
from tests.helpers import check_native_vs_reference

POLICIES = [("custom", "float32"), ("custom", "float64"), ("numpy+floatX", "float32"), ("numpy+floatX", "float64")]

# expression, dtype under each of POLICIES (in order)
CASES = [
    ("fvector * 2", lambda: T.fvector() * 2, ("float32", "float32", "float32", "float64")),
    ("ivector * 2", lambda: T.ivector() * 2, ("int32", "int32", "int64", "int64")),
    ("bvector + 1", lambda: T.bvector() + 1, ("int8", "int8", "int64", "int64")),
    ("lvector + 2**40", lambda: T.lvector() + 2 ** 40, ("int64", "int64", "int64", "int64")),
    ("ivector * 1.5", lambda: T.ivector() * 1.5, ("float64", "float64", "float32", "float64")),
    ("bvector * 1.5", lambda: T.bvector() * 1.5, ("float32", "float32", "float32", "float64")),
    ("bvector * 0.1", lambda: T.bvector() * 0.1, ("float32", "float64", "float32", "float64")),
    ("fvector + 0.1", lambda: T.fvector() + 0.1, ("float32", "float64", "float32", "float64")),
    ("fvector + 0.5", lambda: T.fvector() + 0.5, ("float32", "float32", "float32", "float64")),
    ("fvector * lvector", lambda: T.fvector() * T.lvector(), ("float64", "float64", "float32", "float64")),
    ("fvector * ivector", lambda: T.fvector() * T.ivector(), ("float64", "float64", "float32", "float64")),
    ("fvector * dvector", lambda: T.fvector() * T.dvector(), ("float64",) * 4),
    ("fvector * float64(2)", lambda: T.fvector() * np.float64(2), ("float64",) * 4),
    ("ivector / ivector", lambda: T.ivector() / T.ivector(), ("float32", "float64", "float32", "float64")),
    ("lscalar / 2", lambda: T.lscalar() / 2, ("float32", "float64", "float32", "float64")),
    ("ivector / fscalar", lambda: T.ivector() / T.fscalar(), ("float64", "float64", "float32", "float64")),
    ("bvector / fscalar", lambda: T.bvector() / T.fscalar(), ("float32", "float32", "float32", "float32")),
    ("ivector // 2", lambda: T.ivector() // 2, ("int32", "int32", "int64", "int64")),
    ("exp(ivector)", lambda: T.exp(T.ivector()), ("float64",) * 4),
    ("exp(bvector)", lambda: T.exp(T.bvector()), ("float32",) * 4),
    ("dot(fmatrix, lmatrix)", lambda: T.dot(T.fmatrix(), T.lmatrix()), ("float64", "float64", "float32", "float64")),
    ("arange(lscalar, fscalar)", lambda: T.arange(T.lscalar(), T.fscalar()),
     ("float64", "float64", "float32", "float64")),
    ("arange(iscalar, 5)", lambda: T.arange(T.iscalar(), 5), ("int64",) * 4),
    ("constant(3)", lambda: T.constant(3), ("int8", "int8", "int64", "int64")),
    ("constant(0.1)", lambda: T.constant(0.1), ("float32", "float64", "float32", "float64")),
    ("constant(True)", lambda: T.constant(True), ("bool",) * 4),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("name,build,dtypes", CASES, ids=[c[0] for c in CASES])
def test_result_dtypes(policy, name, build, dtypes):
    with change_flags(cast_policy=policy[0], floatX=policy[1]):
        got = build().dtype
    assert got == dtypes[POLICIES.index(policy)], f"{name} under {policy}"


def test_upcast_keeps_float32_only_without_an_explicit_float64():
    with change_flags(cast_policy="numpy+floatX", floatX="float32"):
        assert upcast("int64", "float32") == "float32"
        assert upcast("int32", "int16", "float32") == "float32"
        assert upcast("float32", "float64") == "float64"
        assert upcast("int64", "float64") == "float64"
        assert upcast("int32", "int64") == "int64"
    assert upcast("int64", "float32") == "float64"  # 'custom': numpy's rule


def test_default_policy_is_custom_and_only_known_policies_are_accepted():
    assert symcnn.config.cast_policy == "custom"
    with pytest.raises(ValueError, match="cast_policy"):
        symcnn.config.cast_policy = "numpy"
    assert symcnn.config.cast_policy == "custom"


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p[0]}-{p[1]}")
def test_values_native_vs_reference(policy):
    # graphs built under the policy compute in the dtypes chosen for them, natively and in numpy
    with change_flags(cast_policy=policy[0], floatX=policy[1]):
        i, j = T.ivector("i"), T.ivector("j")
        f, l = T.fvector("f"), T.lvector("l")
        outs = [i / j, i * 1.5, f * l, f + 0.1, i // 2, (i * 2) + l]
        rng = np.random.default_rng(0)
        values = [rng.integers(-2 ** 30, 2 ** 30, 9).astype("int32"), rng.integers(1, 1000, 9).astype("int32"),
                  rng.standard_normal(9).astype("float32"), rng.integers(-2 ** 40, 2 ** 40, 9)]
        _, (got,) = check_native_vs_reference([i, j, f, l], outs, values, rtol=1e-6, atol=0)
    # int / int is divided in float64 and rounded once to floatX, as Theano's true_div
    np.testing.assert_array_equal(got[0], (values[0].astype("float64") / values[1]).astype(policy[1]))
