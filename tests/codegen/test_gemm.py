"""The packed GEMM emitter (codegen/microkernels/gemm.py) against numpy, called directly through a
small JIT harness (run-time shapes, strides, accumulate flag), and through Dot / FusedDot graphs."""
import ctypes
import itertools
import re

import llvmlite.binding as llvm
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llvmlite import ir

import symcnn
import symcnn.tensor as T
from codegen import irutil as U
from codegen import jit
from codegen import target as targets
from codegen.microkernels import gemm
from codegen.lower import Array
from tests.fuzz.strategies import examples
from tests.helpers import is_extra_target, target  # noqa: F401 (target: a fixture, one run per target)

SIZES = [1, 7, 16, 17, 31, 33, 50, 65, 129]
FEW_SIZES = [1, 7, 17, 33, 65]   # for the extra targets: every tile edge case of their widths


class _Ctx:
    """Just what emit_gemm uses of a lowering Context; scratch buffers come from arguments."""

    def __init__(self, module, builder, bufs):
        self.module, self.b, self.bufs = module, builder, list(bufs)

    def scratch(self, dtype, shape):
        return Array(dtype, self.bufs.pop(0), shape, b=self.b)


_FNS = {}
_MODULES = {}


def gemm_module(dtype):
    """The test harness's module (its IR) for the current target."""
    _compiled(dtype)
    return _MODULES[dtype, targets.current()]


def _compiled(dtype):
    """void f(A, B, C, Ap, Bp, M, N, K, a_rs, a_cs, b_rs, b_cs, c_rs, acc), for the current target"""
    t = targets.current()
    if (dtype, t) in _FNS:
        return _FNS[dtype, t]
    mod = ir.Module(name=f"gemm_test_{dtype}")
    mod.triple, mod.data_layout = jit.module_header()
    P, I64 = U.PTR, U.I64
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [P] * 5 + [I64] * 8 + [U.I1]), name="f")
    a, bm, c, ap, bp, M, N, K, ars, acs, brs, bcs, crs, acc = fn.args
    b = ir.IRBuilder(fn.append_basic_block())
    ctx = _Ctx(mod, b, [ap, bp])
    gemm.emit_gemm(ctx, dtype, M, N, K, gemm.Strided(dtype, a, ars, acs), gemm.Strided(dtype, bm, brs, bcs),
                   c, crs, acc)
    b.ret_void()
    ref = llvm.parse_assembly(str(mod))
    ref.verify()
    jit.optimize(ref)
    engine = llvm.create_mcjit_compiler(ref, t.machine(jit=True))
    engine.finalize_object()
    _MODULES[dtype, t] = mod
    cfn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 5 + [ctypes.c_int64] * 8 + [ctypes.c_bool]))(
        engine.get_function_address("f"))
    _FNS[dtype, t] = (engine, cfn)
    return _FNS[dtype, t]


def _aligned(n, dtype):
    size = np.dtype(dtype).itemsize
    raw = np.zeros(n + 64 // size, dtype)
    off = (-raw.ctypes.data % 64) // size
    return raw[off:off + n]


def run_gemm(A, B, C, accumulate):
    """C (+)= A @ B natively (A, B any strides; C rows contiguous)."""
    dtype = str(C.dtype)
    _, f = _compiled(dtype)
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    M, K = A.shape
    N = B.shape[1]
    key = ("bufs", dtype, targets.current())
    if key not in _FNS:
        _FNS[key] = (_aligned(max(1, MC * KC), dtype), _aligned(max(1, NC * KC), dtype))
    ap, bp = _FNS[key]
    size = C.itemsize
    assert C.strides[1] == size or C.size == 0
    f(A.ctypes.data, B.ctypes.data, C.ctypes.data, ap.ctypes.data, bp.ctypes.data, M, N, K,
      A.strides[0] // size, A.strides[1] // size, B.strides[0] // size, B.strides[1] // size,
      C.strides[0] // size, accumulate)


def _check(m, n, k, dtype, rng, accumulate=False, trans_a=False, trans_b=False, step=1):
    A = rng.standard_normal((k, m) if trans_a else (m, k * step)).astype(dtype)
    A = A.T if trans_a else A[:, ::step]
    B = rng.standard_normal((n, k) if trans_b else (k * step, n)).astype(dtype)
    B = B.T if trans_b else B[::step]
    big = rng.standard_normal((m, n + 3)).astype(dtype)
    C = big[:, 1:n + 1]             # row stride n + 3, and a guard column either side
    before = big.copy()
    want = A.astype("float64") @ B.astype("float64") + (C.astype("float64") if accumulate else 0)
    run_gemm(A, B, C, accumulate)
    tol = 2e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol * np.sqrt(k + 1),
                               err_msg=f"m={m} n={n} k={k} {dtype} acc={accumulate}")
    np.testing.assert_array_equal(big[:, 0], before[:, 0])
    np.testing.assert_array_equal(big[:, n + 1:], before[:, n + 1:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tile_edges(dtype, target):
    rng = np.random.default_rng(0)
    sizes = FEW_SIZES if is_extra_target(target) else SIZES
    for m, n, k in itertools.product(sizes, sizes, sizes):
        _check(m, n, k, dtype, rng, accumulate=bool((m + n + k) % 2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_columns_take_groups_of_row_panels(dtype, target):
    """Column blocks narrower than the full tile run a micro-kernel over several row panels at once
    (gemm.panel_group: as many accumulators as the full tile), the panels left over past whole groups
    one at a time: rows of whole groups, of groups and leftovers, of one short panel, against numpy."""
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    _, f = _compiled(dtype)
    assert gemm.panel_group(dtype, 1) == NV > 1
    ir_text = str(gemm_module(dtype))
    assert re.search(rf"define [^@]*@\"?symcnn_gemm_ukr_{dtype}_{MR}x1x{L}_g{NV}\"?\(", ir_text)
    rng = np.random.default_rng(3)
    for m in (NV * MR, NV * MR + 1, 3 * NV * MR + 2 * MR - 1, MR - 1, MC + NV * MR + 5):
        for n in (1, L - 1, L + 3, NV * L + L - 2):
            _check(m, n, KC + 3, dtype, rng, accumulate=bool(m % 2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_and_transposed(dtype, target):
    rng = np.random.default_rng(1)
    for m, n, k in [(7, 50, 33), (65, 17, 129), (1, 65, 7), (50, 1, 16), (33, 129, 1)]:
        for ta, tb, step in [(True, False, 1), (False, True, 1), (True, True, 1), (False, False, 2)]:
            for acc in (False, True):
                _check(m, n, k, dtype, rng, acc, ta, tb, step)


def _dim(edges):
    """A size near one of the blocking edges (a tile or block size, +-1, or a small odd one)."""
    return st.one_of(st.integers(1, 40), st.sampled_from(sorted({max(1, e + d) for e in edges for d in (-1, 0, 1)})))


@st.composite
def _transposed_cases(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    m = draw(_dim([MR, MC, MC + MR, 2 * MC]))
    n = draw(_dim([L, NV * L, 2 * NV * L + L, NC]))
    k = draw(_dim([L, KC, KC + L, 2 * KC]))
    ta, tb = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return dtype, m, n, k, ta, tb, draw(st.booleans()), draw(st.integers(0, 2 ** 16))


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_transposed_cases())
def test_transposed_operands_across_blocks(target, case):
    """Transposed operands (unit row stride: X.T) are packed along memory by their own loops
    (register-transposed L x L blocks for B): every tile edge, K slice and M/N block against numpy."""
    dtype, m, n, k, ta, tb, acc, seed = case
    _check(m, n, k, dtype, np.random.default_rng(seed), acc, ta, tb)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocking(dtype, target):
    """Several K slices, M blocks and N blocks (and sizes past each block)."""
    rng = np.random.default_rng(2)
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    for m, n, k in [(MC + 7, 70, KC * 2 + 3), (13, NC + 40, KC + 1), (MC * 2, NC, KC), (250, 300, 600)]:
        for acc in (False, True):
            _check(m, n, k, dtype, rng, acc)


def test_empty():
    rng = np.random.default_rng(3)
    for m, n, k in [(0, 5, 3), (4, 0, 3), (4, 5, 0)]:
        for acc in (False, True):
            _check(m, n, k, "float32", rng, acc)


def test_lenet_shapes(target):
    rng = np.random.default_rng(4)
    for m, n, k in [(20, 576, 25), (50, 64, 500), (25, 20, 576), (500, 50, 64), (500, 64, 50), (500, 500, 800),
                    (500, 10, 500), (500, 800, 500), (800, 500, 500)]:
        _check(m, n, k, "float32", rng)


def test_dot_graphs_against_numpy():
    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64"):
        A, B = T.matrix("A", dtype=dtype), T.matrix("B", dtype=dtype)
        At, Bt = T.matrix("At", dtype=dtype), T.matrix("Bt", dtype=dtype)
        f = symcnn.function([A, B, At, Bt], [T.dot(A, B), T.dot(At.T, Bt.T), T.tanh(T.dot(A * 2, B) + 1)],
                            mode="native")
        for m, n, k in [(1, 1, 1), (7, 50, 33), (129, 65, 17), (16, 31, 300)]:
            a = rng.standard_normal((m, k)).astype(dtype)
            bb = rng.standard_normal((k, n)).astype(dtype)
            at = rng.standard_normal((k, m)).astype(dtype)
            bt = rng.standard_normal((n, k)).astype(dtype)
            tol = 1e-4 if dtype == "float32" else 1e-10
            got = f(a, bb, at, bt)
            np.testing.assert_allclose(got[0], a @ bb, rtol=tol, atol=tol)
            np.testing.assert_allclose(got[1], at.T @ bt.T, rtol=tol, atol=tol)
            np.testing.assert_allclose(got[2], np.tanh(2 * a @ bb + 1), rtol=tol, atol=tol)
