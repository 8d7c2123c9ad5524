"""Resident memory over many distinct compiles: it must stay flat.

Compiles N distinct small functions (each with its own constant, so none is a cache hit),
calls each once and drops it, and prints the resident set (VmRSS) after a warm-up and at
the end. A leak of native objects per compile (LLVM pass managers, pass builders, tuning
options, target machines, engines) shows as growth proportional to N.

    python benchmarks/check_compile_leak.py [--n 1000] [--warmup 100] [--level function|object]
                                            [--limit-kib 20]

--level function: symcnn.function(...) end to end (lowering, LLVM, engine); --level object:
codegen.jit.compile_object on distinct IR only (the optimiser and code emitter). The compile
cache is disabled for the run. Exit status 1 if the growth per compile after the warm-up
exceeds --limit-kib.
"""
import argparse
import gc
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ["SYMCNN_CACHE_DIR"] = "off"


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def compile_function(k):
    import numpy as np
    import symcnn
    import symcnn.tensor as T
    x = T.vector("x")
    f = symcnn.function([x], T.tanh(x * (1.0 + k * 1e-4)) + k, mode="native")
    out = f(np.ones(8, dtype="float32"))
    assert out.shape == (8,)


def compile_ir(k):
    from codegen import jit
    header = jit.module_header()
    ir_text = (f'target triple = "{header[0]}"\ntarget datalayout = "{header[1]}"\n'
               f"define double @f{k}(double %x) {{\n  %y = fmul double %x, {float(k) + 0.5:e}\n"
               f"  %z = fadd double %y, {float(k):e}\n  ret double %z\n}}\n")
    assert jit.compile_object(ir_text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--level", choices=("function", "object"), default="function")
    p.add_argument("--limit-kib", type=float, default=20.0,
                   help="largest acceptable growth per compile after the warm-up (KiB)")
    args = p.parse_args()
    step = compile_function if args.level == "function" else compile_ir
    for k in range(args.warmup):
        step(k)
    gc.collect()
    start = rss_kib()
    marks = []
    for k in range(args.warmup, args.warmup + args.n):
        step(k)
        if (k - args.warmup + 1) % max(1, args.n // 5) == 0:
            gc.collect()
            marks.append((k - args.warmup + 1, rss_kib()))
    gc.collect()
    end = rss_kib()
    per = (end - start) / args.n
    print(f"level={args.level}: RSS after {args.warmup} warm-up compiles {start / 1024:.1f} MiB")
    for n, r in marks:
        print(f"  +{n:5d} compiles: {r / 1024:.1f} MiB (+{(r - start) / 1024:.1f} MiB)")
    print(f"growth over {args.n} distinct compiles: {(end - start) / 1024:.1f} MiB = {per:.1f} KiB per compile "
          f"(limit {args.limit_kib} KiB)")
    return 0 if per <= args.limit_kib else 1


if __name__ == "__main__":
    sys.exit(main())
