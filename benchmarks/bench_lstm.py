"""One LSTM training step: symcnn (the deeplearning.net `lstm` tutorial's cell, written with scan)
beside PyTorch eager's nn.LSTM, in the same run.

    python benchmarks/bench_lstm.py [--reps 20] [--threads 2]

Sizes: hidden 128, input 128 (the tutorial's dim_proj), sequence 50, batch 32. The step is the
tutorial's: the LSTM layer over the sequence (with its mask, all ones here), the mean of the hidden
states over time, a softmax classifier, the negative log-likelihood, its gradient with respect to
every parameter and an SGD update. PyTorch runs nn.LSTM + nn.Linear + cross-entropy, backward() and
an SGD step (its fused LSTM kernels; no mask). Times: median of `reps` wall-clock calls (the host may
be shared: run it at a quiet moment).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

import symcnn as theano  # noqa: E402
import symcnn.tensor as tensor  # noqa: E402

SEQ, BATCH, DIM, NCLASS = 50, 32, 128, 2


def numpy_floatX(data):
    return np.asarray(data, dtype=theano.config.floatX)


def ortho_weight(ndim, rng):
    W = rng.standard_normal((ndim, ndim))
    u, s, v = np.linalg.svd(W)
    return u.astype(theano.config.floatX)


def build_symcnn(rng):
    params = {
        "lstm_W": np.concatenate([ortho_weight(DIM, rng) for _ in range(4)], axis=1),
        "lstm_U": np.concatenate([ortho_weight(DIM, rng) for _ in range(4)], axis=1),
        "lstm_b": np.zeros((4 * DIM,), dtype=theano.config.floatX),
        "U": 0.01 * rng.standard_normal((DIM, NCLASS)).astype(theano.config.floatX),
        "b": np.zeros((NCLASS,), dtype=theano.config.floatX),
    }
    tparams = {k: theano.shared(v, name=k) for k, v in params.items()}
    x = tensor.tensor3("x", dtype=theano.config.floatX)   # (steps, samples, dim_proj): embedded words
    mask = tensor.matrix("mask", dtype=theano.config.floatX)
    y = tensor.ivector("y")
    nsteps = x.shape[0]
    n_samples = x.shape[1]
    dim_proj = DIM

    # -- the tutorial's lstm_layer, verbatim but for tensor.alloc and the 3-d dot ---------------------
    def _slice(_x, n, dim):
        if _x.ndim == 3:
            return _x[:, :, n * dim:(n + 1) * dim]
        return _x[:, n * dim:(n + 1) * dim]

    def _step(m_, x_, h_, c_):
        preact = tensor.dot(h_, tparams["lstm_U"])
        preact += x_

        i = tensor.nnet.sigmoid(_slice(preact, 0, dim_proj))
        f = tensor.nnet.sigmoid(_slice(preact, 1, dim_proj))
        o = tensor.nnet.sigmoid(_slice(preact, 2, dim_proj))
        c = tensor.tanh(_slice(preact, 3, dim_proj))

        c = f * c_ + i * c
        c = m_[:, None] * c + (1. - m_)[:, None] * c_

        h = o * tensor.tanh(c)
        h = m_[:, None] * h + (1. - m_)[:, None] * h_

        return h, c

    flat = x.reshape((nsteps * n_samples, DIM))
    state_below = (tensor.dot(flat, tparams["lstm_W"]) + tparams["lstm_b"]).reshape((nsteps, n_samples, 4 * DIM))
    zeros = tensor.zeros_like(state_below[0][:, :dim_proj])   # tensor.alloc(numpy_floatX(0.), n_samples, dim_proj)
    rval, updates = theano.scan(_step, sequences=[mask, state_below], outputs_info=[zeros, zeros],
                                name="lstm_layers", n_steps=nsteps)
    proj = rval[0]
    proj = (proj * mask[:, :, None]).sum(axis=0)
    proj = proj / mask.sum(axis=0)[:, None]
    pred = tensor.nnet.softmax(tensor.dot(proj, tparams["U"]) + tparams["b"])
    cost = -tensor.log(pred[tensor.arange(n_samples), y] + 1e-8).mean()
    grads = tensor.grad(cost, wrt=list(tparams.values()))
    lr = numpy_floatX(0.01)
    t0 = time.perf_counter()
    f = theano.function([x, mask, y], cost, updates=[(p, p - lr * g) for p, g in zip(tparams.values(), grads)])
    f.wait()
    return f, time.perf_counter() - t0


def build_torch(rng, threads):
    import torch
    torch.set_num_threads(threads)
    lstm = torch.nn.LSTM(DIM, DIM)
    head = torch.nn.Linear(DIM, NCLASS)
    opt = torch.optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        h, _ = lstm(x)
        loss = torch.nn.functional.cross_entropy(head(h.mean(dim=0)), y)
        loss.backward()
        opt.step()
        return loss
    return step


def median_time(fn, reps):
    """Medians of the wall-clock and of the process CPU time of one call. On a shared host the
    CPU time (with 1 thread) is the steadier figure: waiting for a core does not count."""
    fn()
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((SEQ, BATCH, DIM)).astype("float32")
    mv = np.ones((SEQ, BATCH), dtype="float32")
    yv = rng.integers(0, NCLASS, BATCH).astype("int32")
    # PyTorch first: a compiled symcnn function keeps its worker threads, which may compete
    # with PyTorch's OpenMP threads for the two cores
    tt = None
    try:
        import torch
        step = build_torch(rng, args.threads)
        xt, yt = torch.from_numpy(xv), torch.from_numpy(yv.astype("int64"))
        tt, tt_cpu = median_time(lambda: step(xt, yt), args.reps)
    except ImportError:
        pass
    theano.config.num_threads = args.threads
    f, compile_s = build_symcnn(rng)
    costs = [float(f(xv, mv, yv)) for _ in range(3)]
    sym, sym_cpu = median_time(lambda: f(xv, mv, yv), args.reps)
    print(f"symcnn   LSTM train step (seq {SEQ}, batch {BATCH}, hidden {DIM}): {sym * 1e3:8.2f} ms "
          f"(CPU {sym_cpu * 1e3:.2f} ms; compile {compile_s:.2f} s; cost {costs[0]:.4f} -> {costs[-1]:.4f})")
    if tt is None:
        print("PyTorch is not installed: no comparison")
        return
    print(f"PyTorch  nn.LSTM eager train step ({torch.__version__}, {args.threads} threads): {tt * 1e3:8.2f} ms "
          f"(CPU {tt_cpu * 1e3:.2f} ms)")
    print(f"ratio symcnn / PyTorch: {sym / tt:.2f} (CPU time: {sym_cpu / tt_cpu:.2f})")

if __name__ == "__main__":
    main()
