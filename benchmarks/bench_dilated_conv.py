"""Dilated 3x3 convolutions (conv2d(filter_dilation=)) natively: the median ms of the forward and of
a training step's three ops (forward, input and weight gradients, through T.grad), and the kernel
variants they took (read from the compiled IR).

    python benchmarks/bench_dilated_conv.py [--threads 2] [--reps 20] [--only 0,3] [--cpu]

Run it with PYTHONPATH pointing at two checkouts, alternately, to compare them under the same load
(it only uses conv2d's Theano arguments, so it runs on a checkout whose conv2d dilates the filters
with zeros as well). --cpu (with --threads 1) times the calling thread's CPU time, steadier on a
shared machine.
"""
import argparse
import re
import time

import numpy as np

from timing import median_seconds

# (name, batch, C, H, W, K, k, border_mode, stride, dilation)
CONVS = [
    ("d2_c32", 64, 32, 32, 32, 32, 3, "half", 1, 2),
    ("d2_c64", 64, 64, 16, 16, 64, 3, "half", 1, 2),
    ("d3_valid", 32, 16, 24, 24, 32, 3, "valid", 1, 3),
    ("d2_s2", 64, 32, 32, 32, 32, 3, "half", 2, 2),
    ("d2_c3", 64, 3, 32, 32, 32, 3, "half", 1, 2),
]

BODY = re.compile(r'define internal void @"?symcnn_conv_(fwd|gx|gw)_([a-z0-9_]+?)_\d+"?\(')


def bench(conv, reps, clock=time.perf_counter):
    import symcnn
    import symcnn.tensor as T
    from symcnn.tensor.nnet import conv2d
    name, B, C, H, W, K, k, border, s, d = conv
    xs, ws = (B, C, H, W), (K, C, k, k)
    x = T.tensor4("x", shape=xs)
    w = T.tensor4("w", shape=ws)
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=(s, s), filter_dilation=(d, d))
    rng = np.random.default_rng(0)
    xv = rng.standard_normal(xs).astype("float32")
    wv = rng.standard_normal(ws).astype("float32")
    f = symcnn.function([x, w], y)
    r = T.constant(rng.standard_normal(f(xv, wv).shape).astype("float32"))
    step = symcnn.function([x, w], T.grad((y * r).sum(), [x, w]))
    out = []
    for fn in (f, step):
        variants = sorted({f"{o} {v}" for o, v in BODY.findall(fn.dump_llvm())}) or ["-"]
        out.append((median_seconds(lambda: fn(xv, wv), reps, clock=clock) * 1e3, ",".join(variants)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated indices into CONVS")
    ap.add_argument("--cpu", action="store_true", help="time this thread's CPU time (use with --threads 1)")
    args = ap.parse_args()
    import symcnn
    symcnn.config.num_threads = args.threads
    convs = CONVS if args.only is None else [CONVS[int(i)] for i in args.only.split(",")]
    print(f"{'conv':10s} {'forward ms':>11s} {'fwd+grads ms':>13s}  variants")
    for conv in convs:
        (tf, vf), (ts, vs) = bench(conv, args.reps, time.thread_time if args.cpu else time.perf_counter)
        print(f"{conv[0]:10s} {tf:11.2f} {ts:13.2f}  {vf} | {vs}", flush=True)


if __name__ == "__main__":
    main()
