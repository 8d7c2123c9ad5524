"""Conv2d, Conv2dGradInputs and Conv2dGradWeights alone, natively, against PyTorch eager's
convolution forward and convolution_backward (input and weight gradients timed apart), on the
convolutions of the zoo's setups (bench_models.py) and a sample of the rest of the configuration
space (filters 1x1 to 7x7, every border mode, strides 1 to 3, 1 to 128 channels, batch 1 up): the
median ms of each op, the ratio (symcnn / PyTorch), and the kernel variant symcnn took (read from
the compiled IR).

    python benchmarks/bench_conv.py [--threads 2] [--reps 20] [--only 0,3 or --only k7s2,b1] [--cpu] [--no-torch]
                                    [--random 40 [--seed 7]]

--random N times N configurations drawn from the whole space instead of the list (random_convs):
the configurations no list was written for.

PyTorch (pip install torch==2.13.0) runs in a child process, timed after every symcnn op: timed
alternately, the threads one library leaves spinning after its work slow the other's next op. Run it with PYTHONPATH pointing at two checkouts, alternately,
to compare them under the same load. --cpu (with --threads 1) times the calling thread's CPU time,
steadier on a shared machine (PyTorch is then timed the same way).
"""
import argparse
import os
import re
import statistics
import sys
import time

import numpy as np

from timing import JsonChild, median_seconds, serve_torch

# (name, batch, C, H, W, K, k, border_mode, stride[, dilation])
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
    ("lenet1", 500, 1, 28, 28, 20, 5, "valid", 1),
    ("lenet2", 500, 20, 12, 12, 50, 5, "valid", 1),
    ("full5", 32, 24, 12, 12, 24, 5, "full", 1),
    ("pad1s2", 64, 16, 31, 31, 32, 3, 1, 2),
    ("s3k5", 32, 16, 33, 33, 32, 5, "valid", 3),
    ("k7half", 16, 24, 28, 28, 24, 7, "half", 1),
    ("k1s2", 64, 64, 16, 16, 128, 1, "valid", 2),
    ("b1", 1, 64, 32, 32, 64, 3, "half", 1),
    ("odd", 7, 50, 19, 17, 20, 3, (2, 1), 1),
    ("c128", 32, 128, 8, 8, 128, 3, "half", 1),
    ("d2", 64, 32, 32, 32, 32, 3, "half", 1, 2),
    ("d2c64", 64, 64, 16, 16, 64, 3, "half", 1, 2),
    ("d3valid", 32, 16, 24, 24, 32, 3, "valid", 1, 3),
    ("d2s2", 64, 32, 32, 32, 32, 3, "half", 2, 2),
]


def random_convs(n, seed):
    """n configurations drawn from the space (filters 1x1 to 7x7, 'valid', 'half', 'full' and
    integer pads, strides 1 and 2, 1 to 128 channels and filters, 7x7 to 32x32 images), each with
    the batch that makes it about 0.4 GFLOP: named r0, r1, ..."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.choice([1, 3, 3, 3, 5, 5, 7]))
        s = int(rng.choice([1, 1, 1, 2]))
        border = str(rng.choice(["valid", "half", "half", "full", "1"])) if k > 1 else "valid"
        border = 1 if border == "1" else "valid" if border == "full" and s > 1 else border
        C = int(rng.choice([1, 3, 8, 16, 20, 24, 32, 48, 50, 64, 96, 128]))
        K = int(rng.choice([8, 16, 20, 24, 32, 48, 50, 64, 96, 128]))
        H = max(int(rng.choice([7, 8, 10, 12, 14, 16, 18, 24, 28, 31, 32])), k + 3)
        B = max(1, min(256, int(4e8 / (2 * C * K * k * k * H * H / (s * s)))))
        out.append((f"r{i}", B, C, H, H, K, k, border, s))
    return out


def unpack(conv):
    """A CONVS entry with its dilation (1 where it has none)."""
    return tuple(conv) + (1,) * (10 - len(conv))

BODY = re.compile(r'define internal void @"?symcnn_conv_(fwd|gx|gw)_([a-z0-9_]+?)_\d+"?\(')


def pads(border, k, d=1):
    """PyTorch's padding for one of Theano's border modes (filters of k taps, d apart)."""
    k = (k - 1) * d + 1
    if border == "valid":
        return (0, 0)
    if border == "half":
        return (k // 2, k // 2)
    if border == "full":
        return (k - 1, k - 1)
    return (border, border) if isinstance(border, int) else tuple(border)


def symcnn_ops(conv):
    """The three compiled ops of one convolution and their arguments: [(fn, args)] * 3."""
    import symcnn
    import symcnn.tensor as T
    from symcnn.tensor.nnet.conv import conv2d, conv2d_grad_wrt_inputs, conv2d_grad_wrt_weights
    name, B, C, H, W, K, k, border, s, d = unpack(conv)
    xs, ws = (B, C, H, W), (K, C, k, k)
    x = T.tensor4("x", shape=xs)
    w = T.tensor4("w", shape=ws)
    y = conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=(s, s),
               filter_dilation=(d, d))
    rng = np.random.default_rng(0)
    xv = rng.standard_normal(xs).astype("float32")
    wv = rng.standard_normal(ws).astype("float32")
    f = symcnn.function([x, w], y)
    yv = f(xv, wv)
    g = T.tensor4("g", shape=yv.shape)
    gi = conv2d_grad_wrt_inputs(g, w, xs, ws, border_mode=border, subsample=(s, s), filter_dilation=(d, d))
    gw = conv2d_grad_wrt_weights(x, g, ws, xs, border_mode=border, subsample=(s, s), filter_dilation=(d, d))
    fi = symcnn.function([g, w], gi)
    fw = symcnn.function([x, g], gw)
    ops = [(f, (xv, wv)), (fi, (yv, wv)), (fw, (xv, yv))]
    for fn, args in ops:   # every compile done (they run in the background), so none is timed
        fn(*args)
    return ops


# -- PyTorch (in a child process) -----------------------------------------------------------------

def torch_ops(conv, threads):
    import torch
    torch.set_num_threads(threads)
    name, B, C, H, W, K, k, border, s, d = unpack(conv)
    x = torch.randn(B, C, H, W)
    w = torch.randn(K, C, k, k)
    p = pads(border, k, d)
    y = torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d)
    g = torch.randn(y.shape)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(g, x, w, None, [s, s], list(p), [d, d], False,
                                                           [0, 0], 1, mask)
    with torch.no_grad():
        return [lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d),
                backward([True, False, False]), backward([False, True, False])]


def torch_server(threads, cpu):
    """Child: per request line "<conv index> <op index> <reps>", the median ms of that op."""
    clock = time.thread_time if cpu else time.perf_counter
    ops = {}

    def answer(line):
        import torch
        i, j, reps = (int(v) for v in line.split())
        if i not in ops:
            ops[i] = torch_ops(CONVS[i], threads)
        with torch.no_grad():
            return 1e3 * median_seconds(ops[i][j], reps, clock=clock)
    serve_torch(answer)


class TorchChild(JsonChild):
    def __init__(self, threads, cpu, random=None, convs=()):
        super().__init__([sys.executable, os.path.abspath(__file__), "--torch-child", "--threads", str(threads)]
                         + (["--cpu"] if cpu else []) + (["--random", str(random[0]), "--seed", str(random[1])]
                                                         if random else [])
                         + [a for spec in convs for a in ("--conv", spec)])


def parse_conv(spec, name):
    """A CONVS entry from "batch,C,H,W,K,k,border,stride[,dilation]" (border: valid, half, full or
    an integer pad)."""
    parts = spec.split(",")
    if len(parts) not in (8, 9):
        raise ValueError(f"--conv {spec!r}: batch,C,H,W,K,k,border,stride[,dilation]")
    B, C, H, W, K, k = (int(v) for v in parts[:6])
    border = int(parts[6]) if parts[6].isdigit() else parts[6]
    return (name, B, C, H, W, K, k, border, *(int(v) for v in parts[7:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated names or indices of CONVS")
    ap.add_argument("--cpu", action="store_true", help="time this thread's CPU time (use with --threads 1)")
    ap.add_argument("--no-torch", action="store_true", help="symcnn's columns only")
    ap.add_argument("--random", type=int, default=None, metavar="N",
                    help="time N configurations drawn from the space (random_convs) instead of the list")
    ap.add_argument("--seed", type=int, default=7, help="the draw of --random")
    ap.add_argument("--conv", action="append", default=[], metavar="SPEC",
                    help="time this configuration instead of the list (repeatable, named c0, c1, ...): "
                    "batch,C,H,W,K,k,border,stride[,dilation]")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.random is not None:   # (the PyTorch child, given the same arguments, draws the same list)
        CONVS[:] = random_convs(args.random, args.seed)
    if args.conv:
        CONVS[:] = [parse_conv(spec, f"c{i}") for i, spec in enumerate(args.conv)]
    if args.torch_child:
        return torch_server(args.threads, args.cpu)
    import symcnn
    symcnn.config.num_threads = args.threads
    clock = time.thread_time if args.cpu else time.perf_counter
    child = None if args.no_torch else TorchChild(args.threads, args.cpu,
                                                   (args.random, args.seed) if args.random is not None else None,
                                                   args.conv)
    torch = child is not None and child.version is not None
    if child is not None:
        print(f"PyTorch: {child.version or 'not installed (pip install torch==2.13.0)'}; {args.threads} threads each")
    names = [c[0] for c in CONVS]
    index = range(len(CONVS))
    if args.only is not None:
        index = [int(i) if i.isdigit() else names.index(i) if i in names else None for i in args.only.split(",")]
        if None in index or max(index) >= len(CONVS):
            ap.error(f"--only {args.only!r}: each entry a name or an index below {len(CONVS)}; "
                     f"names: {', '.join(names)}")
    print(f"{'conv':10s} {'batch,C,HxW,K,k,border,stride':32s}"
          + "".join(f"{h + ' ms':>10s}{'torch':>8s}{'ratio':>7s}" for h in ("fwd", "grad in", "grad W"))
          + "  variants")
    rows = []   # every symcnn op first, then every PyTorch op: neither library's idle threads
    for i in index:   # (OpenMP's spin-wait after a parallel region) take the cores from the other
        timed = [(1e3 * median_seconds(lambda: fn(*a), args.reps, clock=clock),
                  ",".join(sorted({f"{o} {v}" for o, v in BODY.findall(fn.dump_llvm())})) or "-")
                 for fn, a in symcnn_ops(CONVS[i])]
        rows.append((i, timed))
    ratios = []
    for i, timed in rows:
        name, B, C, H, W, K, k, border, s, d = unpack(CONVS[i])
        cells = ""
        for j, (ours, _) in enumerate(timed):
            theirs = child.ask(f"{i} {j} {args.reps}") if torch else None
            if theirs:
                ratios.append((ours / theirs, f"{name} {('fwd', 'grad in', 'grad W')[j]}"))
            cells += f"{ours:10.2f}" + (f"{theirs:8.2f}{ours / theirs:7.2f}" if theirs else f"{'-':>8s}{'-':>7s}")
        shape = f"{B},{C},{H}x{W},{K},{k},{border},{s}" + (f",d{d}" if d > 1 else "")
        print(f"{name:10s} {shape:32s}{cells}  " + " | ".join(v for _, v in timed), flush=True)
    if child is not None:
        child.close()
    if ratios:
        worst = max(ratios)
        print(f"worst ratio: {worst[0]:.2f} ({worst[1]}); median {statistics.median(r for r, _ in ratios):.2f}; "
              f"{sum(r > 1 for r, _ in ratios)} of {len(ratios)} ops slower than PyTorch")


if __name__ == "__main__":
    main()
