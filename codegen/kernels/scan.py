"""Native lowering of Scan: the loop runs inside the function's one entry point.

The inner graph is copied, rewritten (the same phases as any function graph) and given its own
memory plan; that plan's buffers become slots of the outer function (fresh slot numbers), so
they live as long as the compiled function, are grown on the first step and reused by every
later step and call. Per step, the inner inputs are views into outer buffers (a sequence's row,
a state buffer's row at t + tap) or the carry buffers; the inner nodes are lowered with the
ordinary registry into the loop body; their results go to the state buffer's row L + t, the
carry buffer, or the per-step output's row: an Elemwise, Dot, FusedDot or Join result is
computed there directly (the row is its output buffer, through ctx.destination), others are
copied. The state and per-step output buffers have one row per step and are allocated once,
before (states) or on the first step of (per-step outputs, whose row shape is known only inside
the loop) the loop. The right operands of the step's products that are non-sequences are packed
once before the loop (dot.prepack_invariant_operands). No Python runs per step.
"""
from llvmlite import ir

from symcnn.graph.basic import Constant
from symcnn.graph.fg import FunctionGraph
from symcnn.scan_module.scan_op import Scan
from symcnn.tensor.blas import FusedDot
from symcnn.tensor.elemwise import Elemwise
from symcnn.tensor.join import Join
from symcnn.tensor.math import Dot

from .. import irutil as U
from ..lower import E_SHAPE, E_VALUE, Array, Context, copy, lower
from ..plan import Plan
from .dot import prepack_invariant_operands


# ops whose lowering asks ctx.alloc once for its output, with the output's shape, and returns that Array
_WRITES_ONCE = (Elemwise, Dot, FusedDot, Join)


def _row(arr, b, r):
    """Row r of arr (its first dimension) as an Array."""
    ptr = arr.view_addr(b, U.mul(b, r, arr.strides[0]))
    if arr.contiguous:
        return Array(arr.dtype, ptr, arr.shape[1:], b=b, bounds=arr.bounds)
    return Array(arr.dtype, ptr, arr.shape[1:], strides=arr.strides[1:], b=b, bounds=arr.bounds)


def _rows(arr, b, count):
    """The first `count` rows of arr."""
    if arr.contiguous:
        return Array(arr.dtype, arr.ptr, [count] + arr.shape[1:], b=b, bounds=arr.bounds)
    return Array(arr.dtype, arr.ptr, [count] + arr.shape[1:], strides=arr.strides, b=b, bounds=arr.bounds)


def _contiguous(ctx, arr):
    if arr.contiguous:
        return arr
    dst = ctx.scratch(arr.dtype, arr.shape)
    copy(ctx, arr, dst)
    return dst


def inner_plan(ctx, op):
    """The rewritten inner graph and its plan, with slots numbered among the outer function's."""
    from symcnn.rewrite import rewrite_graph
    fg = FunctionGraph(op.inner_inputs, op.inner_outputs)
    rewrite_graph(fg)
    plan = Plan(fg, lower, ())
    mapping = {}

    def outer_slot(s):
        if s not in mapping:
            mapping[s] = ctx.plan.new_slot()
        return mapping[s]

    plan.slot = {v: outer_slot(s) for v, s in plan.slot.items()}
    plan.output_copy = {k: outer_slot(s) for k, s in plan.output_copy.items()}
    plan.new_slot = ctx.plan.new_slot
    return fg, plan


def lower_inner(sub, fg, plan, env):
    """Emit the inner graph's nodes at the builder's position; env maps inner inputs to Arrays.
    Returns the Arrays of the inner outputs, each in a buffer of its own."""
    from ..build import constant_array
    b = sub.b
    for node in plan.order:
        for v in node.inputs:
            if v not in env and isinstance(v, Constant):
                env[v] = constant_array(sub.module, v, b)
        fn_lower, _ = lower.lookup(node.op)
        outs = fn_lower(sub, node, [env[v] for v in node.inputs])
        for var, arr in zip(node.outputs, outs):
            arr.shape = sub.static_shape(var, arr.shape)
            env[var] = arr
    results = []
    for k, out in enumerate(fg.outputs):
        if out not in env and isinstance(out, Constant):
            env[out] = constant_array(sub.module, out, b)
        arr = env[out]
        if k in plan.output_copy:
            dst = sub.alloc_in(plan.output_copy[k], out.dtype, arr.shape)
            copy(sub, arr, dst)
            arr = dst
        results.append(arr)
    return results


@lower.register(Scan)
def lower_scan(ctx, node, ins):
    op, b = node.op, ctx.b
    info = op.info
    fg, plan = inner_plan(ctx, op)
    sub = Context(ctx.module, b, plan, ctx.slots_ptr, ctx.err_ptr)
    sub.node_index = ctx.node_index
    sub.static_sizes = ctx.static_sizes
    # the error-reporting state a bounds checker or profiler keeps lives on the outer context
    n = ctx.load_index(ins[0])
    ctx.fail_if(b.icmp_signed("<", n, U.i64(1)), E_VALUE, n)

    seqs = [_contiguous(ctx, s) for s in info.outer_seqs(ins)]
    for s in seqs:
        ctx.fail_if(b.icmp_signed("<", U.as_value(b, s.shape[0]), n), E_VALUE, s.shape[0], n)
    nonseqs = [_contiguous(ctx, a) for a in info.outer_nonseqs(ins)]
    # the right operands of the step's products that are non-sequences are packed once, here
    inner_nonseqs = fg.inputs[len(fg.inputs) - len(nonseqs):] if nonseqs else []
    sub.packed_operands = prepack_invariant_operands(ctx, plan.order, dict(zip(inner_nonseqs, nonseqs)))

    state_outs = node.outputs[:info.n_states]
    carry_outs = node.outputs[info.n_states:info.n_states + info.n_carries]
    nit_outs = node.outputs[info.n_states + info.n_carries:]
    states = []
    for i, (init, var) in enumerate(zip(info.outer_states(ins), state_outs)):
        L = info.lag(i)
        ctx.fail_if(b.icmp_signed("<", U.as_value(b, init.shape[0]), U.i64(L)), E_VALUE, init.shape[0], L)
        buf = ctx.alloc(var, [U.add(b, n, L)] + init.shape[1:])
        copy(ctx, _rows(init, b, L), _rows(buf, b, L))
        states.append(buf)
    carries = []
    for init, var in zip(info.outer_carries(ins), carry_outs):
        buf = ctx.alloc(var, init.shape)
        copy(ctx, init, buf)
        carries.append(buf)
    nit_dims = [[d if isinstance(d, int) else ctx.local(U.I64, U.i64(0)) for d in var.type.shape[1:]]
                for var in nit_outs]

    steps_p = ctx.local(U.I64, n)
    t_p = ctx.local(U.I64, U.i64(0))
    head, body, done = U.loop_blocks(b, "scan")
    t = b.load(t_p, typ=U.I64)
    b.cbranch(b.icmp_signed("<", t, n), body, done)
    b.position_at_end(body)
    back = b.sub(b.sub(n, U.i64(1)), t)  # n - 1 - t

    env = {}
    inner_ins = fg.inputs
    k = 0
    for s, rev in zip(seqs, info.seq_reverse):
        env[inner_ins[k]] = _row(s, b, back if rev else t)
        k += 1
    for i, taps in enumerate(info.state_taps):
        L = info.lag(i)
        for tap in taps:
            env[inner_ins[k]] = _row(states[i], b, b.add(t, U.i64(L + tap)))
            k += 1
    for c in carries:
        env[inner_ins[k]] = c
        k += 1
    for a in nonseqs:
        env[inner_ins[k]] = a
        k += 1
    for v in inner_ins:
        arr = env[v]
        arr.shape = sub.static_shape(v, arr.shape)
    first = b.icmp_signed("==", t, U.i64(0))

    def state_row(i, shape):
        dst = _row(states[i], b, b.add(t, U.i64(info.lag(i))))
        for x, y in zip(shape, dst.shape):
            ctx.check_equal(x, y, E_SHAPE)
        return dst

    def nit_row(m, shape):
        dims = []
        for d, saved in zip(shape, nit_dims[m]):
            if isinstance(saved, int):
                dims.append(saved)
                continue
            old = b.select(first, U.as_value(b, d), b.load(saved, typ=U.I64))
            ctx.check_equal(U.as_value(b, d), old, E_SHAPE)
            b.store(old, saved)
            dims.append(old)
        buf = ctx.alloc(nit_outs[m], [n] + dims)
        return _row(buf, b, back if info.nit_reverse[m] else t)

    # A result computed by the step into a buffer of its own is computed straight into its row
    # of the state or per-step output buffer (no copy): that row is read by no tap of this step.
    # (Only by the kernels that ask once for their output's buffer, shaped as the result: a
    # nested Scan, for one, asks for whole buffers, inside and after its loop.)
    # placed[k]: the row, once the node computing output k asked for its buffer.
    placed = {}
    a = info.n_states + info.n_carries
    rows = [(k, lambda shape, i=k: state_row(i, shape)) for k in range(info.n_states)]
    rows += [(a + m, lambda shape, m=m: nit_row(m, shape)) for m in range(info.n_nitsot)]
    for k, row in rows:
        var = fg.outputs[k]
        if var.owner is not None and isinstance(var.owner.op, _WRITES_ONCE) and fg.outputs.count(var) == 1 \
                and k not in plan.output_copy and plan.base.get(var) is var:
            sub.destination[var] = lambda shape, k=k, row=row: placed.setdefault(k, row(shape))
    results = lower_inner(sub, fg, plan, env)

    for i, arr in enumerate(results[:info.n_states]):
        if placed.get(i) is not arr:
            copy(ctx, arr, placed[i] if i in placed else state_row(i, arr.shape))
    a = info.n_states
    for arr, dst in zip(results[a:a + info.n_carries], carries):
        for x, y in zip(arr.shape, dst.shape):
            ctx.check_equal(x, y, E_SHAPE)
        copy(ctx, arr, dst)
    a += info.n_carries
    for m, arr in enumerate(results[a:a + info.n_nitsot]):
        if placed.get(a + m) is not arr:
            copy(ctx, arr, placed[a + m] if a + m in placed else nit_row(m, arr.shape))

    nxt = b.add(t, U.i64(1))
    b.store(nxt, t_p)
    if info.as_while:
        cond = results[-1]
        stop = b.icmp_unsigned("!=", ctx.load_scalar(cond), ir.Constant(cond.lltype, 0))
        with b.if_then(stop):
            b.store(nxt, steps_p)
            b.store(n, t_p)
    b.branch(head)
    b.position_at_end(done)

    steps = b.load(steps_p, typ=U.I64)
    outs = []
    for i, (buf, var) in enumerate(zip(states, state_outs)):
        outs.append(_rows(buf, b, b.add(steps, U.i64(info.lag(i)))))
    outs += carries
    for m, var in enumerate(nit_outs):
        dims = [d if isinstance(d, int) else b.load(d, typ=U.I64) for d in nit_dims[m]]
        buf = ctx.alloc(var, [n] + dims)
        if info.nit_reverse[m] and info.as_while:  # the last `steps` rows
            buf = Array(buf.dtype, buf.view_addr(b, U.mul(b, b.sub(n, steps), buf.strides[0])),
                        [steps] + dims, b=b, bounds=buf.bounds)
        else:
            buf = _rows(buf, b, steps)
        outs.append(buf)
    return outs
