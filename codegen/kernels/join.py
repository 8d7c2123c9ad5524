"""Join (copies of each input into its stretch of the output) and Alloc (a broadcast fill)."""
from symcnn.tensor.join import Alloc, Join

from .. import irutil as U
from ..lower import E_SHAPE, E_VALUE, Array, copy, lower


@lower.register(Join)
def lower_join(ctx, node, ins):
    b = ctx.b
    axis = node.op.axis
    first = ins[0]
    for x in ins[1:]:
        for d in range(first.ndim):
            if d != axis:
                ctx.check_equal(first.shape[d], x.shape[d], E_SHAPE, d)
    total = 0
    for x in ins:
        total = U.add(b, total, x.shape[axis])
    out_shape = list(first.shape)
    out_shape[axis] = total
    out = ctx.alloc(node.outputs[0], out_shape)
    start = 0
    for x in ins:
        dst = Array(out.dtype, out.view_addr(b, U.mul(b, start, out.strides[axis])), x.shape, out.strides)
        dst.bounds = out.bounds
        copy(ctx, x, dst)
        start = U.add(b, start, x.shape[axis])
    return [out]


@lower.register(Alloc)
def lower_alloc(ctx, node, ins):
    b = ctx.b
    value, dims = ins[0], [ctx.load_index(a) for a in ins[1:]]
    for k, d in enumerate(dims):
        ctx.fail_if(b.icmp_signed("<", d, U.i64(0)), E_VALUE, d)
        st = node.outputs[0].type.shape[k]
        if st is not None:
            dims[k] = st  # (checked against the type by ctx.alloc)
    out = ctx.alloc(node.outputs[0], dims)
    lead = out.ndim - value.ndim
    strides = [0] * lead
    for d in range(value.ndim):
        vd, od = value.shape[d], out.shape[lead + d]
        if node.inputs[0].type.shape[d] == 1:
            strides.append(0)
            continue
        ctx.check_equal(vd, od, E_SHAPE, d)
        strides.append(value.strides[d])
    src = Array(value.dtype, value.ptr, out.shape, strides)
    src.bounds = value.bounds
    copy(ctx, src, out)
    return [out]
