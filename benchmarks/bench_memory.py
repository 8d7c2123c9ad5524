"""Peak memory (max RSS) of a whole LeNet5 training run: symcnn native versus PyTorch eager.

What it measures: each contender runs the tutorial's complete `evaluate_lenet5` job -- load the
mnist.pkl.gz-style pickle, build the model (conv 5x5x20 + max-pool 2 + tanh, conv 5x5x50 +
max-pool 2 + tanh, tanh hidden layer 800 -> 500, softmax 500 -> 10), compile (symcnn),
minibatch SGD at batch 500 and learning rate 0.1 for --epochs epochs, validation after every
epoch and the test set whenever validation improves, keeping the best parameters -- in its own
fresh Python process, one after the other. The peak is the child's own VmHWM from
/proc/self/status, read as its last action: the high-water mark of its resident set (interpreter,
imported libraries, dataset, compiled code, buffers), so each figure belongs to one process only.
Its `getrusage(RUSAGE_SELF).ru_maxrss` and the per-child rusage returned by `os.wait4` are printed
beside it; they agree when the parent is small, but Linux carries the parent's peak across fork,
so from a big parent (e.g. bench_lenet.py) they show the parent's. symcnn runs `examples/evaluate_lenet5.py`'s `evaluate_lenet5`
itself in native mode, twice: with an empty compiled-code cache (its peak includes LLVM
compilation) and again with that cache filled (a user's second run). PyTorch runs the same loop
eagerly (2 threads by default), initialised from the same numpy RandomState draws (kernels
flipped, since symcnn's conv2d is a true convolution), so both should reach about the same
validation error, printed as a check that both trained. Wall times are those of each whole child
process (imports included) and of its training loop alone.

    python benchmarks/bench_memory.py [--dataset ../shared/data/mnist10k/mnist10k.pkl.gz] [--epochs 5]
                                      [--threads 2] [--stages]

--stages also prints, for each child, the resident set (VmRSS) and its high-water mark (VmHWM)
after each phase of the run (imports, data loading, model and compile, first train call, training).
"""
import argparse
import gzip
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATASET = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist10k", "mnist10k.pkl.gz")
RESULT_TAG = "BENCH_MEMORY_RESULT "

# The tutorial's hyper-parameters (examples/evaluate_lenet5.py).
SEED = 23455
NKERNS = (20, 50)
PATIENCE, PATIENCE_INCREASE, IMPROVEMENT_THRESHOLD = 10000, 2, 0.995


# --------------------------------------------------------------------------- measuring inside a child

def _status_mib():
    """(VmRSS, VmHWM) of this process in MiB, from /proc/self/status (None where unavailable)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) / 1024.0  # kB
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


def _maxrss_mib(ru_maxrss):
    # Linux reports kilobytes, macOS bytes.
    return ru_maxrss / (2.0 ** 20 if sys.platform == "darwin" else 1024.0)


class _Stages:
    def __init__(self, enabled):
        self.enabled, self.rows = enabled, []

    def mark(self, name):
        if self.enabled:
            self.rows.append((name,) + _status_mib())


def _report(kind, wall_start, train_seconds, best_valid, test_score, epochs, stages, extra=None):
    """Print the child's result as one JSON line; the peak is read last, after everything ran."""
    stages.mark("end")
    rss, hwm = _status_mib()
    maxrss = _maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    # VmHWM belongs to this process's own address space; ru_maxrss also counts the parent's
    # peak at fork (Linux keeps it across fork and exec), too much when a big process starts us
    peak = hwm if hwm is not None else maxrss
    result = dict(kind=kind, peak_mib=peak, maxrss_mib=maxrss, vmhwm_mib=hwm, vmrss_end_mib=rss, wall_s=time.perf_counter() - wall_start,
                  train_s=train_seconds, best_validation_error=best_valid, test_error=test_score, epochs=epochs,
                  stages=stages.rows)
    result.update(extra or {})
    sys.stdout.flush()
    print(RESULT_TAG + json.dumps(result), flush=True)


def _child_symcnn(args, wall_start):
    stages = _Stages(args.stages)
    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.join(REPO, "examples"))
    import evaluate_lenet5 as example  # the tutorial example itself (imports symcnn)
    stages.mark("imports (symcnn, numpy)")
    if args.stages:
        # Same run, with marks between its phases: wrap the phases evaluate_lenet5 calls.
        import symcnn
        real_load, real_function, real_early_stopping = example.load_data, symcnn.function, example.early_stopping
        compiled = []

        def load_data(*a, **k):
            out = real_load(*a, **k)
            stages.mark("data loaded")
            return out

        def function(*a, **k):
            fn = real_function(*a, **k)
            compiled.append(fn)
            stages.mark(f"compiled function {len(compiled)} of 3")
            return fn

        def early_stopping(train_model, *a, **k):
            first = [True]

            def train_once(i):
                out = train_model(i)
                if first[0]:
                    first[0] = False
                    stages.mark("first train call")
                return out
            out = real_early_stopping(train_once, *a, **k)
            stages.mark("training done")
            return out

        example.load_data, example.theano.function, example.early_stopping = load_data, function, early_stopping
    t0 = time.perf_counter()
    result = example.evaluate_lenet5(learning_rate=args.learning_rate, n_epochs=args.epochs, dataset=args.dataset,
                                     nkerns=list(NKERNS), batch_size=args.batch_size, seed=SEED, verbose=False)
    loop_s = result.elapsed if result.elapsed else time.perf_counter() - t0
    import symcnn
    _report("symcnn", wall_start, loop_s, result.best_validation_loss, result.test_score, result.epochs_run, stages,
            dict(version=getattr(symcnn, "__version__", "checkout"), threads=symcnn.config.num_threads))


def _child_torch(args, wall_start):
    stages = _Stages(args.stages)
    import numpy
    import torch
    torch.set_num_threads(args.threads)
    nn = torch.nn
    stages.mark("imports (torch, numpy)")

    # Data: the tutorial's load_data, reading the gzip'd pickle as a stream.
    with gzip.open(args.dataset, "rb") as f:
        sets = pickle.load(f, encoding="latin1")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = [
        (torch.from_numpy(numpy.asarray(x, dtype=numpy.float32)).reshape(-1, 1, 28, 28),
         torch.from_numpy(numpy.asarray(y, dtype=numpy.int64))) for x, y in sets]
    del sets
    stages.mark("data loaded")
    bs = args.batch_size
    n_train, n_valid, n_test = len(train_x) // bs, len(valid_x) // bs, len(test_x) // bs

    model = nn.Sequential(
        nn.Conv2d(1, NKERNS[0], 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Conv2d(NKERNS[0], NKERNS[1], 5), nn.MaxPool2d(2), nn.Tanh(),
        nn.Flatten(), nn.Linear(NKERNS[1] * 16, 500), nn.Tanh(), nn.Linear(500, 10))
    # symcnn.layers' initialisation, drawn in build_lenet5's order from the same RandomState.
    rng = numpy.random.RandomState(SEED)
    with torch.no_grad():
        for conv, shape in ((model[0], (NKERNS[0], 1, 5, 5)), (model[3], (NKERNS[1], NKERNS[0], 5, 5))):
            fan_in = numpy.prod(shape[1:])
            fan_out = shape[0] * numpy.prod(shape[2:]) // 4
            bound = numpy.sqrt(6. / (fan_in + fan_out))
            w = numpy.asarray(rng.uniform(low=-bound, high=bound, size=shape), dtype=numpy.float32)
            conv.weight.copy_(torch.from_numpy(numpy.ascontiguousarray(w[:, :, ::-1, ::-1])))
            conv.bias.zero_()
        n_in, n_out = NKERNS[1] * 16, 500
        bound = numpy.sqrt(6. / (n_in + n_out))
        w = numpy.asarray(rng.uniform(low=-bound, high=bound, size=(n_in, n_out)), dtype=numpy.float32)
        model[7].weight.copy_(torch.from_numpy(numpy.ascontiguousarray(w.T)))
        model[7].bias.zero_()
        model[9].weight.zero_()
        model[9].bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    stages.mark("model built")

    def batch(xs, ys, i):
        return xs[i * bs:(i + 1) * bs], ys[i * bs:(i + 1) * bs]

    def errors(xs, ys, n):
        with torch.no_grad():
            return float(numpy.mean([(model(xb).argmax(1) != yb).float().mean().item()
                                     for xb, yb in (batch(xs, ys, i) for i in range(n))]))

    # The tutorial's early-stopping loop (symcnn.training.early_stopping).
    t0 = time.perf_counter()
    patience, best_valid, test_score, best_params = PATIENCE, float("inf"), 0.0, None
    validation_frequency = min(n_train, patience // 2)
    epoch, done, first = 0, False, True
    while epoch < args.epochs and not done:
        epoch += 1
        for mb in range(n_train):
            it = (epoch - 1) * n_train + mb
            xb, yb = batch(train_x, train_y, mb)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()
            if first:
                first = False
                stages.mark("first train call")
            if (it + 1) % validation_frequency == 0:
                this_valid = errors(valid_x, valid_y, n_valid)
                if this_valid < best_valid:
                    if this_valid < best_valid * IMPROVEMENT_THRESHOLD:
                        patience = max(patience, it * PATIENCE_INCREASE)
                    best_valid = this_valid
                    test_score = errors(test_x, test_y, n_test)
                    best_params = [p.detach().clone() for p in model.parameters()]
            if patience <= it:
                done = True
                break
    if best_params is not None:
        with torch.no_grad():
            for p, v in zip(model.parameters(), best_params):
                p.copy_(v)
    loop_s = time.perf_counter() - t0
    stages.mark("training done")
    _report("torch", wall_start, loop_s, best_valid, test_score, epoch, stages,
            dict(version=torch.__version__, threads=torch.get_num_threads()))


# --------------------------------------------------------------------------- the parent

def _torch_installed():
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _run_child(kind, args, env):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--dataset", args.dataset,
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           "--learning-rate", str(args.learning_rate)] + (["--stages"] if args.stages else [])
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env, text=True)
        # Reap it ourselves: os.wait4 gives this one child's resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    lines = [l for l in out.splitlines() if l.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(out + err)
        raise SystemExit(f"bench_memory: the {kind} run failed (exit code {proc.returncode}): {' '.join(cmd)}")
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result["wait4_maxrss_mib"] = _maxrss_mib(usage.ru_maxrss)
    result["process_wall_s"] = wall
    return result


def _table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=DEFAULT_DATASET, help="a mnist.pkl.gz-style pickle (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs for both runs (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads (default 2)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--learning-rate", type=float, default=0.1)
    ap.add_argument("--stages", action="store_true", help="also print VmRSS/VmHWM after each phase of each run")
    ap.add_argument("--child", choices=["symcnn", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    wall_start = time.perf_counter()
    if not os.path.isfile(args.dataset):
        raise SystemExit(f"bench_memory: dataset not found: {args.dataset}\n"
                         f"Pass --dataset PATH to a mnist.pkl.gz-style gzip'd pickle ((train_x, train_y), "
                         f"(valid_x, valid_y), (test_x, test_y)), e.g. ../shared/data/mnist10k/mnist10k.pkl.gz "
                         f"(relative to the repository root).")
    args.dataset = os.path.abspath(args.dataset)
    if args.child == "symcnn":
        return _child_symcnn(args, wall_start)
    if args.child == "torch":
        return _child_torch(args, wall_start)

    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        # A private compiled-code cache: empty for the first run (its peak includes LLVM
        # compilation), then as a user's second run finds it (machine code loaded from disk).
        env["SYMCNN_CACHE_DIR"] = cache
        runs.append(("symcnn native, cold cache", _run_child("symcnn", args, env)))
        runs.append(("symcnn native, warm cache", _run_child("symcnn", args, env)))
    if _torch_installed():
        r = _run_child("torch", args, env)
        runs.append((f"PyTorch {r['version']} eager", r))
    else:
        print("# PyTorch is not installed: only symcnn was measured (pip install torch==2.13.0 to compare)")

    print(f"# LeNet5 peak memory: {args.dataset}, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.learning_rate}; each run in its own fresh process, one after the other")
    print(f"# machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
    torch_peak = runs[-1][1]["peak_mib"] if runs[-1][1]["kind"] == "torch" else None
    rows = [["run", "threads", "peak RSS (MiB)", "/ PyTorch", "ru_maxrss, wait4 (MiB)", "wall, process (s)",
             "wall, training loop (s)", "epochs", "best valid. error (%)", "its test error (%)"]]
    for name, r in runs:
        rows.append([name, str(r["threads"]), f"{r['peak_mib']:.1f}",
                     f"{r['peak_mib'] / torch_peak:.2f}" if torch_peak else "-",
                     f"{r['maxrss_mib']:.1f}, {r['wait4_maxrss_mib']:.1f}",
                     f"{r['process_wall_s']:.2f}", f"{r['train_s']:.2f}", str(r["epochs"]),
                     f"{100 * r['best_validation_error']:.2f}", f"{100 * r['test_error']:.2f}"])
    print(_table(rows))
    if args.stages:
        for name, r in runs:
            print()
            print(f"# {name}: resident set after each phase (MiB)")
            print(_table([["after", "VmRSS", "VmHWM (peak so far)"]]
                         + [[name, f"{rss:.1f}", f"{hwm:.1f}"] for name, rss, hwm in r["stages"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
