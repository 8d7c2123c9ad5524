"""IndexMap: the inner graph's kernels in a loop over i, each row copied into the output."""
from symcnn.index_map import IndexMap

from .. import irutil as U
from ..lower import E_SHAPE, Array, copy, lower
from .inner_graph import lower_inner, rewritten


@lower.register(IndexMap)
def lower_index_map(ctx, node, ins):
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
    fg = rewritten(op.fg)
    index = ctx.scratch("int64", [])
    with U.for_range(b, outs[0].shape[0]) as i:
        b.store(i, index.ptr)
        env = lower_inner(ctx, fg, dict(zip(fg.inputs, [index] + list(free))))
        for res_var, out in zip(fg.outputs, outs):
            row = env[res_var]
            for d, (x, y) in enumerate(zip(row.shape, out.shape[1:])):
                ctx.check_equal(x, y, E_SHAPE, d)
            dst = Array(out.dtype, out.view_addr(b, U.mul(b, i, out.strides[0])), out.shape[1:], out.strides[1:])
            dst.bounds = out.bounds
            copy(ctx, row, dst)
    return outs
