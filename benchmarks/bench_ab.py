"""A/B: the LeNet train/validate steps of two source trees (e.g. a checkout of an older commit and this
one), each in its own child process, asked alternately for blocks of steps so both see the same load.

    python benchmarks/bench_ab.py OLD_TREE NEW_TREE [SYMCNN_FLAGS for NEW]

Prints per step kind the medians and the median (and range) of NEW/OLD over the rounds."""
import json, os, statistics, subprocess, sys
SERVER = r'''
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
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
def child(tree, flags):
    env = dict(os.environ, PYTHONPATH=tree, SYMCNN_CACHE_DIR="/tmp/symcnn-cache-port-ab-" + os.path.basename(tree))
    if flags: env["SYMCNN_FLAGS"] = flags
    p = subprocess.Popen([sys.executable, "-c", SERVER, tree], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree)
    assert p.stdout.readline().strip() == "ready"
    return p
def ask(p, k, n):
    p.stdin.write(f"{k} {n}\n"); p.stdin.flush(); return json.loads(p.stdout.readline())
a_tree, b_tree = sys.argv[1], sys.argv[2]
b_flags = sys.argv[3] if len(sys.argv) > 3 else ""
rounds, block = 8, 4
A, Bc = child(a_tree, ""), child(b_tree, b_flags)
for k in ("train", "validate"):
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(ask(A, k, block)); tb.append(ask(Bc, k, block))
    r = sorted(b / a for a, b in zip(ta, tb))
    print(f"{k}: A {statistics.median(ta):.1f} ms, B {statistics.median(tb):.1f} ms, B/A median {statistics.median(r):.2f} (range {r[0]:.2f}-{r[-1]:.2f}); A blocks {[round(v) for v in ta]}, B blocks {[round(v) for v in tb]}")
for p in (A, Bc):
    p.stdin.close(); p.wait()
