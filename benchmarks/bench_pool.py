"""Pooling forward + gradient, natively beside PyTorch eager, in the same run.

    python benchmarks/bench_pool.py [--reps 50] [--threads 2] [--cpu-time] [--src PATH]

For typical CNN shapes and windows (2x2 max and average pooling, 3x3 windows with stride 2, which
overlap), one compiled function computes y = pool_2d(x) and the gradient gx for a given output
gradient gy (T.grad with known_grads); PyTorch runs F.max_pool2d / F.avg_pool2d forward and
backward on the same shapes, in a child process asked for blocks of steps between symcnn's blocks
so both see the same load. Times: median milliseconds of `reps` calls (benchmarks/timing.py).
"symcnn" returns new arrays each call, as PyTorch does (a 16 MB gradient is then mostly page faults
of fresh memory); "borrowed" returns the function's own buffers (theano.Out(borrow=True)), as the
intermediate results of a training step are. The ratio is symcnn / PyTorch.
--src imports symcnn from another checkout (to time an older version of the kernels).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from timing import JsonChild, median_seconds  # noqa: E402

import numpy as np  # noqa: E402

# (name, shape, ws, stride, pad, symcnn mode)
CASES = [
    ("max 2x2", (128, 32, 32, 32), (2, 2), (2, 2), (0, 0), "max"),
    ("max 2x2", (500, 20, 24, 24), (2, 2), (2, 2), (0, 0), "max"),
    ("avg 2x2", (128, 32, 32, 32), (2, 2), (2, 2), (0, 0), "average_inc_pad"),
    ("avg 2x2", (500, 20, 24, 24), (2, 2), (2, 2), (0, 0), "average_inc_pad"),
    ("max 3x3/2", (128, 32, 32, 32), (3, 3), (2, 2), (0, 0), "max"),
    ("max 3x3/2", (500, 20, 24, 24), (3, 3), (2, 2), (0, 0), "max"),
    ("avg 3x3/2 pad 1", (128, 32, 32, 32), (3, 3), (2, 2), (1, 1), "average_inc_pad"),
]


def data(shape, mode, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype("float32")
    return np.round(x * 4) if mode == "max" else x   # ties, as after ReLU or quantised inputs


def torch_server(threads, clock):
    """--torch-child: a JSON greeting (the version or null), then per line "k reps" the median ms of
    case k's forward + backward."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print(json.dumps(None), flush=True)
        return
    torch.set_num_threads(threads)
    print(json.dumps(torch.__version__), flush=True)
    steps = {}
    for line in sys.stdin:
        k, reps = (int(v) for v in line.split())
        if k not in steps:
            _, shape, ws, st, pad, mode = CASES[k]
            x = torch.from_numpy(data(shape, mode)).requires_grad_()
            pool = F.max_pool2d if mode == "max" else F.avg_pool2d
            gy = torch.ones_like(pool(x, ws, st, pad))

            def step(x=x, pool=pool, gy=gy, ws=ws, st=st, pad=pad):
                x.grad = None
                pool(x, ws, st, pad).backward(gy)
            steps[k] = step
        print(json.dumps(median_seconds(steps[k], reps, warmup=3, clock=clock) * 1e3), flush=True)


def symcnn_step(case, threads, borrow):
    import symcnn
    import symcnn.tensor as T
    from symcnn.tensor.signal.pool import pool_2d
    symcnn.config.num_threads = threads
    _, shape, ws, st, pad, mode = case
    x = T.TensorType("float32", shape=shape)("x")
    y = pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=True, mode=mode)
    gy = T.TensorType("float32", shape=(None,) * 4)("gy")
    gx = T.grad(None, x, known_grads={y: gy})
    f = symcnn.function([x, gy], [symcnn.Out(y, borrow=borrow), symcnn.Out(gx, borrow=borrow)], mode="native")
    xv = data(shape, mode)
    gyv = np.ones(symcnn.function([x], y, mode="reference")(xv).shape, "float32")
    ref = symcnn.function([x, gy], [y, gx], mode="reference")(xv, gyv)
    for got, want in zip(f(xv, gyv), ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return lambda: f(xv, gyv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks of reps per side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--src", default=os.path.dirname(HERE), help="checkout to import symcnn from")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread each, timed by the thread's CPU time (steadier on a busy machine)")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_time:
        args.threads = 1
    clock = time.thread_time if args.cpu_time else time.perf_counter
    if args.torch_child:
        torch_server(args.threads, clock)
        return
    sys.path.insert(0, os.path.abspath(args.src))
    import symcnn
    print(f"symcnn from {os.path.dirname(symcnn.__file__)}, {args.threads} threads, median of "
          f"{args.blocks} x {args.reps} calls, {'CPU' if args.cpu_time else 'wall-clock'} time")
    child = JsonChild([sys.executable, os.path.abspath(__file__), "--torch-child", "--threads", str(args.threads)]
                      + (["--cpu-time"] if args.cpu_time else []))
    print(f"PyTorch eager: {child.version or 'not installed (pip install torch==2.13.0)'}")
    print(f"{'case':>16} {'shape':>18} {'symcnn ms':>10} {'borrowed':>9} {'torch ms':>9} {'ratio':>6}")
    try:
        for k, case in enumerate(CASES):
            steps = [symcnn_step(case, args.threads, borrow) for borrow in (False, True)]
            ours, borrowed, theirs = [], [], []
            for _ in range(args.blocks):
                ours.append(median_seconds(steps[0], args.reps, warmup=3, clock=clock) * 1e3)
                borrowed.append(median_seconds(steps[1], args.reps, warmup=3, clock=clock) * 1e3)
                if child.version:
                    theirs.append(child.ask(f"{k} {args.reps}"))
            o, ob = float(np.median(ours)), float(np.median(borrowed))
            t = float(np.median(theirs)) if theirs else float("nan")
            print(f"{case[0]:>16} {str(case[1]):>18} {o:>10.3f} {ob:>9.3f} {t:>9.3f} {o / t:>6.2f}", flush=True)
    finally:
        child.close()


if __name__ == "__main__":
    main()
