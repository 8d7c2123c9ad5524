"""Ops off the fused convolution path, each alone: symcnn against PyTorch eager (and numpy) in the same run.

    python benchmarks/bench_ops.py [--threads 2] [--reps 40]

Sums over the axes a bias gradient or a hand-written batch norm reduces, row sums, softmax,
broadcasting and transposed elementwise ops, a channel concatenation. Times: median of `reps`
wall-clock calls (the call overhead included), float32, `threads` threads on both sides. The
host may be shared: compare within one run.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from timing import median_seconds  # noqa: E402

import numpy as np  # noqa: E402

import symcnn  # noqa: E402
import symcnn.tensor as T  # noqa: E402


def cases(rng):
    """(name, symbolic inputs, output, values, PyTorch callable of the torch tensors, numpy callable)."""
    act = rng.standard_normal((100, 32, 32, 32)).astype("float32")
    mat = rng.standard_normal((1024, 4096)).astype("float32")
    rows = rng.standard_normal((1600, 512)).astype("float32")
    a, b = rng.standard_normal((128, 64, 16, 16)).astype("float32"), rng.standard_normal((128, 32, 16, 16)).astype("float32")
    mean = rng.standard_normal((1, 32, 1, 1)).astype("float32")
    x4, y4, m, v = T.ftensor4("x"), T.ftensor4("y"), T.fmatrix("m"), T.TensorType("float32", shape=(1, None, 1, 1))("v")
    return [
        ("sum axis=(0,2,3) (100,32,32,32)", [x4], T.sum(x4, axis=(0, 2, 3)), [act],
         lambda t: t[0].sum(dim=(0, 2, 3)), lambda: act.sum(axis=(0, 2, 3))),
        ("sum axis=(2,3) (100,32,32,32)", [x4], T.sum(x4, axis=(2, 3)), [act],
         lambda t: t[0].sum(dim=(2, 3)), lambda: act.sum(axis=(2, 3))),
        ("sum of all (100,32,32,32)", [x4], T.sum(x4), [act], lambda t: t[0].sum(), lambda: act.sum()),
        ("sum axis=1 (1600,512)", [m], T.sum(m, axis=1), [rows], lambda t: t[0].sum(dim=1), lambda: rows.sum(axis=1)),
        ("(x - mean) / (mean^2 + 1), per channel", [x4, v], (x4 - v) / (v * v + 1), [act, mean],
         lambda t: (t[0] - t[1]) / (t[1] * t[1] + 1), lambda: (act - mean) / (mean * mean + 1)),
        ("x.T * 2 + 1 (1024,4096)", [m], m.T * 2 + 1, [mat], lambda t: t[0].T * 2 + 1, lambda: mat.T * 2 + 1),
        ("softmax rows (1024,4096)", [m], T.nnet.softmax(m), [mat], lambda t: t[0].softmax(1), None),
        ("max axis=1 (1024,4096)", [m], T.max(m, axis=1), [mat], lambda t: t[0].max(1).values, lambda: mat.max(axis=1)),
        ("concatenate channels", [x4, y4], T.concatenate([x4, y4], axis=1), [a, b],
         lambda t: __import__("torch").cat(t, 1), lambda: np.concatenate([a, b], axis=1)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    symcnn.config.num_threads = args.threads
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    def ms(fn):
        return median_seconds(fn, args.reps, warmup=5) * 1e3

    print(f"{'op':42} {'symcnn ms':>10} {'torch ms':>9} {'ratio':>6} {'numpy ms':>9}")
    for name, ins, out, values, torch_fn, numpy_fn in cases(np.random.default_rng(0)):
        f = symcnn.function(ins, out, mode="native")
        ours = ms(lambda: f(*values))
        tensors = [torch.from_numpy(x) for x in values] if torch else None
        theirs = ms(lambda: torch_fn(tensors)) if torch else float("nan")
        np_ms = ms(numpy_fn) if numpy_fn else float("nan")
        print(f"{name:42} {ours:>10.3f} {theirs:>9.3f} {ours / theirs:>6.2f} {np_ms:>9.3f}")


if __name__ == "__main__":
    main()
