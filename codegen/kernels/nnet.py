"""Softmax over the last axis (vector or matrix), numerically stable: per row,
m = max(x), e = exp(x - m), out = e / sum(e) (the sum accumulated in float64).
Also LogSoftmax, SoftmaxGrad and the fused softmax cross-entropy with integer labels
(CrossEntropySoftmax, CrossEntropySoftmaxGrad), which never form log-probabilities."""
from llvmlite import ir

from symcnn.tensor.nnet.basic import (CrossEntropySoftmax, CrossEntropySoftmaxGrad, LogSoftmax, Softmax,
                                      SoftmaxGrad)

from .. import irutil as U
from .. import vmath
from ..lower import E_INDEX, E_SHAPE, E_VALUE, Array, bounds_checker, lower
from ..parallel import run_by_work, threads
from .reduce import empty_reduction_message, greater, lowest_value
from .row_max import row_max
from .row_sum import RowSum


@lower.register(Softmax, error_message=empty_reduction_message("softmax"))
def lower_softmax(ctx, node, ins):
    b = ctx.b
    dt, out, xm, om = _row_views(ctx, node, ins)
    rows, n = xm.shape
    # numpy's max over an empty axis raises: so does this.
    if isinstance(n, int):
        if n == 0:
            ctx.fail_if(U.I1(1), E_VALUE, 0)
    else:
        ctx.fail_if(b.icmp_signed("==", n, U.i64(0)), E_VALUE, n)
    T = threads()
    if bounds_checker() is not None or not (isinstance(om.strides[1], int) and om.strides[1] == 1):
        with U.for_range(b, rows, name="row") as r:
            m = _row_max_along_memory(ctx, xm, r, n, dt)
            sum_exp = _row_sum_exp(ctx, xm, r, n, m, dt, store=lambda j, e: om.store(b, [r, j], e))
            inv = _reciprocal(b, sum_exp, dt)
            with U.for_range(b, n, name="nm") as j:
                om.store(b, [r, j], b.fmul(om.load(b, [r, j]), inv))
        return [out]
    _parallel_softmax(ctx, xm, om, rows, n, dt, T)
    return [out]


def _reciprocal(b, total, dt):
    """1 / total (a float64 sum) rounded to dt: the rows are scaled by it, as Theano's softmax
    scales them. A division per value took a sixth of a (1024, 4096) float32 softmax (vdivps:
    one vector each 5-10 cycles); the results differ from numpy's quotients by at most an ulp."""
    return U.cast_value(b, b.fdiv(U.const("float64", 1.0), total), "float64", dt)


def _parallel_softmax(ctx, xm, om, rows, n, dt, T):
    """The rows on the threads, each in passes that vectorise: the maximum, exp(x - m) stored into
    the output row, their float64 sum (in RowSum's fixed order, the same on any thread count) and
    the scaling by its reciprocal. (Bounds-checked builds and an output with strided rows take the one-pass loop.)
    Rows along memory (at run time unless the stride is known) take a copy of the passes that
    reads them so, which LLVM vectorises (the exp pass too)."""
    b = ctx.b
    values = [xm.ptr, om.ptr, n, xm.strides[0], xm.strides[1], om.strides[0]]

    def emit(bctx, v, tid, r0, r1):
        bb = bctx.b
        xp, op, nv, sx0, sx1, so0 = v
        o = Array(om.dtype, op, [r1, nv], [so0, 1])
        et = U.ll_type(dt)

        def rows_of(x):
            with U.for_range(bb, r1, start=r0, name="row") as r:
                m = _row_max_along_memory(bctx, x, r, nv, dt)
                with U.for_range(bb, nv, name="ex") as j:
                    e = vmath.emit(bb, bctx.module, "exp", bb.fsub(U.cast_value(bb, x.load(bb, [r, j]), x.dtype, dt), m),
                                   dt)
                    o.store(bb, [r, j], e)
                row = U.gep(bb, op, U.mul(bb, r, so0), et)
                s = RowSum(bctx, dt)
                s.add_row(row, nv)
                inv = _reciprocal(bb, s.total(), dt)
                with U.for_range(bb, nv, name="nm") as j:
                    o.store(bb, [r, j], bb.fmul(o.load(bb, [r, j]), inv))

        along = Array(xm.dtype, xp, [r1, nv], [sx0, 1])
        if isinstance(xm.strides[1], int):
            rows_of(along if xm.strides[1] == 1 else Array(xm.dtype, xp, [r1, nv], [sx0, sx1]))
            return
        with bb.if_else(bb.icmp_signed("==", U.as_value(bb, sx1), U.i64(1))) as (is_along, across):
            with is_along:
                rows_of(along)
            with across:
                rows_of(Array(xm.dtype, xp, [r1, nv], [sx0, sx1]))

    run_by_work(ctx, "symcnn_softmax", values, rows, U.mul(b, rows, n), T, emit)


# -- log-softmax, the softmax gradient and the fused softmax cross-entropy -------------------------

def _as_rows(arr):
    """A vector as a one-row matrix view (a matrix unchanged)."""
    if arr.ndim == 2:
        return arr
    return Array(arr.dtype, arr.ptr, [1, arr.shape[0]], [0, arr.strides[0]], bounds=arr.bounds)


def _row_views(ctx, node, ins):
    """(output dtype, output, x as rows, output as rows) of a row-wise op on x = ins[0] whose
    output has x's shape (a vector is one row)."""
    x, = ins
    out = ctx.alloc(node.outputs[0], x.shape)
    om = out if out.ndim == 2 else Array(out.dtype, out.ptr, [1, out.shape[0]], b=ctx.b, bounds=out.bounds)
    return out.dtype, out, _as_rows(x), om


def _fail_unless_static_ok(ctx, static, emit, code, *values):
    """Fail with `code` when a condition holds: folded when every operand is a Python int."""
    if static is not None:
        if static:
            ctx.fail_if(ir.Constant(U.I1, 1), code, *[U.as_value(ctx.b, v) for v in values])
        return
    ctx.fail_if(emit(), code, *values)


def _nonempty_rows(ctx, rows, n):
    """numpy's max over an empty last axis raises, unless there are no rows at all."""
    b = ctx.b
    static = (n == 0 and rows > 0) if isinstance(n, int) and isinstance(rows, int) else None
    if static is None and isinstance(n, int):
        static = False if n != 0 else None
    _fail_unless_static_ok(
        ctx, static,
        lambda: b.and_(b.icmp_signed("==", U.as_value(b, n), U.i64(0)),
                       b.icmp_signed(">", U.as_value(b, rows), U.i64(0))),
        E_VALUE, n, rows)


def _row_max(ctx, xm, r, n, dt):
    b = ctx.b
    t = U.ll_type(dt)
    best = ctx.local(t, lowest_value(dt))
    with U.for_range(b, n, name="mx") as j:
        v = U.cast_value(b, xm.load(b, [r, j]), xm.dtype, dt)
        cur = b.load(best, typ=t)
        b.store(b.select(greater(b, v, cur, dt), v, cur), best)
    return b.load(best, typ=t)


def _row_max_along_memory(ctx, xm, r, n, dt):
    """_row_max, by vectors (kernels/row_max.py) where the row lies along memory (a float row of
    dt values: at run time unless its stride is known; not in a bounds-checked build)."""
    if xm.dtype != dt or dt not in ("float32", "float64") or bounds_checker() is not None:
        return _row_max(ctx, xm, r, n, dt)
    b = ctx.b
    stride = xm.strides[1]
    if isinstance(stride, int):
        if stride != 1:
            return _row_max(ctx, xm, r, n, dt)
        return row_max(ctx, dt, xm.flat_addr(b, U.mul(b, r, xm.strides[0])), n)
    best = ctx.local(U.ll_type(dt))
    with b.if_else(b.icmp_signed("==", U.as_value(b, stride), U.i64(1))) as (along, across):
        with along:
            b.store(row_max(ctx, dt, xm.flat_addr(b, U.mul(b, r, xm.strides[0])), n), best)
        with across:
            b.store(_row_max(ctx, xm, r, n, dt), best)
    return b.load(best, typ=U.ll_type(dt))


def _row_sum_exp(ctx, xm, r, n, m, dt, store=None):
    """sum_j exp(x[r, j] - m) accumulated in float64 (exp in dt); store(j, e) sees each term."""
    b = ctx.b
    acc = ctx.local(U.F64, U.const("float64", 0.0))
    with U.for_range(b, n, name="ex") as j:
        v = U.cast_value(b, xm.load(b, [r, j]), xm.dtype, dt)
        e = vmath.emit(b, ctx.module, "exp", b.fsub(v, m), dt)
        if store is not None:
            store(j, e)
        b.store(b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, e, dt, "float64")), acc)
    return b.load(acc, typ=U.F64)


@lower.register(LogSoftmax)
def lower_log_softmax(ctx, node, ins):
    """Per row: m = max(x), s = sum(exp(x - m)), out = (x - m) - log(s)."""
    b = ctx.b
    dt, out, xm, om = _row_views(ctx, node, ins)
    rows, n = xm.shape
    _nonempty_rows(ctx, rows, n)
    log = U.libm(ctx.module, "log", dt)
    with U.for_range(b, rows, name="row") as r:
        m = _row_max_along_memory(ctx, xm, r, n, dt)
        lse = b.call(log, [U.cast_value(b, _row_sum_exp(ctx, xm, r, n, m, dt), "float64", dt)])
        with U.for_range(b, n, name="ls") as j:
            v = U.cast_value(b, xm.load(b, [r, j]), xm.dtype, dt)
            om.store(b, [r, j], b.fsub(b.fsub(v, m), lse))
    return [out]


@lower.register(SoftmaxGrad)
def lower_softmax_grad(ctx, node, ins):
    """Per row: s = sum(dy * sm) (float64), out = sm * (dy - s)."""
    b = ctx.b
    dy, sm = ins
    dt = node.outputs[0].dtype
    for d in range(dy.ndim):
        ctx.check_equal(dy.shape[d], sm.shape[d])
    out = ctx.alloc(node.outputs[0], sm.shape)
    dym, smm = _as_rows(dy), _as_rows(sm)
    om = out if out.ndim == 2 else Array(out.dtype, out.ptr, [1, out.shape[0]], b=b, bounds=out.bounds)
    rows, n = smm.shape
    with U.for_range(b, rows, name="row") as r:
        acc = ctx.local(U.F64, U.const("float64", 0.0))
        with U.for_range(b, n, name="dot") as j:
            g = U.cast_value(b, dym.load(b, [r, j]), dy.dtype, "float64")
            p = U.cast_value(b, smm.load(b, [r, j]), sm.dtype, "float64")
            b.store(b.fadd(b.load(acc, typ=U.F64), b.fmul(g, p)), acc)
        s = U.cast_value(b, b.load(acc, typ=U.F64), "float64", dt)
        with U.for_range(b, n, name="sg") as j:
            g = U.cast_value(b, dym.load(b, [r, j]), dy.dtype, dt)
            p = U.cast_value(b, smm.load(b, [r, j]), sm.dtype, dt)
            om.store(b, [r, j], b.fmul(p, b.fsub(g, s)))
    return [out]


def _check_labels_fit(ctx, z, y):
    """The checks the unfused graph makes: softmax of an empty last axis (E_VALUE), more labels
    than rows (E_INDEX: row index len(z) out of range)."""
    b = ctx.b
    m, c = z.shape
    n = y.shape[0]
    _nonempty_rows(ctx, m, c)
    static = (n > m) if isinstance(n, int) and isinstance(m, int) else None
    _fail_unless_static_ok(ctx, static,
                           lambda: b.icmp_signed(">", U.as_value(b, n), U.as_value(b, m)),
                           E_INDEX, m, m)


def _label(ctx, y, i, c):
    """y[i] as an i64 in [0, c): numpy's wrap of negatives, E_INDEX (value, c) when out of range."""
    b = ctx.b
    v = U.cast_value(b, y.load(b, [i]), y.dtype, "int64")
    cv = U.as_value(b, c)
    if U.is_unsigned(y.dtype) and y.dtype != "uint64":
        bad = b.icmp_signed(">=", v, cv)
    else:
        bad = b.or_(b.icmp_signed("<", v, b.neg(cv)), b.icmp_signed(">=", v, cv))
    ctx.fail_if(bad, E_INDEX, v, cv)
    return b.select(b.icmp_signed("<", v, U.i64(0)), b.add(v, cv), v)


@lower.register(CrossEntropySoftmax)
def lower_crossentropy_softmax(ctx, node, ins):
    """Per row i < len(y): m = max(z[i]), s = sum(exp(z[i] - m)), out[i] = m + log(s) - z[i, y[i]]
    (in float64, then rounded once): per row a sweep for the max, a sweep for the sum of exp and one
    load for the label's logit; the log-probabilities are never formed."""
    b = ctx.b
    z, y = ins
    dt = node.outputs[0].dtype
    _check_labels_fit(ctx, z, y)
    c = z.shape[1]
    n = y.shape[0]
    out = ctx.alloc(node.outputs[0], [n])
    log = U.libm(ctx.module, "log", "float64")
    with U.for_range(b, n, name="row") as i:
        k = _label(ctx, y, i, c)
        m = _row_max_along_memory(ctx, z, i, c, dt)
        s = _row_sum_exp(ctx, z, i, c, m, dt)
        picked = U.cast_value(b, z.load(b, [i, k]), z.dtype, "float64")
        lse = b.fadd(U.cast_value(b, m, dt, "float64"), b.call(log, [s]))
        out.store(b, [i], U.cast_value(b, b.fsub(lse, picked), "float64", dt))
    return [out]


@lower.register(CrossEntropySoftmaxGrad)
def lower_crossentropy_softmax_grad(ctx, node, ins):
    """Rows i < len(y): out[i, j] = g[i] * ([j == y[i]] - softmax(z[i])[j]); the other rows: 0."""
    b = ctx.b
    g, z, y = ins
    dt = node.outputs[0].dtype
    t = U.ll_type(dt)
    _check_labels_fit(ctx, z, y)
    m_rows, c = z.shape
    n = y.shape[0]
    if g.ndim == 1:
        # the scatter-add it replaces broadcasts one value over every label, else needs len(y)
        gl = g.shape[0]
        if isinstance(gl, int) and isinstance(n, int):
            static = gl not in (1, n)
        elif isinstance(gl, int) and gl == 1:
            static = False
        else:
            static = None
        _fail_unless_static_ok(
            ctx, static,
            lambda: b.and_(b.icmp_signed("!=", U.as_value(b, gl), U.as_value(b, n)),
                           b.icmp_signed("!=", U.as_value(b, gl), U.i64(1))),
            E_SHAPE, gl, n)
        if isinstance(gl, int):
            gstride = 0 if gl == 1 else g.strides[0]
        else:
            gstride = b.select(b.icmp_signed("==", gl, U.i64(1)), U.i64(0), U.as_value(b, g.strides[0]))
        gv = Array(g.dtype, g.ptr, [n], [gstride], bounds=g.bounds)
    out = ctx.alloc(node.outputs[0], z.shape)
    with U.for_range(b, n, name="row") as i:
        k = _label(ctx, y, i, c)
        m = _row_max_along_memory(ctx, z, i, c, dt)
        s = _row_sum_exp(ctx, z, i, c, m, dt, store=lambda j, e: out.store(b, [i, j], e))
        total = U.cast_value(b, s, "float64", dt)
        gi = ctx.load_scalar(g) if g.ndim == 0 else gv.load(b, [i])
        gi = U.cast_value(b, gi, g.dtype, dt)
        one, zero = U.const(dt, 1.0), U.const(dt, 0.0)
        with U.for_range(b, c, name="gr") as j:
            p = b.fdiv(out.load(b, [i, j]), total)
            hot = b.select(b.icmp_signed("==", j, k), one, zero)
            out.store(b, [i, j], b.fmul(gi, b.fsub(hot, p)))
    with U.for_range(b, m_rows, start=n, name="zr") as i:
        with U.for_range(b, c, name="zc") as j:
            out.store(b, [i, j], ir.Constant(t, 0.0))
    return [out]
