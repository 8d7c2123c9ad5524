"""Conv2d, Conv2dGradInputs and Conv2dGradWeights alone, natively, on the convolutions of the
zoo's CIFAR-style and all-convolutional setups (bench_models.py) and a few others: the median ms
of each op, and the kernel variant it took (read from the compiled IR).

    python benchmarks/bench_conv.py [--threads 2] [--reps 20] [--only 0,3] [--cpu]

Run it with PYTHONPATH pointing at two checkouts, alternately, to compare them under the same load.
--cpu (with --threads 1) times the calling thread's CPU time, steadier on a shared machine.
"""
import argparse
import re
import time

import numpy as np

from timing import median_seconds

# (name, batch, C, H, W, K, k, border_mode, stride)
CONVS = [
    ("cifar1", 128, 3, 32, 32, 32, 3, "half", 1),
    ("cifar2", 128, 32, 16, 16, 64, 3, "half", 1),
    ("deep2", 128, 32, 32, 32, 32, 3, "half", 1),
    ("deep4", 128, 64, 16, 16, 64, 3, "half", 1),
    ("allconv2", 100, 32, 32, 32, 32, 3, "half", 2),
    ("allconv4", 100, 64, 16, 16, 64, 3, "half", 2),
    ("wide128", 64, 64, 16, 16, 128, 3, "half", 1),
    ("k5", 64, 16, 20, 20, 32, 5, "valid", 1),
    ("k7s2", 32, 3, 64, 64, 64, 7, (3, 3), 2),
    ("k1", 128, 64, 16, 16, 64, 1, "valid", 1),
]

BODY = re.compile(r'define internal void @"?symcnn_conv_(fwd|gx|gw)_([a-z0-9_]+?)_\d+"?\(')


def bench(conv, reps, clock):
    import symcnn
    import symcnn.tensor as T
    from symcnn.tensor.nnet.conv import conv2d, conv2d_grad_wrt_inputs, conv2d_grad_wrt_weights
    name, B, C, H, W, K, k, border, s = conv
    xs, ws = (B, C, H, W), (K, C, k, k)
    x = T.tensor4("x", shape=xs)
    w = T.tensor4("w", shape=ws)
    kw = dict(input_shape=xs, filter_shape=ws, border_mode=border, subsample=(s, s))
    y = conv2d(x, w, **kw)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal(xs).astype("float32")
    wv = rng.standard_normal(ws).astype("float32")
    f = symcnn.function([x, w], y)
    yv = f(xv, wv)
    g = T.tensor4("g", shape=yv.shape)
    gi = conv2d_grad_wrt_inputs(g, w, xs, ws, border_mode=border, subsample=(s, s))
    gw = conv2d_grad_wrt_weights(x, g, ws, xs, border_mode=border, subsample=(s, s))
    fi = symcnn.function([g, w], gi)
    fw = symcnn.function([x, g], gw)
    out = []
    for fn, args in ((f, (xv, wv)), (fi, (yv, wv)), (fw, (xv, yv))):
        variants = sorted({f"{o} {v}" for o, v in BODY.findall(fn.dump_llvm())}) or ["-"]
        out.append((median_seconds(lambda: fn(*args), reps, clock=clock) * 1e3, ",".join(variants)))
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
    print(f"{'conv':10s} {'forward ms':>11s} {'grad in ms':>11s} {'grad W ms':>11s}  variants")
    for conv in convs:
        res = bench(conv, args.reps, time.thread_time if args.cpu else time.perf_counter)
        print(f"{conv[0]:10s} " + " ".join(f"{t:11.2f}" for t, _ in res) + "  " + " | ".join(v for _, v in res),
              flush=True)


if __name__ == "__main__":
    main()
