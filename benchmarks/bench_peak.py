"""The float32 FMA throughput this machine gives now, on 1 and on N threads: the ceiling a
benchmark's GFLOP/s can be read against, measured rather than computed from a clock.

    python benchmarks/bench_peak.py [--threads 2] [--seconds 0.5] [--rounds 7]

A JIT-compiled loop keeps 24 independent vector FMA chains busy (the target's widest float32
vectors, codegen.target); each thread runs it for about `seconds`, all threads at once, and the
best of `rounds` is reported. On a shared virtual machine the figure moves with the neighbours'
load; codegen/ceiling.py's estimate (lanes x 2 FMA units x clock x cores) is what the hardware
could do, this is what it does.
"""
import argparse
import ctypes
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import llvmlite.binding as llvm  # noqa: E402

from codegen.target import current  # noqa: E402

CHAINS = 24   # independent accumulators: FMA latency x units, with room


def probe_ir(lanes, triple, layout):
    vt = f"<{lanes} x float>"
    accs = "\n".join(f"  %a{i} = phi {vt} [ zeroinitializer, %entry ], [ %n{i}, %loop ]" for i in range(CHAINS))
    fmas = "\n".join(f"  %n{i} = call {vt} @llvm.fma.v{lanes}f32({vt} %x, {vt} %y, {vt} %a{i})" for i in range(CHAINS))
    total = "\n".join(f"  %s{i} = fadd {vt} %s{i - 1}, %n{i}" for i in range(1, CHAINS))
    return f"""
target triple = "{triple}"
target datalayout = "{layout}"
declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})
define float @probe(i64 %iters, float %xs, float %ys) {{
entry:
  %x0 = insertelement {vt} undef, float %xs, i32 0
  %x = shufflevector {vt} %x0, {vt} undef, <{lanes} x i32> zeroinitializer
  %y0 = insertelement {vt} undef, float %ys, i32 0
  %y = shufflevector {vt} %y0, {vt} undef, <{lanes} x i32> zeroinitializer
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
{accs}
{fmas}
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %iters
  br i1 %c, label %loop, label %done
done:
  %s0 = fadd {vt} zeroinitializer, %n0
{total}
  %r = extractelement {vt} %s{CHAINS - 1}, i32 0
  ret float %r
}}
"""


def compile_probe():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    t = current()
    lanes = t.lanes("float32")
    tm = t.machine(jit=True, opt=3)
    mod = llvm.parse_assembly(probe_ir(lanes, tm.triple, str(tm.target_data)))
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    fn = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64, ctypes.c_float, ctypes.c_float)(
        engine.get_function_address("probe"))
    return fn, lanes, engine, t


def run(fn, iters, threads):
    """Wall seconds for `threads` threads each running the probe for `iters` iterations at once."""
    start = threading.Barrier(threads + 1)
    work = [threading.Thread(target=lambda: (start.wait(), fn(iters, 1.0, 0.5))) for _ in range(threads)]
    for w in work:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in work:
        w.join()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    fn, lanes, engine, target = compile_probe()
    per_iter = CHAINS * lanes * 2   # flops of one loop iteration
    iters = 1 << 16
    while run(fn, iters, 1) < args.seconds / 4:   # calibrate on one thread
        iters *= 2
    iters = int(iters * args.seconds / run(fn, iters, 1))
    print(f"{target.isa()} target ({lanes} float32 lanes), {CHAINS} FMA chains, {iters} iterations per thread")
    counts = sorted({1, args.threads})
    best = {n: 0.0 for n in counts}
    for _ in range(args.rounds):   # the counts interleaved, so both see the same neighbours
        for n in counts:
            best[n] = max(best[n], n * iters * per_iter / run(fn, iters, n) / 1e9)
    for n in counts:
        print(f"{n} thread{'s' if n > 1 else ''}: {best[n]:.0f} GFLOP/s (best of {args.rounds})")
    if len(counts) > 1:
        print(f"scaling {counts[-1]} / 1 thread: {best[counts[-1]] / best[1]:.2f}x")


if __name__ == "__main__":
    main()
