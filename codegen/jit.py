"""LLVM IR -> optimised machine code for the target (codegen/target.py).

The on-disk cache of object files (keys, trust checks, authenticated entries) lives in
codegen.cache; its entry points are re-exported here: IR entries (`CompiledModule(ir_text)`,
keyed by the IR text) and function entries (`read_entry` / `write_entry`, used by
codegen.build.compile_graph, keyed by the rewritten graph).
"""
import dataclasses
import hashlib
import json
import os
import struct
import threading
from concurrent.futures import Future

import llvmlite.binding as llvm

try:
    from . import split as _split
    from . import target as _targets
    from .forksafe import after_fork_in_child, in_llvm_section
    from .options import options
except ImportError:  # loaded as a lone file by the compile helper process (_WORKER_MAIN): no forks there
    import symcnn_jit_target as _targets
    options = None   # the parent sends the pipeline settings with every module
    _split = None

    def in_llvm_section(fn):
        return fn

    def after_fork_in_child(fn):
        return fn

_lock = threading.Lock()
_state = {}


@in_llvm_section
def _machine(target, codegen_level=3):
    """The target machine used for optimising and emitting code for `target` (a codegen.target
    Target; never handed to an engine) at LLVM's code generation level `codegen_level`, one per
    target, level and process."""
    with _lock:
        tm = _state.get(("tm", target, codegen_level))
        if tm is None:
            tm = _state[("tm", target, codegen_level)] = target.machine(jit=True, opt=codegen_level)
        return tm


def _target():
    """(target machine, description) of the target compiled for now (config.target_cpu, ...)."""
    t = _targets.current()
    return _machine(t), t.describe()


def target_description():
    return _target()[1]


# The cache API, imported when first used: the compile helper process loads this file alone.

def cache_dir():
    from . import cache
    return cache.cache_dir()


def cache_key(ir_text):
    from . import cache
    return cache.ir_key(ir_text)


def entry_hasher():
    from . import cache
    return cache.entry_hasher()


def read_entry(key):
    from . import cache
    return cache.read_entry(key)


def write_entry(key, meta, obj):
    from . import cache
    return cache.write_entry(key, meta, obj)


def pipeline_settings():
    """LLVM's pipeline settings of codegen.options: the O-level, loop unrolling and interleaving."""
    return {"speed_level": options.speed_level, "loop_unrolling": options.loop_unrolling,
            "loop_interleaving": options.loop_interleaving}


def entry_pipeline_settings():
    """The pipeline settings of a split module's entry part (see codegen.options.entry_speed_level):
    pipeline_settings() with the entry's O-level, straight-line vectorisation and code generation
    level."""
    return dict(pipeline_settings(), speed_level=options.entry_speed_level,
                slp_vectorization=options.entry_slp_vectorization, codegen_level=options.entry_codegen_level)


def optimize(module_ref, target=None, pipeline=None):
    """Run LLVM's pipeline; pipeline: pipeline_settings() (the default)."""
    pipeline = pipeline or pipeline_settings()
    tm = _machine(target or _targets.current())
    pto = llvm.create_pipeline_tuning_options(speed_level=pipeline["speed_level"])
    pto.loop_vectorization = True
    pto.slp_vectorization = pipeline.get("slp_vectorization", True)
    pto.loop_unrolling = pipeline["loop_unrolling"]
    pto.loop_interleaving = pipeline["loop_interleaving"]
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module_ref, pb)


@in_llvm_section
def _compile_here(ir_text, target=None, pipeline=None):
    target = target or _targets.current()
    tm = _machine(target, (pipeline or {}).get("codegen_level", 3))
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    optimize(mod, target, pipeline)
    return tm.emit_object(mod)


# Two kinds of compile slots: this process (llvmlite runs one LLVM call at a time per process)
# and the helper process. A thread takes whichever is free, or waits for the first to free up.
# Waiting threads take free slots largest module first, whichever function's compile they
# serve: the modules of a training step and of its validation function compile at once, and the
# validation's largest part (its entry function) must not wait behind the training step's small
# ones, or it ends the compile alone. A module's size is its number of lines (_size), which
# follows LLVM's time (40-80 us a line on the zoo's parts) better than its length in characters
# (0.4-2 us a character: a kernel's lines of vector types are long, the entry function's short).
_slots = threading.Condition(threading.Lock())
_here_busy = [False]    # a thread of this process is compiling here
_waiting = []           # (size, -arrival) of the threads waiting for a slot
_arrivals = [0]

# llvmlite (0.50) gives every pass builder a PassInstrumentationCallbacks object that it never
# frees, and each pipeline run registers more callbacks into it: about 50-100 KiB per optimised
# module, for good. Reusing one pass builder is no cure (the callbacks it keeps point into a
# dead stack frame). So a process optimises only this many modules itself; later modules go to
# the helper process, which is replaced after WORKER_COMPILES_PER_PROCESS modules, so that the
# memory it loses goes back to the system with it.
IN_PROCESS_COMPILES = 32
WORKER_COMPILES_PER_PROCESS = 128


def compile_object(ir_text, target=None, pipeline=None):
    """Parse, verify, optimise and emit an object file (bytes).

    llvmlite runs one LLVM call at a time per process, so while another thread of this
    process is compiling, the module goes to a helper process (same llvmlite, same code,
    same machine code) when there is a core for it: compiling a training step's functions
    in the background then takes the time of the longest, not of all. A thread waits for
    whichever of the two is free first. After IN_PROCESS_COMPILES modules, every module goes
    to the helper (see above).
    target: a codegen.target Target (default: the one config names now);
    pipeline: LLVM's settings (default: pipeline_settings())."""
    target = target or _targets.current()
    pipeline = pipeline or pipeline_settings()
    slot = _take_slot(size=_size(ir_text))
    try:
        if slot is not None:
            obj = slot.compile(ir_text, target, pipeline)
            if obj is not None:
                return obj
    finally:
        if slot is not None:
            _give_back(slot)
    here = _take_slot(here_only=True) if slot is not None else None   # the helper failed: compile here
    try:
        _state["in_process_compiles"] = _state.get("in_process_compiles", 0) + 1
        return _compile_here(ir_text, target, pipeline)
    finally:
        _give_back(here)


def _size(ir_text):
    """How long a module takes to compile, roughly: its number of lines."""
    return ir_text.count("\n")


def _take_slot(here_only=False, size=0):
    """None: compile in this process (its slot is now taken); or a _Worker taken for this thread.
    size: the module's _size; while a thread with a larger module waits, this one waits too
    (a thread compiling here only, after the helper failed, does not wait for others)."""
    with _slots:
        _arrivals[0] += 1
        ticket = (size, -_arrivals[0])
        _waiting.append(ticket)
        try:
            while True:
                if here_only or ticket == max(_waiting):
                    here_only, taken, slot = _free_slot(here_only)
                    if taken:
                        return slot
                _slots.wait()
        finally:
            _waiting.remove(ticket)
            _slots.notify_all()   # the next largest may take a slot still free


def _free_slot(here_only):
    """(Holding _slots.) (here_only, taken, slot): slot None is this process's, else a _Worker;
    here_only turns true when no helper is to be had (then this process, once its slot is free)."""
    while True:
        budget_left = _state.get("in_process_compiles", 0) < IN_PROCESS_COMPILES
        if not _here_busy[0] and (budget_left or here_only):
            _here_busy[0] = True
            return here_only, True, None
        w = None if here_only else _worker(required=not budget_left)
        if w is not None and not w.busy:
            w.busy = True
            return here_only, True, w
        if w is None and not budget_left and not here_only:
            here_only = True
            continue
        return here_only, False, None


def _give_back(slot):
    with _slots:
        if slot is None:
            _here_busy[0] = False
        else:
            slot.busy = False
        _slots.notify_all()


def split_module(ir_text, known=None):
    """compile_module's parts of ir_text, cut ahead of it ([]: one part; None: not cut); known: see
    split.split."""
    return (_split.split(ir_text, known=known) or []) if options.split_modules else None


def compile_module(ir_text, target=None, parts=None):
    """The object files of a module (a list of bytes), to load together into one engine.

    With codegen.options.split_modules the module is cut into parts (codegen.split) that compile
    at the same time, here and in the helper process, each part once: a part another module
    holds too (the forward kernels of a training step and of its validation function) is
    compiled by the first module that needs it and reused by the others (in flight, or from
    a bounded in-memory store of recent parts). The machine code of every function is the one
    the whole module gives (see codegen.split); only the work is spread."""
    target = target or _targets.current()
    _state["compiles_started"] = _state.get("compiles_started", 0) + 1
    if parts is None and options.split_modules:
        parts = _split.split(ir_text)
    if not parts:
        return [compile_object(ir_text, target)]
    # the entry function's part: mostly calls and bookkeeping, compiled with a lighter pipeline
    pipelines = [entry_pipeline_settings() if _split.defines(p, "symcnn_entry") else pipeline_settings()
                 for p in parts]
    keys = [_part_key(_part_prefix(target, pl), p) for p, pl in zip(parts, pipelines)]
    objs = [None] * len(parts)
    queue = sorted(range(len(parts)), key=lambda i: -_size(parts[i]))   # the largest first
    queue_lock = threading.Lock()
    waits = []
    errors = []

    def work():
        while True:
            with queue_lock:
                if not queue or errors:
                    return
                i = queue.pop(0)
            try:
                objs[i] = _compile_part(keys[i], parts[i], target, waits, i, pipelines[i])
            except BaseException as e:
                errors.append(e)
                return

    helpers = []
    if len(parts) > 1 and _worker() is not None:   # a second core: one more thread feeds it
        t = threading.Thread(target=work, name="symcnn-compile-part", daemon=True)
        t.start()
        helpers.append(t)
    work()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
    for i, job in waits:   # parts another module was compiling (None: compiled early, and the helper failed)
        objs[i] = job.result()
        if objs[i] is None:
            objs[i] = compile_object(parts[i], target, pipelines[i])
    return objs


def _part_prefix(target, pipeline):
    return json.dumps({"target": dataclasses.asdict(target), "pipeline": pipeline}, sort_keys=True).encode()


def _part_key(prefix, part):
    return hashlib.sha256(prefix + b"\0" + part.encode()).hexdigest()


def compiles_started():
    """How many compile_module calls have started in this process."""
    return _state.get("compiles_started", 0)


def helper_available():
    """Whether a compile helper process runs (or can start) beside this process."""
    return _worker() is not None


def compile_part_early(part, target, pipeline, stop):
    """Compile a part of a module still being emitted (codegen.early_parts) into the store of parts,
    in the helper process only, once it is idle and no compile waits for it; nothing if stop()
    turns true first, or if the part is stored or being compiled already."""
    key = _part_key(_part_prefix(target, pipeline), part)
    with _parts_lock:
        if key in _parts_done or key in _parts_inflight:
            return
    w = _take_idle_helper(stop)
    if w is None:
        return
    try:
        with _parts_lock:
            if key in _parts_done or key in _parts_inflight:
                return
            job = _parts_inflight[key] = Future()
        obj = None
        try:
            obj = w.compile(part, target, pipeline)
        finally:
            with _parts_lock:
                _parts_inflight.pop(key, None)
                if obj is not None:
                    _store_part(key, obj)
            job.set_result(obj)
    finally:
        _give_back(w)


def _take_idle_helper(stop):
    with _slots:
        while not stop():
            w = _worker()
            if w is None:
                return None
            if not w.busy and not _waiting:
                w.busy = True
                return w
            _slots.wait(0.05)
        return None


_parts_lock = threading.Lock()
_parts_done = {}        # part key -> object file, the most recently used last
_parts_inflight = {}    # part key -> Future of the thread compiling it
PART_STORE_BYTES = 32 << 20


def _compile_part(key, part, target, waits, index, pipeline=None):
    """The part's object file; None if another thread is compiling it (then (index, job) is
    added to `waits`)."""
    with _parts_lock:
        obj = _parts_done.pop(key, None)
        if obj is not None:
            _parts_done[key] = obj
            return obj
        job = _parts_inflight.get(key)
        if job is not None:
            waits.append((index, job))
            return None
        job = _parts_inflight[key] = Future()
    try:
        obj = compile_object(part, target, pipeline)
    except BaseException as e:
        with _parts_lock:
            _parts_inflight.pop(key, None)
        job.set_exception(e)
        raise
    with _parts_lock:
        _parts_inflight.pop(key, None)
        _store_part(key, obj)
    job.set_result(obj)
    return obj


def _store_part(key, obj):
    """(Holding _parts_lock.) Keep obj as the most recent part, dropping the oldest past PART_STORE_BYTES."""
    _parts_done[key] = obj
    total = sum(len(o) for o in _parts_done.values())
    while total > PART_STORE_BYTES and len(_parts_done) > 1:
        total -= len(_parts_done.pop(next(iter(_parts_done))))


# The helper process: runs this file's _compile_here on modules sent through its stdin.
_WORKER_MAIN = r"""
import importlib.util, os, sys
out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # the protocol owns the pipe: anything printed goes to stderr
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
load("symcnn_jit_target", os.path.join(os.path.dirname(sys.argv[1]), "target.py"))
load("symcnn_jit_worker", sys.argv[1])._worker_loop(sys.stdin.buffer, out)
"""


def _read_exact(f, n):
    chunks = []
    while n:
        c = f.read(n)
        if not c:
            raise EOFError
        chunks.append(c)
        n -= len(c)
    return b"".join(chunks)


def _worker_loop(inp, out):
    while True:
        try:
            (n,) = struct.unpack("<Q", _read_exact(inp, 8))
            spec, ir_text = _read_exact(inp, n).decode().split("\n", 1)
        except EOFError:
            return
        try:
            spec = json.loads(spec)
            obj, tag = _compile_here(ir_text, _targets.Target(**spec["target"]), spec["pipeline"]), b"K"
        except Exception as e:  # the parent compiles it itself and raises there
            obj, tag = repr(e).encode(), b"E"
        out.write(tag + struct.pack("<Q", len(obj)) + obj)
        out.flush()


# Set in the helper process's environment (see _Worker).
HELPER_ENV = "SYMCNN_COMPILE_HELPER"


class _Worker:
    def __init__(self):
        import subprocess
        import sys
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.busy = False   # taken by a thread (see _take_slot)
        self.compiles = 0
        # HELPER_ENV: a helper whose interpreter imports symcnn at start-up (a sitecustomize or a
        # .pth file that does) must not start a helper of its own, and that one another
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                                     env=dict(os.environ, **{HELPER_ENV: "1"}))

    def compile(self, ir_text, target=None, pipeline=None):
        """The object file, or None if the helper failed (it is then not used again)."""
        target = target or _targets.current()
        pipeline = pipeline or pipeline_settings()
        with self.lock:
            if self.proc is None:
                return None
            try:
                # the whole resolved target and the pipeline: the helper compiles with exactly these
                spec = json.dumps({"target": dataclasses.asdict(target), "pipeline": pipeline})
                data = (spec + "\n" + ir_text).encode()
                self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
                self.proc.stdin.flush()
                tag = _read_exact(self.proc.stdout, 1)
                (n,) = struct.unpack("<Q", _read_exact(self.proc.stdout, 8))
                payload = _read_exact(self.proc.stdout, n)
            except (OSError, EOFError, ValueError):
                self.close()
                return None
            self.compiles += 1
            if self.compiles >= WORKER_COMPILES_PER_PROCESS:
                self.close()  # _worker() starts a fresh one when next needed
            return payload if tag == b"K" else None

    def close(self):
        if self.pid != os.getpid():
            return  # a forked child's copy: the helper and its pipes are the parent's
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:
            proc.kill()


def start_helper():
    """Start the helper process now if there is a core for it (it loads LLVM while the caller
    lowers a graph, instead of when the first part of that graph's module reaches it)."""
    _worker()


def _worker(required=False):
    """The helper process, started if need be; None if it cannot start or, unless `required`
    (this process has used up its IN_PROCESS_COMPILES), on a single core."""
    if (os.cpu_count() or 1) < 2 and not required or os.environ.get(HELPER_ENV):
        return None
    with _lock:
        w = _state.get("worker")
        if w is not None and (w.pid != os.getpid() or w.proc is None):
            w = None  # inherited through fork (the pipes belong to the parent), or retired
        if w is None:
            try:
                w = _state["worker"] = _Worker()
            except OSError:
                return None
            import atexit
            atexit.register(w.close)
        return w


@after_fork_in_child
def _reset_after_fork():
    """A forked child: threads of the parent may have held these locks; its helper is not ours."""
    global _lock, _slots, _parts_lock, _parts_inflight
    _lock, _slots = threading.Lock(), threading.Condition(threading.Lock())
    _here_busy[0] = False
    del _waiting[:]
    _parts_lock, _parts_inflight = threading.Lock(), {}
    _state.pop("worker", None)


class CompiledModule:
    """Machine code loaded into an MCJIT engine; `address(name)` of a function.

    From IR text (compiled, or read from the IR-keyed cache) or, with `obj=`, from an
    object file compiled earlier, or a list of them (the parts of compile_module)."""

    def __init__(self, ir_text=None, use_cache=True, obj=None, cache_hit=False, target=None):
        self.ir_text = ir_text
        self.cache_hit = cache_hit
        target = self.target = target or _targets.current()
        if obj is None:
            from . import cache
            with _targets.using(target):
                key = cache.ir_key(ir_text) if use_cache and cache.configured_dir() else None
                if key is not None:
                    obj = cache.read_object(key)
                    self.cache_hit = obj is not None
                if obj is None:
                    obj = compile_object(ir_text)
                    if key is not None:
                        cache.write_object(key, obj)
        if not target.host:
            raise ValueError(f"code for target {target.name!r} ({target.triple}, {target.isa()}) cannot run "
                             f"on this machine; use codegen.build.emit_object to compile it")
        self.engine = _load(obj, target)

    def address(self, name):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"native function {name!r} not found in compiled module")
        return addr


@in_llvm_section
def _load(obj, target):
    """An MCJIT engine holding the object file's code, ready to run."""
    # The engine takes ownership of (and later destroys) its target machine: give it its own.
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target.machine(jit=True))
    for o in ([obj] if isinstance(obj, (bytes, bytearray)) else obj):
        engine.add_object_file(llvm.ObjectFileRef.from_data(o))
    engine.finalize_object()
    return engine


@in_llvm_section
def module_header(target=None):
    """(triple, datalayout) to stamp on modules so LLVM optimises for the target."""
    target = target or _targets.current()
    h = _state.get(("header", target))
    if h is None:
        # cached: an llvmlite call waits while another thread runs an LLVM pass pipeline
        h = _state[("header", target)] = (target.triple, str(_machine(target).target_data))
    return h
