"""Elemwise (one loop over the broadcast shape, any ScalarOp) and DimShuffle (a view)."""
from llvmlite import ir

import symcnn.scalar as ts
from symcnn.tensor.composite import Composite
from symcnn.tensor.elemwise import DimShuffle, Elemwise

from .. import irutil as U
from .. import library
from .. import vmath
from ..lower import E_SHAPE, Array, bounds_checker, lower
from ..options import options
from ..parallel import run_parallel, threads
from . import broadcast_loops

SCALAR = {}


def scalar_lowering(*classes):
    """Register fn(ctx, op, args, dtype) -> value, computing one element in `dtype`."""
    def deco(fn):
        for c in classes:
            SCALAR[c] = fn
        return fn
    return deco


def emit_scalar(ctx, sop, values, in_dtypes, out_dtype):
    """One element of ScalarOp `sop` from input values of the given dtypes, as out_dtype."""
    b = ctx.b
    cdt = sop.compute_dtype(*in_dtypes)
    if cdt is not None:
        values = [U.cast_value(b, v, d, cdt) for v, d in zip(values, in_dtypes)]
        in_dtypes = [cdt] * len(values)
    for cls in type(sop).__mro__:
        if cls in SCALAR:
            res, res_dtype = SCALAR[cls](ctx, sop, values, in_dtypes, out_dtype)
            return U.cast_value(b, res, res_dtype, out_dtype)
    raise NotImplementedError(f"no native lowering for scalar op {sop}")


def broadcast_shape(ctx, node, ins):
    return broadcast_dims(ctx, node.inputs, ins, node.outputs[0].ndim)


def broadcast_dims(ctx, variables, arrays, ndim):
    """The run-time shape (ndim dims) the arrays of `variables` broadcast to: their non-broadcast
    dims must agree (checked at run time where not static)."""
    shape = []
    for d in range(ndim):
        dims = [a.shape[d] for a, v in zip(arrays, variables) if v.type.shape[d] != 1]
        if not dims:
            shape.append(1)
            continue
        static = [x for x in dims if isinstance(x, int)]
        ref = static[0] if static else dims[0]
        for other in dims:
            if other is not ref:
                ctx.check_equal(ref, other, E_SHAPE)
        shape.append(ref)
    return shape


def broadcast_view(arr, var, shape):
    if all(not (var.type.shape[d] == 1 and shape[d] != 1) for d in range(len(shape))) and arr.contiguous:
        return arr
    strides = [0 if var.type.shape[d] == 1 else arr.strides[d] for d in range(len(shape))]
    return Array(arr.dtype, arr.ptr, shape, strides)


@lower.register(Elemwise)
def lower_elemwise(ctx, node, ins):
    b = ctx.b
    out_var = node.outputs[0]
    shape = broadcast_shape(ctx, node, ins)
    out = ctx.alloc(out_var, shape)
    views = [broadcast_view(a, v, out.shape) for a, v in zip(ins, node.inputs)]
    dtypes = [v.dtype for v in node.inputs]
    sop = node.op.scalar_op
    dead = ctx.plan.overwrites.get(out_var) if out_var not in ctx.destination else None
    if dead is not None and out.contiguous:
        # The output reuses this input's buffer: read it through the output's pointer. The two
        # pointers are equal at run time, which LLVM cannot see: its run-time overlap check would
        # send every call to the scalar loop; one pointer makes the dependence plainly same-index.
        views = [Array(out.dtype, out.ptr, out.shape, b=b, bounds=out.bounds)
                 if v is dead and w.contiguous else w for v, w in zip(node.inputs, views)]
    n = out.size(b) if out.contiguous else None
    T = threads()
    single = [all(d == 1 for d in v.type.shape) for v in node.inputs]   # a scalar or a constant like 0
    # static sizes only: a run-time size may be small after all (a shape check can fix it), and the
    # module's split must then see a dispatch it can tell is dead
    if T > 1 and isinstance(n, int) and n >= options.elemwise_min_parallel \
            and all(v.contiguous or one for v, one in zip(views, single)):
        _parallel_flat(ctx, sop, views, single, dtypes, out, n, T)
        return [out]
    merged = None if bounds_checker() is not None else broadcast_loops.merged_axes(out, ins, views, node.inputs)
    if merged is not None and (T > 1 or not all(v.contiguous for v in views)):
        broadcast_loops.run(ctx, "symcnn_elemwise_nest", out, views, merged,
                            lambda bctx, xs: emit_scalar(bctx, sop, xs, dtypes, out.dtype), T)
    elif all(v.contiguous for v in views):
        _flat_loop(ctx, sop, views, dtypes, out, out.size(b))
    elif bounds_checker() is None and out.contiguous and out.ndim >= 2 and not all(a.contiguous for a in ins) \
            and not (isinstance(n, int) and n < options.elemwise_min_parallel):   # small and static: the plain nest
        broadcast_loops.run_tiled(ctx, "symcnn_elemwise_tiles", out, views,
                                  lambda bctx, xs: emit_scalar(bctx, sop, xs, dtypes, out.dtype), T)
    else:
        with U.loop_nest(b, out.shape) as idx:
            vals = [v.load(b, idx) for v in views]
            out.store(b, idx, emit_scalar(ctx, sop, vals, dtypes, out.dtype))
    return [out]


def _flat_loop(ctx, sop, views, dtypes, out, n):
    """out[i] = sop(views[i]...) for i < n, on the calling thread (views contiguous or one element
    broadcast, which an Array reads at offset 0 through its zero strides)."""
    b = ctx.b
    with U.for_range(b, n) as i:
        vals = [b.load(v.flat_addr(b, i) if v.contiguous else v.view_addr(b, 0), typ=v.lltype) for v in views]
        b.store(emit_scalar(ctx, sop, vals, dtypes, out.dtype), out.flat_addr(b, i))


def _parallel_flat(ctx, sop, views, single, dtypes, out, n, T):
    """The flat loop over n (static) contiguous elements, split over T threads (only ever handed to
    the pool: a direct call of the body would let LLVM drop its unused thread index in the whole
    module but not in the part that only declares it); single[k]: input k is one element, read at
    every position."""
    ptrs = []   # each distinct pointer once: an input read through the output's pointer (in place)
    for p in [v.ptr for v in views] + [out.ptr]:   # stays the same value, as LLVM must see
        if not any(p is q for q in ptrs):
            ptrs.append(p)
    where = [next(k for k, q in enumerate(ptrs) if q is v.ptr) for v in views]
    at_out = next(k for k, q in enumerate(ptrs) if q is out.ptr)

    def emit(bctx, vals, tid, i0, i1):
        bb = bctx.b
        with U.for_range(bb, i1, start=i0) as i:
            xs = [bb.load(bb.gep(vals[k], [U.i64(0) if one else i], source_etype=v.lltype), typ=v.lltype)
                  for k, v, one in zip(where, views, single)]
            bb.store(emit_scalar(bctx, sop, xs, dtypes, out.dtype), bb.gep(vals[at_out], [i], source_etype=out.lltype))

    run_parallel(ctx, "symcnn_elemwise", ptrs, n, T, emit, serial=ir.Constant(ir.IntType(1), 0))


def _dimshuffle_view(node, contig):
    shuffle = list(node.op.shuffle)
    return True, contig[0] and shuffle == sorted(shuffle)


@lower.register(DimShuffle, view=_dimshuffle_view)
def lower_dimshuffle(ctx, node, ins):
    x, = ins
    order = node.op.new_order
    shape = [1 if o == "x" else x.shape[o] for o in order]
    if _dimshuffle_view(node, [x.contiguous])[1]:
        return [Array(x.dtype, x.ptr, shape, b=ctx.b)]
    strides = [0 if o == "x" else x.strides[o] for o in order]
    return [Array(x.dtype, x.ptr, shape, strides)]


# -- scalar operations ------------------------------------------------------------

def _f(dtype):
    return U.is_float(dtype)


def _arithmetic(float_op, int_op, bool_op=None):
    """A two-operand lowering by IRBuilder method name: float_op on floats, int_op on integers
    (and on bools when bool_op is None), bool_op on bools (numpy's or/and for + and *)."""
    def emit(ctx, op, v, d, out):
        b = ctx.b
        if bool_op is not None and d[0] == "bool":
            return getattr(b, bool_op)(v[0], v[1]), "bool"
        return getattr(b, float_op if _f(d[0]) else int_op)(v[0], v[1]), d[0]
    return emit


scalar_lowering(ts.Add)(_arithmetic("fadd", "add", bool_op="or_"))
scalar_lowering(ts.Sub)(_arithmetic("fsub", "sub"))
scalar_lowering(ts.Mul)(_arithmetic("fmul", "mul", bool_op="and_"))


@scalar_lowering(ts.TrueDiv)
def _div(ctx, op, v, d, out):
    return ctx.b.fdiv(v[0], v[1]), d[0]


def _zero(dtype):
    return U.const(dtype, 0)


@scalar_lowering(ts.IntDiv)
def _floordiv(ctx, op, v, d, out):
    b = ctx.b
    a, c = v
    if _f(d[0]):
        return _float_floordiv(ctx, a, c, d[0]), d[0]
    zero = _zero(d[0])
    isz = b.icmp_signed("==", c, zero)
    if U.is_unsigned(d[0]):
        safe = b.select(isz, U.const(d[0], 1), c)
        q = b.udiv(a, safe)
    else:
        # x // -1 is computed as -x: MIN // -1 traps in hardware (numpy gives MIN).
        ism1 = b.icmp_signed("==", c, U.const(d[0], -1))
        safe = b.select(b.or_(isz, ism1), U.const(d[0], 1), c)
        q = b.sdiv(a, safe)
        r = b.srem(a, safe)
        adjust = b.and_(b.icmp_signed("!=", r, zero),
                        b.icmp_signed("!=", b.icmp_signed("<", r, zero), b.icmp_signed("<", safe, zero)))
        q = b.select(adjust, b.sub(q, U.const(d[0], 1)), q)
        q = b.select(ism1, b.sub(zero, q), q)
    return b.select(isz, zero, q), d[0]


def _float_floordiv(ctx, a, c, dtype):
    """numpy's npy_floor_divide (via npy_divmod), which is not floor(a / c): 1 // 0.1 == 9."""
    b = ctx.b
    t = a.type
    zero, one, half = ir.Constant(t, 0.0), ir.Constant(t, 1.0), ir.Constant(t, 0.5)
    quot = b.fdiv(a, c)
    mod = b.frem(a, c)
    div = b.fdiv(b.fsub(a, mod), c)
    adjust = b.and_(b.fcmp_unordered("!=", mod, zero),
                    b.xor(b.fcmp_ordered("<", c, zero), b.fcmp_ordered("<", mod, zero)))
    div = b.select(adjust, b.fsub(div, one), div)
    fl = b.call(U.intrinsic(ctx.module, "floor", dtype), [div])
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), half), b.fadd(fl, one), fl)
    signed_zero = b.call(U.intrinsic(ctx.module, "copysign", dtype, 2), [zero, quot])
    res = b.select(b.fcmp_unordered("!=", div, zero), fl, signed_zero)
    return b.select(b.fcmp_ordered("==", c, zero), quot, res)


@scalar_lowering(ts.Mod)
def _mod(ctx, op, v, d, out):
    b = ctx.b
    a, c = v
    if _f(d[0]):
        r = b.frem(a, c)
        zero = ir.Constant(r.type, 0.0)
        adjust = b.and_(b.fcmp_ordered("!=", r, zero),
                        b.icmp_unsigned("!=", b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", c, zero)))
        r = b.select(adjust, b.fadd(r, c), r)
        # a zero remainder takes the divisor's sign (numpy), unless the divisor is 0 (NaN result)
        signed_zero = b.call(U.intrinsic(ctx.module, "copysign", d[0], 2), [zero, c])
        iszero = b.and_(b.fcmp_ordered("==", r, zero), b.fcmp_ordered("!=", c, zero))
        return b.select(iszero, signed_zero, r), d[0]
    zero = _zero(d[0])
    isz = b.icmp_signed("==", c, zero)
    if U.is_unsigned(d[0]):
        safe = b.select(isz, U.const(d[0], 1), c)
        return b.select(isz, zero, b.urem(a, safe)), d[0]
    # x % -1 is 0; srem(MIN, -1) traps in hardware.
    ism1 = b.icmp_signed("==", c, U.const(d[0], -1))
    safe = b.select(b.or_(isz, ism1), U.const(d[0], 1), c)
    r = b.srem(a, safe)
    adjust = b.and_(b.icmp_signed("!=", r, zero),
                    b.icmp_signed("!=", b.icmp_signed("<", r, zero), b.icmp_signed("<", safe, zero)))
    return b.select(isz, zero, b.select(adjust, b.add(r, safe), r)), d[0]


@scalar_lowering(ts.Pow)
def _pow(ctx, op, v, d, out):
    b = ctx.b
    if _f(d[0]):
        return b.call(U.intrinsic(ctx.module, "pow", d[0], 2), v), d[0]
    return b.call(_ipow(ctx.module, d[0]), v), d[0]


def _ipow(module, dtype):
    """Integer power by squaring (negative exponents give 0, as x**-n floors to 0 for |x|>1)."""
    name = f"symcnn_ipow_{dtype}"
    fn = library.existing(module, name)
    if fn:
        return fn
    t = U.ll_type(dtype)
    fn = ir.Function(module, ir.FunctionType(t, [t, t]), name=name)
    fn.linkage = "internal"
    base, exp = fn.args
    entry = fn.append_basic_block()
    loop = fn.append_basic_block()
    done = fn.append_basic_block()
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    r = b.phi(t)
    x = b.phi(t)
    e = b.phi(t)
    r.add_incoming(ir.Constant(t, 1), entry)
    x.add_incoming(base, entry)
    e.add_incoming(exp, entry)
    odd = b.icmp_unsigned("!=", b.and_(e, ir.Constant(t, 1)), ir.Constant(t, 0))
    r2 = b.select(odd, b.mul(r, x), r)
    x2 = b.mul(x, x)
    e2 = b.lshr(e, ir.Constant(t, 1))
    r.add_incoming(r2, loop)
    x.add_incoming(x2, loop)
    e.add_incoming(e2, loop)
    more = b.icmp_signed(">", e2, ir.Constant(t, 0))
    b.cbranch(more, loop, done)
    b.position_at_end(done)
    if U.is_unsigned(dtype):  # large unsigned exponents are not negative
        b.ret(r2)
    else:
        neg = b.icmp_signed("<", exp, ir.Constant(t, 0))
        b.ret(b.select(neg, ir.Constant(t, 0), r2))
    return fn


def _isnan(b, x):
    return b.fcmp_unordered("uno", x, x)


def _extreme(ctx, v, d, pred):
    b = ctx.b
    x, y = v
    if _f(d[0]):
        r = b.select(b.fcmp_ordered(pred, x, y), x, y)
        return b.select(_isnan(b, x), x, r)
    cmp = b.icmp_unsigned if U.is_unsigned(d[0]) else b.icmp_signed
    return b.select(cmp(pred, x, y), x, y)


@scalar_lowering(ts.Maximum)
def _maximum(ctx, op, v, d, out):
    if isinstance(op, ts.Minimum):
        return _extreme(ctx, v, d, "<"), d[0]
    return _extreme(ctx, v, d, ">"), d[0]


@scalar_lowering(ts.Neg)
def _neg(ctx, op, v, d, out):
    b = ctx.b
    return (b.fneg(v[0]) if _f(d[0]) else b.sub(_zero(d[0]), v[0])), d[0]


@scalar_lowering(ts.Abs)
def _abs(ctx, op, v, d, out):
    b = ctx.b
    if _f(d[0]):
        return b.call(U.intrinsic(ctx.module, "fabs", d[0]), v), d[0]
    if U.is_unsigned(d[0]):
        return v[0], d[0]
    return b.select(b.icmp_signed("<", v[0], _zero(d[0])), b.sub(_zero(d[0]), v[0]), v[0]), d[0]


@scalar_lowering(ts.Sgn)
def _sgn(ctx, op, v, d, out):
    b = ctx.b
    x = v[0]
    one, zero, m1 = U.const(d[0], 1), _zero(d[0]), U.const(d[0], -1)
    if _f(d[0]):
        r = b.select(b.fcmp_ordered(">", x, zero), one, b.select(b.fcmp_ordered("<", x, zero), m1, x))
        return r, d[0]
    if U.is_unsigned(d[0]):
        return b.select(b.icmp_unsigned(">", x, zero), one, zero), d[0]
    return b.select(b.icmp_signed(">", x, zero), one, b.select(b.icmp_signed("<", x, zero), m1, zero)), d[0]


@scalar_lowering(ts.Sqr)
def _sqr(ctx, op, v, d, out):
    return (ctx.b.fmul if _f(d[0]) else ctx.b.mul)(v[0], v[0]), d[0]


def _vmath(name):
    """The lowering of a one-operand function vmath.py emits inline."""
    def emit(ctx, op, v, d, out):
        return vmath.emit(ctx.b, ctx.module, name, v[0], d[0]), d[0]
    return emit


for _op, _name in ((ts.Exp, "exp"), (ts.Log, "log"), (ts.Tanh, "tanh"), (ts.Sigmoid, "sigmoid")):
    scalar_lowering(_op)(_vmath(_name))


@scalar_lowering(ts.Sqrt)
def _sqrt(ctx, op, v, d, out):
    return ctx.b.call(U.intrinsic(ctx.module, "sqrt", d[0]), v), d[0]


_CMP = {ts.EQ: "==", ts.NEQ: "!=", ts.LT: "<", ts.LE: "<=", ts.GT: ">", ts.GE: ">="}


@scalar_lowering(*_CMP)
def _compare(ctx, op, v, d, out):
    b = ctx.b
    pred = _CMP[type(op)]
    if _f(d[0]):
        r = (b.fcmp_unordered if pred == "!=" else b.fcmp_ordered)(pred, v[0], v[1])
    elif U.is_unsigned(d[0]):
        r = b.icmp_unsigned(pred, v[0], v[1])
    else:
        r = b.icmp_signed(pred, v[0], v[1])
    return b.zext(r, U.I8), "bool"


def _truth(b, v, dtype):
    if _f(dtype):
        return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
    return b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))


@scalar_lowering(ts.Switch)
def _switch(ctx, op, v, d, out):
    b = ctx.b
    a = U.cast_value(b, v[1], d[1], out)
    c = U.cast_value(b, v[2], d[2], out)
    return b.select(_truth(b, v[0], d[0]), a, c), out


@scalar_lowering(ts.Second)
def _second(ctx, op, v, d, out):
    return v[1], d[1]


@scalar_lowering(ts.Identity)
def _identity(ctx, op, v, d, out):
    return v[0], d[0]


@scalar_lowering(Composite)
def _composite(ctx, op, v, d, out):
    values = list(v)
    for sop, args, dts, odt in op.steps:
        values.append(emit_scalar(ctx, sop, [values[a] for a in args], list(dts), odt))
    return values[-1], op.steps[-1][3]


@scalar_lowering(ts.Cast)
def _cast(ctx, op, v, d, out):
    return v[0], d[0]


@scalar_lowering(ts.Clip)
def _clip(ctx, op, v, d, out):
    # Theano's order of tests: below min gives min even when min > max.
    b = ctx.b
    x, lo, hi = v
    if _f(d[0]):
        below, above = b.fcmp_ordered("<", x, lo), b.fcmp_ordered(">", x, hi)
    else:
        cmp = b.icmp_unsigned if U.is_unsigned(d[0]) else b.icmp_signed
        below, above = cmp("<", x, lo), cmp(">", x, hi)
    return b.select(below, lo, b.select(above, hi, x)), d[0]
