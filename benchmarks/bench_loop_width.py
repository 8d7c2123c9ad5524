"""Elementwise loops vectorised at 512 vs 256 bits on an AVX-512 host (codegen.options.full_width_loops).

LLVM's tuning for Intel AVX-512 CPUs prefers 256-bit vectors in the loop vectoriser; symcnn turns that
off by default. This measures the LeNet train step's elementwise kernels (the SGD update, the tanh
derivative epilogue, exp/tanh) both ways, alternating, on one thread, as the median of the thread's CPU
time (robust to other processes on a shared machine).

    python benchmarks/bench_loop_width.py [--reps 200]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

import symcnn  # noqa: E402
import symcnn.tensor as T  # noqa: E402
from codegen import target as targets  # noqa: E402
from codegen.options import options  # noqa: E402

CASES = {   # name: (builder, shapes) -- the LeNet train step's elementwise kernels at batch 500
    "SGD update W - 0.1*g (800x500)": (lambda a, b: a - 0.1 * b, (800, 500)),
    "tanh derivative g*(1-y^2) (500x500)": (lambda a, b: a * (1 - b * b), (500, 500)),
    "tanh(x) (500x500)": (lambda a, b: T.tanh(a) + b, (500, 500)),
    "exp(x) (500x500)": (lambda a, b: T.exp(a) * b, (500, 500)),
}


def compiled(full_width):
    options.full_width_loops = full_width   # (resolved targets are kept per setting)
    fns = {}
    for name, (build, shape) in CASES.items():
        a, b = T.matrix("a"), T.matrix("b")
        fns[name] = symcnn.function([a, b], build(a, b), mode="native")
        fns[name].wait()
    return targets.current(), fns


def cpu_s(fn, args):
    t0 = time.thread_time()
    fn(*args)
    return time.thread_time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    os.environ["SYMCNN_CACHE_DIR"] = "none"
    symcnn.config.num_threads = 1
    t512, f512 = compiled(True)
    t256, f256 = compiled(False)
    print(f"# host cpu {t512.cpu}; loop vectors {t512.loop_vector_bytes * 8} vs {t256.loop_vector_bytes * 8} bits; "
          f"median thread CPU time of {args.reps} alternating calls, one thread")
    print("| kernel | 512-bit loops (us) | 256-bit loops (us) | 512 / 256 |")
    print("| --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for name, (_, shape) in CASES.items():
        vals = [rng.uniform(-2, 2, shape).astype("float32") for _ in range(2)]
        t = {512: [], 256: []}
        for _ in range(args.reps):
            t[512].append(cpu_s(f512[name], vals))
            t[256].append(cpu_s(f256[name], vals))
        m5, m2 = statistics.median(t[512]) * 1e6, statistics.median(t[256]) * 1e6
        print(f"| {name} | {m5:.0f} | {m2:.0f} | {m5 / m2:.2f} |")


if __name__ == "__main__":
    main()
