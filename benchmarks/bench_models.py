"""A zoo of convolutional training setups a CPU user would try: symcnn against PyTorch eager.

For each setup, in the same run: the symcnn and PyTorch eager train steps (median ms, both on
--threads threads), the validate steps, the train ratio (symcnn / PyTorch; median of per-round
ratios, rounds interleaved so both see the same load), the share of the machine's float32
peak that the symcnn train step reaches (its FLOPs over its time, against the FMA throughput
measured at the start of the run by bench_peak.py: Winograd's saved products can take it past
100 %), and the cold compile time of train + validate + test (an empty compile cache). The worst
train ratio is the headline.

    python benchmarks/bench_models.py [--rounds 5] [--block 5] [--only lenet_relu,cifar]

PyTorch runs in a child process (so neither library's threads wait on the other's); without
PyTorch (pip install torch==2.13.0) only the symcnn columns are printed. Data are random
(timings do not depend on the values).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from timing import JsonChild, median_seconds, serve_torch

# One setup: input (channels, rows, cols), batch, a list of layers, the number of classes.
#   ("conv", out_channels, kernel, border_mode, stride, activation, pool)
#       border_mode: 'valid' or 'half'; pool: None or (mode, size) applied after the activation,
#       except with order="tutorial": conv -> pool -> + bias -> activation (the tutorial's layer),
#       and with order="conv_bn_act_pool": conv -> batch norm (the batch's statistics, written out with
#       T.mean as a Theano user writes it; PyTorch's nn.BatchNorm2d) -> activation -> pool
#   ("fc", units, activation)
# activation: 'tanh', 'relu' (written T.maximum(h, 0)), 'sigmoid'
LENET = [("conv", 20, 5, "valid", 1, "tanh", ("max", 2)), ("conv", 50, 5, "valid", 1, "tanh", ("max", 2)),
         ("fc", 500, "tanh")]


def _act(layers, act):
    return [(l[:5] + (act,) + l[6:]) if l[0] == "conv" else (l[0], l[1], act) for l in layers]


SETUPS = {
    "lenet": dict(input=(1, 28, 28), batch=500, layers=LENET, order="tutorial"),
    "lenet_b64": dict(input=(1, 28, 28), batch=64, layers=LENET, order="tutorial"),
    "lenet_relu": dict(input=(1, 28, 28), batch=500, layers=_act(LENET, "relu"), order="tutorial"),
    "lenet_sigmoid_avg": dict(input=(1, 28, 28), batch=256, order="tutorial", layers=[
        ("conv", 20, 5, "valid", 1, "sigmoid", ("average_exc_pad", 2)),
        ("conv", 50, 5, "valid", 1, "sigmoid", ("average_exc_pad", 2)), ("fc", 500, "sigmoid")]),
    "cifar": dict(input=(3, 32, 32), batch=128, order="conv_act_pool", layers=[
        ("conv", 32, 3, "half", 1, "relu", ("max", 2)), ("conv", 64, 3, "half", 1, "relu", ("max", 2)),
        ("fc", 256, "relu")]),
    "cifar_deep": dict(input=(3, 32, 32), batch=128, order="conv_act_pool", layers=[
        ("conv", 32, 3, "half", 1, "relu", None), ("conv", 32, 3, "half", 1, "relu", ("max", 2)),
        ("conv", 64, 3, "half", 1, "relu", None), ("conv", 64, 3, "half", 1, "relu", ("max", 2)),
        ("fc", 256, "relu")]),
    "allconv": dict(input=(3, 32, 32), batch=100, order="conv_act_pool", layers=[
        ("conv", 32, 3, "half", 1, "relu", None), ("conv", 32, 3, "half", 2, "relu", None),
        ("conv", 64, 3, "half", 1, "relu", None), ("conv", 64, 3, "half", 2, "relu", None)]),
    # LeNet-5 as usually run on 32x32 colour images: 'valid' 5x5 layers whose outputs (28, 10 wide)
    # split vectors, two dense layers
    "lenet5_cifar": dict(input=(3, 32, 32), batch=128, order="conv_act_pool", layers=[
        ("conv", 6, 5, "valid", 1, "relu", ("max", 2)), ("conv", 16, 5, "valid", 1, "relu", ("max", 2)),
        ("fc", 120, "relu"), ("fc", 84, "relu")]),
    # a 'half' then a 'valid' 3x3 layer before each pooling (Keras' CIFAR-10 example's layout)
    "keras_cifar": dict(input=(3, 32, 32), batch=128, order="conv_act_pool", layers=[
        ("conv", 32, 3, "half", 1, "relu", None), ("conv", 32, 3, "valid", 1, "relu", ("max", 2)),
        ("conv", 64, 3, "half", 1, "relu", None), ("conv", 64, 3, "valid", 1, "relu", ("max", 2)),
        ("fc", 512, "relu")]),
    "cifar_bn": dict(input=(3, 32, 32), batch=128, order="conv_bn_act_pool", layers=[
        ("conv", 32, 3, "half", 1, "relu", ("max", 2)), ("conv", 64, 3, "half", 1, "relu", ("max", 2)),
        ("fc", 256, "relu")]),
}
CLASSES = 10


def shapes(setup):
    """[(kind, in_shape, out_shape, layer)] through the network (per example)."""
    c, h, w = setup["input"]
    out = []
    for layer in setup["layers"]:
        if layer[0] == "conv":
            _, co, k, border, s, _, pool = layer
            pad = k // 2 if border == "half" else 0
            oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            ph, pw = (oh // pool[1], ow // pool[1]) if pool else (oh, ow)
            out.append(("conv", (c, h, w), (co, oh, ow), layer))
            c, h, w = co, ph, pw
        else:
            n = c * h * w if h else c
            out.append(("fc", (n,), (layer[1],), layer))
            c, h, w = layer[1], 0, 0
    n = c * h * w if h else c
    out.append(("fc", (n,), (CLASSES,), ("fc", CLASSES, None)))
    return out


def train_gflop(setup):
    """FLOPs of one train step: forward, input gradients (not of the first layer) and weight
    gradients of every conv and dense layer, 2 per multiply-add; elementwise work not counted."""
    B, total = setup["batch"], 0.0
    for i, (kind, (ci, *_), oshape, layer) in enumerate(shapes(setup)):
        if kind == "conv":
            macs = B * int(np.prod(oshape)) * ci * layer[2] ** 2
        else:
            macs = B * ci * oshape[0]
        total += 2 * macs * (2 if i == 0 else 3)
    return total / 1e9


# -- symcnn ---------------------------------------------------------------------------------------

def symcnn_model(name, threads):
    import symcnn as theano
    import symcnn.tensor as T
    from symcnn.layers import HiddenLayer, LogisticRegression
    from symcnn.tensor.signal import pool as P

    theano.config.num_threads = threads
    setup = SETUPS[name]
    B, (c0, h0, w0) = setup["batch"], setup["input"]
    acts = {"tanh": T.tanh, "sigmoid": T.nnet.sigmoid, "relu": lambda h: T.maximum(h, 0)}
    rng = np.random.RandomState(1234)
    x, y = T.matrix("x"), T.ivector("y")
    h = x.reshape((B, c0, h0, w0))
    params = []
    for kind, ishape, oshape, layer in shapes(setup)[:-1]:
        if kind == "conv":
            _, co, k, border, s, act, pool = layer
            fan_in = ishape[0] * k * k
            W = theano.shared((rng.uniform(-1, 1, (co, ishape[0], k, k)) / np.sqrt(fan_in)).astype("float32"))
            b = theano.shared(np.zeros(co, "float32"))
            conv = T.nnet.conv2d(h, W, input_shape=(B,) + ishape, filter_shape=(co, ishape[0], k, k),
                                 border_mode=border, subsample=(s, s))
            bias = b.dimshuffle("x", 0, "x", "x")
            pool2d = (lambda v: P.pool_2d(v, ws=(pool[1], pool[1]), ignore_border=True, mode=pool[0])) \
                if pool else (lambda v: v)
            if setup["order"] == "tutorial":
                h = acts[act](pool2d(conv) + bias)
            elif setup["order"] == "conv_bn_act_pool":
                g = theano.shared(np.ones(co, "float32"))
                mean = conv.mean(axis=(0, 2, 3), keepdims=True)
                var = T.sqr(conv - mean).mean(axis=(0, 2, 3), keepdims=True)
                h = pool2d(acts[act]((conv - mean) / T.sqrt(var + 1e-5) * g.dimshuffle("x", 0, "x", "x") + bias))
                params.append(g)
            else:
                h = pool2d(acts[act](conv + bias))
            params += [W, b]
        else:
            hl = HiddenLayer(rng, input=h.flatten(2), n_in=ishape[0], n_out=oshape[0], activation=acts[layer[2]])
            h = hl.output
            params += hl.params
    n_in = shapes(setup)[-1][1][0]
    out = LogisticRegression(input=h.flatten(2), n_in=n_in, n_out=CLASSES)
    params += out.params
    cost = out.negative_log_likelihood(y)
    updates = [(p, p - 0.01 * g) for p, g in zip(params, T.grad(cost, params))]
    data_x, data_y = data(setup)
    index = T.lscalar()
    sx, sy = theano.shared(data_x, borrow=True), theano.shared(data_y, borrow=True)
    givens = {x: sx[index * B:(index + 1) * B], y: sy[index * B:(index + 1) * B]}
    t0 = time.perf_counter()
    train = theano.function([index], cost, updates=updates, givens=givens)
    validate = theano.function([index], out.errors(y), givens=givens)
    test = theano.function([index], out.errors(y), givens=givens)
    for fn in (train, validate, test):
        fn.wait()
    compile_s = time.perf_counter() - t0
    return train, validate, compile_s


def data(setup):
    rng = np.random.RandomState(0)
    n = 4 * setup["batch"]
    return (rng.rand(n, int(np.prod(setup["input"]))).astype("float32"),
            rng.randint(0, CLASSES, n).astype("int32"))


def median_ms(fn, runs, warmup=1, batches=4):
    return 1000 * median_seconds(fn, runs, warmup=warmup, batches=batches)


# -- PyTorch (in a child process) -----------------------------------------------------------------

def torch_model(name, threads):
    import torch
    torch.set_num_threads(threads)
    nn = torch.nn
    setup = SETUPS[name]
    acts = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
    mods = []
    for kind, ishape, oshape, layer in shapes(setup):
        if kind == "conv":
            _, co, k, border, s, act, pool = layer
            bn = setup["order"] == "conv_bn_act_pool"
            mods.append(nn.Conv2d(ishape[0], co, k, stride=s, padding=k // 2 if border == "half" else 0, bias=not bn))
            if bn:
                mods.append(nn.BatchNorm2d(co))
            pooling = []
            if pool:
                pooling = [nn.MaxPool2d(pool[1]) if pool[0] == "max"
                           else nn.AvgPool2d(pool[1], count_include_pad=pool[0] == "average_inc_pad")]
            mods += (pooling + [acts[act]()]) if setup["order"] == "tutorial" else ([acts[act]()] + pooling)
        else:
            mods += [nn.Flatten(), nn.Linear(ishape[0], oshape[0])] + ([acts[layer[2]]()] if layer[2] else [])
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data_x, data_y = data(setup)
    B = setup["batch"]
    xs = torch.from_numpy(data_x).reshape((-1,) + setup["input"])
    ys = torch.from_numpy(data_y.astype(np.int64))

    def train(i):
        xb, yb = xs[i * B:(i + 1) * B], ys[i * B:(i + 1) * B]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    def validate(i):
        with torch.no_grad():
            xb, yb = xs[i * B:(i + 1) * B], ys[i * B:(i + 1) * B]
            return (model(xb).argmax(1) != yb).float().mean().item()

    return train, validate, torch.__version__


def torch_server(threads):
    """Child: per request line "<setup> <train|validate> N", the median ms of N steps."""
    models = {}

    def answer(line):
        name, kind, n = line.split()
        if name not in models:
            models[name] = torch_model(name, threads)
        return median_ms(models[name][0 if kind == "train" else 1], int(n))
    serve_torch(answer)


class TorchChild(JsonChild):
    def __init__(self, threads):
        super().__init__([sys.executable, os.path.abspath(__file__), "--torch-child", "--threads", str(threads)])

    def median_ms(self, name, kind, n):
        return self.ask(f"{name} {kind} {n}")


# -- the run --------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per setup and step kind")
    ap.add_argument("--block", type=int, default=5, help="steps per round (median taken)")
    ap.add_argument("--only", default=None, help="comma-separated setup names")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_child:
        return torch_server(args.threads)

    # a cold compile: an empty cache of our own for this run
    os.environ["SYMCNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="symcnn-bench-models-")
    import symcnn as theano
    from codegen.ceiling import ceiling
    from codegen.target import current
    theano.config.num_threads = args.threads
    estimate = ceiling(current(), args.threads)
    peak = measured_peak(args.threads)
    child = TorchChild(args.threads)
    names = args.only.split(",") if args.only else list(SETUPS)
    print(f"float32 ceiling: {estimate.gflops:.0f} GFLOP/s estimated ({estimate.method}); "
          f"measured now: {peak:.0f} GFLOP/s (FMA probe on {args.threads} threads, bench_peak.py), "
          f"the 'of peak' column's")
    print(f"PyTorch: {child.version or 'not installed (pip install torch==2.13.0)'}; {args.threads} threads each")
    head = (f"{'setup (batch)':<24}{'train ms':>9}{'torch':>8}{'ratio':>7}{'validate':>10}{'torch':>8}"
            f"{'ratio':>7}{'of peak':>9}{'compile s':>11}")
    print(head)
    worst = None
    for name in names:
        setup = SETUPS[name]
        train, validate, compile_s = symcnn_model(name, args.threads)
        row = {}
        for kind, fn in (("train", train), ("validate", validate)):
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(median_ms(fn, args.block))
                if child.version:
                    theirs.append(child.median_ms(name, kind, args.block))
            row[kind] = (statistics.median(ours),
                         statistics.median(theirs) if theirs else None,
                         statistics.median(a / b for a, b in zip(ours, theirs)) if theirs else None)
        share = train_gflop(setup) / (row["train"][0] / 1000) / peak
        f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        print(f"{name + ' (' + str(setup['batch']) + ')':<24}{f(row['train'][0]):>9}{f(row['train'][1]):>8}"
              f"{f(row['train'][2], 2):>7}{f(row['validate'][0], 2):>10}{f(row['validate'][1], 2):>8}"
              f"{f(row['validate'][2], 2):>7}{100 * share:>8.0f}%{compile_s:>11.2f}", flush=True)
        if row["train"][2] is not None and (worst is None or row["train"][2] > worst[1]):
            worst = (name, row["train"][2])
    child.close()
    if worst:
        print(f"worst train ratio: {worst[1]:.2f} ({worst[0]})")


def measured_peak(threads):
    """The float32 FMA throughput of `threads` threads now (bench_peak.py: the best of 15 rounds of
    about 10 ms, so that a neighbour's burst on the shared host does not set it)."""
    import bench_peak
    fn, lanes, engine, _ = bench_peak.compile_probe()
    iters = 1 << 21
    per_iter = bench_peak.CHAINS * lanes * 2
    return max(threads * iters * per_iter / bench_peak.run(fn, iters, threads) / 1e9 for _ in range(15))


if __name__ == "__main__":
    main()
