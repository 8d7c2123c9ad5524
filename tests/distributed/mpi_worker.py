"""Run by tests/distributed/test_mpi.py under `mpirun -n N python mpi_worker.py CASE OUT [args]`.
Each case checks its own results on every rank (an AssertionError aborts the job, so mpirun
exits non-zero) and rank 0 writes what the test compares to OUT as JSON."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import symcnn  # noqa: E402
import symcnn.tensor as T  # noqa: E402
from symcnn import distributed as D  # noqa: E402
from symcnn.layers import HiddenLayer, LogisticRegression  # noqa: E402
from symcnn.training import early_stopping  # noqa: E402

MODES = ("native", "reference")


def collectives():
    r, n = D.rank(), D.size()
    x, y = T.fmatrix("x"), T.lvector("y")
    w = T.fmatrix("w")
    s = D.psum(x)
    bucket = D.psum([x, y, 2 * x])
    m = D.pmean(x)
    # d/dx sum(psum(x) * w) = psum(w), d/dx sum(pmean(x) * w) = pmean(w) (JAX's transpose rule)
    gs = T.grad(T.sum(s * w), x)
    gm = T.grad(T.sum(m * w), x)
    # a collective whose result is read only after other work (its wait comes late)
    late = D.psum(x * 3) + T.tanh(T.dot(x, x.T)).sum()
    xv = np.arange(6, dtype="float32").reshape(2, 3) * (r + 1)
    yv = np.arange(4) * (r + 1)
    wv = np.full((2, 3), r + 1.5, dtype="float32")
    ranks = np.arange(1, n + 1)
    want_sum = np.arange(6, dtype="float32").reshape(2, 3) * ranks.sum()
    want_w = np.full((2, 3), (ranks + 0.5).sum(), dtype="float32")
    for mode in MODES:
        f = symcnn.function([x, y, w], [s, *bucket, m, gs, gm, late], mode=mode)
        out = f(xv, yv, wv)
        np.testing.assert_allclose(out[7], 3 * want_sum + np.tanh(xv @ xv.T).sum(), rtol=1e-5)
        np.testing.assert_allclose(out[0], want_sum, rtol=1e-6)
        np.testing.assert_allclose(out[1], want_sum, rtol=1e-6)
        np.testing.assert_array_equal(out[2], np.arange(4) * ranks.sum())
        np.testing.assert_allclose(out[3], 2 * want_sum, rtol=1e-6)
        np.testing.assert_allclose(out[4], want_sum / n, rtol=1e-6)
        np.testing.assert_allclose(out[5], want_w, rtol=1e-6)
        np.testing.assert_allclose(out[6], want_w / n, rtol=1e-6)
    return {"size": n, "modes": list(MODES)}


def _model(rng, x, batch):
    hidden = HiddenLayer(rng, x, 20, 16, activation=T.tanh)
    top = LogisticRegression(hidden.output, 16, 4)
    return hidden, top, hidden.params + top.params


def _data(n_rows, seed=1):
    g = np.random.RandomState(seed)
    xs = g.rand(n_rows, 20).astype("float32")
    ys = (xs[:, :4].argmax(axis=1)).astype("int32")
    return xs, ys


def equality(global_batch="30", steps="10"):
    """Parameters after `steps` distributed SGD steps == after as many single-process steps."""
    r, n = D.rank(), D.size()
    global_batch, steps = int(global_batch), int(steps)
    xs, ys = _data(global_batch * steps)
    index = T.lscalar()
    # single process on the global batches (computed on every rank, each alone)
    x, y = T.fmatrix("x"), T.ivector("y")
    _, top, params = _model(np.random.RandomState(5), x, global_batch)
    cost = top.negative_log_likelihood(y)
    gx, gy = symcnn.shared(xs), symcnn.shared(ys)
    sl = slice(index * global_batch, (index + 1) * global_batch)
    single = symcnn.function([index], cost, updates=[(p, p - 0.5 * g) for p, g in zip(params, T.grad(cost, params))],
                             givens={x: gx[sl], y: gy[sl]})
    # distributed: this rank's part of every global batch
    lo, hi = D.shard_bounds(global_batch, r, n)
    local = hi - lo
    sx, sy = D.shard((symcnn.shared(xs), symcnn.shared(ys)), r, n, batch_size=global_batch)
    x2, y2 = T.fmatrix("x2"), T.ivector("y2")
    _, top2, params2 = _model(np.random.RandomState(5), x2, local)
    share = np.float32(local / global_batch)
    # two buckets, as a training step sends them: the last layer's gradients first
    local_grads = [g * share for g in T.grad(top2.negative_log_likelihood(y2), params2)]
    top_grads = D.psum(local_grads[2:])
    grads = D.psum(local_grads[:2]) + top_grads
    sl2 = slice(index * local, (index + 1) * local)
    dist = symcnn.function([index], [], updates=[(p, p - 0.5 * g) for p, g in zip(params2, grads)],
                           givens={x2: sx[sl2], y2: sy[sl2]})
    for i in range(steps):
        single(i)
        dist(i)
    diffs = []
    for p, q in zip(params, params2):
        a, b = p.get_value(), q.get_value()
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        diffs.append(float(np.max(np.abs(a - b))))
    moved = max(float(np.max(np.abs(p.get_value()))) for p in params[2:])  # the logistic layer started at 0
    assert moved > 1e-3, "the parameters did not move: the comparison would say nothing"
    return {"size": n, "local_batch": local, "max_abs_diff": max(diffs)}


def train(epochs="4", checkpoint="", resume=""):
    """early_stopping on a small data-parallel MLP; every rank reports its stopping point."""
    r, n = D.rank(), D.size()
    batch = 40
    xs, ys = _data(batch * 12, seed=3)
    sets = [(symcnn.shared(xs[:batch * 8]), symcnn.shared(ys[:batch * 8])),
            (symcnn.shared(xs[batch * 8:batch * 10]), symcnn.shared(ys[batch * 8:batch * 10])),
            (symcnn.shared(xs[batch * 10:]), symcnn.shared(ys[batch * 10:]))]
    sets = D.shard(sets, r, n, batch_size=batch)
    lo, hi = D.shard_bounds(batch, r, n)
    local = hi - lo
    index = T.lscalar()
    x, y = T.fmatrix("x"), T.ivector("y")
    rng = np.random.RandomState(7)
    _, top, params = _model(rng, x, local)
    D.broadcast(params)
    share = np.float32(local / batch)
    summed = D.psum([top.negative_log_likelihood(y) * share] +
                    [g * share for g in T.grad(top.negative_log_likelihood(y), params)])
    wrong, count = D.psum([T.sum(T.neq(top.y_pred, y)), y.shape[0]])
    sl = slice(index * local, (index + 1) * local)

    def given(k):
        return {x: sets[k][0][sl], y: sets[k][1][sl]}
    train_model = symcnn.function([index], summed[0], updates=[(p, p - 0.3 * g) for p, g in zip(params, summed[1:])],
                                  givens=given(0))
    validate_model = symcnn.function([index], wrong / count, givens=given(1))
    test_model = symcnn.function([index], wrong / count, givens=given(2))
    printed = []
    result = early_stopping(train_model, validate_model, test_model, 8, 2, 2, n_epochs=int(epochs),
                            patience=12, patience_increase=1.5, improvement_threshold=0.995,
                            print_fn=printed.append, progress=False, params=params, rng=rng,
                            checkpoint_path=checkpoint or None, resume=resume or None)
    comm = D.world()
    mine = {"rank": r, "iterations": result.iterations, "best_iter": result.best_iter,
            "validation_errors": result.validation_errors, "printed": len(printed),
            "params": [p.get_value().tolist() for p in params]}
    every = comm.allgather(mine) if comm is not None else [mine]
    return {"size": n, "ranks": every}


def fail():
    """Rank 1 raises while rank 0 waits in a collective: the job must end, not hang."""
    x = T.fvector("x")
    f = symcnn.function([x], D.psum(x))
    if D.rank() == 1:
        raise RuntimeError("rank 1 fails on purpose")
    f(np.ones(3, dtype="float32"))
    f(np.ones(3, dtype="float32"))
    return {}


def bad_label():
    """A label out of range in rank 1's shard only: rank 1's native call fails (and must not
    re-run the graph's collectives alone to explain it); the job ends instead of hanging."""
    p, y = T.fmatrix("p"), T.ivector("y")
    summed, = D.psum([p])   # a collective before the bad index: an explanation re-run would call it alone
    picked = summed[T.arange(y.shape[0]), y]
    total, = D.psum([picked.sum()])
    f = symcnn.function([p, y], total)
    labels = np.array([0, 1, 2] if D.rank() == 0 else [0, 1, 7], dtype="int32")
    f(np.ones((3, 3), dtype="float32"), labels)
    return {}


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    result = globals()[case](*sys.argv[3:])
    if D.rank() == 0:
        with open(out, "w") as fh:
            json.dump(result, fh)
