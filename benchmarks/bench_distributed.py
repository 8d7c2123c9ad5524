"""Data-parallel LeNet5 (the tutorial's model, global batch 500) on one machine, and a model of N.

For 1 rank x 2 threads, 2 ranks x 1 thread and 2 ranks x 2 threads (the gradients in two
buckets, as examples/evaluate_lenet5.py --distributed sends them): training throughput
(examples/s over the median step) and, under mpirun, the allreduce of one step's gradients
alone (one bucket, the same bytes, timed with mpi4py between steps) and its share of the step.
Then, at 2 ranks x 1 thread, the two designs: collectives inside the native call (one bucket,
or two so the first travels during the backward pass) against splitting the step into a native
gradient call, an mpi4py Allreduce and a native update call.
Then the ring-allreduce model for N machines: a step moves 2(N-1)/N x gradient bytes per rank,
so step(N) = compute + 2(N-1)/N x bytes / bandwidth (no overlap assumed), efficiency =
compute / step(N), at 10 GbE and 100 GbE for N = 2, 8, 32, from the measured 1-rank step.

    python benchmarks/bench_distributed.py [--steps 12]
(launches the configurations itself with the mpirun beside this Python, else on PATH)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def worker(steps, out, variant):
    import symcnn
    import symcnn.tensor as T
    from symcnn import distributed as D
    from symcnn.layers import build_lenet5
    r, n = D.rank(), D.size()
    batch = 500
    lo, hi = D.shard_bounds(batch, r, n)
    local = hi - lo
    g = np.random.RandomState(0)
    data_x = symcnn.shared(g.rand(local * 4, 784).astype("float32"))
    data_y = symcnn.shared(g.randint(0, 10, local * 4).astype("int32"))
    x, y, index = T.matrix("x"), T.ivector("y"), T.lscalar()
    model = build_lenet5(np.random.RandomState(23455), x, local)
    params = model.params  # layer3, layer2, layer1, layer0: the order their gradients are ready
    cost = model.negative_log_likelihood(y)
    share = np.float32(local / batch)
    local_grads = [gr * share for gr in T.grad(cost, params)]
    sl = slice(index * local, (index + 1) * local)
    givens = {x: data_x[sl], y: data_y[sl]}
    comm = D.world()
    if variant == "split":
        # the other design: native gradient call, mpi4py Allreduce on its (packed) results, native update call
        grads_fn = symcnn.function([index], local_grads, givens=givens)
        g_in = [T.TensorType("float32", shape=(None,) * p.ndim)() for p in params]
        update_fn = symcnn.function(g_in, [], updates=[(p, p - 0.1 * gi) for p, gi in zip(params, g_in)])
        sizes = [p.get_value(borrow=True).size for p in params]
        send, recv = np.empty(sum(sizes), "float32"), np.empty(sum(sizes), "float32")

        def train(i):
            gs = grads_fn(i)
            np.concatenate([a.ravel() for a in gs], out=send)
            if comm is not None:
                comm.Allreduce(send, recv)
            else:
                recv[:] = send
            parts, off = [], 0
            for a, k in zip(gs, sizes):
                parts.append(recv[off:off + k].reshape(a.shape))
                off += k
            update_fn(*parts)
    else:
        if variant == "one-bucket":
            grads = D.psum(local_grads)
        else:  # two buckets: layer3 + layer2 first, sent while the conv layers' gradients are computed
            grads = D.psum(local_grads[:4]) + D.psum(local_grads[4:])
        train = symcnn.function([index], [], updates=[(p, p - 0.1 * gr) for p, gr in zip(params, grads)],
                                givens=givens)
    train(0)
    times, reduce_times = [], []
    nbytes = sum(p.get_value(borrow=True).nbytes for p in params)
    buf = np.ones(nbytes // 4, dtype="float32")
    recv_buf = np.empty_like(buf)
    for i in range(steps):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        train(i % 4)
        times.append(time.perf_counter() - t0)
        if comm is not None:
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(buf, recv_buf)
            reduce_times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    res = {"ranks": n, "step_s": step, "examples_per_s": batch / step, "grad_bytes": nbytes,
           "allreduce_s": statistics.median(reduce_times) if reduce_times else 0.0}
    if comm is not None:
        res["step_s"] = max(comm.allgather(step))  # the slowest rank sets the pace
        res["examples_per_s"] = batch / res["step_s"]
    if r == 0:
        with open(out, "w") as f:
            json.dump(res, f)


def launch(ranks, threads, steps, variant="two-buckets"):
    out = tempfile.mktemp(suffix=".json")
    env = dict(os.environ, SYMCNN_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(steps), "--out", out,
          "--variant", variant]
    if ranks == 1:
        cmd = me
    else:
        beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
        mpirun = beside if os.path.exists(beside) else shutil.which("mpirun")
        if mpirun is None:
            raise SystemExit("mpirun not found: pip install 'symcnn[mpi]'")
        cmd = [mpirun, "-n", str(ranks), "--oversubscribe", "--bind-to", "none", *me]
    subprocess.run(cmd, env=env, check=True, timeout=1800)
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--variant", default="two-buckets", choices=["one-bucket", "two-buckets", "split"])
    args = ap.parse_args()
    if args.worker:
        return worker(args.steps, args.out, args.variant)
    print(f"load average: {os.getloadavg()}")
    rows = {}
    for ranks, threads in ((1, 2), (2, 1), (2, 2)):
        res = rows[(ranks, threads)] = launch(ranks, threads, args.steps)
        share = res["allreduce_s"] / res["step_s"] if res["step_s"] else 0.0
        print(f"{ranks} rank(s) x {threads} thread(s): step {res['step_s'] * 1e3:.0f} ms, "
              f"{res['examples_per_s']:.0f} examples/s, allreduce {res['allreduce_s'] * 1e3:.1f} ms "
              f"({100 * share:.1f} % of the step)")
    print("2 ranks x 1 thread, how the gradients travel:")
    for variant in ("one-bucket", "two-buckets", "split"):
        res = launch(2, 1, args.steps, variant)
        print(f"  {variant}: step {res['step_s'] * 1e3:.0f} ms, {res['examples_per_s']:.0f} examples/s")
    base = rows[(1, 2)]
    print(f"2 ranks x 1 thread / 1 rank x 2 threads throughput: "
          f"{100 * rows[(2, 1)]['examples_per_s'] / base['examples_per_s']:.0f} %")
    compute, nbytes = base["step_s"], base["grad_bytes"]
    print(f"ring model: gradient {nbytes / 1e6:.2f} MB, compute {compute * 1e3:.0f} ms per step (1 rank x 2 threads)")
    for name, gbit in (("10 GbE", 10), ("100 GbE", 100)):
        cells = []
        for n in (2, 8, 32):
            comm = 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8)
            cells.append(f"N={n}: {100 * compute / (compute + comm):.1f} %")
        print(f"  {name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
