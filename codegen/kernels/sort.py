"""SortOp and ArgSortOp: a stable insertion sort of every row along the axis.

Insertion sort is quadratic in the row length; it is here for correctness (and the short rows of
random permutations), not speed. Keys compare as numpy sorts them: NaNs after every number, and
an element moves before another only if its key is strictly smaller, which keeps ties in their
input order (numpy's kind='stable')."""
from llvmlite import ir

from symcnn.tensor.sort import ArgSortOp, SortOp

from .. import irutil as U
from ..lower import Array, lower


def _less(b, x, y, dtype):
    """x sorts strictly before y."""
    if U.is_float(dtype):
        # x < y, or y is NaN and x is not
        return b.or_(b.fcmp_ordered("<", x, y),
                     b.and_(b.fcmp_unordered("uno", y, y), b.fcmp_ordered("ord", x, x)))
    return (b.icmp_unsigned if U.is_unsigned(dtype) else b.icmp_signed)("<", x, y)


def _sort_rows(ctx, node, x, keep_index):
    b = ctx.b
    axis = node.op.axis
    out = ctx.alloc(node.outputs[0], x.shape)
    kept = [d for d in range(x.ndim) if d != axis]
    n = x.shape[axis]
    xs, os_ = x.strides[axis], out.strides[axis]
    outer_x = Array(x.dtype, x.ptr, [x.shape[d] for d in kept], [x.strides[d] for d in kept])
    outer_o = Array(out.dtype, out.ptr, [out.shape[d] for d in kept], [out.strides[d] for d in kept])
    j = ctx.local(U.I64, U.i64(0))
    with U.loop_nest(b, outer_x.shape, name="row") as ridx:
        xbase = outer_x.offset(b, ridx)
        obase = outer_o.offset(b, ridx)

        def x_at(k):
            return b.load(x.flat_addr(b, U.add(b, xbase, U.mul(b, k, xs))), typ=x.lltype)

        def o_addr(k):
            return out.flat_addr(b, U.add(b, obase, U.mul(b, k, os_)))

        def key(item):
            return x_at(item) if keep_index else item

        with U.for_range(b, n, name="ins") as i:
            cur = i if keep_index else x_at(i)
            b.store(i, j)
            head, body, done = U.loop_blocks(b, "shift")
            jv = b.load(j, typ=U.I64)
            more = b.icmp_signed(">", jv, U.i64(0))
            check = b.append_basic_block("shift.check")
            b.cbranch(more, check, done)
            b.position_at_end(check)
            prev = b.load(o_addr(b.sub(jv, U.i64(1))), typ=out.lltype)
            b.cbranch(_less(b, key(cur), key(prev), x.dtype), body, done)
            b.position_at_end(body)
            b.store(prev, o_addr(jv))
            b.store(b.sub(jv, U.i64(1)), j)
            b.branch(head)
            b.position_at_end(done)
            b.store(cur, o_addr(b.load(j, typ=U.I64)))
    return out


@lower.register(SortOp)
def lower_sort(ctx, node, ins):
    x, = ins
    return [_sort_rows(ctx, node, x, keep_index=False)]


@lower.register(ArgSortOp)
def lower_argsort(ctx, node, ins):
    x, = ins
    return [_sort_rows(ctx, node, x, keep_index=True)]
