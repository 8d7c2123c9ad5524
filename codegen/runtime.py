"""Calling a compiled module: check and pass pointers, one native call, read results."""
import ctypes
import math
import weakref

import numpy as np

from symcnn.compile.backend import Lowered, OwnedBuffer
from symcnn.compile.shared import SharedVariable
from symcnn.graph.trace import with_trace

from . import lower as L
from .build import lower_graph

_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


class NativeError(RuntimeError):
    pass


# Error codes whose cause the reference implementation reports in the op's own words.
_EXPLAINED_BY_REFERENCE = {L.E_SHAPE, L.E_INDEX, L.E_RESHAPE, L.E_STATIC, L.E_VALUE, L.E_INDEX_BROADCAST,
                           L.E_ZERO_STEP}


class NativeLowered(Lowered):
    """A graph lowered (or found in the compile cache) for a native runner; finish() generates
    or loads its machine code and makes the runner, make_runner(what the graph's finish gives)."""

    def __init__(self, graph, make_runner):
        self._graph, self._make_runner = graph, make_runner
        self.background = graph.background

    def finish(self):
        return self._make_runner(self._graph.finish())


class NativeRunner:
    """The native implementation of one compiled function graph."""

    build_options = {}   # for build_module: guard_nan / bounds_check / profile (the checked modes)

    @classmethod
    def lower(cls, fgraph, updates=(), lazy=False):
        """The backend's first phase: lower the graph (raises for a graph it cannot run); lazy: LLVM
        starts on it only in finish() (symcnn.compile.backend)."""
        updates = list(updates)
        return NativeLowered(lower_graph(fgraph, updates, lazy=lazy, **cls.build_options),
                             lambda compiled: cls(fgraph, updates, compiled))

    def __init__(self, fgraph, updates=(), compiled=None):
        """compiled: (ModuleSpec, jit.CompiledModule) from lower(...).finish(); None: compile now."""
        self.fgraph = fgraph
        self.updates = list(updates)
        if compiled is None:
            compiled = lower_graph(fgraph, self.updates, **self.build_options).finish()
        self.spec, self.module = compiled
        proto = ctypes.CFUNCTYPE(ctypes.c_int32, *[ctypes.c_void_p] * 5)
        self._entry = proto(self.module.address("symcnn_entry"))
        self.pool_threads = _start_pool(self, self.module)
        n_in = len(fgraph.inputs)
        self._in_ptrs = (ctypes.c_void_p * max(n_in, 1))()
        self._in_dims = np.zeros(max(sum(v.ndim for v in fgraph.inputs), 1), dtype=np.int64)
        self._slots = np.zeros(2 * max(self.spec.n_slots, 1), dtype=np.int64)
        out_len = sum(1 + v.ndim for v in fgraph.outputs)
        self._outs = np.zeros(max(out_len, 1), dtype=np.int64)
        self._err = np.zeros(8, dtype=np.int64)
        self._update_out = {o: i for i, o in self.updates}
        self._written = [i for i, _ in self.updates]   # inputs whose storage native code writes
        self._shared = [k for k, v in enumerate(fgraph.inputs) if isinstance(v, SharedVariable)]
        self._n_explicit = min(self._shared, default=len(fgraph.inputs))
        self._disjoint = None   # the shared values of the last call, if no target aliased another
        self._args = (ctypes.cast(self._in_ptrs, ctypes.c_void_p), self._in_dims.ctypes.data,
                      self._slots.ctypes.data, self._outs.ctypes.data, self._err.ctypes.data)

    @property
    def ir(self):
        return self.spec.ir_text

    def dump_llvm(self):
        """The LLVM IR module (text; a function loaded from the cache lowers it again for this)."""
        return self.spec.ir_text

    @property
    def cache_hit(self):
        return self.module.cache_hit

    @property
    def kernels(self):
        return list(self.spec.kernels)

    def memory_report(self):
        """Bytes held by the function's intermediate buffers (after the calls so far)."""
        caps = [int(c) for c in self._slots[1::2][:self.spec.n_slots]]
        return {"buffers": self.spec.n_slots, "bytes": sum(caps), "per_buffer": caps}

    def __call__(self, values):
        if self._written:
            values = self._separate(values)
        arrays = []
        for k, (var, v) in enumerate(zip(self.fgraph.inputs, values)):
            if not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            arrays.append(v)
            self._in_ptrs[k] = v.ctypes.data
            off = self.spec.input_dim_offsets[k]
            self._in_dims[off:off + v.ndim] = v.shape
        rc = self._entry(*self._args)
        if rc:
            self._explain(rc, arrays)
        outs = []
        for k, (off, ndim, dtype) in enumerate(self.spec.output_layout):
            shape = tuple(self._outs[off + 1:off + 1 + ndim].tolist())
            if k in self._update_out:
                target = arrays[self._update_out[k]]
                if target.shape == shape:  # written into the shared storage natively
                    outs.append(target)
                    continue
            ptr = int(self._outs[off])
            out = self._hand_over(ptr, shape, dtype)
            outs.append(out if out is not None else _copy_out(ptr, shape, dtype))
        return outs

    def _hand_over(self, ptr, shape, dtype):
        """The output at ptr as an array that owns its buffer, or None (then it is copied): a large
        output that starts one of the function's buffers takes that buffer to the caller, and its
        slot is emptied, so that the next call allocates a new one. This saves a copy of every large
        result (a convolution's output). Another output in the same buffer (the same variable
        again, a view) finds no slot and is copied, from memory the first one keeps alive."""
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize   # (math.prod: numpy's costs 9 us a call)
        if nbytes < HAND_OVER_BYTES:
            return None
        hit = np.flatnonzero(self._slots[0::2] == ptr)
        if len(hit) != 1 or nbytes > int(self._slots[2 * hit[0] + 1]):
            return None   # an input's or a shared variable's storage, or inside a buffer
        self._slots[2 * hit[0]] = self._slots[2 * hit[0] + 1] = 0
        return np.asarray(_NativeBuffer(ptr, shape, dt))

    def _separate(self, values):
        """Native code writes updates into their shared variables' storage. Copy, before the call,
        what must not be written or must not see those writes, so results and shared values are
        the reference's:
        - a target numpy says is not writeable (np.frombuffer of bytes, a read-only memory map)
          or that shares memory with another shared input (two shared variables borrowed over one
          array): the target is copied, and the copy becomes its new value (a copy made once);
        - an explicit argument sharing memory with a target (f(W.get_value(borrow=True))) is
          copied for the call, as Theano copied aliased inputs: it is read as it was."""
        values = list(values)
        written = set(self._written)
        shared = [values[k] for k in self._shared]
        # the shared values are usually the very arrays found disjoint at the last call
        known = self._disjoint is not None and all(a is b for a, b in zip(shared, self._disjoint))
        pending = set(self._written)   # targets not looked at yet (each pair is compared once)
        copied = False
        for t in self._written:
            pending.discard(t)
            v = values[t]
            if not v.flags.writeable or not known and any(
                    np.may_share_memory(v, values[k]) for k in self._shared if k != t and k not in pending):
                values[t] = np.array(v, order="C")
                copied = True
        self._disjoint = None if copied else shared
        for k in range(self._n_explicit):
            if k not in written and any(np.may_share_memory(values[k], values[t]) for t in self._written):
                values[k] = np.array(values[k], order="C")
        return values

    def _explain(self, rc, arrays):
        """Native code found a bad input (before writing any update). The numpy reference
        of the same graph raises the op's own, more specific message for most such errors,
        so run it to explain; if it does not fail, report what native code saw."""
        # Not with collectives across ranks: the other ranks would not join the reference's
        # collectives (a mismatched or hung allreduce); the native report still names the op.
        collective = any(getattr(n.op, "collective", False) for n in self.fgraph.apply_nodes)
        if int(self._err[0]) in _EXPLAINED_BY_REFERENCE and not (collective and _ranks() > 1):
            from symcnn.compile.linker import ReferenceRunner
            ReferenceRunner(self.fgraph)(arrays)
        self._raise(rc, arrays)

    def _raise(self, rc, arrays=None):
        code, k = int(self._err[0]), int(self._err[1])
        vals = [int(x) for x in self._err[2:]]
        node = self.spec.order[k] if 0 <= k < len(self.spec.order) else None
        trace = node.trace if node is not None else None
        where = f"{node.op}" if node is not None else "result"
        explained = None
        if node is not None:
            hook = L.lower.error_message(node.op)
            explained = hook(code, node, where, vals) if hook is not None else None
        if explained is None:
            build = _MESSAGES.get(code, _invalid_value)
            explained = build(self, node, where, vals, arrays)
        exc, msg, *at = explained
        if at:
            trace = at[0]
        if node is not None:
            shapes = ", ".join(str(i.type) for i in node.inputs)
            msg += f" (inputs: {shapes})"
        raise exc(with_trace(msg, trace))

    def __del__(self):
        slots = getattr(self, "_slots", None)
        if slots is not None:
            for p in slots[0::2]:
                if p:
                    _libc.free(ctypes.c_void_p(int(p)))
            slots[:] = 0


# -- the messages of the error codes ---------------------------------------------------------------
# code -> fn(runner, node, where, vals, arrays) -> (exception class, message[, trace to name]).
# An op's own words for a code come first: the hook its lowering registers (lower.register(...,
# error_message=fn)); these are the messages of every other op.

def _shape(runner, node, where, vals, arrays):
    return ValueError, f"{where}: dimension mismatch at run time: {vals[0]} vs {vals[1]}"


def _index(runner, node, where, vals, arrays):
    return IndexError, f"{where}: index {vals[0]} is out of bounds for a dimension of length {vals[1]}"


def _reshape(runner, node, where, vals, arrays):
    return ValueError, f"{where}: cannot reshape an array of size {vals[0]} into a shape of size {vals[1]}"


def _alloc(runner, node, where, vals, arrays):
    if vals[0] == -1:
        ndim = vals[1]
        dims = ", ".join(str(d) for d in vals[2:2 + min(ndim, 4)]) + (", ..." if ndim > 4 else "")
        return MemoryError, (f"{where}: cannot allocate an array of shape ({dims}): its size in bytes "
                             f"does not fit in 64 bits")
    return MemoryError, f"{where}: out of memory allocating {vals[0]} bytes"


def _update_shape(runner, node, where, vals, arrays):
    sv = runner.fgraph.inputs[vals[3]]
    msg = (f"update of {sv.describe()} would change dimension {vals[2]} from {vals[1]} to {vals[0]}; "
           f"the native backend updates shared variables in place (no shared variable was changed)")
    # name the user's line of the update expression (else where the shared variable was made)
    outk = dict(runner.updates).get(vals[3])
    expr = runner.fgraph.outputs[outk] if outk is not None else None
    return ValueError, msg, (expr.trace if expr is not None else None) or sv.trace


def _static(runner, node, where, vals, arrays):
    var = node.outputs[0] if node is not None else None
    return ValueError, (f"{where}: dimension {vals[2]} is {vals[0]} at run time but the graph declares {vals[1]}"
                        + (f" for {var.describe()}" if var is not None else ""))


def _index_broadcast(runner, node, where, vals, arrays):
    return IndexError, (f"{where}: shape mismatch: indexing arrays could not be broadcast together "
                        f"({vals[0]} vs {vals[1]})")


def _zero_step(runner, node, where, vals, arrays):
    return ValueError, f"{where}: slice step cannot be zero"


def _nan(runner, node, where, vals, arrays):
    from .guard import nan_error
    raise nan_error(runner, node, vals, arrays)


def _oob(runner, node, where, vals, arrays):
    from .guard import oob_message
    return IndexError, oob_message(runner, where, vals)


def _invalid_value(runner, node, where, vals, arrays):
    return ValueError, f"{where}: invalid value ({', '.join(map(str, vals[:3]))})"


_MESSAGES = {L.E_SHAPE: _shape, L.E_INDEX: _index, L.E_RESHAPE: _reshape, L.E_ALLOC: _alloc,
             L.E_UPDATE_SHAPE: _update_shape, L.E_STATIC: _static, L.E_INDEX_BROADCAST: _index_broadcast,
             L.E_ZERO_STEP: _zero_step, L.E_NAN: _nan, L.E_OOB: _oob, L.E_VALUE: _invalid_value}


def _pool_function(module, name, restype, *argtypes):
    try:
        addr = module.address(name)
    except RuntimeError:
        return None
    return ctypes.CFUNCTYPE(restype, *argtypes)(addr)


def _start_pool(owner, module):
    """Start the module's worker threads (if it has parallel regions); they are stopped when
    `owner` is freed, or at interpreter exit, while `module`'s code is still loaded. Returns
    the threads a parallel region can use (1: it runs on the calling thread)."""
    start = _pool_function(module, "symcnn_pool_start", ctypes.c_int64, ctypes.c_int64)
    stop = _pool_function(module, "symcnn_pool_stop", None)
    if start is None or stop is None:
        return 1
    n = int(start(0))
    # the finalizer holds the module: the engine must outlive the threads running its code
    weakref.finalize(owner, _stop_pool, stop, module)
    return n


def _stop_pool(stop, module):
    stop()


# Outputs of at least this many bytes are handed over rather than copied (_hand_over); a smaller
# copy costs less than the allocation the next call then makes.
HAND_OVER_BYTES = 1 << 16


class _NativeBuffer(OwnedBuffer):
    """A buffer the native code allocated (aligned_alloc), as the memory of one output array:
    freed when the last array viewing it is collected."""

    def __init__(self, ptr, shape, dtype):
        self.ptr = ptr
        self.__array_interface__ = {"data": (ptr, False), "shape": tuple(shape), "typestr": dtype.str,
                                    "version": 3}

    def __del__(self, _free=_libc.free, _ptr=ctypes.c_void_p):   # bound now: usable at interpreter exit
        _free(_ptr(self.ptr))


def _copy_out(ptr, shape, dtype):
    n = math.prod(shape)
    dt = np.dtype(dtype)
    if n == 0:
        return np.empty(shape, dtype=dt)
    buf = (ctypes.c_char * (n * dt.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dt, count=n).reshape(shape).copy()


def _ranks():
    from symcnn import distributed
    return distributed.size()
