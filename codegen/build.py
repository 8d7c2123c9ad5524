"""Lower a whole function graph into one LLVM module with one entry point.

    i32 symcnn_entry(ptr inputs, ptr input_dims, ptr slots, ptr outputs, ptr err)

inputs: one data pointer per graph input (explicit inputs, then shared values);
input_dims: their dimensions, concatenated; slots: (pointer, capacity) pairs the
function owns; outputs: per output, its data pointer then its dimensions; err:
(code, node index, details...) when the return value is not 0.
"""
import numpy as np
from llvmlite import ir

from symcnn.graph.basic import Constant

from . import irutil as U
from . import jit
from .lower import E_UPDATE_SHAPE, Array, Context, _checker, copy, lower
from .plan import Plan
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
    """What the runtime needs to know to call the entry point."""

    def __init__(self, ir_text, n_slots, input_dim_offsets, output_layout, order):
        self.ir_text = ir_text
        self.n_slots = n_slots
        self.input_dim_offsets = input_dim_offsets
        self.output_layout = output_layout   # list of (offset into outputs array, ndim, dtype)
        self.order = order


def build_module(fgraph, updates, guard_nan=False, bounds_check=False, profile=False):
    """updates: list of (input index, output index) pairs committed into input storage.
    guard_nan: check every node's float outputs for NaN/Inf (mode='nanguard');
    bounds_check: check every Array element access against its allocation
    (mode='boundscheck'). Both are off by default and then emit nothing (see guard.py).
    profile: time every kernel (mode='profile', see profile.py)."""
    if not bounds_check:
        return _build_module(fgraph, updates, guard_nan, profile)
    from .guard import bounds_checking
    with bounds_checking() as checker:
        spec = _build_module(fgraph, updates, guard_nan)
    spec.oob_labels = checker.labels
    return spec


def _build_module(fgraph, updates, guard_nan=False, profile=False):
    module = ir.Module(name="symcnn")
    module.triple, module.data_layout = jit.module_header()
    fn = ir.Function(module, ir.FunctionType(U.I32, [U.PTR] * 5), name="symcnn_entry")
    inputs_p, dims_p, slots_p, outs_p, err_p = fn.args
    for a in fn.args:
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    # The NaN guard may stop a call midway: then nothing may have been written in place yet.
    plan = Plan(fgraph, lower, updates if not guard_nan else ())
    ctx = Context(module, b, plan, slots_p, err_p)
    chk = _checker()
    if chk is not None:
        chk.attach(ctx)
    if guard_nan:
        from .guard import emit_nan_guard
    prof = None
    if profile:
        from .profile import Profiler
        prof = Profiler(ctx, kernel_list(plan, plan.order, updates), plan, updates)

    env = {}
    offsets, off = [], 0
    for k, v in enumerate(fgraph.inputs):
        ptr = b.load(b.gep(inputs_p, [U.i64(k)], source_etype=U.PTR), typ=U.PTR)
        shape = []
        for d, st in enumerate(v.type.shape):
            shape.append(st if st is not None else b.load(b.gep(dims_p, [U.i64(off + d)], source_etype=U.I64),
                                                         typ=U.I64))
        offsets.append(off)
        off += v.ndim
        env[v] = Array(v.dtype, ptr, shape, b=b)
        if chk is not None:
            chk.bind(env[v], f"graph input {k} ({v})")

    order = plan.order
    for out, target in plan.inplace_update.items():
        ctx.destination[out] = (env[target], fgraph.inputs.index(target))
    for node in order:
        for v in node.inputs:
            if v not in env and isinstance(v, Constant):
                env[v] = _constant(module, v, b)
    first_inplace = len(order) - len(plan.inplace_update)
    for k, node in enumerate(order):
        if k == first_inplace:
            _check_inplace_shapes(ctx, plan, order[k:], env)
        ctx.node_index = k
        fn_lower, _ = lower.lookup(node.op)
        ins = [env[v] for v in node.inputs]
        tok = prof.begin(node) if prof is not None else None
        outs = fn_lower(ctx, node, ins)
        for var, arr in zip(node.outputs, outs):
            if len(arr.shape) != var.ndim or arr.dtype != var.dtype:
                raise AssertionError(f"lowering of {node.op} gave a {len(arr.shape)}-d {arr.dtype} array for "
                                     f"the {var.ndim}-d {var.dtype} {var}")
            arr.shape = ctx.static_shape(var, arr.shape)
            env[var] = arr
        if tok is not None:
            prof.end(tok, [a.shape for a in ins] + [a.shape for a in outs])
        if guard_nan:
            emit_nan_guard(ctx, node, outs)

    # Results that are views/inputs/constants are copied into their own buffers first.
    ctx.node_index = len(order)
    results = []
    for k, out in enumerate(fgraph.outputs):
        if out not in env and isinstance(out, Constant):
            env[out] = _constant(module, out, b)
        arr = env[out]
        if k in plan.output_copy:
            tok = prof.begin(("out", k)) if prof is not None else None
            dst = ctx.alloc_in(plan.output_copy[k], out.dtype, arr.shape)
            copy(ctx, arr, dst)
            if tok is not None:
                prof.end(tok, [arr.shape, dst.shape])
            arr = dst
        results.append(arr)

    # Updates: every new value is computed; write those of unchanged shape into the shared
    # storage. A new value of another shape stays in its buffer: the caller gives the shared
    # variable a new array (Theano lets an update change a shared variable's shape).
    for inp, outk in updates:
        src, dst = results[outk], env[fgraph.inputs[inp]]
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

    layout, off = [], 0
    for k, (out, arr) in enumerate(zip(fgraph.outputs, results)):
        layout.append((off, out.ndim, out.dtype))
        b.store(b.ptrtoint(arr.ptr, U.I64), b.gep(outs_p, [U.i64(off)], source_etype=U.I64))
        for d, dim in enumerate(arr.shape):
            b.store(U.as_value(b, dim), b.gep(outs_p, [U.i64(off + 1 + d)], source_etype=U.I64))
        off += 1 + out.ndim
    b.ret(ir.Constant(U.I32, 0))
    spec = ModuleSpec(str(module), plan.n_slots, offsets, layout, order)
    spec.kernels = kernel_list(plan, order, updates)
    if prof is not None:
        spec.profile = prof.spec()
    return spec


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


def _constant(module, v, b):
    data = np.asarray(v.data, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    raw = bytearray(data.tobytes()) or bytearray(b"\0")
    ty = ir.ArrayType(U.I8, len(raw))
    g = ir.GlobalVariable(module, ty, name=f"const{len(module.globals)}")
    g.global_constant = True
    g.linkage = "internal"
    g.align = 64
    g.initializer = ir.Constant(ty, raw)
    arr = Array(v.dtype, g, list(data.shape), b=b)
    chk = _checker()
    return arr if chk is None else chk.bind(arr, f"constant {v}")
