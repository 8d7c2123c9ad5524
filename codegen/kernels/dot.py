"""Dot and FusedDot: matrix/vector products as one loop nest (i, p, j) with a contiguous
inner loop. FusedDot applies its prologues as operands are loaded (A's value once per (i, p),
hoisted out of the j loop; B's once per element, packed into a panel before the loops) and
its epilogue as each output row is stored, after the row's whole k-sum is accumulated.

Large float products (at least options.gemm_min_parallel multiply-adds) are split over the threads of the
module's pool (threadpool.py): the columns of C (or its rows, when C is taller than wide at run time,
so that the operand every thread packs in full is the smaller one) in T contiguous ranges of whole
register tiles, each thread with its own packing buffers. Each range applies the epilogue to its own part of C. Every element of C is summed
in the same order as on one thread, so results do not depend on the thread count."""
from llvmlite import ir

from symcnn.tensor.blas import FusedDot
from symcnn.tensor.math import Dot

from .. import irutil as U
from ..lower import E_SHAPE, Array, lower
from ..parallel import Parts, part, run_parallel, threads
from .elemwise import broadcast_dims, broadcast_view, emit_scalar
from ..microkernels import prepacked
from ..microkernels.gemm import emit_gemm, pack_sizes, params
from ..options import options


def as_matrix(a, row):
    """A vector as a 1 x n (row=True) or n x 1 matrix view; matrices unchanged."""
    if a.ndim == 2:
        return a
    if row:
        return Array(a.dtype, a.ptr, [1, a.shape[0]], [0, a.strides[0]])
    return Array(a.dtype, a.ptr, [a.shape[0], 1], [a.strides[0], 0])


class Prologue:
    """An operand computed elementwise from broadcast (matrix-view) inputs as it is loaded."""

    def __init__(self, ctx, comp, views, dtypes):
        self.ctx, self.comp, self.views, self.dtypes = ctx, comp, views, dtypes
        self.dtype = comp.out_dtype()
        self.shape = list(views[0].shape)

    def load(self, b, idx):
        vals = [v.load(b, idx) for v in self.views]
        return emit_scalar(self.ctx, self.comp, vals, self.dtypes, self.dtype)


def _operand(ctx, comp, variables, arrays, row):
    if comp is None:
        return as_matrix(arrays[0], row)
    shape = broadcast_dims(ctx, variables, arrays, variables[0].ndim)
    views = [as_matrix(broadcast_view(a, v, shape), row) for a, v in zip(arrays, variables)]
    return Prologue(ctx, comp, views, [v.dtype for v in variables])


def _as_out_matrix(arr, x_ndim, y_ndim):
    """An array of the product's shape as the m x n view the kernel indexes."""
    if x_ndim == 2 and y_ndim == 2:
        return arr
    if x_ndim == 2:
        return Array(arr.dtype, arr.ptr, [arr.shape[0], 1], [arr.strides[0], 0])
    if y_ndim == 2:
        return Array(arr.dtype, arr.ptr, [1, arr.shape[0]], [0, arr.strides[0]])
    return Array(arr.dtype, arr.ptr, [1, 1], [0, 0])


def emit_matmul(ctx, out_var, x_ndim, y_ndim, a, c, acc_dtype, epilogue=None, extras=(), packed_c=None):
    """out = epilogue(dot(a, c), extras...) for m x k and k x n operands (Arrays or Prologues)
    standing for x_ndim- and y_ndim-dimensional ones; extras: (Array, variable) pairs of the
    product's number of dimensions, broadcast to its shape. packed_c: c already packed whole
    (prepack_invariant_operands), or None."""
    b = ctx.b
    m, k, n = a.shape[0], a.shape[1], c.shape[1]
    if options.packed_gemm and acc_dtype in ("float32", "float64") and x_ndim == 2 and y_ndim == 2:
        return _emit_gemm_matmul(ctx, out_var, a, c, acc_dtype, epilogue, extras, packed_c)
    if isinstance(c, Prologue):  # pack B once, so its prologue runs once per element
        packed = ctx.scratch(c.dtype, [k, n])
        with U.loop_nest(b, [k, n], name="pk") as idx:
            packed.store(b, idx, c.load(b, idx))
        c = packed
    out_shape = ([m] if x_ndim == 2 else []) + ([n] if y_ndim == 2 else [])
    out = ctx.alloc(out_var, out_shape)
    o = Array(out.dtype, out.ptr, [m, n], b=b)
    views = []
    for arr, var in extras:
        for d in range(len(out_shape)):
            if var.type.shape[d] != 1:
                ctx.check_equal(out.shape[d], arr.shape[d], E_SHAPE)
        views.append(_as_out_matrix(broadcast_view(arr, var, out.shape), x_ndim, y_ndim))
    dt = acc_dtype
    if epilogue is None or out.dtype == dt:
        acc, row_of = o, (lambda i: i)
    else:  # accumulate a row in the product's dtype, then convert it in the epilogue
        acc, row_of = ctx.scratch(dt, [1, n]), (lambda i: 0)
    zero = U.const(dt, 0)
    if dt == "bool":  # numpy: any(a and b); 0/1 bytes stay 0/1
        fadd, fmul = b.or_, b.and_
    else:
        fadd, fmul = (b.fadd, b.fmul) if U.is_float(dt) else (b.add, b.mul)
    with U.for_range(b, m, name="i") as i:
        r = row_of(i)
        with U.for_range(b, n, name="j0") as j:
            acc.store(b, [r, j], zero)
        with U.for_range(b, k, name="p") as p:
            av = U.cast_value(b, a.load(b, [i, p]), a.dtype, dt)
            with U.for_range(b, n, name="j") as j:
                bv = U.cast_value(b, c.load(b, [p, j]), c.dtype, dt)
                cur = acc.load(b, [r, j])
                acc.store(b, [r, j], fadd(cur, fmul(av, bv)))
        if epilogue is not None:
            dtypes = [dt] + [var.dtype for _, var in extras]
            with U.for_range(b, n, name="je") as j:
                vals = [acc.load(b, [r, j])] + [v.load(b, [i, j]) for v in views]
                o.store(b, [i, j], emit_scalar(ctx, epilogue, vals, dtypes, out.dtype))
    return out


def _emit_gemm_matmul(ctx, out_var, a, c, dt, epilogue, extras, packed_c=None):
    """Matrix-matrix products in float32/float64: the packed GEMM of gemm.py (prologues applied as
    A and B are packed), then the epilogue over the finished product. With packed_c (B packed
    once before a loop), a product small enough for one thread packs only A."""
    b = ctx.b
    m, k, n = a.shape[0], a.shape[1], c.shape[1]
    out = ctx.alloc(out_var, [m, n])
    m, n = out.shape
    o = Array(out.dtype, out.ptr, [m, n], b=b)
    views = []
    for arr, var in extras:
        for d in range(2):
            if var.type.shape[d] != 1:
                ctx.check_equal(out.shape[d], arr.shape[d], E_SHAPE)
        views.append(broadcast_view(arr, var, out.shape))
    acc = o if (epilogue is None or out.dtype == dt) else ctx.scratch(dt, [m, n])
    dims = (m, n, k)
    T = threads()
    if T > 1 and not (all(isinstance(d, int) for d in dims) and m * n * k < options.gemm_min_parallel):
        if packed_c is None:
            _parallel_gemm(ctx, dt, dims, a, c, acc, o, views, epilogue, extras, T)
            return out
        work = b.mul(b.mul(U.as_value(b, m), U.as_value(b, n)), U.as_value(b, k))
        with b.if_else(b.icmp_signed("<", work, U.i64(options.gemm_min_parallel))) as (small, large):
            with small:
                prepacked.emit_gemm_packed_b(ctx, dt, m, n, k, a, packed_c, acc.ptr, n)
                if epilogue is not None:
                    _emit_epilogue(ctx, dt, m, n, acc, o, views, epilogue, extras)
            with large:
                _parallel_gemm(ctx, dt, dims, a, c, acc, o, views, epilogue, extras, T)
        return out
    if packed_c is not None:
        prepacked.emit_gemm_packed_b(ctx, dt, m, n, k, a, packed_c, acc.ptr, n)
    else:
        emit_gemm(ctx, dt, m, n, k, a, c, acc.ptr, n)
    if epilogue is not None:
        _emit_epilogue(ctx, dt, m, n, acc, o, views, epilogue, extras)
    return out


def _emit_epilogue(ctx, dt, m, n, acc, o, views, epilogue, extras):
    b = ctx.b
    dtypes = [dt] + [var.dtype for _, var in extras]
    with U.loop_nest(b, [m, n], name="ep") as (i, j):
        vals = [acc.load(b, [i, j])] + [v.load(b, [i, j]) for v in views]
        o.store(b, [i, j], emit_scalar(ctx, epilogue, vals, dtypes, o.dtype))


def _ir_values(obj, found):
    """The IR values a loader (Array or Prologue) is made of, in a fixed order."""
    if isinstance(obj, Prologue):
        for v in obj.views:
            _ir_values(v, found)
    elif isinstance(obj, Array):
        for x in [obj.ptr] + list(obj.shape) + list(obj.strides):
            _ir_values(x, found)
    elif isinstance(obj, ir.Value) and all(x is not obj for x in found):
        found.append(obj)
    return found


def _rebuild(obj, sub, ctx, r0=0, c0=0, shape=None):
    """A loader with its IR values replaced by sub(value) (the body's copies), viewing the
    shape[0] x shape[1] block at (r0, c0) of the original."""
    b = ctx.b
    if isinstance(obj, Prologue):
        views = [_rebuild(v, sub, ctx, r0, c0, shape) for v in obj.views]
        return Prologue(ctx, obj.comp, views, obj.dtypes)
    strides = [sub(x) for x in obj.strides]
    ptr = sub(obj.ptr)
    off = U.add(b, U.mul(b, r0, strides[0]), U.mul(b, c0, strides[1]))
    if not (isinstance(off, int) and off == 0):
        ptr = b.gep(ptr, [U.as_value(b, off)], source_etype=U.ll_type(obj.dtype))
    arr = Array(obj.dtype, ptr, [sub(x) for x in obj.shape] if shape is None else shape, strides)
    arr.contiguous = obj.contiguous
    return arr


def _select(b, cond, x, y):
    if isinstance(cond, bool):
        return x if cond else y
    return b.select(cond, U.as_value(b, x), U.as_value(b, y))


def _parallel_gemm(ctx, dt, dims, a, c, acc, o, views, epilogue, extras, T):
    """The product (and epilogue) with C split into T contiguous ranges of whole tiles (columns, or rows)
    on the module's pool, each thread packing its own operands; one thread when the product turns out
    small at run time."""
    b = ctx.b
    m, n, k = dims
    L, MR, NV, KC, MC, NC = params(dt)

    def split_rows(b, M, N):
        """Splitting along N every thread packs all of A, along M all of B: duplicate the smaller."""
        if isinstance(M, int) and isinstance(N, int):
            return M > N
        return b.icmp_signed(">", U.as_value(b, M), U.as_value(b, N))

    def tiles(b, M, N):
        rows = split_rows(b, M, N)
        return rows, _select(b, rows, MR, NV * L), U.as_value(b, _select(b, rows, M, N))

    rows, tile, extent = tiles(b, m, n)
    chunks = b.udiv(b.add(extent, b.sub(U.as_value(b, tile), U.i64(1))), U.as_value(b, tile))
    na, nb = pack_sizes(b, dt, m, n, k)
    packs = [Parts(ctx, dt, na, T), Parts(ctx, dt, nb, T)]
    work = b.mul(b.mul(U.as_value(b, m), U.as_value(b, n)), U.as_value(b, k))
    serial = b.or_(b.icmp_signed("<", work, U.i64(options.gemm_min_parallel)), b.icmp_signed("<", chunks, U.i64(2)))
    found = []
    for x in [a, c, acc, o] + views + [m, n, k] + [v for p in packs for v in p.values()]:
        _ir_values(x, found)

    def emit(bctx, vals, tid, q0, q1):
        bb = bctx.b
        mapping = {id(x): v for x, v in zip(found, vals)}

        def sub(x):
            return mapping[id(x)] if isinstance(x, ir.Value) else x

        M, N, K = sub(m), sub(n), sub(k)
        rows, tile, extent = tiles(bb, M, N)
        tile = U.as_value(bb, tile)
        start = bb.mul(q0, tile)
        length = U.smax(bb, bb.sub(U.smin(bb, bb.mul(q1, tile), extent), start), U.i64(0))
        r0, c0 = _select(bb, rows, start, 0), _select(bb, rows, 0, start)
        Ms, Ns = _select(bb, rows, length, M), _select(bb, rows, N, length)
        A = _rebuild(a, sub, bctx, r0=r0, shape=[Ms, K])
        B = _rebuild(c, sub, bctx, c0=c0, shape=[K, Ns])
        Cs = [_rebuild(x, sub, bctx, r0, c0, [Ms, Ns]) for x in [acc, o] + views]
        ap, bp = (part(bb, sub(p.arr.ptr), sub(p.stride), tid, dt) for p in packs)
        emit_gemm(bctx, dt, Ms, Ns, K, A, B, Cs[0].ptr, N, packs=(ap, bp))
        if epilogue is not None:
            _emit_epilogue(bctx, dt, Ms, Ns, Cs[0], Cs[1], Cs[2:], epilogue, extras)

    run_parallel(ctx, "symcnn_gemm_part", found, chunks, T, emit, serial=serial)


def _packable_right_operand(node):
    """The variable a float matrix-matrix product (Dot, or FusedDot without a B prologue) reads
    as its right operand B, as it is in memory; else None."""
    if isinstance(node.op, Dot):
        x, y = node.inputs
    elif isinstance(node.op, FusedDot) and node.op.prologue_b is None:
        a_vars, b_vars, _ = node.op.split(node.inputs)
        if len(b_vars) != 1:
            return None
        x, y = a_vars[0], b_vars[0]   # (x: the first of A's prologue inputs, of A's ndim)
    else:
        return None
    dt = node.op.product_dtype(node) if isinstance(node.op, FusedDot) else node.outputs[0].dtype
    if x.ndim != 2 or y.ndim != 2 or dt not in ("float32", "float64") or y.dtype != dt:
        return None
    return y


def prepack_invariant_operands(ctx, nodes, invariant):
    """Before a loop whose body runs `nodes`: pack once, with ctx at the loop's entry, the right
    operands B of its matrix products that do not change from step to step (`invariant`: {inner
    variable: Array}, a scan's non-sequences). Returns {variable: packed buffer pointer}, for the
    body's context (`packed_operands`): those products then pack only their left operand per
    step (an RNN's recurrent weight is packed once per call instead of once per step)."""
    if not options.packed_gemm:
        return {}
    packed = {}
    for node in nodes:
        y = _packable_right_operand(node)
        if y is None or y not in invariant or y in packed:
            continue
        arr = invariant[y]
        K, N = arr.shape
        buf = ctx.scratch(y.dtype, [prepacked.b_size(ctx.b, y.dtype, K, N)])
        prepacked.pack_b(ctx, y.dtype, arr, K, N, buf.ptr)
        packed[y] = buf.ptr
    return packed


def _packed(ctx, node):
    y = _packable_right_operand(node)
    return None if y is None else getattr(ctx, "packed_operands", {}).get(y)


@lower.register(Dot)
def lower_dot(ctx, node, ins):
    x, y = ins
    ctx.check_equal(x.shape[-1], y.shape[0], E_SHAPE)
    a, c = as_matrix(x, row=True), as_matrix(y, row=False)
    out_var = node.outputs[0]
    return [emit_matmul(ctx, out_var, x.ndim, y.ndim, a, c, out_var.dtype, packed_c=_packed(ctx, node))]


@lower.register(FusedDot)
def lower_fused_dot(ctx, node, ins):
    op = node.op
    a_vars, b_vars, e_vars = op.split(node.inputs)
    a_arrs, b_arrs, e_arrs = op.split(ins)
    a = _operand(ctx, op.prologue_a, a_vars, a_arrs, row=True)
    c = _operand(ctx, op.prologue_b, b_vars, b_arrs, row=False)
    x_ndim, y_ndim = a_vars[0].ndim, b_vars[0].ndim
    ctx.check_equal(a.shape[1], c.shape[0], E_SHAPE)
    return [emit_matmul(ctx, node.outputs[0], x_ndim, y_ndim, a, c, op.product_dtype(node),
                        op.epilogue, list(zip(e_arrs, e_vars)), packed_c=_packed(ctx, node))]
