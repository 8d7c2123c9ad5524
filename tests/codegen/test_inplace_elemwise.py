"""An elementwise kernel overwriting a dead input reads that input through its output's pointer
(kernels/elemwise.py): results against the reference, for the input read once or twice, beside
broadcast and strided inputs, on every target and in the bounds-checking mode."""
import numpy as np
import pytest

import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, make_rng, rand
from tests.helpers import target  # noqa: F401 (a fixture: one run per target)


def _graphs(dtype):
    x = T.matrix("x", dtype=dtype)
    y = T.matrix("y", dtype=dtype)
    r = T.row("r", dtype=dtype)
    a = T.nnet.softmax(x)            # not elementwise: its buffer dies into the kernel below
    outs = [(T.tanh(a) * 2 - a * y) * x,                  # a read twice, beside contiguous inputs
            T.exp(T.nnet.softmax(y)) + r * y.T.T,         # a broadcast row
            T.nnet.softmax(x * 3) * x.T.T - T.nnet.softmax(y).T.T]   # a second dead input
    return [x, y, r], outs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 33), (17, 16), (0, 5), (40, 71)])
def test_overwriting_kernels_match_reference(dtype, shape, target):
    rng = make_rng(shape[0] * 100 + shape[1])
    ins, outs = _graphs(dtype)
    vals = [rand(shape, dtype, rng), rand(shape, dtype, rng), rand((1, shape[1]), dtype, rng)]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    fn, _ = check_native_vs_reference(ins, outs, vals, **tol)
    assert any("overwrites its dead input" in k.note for k in fn.kernels)


def test_overwriting_kernels_in_the_bounds_checking_mode():
    rng = make_rng(1)
    ins, outs = _graphs("float32")
    vals = [rand((5, 19), "float32", rng), rand((5, 19), "float32", rng), rand((1, 19), "float32", rng)]
    fn, _ = check_native_vs_reference(ins, outs, vals, rtol=1e-5, atol=1e-6, mode="boundscheck")
    assert any("overwrites its dead input" in k.note for k in fn.kernels)
