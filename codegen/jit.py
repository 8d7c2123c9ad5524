"""LLVM IR -> optimised machine code for the target (codegen/target.py), with an on-disk object cache.

Two kinds of entries, both keyed by a hash that also covers the target (triple,
CPU, features), the llvmlite/LLVM versions and the symcnn version:
  - IR entries (`CompiledModule(ir_text)`): keyed by the IR text, hold an object file;
  - function entries (`read_entry` / `write_entry`, used by codegen.build.compile_graph):
    keyed by a description of the rewritten graph plus the source of the backend, hold
    the object file and what the runtime needs to call it, so a hit skips lowering.
Entries are written to a temporary file and atomically renamed, so concurrent compiles
need no lock; an entry that fails to load is compiled again and overwritten.
"""
import dataclasses
import hashlib
import json
import os
import struct
import tempfile
import threading

import llvmlite
import llvmlite.binding as llvm

try:
    from . import target as _targets
except ImportError:  # loaded on its own in the compile helper process (see _WORKER_MAIN)
    import symcnn_jit_target as _targets

_lock = threading.Lock()
_state = {}

CACHE_MAGIC = b"SYMCNN-OBJ1\n"
ENTRY_MAGIC = b"SYMCNN-FN2\n"


def _machine(target):
    """The target machine used for optimising and emitting code for `target` (a codegen.target
    Target; never handed to an engine), one per target and process."""
    with _lock:
        tm = _state.get(("tm", target))
        if tm is None:
            tm = _state[("tm", target)] = target.machine(jit=True)
        return tm


def _target():
    """(target machine, description) of the target compiled for now (config.target_cpu, ...)."""
    t = _targets.current()
    return _machine(t), t.describe()


def target_description():
    return _target()[1]


def cache_dir():
    from symcnn.config import config
    d = os.environ.get("SYMCNN_CACHE_DIR") or config.compiledir
    return None if d in ("", "none", "off") else d


def cache_key(ir_text, target=None):
    import symcnn
    h = hashlib.sha256()
    for part in (CACHE_MAGIC, (target or _targets.current()).describe().encode(), llvmlite.__version__.encode(),
                 str(llvm.llvm_version_info).encode(), symcnn.__version__.encode(), ir_text.encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


# O2 instead of O3, and no loop unrolling or interleaving: the kernels block their loops by
# hand, so on the LeNet modules these only grow the machine code and the compile time (O3
# doubles both; unrolling and interleaving at O2 cost another 20 % of it) for no measurable
# speed. Vectorisation stays on: the elementwise loops need it.
SPEED_LEVEL = 2
LOOP_UNROLLING = False
LOOP_INTERLEAVING = False


def optimize(module_ref, target=None):
    tm = _machine(target or _targets.current())
    pto = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = LOOP_UNROLLING
    pto.loop_interleaving = LOOP_INTERLEAVING
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module_ref, pb)


def _compile_here(ir_text, target=None):
    target = target or _targets.current()
    tm = _machine(target)
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    optimize(mod, target)
    return tm.emit_object(mod)


_local = threading.Lock()   # held by the thread compiling in this process


def compile_object(ir_text, target=None):
    """Parse, verify, optimise and emit an object file (bytes).

    llvmlite runs one LLVM call at a time per process, so while another thread of this
    process is compiling, the module goes to a helper process (same llvmlite, same code,
    same machine code) when there is a core for it: compiling a training step's functions
    in the background then takes the time of the longest, not of all.
    target: a codegen.target Target (default: the one config names now)."""
    target = target or _targets.current()
    if _local.acquire(blocking=False):
        try:
            return _compile_here(ir_text, target)
        finally:
            _local.release()
    worker = _worker()
    if worker is not None:
        obj = worker.compile(ir_text, target)
        if obj is not None:
            return obj
    with _local:
        return _compile_here(ir_text, target)


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
            obj, tag = _compile_here(ir_text, _targets.Target(**json.loads(spec))), b"K"
        except Exception as e:  # the parent compiles it itself and raises there
            obj, tag = repr(e).encode(), b"E"
        out.write(tag + struct.pack("<Q", len(obj)) + obj)
        out.flush()


class _Worker:
    def __init__(self):
        import subprocess
        import sys
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)

    def compile(self, ir_text, target=None):
        """The object file, or None if the helper failed (it is then not used again)."""
        target = target or _targets.current()
        with self.lock:
            if self.proc is None:
                return None
            try:
                # the whole resolved target: the helper compiles with exactly these settings
                spec = json.dumps(dataclasses.asdict(target))
                data = (spec + "\n" + ir_text).encode()
                self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
                self.proc.stdin.flush()
                tag = _read_exact(self.proc.stdout, 1)
                (n,) = struct.unpack("<Q", _read_exact(self.proc.stdout, 8))
                payload = _read_exact(self.proc.stdout, n)
            except (OSError, EOFError, ValueError):
                self.close()
                return None
            return payload if tag == b"K" else None

    def close(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:
            proc.kill()


def _worker():
    if (os.cpu_count() or 1) < 2:
        return None
    with _lock:
        w = _state.get("worker")
        if w is not None and w.pid != os.getpid():
            w = None  # inherited through fork: the pipes belong to the parent
        if w is None:
            try:
                w = _state["worker"] = _Worker()
            except OSError:
                return None
            import atexit
            atexit.register(w.close)
        return w


def _read_cache(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(CACHE_MAGIC) or len(data) < len(CACHE_MAGIC) + 32:
        return None
    digest, obj = data[len(CACHE_MAGIC):len(CACHE_MAGIC) + 32], data[len(CACHE_MAGIC) + 32:]
    if hashlib.sha256(obj).digest() != digest:
        return None  # corrupt or truncated entry: recompile
    return obj


def _write_cache(path, obj):
    _write_atomic(path, CACHE_MAGIC + hashlib.sha256(obj).digest() + obj)


def _write_atomic(path, data):
    d = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        # an unwritable cache only costs compile time


def _source_digest():
    """Hash of the Python source of the backend and of symcnn (lowerings call op methods):
    editing either invalidates function entries."""
    d = _state.get("source")
    if d is None:
        import symcnn
        h = hashlib.sha256()
        for pkg in (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(symcnn.__file__))):
            for root, dirs, files in os.walk(pkg):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                for name in sorted(files):
                    if name.endswith(".py"):
                        path = os.path.join(root, name)
                        h.update(os.path.relpath(path, os.path.dirname(pkg)).encode() + b"\0")
                        with open(path, "rb") as f:
                            h.update(f.read())
                        h.update(b"\0")
        d = _state["source"] = h.digest()
    return d


def _settings():
    """Everything besides the graph that may change the emitted code: config and SYMCNN_* variables."""
    from symcnn.config import config
    conf = sorted((k, repr(v)) for k, v in vars(config).items() if k != "compiledir")
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith("SYMCNN_") and k not in ("SYMCNN_CACHE_DIR", "SYMCNN_TRACE_REWRITES"))
    return repr((conf, env, _patches())).encode()


def _patches():
    """The backend's public module-level settings (e.g. kernels.dot.PACKED_GEMM) and any function
    from outside it installed in its modules or registries (a lowering replaced at run time):
    the source hash cannot see those."""
    import sys
    import types
    out = []

    def foreign(f):
        return isinstance(f, types.FunctionType) and not f.__module__.startswith(("codegen", "symcnn"))

    for mname, mod in sorted(list(sys.modules.items())):
        if mname != "codegen" and not mname.startswith("codegen."):
            continue
        for name, v in sorted(vars(mod).items()):
            if name.startswith("_"):
                continue
            if isinstance(v, (bool, int, float, str)) or (
                    isinstance(v, tuple) and all(isinstance(e, (bool, int, float, str)) for e in v)):
                out.append((mname, name, repr(v)))
            elif isinstance(v, types.FunctionType):
                if v.__module__ != mname or v.__qualname__ != name:
                    out.append((mname, name, v.__module__, v.__qualname__))
            else:
                tables = [v] if isinstance(v, dict) else []
                if type(v).__module__.startswith("codegen") and hasattr(v, "__dict__"):
                    tables += [t for t in vars(v).values() if isinstance(t, dict)]
                for t in tables:
                    for k, x in list(t.items()):
                        for f in (x if isinstance(x, tuple) else (x,)):
                            if foreign(f):
                                out.append((mname, name, repr(k), f.__module__, f.__qualname__))
    return out


def entry_hasher(target=None):
    """A sha256 already fed with what every function entry key shares (the target among them);
    feed it the graph."""
    target = target or _targets.current()
    base = _state.get(("entry_base", target))
    if base is None:
        import symcnn
        base = hashlib.sha256()
        for part in (ENTRY_MAGIC, target.describe().encode(), llvmlite.__version__.encode(),
                     str(llvm.llvm_version_info).encode(), symcnn.__version__.encode(), _source_digest()):
            base.update(part)
            base.update(b"\0")
        _state[("entry_base", target)] = base
    h = base.copy()
    h.update(_settings())
    h.update(b"\0")
    return h


def _entry_path(key):
    d = cache_dir()
    return os.path.join(d, key[:2], key + ".o") if d else None


def read_entry(key):
    """(metadata dict, object bytes) of a function entry, or None (absent, corrupt, cache off)."""
    path = _entry_path(key)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(ENTRY_MAGIC)
    if not data.startswith(ENTRY_MAGIC) or len(data) < head + 36:
        return None
    body = data[head + 32:]
    if hashlib.sha256(body).digest() != data[head:head + 32]:
        return None
    (n,) = struct.unpack("<I", body[:4])
    try:
        meta = json.loads(body[4:4 + n].decode())
    except ValueError:
        return None
    obj = body[4 + n:]
    return (meta, obj) if isinstance(meta, dict) and obj else None


def write_entry(key, meta, obj):
    path = _entry_path(key)
    if path is None:
        return
    try:
        m = json.dumps(meta, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return  # metadata that does not serialise: compiled each time, still correct
    body = struct.pack("<I", len(m)) + m + obj
    _write_atomic(path, ENTRY_MAGIC + hashlib.sha256(body).digest() + body)


class CompiledModule:
    """Machine code loaded into an MCJIT engine; `address(name)` of a function.

    From IR text (compiled, or read from the IR-keyed cache) or, with `obj=`, from an
    object file compiled earlier."""

    def __init__(self, ir_text=None, use_cache=True, obj=None, cache_hit=False, target=None):
        self.ir_text = ir_text
        self.cache_hit = cache_hit
        target = self.target = target or _targets.current()
        if obj is None:
            path = None
            d = cache_dir() if use_cache else None
            if d:
                key = cache_key(ir_text, target)
                path = os.path.join(d, key[:2], key + ".o")
                obj = _read_cache(path)
                self.cache_hit = obj is not None
            if obj is None:
                with _targets.using(target):
                    obj = compile_object(ir_text)
                if path:
                    _write_cache(path, obj)
        # The engine takes ownership of (and later destroys) its target machine: give it its own.
        if not target.host:
            raise ValueError(f"code for target {target.name!r} ({target.triple}, {target.isa()}) cannot run "
                             f"on this machine; use codegen.build.emit_object to compile it")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target.machine(jit=True))
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"native function {name!r} not found in compiled module")
        return addr


def module_header(target=None):
    """(triple, datalayout) to stamp on modules so LLVM optimises for the target."""
    target = target or _targets.current()
    h = _state.get(("header", target))
    if h is None:
        # cached: an llvmlite call waits while another thread runs an LLVM pass pipeline
        h = _state[("header", target)] = (target.triple, str(_machine(target).target_data))
    return h
