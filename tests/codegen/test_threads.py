"""The per-image loops of ConvPoolAct / ConvPoolActGrad on several threads (config.num_threads),
and the pool of worker threads a compiled function keeps (codegen/threadpool.py)."""
import ctypes
import gc
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.config import config

from tests.helpers import allow_more_threads_than_cores, check_native_vs_reference, conv_act_apply, conv_act_ops

RTOL, ATOL = 1e-4, 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (image shape without the batch, W shape, conv kwargs, pool kwargs): odd sizes
CASES = [
    ((3, 9, 11), (5, 3, 3, 2), {}, dict(ws=(2, 2))),
    ((2, 7, 7), (3, 2, 3, 3), dict(border_mode="half", subsample=(2, 1)), dict(ws=(3, 2), stride=(1, 2))),
    ((4, 10, 10), (7, 4, 3, 3), {}, dict(ws=(2, 2))),   # static: whole output rows per vector, gx fused
    ((3, 8, 9), (4, 3, 3, 3), dict(border_mode="half"), dict(pool=None)),   # no pooling
]


@pytest.fixture
def threads(monkeypatch):
    old = config.num_threads
    allow_more_threads_than_cores(monkeypatch)

    def set_threads(n):
        config.num_threads = n
    yield set_threads
    config.num_threads = old


def _graph(case, batch, static):
    img, ws, conv, pool_kw = case
    kw = dict(conv, **pool_kw)
    if static:
        kw.update(imshp=(batch,) + img, kshp=ws)
    x, W, b, g = T.tensor4("x"), T.tensor4("W"), T.vector("b"), T.tensor4("g")
    fwd, bwd, bwd_nogx = conv_act_ops("tanh" if img[0] % 2 else "maximum", **kw)   # out- and z-reading
    fouts, grads = conv_act_apply(fwd, bwd, x, W, b, g)
    out = fouts[0]
    _, grads2 = conv_act_apply(fwd, bwd_nogx, x, W, b, g * 2)
    rng = np.random.RandomState(batch)
    xv = rng.standard_normal((batch,) + img).astype("float32")
    Wv = (rng.standard_normal(ws) * 0.3).astype("float32")
    bv = rng.uniform(-0.5, 0.5, ws[0]).astype("float32")
    ref = symcnn.function([x, W, b], out, mode="reference")(xv, Wv, bv)
    gv = np.random.RandomState(3).standard_normal(ref.shape).astype("float32")
    return [x, W, b, g], fouts + list(grads) + list(grads2), [xv, Wv, bv, gv]


_RUNS = [(case, n, batch, static) for case in range(len(CASES)) for n in (1, 2) for batch in (1, 7, 16, 33)
         for static in (False, True) if n == 2 or not static]
_RUNS += [(0, 3, 16, False), (1, 3, 33, True), (0, 3, 16, True), (2, 3, 16, True)]   # more threads than cores


@pytest.mark.parametrize("case,n,batch,static", _RUNS)
def test_threads_match_reference(threads, case, n, batch, static):
    threads(n)
    ins, outs, vals = _graph(CASES[case], batch, static)
    # the weight gradients sum up to batch*OH*OW = 2376 float32 products: the float32 reference itself
    # is up to 3e-5 away from a float64 evaluation there, so two summation orders differ by that much
    check_native_vs_reference(ins, outs, vals, rtol=RTOL, atol=5e-5)


@pytest.mark.parametrize("batch", [7, 33])
def test_one_and_two_threads_agree(threads, batch):
    ins, outs, vals = _graph(CASES[0], batch, False)
    res = {}
    for n in (1, 2):
        threads(n)
        fn = symcnn.function(ins, outs, mode="native")
        res[n] = [np.array(r) for r in fn(*vals)]
    for a, b in zip(res[1], res[2]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    # the forward (outputs and masks) and gx do not depend on the split at all
    for k in (0, 1, 4):
        np.testing.assert_array_equal(res[1][k], res[2][k])


def test_threads_are_in_the_module(threads):
    from codegen.build import build_module
    ins, outs, _ = _graph(CASES[0], 16, True)
    f = symcnn.function(ins, outs, mode="reference")
    threads(1)
    assert "pthread_create" not in build_module(f.fgraph, []).ir_text
    threads(2)
    ir_text = build_module(f.fgraph, []).ir_text
    assert "pthread_create" in ir_text and "symcnn_pool_start" in ir_text


_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from symcnn.config import config
from tests.codegen.test_threads import _graph, CASES
import symcnn
print(config.num_threads)
ins, outs, vals = _graph(CASES[0], 33, False)
res = symcnn.function(ins, outs, mode="native")(*vals)
np.savez({path!r}, *[np.array(r) for r in res])
"""


def test_env_one_thread_vs_default(tmp_path):
    results = {}
    for env_value in ("1", None):
        env = dict(os.environ)
        env.pop("SYMCNN_NUM_THREADS", None)
        if env_value is not None:
            env["SYMCNN_NUM_THREADS"] = env_value
        path = str(tmp_path / f"r{env_value}.npz")
        out = subprocess.run([sys.executable, "-c", _SCRIPT.format(root=ROOT, path=path)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        expect = "1" if env_value else str(len(os.sched_getaffinity(0)))
        assert out[-1] == expect
        with np.load(path) as z:
            results[env_value] = [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))]
    for a, b in zip(results["1"], results[None]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


# -- the pool of worker threads of a compiled function ------------------------------------------

LINUX = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc/self/task")


def _tasks():
    """The pool workers of this process (other threads come and go, e.g. background compiles)."""
    from codegen.threadpool import THREAD_NAME
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == THREAD_NAME:
                    found.add(tid)
        except FileNotFoundError:
            pass
    return found


def _wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


def _cpu_ticks(tid):
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])   # utime + stime


@LINUX
def test_pool_lives_as_long_as_the_function(threads):
    threads(3)
    ins, outs, vals = _graph(CASES[0], 16, False)
    before = _tasks()
    fn = symcnn.function(ins, outs, mode="native")
    assert fn.runner.pool_threads == 3
    workers = _tasks() - before
    assert len(workers) == 2
    want = [np.array(r) for r in fn(*vals)]
    for _ in range(5):
        fn(*vals)
    assert _tasks() - before == workers   # the same threads for every call
    # idle workers sleep
    ticks = sum(_cpu_ticks(t) for t in workers)
    time.sleep(0.5)
    assert sum(_cpu_ticks(t) for t in workers) - ticks <= 2
    # a second function has its own pool
    fn2 = symcnn.function(ins, outs, mode="native").wait()   # its pool starts when its code is loaded
    assert len(_tasks() - before) == 4
    for a, b in zip(want, fn2(*vals)):
        np.testing.assert_array_equal(a, b)
    del fn
    gc.collect()
    assert _wait_for(lambda: not (_tasks() & workers))
    del fn2
    gc.collect()
    assert _wait_for(lambda: not (_tasks() - before))


def test_without_a_pool_regions_run_on_the_calling_thread(threads):
    threads(3)
    ins, outs, vals = _graph(CASES[1], 33, False)
    fn = symcnn.function(ins, outs, mode="native")
    want = [np.array(r) for r in fn(*vals)]
    module = fn.runner.module
    stop = ctypes.CFUNCTYPE(None)(module.address("symcnn_pool_stop"))
    start = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(module.address("symcnn_pool_start"))
    stop()
    for a, b in zip(want, fn(*vals)):
        np.testing.assert_array_equal(a, b)
    assert start(2) == 2   # fewer workers than ranges: the caller runs the rest
    for a, b in zip(want, fn(*vals)):
        np.testing.assert_array_equal(a, b)
    stop()
    stop()
    assert start(0) == 3
    for a, b in zip(want, fn(*vals)):
        np.testing.assert_array_equal(a, b)


_EXIT_SCRIPT = """
import gc, os, sys, threading
import numpy as np
sys.path.insert(0, {root!r})
import symcnn.config
sys.modules["symcnn.config"]._default_threads = lambda: 3   # more pool threads than cores
from symcnn.config import config
config.num_threads = 3
from tests.codegen.test_threads import _graph, CASES
import symcnn
ins, outs, vals = _graph(CASES[0], 33, False)
fn = symcnn.function(ins, outs, mode="native")
want = [np.array(r) for r in fn(*vals)]
assert fn.runner.pool_threads == 3
how = {how!r}
if how == "cycle":          # only the collector at exit frees it
    cycle = [fn]
    cycle.append(cycle)
    del fn
elif how == "fork":         # a child has the pool's memory but not its threads
    pid = os.fork()
    if pid == 0:
        ok = all(np.array_equal(a, b) for a, b in zip(want, fn(*vals)))
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert all(np.array_equal(a, b) for a, b in zip(want, fn(*vals)))
elif how == "thread":       # called from a daemon thread still running at exit
    def loop():
        while True:
            fn(*vals)
    threading.Thread(target=loop, daemon=True).start()
elif how == "os_exit":
    print("ok", flush=True)
    os._exit(0)
print("ok")
"""


@LINUX
@pytest.mark.parametrize("how", ["alive", "cycle", "fork", "thread", "os_exit"])
def test_process_with_a_live_pool_exits_cleanly(how):
    env = dict(os.environ)
    env.pop("SYMCNN_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT.format(root=ROOT, how=how)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "ok"
