"""The function cache (keyed by the rewritten graph), background compilation and the
compile helper process of codegen.jit / codegen.build."""
import os

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen import jit
from tests.helpers import ROOT, entry_function_ir, run_child


def _model(scale=0.5):
    rng = np.random.RandomState(1)
    x = T.matrix("x")
    y = T.ivector("y")
    W = symcnn.shared(rng.randn(6, 3).astype("float32"), name="W")
    b = symcnn.shared(np.zeros(3, dtype="float32"), name="b")
    p = T.nnet.softmax(T.tanh(T.dot(x, W)) + b)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    gW, gb = T.grad(cost, [W, b])
    return [x, y], cost, [(W, W - scale * gW), (b, b - scale * gb)], (W, b)


def _data():
    rng = np.random.RandomState(0)
    return rng.randn(5, 6).astype("float32"), rng.randint(0, 3, 5).astype("int32")


def _train(mode="native", scale=0.5, steps=3):
    ins, cost, upd, params = _model(scale)
    f = symcnn.function(ins, cost, updates=upd, mode=mode)
    xv, yv = _data()
    costs = [float(f(xv, yv)) for _ in range(steps)]
    return f, costs, [p.get_value() for p in params]


def test_hit_skips_lowering_and_keeps_introspection(cache_dir):
    f1, c1, p1 = _train()
    assert f1.runner.cache_hit is False
    f2, c2, p2 = _train()
    assert f2.runner.cache_hit is True
    assert f2.runner.spec._ir_text is None               # nothing lowered on a hit
    np.testing.assert_array_equal(c1, c2)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    assert [str(k) for k in f2.kernels] == [str(k) for k in f1.kernels]
    assert f2.memory_report() == f1.memory_report()
    assert f2.dump_llvm() == f1.dump_llvm()              # lowered again when asked for


def test_a_replaced_lowering_changes_the_key(cache_dir, monkeypatch):
    from codegen import lower as L
    from symcnn.tensor.elemwise import Elemwise
    f1, _, _ = _train()
    real, view = L.lower.table[Elemwise]
    monkeypatch.setitem(L.lower.table, Elemwise, (lambda *a: real(*a), view))
    f2, _, _ = _train()
    assert (f1.runner.cache_hit, f2.runner.cache_hit) == (False, False)


def test_hit_in_profile_and_boundscheck_modes(cache_dir):
    f1, c1, _ = _train("profile")
    f2, c2, _ = _train("profile")
    assert (f1.runner.cache_hit, f2.runner.cache_hit) == (False, True)
    r1, r2 = f1.profile(), f2.profile()
    assert [r.name for r in r1] == [r.name for r in r2] and r2.rows[0].calls == 3
    g1, _, _ = _train("boundscheck")
    g2, _, _ = _train("boundscheck")
    assert g2.runner.cache_hit is True
    assert [b.what for b in g2.runner.spec.oob_labels] == [b.what for b in g1.runner.spec.oob_labels]


def test_key_covers_graph_constants_options_and_settings(cache_dir, monkeypatch):
    f1, _, _ = _train(scale=0.5)
    f2, _, _ = _train(scale=0.25)                          # a different constant
    f3, _, _ = _train("nanguard")                          # other build options
    assert not any(f.runner.cache_hit for f in (f1, f2, f3))
    from codegen.options import options
    monkeypatch.setattr(options, "packed_gemm", not options.packed_gemm)   # a backend setting
    f4, _, _ = _train()
    assert f4.runner.cache_hit is False
    monkeypatch.setattr(options, "speed_level", 3 - options.speed_level)    # and the O-level
    f4b, _, _ = _train()
    assert f4b.runner.cache_hit is False
    monkeypatch.setattr(options, "entry_slp_vectorization", not options.entry_slp_vectorization)
    f4c, _, _ = _train()                                                    # the entry part's pipeline
    assert f4c.runner.cache_hit is False
    monkeypatch.setattr(options, "split_libraries", not options.split_libraries)
    f4d, _, _ = _train()
    assert f4d.runner.cache_hit is False
    monkeypatch.undo()
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(cache_dir))
    f5, _, _ = _train()
    assert f5.runner.cache_hit is True


def test_unusual_entries_are_recompiled(cache_dir):
    f1, c1, _ = _train()
    path, = cache_dir.rglob("*.o")
    # a well-formed entry whose metadata does not fit the graph
    meta, obj = jit.read_entry(path.stem)
    meta["order"] = [10 ** 6]
    jit.write_entry(path.stem, meta, obj)
    f2, c2, _ = _train()
    assert f2.runner.cache_hit is False
    np.testing.assert_array_equal(c1, c2)
    f3, _, _ = _train()
    assert f3.runner.cache_hit is True


def test_identical_functions_compile_once(cache_dir, monkeypatch):
    compiled = []
    real = jit.compile_object

    def counting(ir_text, target=None, *pipeline):
        compiled.append(1)
        return real(ir_text, target, *pipeline)
    monkeypatch.setattr(jit, "compile_object", counting)
    x = T.matrix("x")
    xv = np.ones((2, 3), dtype="float32")
    first = symcnn.function([x], T.tanh(x).sum(axis=0), mode="native")
    np.testing.assert_allclose(first(xv), 2 * np.tanh(1.0) * np.ones(3), rtol=1e-6)
    parts = len(compiled)   # the module's parts (codegen/split.py): its thread-pool job apart
    assert parts >= 1
    for f in [symcnn.function([x], T.tanh(x).sum(axis=0), mode="native") for _ in range(2)]:
        np.testing.assert_allclose(f(xv), 2 * np.tanh(1.0) * np.ones(3), rtol=1e-6)
    assert len(compiled) == parts


def test_lowering_errors_raise_in_function_and_later_errors_at_the_call(cache_dir, monkeypatch):
    from codegen import lower as L
    from symcnn.tensor.elemwise import Elemwise

    def refuse(ctx, node, ins):
        raise NotImplementedError("no lowering today")
    original = L.lower.table[Elemwise]
    monkeypatch.setitem(L.lower.table, Elemwise, (refuse, original[1]))
    x = T.vector("x")
    with pytest.raises(NotImplementedError, match="no lowering today"):
        symcnn.function([x], T.exp(x), mode="native")
    monkeypatch.setitem(L.lower.table, Elemwise, original)

    def broken(ir_text, target=None, *pipeline):
        raise RuntimeError("LLVM is unwell")
    monkeypatch.setattr(jit, "compile_object", broken)
    f = symcnn.function([x], T.exp(x) + 3, mode="native")      # lowered: returns
    with pytest.raises(RuntimeError, match="LLVM is unwell"):
        f(np.ones(2, dtype="float32"))
    with pytest.raises(RuntimeError, match="LLVM is unwell"):
        f.wait()


def test_wait_returns_the_function(cache_dir):
    x = T.vector("x")
    f = symcnn.function([x], 2 * x, mode="native")
    assert f.wait() is f
    r = symcnn.function([x], 2 * x, mode="reference")
    assert r.wait() is r
    np.testing.assert_array_equal(f(np.ones(2, dtype="float32")), [2, 2])


def test_helper_process_emits_the_same_object_code(cache_dir):
    x = T.vector("x")
    f = symcnn.function([x], T.tanh(x) * 3, mode="native")
    ir_text = f.dump_llvm()
    worker = jit._worker()
    if worker is None:
        pytest.skip("one core: no helper process")
    got = worker.compile(ir_text)
    assert got is not None and got == jit._compile_here(ir_text)
    worker = jit._worker()   # (a fresh one if that helper retired: its None would prove nothing)
    assert worker.proc is not None
    assert worker.compile("this is not LLVM IR") is None       # the caller then compiles (and raises) itself


def test_entry_function_loops_are_not_unrolled(cache_dir):
    x = T.matrix("x")
    f = symcnn.function([x], T.tanh(x) * 2 + 1, mode="native")
    ir_text = f.dump_llvm()
    assert "llvm.loop.unroll.disable" in ir_text
    assert "!llvm.loop" in entry_function_ir(ir_text)


def test_optimising_moves_to_recycled_helpers_after_the_in_process_budget(monkeypatch):
    """llvmlite leaks its pass builder's callbacks on every optimised module: past a budget the
    process stops optimising itself (benchmarks/check_compile_leak.py measures the effect)."""
    header = jit.module_header()
    here = []
    real = jit._compile_here
    monkeypatch.setattr(jit, "_compile_here", lambda ir, target=None, pipeline=None:
                        here.append(1) or real(ir, target, pipeline))
    monkeypatch.setattr(jit, "IN_PROCESS_COMPILES", 0)
    monkeypatch.setattr(jit, "WORKER_COMPILES_PER_PROCESS", 2)
    if jit._state.get("worker") is not None:
        jit._state["worker"].close()                     # start counting with a fresh helper
    pids = []
    for k in range(4):
        ir_text = (f'target triple = "{header[0]}"\ntarget datalayout = "{header[1]}"\n'
                   f"define double @leak{k}(double %x) {{\n  %y = fmul double %x, {k + 0.5:e}\n  ret double %y\n}}\n")
        w = jit._worker(required=True)
        pids.append(w.proc.pid)
        assert jit.compile_object(ir_text)
    assert here == []                                   # nothing optimised in this process
    assert pids[0] == pids[1] != pids[2] == pids[3]     # a helper retires after 2 modules


def test_a_waiting_compile_takes_whichever_slot_frees_first(monkeypatch):
    """Two compile slots (this process and the helper): a third module waits for the first one
    free, not for one chosen in advance."""
    import threading

    class Helper:
        busy = False
    helper = Helper()
    monkeypatch.setattr(jit, "_worker", lambda required=False: helper)
    monkeypatch.setitem(jit._state, "in_process_compiles", 0)
    assert jit._take_slot() is None            # this process
    assert jit._take_slot() is helper          # then the helper
    got = []
    waiter = threading.Thread(target=lambda: got.append(jit._take_slot()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got       # both taken: it waits
    jit._give_back(helper)
    waiter.join(10)
    assert got == [helper]
    waiter = threading.Thread(target=lambda: got.append(jit._take_slot()))
    waiter.start()
    jit._give_back(None)                       # this process frees next
    waiter.join(10)
    assert got == [helper, None]
    jit._give_back(None)
    jit._give_back(helper)


def test_waiting_compiles_take_a_free_slot_largest_module_first(monkeypatch):
    """The parts of two modules compiling at once wait in one line: the largest first (a
    validation function's entry function is not left to compile alone at the end)."""
    import threading

    class Helper:
        busy = False
    helper = Helper()
    monkeypatch.setattr(jit, "_worker", lambda required=False: helper)
    monkeypatch.setitem(jit._state, "in_process_compiles", 0)
    assert jit._take_slot(size=5) is None
    assert jit._take_slot(size=5) is helper
    order = []

    def wait(size):
        slot = jit._take_slot(size=size)
        order.append(size)
        jit._give_back(slot)
    threads = []
    for size in (10, 300, 20, 300, 100):          # arrive smallest-ish first
        threads.append(threading.Thread(target=wait, args=(size,)))
        threads[-1].start()
        while len(jit._waiting) < len(threads):   # each is waiting before the next arrives
            threading.Event().wait(0.01)
    jit._give_back(None)                          # one slot frees: one waiter at a time
    for t in threads:
        t.join(10)
    jit._give_back(helper)
    assert order == [300, 300, 100, 20, 10]
    assert jit._waiting == []


def test_ir_entries_are_keyed_by_the_pipeline_too(monkeypatch):
    from codegen import cache
    from codegen.options import options
    x = T.vector("x")
    ir_text = symcnn.function([x], T.exp(x) * 3, mode="native").dump_llvm()
    before = cache.ir_key(ir_text)
    monkeypatch.setattr(options, "speed_level", 3 - options.speed_level)
    assert cache.ir_key(ir_text) != before
    monkeypatch.undo()
    monkeypatch.setattr(options, "loop_interleaving", not options.loop_interleaving)
    assert cache.ir_key(ir_text) != before
    monkeypatch.undo()
    assert cache.ir_key(ir_text) == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts processes through /proc")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="no compile helper on one core")
def test_a_helper_that_imports_symcnn_at_start_up_starts_no_helper(tmp_path):
    """With a sitecustomize that imports the backend (which starts the compile helper), the helper's
    own interpreter imports it too: it must not start a helper of its own, and so on down a chain."""
    (tmp_path / "sitecustomize.py").write_text("import codegen\n")
    code = ("import os, time\n"
            "import codegen\n"
            "time.sleep(3)\n"
            "def children(pid):\n"
            "    out = []\n"
            "    for d in os.listdir('/proc'):\n"
            "        try:\n"
            "            stat = open(f'/proc/{d}/stat').read()\n"
            "        except OSError:\n"
            "            continue\n"
            "        if d.isdigit() and int(stat.rsplit(')', 1)[1].split()[1]) == pid:\n"
            "            out.append(int(d))\n"
            "    return out\n"
            "mine = children(os.getpid())\n"
            "print(len(mine), sum(len(children(c)) for c in mine))\n")
    out = run_child(code, env={"PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}).stdout.split()
    assert out == ["1", "0"], out   # one helper, which started none
