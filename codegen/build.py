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
from .lower import E_UPDATE_SHAPE, Array, Context, copy, lower
from .plan import Plan
from . import kernels  # noqa: F401  (registers the lowerings)


class ModuleSpec:
    """What the runtime needs to know to call the entry point."""

    def __init__(self, ir_text, n_slots, input_dim_offsets, output_layout, order):
        self.ir_text = ir_text
        self.n_slots = n_slots
        self.input_dim_offsets = input_dim_offsets
        self.output_layout = output_layout   # list of (offset into outputs array, ndim, dtype)
        self.order = order


def build_module(fgraph, updates):
    """updates: list of (input index, output index) pairs committed into input storage."""
    module = ir.Module(name="symcnn")
    module.triple, module.data_layout = jit.module_header()
    fn = ir.Function(module, ir.FunctionType(U.I32, [U.PTR] * 5), name="symcnn_entry")
    inputs_p, dims_p, slots_p, outs_p, err_p = fn.args
    for a in fn.args:
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    plan = Plan(fgraph, lower)
    ctx = Context(module, b, plan, slots_p, err_p)

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

    order = fgraph.toposort()
    for k, node in enumerate(order):
        for v in node.inputs:
            if v not in env and isinstance(v, Constant):
                env[v] = _constant(module, v, b)
        ctx.node_index = k
        fn_lower, _ = lower.lookup(node.op)
        outs = fn_lower(ctx, node, [env[v] for v in node.inputs])
        for var, arr in zip(node.outputs, outs):
            arr.shape = ctx.static_shape(var, arr.shape)
            env[var] = arr

    # Results that are views/inputs/constants are copied into their own buffers first.
    ctx.node_index = len(order)
    results = []
    for k, out in enumerate(fgraph.outputs):
        if out not in env and isinstance(out, Constant):
            env[out] = _constant(module, out, b)
        arr = env[out]
        if k in plan.output_copy:
            dst = ctx.alloc_in(plan.output_copy[k], out.dtype, arr.shape)
            copy(ctx, arr, dst)
            arr = dst
        results.append(arr)

    # Updates: every new value is computed; now write them into the shared storage.
    for inp, outk in updates:
        src, dst = results[outk], env[fgraph.inputs[inp]]
        for d, (x, y) in enumerate(zip(src.shape, dst.shape)):
            ctx.check_equal(x, y, E_UPDATE_SHAPE, d, inp)
        copy(ctx, src, dst)

    layout, off = [], 0
    for k, (out, arr) in enumerate(zip(fgraph.outputs, results)):
        layout.append((off, out.ndim, out.dtype))
        b.store(b.ptrtoint(arr.ptr, U.I64), b.gep(outs_p, [U.i64(off)], source_etype=U.I64))
        for d, dim in enumerate(arr.shape):
            b.store(U.as_value(b, dim), b.gep(outs_p, [U.i64(off + 1 + d)], source_etype=U.I64))
        off += 1 + out.ndim
    b.ret(ir.Constant(U.I32, 0))
    return ModuleSpec(str(module), plan.n_slots, offsets, layout, order)


def _constant(module, v, b):
    data = np.ascontiguousarray(v.data)
    raw = bytearray(data.tobytes()) or bytearray(b"\0")
    ty = ir.ArrayType(U.I8, len(raw))
    g = ir.GlobalVariable(module, ty, name=f"const{len(module.globals)}")
    g.global_constant = True
    g.linkage = "internal"
    g.align = 64
    g.initializer = ir.Constant(ty, raw)
    return Array(v.dtype, g, list(data.shape), b=b)
