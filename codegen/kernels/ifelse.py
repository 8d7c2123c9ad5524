"""IfElse: both branches' inner graphs lowered under one conditional branch, so a call runs
only the kernels of the branch its condition selects.

Each inner graph is rewritten like a function's graph (stabilize, fuse, ...) and lowered into
the same LLVM function, inside the then/else block. Its intermediate values get buffers of
their own; each result is copied into the IfElse output's buffer, and its run-time shape is
kept in stack slots read after the two paths join.
"""
from llvmlite import ir

from symcnn.ifelse import IfElse

from .. import irutil as U
from ..lower import copy, lower, Array
from .inner_graph import lower_inner, rewritten


def _lower_branch(ctx, fg, free, node, out_slots, dim_slots):
    b = ctx.b
    env = lower_inner(ctx, fg, dict(zip(fg.inputs, free)))
    for k, (res, var) in enumerate(zip(fg.outputs, node.outputs)):
        arr = env[res]
        dst = ctx.alloc_in(out_slots[k], var.dtype, ctx.static_shape(var, arr.shape))
        copy(ctx, arr, dst)
        for d, dim in enumerate(dst.shape):
            b.store(U.as_value(b, dim), dim_slots[k][d])


@lower.register(IfElse)
def lower_ifelse(ctx, node, ins):
    b = ctx.b
    op = node.op
    cond_arr, free = ins[0], ins[1:]
    c = ctx.load_scalar(cond_arr)
    cond = b.icmp_unsigned("!=", c, ir.Constant(c.type, 0)) if isinstance(c.type, ir.IntType) else \
        b.fcmp_unordered("!=", c, ir.Constant(c.type, 0.0))
    out_slots = [ctx.plan.slot[v] for v in node.outputs]
    dim_slots = [[ctx.local(U.I64) for _ in range(v.ndim)] for v in node.outputs]
    then_fg, else_fg = rewritten(op.then_fg), rewritten(op.else_fg)
    # a branch's buffers are taken only when it runs, not at the start of every call
    hoisted, ctx.static_sizes = ctx.static_sizes, None
    with b.if_else(cond) as (then, otherwise):
        with then:
            _lower_branch(ctx, then_fg, free, node, out_slots, dim_slots)
        with otherwise:
            _lower_branch(ctx, else_fg, free, node, out_slots, dim_slots)
    ctx.static_sizes = hoisted
    results = []
    for var, slot, dims in zip(node.outputs, out_slots, dim_slots):
        ptr = b.load(b.gep(ctx.slots_ptr, [U.i64(2 * slot)], source_etype=U.I64), typ=U.PTR)
        shape = [st if st is not None else b.load(d, typ=U.I64) for st, d in zip(var.type.shape, dims)]
        results.append(Array(var.dtype, ptr, shape, b=b))
    return results
