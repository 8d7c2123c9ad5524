"""Uniform float32 numbers per second: symcnn's native Philox4x32-10 draw vs numpy's Generator.

    python benchmarks/bench_random.py [--n 16777216] [--reps 15]

Rows: a compiled `MRG_RandomStreams(...).uniform((n,), dtype='float32')` (native, threads 1 and 2,
i.e. both cores of the benchmark machine), the same draw of standard normals, and numpy's
`Generator.random(n, dtype=float32, out=...)` (PCG64, one thread) and `standard_normal`.
"kernel": the draw kernel alone (mode='profile', mean over the calls); "call": a whole call of the
function, which also copies its sample out into a new array. Calls: median of `reps` wall-clock
times (the host may be shared: run it at a quiet moment).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from timing import median_seconds  # noqa: E402

import numpy as np  # noqa: E402

import symcnn  # noqa: E402
from symcnn.sandbox.rng_mrg import MRG_RandomStreams  # noqa: E402


def median_time(fn, reps):
    return median_seconds(fn, reps)


def symcnn_draw(n, threads, kind, mode="native"):
    symcnn.config.num_threads = threads
    rng = MRG_RandomStreams(1234)
    draw = getattr(rng, kind)((n,), dtype="float32")
    return symcnn.function([], draw, mode=mode).wait()


def kernel_seconds(n, threads, kind, reps):
    fn = symcnn_draw(n, threads, kind, mode="profile")
    for _ in range(reps + 1):
        fn()
    row = next(r for r in fn.profile() if "Draw" in r.name)
    return row.mean_ms / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    n = args.n
    rows = []
    for kind in ("uniform", "normal"):
        for threads in (1, 2):
            label = f"symcnn native {kind}, {threads} thread{'s' * (threads > 1)}"
            rows.append((label + ", kernel", n / kernel_seconds(n, threads, kind, args.reps)))
            fn = symcnn_draw(n, threads, kind)
            rows.append((label + ", call", n / median_time(fn, args.reps)))
    gen = np.random.default_rng(1234)
    buf = np.empty(n, dtype=np.float32)
    rows.append(("numpy Generator.random (float32, 1 thread)",
                 n / median_time(lambda: gen.random(n, dtype=np.float32, out=buf), args.reps)))
    rows.append(("numpy Generator.standard_normal (float32, 1 thread)",
                 n / median_time(lambda: gen.standard_normal(n, dtype=np.float32, out=buf), args.reps)))
    print(f"{n} float32 values per call, median of {args.reps} calls")
    for label, rate in rows:
        print(f"{label:55s} {rate / 1e6:9.1f} M numbers/s")


if __name__ == "__main__":
    main()
