"""Sum, Prod, ProdWithoutZeros, Max and Argmax over any set of axes.

Every reduction is a fold (_Fold: accumulators, a start, a step, a finish) that one of two walks
over the input runs:
- per output (_walk_per_output): for each output element, the reduced axes innermost, the
  accumulators in registers. Memory-contiguous when the input's innermost axis is reduced
  (x.sum(axis=-1)).
- into rows (_walk_into_rows): the input's axes in their order, but the innermost kept axis moved
  innermost, the accumulators in a scratch row per output element: the inner loop runs along the
  kept axis, updating consecutive accumulators from consecutive elements, which LLVM vectorises.
  Memory-contiguous when the innermost axis is kept (a bias gradient, x.sum(axis=0) of a
  batch x units matrix), where the per-output walk strides across whole rows for every element.
Both walks visit the elements of one output element in the same order (the reduced axes in their
order, row-major), so the summation order per output element, and hence every result bit, does not
depend on the walk; Argmax's tie rule (first index wins) does not depend on the order at all.
A float Sum, or a float or 32/64-bit integer Max, of a contiguous input whose innermost reduced axis
is its last (an Argmax: whose reduced axes are its last ones) takes a third walk (_walk_vector_rows):
per output element, on the threads, in vectors: float64 partials (kernels/row_sum.py), whose order
is fixed by the shape and the target's vector width, or maxima and their indices (kernels/row_max.py). A chain of scalar steps waits on each one's latency: a (100, 32, 32, 32)
float32 bias gradient took 4.3 ms, a (1024, 4096) float32 max over rows 8 ms.
"""
from llvmlite import ir

from symcnn.tensor.math import Argmax, Max, Sum
from symcnn.tensor.prod import Prod, ProdWithoutZeros

from .. import irutil as U
from ..lower import E_VALUE, Array, bounds_checker, lower
from ..options import options
from ..parallel import run_by_work, run_parallel, threads
from .row_max import VECTOR_DTYPES, RowArgmax, RowMax, greater, lowest_value, same  # noqa: F401 (greater, lowest_value: imported from here)
from .row_sum import RowSum

INT64_MAX = 2 ** 63 - 1
# Sums a thread keeps at once in the vector walk (their partials: 8 KB of float32's on AVX-512)
SUMS_AT_ONCE = 16
# A sum or max of a whole contiguous array goes by chunks of this many values, on the threads
# (_chunked_total): a (100, 32, 32, 32) float32 sum took 0.46-0.53 ms on one thread (PyTorch's
# 0.24-0.29 on two).
TOTAL_CHUNK = 1 << 16


class _Fold:
    """One reduction as pure values: accumulators of `dtypes` starting at `start` (constants),
    step(accs, v, k) -> new accs for an element v at flat index k over the reduced axes
    (row-major in the order of `axis`), finish(accs) -> the output element. The walk decides
    where the accumulators live."""

    def __init__(self, dtypes, start, step, finish):
        self.dtypes, self.start, self.step, self.finish = dtypes, start, step, finish


def _reduce(ctx, node, x, fold, rows=None):
    """out[kept] = finish(fold of x[kept, reduced]), by the walk that reads x in memory order.
    rows: the fold as rows of vectors (row_sum.RowSum: a float sum in float64; row_max.RowMax: a
    float max), which _walk_vector_rows may take."""
    b = ctx.b
    axis = list(node.op.axis)
    kept = [d for d in range(x.ndim) if d not in axis]
    if not (axis and x.contiguous and bounds_checker() is None):
        rows = None
    if not axis or not kept or (isinstance(x.shape[kept[-1]], int) and x.shape[kept[-1]] == 1):
        if rows is not None:
            return _walk_vector_rows(ctx, node, x, fold, rows)
        return _walk_per_output(ctx, node, x, fold)
    if x.contiguous:   # row-major: the last axis is the innermost in memory
        if kept[-1] > max(axis):
            return _walk_into_rows(ctx, node, x, fold)
        if rows is not None:
            return _walk_vector_rows(ctx, node, x, fold, rows)
        return _walk_per_output(ctx, node, x, fold)
    # a view (transposed, sliced, broadcast): the smaller stride of the innermost kept and
    # innermost reduced axes decides, at run time unless both strides are known now
    sk, sr = x.strides[kept[-1]], x.strides[max(axis)]
    if isinstance(sk, int) and isinstance(sr, int):
        walk = _walk_into_rows if abs(sk) < abs(sr) else _walk_per_output
        return walk(ctx, node, x, fold)
    out = ctx.alloc(node.outputs[0], [x.shape[d] for d in kept])
    rows = b.icmp_signed("<", _abs(b, sk), _abs(b, sr))
    with b.if_else(rows) as (then, otherwise):
        with then:
            _walk_into_rows(ctx, node, x, fold, out)
        with otherwise:
            _walk_per_output(ctx, node, x, fold, out)
    return out


def _abs(b, v):
    v = U.as_value(b, v)
    return b.select(b.icmp_signed("<", v, U.i64(0)), b.sub(U.i64(0), v), v)


def _walk_per_output(ctx, node, x, fold, out=None):
    """For each output element: the reduced axes innermost, the accumulators in registers."""
    b = ctx.b
    axis = node.op.axis
    kept = [d for d in range(x.ndim) if d not in axis]
    outer = Array(x.dtype, x.ptr, [x.shape[d] for d in kept], [x.strides[d] for d in kept])
    if out is None:
        out = ctx.alloc(node.outputs[0], outer.shape)
    with U.loop_nest(b, outer.shape, name="reduce_out") as oidx:
        base = outer.offset(b, oidx)
        accs = [ctx.local(U.ll_type(dt), s) for dt, s in zip(fold.dtypes, fold.start)]
        flat = ctx.local(U.I64, U.i64(0))
        with U.loop_nest(b, [x.shape[d] for d in axis], name="reduce_r") as ridx:
            off = base
            for i, d in zip(ridx, axis):
                off = U.add(b, off, U.mul(b, i, x.strides[d]))
            v = b.load(x.flat_addr(b, off), typ=x.lltype)
            k = b.load(flat, typ=U.I64)
            cur = [b.load(a, typ=U.ll_type(dt)) for a, dt in zip(accs, fold.dtypes)]
            for a, nxt in zip(accs, fold.step(cur, v, k)):
                b.store(nxt, a)
            b.store(b.add(k, U.i64(1)), flat)
        out.store(b, oidx, fold.finish([b.load(a, typ=U.ll_type(dt)) for a, dt in zip(accs, fold.dtypes)]))
    return out


def _walk_into_rows(ctx, node, x, fold, out=None):
    """Every axis of x in its order, but the innermost kept axis innermost; the accumulators of
    all output elements in scratch (in the output's layout), finished into the output at the end.
    The reduced axes keep their order, so each output element folds its elements in the same
    order as in _walk_per_output."""
    b = ctx.b
    axis = list(node.op.axis)
    kept = [d for d in range(x.ndim) if d not in axis]
    kept_shape = [x.shape[d] for d in kept]
    if out is None:
        out = ctx.alloc(node.outputs[0], kept_shape)
    accs = [ctx.scratch(dt, kept_shape) for dt in fold.dtypes]
    with U.loop_nest(b, kept_shape, name="reduce_rows_start") as oidx:
        for a, s in zip(accs, fold.start):
            a.store(b, oidx, s)
    # k: the row-major index over the reduced axes (what the per-output walk counts)
    kstride, acc = {}, 1
    for d in reversed(axis):
        kstride[d] = acc
        acc = U.mul(b, acc, x.shape[d])
    # the reduced axes in the order of `axis` (sorted by Reduce, but the fold order follows it)
    reduced = iter(axis)
    order = [next(reduced) if d in axis else d for d in range(x.ndim) if d != kept[-1]] + [kept[-1]]
    with U.loop_nest(b, [x.shape[d] for d in order], name="reduce_rows") as idx:
        at = dict(zip(order, idx))
        off, k = 0, 0
        for d in order:
            off = U.add(b, off, U.mul(b, at[d], x.strides[d]))
            if d in kstride:
                k = U.add(b, k, U.mul(b, at[d], kstride[d]))
        v = b.load(x.flat_addr(b, off), typ=x.lltype)
        oidx = [at[d] for d in kept]
        cur = [a.load(b, oidx) for a in accs]
        for a, nxt in zip(accs, fold.step(cur, v, U.as_value(b, k))):
            a.store(b, oidx, nxt)
    with U.loop_nest(b, kept_shape, name="reduce_rows_finish") as oidx:
        out.store(b, oidx, fold.finish([a.load(b, oidx) for a in accs]))
    return out


def _walk_vector_rows(ctx, node, x, fold, rows):
    """A float sum or max of contiguous x whose innermost reduced axis runs along memory: for each
    output element (threads take contiguous ranges of them), the reduced axes that are adjacent
    in memory at the end make rows, taken into vectors (rows: kernels/row_sum.py's RowSum, float64
    partials; kernels/row_max.py's RowMax), the other reduced axes loop around them in their
    order. Each output element's result is one thread's, so its bits do not depend on the thread
    count."""
    axis = list(node.op.axis)
    first = len(axis) - 1
    while first > 0 and axis[first - 1] == axis[first] - 1:
        first -= 1
    inner = axis[first:]
    if not (isinstance(x.strides[inner[-1]], int) and x.strides[inner[-1]] == 1) or \
            (getattr(rows, "row_index", False) and inner != axis):   # (an index over more than the row)
        return _walk_per_output(ctx, node, x, fold)

    if inner == list(range(x.ndim)) and not getattr(rows, "row_index", False):
        return _chunked_total(ctx, node, x, rows)

    def add_row(bctx, s, ptrs, bases, n):
        s.add_row(U.gep(bctx.b, ptrs[0], bases[0], x.lltype), n)
    return vector_rows(ctx, node, [x], inner, x.dtype, add_row, rows)


def _chunked_total(ctx, node, x, rows):
    """A sum or max of all of contiguous x (one output): a `rows` per TOTAL_CHUNK values, the chunks
    on the threads, their results folded in order (a sum: in float64). The order depends only on
    the size, never on the threads; an array of one chunk is one `rows` walk, as any row."""
    b = ctx.b
    dt, tdt = x.dtype, rows.total_dtype(x.dtype)
    n = x.size(b)
    chunks = U.floordiv(b, U.add(b, n, TOTAL_CHUNK - 1), TOTAL_CHUNK)
    out = ctx.alloc(node.outputs[0], [])
    part = ctx.scratch(tdt, [U.smax(b, chunks, 1)])
    tt = U.ll_type(tdt)

    def emit(bctx, v, tid, c0, c1):
        bb = bctx.b
        xp, pp, nv = v
        with U.for_range(bb, c1, start=c0, name=f"reduce_ck_{rows.tag}") as c:
            first = bb.mul(c, U.i64(TOTAL_CHUNK))
            s = rows(bctx, dt)
            s.add_row(U.gep(bb, xp, first, x.lltype), U.smin(bb, bb.sub(U.as_value(bb, nv), first), TOTAL_CHUNK))
            bb.store(s.total(), U.gep(bb, pp, c, tt))

    run_by_work(ctx, rows.walk_name + "_chunks", [x.ptr, part.ptr, n], chunks, n, threads(), emit,
                min_work=max(2 * TOTAL_CHUNK, options.elemwise_min_parallel))
    if tdt == "float64":
        acc = ctx.local(U.F64, U.const("float64", 0.0))
        fold = lambda cur, v: b.fadd(cur, v)  # noqa: E731
    else:
        acc = ctx.local(tt, lowest_value(tdt))
        fold = lambda cur, v: b.select(greater(b, v, cur, tdt), v, cur)  # noqa: E731
    with U.for_range(b, chunks, name=f"reduce_cf_{rows.tag}") as c:
        b.store(fold(b.load(acc, typ=tt), b.load(U.gep(b, part.ptr, c, tt), typ=tt)), acc)
    b.store(U.cast_value(b, b.load(acc, typ=tt), tdt, node.outputs[0].dtype), out.ptr)
    return out


def vector_rows(ctx, node, arrays, inner, dtype, add_row, rows=RowSum):
    """The walk of _walk_vector_rows over the element grid of `arrays` (each of the grid's shape,
    any strides): `inner` (the last reduced axes, adjacent, ending with the grid's last axis)
    make the rows, which add_row(bctx, s, pointers, each array's offset of the row's first
    element, row length) takes into s, a `rows` (RowSum, RowMax) of `dtype` values."""
    b = ctx.b
    shape = arrays[0].shape
    axis = list(node.op.axis)
    kept = [d for d in range(len(shape)) if d not in axis]
    outer = [d for d in axis if d not in inner]
    rowlen = U.product(b, [shape[d] for d in inner])
    out = ctx.alloc(node.outputs[0], [shape[d] for d in kept])
    outputs = U.product(b, [shape[d] for d in kept])
    work = U.mul(b, outputs, U.product(b, [shape[d] for d in axis]))
    dims = kept + outer
    na = len(arrays)
    values = [a.ptr for a in arrays] + [out.ptr, rowlen] + [shape[d] for d in dims] \
        + [a.strides[d] for a in arrays for d in dims]
    out_dt = node.outputs[0].dtype

    def emit(bctx, v, tid, o0, o1):
        bb = bctx.b
        ptrs, op, n = v[:na], v[na], v[na + 1]
        rest_v = v[na + 2:]
        size = dict(zip(dims, rest_v[:len(dims)]))
        strides = [dict(zip(dims, rest_v[len(dims) * (1 + k):len(dims) * (2 + k)])) for k in range(na)]
        states = bctx.local(ir.ArrayType(rows.state_type(dtype), SUMS_AT_ONCE))

        def state(j):
            return bb.gep(states, [U.i64(0), j], inbounds=True)

        blocks = U.floordiv(bb, U.add(bb, U.sub(bb, o1, o0), SUMS_AT_ONCE - 1), SUMS_AT_ONCE)
        with U.for_range(bb, blocks, name="reduce_vb") as blk:
            first = bb.add(U.as_value(bb, o0), bb.mul(blk, U.i64(SUMS_AT_ONCE)))
            count = U.smin(bb, bb.sub(U.as_value(bb, o1), first), SUMS_AT_ONCE)
            with U.for_range(bb, count, name="reduce_vz") as j:
                rows.zero(bctx, dtype, state(j))
            # the outer summed axes outside the outputs: the rows of a block's sums are read in
            # memory order (a channel sum of NCHW: image by image), each sum's in its order
            with U.loop_nest(bb, [size[d] for d in outer], name="reduce_vr") as ridx:
                with U.for_range(bb, count, name="reduce_vo") as j:
                    bases, rest = [0] * na, bb.add(first, j)
                    for d in reversed(kept):   # the output's index along each kept axis, the last fastest
                        sz = U.as_value(bb, size[d])
                        i = bb.srem(rest, sz)
                        bases = [U.add(bb, base, U.mul(bb, i, st[d])) for base, st in zip(bases, strides)]
                        rest = bb.sdiv(rest, sz)
                    for i, d in zip(ridx, outer):
                        bases = [U.add(bb, a, U.mul(bb, i, st[d])) for a, st in zip(bases, strides)]
                    add_row(bctx, rows(bctx, dtype, state(j)), ptrs, bases, n)
            with U.for_range(bb, count, name=f"reduce_vt_{rows.tag}") as j:
                total = U.cast_value(bb, rows(bctx, dtype, state(j)).total(), rows.total_dtype(dtype), out_dt)
                bb.store(total, U.gep(bb, op, bb.add(first, j), U.ll_type(out_dt)))

    T = threads()
    if T == 1 or (isinstance(outputs, int) and outputs < T):
        emit(ctx, values, U.i64(0), U.i64(0), U.as_value(b, outputs))
        return out
    if isinstance(work, int) and isinstance(outputs, int):   # static: one way only (see parallel.run_parallel)
        serial = ir.Constant(U.I1, int(work < options.elemwise_min_parallel))
    else:
        serial = b.or_(b.icmp_signed("<", U.as_value(b, work), U.i64(options.elemwise_min_parallel)),
                       b.icmp_signed("<", U.as_value(b, outputs), U.i64(T)))
    run_parallel(ctx, rows.walk_name, values, outputs, T, emit, serial=serial, inline_serial=True)
    return out


@lower.register(Sum)
def lower_sum(ctx, node, ins):
    return [reduce_sum(ctx, node, ins[0])]


def reduce_sum(ctx, node, x):
    """node's output (a Sum's: node.op.axis, node.outputs[0]) as the sum of the array x."""
    out_dt = node.outputs[0].dtype
    acc_dt = "float64" if U.is_float(out_dt) else out_dt
    rows = RowSum if acc_dt == "float64" and x.dtype in ("float32", "float64") else None
    return _reduce(ctx, node, x, _sum_fold(ctx, node, x), rows)


def _sum_fold(ctx, node, x):
    b = ctx.b
    out_dt = node.outputs[0].dtype
    acc_dt = "float64" if U.is_float(out_dt) else out_dt

    def step(accs, v, k):
        v = U.cast_value(b, v, x.dtype, acc_dt)
        return [(b.fadd if U.is_float(acc_dt) else b.add)(accs[0], v)]

    def finish(accs):
        return U.cast_value(b, accs[0], acc_dt, out_dt)

    return _Fold([acc_dt], [U.const(acc_dt, 0)], step, finish)


def _lower_product(ctx, node, x, skip_zeros):
    """Product in float64 for floats (the sum's accumulator rule), in the result's dtype for ints;
    skip_zeros multiplies by 1 where an element is 0 (ProdWithoutZeros)."""
    b = ctx.b
    out_dt = node.outputs[0].dtype
    acc_dt = "float64" if U.is_float(out_dt) else out_dt

    def step(accs, v, k):
        cur, = accs
        w = U.cast_value(b, v, x.dtype, acc_dt)
        nxt = (b.fmul if U.is_float(acc_dt) else b.mul)(cur, w)
        if skip_zeros:
            if U.is_float(x.dtype):
                zero = b.fcmp_ordered("==", v, U.const(x.dtype, 0))
            else:
                zero = b.icmp_unsigned("==", v, U.const(x.dtype, 0))
            nxt = b.select(zero, cur, nxt)
        return [nxt]

    def finish(accs):
        return U.cast_value(b, accs[0], acc_dt, out_dt)

    return [_reduce(ctx, node, x, _Fold([acc_dt], [U.const(acc_dt, 1)], step, finish))]
@lower.register(Prod)
def lower_prod(ctx, node, ins):
    return _lower_product(ctx, node, ins[0], skip_zeros=False)


@lower.register(ProdWithoutZeros)
def lower_prod_without_zeros(ctx, node, ins):
    return _lower_product(ctx, node, ins[0], skip_zeros=True)


def _nonempty(ctx, x, axis):
    """Like numpy: fail only if some result element would reduce nothing."""
    b = ctx.b
    n = U.as_value(b, U.product(b, [x.shape[d] for d in axis]))
    kept = U.as_value(b, U.product(b, [x.shape[d] for d in range(x.ndim) if d not in axis]))
    ctx.fail_if(b.and_(b.icmp_signed("==", n, U.i64(0)), b.icmp_signed(">", kept, U.i64(0))), E_VALUE, n)


def empty_reduction_message(what):
    """The error-message hook of a lowering that writes E_VALUE for a reduction of no elements."""
    def message(code, node, where, vals):
        if code == E_VALUE:
            return ValueError, f"{where}: cannot reduce over an empty dimension (a {what} of length 0)"
        return None
    return message


@lower.register(Max, error_message=empty_reduction_message("max"))
def lower_max(ctx, node, ins):
    x, = ins
    b = ctx.b
    _nonempty(ctx, x, node.op.axis)

    def step(accs, v, k):
        return [b.select(greater(b, v, accs[0], x.dtype), v, accs[0])]

    def finish(accs):
        return U.cast_value(b, accs[0], x.dtype, node.outputs[0].dtype)

    rows = RowMax if x.dtype in VECTOR_DTYPES else None
    return [_reduce(ctx, node, x, _Fold([x.dtype], [lowest_value(x.dtype)], step, finish), rows)]


@lower.register(Argmax, error_message=empty_reduction_message("argmax"))
def lower_argmax(ctx, node, ins):
    x, = ins
    b = ctx.b
    _nonempty(ctx, x, node.op.axis)

    def step(accs, v, k):
        # the largest value (a NaN above all), the smallest index among ties: the answer does
        # not depend on the order elements come in, and the start (lowest value, index
        # INT64_MAX) loses to any first element
        best, at = accs
        take = b.or_(greater(b, v, best, x.dtype),
                     b.and_(same(b, v, best, x.dtype), b.icmp_signed("<", k, at)))
        return [b.select(take, v, best), b.select(take, k, at)]

    def finish(accs):
        return accs[1]

    rows = RowArgmax if x.dtype in VECTOR_DTYPES else None
    return [_reduce(ctx, node, x, _Fold([x.dtype, "int64"], [lowest_value(x.dtype), U.i64(INT64_MAX)],
                                        step, finish), rows)]
