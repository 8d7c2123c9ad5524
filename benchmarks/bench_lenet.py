"""LeNet5 (the deeplearning.net tutorial model) timings: compile, train and validate steps.

Prints: cold compile time of train+validate+test (empty cache), warm compile time
(cache hit), median train-step and validate-step milliseconds at batch 500 with
20/50 kernels in native and reference modes; for the train function, native kernels
per call and bytes of intermediate buffers with and without the fusion rewrites, and
the cost of mode='nanguard' and of mode='profile'; then a per-kernel profile table of the
train step (mode='profile'); and, if PyTorch is installed, the same model's eager
train/validate steps measured in the same run, with ratios; then (unless --no-memory) the peak
memory of whole evaluate_lenet5 runs, symcnn against PyTorch (benchmarks/bench_memory.py).

    python benchmarks/bench_lenet.py [--runs 30] [--batch-size 500] [--no-reference] [--target x86-64-v3]

--target compiles for that target (config.target_cpu: an x86-64 level or an LLVM CPU name) and runs
PyTorch at the same level, in a child process with ATEN_CPU_CAPABILITY (and oneDNN's and MKL's
instruction-set limits) set accordingly; --steps-only skips the unfused, nanguard and reference runs.
"""
import json
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from timing import JsonChild, median_seconds

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.layers import HiddenLayer, LeNetConvPoolLayer, LogisticRegression
from symcnn.rewrite import registered

# The fusion rewrites, excluded by name for the unfused comparison.
FUSION = [r.name for r in registered("fuse")] + ["fuse_conv_epilogue"]


def build(batch_size, nkerns, data_x, data_y, mode):
    rng = np.random.RandomState(23455)
    index = T.lscalar()
    x = T.matrix("x")
    y = T.ivector("y")
    layer0_input = x.reshape((batch_size, 1, 28, 28))
    layer0 = LeNetConvPoolLayer(rng, input=layer0_input, image_shape=(batch_size, 1, 28, 28),
                                filter_shape=(nkerns[0], 1, 5, 5), poolsize=(2, 2))
    layer1 = LeNetConvPoolLayer(rng, input=layer0.output, image_shape=(batch_size, nkerns[0], 12, 12),
                                filter_shape=(nkerns[1], nkerns[0], 5, 5), poolsize=(2, 2))
    layer2 = HiddenLayer(rng, input=layer1.output.flatten(2), n_in=nkerns[1] * 4 * 4, n_out=500,
                         activation=T.tanh)
    layer3 = LogisticRegression(input=layer2.output, n_in=500, n_out=10)
    cost = layer3.negative_log_likelihood(y)
    params = layer3.params + layer2.params + layer1.params + layer0.params
    grads = T.grad(cost, params)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]
    sx = theano.shared(data_x, borrow=True)
    sy = T.cast(theano.shared(data_y.astype(theano.config.floatX), borrow=True), "int32")
    givens = {x: sx[index * batch_size:(index + 1) * batch_size],
              y: sy[index * batch_size:(index + 1) * batch_size]}
    t0 = time.perf_counter()
    train = theano.function([index], cost, updates=updates, givens=givens, mode=mode)
    validate = theano.function([index], layer3.errors(y), givens=givens, mode=mode)
    test = theano.function([index], layer3.errors(y), givens=givens, mode=mode)
    for fn in (train, validate, test):
        fn.wait()  # function() returns once lowered; count until the machine code is loaded
    compile_s = time.perf_counter() - t0
    return train, validate, test, compile_s, params


def median_ms(fn, n_batches, runs, warmup=2):
    return 1000 * median_seconds(fn, runs, warmup=warmup, batches=n_batches)


def torch_steps(batch_size, nkerns, data_x, data_y, runs, threads):
    m = torch_model(batch_size, nkerns, data_x, data_y, threads)
    if m is None:
        return None
    train, validate, n_batches, version = m
    return (median_ms(train, n_batches, runs), median_ms(validate, n_batches, runs), version)


def torch_model(batch_size, nkerns, data_x, data_y, threads):
    """(train(i), validate(i), batches, version) of the same model in PyTorch eager, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, nkerns[0], 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Conv2d(nkerns[0], nkerns[1], 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Flatten(), nn.Linear(nkerns[1] * 16, 500), nn.Tanh(), nn.Linear(500, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xs = torch.from_numpy(data_x).reshape(-1, 1, 28, 28)
    ys = torch.from_numpy(data_y.astype(np.int64))
    n_batches = len(xs) // batch_size

    def train(i):
        i %= n_batches
        xb, yb = xs[i * batch_size:(i + 1) * batch_size], ys[i * batch_size:(i + 1) * batch_size]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    def validate(i):
        i %= n_batches
        with torch.no_grad():
            xb, yb = xs[i * batch_size:(i + 1) * batch_size], ys[i * batch_size:(i + 1) * batch_size]
            return (model(xb).argmax(1) != yb).float().mean().item()

    return train, validate, n_batches, torch.__version__


def torch_server(args, data_x, data_y):
    """The --torch-child loop: one JSON line (version or null), then per request line "train N" /
    "validate N" the median ms of N steps."""
    m = torch_model(args.batch_size, args.nkerns, data_x, data_y, args.threads)
    print(json.dumps(None if m is None else m[3]), flush=True)
    if m is None:
        return
    fns = {"train": m[0], "validate": m[1]}
    for line in sys.stdin:
        kind, n = line.split()
        print(json.dumps(median_ms(fns[kind], m[2], int(n), warmup=1)), flush=True)


class TorchChild:
    """PyTorch eager in a child process whose instruction set is limited to the target's (the
    variables are read when torch is imported), asked for blocks of steps between symcnn's blocks,
    so both see the same load on a shared machine."""

    def __init__(self, target, args):
        self.isa = TORCH_ISA.get(target, {})
        cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", "--batch-size", str(args.batch_size),
               "--threads", str(args.threads), "--nkerns", *map(str, args.nkerns)]
        self.child = JsonChild(cmd, env=dict(os.environ, **self.isa))
        self.version = self.child.version

    def median_ms(self, kind, n):
        return self.child.ask(f"{kind} {n}")

    def close(self):
        self.child.close()


# PyTorch's instruction-set limits matching a target: ATen's CPU capability, oneDNN's (convolutions)
# and MKL's (linear layers) maximum ISA. None: PyTorch's own choice (the host's best).
TORCH_ISA = {
    "x86-64": dict(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41", MKL_ENABLE_INSTRUCTIONS="SSE4_2"),
    "x86-64-v2": dict(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41", MKL_ENABLE_INSTRUCTIONS="SSE4_2"),
    "x86-64-v3": dict(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2"),
    "haswell": dict(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2"),
    "x86-64-v4": dict(ATEN_CPU_CAPABILITY="avx512", ONEDNN_MAX_CPU_ISA="AVX512_CORE", MKL_ENABLE_INSTRUCTIONS="AVX512"),
}


def interleaved(train, validate, n_batches, child, rounds, block):
    """Per kind: (symcnn median ms, PyTorch median ms, median ratio, lowest and highest ratio) over
    `rounds` rounds of one block of `block` symcnn steps then one of PyTorch steps."""
    out = {}
    for kind, fn in (("train", train), ("validate", validate)):
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(median_ms(fn, n_batches, block, warmup=1))
            theirs.append(child.median_ms(kind, block))
        ratios = sorted(a / b for a, b in zip(ours, theirs))
        out[kind] = (statistics.median(ours), statistics.median(theirs), statistics.median(ratios),
                     ratios[0], ratios[-1])
    return out


def data(bs):
    rng = np.random.RandomState(0)
    n = 4 * bs
    return rng.rand(n, 784).astype(theano.config.floatX), rng.randint(0, 10, n).astype("int32")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=None,
                    help="config.target_cpu to compile for (default: the config's, the host unless set)")
    ap.add_argument("--steps-only", action="store_true",
                    help="compile, step times, profile and PyTorch only (no unfused/nanguard/reference runs)")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=7,
                    help="rounds of alternating symcnn / PyTorch blocks for the ratios (default 7)")
    ap.add_argument("--block", type=int, default=5, help="steps per block (default 5)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--reference-runs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--nkerns", type=int, nargs=2, default=[20, 50])
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--profile-runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the peak-memory comparison of whole evaluate_lenet5 runs (bench_memory.py)")
    args = ap.parse_args(argv)
    bs, nk = args.batch_size, args.nkerns
    data_x, data_y = data(bs)
    n_batches = len(data_x) // bs
    if args.torch_child:
        torch_server(args, data_x, data_y)
        return 0
    if args.target:
        theano.config.target_cpu = args.target
    from codegen import target as targets
    tgt = targets.current()

    print(f"# LeNet5 benchmark: batch {bs}, nkerns {nk}, float32")
    print(f"# machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"# target: {theano.config.target_cpu} (LLVM cpu {tgt.cpu}, {tgt.isa()}, {tgt.lanes('float32')} float32 "
          f"lanes, loops vectorised to {tgt.loop_vector_bytes} bytes); host cpu {targets.resolve('host').cpu}")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SYMCNN_CACHE_DIR"] = cache
        train, validate, test, cold, _ = build(bs, nk, data_x, data_y, "native")
        _, _, _, warm, _ = build(bs, nk, data_x, data_y, "native")
        rows.append(("compile train+validate+test until callable, cold (empty cache)", f"{cold:.2f} s"))
        rows.append(("compile train+validate+test until callable, warm (cache hit)", f"{warm:.2f} s"))
        native_train = median_ms(train, n_batches, args.runs)
        native_val = median_ms(validate, n_batches, args.runs)
        rows.append(("native train step (median)", f"{native_train:.1f} ms"))
        rows.append(("native validate step (median)", f"{native_val:.1f} ms"))
        unfused = build(bs, nk, data_x, data_y, Mode("native", excluding=FUSION))[0] if not args.steps_only else None
        unfused_train = median_ms(unfused, n_batches, args.runs) if unfused is not None else None
        for label, fn in (("fused", train), ("unfused", unfused)):
            if fn is None:
                continue
            mem = fn.memory_report()
            rows.append((f"train function, {label}: native kernels per call", str(len(fn.kernels))))
            rows.append((f"train function, {label}: intermediate buffers", f"{mem['buffers']}, "
                         f"{mem['bytes'] / 2**20:.1f} MiB"))
        if unfused_train is not None:
            rows.append(("native train step without fusion rewrites (median)", f"{unfused_train:.1f} ms"))
        profiled = build(bs, nk, data_x, data_y, "profile")[0]
        profiled_train = median_ms(profiled, n_batches, args.runs)
        rows.append(("profile-mode train step (median)",
                     f"{profiled_train:.1f} ms ({profiled_train / native_train:.2f}x native)"))
        profiled.profile(reset=True)  # drop the calls above: the table covers the runs below
        for i in range(args.profile_runs):
            profiled(i % n_batches)
        profile_table = str(profiled.profile())
        if not args.steps_only:
            guarded = build(bs, nk, data_x, data_y, "nanguard")[0]
            guarded_train = median_ms(guarded, n_batches, args.runs)
            rows.append(("nanguard train step (median; that mode skips the fuse phase)",
                         f"{guarded_train:.1f} ms ({guarded_train / native_train:.2f}x native)"))
    if not args.no_reference and not args.steps_only:
        rtrain, rval, _, _, _ = build(bs, nk, data_x, data_y, "reference")
        ref_train = median_ms(rtrain, n_batches, args.reference_runs, warmup=1)
        ref_val = median_ms(rval, n_batches, args.reference_runs, warmup=1)
        rows.append(("reference (numpy) train step (median)", f"{ref_train:.1f} ms"))
        rows.append(("reference (numpy) validate step (median)", f"{ref_val:.1f} ms"))
    child = TorchChild(theano.config.target_cpu, args)
    if child.version is None:
        rows.append(("PyTorch eager", "not installed (pip install torch==2.13.0)"))
    else:
        res = interleaved(train, validate, n_batches, child, args.rounds, args.block)
        level = ", ".join(f"{k}={v}" for k, v in child.isa.items()) or "its default ISA"
        rows.append(("PyTorch eager at the target's level", level))
        how = f"{args.rounds} alternating blocks of {args.block} steps"
        for kind in ("train", "validate"):
            ours, theirs, ratio, lo, hi = res[kind]
            rows.append((f"native {kind} step, {how} (median)", f"{ours:.1f} ms"))
            rows.append((f"PyTorch {child.version} eager {kind} step ({args.threads} threads, same blocks)",
                         f"{theirs:.1f} ms"))
            rows.append((f"ratio native / PyTorch, {kind} (median of the blocks; range)",
                         f"{ratio:.2f} ({lo:.2f}-{hi:.2f})"))
    child.close()
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print()
    print(f"# per-kernel profile of the native train step (mode='profile', {args.profile_runs} calls)")
    print(profile_table)
    if not args.no_memory and not args.steps_only:
        import bench_memory
        print()
        if os.path.isfile(bench_memory.DEFAULT_DATASET):
            bench_memory.main([])
        else:
            print(f"# peak memory not measured: {bench_memory.DEFAULT_DATASET} not found "
                  f"(python benchmarks/bench_memory.py --dataset PATH)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
