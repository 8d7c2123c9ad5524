"""IndexMap: the inner graph's kernels in a loop over i, each row copied into the output."""
from symcnn.graph.basic import Constant
from symcnn.index_map import IndexMap

from .. import irutil as U
from ..lower import E_SHAPE, Array, copy, lower
from .ifelse import _rewritten


@lower.register(IndexMap)
def lower_index_map(ctx, node, ins):
    from ..build import _constant
    b = ctx.b
    op = node.op
    n = ctx.load_index(ins[0])
    n_dims = sum(op.row_ndims)
    dims = [ctx.load_index(a) for a in ins[1:1 + n_dims]]
    free = ins[1 + n_dims:]
    outs, k = [], 0
    for var, nd in zip(node.outputs, op.row_ndims):
        row = dims[k:k + nd]
        k += nd
        outs.append(ctx.alloc(var, [n] + row))
    fg = _rewritten(op.fg)
    index = ctx.scratch("int64", [])
    with U.for_range(b, outs[0].shape[0]) as i:
        b.store(i, index.ptr)
        env = dict(zip(fg.inputs, [index] + list(free)))
        for inner in fg.toposort():
            for v in inner.inputs:
                if v not in env and isinstance(v, Constant):
                    env[v] = _constant(ctx.module, v, b)
            for v in inner.outputs:
                ctx.plan.slot[v] = ctx.plan.new_slot()
            fn_lower, _ = lower.lookup(inner.op)
            results = fn_lower(ctx, inner, [env[v] for v in inner.inputs])
            for var, arr in zip(inner.outputs, results):
                arr.shape = ctx.static_shape(var, arr.shape)
                env[var] = arr
        for res_var, out in zip(fg.outputs, outs):
            if res_var not in env and isinstance(res_var, Constant):
                env[res_var] = _constant(ctx.module, res_var, b)
            row = env[res_var]
            for d, (x, y) in enumerate(zip(row.shape, out.shape[1:])):
                ctx.check_equal(x, y, E_SHAPE, d)
            dst = Array(out.dtype, out.view_addr(b, U.mul(b, i, out.strides[0])), out.shape[1:], out.strides[1:])
            dst.bounds = out.bounds
            copy(ctx, row, dst)
    return outs
