"""LLVM IR -> optimised machine code for the host CPU, with an on-disk object cache.

The cache key is a hash of the IR text, the target (triple, CPU, features), the
llvmlite/LLVM versions and the symcnn version. Entries are written to a
temporary file and atomically renamed, so concurrent compiles need no lock; an
entry that fails to load is compiled again and overwritten.
"""
import hashlib
import os
import tempfile
import threading

import llvmlite
import llvmlite.binding as llvm

_lock = threading.Lock()
_state = {}

CACHE_MAGIC = b"SYMCNN-OBJ1\n"


def _new_target_machine():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(), opt=3, jit=True)


def _target():
    """The target machine used for optimising and emitting (never handed to an engine)."""
    with _lock:
        if "tm" not in _state:
            _state["tm"] = _new_target_machine()
            _state["desc"] = (f"{llvm.get_process_triple()}|{llvm.get_host_cpu_name()}|"
                              f"{llvm.get_host_cpu_features().flatten()}")
        return _state["tm"], _state["desc"]


def target_description():
    return _target()[1]


def cache_dir():
    from symcnn.config import config
    d = os.environ.get("SYMCNN_CACHE_DIR") or config.compiledir
    return None if d in ("", "none", "off") else d


def cache_key(ir_text):
    import symcnn
    h = hashlib.sha256()
    for part in (CACHE_MAGIC, target_description().encode(), llvmlite.__version__.encode(),
                 str(llvm.llvm_version_info).encode(), symcnn.__version__.encode(), ir_text.encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def optimize(module_ref):
    tm, _ = _target()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module_ref, pb)


def compile_object(ir_text):
    """Parse, verify, optimise and emit an object file (bytes)."""
    tm, _ = _target()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    optimize(mod)
    return tm.emit_object(mod)


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
    d = os.path.dirname(path)
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(CACHE_MAGIC + hashlib.sha256(obj).digest() + obj)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs compile time


class CompiledModule:
    """Machine code loaded into an MCJIT engine; `address(name)` of a function."""

    def __init__(self, ir_text, use_cache=True):
        self.ir_text = ir_text
        self.cache_hit = False
        obj = None
        path = None
        d = cache_dir() if use_cache else None
        if d:
            path = os.path.join(d, cache_key(ir_text)[:2], cache_key(ir_text) + ".o")
            obj = _read_cache(path)
            self.cache_hit = obj is not None
        if obj is None:
            obj = compile_object(ir_text)
            if path:
                _write_cache(path, obj)
        # The engine takes ownership of (and later destroys) its target machine: give it its own.
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"native function {name!r} not found in compiled module")
        return addr


def module_header():
    """(triple, datalayout) to stamp on modules so LLVM optimises for this CPU."""
    tm, _ = _target()
    return llvm.get_process_triple(), str(tm.target_data)
