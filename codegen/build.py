"""Lower a whole function graph into one LLVM module with one entry point.

    i32 symcnn_entry(ptr inputs, ptr input_dims, ptr slots, ptr outputs, ptr err)

inputs: one data pointer per graph input (explicit inputs, then shared values);
input_dims: their dimensions, concatenated; slots: (pointer, capacity) pairs the
function owns; outputs: per output, its data pointer then its dimensions; err:
(code, node index, details...) when the return value is not 0.

Compiling is two-phase (the backend contract, symcnn.compile.backend): lower_graph lowers the
graph or finds it in the compile cache, LoweredGraph.finish makes the machine code. A module is
emitted by the named passes of PASSES, in order (entry function, instrumentation hooks per
node, inputs, constants, nodes, outputs, updates, return, loop metadata).
"""
import gc
import hashlib
import sys
import threading
import weakref
from contextlib import contextmanager

import numpy as np
from llvmlite import ir

from symcnn.graph.basic import Constant

from . import irutil as U
from . import jit
from . import library
from .forksafe import after_fork_in_child
from . import target as targets
from .early_parts import EarlyParts, enabled as early_parts_enabled
from .lower import E_UPDATE_SHAPE, Array, Context, bounds_checker, copy, lower
from .options import options as codegen_options
from .plan import Plan
from .redundant_checks import drop_dominated_checks
from . import kernels  # noqa: F401  (registers the lowerings)



class Kernel:
    """One native loop nest of a compiled function, in execution order."""

    def __init__(self, name, node=None, note=""):
        self.name, self.node, self.note = name, node, note

    def __repr__(self):
        where = f" ({self.node.trace.location()})" if self.node is not None and self.node.trace else ""
        return f"{self.name}{' [' + self.note + ']' if self.note else ''}{where}"


def kernel_list(plan, order, updates):
    kernels = []
    for node in order:
        out = node.outputs[0]
        if plan.base.get(out) is node.inputs[0] and out not in plan.inplace_update:
            continue  # a view: no code runs
        if plan.base.get(out, out) is not out and out not in plan.inplace_update:
            continue
        note = ""
        if out in plan.inplace_update:
            note = f"in place into {plan.inplace_update[out]}"
        elif out in plan.overwrites:
            note = f"overwrites its dead input {plan.overwrites[out]}"
        kernels.append(Kernel(str(node.op), node, note))
    for k in plan.output_copy:
        kernels.append(Kernel("copy", None, f"output {k}"))
    for inp, outk in updates:
        out = plan.fgraph.outputs[outk]
        if out not in plan.inplace_update:
            kernels.append(Kernel("copy", None, f"update of {plan.fgraph.inputs[inp]}"))
    return kernels


class ModuleSpec:
    """What the runtime needs to know to call the entry point.

    A spec read from the function cache has no IR: `ir_text` lowers the graph again
    when it is first asked for (fn.dump_llvm())."""

    def __init__(self, ir_text, n_slots, input_dim_offsets, output_layout, order, relower=None):
        self._ir_text = ir_text
        self._relower = relower
        self.n_slots = n_slots
        self.input_dim_offsets = input_dim_offsets
        self.output_layout = output_layout   # list of (offset into outputs array, ndim, dtype)
        self.order = order
        self.parts = None   # jit.split_module's parts of the emitted text, until compiled

    @property
    def ir_text(self):
        if self._ir_text is None and self._relower is not None:
            self._ir_text = self._relower().ir_text
            self._relower = None
        return self._ir_text

    @ir_text.setter
    def ir_text(self, text):
        self._ir_text, self._relower = text, None
        self.parts = None

    def take_parts(self):
        """The parts jit.split_module cut ir_text into when it was emitted (then forgotten), or None."""
        parts, self.parts = self.parts, None
        return parts


class _OobLabel:
    """What an out-of-bounds error names (the part of guard.Bounds a cached spec keeps)."""

    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what


class LoweredGraph:
    """A graph after the first phase of compiling: lowered to a ModuleSpec, or found in the compile
    cache. finish() makes the machine code and returns (ModuleSpec, jit.CompiledModule); it may run
    in another thread. background: finish() has slow work left (False for a cache hit, whose
    object code is only loaded)."""

    def __init__(self, target, finish, background=True, abandon=None):
        self.target, self._finish, self.background = target, finish, background
        # dropped unfinished (an interrupt before function() handed it over): run abandon()
        self._abandon = weakref.finalize(self, abandon) if abandon is not None else None
        if self._abandon is not None:
            self._abandon.atexit = False

    def finish(self):
        if self._abandon is not None:
            self._abandon.detach()
        with targets.using(self.target):
            return self._finish()


def lower_graph(fgraph, updates, guard_nan=False, bounds_check=False, profile=False, lazy=False):
    """The LoweredGraph of a function graph, through the function cache: a hit loads the stored
    object code without lowering the graph. Identical graphs compiled at the same time (in other
    threads) are compiled once. The code is for the target the config names (config.target_cpu /
    target_features), read once here. Raises here for a graph that cannot be lowered.
    lazy: the LoweredGraph may never be finished: no part of its module is compiled before
    finish(), and nobody waits for it (an identical graph compiled meanwhile compiles on its own)."""
    tgt = targets.current()
    if not tgt.host:   # before the cache: a hit would load it, a miss would fail only when called
        raise ValueError(f"config.target_cpu={tgt.name!r} ({tgt.triple}, {tgt.isa()}): this machine cannot "
                         f"run its code; use codegen.build.emit_object to compile for it")
    with targets.using(tgt):
        return _lower_graph(fgraph, updates, tgt, dict(guard_nan=guard_nan, bounds_check=bounds_check,
                                                       profile=profile), lazy)


def compile_graph(fgraph, updates, **options):
    """(ModuleSpec, jit.CompiledModule) of a function graph: lower_graph(...).finish()."""
    return lower_graph(fgraph, updates, **options).finish()


def _lower_graph(fgraph, updates, tgt, options, lazy=False):
    nodes = fgraph.toposort()
    key = graph_key(fgraph, nodes, updates, options) if jit.cache_dir() else None
    if key is None:
        if not lazy:
            jit.start_helper()
        spec = build_module(fgraph, updates, early=not lazy, **options)
        return LoweredGraph(tgt, lambda: (spec, jit.CompiledModule(
            spec.ir_text, obj=jit.compile_module(spec.ir_text, parts=spec.take_parts()), target=tgt)))
    with _inflight_lock:
        job = _inflight.get(key)
        owner = job is None
        if owner:
            job = _inflight[key] = _Job()
    if not owner:
        return LoweredGraph(tgt, lambda: _finish_as_another(job, fgraph, nodes, updates, options, tgt))
    try:
        entry, spec, objs = _cached(key, fgraph, nodes, updates, options)
        if objs is not None:  # a hit is fast: the runner is built before function() returns
            job.set(entry)
            _release(key, job)
            return LoweredGraph(tgt, lambda: (spec, jit.CompiledModule(obj=objs, cache_hit=True, target=tgt)),
                                background=False)
        if not lazy:
            jit.start_helper()   # a miss: code generation follows, on both cores
        spec = build_module(fgraph, updates, early=not lazy, **options)
    except BaseException as e:
        job.fail(e)
        _release(key, job)
        raise
    if lazy:   # nobody waits for a compile that may never happen
        _abandon(job, key)
        return LoweredGraph(tgt, lambda: _finish_lazily(key, spec, fgraph, nodes, updates, options, tgt))
    return LoweredGraph(tgt, lambda: _finish_and_store(job, key, spec, nodes, tgt),
                        abandon=lambda: _abandon(job, key))


def _finish_and_store(job, key, spec, nodes, tgt):
    """Compile the lowered module, store it in the cache, and hand it to those waiting for it
    (job; a lazily lowered graph's is its own)."""
    try:
        # for tgt: LoweredGraph.finish is in targets.using(tgt)
        objs = jit.compile_module(spec.ir_text, parts=spec.take_parts())
        meta = _spec_to_meta(spec, nodes)
        meta["object_sizes"] = [len(o) for o in objs]
        obj = b"".join(objs)
        jit.write_entry(key, meta, obj)
        job.set((meta, obj))
        return spec, jit.CompiledModule(spec.ir_text, obj=objs, target=tgt)
    except BaseException as e:
        job.fail(e)
        raise
    finally:
        _release(key, job)


def _finish_lazily(key, spec, fgraph, nodes, updates, options, tgt):
    """A lazily lowered graph, finished: from the cache if another function stored it meanwhile."""
    _, cached, objs = _cached(key, fgraph, nodes, updates, options)
    if objs is not None:
        return cached, jit.CompiledModule(obj=objs, cache_hit=True, target=tgt)
    return _finish_and_store(_Job(), key, spec, nodes, tgt)


def _cached(key, fgraph, nodes, updates, options):
    """(entry, ModuleSpec, object files) of the cache's entry for key; objects None on a miss
    (or an entry unfit for this graph)."""
    entry = jit.read_entry(key)
    spec = _spec_from_meta(entry[0], fgraph, nodes, updates, options) if entry is not None else None
    return entry, spec, _objects(entry[0], entry[1]) if spec is not None else None


def _finish_as_another(job, fgraph, nodes, updates, options, tgt):
    """Another thread is compiling an identical graph: wait for its object code."""
    try:
        meta, obj = job.result()
    except _Abandoned:
        meta = None
    spec = _spec_from_meta(meta, fgraph, nodes, updates, options) if meta is not None else None
    objs = _objects(meta, obj) if spec is not None else None
    if objs is None:  # abandoned, or (cannot happen for equal keys) unfit: compile this one on its own
        spec = build_module(fgraph, updates, **options)
        return spec, jit.CompiledModule(obj=jit.compile_module(spec.ir_text), target=tgt)
    return spec, jit.CompiledModule(obj=objs, cache_hit=True, target=tgt)


def _objects(meta, blob):
    """The object files a function entry holds (the parts of jit.compile_module, one after the
    other, their sizes in the metadata), or None if the sizes do not add up."""
    sizes = meta.get("object_sizes", [len(blob)])
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n > 0 for n in sizes) \
            or sum(sizes) != len(blob):
        return None
    objs, at = [], 0
    for n in sizes:
        objs.append(blob[at:at + n])
        at += n
    return objs


class _Abandoned(Exception):
    pass


def _abandon(job, key):
    """Those waiting for a compile that will not happen compile on their own."""
    job.fail(_Abandoned())
    _release(key, job)


def _release(key, job):
    with _inflight_lock:
        if _inflight.get(key) is job:
            del _inflight[key]


class _Job:
    def __init__(self):
        self._done = threading.Event()
        self._value = self._error = None

    def set(self, value):
        self._value = value
        self._done.set()

    def fail(self, error):
        self._error = error
        self._done.set()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


_inflight = {}      # graph key -> _Job of the thread compiling it
# reentrant: a LoweredGraph's abandon() may run from the garbage collector while this thread holds it
_inflight_lock = threading.RLock()


@after_fork_in_child
def _forget_parent_jobs():
    """A forked child: the threads compiling these jobs stayed in the parent (waiting for one
    would hang); compile again here."""
    global _inflight, _inflight_lock
    _inflight, _inflight_lock = {}, threading.RLock()


class _Uncacheable(Exception):
    pass


def graph_key(fgraph, nodes, updates, options):
    """Hex digest identifying the code `build_module(fgraph, updates, **options)` emits
    (see jit.entry_hasher for the rest of the key), or None if some op or type cannot be
    described stably (then the function is compiled without the cache)."""
    h = jit.entry_hasher()
    try:
        parts = _describe(fgraph.inputs, nodes, fgraph.outputs)
    except _Uncacheable:
        return None
    h.update(repr(("options", sorted(options.items()), [tuple(u) for u in updates])).encode())
    h.update(repr(parts).encode())
    return h.hexdigest()


def _describe_graph(inputs, outputs):
    """A stable description of the graph from `inputs` to `outputs` (for ops with inner graphs)."""
    from symcnn.graph.basic import io_toposort
    return _describe(inputs, io_toposort(outputs), outputs)


def _describe(inputs, nodes, outputs):
    """The graph as a tuple that is equal across processes iff the graphs are: inputs, then each
    node (op, input positions, output types) in order, constants by the hash of their bytes.
    Raises _Uncacheable for a free variable or a type that cannot be described."""
    ids, parts = {}, []

    def name(v):
        k = ids.get(v)
        if k is None:
            if not isinstance(v, Constant):
                raise _Uncacheable(v)
            k = ids[v] = len(ids)
            data = np.asarray(v.data, order="C")
            parts.append(("const", k, _type_desc(v.type), str(data.dtype), data.shape,
                          hashlib.sha256(data.tobytes()).hexdigest()))
        return k

    for v in inputs:
        ids[v] = len(ids)
        parts.append(("input", type(v).__name__, _type_desc(v.type)))
    for node in nodes:
        ins = [name(v) for v in node.inputs]
        for o in node.outputs:
            ids[o] = len(ids)
        parts.append(("node", _stable(node.op), ins, [_type_desc(o.type) for o in node.outputs]))
    parts.append(("outputs", [name(v) for v in outputs]))
    return tuple(parts)


def _type_desc(t):
    dtype, shape = getattr(t, "dtype", None), getattr(t, "shape", None)
    if not isinstance(dtype, str) or not isinstance(shape, tuple):
        raise _Uncacheable(t)
    return (type(t).__name__, dtype, shape)


def _stable(x):
    """A description of an op or op property that is equal across processes iff the values are."""
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return (type(x).__name__, x)
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_stable(e) for e in x))
    if isinstance(x, dict):
        return ("dict", tuple(sorted((repr(_stable(k)), _stable(v)) for k, v in x.items())))
    if isinstance(x, np.dtype):
        return ("dtype", x.str)
    if isinstance(x, np.generic):
        return ("np", x.dtype.str, x.item())
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.str, x.shape, hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
    if isinstance(x, type):
        return ("class", x.__module__, x.__qualname__)
    cls = type(x)
    inner = getattr(x, "inner_graph", None)
    if inner is not None:  # an op with a graph inside (Scan): described by that graph
        inputs, outputs, props = inner()
        return ("inner", cls.__module__, cls.__qualname__, _stable(props), _describe_graph(inputs, outputs))
    props = getattr(cls, "__props__", None)
    if props is not None:
        return ("op", cls.__module__, cls.__qualname__, tuple((p, _stable(getattr(x, p))) for p in props))
    state = getattr(x, "__dict__", None)
    if state is None or cls.__module__.split(".")[0] not in ("symcnn", "codegen"):
        raise _Uncacheable(x)
    # e.g. scalar ops, which compare equal by their __dict__
    return ("obj", cls.__module__, cls.__qualname__, tuple((k, _stable(v)) for k, v in sorted(state.items())))


def _spec_to_meta(spec, nodes):
    index = {n: i for i, n in enumerate(nodes)}
    meta = {
        "n_slots": spec.n_slots,
        "input_dim_offsets": list(spec.input_dim_offsets),
        "output_layout": [list(e) for e in spec.output_layout],
        "order": [index[n] for n in spec.order],
        "kernels": [[k.name, index[k.node] if k.node is not None else -1, k.note] for k in spec.kernels],
    }
    if hasattr(spec, "profile"):
        meta["profile"] = spec.profile
    if hasattr(spec, "oob_labels"):
        meta["oob_labels"] = [b.what for b in spec.oob_labels]
    return meta


def _spec_from_meta(meta, fgraph, nodes, updates, options):
    """The ModuleSpec a cache entry describes, or None if the entry does not fit this graph."""
    try:
        order = [nodes[i] for i in meta["order"]]
        spec = ModuleSpec(None, int(meta["n_slots"]), [int(o) for o in meta["input_dim_offsets"]],
                          [(int(o), int(n), str(d)) for o, n, d in meta["output_layout"]], order,
                          relower=lambda tgt=targets.current(): _build_for(tgt, fgraph, updates, options))
        spec.kernels = [Kernel(name, nodes[i] if i >= 0 else None, note) for name, i, note in meta["kernels"]]
        if options["profile"]:
            p = meta["profile"]
            spec.profile = dict(p, layout=[[tuple(e) for e in lay] for lay in p["layout"]])
        if options["bounds_check"]:
            spec.oob_labels = [_OobLabel(w) for w in meta["oob_labels"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if len(spec.input_dim_offsets) != len(fgraph.inputs) or len(spec.output_layout) != len(fgraph.outputs):
        return None
    return spec


def _build_for(tgt, fgraph, updates, options):
    with targets.using(tgt):
        return build_module(fgraph, updates, **options)


def emit_object(fgraph_or_function, target):
    """An object file (bytes) of a function graph (or a compiled symcnn function's rewritten graph)
    for `target` (a codegen.target.Target, e.g. target.resolve('neoverse-v1',
    triple='aarch64-unknown-linux-gnu')): lowered and compiled for it, never loaded or run. For
    cross-compiling, and for checking that the code generators emit nothing the target lacks."""
    fgraph, updates = fgraph_or_function, []
    fn = fgraph_or_function
    if hasattr(fn, "update_targets"):   # a symcnn Function
        fgraph = fn.maker.fgraph
        updates = [(fgraph.inputs.index(sv), fn.n_outputs + k) for k, sv in enumerate(fn.update_targets)]
    with targets.using(target):
        spec = build_module(fgraph, updates)
        return jit.compile_object(spec.ir_text, target)


def build_module(fgraph, updates, guard_nan=False, bounds_check=False, profile=False, early=False):
    """updates: list of (input index, output index) pairs committed into input storage.
    guard_nan: check every node's float outputs for NaN/Inf (mode='nanguard');
    bounds_check: check every Array element access against its allocation
    (mode='boundscheck'). Both are off by default and then emit nothing (see guard.py).
    profile: time every kernel (mode='profile', see profile.py).
    early: the module is compiled next (codegen.early_parts may start on its finished parts)."""
    if not bounds_check:
        return _build_module(fgraph, updates, guard_nan, profile, early)
    from .guard import bounds_checking
    with bounds_checking() as checker:
        spec = _build_module(fgraph, updates, guard_nan)
    spec.oob_labels = checker.labels
    return spec


def _build_module(fgraph, updates, guard_nan=False, profile=False, early=False):
    with collector_paused():
        em = Emission(fgraph, updates, guard_nan, profile)
        em.want_early = early
        try:
            for _, emit in PASSES:
                emit(em)
        except BaseException:
            if em.early is not None:   # nothing will be compiled
                em.early.abandon()
            raise
        if em.early is not None:
            em.early.close()
        library.record(em.module)
        text = str(em.module)
        spec = ModuleSpec(text, em.plan.n_slots, em.offsets, em.layout, em.plan.order)
        # cut here, not on the compiling thread: that thread would share this one's interpreter
        # with the next function's emission while the helper waits for the parts
        spec.parts = jit.split_module(text, em.early.parsed if em.early is not None else None)
        spec.kernels = kernel_list(em.plan, em.plan.order, updates)
        if em.prof is not None:
            spec.profile = em.prof.spec()
        release_ir(em.module)
    return spec


def release_ir(module):
    """Break the reference cycles of a finished llvmlite module (an instruction and its block
    point at each other, a loop's phi and the values it merges), so that reference counting
    frees its objects now. A LeNet training step leaves some 10^5 of them: left to the cyclic
    collector they made one collection of 0.1-0.4 s on the compiling thread, three times what
    freeing them here costs. The module is unusable afterwards (only its text was wanted)."""
    for fn in list(module.functions):
        for blk in fn.blocks:
            for ins in blk.instructions:
                ins.__dict__.clear()
            blk.__dict__.clear()
        fn.__dict__.clear()
    for g in list(module.globals.values()) + list(module.metadata):
        g.__dict__.clear()   # a loop's metadata node names itself
    module.__dict__.clear()


_pause_lock = threading.Lock()
_pauses = {"depth": 0, "was_enabled": False, "switch": 0.005}


# The interpreter's switch interval while a module is emitted (Python's default: 5 ms).
EMIT_SWITCH_INTERVAL = 0.0005


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off while a module is emitted (nested and concurrent
    uses share one pause). llvmlite's IR objects reference each other: a LeNet train step makes
    some 10^5 of them, and the collections their allocations trigger (a full one among them,
    walking the whole heap) took a fifth of the Python time of a cold compile. Afterwards
    release_ir frees them by reference counting.

    Meanwhile the interpreter switches threads every EMIT_SWITCH_INTERVAL: the threads feeding
    the compile helper and LLVM (this module's early parts, the previous module's parts) need the
    interpreter only for moments between long calls that release it, and at the default 5 ms
    each such moment waited for the emitting thread to yield: 0.1 s between a training step's
    module being cut into parts and its first part starting, while its validation function was
    being emitted."""
    with _pause_lock:
        if _pauses["depth"] == 0:
            _pauses["was_enabled"] = gc.isenabled()
            gc.disable()
            _pauses["switch"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_pauses["switch"], EMIT_SWITCH_INTERVAL))
        _pauses["depth"] += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses["depth"] = max(0, _pauses["depth"] - 1)
            if _pauses["depth"] == 0:
                sys.setswitchinterval(_pauses["switch"])
                if _pauses["was_enabled"]:
                    gc.enable()


@after_fork_in_child
def _no_pause_after_fork():
    """A forked child: a pause of another thread of the parent never ends here."""
    global _pause_lock
    _pause_lock = threading.Lock()
    if _pauses["depth"] and _pauses["was_enabled"]:
        gc.enable()
    _pauses["depth"] = 0


# -- module emission as a list of named passes ---------------------------------------------------

class Emission:
    """What the passes emitting one module share: each reads what the earlier ones left."""

    def __init__(self, fgraph, updates, guard_nan, profile):
        self.fgraph, self.updates = fgraph, updates
        self.guard_nan, self.profile = guard_nan, profile
        self.module = self.fn = self.b = self.plan = self.ctx = self.chk = self.prof = None
        self.want_early = False   # the module is compiled next: codegen.early_parts may start
        self.early = None     # its EarlyParts
        self.prologue = self.body = None   # the entry block, and the block the nodes' code starts in
        self.hooks = []       # NodeHooks around each node's lowering
        self.env = {}         # graph variable -> Array
        self.offsets = []     # per graph input, where its dimensions start in input_dims
        self.results = []     # per graph output, its Array
        self.layout = []      # per graph output, (offset into outputs, ndim, dtype)


def entry_function(em):
    """The module (stamped for the target), its entry function, the memory plan and the context."""
    em.module = module = ir.Module(name="symcnn")
    module.triple, module.data_layout = jit.module_header(targets.current())
    library.begin(module, (em.guard_nan, em.profile))
    em.fn = fn = ir.Function(module, ir.FunctionType(U.I32, [U.PTR] * 5), name="symcnn_entry")
    for a in fn.args:
        a.add_attribute("noalias")
    # the entry block holds the stack variables and, at the end, the growth of the buffers of
    # static sizes (grow_static_buffers); the nodes' code starts in the next block
    em.prologue = fn.append_basic_block("entry")
    em.body = fn.append_basic_block("body")
    em.b = ir.IRBuilder(em.body)
    # The NaN guard may stop a call midway: then nothing may have been written in place yet.
    em.plan = Plan(em.fgraph, lower, em.updates if not em.guard_nan else ())
    em.ctx = Context(module, em.b, em.plan, fn.args[2], fn.args[4])
    em.ctx.static_sizes = {}
    em.chk = bounds_checker()
    if em.chk is not None:
        em.chk.attach(em.ctx)
    em.early = em.ctx.early_parts = \
        EarlyParts(module, targets.current()) if em.want_early and early_parts_enabled() else None


class NodeHook:
    """Instrumentation around each node's lowering. Hooks nest: before() runs in list order and
    after() in reverse, so the code of the first hook encloses the others'."""

    def before(self, node, ins):
        pass

    def after(self, node, ins, outs):
        pass


class Collectives(NodeHook):
    """Finish the collectives whose results a node reads before it; let the others progress after."""

    def __init__(self, ctx):
        self.ctx = ctx

    def before(self, node, ins):
        self.ctx.before_node(node)

    def after(self, node, ins, outs):
        self.ctx.after_node()


class NanGuard(NodeHook):
    """mode='nanguard': check the node's float outputs (see guard.py)."""

    def __init__(self, ctx):
        from .guard import emit_nan_guard
        self.ctx, self.emit = ctx, emit_nan_guard

    def after(self, node, ins, outs):
        self.ctx.before_node(None)  # the guard reads the outputs now
        self.emit(self.ctx, node, outs)


class KernelTimer(NodeHook):
    """mode='profile': a clock read around the node's kernels (see profile.py)."""

    def __init__(self, prof):
        self.prof, self.token = prof, None

    def before(self, node, ins):
        self.token = self.prof.begin(node)

    def after(self, node, ins, outs):
        self.prof.end(self.token, [a.shape for a in ins] + [a.shape for a in outs])


def instrumentation(em):
    """The hooks around each node: collectives always, the NaN guard and the timers on request."""
    em.hooks = [Collectives(em.ctx)]
    if em.guard_nan:
        em.hooks.append(NanGuard(em.ctx))
    if em.profile:
        from .profile import Profiler
        em.prof = Profiler(em.ctx, kernel_list(em.plan, em.plan.order, em.updates), em.plan, em.updates)
        em.hooks.append(KernelTimer(em.prof))


def bind_inputs(em):
    """Each graph input as an Array: its pointer from `inputs`, its dimensions from `input_dims`."""
    b, (inputs_p, dims_p) = em.b, em.fn.args[:2]
    off = 0
    for k, v in enumerate(em.fgraph.inputs):
        ptr = b.load(b.gep(inputs_p, [U.i64(k)], source_etype=U.PTR), typ=U.PTR)
        shape = []
        for d, st in enumerate(v.type.shape):
            shape.append(st if st is not None else b.load(b.gep(dims_p, [U.i64(off + d)], source_etype=U.I64),
                                                         typ=U.I64))
        em.offsets.append(off)
        off += v.ndim
        em.env[v] = Array(v.dtype, ptr, shape, b=b)
        if em.chk is not None:
            em.chk.bind(em.env[v], f"graph input {k} ({v})")


def bind_constants(em):
    """The constants the nodes read, as internal globals."""
    for node in em.plan.order:
        for v in node.inputs:
            if v not in em.env and isinstance(v, Constant):
                em.env[v] = constant_array(em.module, v, em.b)


def lower_nodes(em):
    """Each node's lowering in plan order, inside the instrumentation hooks; before the first
    in-place update, the shapes of all of them are checked."""
    ctx, plan, env, order = em.ctx, em.plan, em.env, em.plan.order
    for out, target in plan.inplace_update.items():
        ctx.destination[out] = (env[target], em.fgraph.inputs.index(target))
    first_inplace = len(order) - len(plan.inplace_update)
    for k, node in enumerate(order):
        if k == first_inplace:
            _check_inplace_shapes(ctx, plan, order[k:], env)
        ctx.node_index = k
        fn_lower, _ = lower.lookup(node.op)
        ins = [env[v] for v in node.inputs]
        for hook in em.hooks:
            hook.before(node, ins)
        outs = fn_lower(ctx, node, ins)
        for var, arr in zip(node.outputs, outs):
            if len(arr.shape) != var.ndim or arr.dtype != var.dtype:
                raise AssertionError(f"lowering of {node.op} gave a {len(arr.shape)}-d {arr.dtype} array for "
                                     f"the {var.ndim}-d {var.dtype} {var}")
            arr.shape = ctx.static_shape(var, arr.shape)
            env[var] = arr
        for hook in reversed(em.hooks):
            hook.after(node, ins, outs)
        if em.early is not None:
            em.early.node_done()


def copy_outputs(em):
    """Results that are views/inputs/constants are copied into their own buffers first."""
    ctx, env, prof = em.ctx, em.env, em.prof
    ctx.before_node(None)
    ctx.node_index = len(em.plan.order)
    for k, out in enumerate(em.fgraph.outputs):
        if out not in env and isinstance(out, Constant):
            env[out] = constant_array(em.module, out, em.b)
        arr = env[out]
        if k in em.plan.output_copy:
            tok = prof.begin(("out", k)) if prof is not None else None
            dst = ctx.alloc_in(em.plan.output_copy[k], out.dtype, arr.shape)
            copy(ctx, arr, dst)
            if tok is not None:
                prof.end(tok, [arr.shape, dst.shape])
            arr = dst
        em.results.append(arr)


def commit_updates(em):
    """Updates: every new value is computed; write those of unchanged shape into the shared
    storage. A new value of another shape stays in its buffer: the caller gives the shared
    variable a new array (Theano lets an update change a shared variable's shape)."""
    b, ctx, prof = em.b, em.ctx, em.prof
    for inp, outk in em.updates:
        src, dst = em.results[outk], em.env[em.fgraph.inputs[inp]]
        tok = prof.begin(("upd", inp)) if prof is not None else None
        if src is dst:
            if tok is not None:
                prof.end(tok, [src.shape, dst.shape])
            continue  # computed in place
        same = ir.Constant(U.I1, 1)
        for x, y in zip(src.shape, dst.shape):
            if not (isinstance(x, int) and isinstance(y, int) and x == y):
                same = b.and_(same, b.icmp_signed("==", U.as_value(b, x), U.as_value(b, y)))
        with b.if_then(same):
            copy(ctx, src, dst)
        if tok is not None:
            prof.end(tok, [src.shape, dst.shape])


def return_results(em):
    """Per output, its data pointer then its dimensions into `outputs`; return 0."""
    b, outs_p = em.b, em.fn.args[3]
    off = 0
    for out, arr in zip(em.fgraph.outputs, em.results):
        em.layout.append((off, out.ndim, out.dtype))
        b.store(b.ptrtoint(arr.ptr, U.I64), b.gep(outs_p, [U.i64(off)], source_etype=U.I64))
        for d, dim in enumerate(arr.shape):
            b.store(U.as_value(b, dim), b.gep(outs_p, [U.i64(off + 1 + d)], source_etype=U.I64))
        off += 1 + out.ndim
    b.ret(ir.Constant(U.I32, 0))


def grow_static_buffers(em):
    """The entry block's end: every buffer of a static size grown at once, then the nodes' code
    (lower.Context.emit_static_grows)."""
    b = ir.IRBuilder(em.prologue)
    code = em.ctx.emit_static_grows(b)
    if code is None:
        b.branch(em.body)
        return
    failed = em.fn.append_basic_block("grow_failed")
    br = b.cbranch(b.icmp_signed("!=", code, ir.Constant(U.I32, 0)), failed, em.body)
    br.set_weights([1, 1000])
    ir.IRBuilder(failed).ret(code)


def drop_repeated_checks(em):
    """The checks a dominating check of the same condition already made go (redundant_checks.py)."""
    drop_dominated_checks(em.fn, em.module.globals.get("symcnn_fail"))


def loop_metadata(em):
    """A post-pass over the finished function: its scalar loops are not unrolled unless
    codegen.options.entry_unroll says so, and those storing to more places per iteration than
    codegen.options.entry_vectorize_max_stores are not vectorised (why: see codegen/options.py)."""
    _tag_scalar_loops(em.module, em.fn, unroll=codegen_options.entry_unroll,
                      vectorize_max_stores=codegen_options.entry_vectorize_max_stores,
                      vectorize_min_trip=codegen_options.entry_vectorize_min_trip)


# The passes emitting a module, in order.
PASSES = (
    ("entry_function", entry_function),
    ("instrumentation", instrumentation),
    ("inputs", bind_inputs),
    ("constants", bind_constants),
    ("nodes", lower_nodes),
    ("outputs", copy_outputs),
    ("updates", commit_updates),
    ("return", return_results),
    ("static_buffers", grow_static_buffers),
    ("repeated_checks", drop_repeated_checks),
    ("loop_metadata", loop_metadata),
)


def _tag_scalar_loops(module, fn, unroll, vectorize_max_stores, vectorize_min_trip=None):
    """Tag the scalar loops of `fn`: llvm.loop.unroll.disable unless `unroll`, and
    llvm.loop.vectorize.enable false on those whose body (the loop's blocks, inner loops included)
    holds more than `vectorize_max_stores` store instructions (None: no limit), or whose exit test
    bounds the counter by a constant below `vectorize_min_trip` (None: no limit).
    A loop is found by its latch, the source of a back edge (a branch to a block on the
    depth-first search stack). Loops written with explicit vector operations (hand-blocked
    kernels) are left alone: unrolling may be what they were written for."""
    preds = {}
    back_edges = []
    state = {fn.entry_basic_block: 1}   # 1: on the stack, 2: done
    stack = [(fn.entry_basic_block, iter(U.successors(fn.entry_basic_block)))]
    while stack:
        blk, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[blk] = 2
            stack.pop()
            continue
        preds.setdefault(nxt, []).append(blk)
        if state.get(nxt) == 1:
            back_edges.append((blk, nxt))
        elif nxt not in state:
            state[nxt] = 1
            stack.append((nxt, iter(U.successors(nxt))))
    hints = {}

    def hint(name, *values):
        if name not in hints:
            hints[name] = module.add_metadata([ir.MetaDataString(module, name), *values])
        return hints[name]
    for latch, header in dict.fromkeys(back_edges):
        body, todo = {header, latch}, [latch]
        while todo:  # the natural loop: blocks reaching the latch without passing the header
            for p in preds.get(todo.pop(), ()):
                if p not in body:
                    body.add(p)
                    todo.append(p)
        if any(isinstance(getattr(ins, "type", None), ir.VectorType) for blk in body for ins in blk.instructions):
            continue
        tags = []
        if not unroll:
            tags.append(hint("llvm.loop.unroll.disable"))
        stores = sum(isinstance(ins, ir.StoreInstr) for blk in body for ins in blk.instructions)
        if (vectorize_max_stores is not None and stores > vectorize_max_stores) or \
                (vectorize_min_trip is not None and (_static_trip(header) or vectorize_min_trip) < vectorize_min_trip):
            tags.append(hint("llvm.loop.vectorize.enable", ir.Constant(U.I1, 0)))
        if not tags:
            continue
        # a loop ID is a node whose first operand is itself (one per loop)
        loop_id = ir.values.MDValue(module, [], name=str(len(module.metadata)))
        loop_id.operands = (loop_id, *tags)
        latch.terminator.set_metadata("llvm.loop", loop_id)


def _static_trip(header):
    """The constant bound of a loop's counter (the header's `phi < constant` test), or None."""
    phis = [ins for ins in header.instructions if isinstance(ins, ir.PhiInstr)]
    for ins in header.instructions:
        if isinstance(ins, ir.ICMPInstr) and ins.op in ("slt", "ult") and ins.operands[0] in phis \
                and isinstance(ins.operands[1], ir.Constant):
            return int(ins.operands[1].constant)
    return None


def _check_inplace_shapes(ctx, plan, nodes, env):
    """Before the first in-place write, check every in-place update's shape, so a call
    that fails leaves all shared variables unchanged."""
    from .kernels.elemwise import broadcast_shape
    for i, node in enumerate(nodes):
        ctx.node_index = len(plan.order) - len(nodes) + i
        out = node.outputs[0]
        dest, input_index = ctx.destination[out]
        shape = ctx.static_shape(out, broadcast_shape(ctx, node, [env[v] for v in node.inputs]))
        for d, (x, y) in enumerate(zip(shape, dest.shape)):
            ctx.check_equal(x, y, E_UPDATE_SHAPE, d, input_index)


def constant_array(module, v, b):
    """The Array of a graph constant: its bytes in an internal, 64-byte aligned global."""
    data = np.asarray(v.data, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    raw = bytearray(data.tobytes()) or bytearray(b"\0")
    ty = ir.ArrayType(U.I8, len(raw))
    g = ir.GlobalVariable(module, ty, name=f"const{len(module.globals)}")
    g.global_constant = True
    g.linkage = "internal"
    g.align = 64
    g.initializer = ir.Constant(ty, raw)
    arr = Array(v.dtype, g, list(data.shape), b=b)
    chk = bounds_checker()
    return arr if chk is None else chk.bind(arr, f"constant {v}")
