"""One convolutional layer at a time, forward and backward, against PyTorch eager: a sweep over
image sizes, channel counts, strides and filter sizes, so that no layer a user could build hides
behind the zoo's averages (bench_models.py) or behind the unfused ops (bench_conv.py).

Each layer is y = relu(conv(relu(x), W) + b), as in a network's middle: the train call returns
the gradients of sum(y * g) with respect to x, W and b (symcnn: the fused forward and backward
kernels; PyTorch: its forward and autograd's backward), the validate call y alone. The batch
keeps the work of each layer about the same: 2^25 multiply-adds per output position and pair of
channels, over the batch (1 to 256 images).

    python benchmarks/bench_layers.py [--threads 2] [--reps 20] [--only 3x3-s1-16-32,5x5] [--no-torch]
                                      [--layer k,stride,C,H,K,batch ...]

--only keeps the layers whose names contain one of the comma-separated strings; --layer times
the layers it names instead of the sweep (e.g. a network's own: 3,2,32,32,32,100). Prints, per
layer, the median ms of both calls on each side and the ratios (symcnn / PyTorch), then the
layers where symcnn is slower. PyTorch (pip install torch==2.13.0) runs in a child process, asked
after every symcnn layer, so both see the same load.
"""
import argparse
import os
import statistics
import sys

import numpy as np

from timing import JsonChild, median_seconds, serve_torch


def layers():
    """[(name, batch, C, H, K, k, stride)]: square images, 'half' padding."""
    out = []

    def add(k, s, c, h, kk):
        oh = (h - 1) // s + 1
        batch = max(1, min(256, round(2 ** 25 / (oh * oh * c * kk))))
        out.append((f"{k}x{k}-s{s}-{c}-{kk}-{h}x{h}", batch, c, h, kk, k, s))

    custom = [a for i, a in enumerate(sys.argv) if i and sys.argv[i - 1] == "--layer"]
    for spec in custom:
        k, s, c, h, kk, batch = (int(v) for v in spec.split(","))
        out.append((f"{k}x{k}-s{s}-{c}-{kk}-{h}x{h}@{batch}", batch, c, h, kk, k, s))
    if custom:
        return out

    for h in (4, 6, 8, 12, 16, 24, 32):
        for c in (16, 32, 64, 128):
            add(3, 1, c, h, c)
    for h in (8, 16, 32):
        for c in (16, 32, 64, 128):
            add(3, 2, c, h, 2 * c)
    for k in (1, 5):
        for h in (8, 16):
            for c in (16, 32, 64, 128):
                add(k, 1, c, h, c)
    return out


LAYERS = layers()


def data(layer):
    name, B, C, H, K, k, s = layer
    rng = np.random.default_rng(0)
    oh = (H - 1) // s + 1
    return (rng.standard_normal((B, C, H, H)).astype("float32"),
            (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype("float32"),
            (0.1 * rng.standard_normal(K)).astype("float32"),
            rng.standard_normal((B, K, oh, oh)).astype("float32"))


def symcnn_calls(layer):
    """(train, validate): compiled and called once."""
    import symcnn
    import symcnn.tensor as T
    from symcnn.tensor.nnet import conv2d
    name, B, C, H, K, k, s = layer
    xv, wv, bv, gv = data(layer)
    x = T.tensor4("x", shape=xv.shape)
    g = T.tensor4("g", shape=gv.shape)
    w = symcnn.shared(wv, name="W")
    b = symcnn.shared(bv, name="b")
    conv = conv2d(T.maximum(x, 0), w, input_shape=xv.shape, filter_shape=wv.shape, border_mode="half",
                  subsample=(s, s))
    y = T.maximum(conv + b.dimshuffle("x", 0, "x", "x"), 0)
    train = symcnn.function([x, g], T.grad(T.sum(y * g), [x, w, b]))
    validate = symcnn.function([x], y)
    calls = (lambda: train(xv, gv)), (lambda: validate(xv))
    for c in calls:
        c()
    return calls


def torch_calls(layer, threads):
    import torch
    torch.set_num_threads(threads)
    name, B, C, H, K, k, s = layer
    xv, wv, bv, gv = (torch.from_numpy(a) for a in data(layer))
    w, b = wv.requires_grad_(), bv.requires_grad_()
    F = torch.nn.functional

    def forward(x):
        return torch.relu(F.conv2d(torch.relu(x), w, b, stride=s, padding=k // 2))

    def train():
        x = xv.detach().requires_grad_()
        return torch.autograd.grad(forward(x), [x, w, b], gv)

    def validate():
        with torch.no_grad():
            return forward(xv)
    return train, validate


def torch_server(threads):
    """Child: per request line "<layer index> <call index> <reps>", the median ms of that call."""
    calls = {}

    def answer(line):
        i, j, reps = (int(v) for v in line.split())
        if i not in calls:
            calls[i] = torch_calls(LAYERS[i], threads)
        return 1e3 * median_seconds(calls[i][j], reps)
    serve_torch(answer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated parts of layer names")
    ap.add_argument("--no-torch", action="store_true", help="symcnn's columns only")
    ap.add_argument("--layer", action="append", metavar="k,stride,C,H,K,batch",
                    help="time this layer instead of the sweep (read by layers() from sys.argv, so that "
                         "the PyTorch child, given the same arguments, has the same list)")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        return torch_server(args.threads)
    import symcnn
    symcnn.config.num_threads = args.threads
    index = [i for i, l in enumerate(LAYERS) if args.only is None or any(p in l[0] for p in args.only.split(","))]
    if not index:
        ap.error(f"--only {args.only!r} matches no layer; names: {', '.join(l[0] for l in LAYERS)}")
    child = None
    if not args.no_torch:
        child = JsonChild([sys.executable, os.path.abspath(__file__), "--torch-child", "--threads", str(args.threads)]
                          + [a for spec in args.layer or [] for a in ("--layer", spec)])
        print(f"PyTorch: {child.version or 'not installed (pip install torch==2.13.0)'}; {args.threads} threads each")
        if child.version is None:
            child.close()
            child = None
    print(f"{'layer':24s}{'batch':>6s}" + "".join(f"{h + ' ms':>11s}{'torch':>8s}{'ratio':>7s}" for h in ("train", "valid")))
    ratios = []
    for i in index:
        layer = LAYERS[i]
        ours = [1e3 * median_seconds(c, args.reps) for c in symcnn_calls(layer)]
        theirs = [child.ask(f"{i} {j} {args.reps}") for j in range(2)] if child else [None, None]
        cells = ""
        for j, (a, t) in enumerate(zip(ours, theirs)):
            cells += f"{a:11.2f}" + (f"{t:8.2f}{a / t:7.2f}" if t else f"{'-':>8s}{'-':>7s}")
            if t:
                ratios.append((a / t, f"{layer[0]} {('train', 'valid')[j]}"))
        print(f"{layer[0]:24s}{layer[1]:6d}{cells}", flush=True)
    if child is not None:
        child.close()
    if ratios:
        slower = sorted((r for r in ratios if r[0] > 1), reverse=True)
        print(f"median ratio {statistics.median(r for r, _ in ratios):.2f}; {len(slower)} of {len(ratios)} "
              f"calls slower than PyTorch" + "".join(f"\n  {r:.2f} {n}" for r, n in slower))


if __name__ == "__main__":
    main()
