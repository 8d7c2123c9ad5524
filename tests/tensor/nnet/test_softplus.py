"""T.nnet.softplus: log(1 + exp(x)) with Theano 1.0's bounds, natively inline."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor.nnet.softplus import BOUNDS
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, check_native_vs_reference,
                           compile_and_run, here, make_rng, rand)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_bounds(dtype):
    x = T.vector("x", dtype=dtype)
    lo, hi = BOUNDS[dtype]
    v = np.array([lo - 1, lo + 1, -20.0, -1.0, 0.0, 1.0, hi - 0.5, hi + 0.5, 1e4, -1e4], dtype=dtype)
    got = compile_and_run([x], T.nnet.softplus(x), [v])
    assert got.dtype == dtype
    want = np.logaddexp(0, v.astype("float64"))
    want[0] = want[-1] = 0.0  # below lo: 0
    want[7:9] = v[7:9]  # above hi: x itself (Theano's float64 bound 16 leaves out exp(-16) ~ 1e-7)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-14, atol=1e-44)  # subnormals
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_vs_reference(dtype):
    rng = make_rng(5)
    x = T.matrix("x", dtype=dtype)
    lo, hi = BOUNDS[dtype]
    for shape in [(1, 1), (4, 9), (31, 17)]:
        v = rand(shape, dtype, rng, -40, 40)
        check_native_vs_reference([x], [T.nnet.softplus(x), T.nnet.softplus(x * 2 - 1) * x], [v],
                                  rtol=2e-6 if dtype == "float32" else 1e-13)
    edge = np.array([[lo - 1, lo, lo + 1, hi - 1e-3, hi, hi + 1e-3, 0.0, -0.0, 1e-30],
                     [np.inf, -np.inf, np.nan, 1e30, -1e30, 1.0, -1.0, 30.0, -30.0]], dtype=dtype)
    check_native_vs_reference([x], T.nnet.softplus(x), [edge], rtol=2e-6 if dtype == "float32" else 1e-13, atol=0)


def test_contract_and_grad():
    assert_op_contract(T.nnet.softplus, [rand((3, 4), low=-5, high=5)])
    assert T.nnet.softplus(T.ivector()).dtype == "float64"
    check_grad(T.nnet.softplus, [(3, 4)], low=-5, high=5)


def test_errors():
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.nnet.softplus(T.dvector("a"), T.dvector("b"))
    assert_starts_with_location(e, loc)
