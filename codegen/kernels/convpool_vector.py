"""The pooling epilogue and the gradient-routing prologue of the fused conv kernels
(codegen/kernels/convpool.py), for any window and stride, on the conv tile of one image (K rows of
`tile_row` values; conv row r of filter k at k * tile_row + r * row).

Both use the pooling kernels' vector mechanism (pool_vector.py): Lb pooled columns at a time, each
window row's values loaded as s loads of Lb lanes per block and split into the window's column
phases (load_phases), or interleaved back (store_phases) -- pool_vector's, with no vector wider
than a block (pool_vector loads s * Lb lanes at once); pool_vector.columns covers a pooled row with
such blocks and leaves the last columns (and windows pool_vector.plan does not vectorise: strides
above 4, windows wider than 16) to a scalar loop with the window unrolled. Windows are visited in
the reference's order (rows, then columns), so the vector and scalar code give the same bits.

  pool_tile     out[n, k, i, j] = the window's max (or sum times op.window_scale()) [+ b[k]];
                with max pooling, mask[n, k, i, j] = the bits of the window positions equal to it.
                The conv tile's rows are padded for the epilogue (TILE_PAD lanes past a row's last
                column, as directconv.py's row stride and the im2col scratch are): when a block of
                L pooled columns reads no further than that, the row is covered by L-column blocks
                with masked stores (a short row such as LeNet's 12 pooled columns is one block)
  scatter_tile  tile[window position of every set bit] = g[k, i, j] (average pools: g times the
                window scale at every position); windows that do not overlap store (positions of
                no window are left alone), overlapping ones add to what is there
"""
from llvmlite import ir

from .. import irutil as U
from ..irutil import gep
from . import pool_vector as V
from .reduce import greater, lowest_value

UNROLL_ROWS = 16   # window rows unrolled in a vector block (more: the scalar loop)
TILE_PAD = 2       # the conv tile's rows are readable this many vectors (L values) past their last column


def _gather(b, srcs, picks, Lb):
    """The <Lb> vector whose lane l is srcs[picks[l][0]][picks[l][1]] (srcs: <Lb> vectors), by
    two-operand shuffles: no vector wider than Lb lanes is formed (a target with narrower registers
    than s * Lb gets no wide values to split)."""
    used = sorted({k for k, _ in picks})
    if len(used) == 1:
        return b.shuffle_vector(srcs[used[0]], srcs[used[0]], _mask([t for _, t in picks]))
    acc = None
    for k in used:
        if acc is None:
            acc, first = srcs[k], k
            continue
        if acc is srcs[first]:   # the first pair: lanes of either source by their own index
            m = [t if s_ == first else (Lb + t if s_ == k else l) for l, (s_, t) in enumerate(picks)]
        else:
            m = [Lb + t if s_ == k else l for l, (s_, t) in enumerate(picks)]
        acc = b.shuffle_vector(acc, srcs[k], _mask(m))
    return acc


def _mask(values):
    return ir.Constant(ir.VectorType(U.I32, len(values)), values)


def load_phases(b, vp, row, c0, Lb):
    """pool_vector.load_phases with Lb-lane loads: [values at columns c0 + l * s + v, l < Lb] for
    v < ws (row points at column 0)."""
    s = vp.s
    out = []
    for q in range(vp.q + 1):
        chunks = [V.load(b, vp, gep(b, row, U.add(b, c0, q * s + k * Lb), vp.et), Lb) for k in range(s)]
        for r in range(s):
            if q * s + r >= vp.ws:
                break
            out.append(chunks[0] if s == 1 else
                       _gather(b, chunks, [divmod(l * s + r, Lb) for l in range(Lb)], Lb))
    return out


def store_phases(b, vp, row, c0, Lb, parts, add):
    """pool_vector.store_phases (no carry) with Lb-lane stores: parts[v] goes to columns
    c0 + l * s + v (0 to the columns of no window offset); add: added to what is there."""
    s = vp.s
    zero = V.const(vp, 0.0, Lb)
    for q in range(vp.q + 1):
        srcs = [parts[q * s + r] if q * s + r < vp.ws else zero for r in range(s)]
        for k in range(s):
            cols = [k * Lb + t for t in range(Lb)]
            v = srcs[0] if s == 1 else _gather(b, srcs, [(c % s, c // s) for c in cols], Lb)
            dst = gep(b, row, U.add(b, c0, q * s + k * Lb), vp.et)
            if add:
                v = b.fadd(V.load(b, vp, dst, Lb), v)
            V.store(b, vp, v, dst)


def _offsets(op):
    """(bit, u, v) for every position of the pooling window, in the reference's order."""
    return [(u * op.ws[1] + v, u, v) for u in range(op.ws[0]) for v in range(op.ws[1])]


def vector_plan(op, dt):
    """The pool_vector.Plan of the fused op's window columns, or None (scalar code)."""
    if op.ws[0] > UNROLL_ROWS:
        return None
    return V.plan([dt], op.ws[1], op.stride[1])


def overlapping(op):
    """Whether two windows share conv positions (the routing then adds instead of storing)."""
    return op.ws[0] > op.stride[0] or op.ws[1] > op.stride[1]


def masked_blocks(op, vp):
    """Whether L-column blocks with masked stores may cover a pooled row: the last one reads at
    most q * s + s * L - ws values past the row's last window, which must stay in the tile's
    padding."""
    return vp is not None and vp.q * vp.s + vp.s * vp.L - op.ws[1] <= TILE_PAD * vp.L


def covers(op, OH, OW):
    """Whether the windows cover every conv position, with static sizes (else some are never
    routed a gradient)."""
    return (tuple(op.ws) == tuple(op.stride) and isinstance(OH, int) and isinstance(OW, int)
            and OH % op.ws[0] == 0 and OW % op.ws[1] == 0)


def reduce_window(b, op, dt, vals, mt, zero_bits, one_bits, scale):
    """(pooled value, bits or None) of a window's values (scalars or vectors alike); max pooling with
    mt None: no bits."""
    if op.pool != "max":
        m = vals[0]
        for val in vals[1:]:
            m = b.fadd(m, val)
        return (b.fmul(m, scale) if op.pool != "sum" else m), None
    m = lowest_value(dt) if not isinstance(vals[0].type, ir.VectorType) else \
        ir.Constant(vals[0].type, [lowest_value(dt)] * vals[0].type.count)
    for val in vals:
        m = b.select(greater(b, val, m, dt), val, m)
    if mt is None:
        return m, None
    bits = zero_bits
    for (bit, _, _), val in zip(_offsets(op), vals):
        bits = b.or_(bits, b.select(b.fcmp_ordered("==", val, m), one_bits(bit), zero_bits))
    return m, bits


def pool_tile(ctx, op, dt, mdt, tile, tile_row, row, n, K, PH, PW, OW, bptr, optr, mptr):
    """The pooled values (+ b[k] with bptr) of image n into optr (and the tie mask into mptr) from
    the conv tile (mptr None: no tie mask)."""
    b = ctx.b
    mdt = mdt if mptr is not None else None
    et, mt = U.ll_type(dt), (U.ll_type(mdt) if mdt is not None else None)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    vp = vector_plan(op, dt)

    def scale(Lb=None):
        return U.const(dt, op.window_scale()) if Lb is None else V.const(vp, op.window_scale(), Lb)

    masked = masked_blocks(op, vp)
    if masked:
        L = vp.L
        i1v = ir.VectorType(U.I1, L)
        fstore = U.declare(ctx.module, f"llvm.masked.store.v{L}{'f32' if dt == 'float32' else 'f64'}.p0",
                           ir.VoidType(), [ir.VectorType(et, L), U.PTR, U.I32, i1v])
        mstore = U.declare(ctx.module, f"llvm.masked.store.v{L}i{mt.width}.p0", ir.VoidType(),
                           [ir.VectorType(mt, L), U.PTR, U.I32, i1v]) if mt is not None else None
        lane = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))
    with U.for_range(b, K, name="k") as k:
        bk = b.load(gep(b, bptr, k, et), typ=et) if bptr is not None else None
        tk = gep(b, tile, U.mul(b, k, tile_row), et)
        obase = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
        with U.for_range(b, PH, name="pi") as i:
            rows = [gep(b, tk, U.mul(b, U.add(b, U.mul(b, i, sh), u), row), et) for u in range(op.ws[0])]
            orow = U.add(b, obase, U.mul(b, i, PW))

            def block(j, Lb, keep=None):
                c0 = U.mul(b, j, sw)
                vals = [val for r in rows for val in load_phases(b, vp, r, c0, Lb)]
                mvt = ir.VectorType(mt, Lb) if mt is not None else None
                zero = ir.Constant(mvt, [ir.Constant(mt, 0)] * Lb) if mt is not None else None
                m, bits = reduce_window(b, op, dt, vals, mt, zero,
                                  lambda bit: ir.Constant(mvt, [ir.Constant(mt, 1 << bit)] * Lb), scale(Lb))
                if bk is not None:
                    m = b.fadd(m, V.splat(b, vp, bk, Lb))
                o = U.add(b, orow, j)
                if keep is not None:   # the pooled columns that exist
                    b.call(fstore, [m, gep(b, optr, o, et), ir.Constant(U.I32, U.itemsize(dt)), keep])
                    if bits is not None:
                        b.call(mstore, [bits, gep(b, mptr, o, mt), ir.Constant(U.I32, 1), keep])
                    return
                V.store(b, vp, m, gep(b, optr, o, et))
                if bits is not None:
                    b.store(bits, gep(b, mptr, o, mt), align=1)

            if masked:
                with U.for_range(b, PW, step=L, name="pj") as j:
                    left = U.splat(b, b.sub(U.as_value(b, PW), j), ir.VectorType(U.I64, L))
                    block(j, L, b.icmp_signed("<", lane, left))
            else:
                start = V.columns(b, vp, OW, 0, 0, PW, block, True) if vp is not None else 0
                with U.for_range(b, PW, start=start, name="pj") as j:
                    c0 = U.mul(b, j, sw)
                    vals = [b.load(gep(b, rows[u], U.add(b, c0, v), et), typ=et) for _, u, v in offs]
                    zero = ir.Constant(mt, 0) if mt is not None else None
                    m, bits = reduce_window(b, op, dt, vals, mt, zero, lambda bit: ir.Constant(mt, 1 << bit), scale())
                    o = U.add(b, orow, j)
                    b.store(b.fadd(m, bk) if bk is not None else m, gep(b, optr, o, et))
                    if bits is not None:
                        b.store(bits, gep(b, mptr, o, mt))


def scatter_tile(ctx, op, dt, mt, tile, tile_row, row, K, PH, PW, OW, gptr, mptr):
    """Route one image's pooled gradient gptr (K, PH, PW) into the conv tile: through the tie mask
    mptr (max pooling; mt its LLVM type), or spread over the window (average pools)."""
    b = ctx.b
    et = U.ll_type(dt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    add = overlapping(op)
    vp = vector_plan(op, dt)
    size = U.itemsize(dt)
    with U.for_range(b, K, name="k") as k:
        tk = gep(b, tile, U.mul(b, k, tile_row), et)
        base = U.mul(b, k, plane)
        with U.for_range(b, PH, name="pi") as i:
            rows = [gep(b, tk, U.mul(b, U.add(b, U.mul(b, i, sh), u), row), et) for u in range(op.ws[0])]
            prow = U.add(b, base, U.mul(b, i, PW))

            def block(j, Lb):
                p = U.add(b, prow, j)
                vt = ir.VectorType(et, Lb)
                gp = b.load(gep(b, gptr, p, et), typ=vt, align=size)
                zero = V.const(vp, 0.0, Lb)
                if mt is None:
                    if op.pool != "sum":
                        gp = b.fmul(gp, V.const(vp, op.window_scale(), Lb))
                    parts = {(u, v): gp for _, u, v in offs}
                else:
                    mvt = ir.VectorType(mt, Lb)
                    bits = b.load(gep(b, mptr, p, mt), typ=mvt, align=1)
                    mzero = ir.Constant(mvt, [ir.Constant(mt, 0)] * Lb)
                    parts = {}
                    for bit, u, v in offs:
                        one = ir.Constant(mvt, [ir.Constant(mt, 1 << bit)] * Lb)
                        parts[u, v] = b.select(b.icmp_unsigned("!=", b.and_(bits, one), mzero), gp, zero)
                c0 = U.mul(b, j, sw)
                for u, r in enumerate(rows):
                    store_phases(b, vp, r, c0, Lb, [parts[u, v] for v in range(op.ws[1])], add)

            start = V.columns(b, vp, OW, 0, 0, PW, block, not add) if vp is not None else 0
            zero = U.const(dt, 0.0)
            with U.for_range(b, PW, start=start, name="pj") as j:
                p = U.add(b, prow, j)
                gp = b.load(gep(b, gptr, p, et), typ=et)
                c0 = U.mul(b, j, sw)
                if mt is None and op.pool != "sum":
                    gp = b.fmul(gp, U.const(dt, op.window_scale()))
                bits = b.load(gep(b, mptr, p, mt), typ=mt) if mt is not None else None
                for bit, u, v in offs:
                    val = gp
                    if bits is not None:
                        hit = b.icmp_unsigned("!=", b.and_(bits, ir.Constant(mt, 1 << bit)), ir.Constant(mt, 0))
                        val = b.select(hit, gp, zero)
                    dst = gep(b, rows[u], U.add(b, c0, v), et)
                    b.store(b.fadd(b.load(dst, typ=et), val) if add else val, dst)
