"""A scan step's results computed straight into their rows of the state and per-step output
buffers (kernels/scan.py): the same results as the reference and as copying them there, and
fewer copies in the code."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, make_rng, rand


def _memcpys(fn):
    return sum("call" in line and "llvm.memcpy" in line for line in fn.runner.dump_llvm().splitlines())


def _graphs():
    X, W, h0 = T.tensor3("X"), T.matrix("W"), T.tensor3("h0")
    s0 = T.matrix("s0")

    def step(x, h_1, h_2, s, w):
        pre = T.dot(h_1, w) + x                         # a FusedDot, output per step
        h = T.tanh(pre) * 0.5 + h_2 * 0.1               # an Elemwise, a state with taps -1, -2
        parts = T.concatenate([h, x * 2], axis=1)       # a Join, output per step
        return [h, s + T.dot(x, w).sum(), pre, parts]
    (hs, ss, pres, parts), _ = symcnn.scan(step, sequences=[X],
                                           outputs_info=[dict(initial=h0, taps=[-1, -2]), s0, None, None],
                                           non_sequences=[W])
    back, _ = symcnn.scan(lambda x, w: T.dot(x, w) * 2, sequences=[X], non_sequences=[W], go_backwards=True)
    cost = hs[-1].sum() + (pres ** 2).sum() + parts.mean() + back.sum() + ss[-1].sum()
    ins = [X, W, h0, s0]
    return ins, [hs, ss, pres, parts, back] + T.grad(cost, [X, W, h0])


def _values(rng, steps=4, rows=3, dim=5):
    return [rand((steps, rows, dim), "float32", rng), rand((dim, dim), "float32", rng) * 0.5,
            rand((2, rows, dim), "float32", rng), rand((rows, dim), "float32", rng)]


def test_rows_written_in_place_match_reference_and_copies(monkeypatch):
    rng = make_rng(0)
    ins, outs = _graphs()
    calls = [_values(rng), _values(rng, steps=1, rows=1), _values(rng, steps=6, rows=2)]
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")
    fn, results = check_native_vs_reference(ins, outs, None, calls=calls, rtol=1e-5, atol=1e-6)
    import codegen.kernels.scan as scan_kernel
    monkeypatch.setattr(scan_kernel, "_WRITES_ONCE", ())
    copying = symcnn.function(ins, outs)
    assert _memcpys(fn) < _memcpys(copying)
    for vals, got in zip(calls, results):
        for a, b in zip(got, copying(*vals)):
            np.testing.assert_array_equal(a, b)


def test_step_result_of_the_wrong_shape_is_an_error():
    # the step's result is computed into a row of the initial state's shape: checked first
    X, h0 = T.tensor3("X"), T.matrix("h0")
    hs, _ = symcnn.scan(lambda x, h: T.tanh(x + h), sequences=[X], outputs_info=[h0])
    rng = make_rng(1)
    fn = symcnn.function([X, h0], hs)
    with pytest.raises(ValueError):
        fn(rand((3, 2, 4), "float32", rng), rand((1, 4), "float32", rng))
