"""A/B: the LeNet train/validate steps of two source trees (e.g. a checkout of an older commit and this
one), each in its own child process, asked alternately for blocks of steps so both see the same load.

    python benchmarks/bench_ab.py OLD_TREE NEW_TREE [SYMCNN_FLAGS for NEW] [--setup NAME]

--setup: a setup of bench_models.py's zoo (allconv, cifar, ...) instead of the tutorial's LeNet.

Prints per step kind the medians and the median (and range) of NEW/OLD over the rounds."""
import json, os, statistics, subprocess, sys
SERVER = r'''
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
if len(sys.argv) > 2:   # a zoo setup (its steps take the minibatch index, as LeNet's)
    import bench_models as M
    import bench_lenet as B
    train, validate, _ = M.symcnn_model(sys.argv[2], 2)
    fns = {"train": train, "validate": validate}
else:
    import bench_lenet as B
    x, y = B.data(500) if hasattr(B, "data") else (None, None)
    if x is None:
        import numpy as np
        rng = np.random.RandomState(0); x = rng.rand(2000, 784).astype("float32"); y = rng.randint(0, 10, 2000).astype("int32")
    train, validate, test, _, _ = B.build(500, [20, 50], x, y, "native")
    fns = {"train": train, "validate": validate}
print("ready", flush=True)
for line in sys.stdin:
    k, n = line.split()
    print(json.dumps(B.median_ms(fns[k], 4, int(n), warmup=1)), flush=True)
'''
def child(tree, flags, setup=None):
    env = dict(os.environ, PYTHONPATH=tree, SYMCNN_CACHE_DIR="/tmp/symcnn-cache-port-ab-" + os.path.basename(tree))
    if flags: env["SYMCNN_FLAGS"] = flags
    p = subprocess.Popen([sys.executable, "-c", SERVER, tree] + ([setup] if setup else []), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree)
    assert p.stdout.readline().strip() == "ready"
    return p
def ask(p, k, n):
    p.stdin.write(f"{k} {n}\n"); p.stdin.flush(); return json.loads(p.stdout.readline())
args = sys.argv[1:]
setup = None
if "--setup" in args:
    i = args.index("--setup")
    setup = args[i + 1]
    del args[i:i + 2]
a_tree, b_tree = args[0], args[1]
b_flags = args[2] if len(args) > 2 else ""
rounds, block = 8, 4
A, Bc = child(a_tree, "", setup), child(b_tree, b_flags, setup)
for k in ("train", "validate"):
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(ask(A, k, block)); tb.append(ask(Bc, k, block))
    r = sorted(b / a for a, b in zip(ta, tb))
    print(f"{k}: A {statistics.median(ta):.1f} ms, B {statistics.median(tb):.1f} ms, B/A median {statistics.median(r):.2f} (range {r[0]:.2f}-{r[-1]:.2f}); A blocks {[round(v) for v in ta]}, B blocks {[round(v) for v in tb]}")
for p in (A, Bc):
    p.stdin.close(); p.wait()
