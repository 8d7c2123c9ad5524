"""SumOfElemwise: a float sum whose elementwise input is computed as the sum reads it.

Where the summed axes end with the last one and every input is either contiguous along the last
summed axes (the rows) or constant along them (a per-channel mean, a scalar), the sum takes
reduce.py's vector walk: for each output element, on the threads, each row is evaluated CHUNK
elements at a time into a buffer on the stack (a loop LLVM vectorises, as an Elemwise's), which
row_sum.RowSum adds. CHUNK is a multiple of RowSum's group on every target, so a row's chunks
add in the order of the whole row: the bits are those of the Elemwise and the Sum unfused.
Otherwise (a transposed input, an integer result, the summed axes elsewhere, bounds checks) the
elementwise result goes into a scratch buffer, which the Sum's lowering then sums.
"""
from llvmlite import ir

from symcnn.tensor.sum_of_elemwise import SumOfElemwise

from .. import irutil as U
from ..lower import bounds_checker, lower
from ..parallel import threads
from . import broadcast_loops
from .elemwise import broadcast_dims, broadcast_view, emit_scalar
from .reduce import reduce_sum, vector_rows
from .row_sum import CHAINS

# 4 KB of float32: stays in L1 beside the rows it is computed from
CHUNK = 1024


def _row_axes(axis, variables, arrays):
    """The last summed axes along which every input is alike (contiguous, or broadcast along all
    of them), ending with the last axis; None where some input is neither (a transposed view)."""
    ndim = variables[0].ndim
    if ndim - 1 not in axis:
        return None
    spread = [[v.type.shape[d] == 1 for d in range(ndim)] for v in variables]
    inner = [ndim - 1]
    while inner[0] - 1 in axis and all(s[inner[0] - 1] == s[ndim - 1] for s in spread):
        inner.insert(0, inner[0] - 1)
    if not all(s[ndim - 1] or a.contiguous for s, a in zip(spread, arrays)):
        return None
    return inner


@lower.register(SumOfElemwise)
def lower_sum_of_elemwise(ctx, node, ins):
    b = ctx.b
    op = node.op
    edt = op.elemwise_type(node.inputs).dtype
    ndim = node.inputs[0].ndim
    shape = broadcast_dims(ctx, node.inputs, ins, ndim)
    views = [broadcast_view(a, v, shape) for a, v in zip(ins, node.inputs)]
    dtypes = [v.dtype for v in node.inputs]

    def element(bctx, xs):
        return emit_scalar(bctx, op.program, xs, dtypes, edt)

    inner = _row_axes(op.axis, node.inputs, ins)
    if inner is None or edt not in ("float32", "float64") or not U.is_float(node.outputs[0].dtype) \
            or bounds_checker() is not None:
        tmp = ctx.scratch(edt, shape)
        merged = None if bounds_checker() is not None else broadcast_loops.merged_axes(tmp, ins, views, node.inputs)
        if merged is not None:
            broadcast_loops.run(ctx, "symcnn_sum_prologue", tmp, views, merged, element, threads())
        else:
            with U.loop_nest(b, tmp.shape) as idx:
                tmp.store(b, idx, element(ctx, [v.load(b, idx) for v in views]))
        return [reduce_sum(ctx, node, tmp)]

    constant = [v.type.shape[ndim - 1] == 1 for v in node.inputs]   # one value per row
    et = U.ll_type(edt)
    assert CHUNK % (CHAINS * U.lanes(edt)) == 0

    def add_row(bctx, s, ptrs, bases, n):
        bb = bctx.b
        buf = bb.gep(bctx.local(ir.ArrayType(et, CHUNK)), [U.i64(0), U.i64(0)], inbounds=True)
        fixed = [bb.load(U.gep(bb, p, at, v.lltype), typ=v.lltype) if one else None
                 for p, at, v, one in zip(ptrs, bases, views, constant)]
        with U.for_range(bb, U.floordiv(bb, U.add(bb, n, CHUNK - 1), CHUNK), name="sum_chunk") as c:
            c0 = bb.mul(c, U.i64(CHUNK))
            size = U.smin(bb, bb.sub(U.as_value(bb, n), c0), CHUNK)
            with U.for_range(bb, size, name="sum_elem") as j:
                at = bb.add(c0, j)
                xs = [x if x is not None else bb.load(U.gep(bb, p, U.add(bb, base, at), v.lltype), typ=v.lltype)
                      for x, p, base, v in zip(fixed, ptrs, bases, views)]
                bb.store(element(bctx, xs), U.gep(bb, buf, j, et))
            s.add_row(buf, size)

    return [vector_rows(ctx, node, views, inner, edt, add_row)]
