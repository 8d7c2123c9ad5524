"""Shape, Shape_i, MakeVector, ARange, and Reshape/Flatten (views of contiguous inputs)."""
from llvmlite import ir

from symcnn.tensor.basic import ARange, Flatten, MakeVector, Reshape, Shape, Shape_i

from .. import irutil as U
from ..lower import E_RESHAPE, E_VALUE, Array, copy, lower


@lower.register(Shape)
def lower_shape(ctx, node, ins):
    x, = ins
    out = ctx.alloc(node.outputs[0], [x.ndim])
    for d, dim in enumerate(x.shape):
        ctx.b.store(U.as_value(ctx.b, dim), out.flat_addr(ctx.b, d))
    return [out]


@lower.register(Shape_i)
def lower_shape_i(ctx, node, ins):
    out = ctx.alloc(node.outputs[0], [])
    ctx.b.store(U.as_value(ctx.b, ins[0].shape[node.op.i]), out.ptr)
    return [out]


@lower.register(MakeVector)
def lower_make_vector(ctx, node, ins):
    b = ctx.b
    out = ctx.alloc(node.outputs[0], [len(ins)])
    for k, (a, v) in enumerate(zip(ins, node.inputs)):
        b.store(U.cast_value(b, ctx.load_scalar(a), v.dtype, out.dtype), out.flat_addr(b, k))
    return [out]


def _arange_message(code, node, where, vals):
    if code != E_VALUE:
        return None
    return ValueError, (f"{where}: arange step must not be zero" if vals[1] == 0 else
                        f"{where}: arange: the length of the range is not a number that fits in int64")


@lower.register(ARange, error_message=_arange_message)
def lower_arange(ctx, node, ins):
    b = ctx.b
    dt = node.outputs[0].dtype
    cdt = "float64" if U.is_float(dt) or any(U.is_float(v.dtype) for v in node.inputs) else "int64"
    start, stop, step = (U.cast_value(b, ctx.load_scalar(a), v.dtype, cdt) for a, v in zip(ins, node.inputs))
    if cdt == "int64":
        ctx.fail_if(b.icmp_signed("==", step, U.i64(0)), E_VALUE, step, 0)
        # ceil((stop - start) / step) without wrapping: the span of extreme bounds overflows int64
        # (numpy raises then too), and INT64_MIN / -1 traps (SIGFPE) for a length of 2**63
        span, ovf = U.checked(b, "sub", stop, start)
        trap = b.and_(b.icmp_signed("==", span, U.i64(-2 ** 63)), b.icmp_signed("==", step, U.i64(-1)))
        ctx.fail_if(b.or_(U.flag_value(b, ovf), trap), E_VALUE, step, 1)
        q, r = b.sdiv(span, step), b.srem(span, step)
        up = b.and_(b.icmp_signed("!=", r, U.i64(0)),
                    b.icmp_signed("==", b.icmp_signed("<", r, U.i64(0)), b.icmp_signed("<", step, U.i64(0))))
        n = b.add(q, b.zext(up, U.I64))
    else:
        ctx.fail_if(b.fcmp_ordered("==", step, U.const("float64", 0.0)), E_VALUE, U.i64(0), 0)
        q = b.call(U.intrinsic(ctx.module, "ceil", "float64"), [b.fdiv(b.fsub(stop, start), step)])
        # a length that is NaN or beyond int64 (+-inf, 1e19) has no int64 value: fptosi would give
        # poison (an empty range in practice); numpy raises, and so does this
        fits = b.and_(b.fcmp_ordered("<", q, ir.Constant(U.F64, 2.0 ** 63)),
                      b.fcmp_ordered(">=", q, ir.Constant(U.F64, -2.0 ** 63)))
        ctx.fail_if(b.not_(fits), E_VALUE, U.i64(0), 1)
        n = b.fptosi(q, U.I64)
    n = U.smax(b, n, 0)
    out = ctx.alloc(node.outputs[0], [n])
    if cdt == "int64" or not U.is_float(dt):
        with U.for_range(b, out.shape[0]) as i:
            if cdt == "int64":
                v = b.add(start, b.mul(i, step))
            else:
                v = b.fadd(start, b.fmul(b.sitofp(i, U.F64), step))
            b.store(U.cast_value(b, v, cdt, dt), out.flat_addr(b, i))
        return [out]
    # numpy's algorithm, so the values match it bit for bit: out[0] = start and
    # out[1] = start + step rounded to the dtype, then out[i] = out[0] + i * (out[1] - out[0])
    # computed in the dtype.
    first = U.cast_value(b, start, cdt, dt)
    second = U.cast_value(b, b.fadd(start, step), cdt, dt)
    delta = b.fsub(second, first)
    with U.for_range(b, out.shape[0]) as i:
        v = b.fadd(first, b.fmul(b.sitofp(i, first.type), delta))
        v = b.select(b.icmp_signed("==", i, U.i64(1)), second, v)
        v = b.select(b.icmp_signed("==", i, U.i64(0)), first, v)
        b.store(v, out.flat_addr(b, i))
    return [out]


def _view_if_contiguous(node, contig):
    return contig[0], True


@lower.register(Reshape, view=_view_if_contiguous)
def lower_reshape(ctx, node, ins):
    b = ctx.b
    x, shp = ins
    ndim = node.op.ndim
    target = [U.cast_value(b, b.load(shp.flat_addr(b, k), typ=shp.lltype), shp.dtype, "int64")
              for k in range(ndim)]
    size = U.as_value(b, x.size(b))
    # numpy's rules: a negative entry (-1, or any other) is the unknown dim; at most one, and
    # not next to a zero dim (its size would be ambiguous)
    unknown = [b.icmp_signed("<", t, U.i64(0)) for t in target]
    # products of the requested dims are checked: (2**62 + 1) * 4 wraps to 4 and would pass
    known, ovf = U.checked_product(b, [b.select(u, U.i64(1), t) for u, t in zip(unknown, target)])
    ctx.fail_if(U.flag_value(b, ovf), E_RESHAPE, size, -1)
    known = U.as_value(b, known)
    n_unknown = U.i64(0)
    for u in unknown:
        n_unknown = b.add(n_unknown, b.zext(u, U.I64))
    ambiguous = b.or_(b.icmp_signed(">", n_unknown, U.i64(1)),
                      b.and_(b.icmp_signed("==", n_unknown, U.i64(1)), b.icmp_signed("==", known, U.i64(0))))
    ctx.fail_if(ambiguous, E_RESHAPE, size, -1)
    safe = b.select(b.icmp_signed("==", known, U.i64(0)), U.i64(1), known)
    fill = b.sdiv(size, safe)
    dims = [b.select(u, fill, t) for u, t in zip(unknown, target)]
    total, ovf = U.checked_product(b, dims)
    total = U.as_value(b, total)
    ctx.fail_if(b.or_(U.flag_value(b, ovf), b.icmp_signed("!=", total, size)), E_RESHAPE, size, total)
    return [_reshaped(ctx, node, x, dims)]


def _reshaped(ctx, node, x, dims):
    var = node.outputs[0]
    dims = ctx.static_shape(var, dims)
    if x.contiguous:
        return Array(x.dtype, x.ptr, dims, b=ctx.b)
    dense = ctx.scratch(x.dtype, x.shape)
    copy(ctx, x, dense)
    out = ctx.alloc(var, dims)
    copy(ctx, Array(x.dtype, dense.ptr, dims, b=ctx.b), out)
    return out


@lower.register(Flatten, view=_view_if_contiguous)
def lower_flatten(ctx, node, ins):
    x, = ins
    k = node.op.outdim - 1
    dims = list(x.shape[:k]) + [U.product(ctx.b, x.shape[k:])]
    return [_reshaped(ctx, node, x, dims)]
