"""The vector interior of the pooling kernels (pool.py): Lb consecutive output columns of one
output row at a time, for windows that lie inside the image.

With column stride s and window width ws (both static), output column j + l reads input
columns (j + l) * s - pad + v, v < ws. Offset v = q * s + r falls in phase r of the
s * Lb-wide block of contiguous input columns starting at (j + q) * s - pad:

  loads    one wide load per block q <= (ws - 1) // s, then a shuffle per phase r picks the
           lanes l * s + r (for s = 2: the even and odd columns, as the conv-pool epilogue does);
  stores   (the gradients) the phases' contributions are interleaved back into the block (0 in
           the lanes of no window offset) and the block is stored, or added to what is there
           when windows overlap.

A block reaches up to s - 1 columns past its last window, so `columns` runs blocks only as far
as they stay inside the row; the rest goes to the scalar interior loop. Block widths are the
target's lane count L (a loop), then L/2, L/4 (once each, for short rows such as 12 pooled
columns at L = 16); kernels whose blocks may be redone cover the last columns with one block
overlapping the previous one instead. Each window's elements are visited in the scalar loop's order, so pooled
values are the scalar kernel's bit for bit; where gradient windows overlap, an input element's
sum is taken offset by offset (the reference's order), not window by window.
"""
from llvmlite import ir

from .. import irutil as U
from ..irutil import floordiv, gep

MAX_STRIDE = 4        # column strides vectorised (an s * L-wide block per load)
MAX_WIDTH = 16        # window widths vectorised (the phases are unrolled)


class Plan:
    """The vector interior of one kernel: dtype, column stride s, window width ws, widths."""

    def __init__(self, dtype, s, ws, L):
        self.dtype, self.s, self.ws, self.L = dtype, s, ws, L
        self.et = U.ll_type(dtype)
        self.q = (ws - 1) // s
        w, self.widths = L, []
        while w >= max(2, L // 4):
            self.widths.append(w)
            w //= 2


def plan(dtypes, ws, st):
    """A Plan when every buffer is float of one dtype and the column stride and window width
    are static and small; else None (scalar kernel)."""
    dt = str(dtypes[0])
    if dt not in ("float32", "float64") or any(str(d) != dt for d in dtypes):
        return None
    if not (isinstance(ws, int) and isinstance(st, int)) or st > MAX_STRIDE or ws > MAX_WIDTH:
        return None
    L = U.lanes(dt)
    if L < 2:
        return None
    return Plan(dt, st, ws, L)


def columns(b, p, w, pad, jlo, jhi, block, rewrite):
    """block(j, Lb) for vector blocks covering output columns from jlo; returns the first column
    left to the scalar loop. Blocks stay inside [jlo, jhi) and inside the row of w columns.

    rewrite: a block may run again over columns a block already did (it stores the same values:
    the forward kernels, and gradients whose windows do not overlap). The last columns then get one
    block ending at the last column, overlapping the one before, and nothing is left to the scalar
    loop unless fewer than the narrowest block's columns exist. Otherwise blocks of L, then of
    L/2, L/4 (at most one each), and the scalar loop takes the rest."""
    L = p.L
    # the block of window j + Lb - 1 ends at column (j + q + Lb) * s - 1 - pad <= w - 1
    cap = U.sub(b, floordiv(b, U.add(b, w, pad), p.s), p.q)
    end = U.as_value(b, U.smin(b, jhi, cap))
    full = U.as_value(b, U.smax(b, U.sub(b, end, jlo), 0))
    nfull = b.sdiv(full, U.i64(L))
    with U.for_range(b, nfull, name="pv") as t:
        block(b.add(U.as_value(b, jlo), b.mul(t, U.i64(L))), L)
    done = b.add(U.as_value(b, jlo), b.mul(nfull, U.i64(L)))
    rest = b.srem(full, U.i64(L))
    smallest = p.widths[-1]
    if rewrite:
        # after a full block: one more, ending at `end`
        with b.if_then(b.and_(b.icmp_signed(">", rest, U.i64(0)), b.icmp_signed(">", nfull, U.i64(0)))):
            block(b.sub(end, U.i64(L)), L)
        short = b.icmp_signed("==", nfull, U.i64(0))
    else:
        short = ir.Constant(U.I1, 1)
    for Lb in p.widths[1:]:
        at = b.add(done, b.and_(rest, U.i64(L - 2 * Lb)))
        with b.if_then(b.and_(short, b.icmp_signed("!=", b.and_(rest, U.i64(Lb)), U.i64(0)))):
            block(at, Lb)
    left = b.and_(rest, U.i64(smallest - 1))
    if not rewrite:
        return b.add(done, b.and_(rest, U.i64(L - smallest)))
    # fewer than `smallest` columns left after the halving blocks: one block ending at `end`
    last = b.and_(short, b.and_(b.icmp_signed(">", left, U.i64(0)), b.icmp_signed(">=", full, U.i64(smallest))))
    with b.if_then(last):
        block(b.sub(end, U.i64(smallest)), smallest)
    covered = b.or_(b.icmp_signed(">", nfull, U.i64(0)), b.icmp_signed(">=", full, U.i64(smallest)))
    return b.select(covered, end, U.as_value(b, jlo))


def _vt(p, n):
    return ir.VectorType(p.et, n)


def _mask(values):
    return ir.Constant(ir.VectorType(U.I32, len(values)), values)


def splat(b, p, v, Lb):
    return U.splat(b, v, _vt(p, Lb))


def const(p, value, Lb):
    return ir.Constant(_vt(p, Lb), [U.const(p.dtype, value)] * Lb)


def load(b, p, ptr, Lb):
    return b.load(ptr, typ=_vt(p, Lb), align=U.itemsize(p.dtype))


def store(b, p, v, ptr):
    b.store(v, ptr, align=U.itemsize(p.dtype))


def load_phases(b, p, row, c0, Lb):
    """[values at columns c0 + l * s + v, l < Lb] for v < ws: row points at column 0."""
    s = p.s
    out = []
    for q in range(p.q + 1):
        wide = load(b, p, gep(b, row, U.add(b, c0, q * s), p.et), s * Lb)
        for r in range(s):
            if q * s + r >= p.ws:
                break
            out.append(wide if s == 1 else b.shuffle_vector(wide, wide, _mask([l * s + r for l in range(Lb)])))
    return out


def _cat(b, x, y):
    nx, ny = x.type.count, y.type.count
    if ny < nx:
        y = b.shuffle_vector(y, y, _mask(list(range(ny)) + [0] * (nx - ny)))
    return b.shuffle_vector(x, y, _mask(list(range(nx)) + [nx + k for k in range(ny)]))


def _join(b, vs):
    """The concatenation of equal-length vectors."""
    if len(vs) == 1:
        return vs[0]
    h = (len(vs) + 1) // 2
    return _cat(b, _join(b, vs[:h]), _join(b, vs[h:]))


def store_phases(b, p, row, c0, Lb, parts, add):
    """The inverse of load_phases: parts[v] goes to columns c0 + l * s + v (0 to the lanes of no
    offset); add: added to what is there (overlapping windows) instead of stored over it."""
    s = p.s
    zero = const(p, 0.0, Lb)
    for q in range(p.q + 1):
        ph = [parts[q * s + r] if q * s + r < p.ws else zero for r in range(s)]
        wide = _join(b, ph)
        if s > 1:
            wide = b.shuffle_vector(wide, wide, _mask([r * Lb + l for l in range(Lb) for r in range(s)]))
        dst = gep(b, row, U.add(b, c0, q * s), p.et)
        if add:
            wide = b.fadd(load(b, p, dst, s * Lb), wide)
        store(b, p, wide, dst)
