"""Products in a scan step whose right operand is a non-sequence: B packed once before the loop
(dot.prepack_invariant_operands, prepacked.pack_b / emit_gemm_packed_b), against the reference."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference, make_rng, rand
from tests.helpers import target  # noqa: F401 (a fixture: one run per target)


def _scan_products(step, dtype):
    """scan over X (steps, m, k) with the non-sequence W (k, n): per-step outputs of step(x, W)."""
    X = T.tensor3("X", dtype=dtype)
    W = T.matrix("W", dtype=dtype)
    out, _ = symcnn.scan(lambda x, w: step(x, w), sequences=[X], non_sequences=[W])
    return [X, W], out


def _packed_in_ir(fn):
    return "ppc.head" in fn.dump_llvm()   # the loop of prepacked.pack_b over K slices


STEPS = {
    "dot": lambda x, w: T.dot(x, w),
    "epilogue": lambda x, w: T.tanh(T.dot(x, w) + 1) * 2,
    "prologue_a": lambda x, w: T.dot(T.exp(x) * 0.5, w),
    "two_products": lambda x, w: T.dot(x, w) + T.dot(x * 2, w),
}


@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("m,k,n", [(32, 128, 512), (5, 3, 7), (13, 300, 70), (130, 17, 33), (1, 1, 1),
                                   (4, 0, 5)])
def test_non_sequence_right_operand(name, m, k, n, target):
    rng = make_rng(m * 7 + k + n)
    ins, out = _scan_products(STEPS[name], "float32")
    vals = [rand((3, m, k), "float32", rng), rand((k, n), "float32", rng)]
    fn, _ = check_native_vs_reference(ins, out, vals, rtol=1e-4, atol=1e-5)
    assert _packed_in_ir(fn.runner)


def test_float64_and_shapes_changing_between_calls():
    rng = make_rng(1)
    ins, out = _scan_products(STEPS["epilogue"], "float64")
    calls = [[rand((2, m, k), "float64", rng), rand((k, n), "float64", rng)]
             for m, k, n in [(7, 300, 9), (3, 5, 40), (20, 260, 1)]]
    fn, _ = check_native_vs_reference(ins, out, None, calls=calls, rtol=1e-10, atol=1e-12)
    assert _packed_in_ir(fn.runner)


def test_transposed_non_sequence_and_a_recurrence():
    # the LSTM's two products: h_{t-1} U (a state times a non-sequence) and g_t U.T
    rng = make_rng(2)
    X, U = T.tensor3("X"), T.matrix("U")
    h0 = T.matrix("h0")

    def step(x, h, u):
        return T.tanh(T.dot(h, u) + x) + T.dot(x, u.T).sum() * 0.01
    hs, _ = symcnn.scan(step, sequences=[X], outputs_info=[h0], non_sequences=[U])
    cost = hs[-1].sum()
    g = T.grad(cost, U)
    vals = [rand((6, 4, 9), "float32", rng), rand((9, 9), "float32", rng) * 0.5, rand((4, 9), "float32", rng)]
    fn, _ = check_native_vs_reference([X, U, h0], [hs, g], vals, rtol=1e-4, atol=1e-5)
    assert _packed_in_ir(fn.runner)


def test_large_product_on_two_threads(monkeypatch):
    # past options.gemm_min_parallel the product is split over the threads (B packed per part)
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", 2)
    rng = make_rng(3)
    ins, out = _scan_products(STEPS["epilogue"], "float32")
    calls = [[rand((2, m, 256), "float32", rng), rand((256, 300), "float32", rng)] for m in (64, 3, 251)]
    check_native_vs_reference(ins, out, None, calls=calls, rtol=1e-4, atol=1e-5)


def test_sequence_right_operand_is_packed_per_step():
    rng = make_rng(4)
    X, Y = T.tensor3("X"), T.tensor3("Y")
    out, _ = symcnn.scan(lambda x, y: T.dot(x, y), sequences=[X, Y])
    vals = [rand((3, 4, 5), "float32", rng), rand((3, 5, 6), "float32", rng)]
    fn, _ = check_native_vs_reference([X, Y], out, vals, rtol=1e-4, atol=1e-5)
    assert not _packed_in_ir(fn.runner)


def test_results_do_not_depend_on_prepacking(monkeypatch):
    # bit for bit: the packed panels and the order of every sum are the driver's
    rng = make_rng(5)
    ins, out = _scan_products(STEPS["dot"], "float32")
    vals = [rand((3, 33, 300), "float32", rng), rand((300, 70), "float32", rng)]
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "none")
    packed = symcnn.function(ins, out)(*vals)
    import codegen.kernels.scan as scan_kernel
    monkeypatch.setattr(scan_kernel, "prepack_invariant_operands", lambda *a: {})
    plain = symcnn.function(ins, out)
    assert not _packed_in_ir(plain.runner)
    np.testing.assert_array_equal(packed, plain(*vals))
