"""Native sums over the leading and the trailing axis of a float32 matrix beside numpy, in the same run.

    python benchmarks/bench_reduce.py [--reps 200] [--threads 1]

x.sum(axis=0) of a batch x units matrix is every dense layer's bias gradient; x.sum(axis=1) reduces
along memory. Times: median of `reps` wall-clock calls of the compiled function (the call overhead
included) and of numpy's `x.sum(axis)` (the host may be shared: run it at a quiet moment).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from timing import median_seconds  # noqa: E402

import numpy as np  # noqa: E402

import symcnn  # noqa: E402
import symcnn.tensor as T  # noqa: E402

SHAPES = ((1600, 512), (500, 800))


def median_ms(fn, reps):
    return median_seconds(fn, reps, warmup=5) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    symcnn.config.num_threads = args.threads
    x = T.fmatrix("x")
    sums = {axis: symcnn.function([x], T.sum(x, axis=axis), mode="native") for axis in (0, 1)}
    rng = np.random.default_rng(0)
    print(f"{'shape':>12} {'axis':>4} {'symcnn ms':>10} {'numpy ms':>9} {'ratio':>6}")
    for shape in SHAPES:
        a = rng.standard_normal(shape).astype("float32")
        for axis, f in sums.items():
            np.testing.assert_allclose(f(a), a.sum(axis=axis), rtol=1e-4, atol=1e-3)
            ours = median_ms(lambda: f(a), args.reps)
            theirs = median_ms(lambda: a.sum(axis=axis), args.reps)
            print(f"{str(shape):>12} {axis:>4} {ours:>10.3f} {theirs:>9.3f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
