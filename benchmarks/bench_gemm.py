"""GFLOP/s of the packed GEMM (codegen/microkernels/gemm.py) vs numpy's np.dot, same run, one thread.

    python benchmarks/bench_gemm.py [--reps 30]

Rows: raw emitter (JIT harness of tests/codegen/test_gemm.py, C overwritten) and the compiled
symcnn Dot graph for the same shapes; median of `reps` runs of thread CPU time (the host may be shared).
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from timing import median_seconds  # noqa: E402

import numpy as np  # noqa: E402

import symcnn  # noqa: E402
import symcnn.tensor as T  # noqa: E402
import ctypes  # noqa: E402

import llvmlite.binding as llvm  # noqa: E402
from llvmlite import ir  # noqa: E402

from codegen import irutil as U  # noqa: E402
from codegen import jit  # noqa: E402
from codegen.microkernels import gemm  # noqa: E402
from tests.codegen.test_gemm import _aligned, _Ctx  # noqa: E402

_KEEP = []


def looped_gemm():
    """fn(reps, A, B, C, Ap, Bp, M, N, K, ars, acs, brs, bcs, crs): `reps` overwriting float32 GEMMs
    in one native call (so the timing has no Python/ctypes overhead)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = ir.Module(name="bench_gemm")
    mod.triple, mod.data_layout = jit.module_header()
    P, I64 = U.PTR, U.I64
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [I64] + [P] * 5 + [I64] * 8), name="f")
    reps, a, bm, c, ap, bp, M, N, K, ars, acs, brs, bcs, crs = fn.args
    b = ir.IRBuilder(fn.append_basic_block())
    with U.for_range(b, reps, name="rep"):
        gemm.emit_gemm(_Ctx(mod, b, [ap, bp]), "float32", M, N, K, gemm.Strided("float32", a, ars, acs),
                       gemm.Strided("float32", bm, brs, bcs), c, crs, False)
    b.ret_void()
    ref = llvm.parse_assembly(str(mod))
    jit.optimize(ref)
    from codegen import target as targets   # config.target_cpu / SYMCNN_FLAGS choose the target
    engine = llvm.create_mcjit_compiler(ref, targets.current().machine(jit=True))
    engine.finalize_object()
    _KEEP.append(engine)
    return ctypes.CFUNCTYPE(None, ctypes.c_int64, *([ctypes.c_void_p] * 5 + [ctypes.c_int64] * 8))(
        engine.get_function_address("f"))

SHAPES = [  # (label, M, K, N, transpose A, transpose B)
    ("square 512", 512, 512, 512, False, False),
    ("square 1024", 1024, 1024, 1024, False, False),
    ("hidden fwd 500x800 . 800x500", 500, 800, 500, False, False),
    ("hidden gW 800x500 . 500x500 (A^T)", 800, 500, 500, True, False),
    ("hidden gX 500x500 . 500x800 (B^T)", 500, 500, 800, False, True),
    ("conv0 fwd 20x25 . 25x576", 20, 25, 576, False, False),
    ("conv0 gW 25x576 . 576x20", 25, 576, 20, False, False),
    ("conv1 fwd 50x500 . 500x64", 50, 500, 64, False, False),
    ("conv1 gX 500x50 . 50x64 (A^T)", 500, 50, 64, True, False),
    ("conv1 gW 500x64 . 64x50", 500, 64, 50, False, False),
    ("logreg 500x500 . 500x10", 500, 500, 10, False, False),
]


def median_s(fn, reps):
    return median_seconds(fn, reps, warmup=2, clock=time.thread_time)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    # one thread: the calling thread's CPU time would miss a worker's share of a split product
    symcnn.config.num_threads = 1
    rng = np.random.default_rng(0)
    A_, B_ = T.matrix("A"), T.matrix("B")
    dotf = symcnn.function([A_, B_], T.dot(A_, B_), mode="native")
    native = looped_gemm()
    L, MR, NV, KC, MC, NC = gemm.params("float32")
    ap, bp = _aligned(MC * KC, "float32"), _aligned(NC * KC, "float32")
    print("| shape | GEMM (native loop) GFLOP/s | symcnn Dot GFLOP/s | np.dot GFLOP/s |")
    print("| --- | --- | --- | --- |")
    for label, M, K, N, ta, tb in SHAPES:
        A = rng.standard_normal((K, M)).astype("float32").T if ta else rng.standard_normal((M, K)).astype("float32")
        B = rng.standard_normal((N, K)).astype("float32").T if tb else rng.standard_normal((K, N)).astype("float32")
        C = np.empty((M, N), "float32")
        reps = args.reps if M * N * K > 1e6 else args.reps * 20
        inner = max(1, int(2e7 // (2 * M * N * K)))

        cargs = [A.ctypes.data, B.ctypes.data, C.ctypes.data, ap.ctypes.data, bp.ctypes.data, M, N, K,
                A.strides[0] // 4, A.strides[1] // 4, B.strides[0] // 4, B.strides[1] // 4, N]

        def ours():
            native(inner, *cargs)

        def numpy_():
            for _ in range(inner):
                np.dot(A, B, out=C)

        def graph():
            for _ in range(inner):
                dotf(A, B)
        flops = 2.0 * M * N * K * inner
        g = flops / median_s(ours, reps) / 1e9
        d = flops / median_s(graph, reps) / 1e9
        n = flops / median_s(numpy_, reps) / 1e9
        print(f"| {label} | {g:.1f} | {d:.1f} | {n:.1f} |")


if __name__ == "__main__":
    main()
