"""Where a cold compile of the tutorial's LeNet (train + validate + test) spends its time.

Prints the cold compile time (empty cache, as bench_lenet.py measures it: from the first
function() until all three are callable), median of --runs fresh processes; then, from one more
process, the Python time of the thread calling function() (rewrites, emitting IR, the IR text,
the garbage collector) and the LLVM work of every module part (parse + verify, optimise, emit;
measured one after the other, in CPU seconds of the thread: the work, not the wall time, of the
background compile, and little changed by other processes on the machine).

    python benchmarks/bench_compile.py [--runs 7] [--whole] [--setup cifar]

--setup measures a setup of bench_models.py's zoo instead (its train + validate + test).

--whole compiles every module whole (codegen.options.split_modules = False), for comparison;
PYTHONPATH=<another tree> measures that tree (one without module splitting compiles whole).
"""
import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _build(whole, setup=None):
    """A function compiling train + validate + test (the tutorial's LeNet, or `setup` of
    bench_models.py's zoo) and returning the cold compile's seconds."""
    sys.path.insert(0, HERE)
    from codegen.options import options
    if hasattr(options, "split_modules"):
        options.split_modules = not whole
    if setup is not None:
        import bench_models
        return lambda: bench_models.symcnn_model(setup, 2)[2]
    import bench_lenet
    data_x, data_y = bench_lenet.data(500)
    return lambda: bench_lenet.build(500, [20, 50], data_x, data_y, "native")[3]


def child_cold(whole, setup=None):
    """One cold compile in this process: [its seconds, the CPU seconds of this process and of
    the compile helper process it started] (the second changes little when other processes
    share the cores)."""
    import resource
    build_all = _build(whole, setup)

    def cpu(who):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SYMCNN_CACHE_DIR"] = cache
        before = cpu(resource.RUSAGE_SELF)
        wall = build_all()
        mine = cpu(resource.RUSAGE_SELF) - before
    from codegen import jit
    worker = jit._state.get("worker")
    if worker is not None:
        worker.close()   # reaped: its CPU time is the children's
    return [wall, mine + cpu(resource.RUSAGE_CHILDREN)]


def child_breakdown(whole, setup=None):
    """{phase: seconds} of the calling thread, and the LLVM work per module part."""
    build_all = _build(whole, setup)
    import llvmlite.binding as llvm
    from codegen import build, jit
    try:
        from codegen import split
    except ImportError:   # a tree without module splitting (to compare with)
        split, whole = None, True
    import symcnn.compile.function as function_module
    spent = {}

    def timed(owner, name, label):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - t0
        setattr(owner, name, wrapper)
    timed(function_module, "rewrite_graph", "rewrites")
    timed(build, "build_module", "emit IR (lowering and IR text)")
    timed(build, "graph_key", "cache key")
    collected = [0.0]
    started = {}

    def on_gc(phase, info):
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            collected[0] += time.perf_counter() - started.pop("t")
    gc.callbacks.append(on_gc)
    modules = []
    name = "compile_module" if split is not None else "compile_object"
    real_compile = getattr(jit, name)
    setattr(jit, name, lambda ir, target=None, **kw: modules.append(ir) or real_compile(ir, target, **kw))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SYMCNN_CACHE_DIR"] = cache
        t0 = time.thread_time()
        wall = build_all()
        spent["calling thread, all"] = time.thread_time() - t0
    gc.callbacks.remove(on_gc)
    spent["garbage collector (any thread)"] = collected[0]
    parts = []
    tm = jit._machine(jit._targets.current())
    seen = set()
    for k, ir_text in enumerate(modules):
        for text in (split.split(ir_text) if not whole else None) or [ir_text]:
            if text in seen:
                continue   # a part an earlier module holds: compiled once
            seen.add(text)
            names = [line.split('@"')[1].split('"')[0] for line in text.split("\n") if line.startswith("define ")]
            # the settings jit.compile_module gives the part (the entry function's part its own)
            pipeline = jit.entry_pipeline_settings() \
                if hasattr(jit, "entry_pipeline_settings") and not whole and split.defines(text, "symcnn_entry") \
                else None
            part_tm = jit._machine(jit._targets.current(), pipeline["codegen_level"]) if pipeline else tm
            t0 = time.thread_time()
            mod = llvm.parse_assembly(text)
            mod.verify()
            t1 = time.thread_time()
            jit.optimize(mod, pipeline=pipeline)
            t2 = time.thread_time()
            part_tm.emit_object(mod)
            t3 = time.thread_time()
            parts.append({"module": k, "functions": names[:2] + (["..."] if len(names) > 2 else []),
                          "parse": t1 - t0, "optimise": t2 - t1, "emit": t3 - t2})
    return {"wall": wall, "python": spent, "parts": parts}


def _child(kind, whole, setup=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind] + (["--whole"] if whole else []) \
        + (["--setup", setup] if setup else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--whole", action="store_true", help="compile every module whole")
    ap.add_argument("--setup", default=None, help="a setup of bench_models.py (default: the tutorial's LeNet)")
    ap.add_argument("--child", choices=["cold", "breakdown"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "cold":
        print(json.dumps(child_cold(args.whole, args.setup)))
        return 0
    if args.child == "breakdown":
        print(json.dumps(child_breakdown(args.whole, args.setup)))
        return 0
    try:
        import codegen.split  # noqa: F401
        whole = args.whole
    except ImportError:
        whole = True
    colds = [_child("cold", args.whole, args.setup) for _ in range(args.runs)]
    what = f"{args.setup} (bench_models.py)" if args.setup else "LeNet5, batch 500"
    print(f"# {what} cold compile, train+validate+test ({'whole modules' if whole else 'split modules'}), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"cold compile: median {statistics.median(c[0] for c in colds):.2f} s of {args.runs} fresh processes "
          f"({', '.join(f'{c[0]:.2f}' for c in colds)}); CPU (this process and its compile helper): "
          f"median {statistics.median(c[1] for c in colds):.2f} s")
    b = _child("breakdown", args.whole, args.setup)
    print(f"\ncalling thread (CPU seconds; one more cold compile, {b['wall']:.2f} s):")
    for k, v in b["python"].items():
        print(f"  {k:34s} {v:6.3f}")
    print("\nLLVM work per module part (CPU seconds, one after the other in one process):")
    total = {"parse": 0.0, "optimise": 0.0, "emit": 0.0}
    for p in b["parts"]:
        for k in total:
            total[k] += p[k]
        print(f"  module {p['module']}  parse {p['parse']:.3f}  optimise {p['optimise']:.3f}  emit {p['emit']:.3f}  "
              f"{', '.join(p['functions'])}")
    print(f"  total    parse {total['parse']:.3f}  optimise {total['optimise']:.3f}  emit {total['emit']:.3f}  "
          f"= {sum(total.values()):.3f} s of work ({len(b['parts'])} modules compiled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
