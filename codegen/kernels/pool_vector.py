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


def _interleave(b, p, parts, q, Lb):
    """Block q of the contributions: lanes l * s + r = parts[q * s + r][l] (0 past the window)."""
    zero = const(p, 0.0, Lb)
    ph = [parts[q * p.s + r] if q * p.s + r < p.ws else zero for r in range(p.s)]
    wide = _join(b, ph)
    if p.s > 1:
        wide = b.shuffle_vector(wide, wide, _mask([r * Lb + l for l in range(Lb) for r in range(p.s)]))
    return wide


def store_phases(b, p, row, c0, Lb, parts, add, carry=None):
    """The inverse of load_phases: parts[v] goes to columns c0 + l * s + v (0 to the lanes of no
    offset); add: added to what is there (overlapping windows) instead of stored over it.

    carry (with add, when windows overlap in columns: q > 0): a stack slot of q * s values, the
    contributions past this block's s * Lb columns. They are added to the next block's columns
    (blocks follow one another) instead of to memory now, so each block reads and writes its
    own columns once (no load waits on a store of the block before, a store-forwarding stall)."""
    s = p.s
    if carry is None:
        for q in range(p.q + 1):
            wide = _interleave(b, p, parts, q, Lb)
            dst = gep(b, row, U.add(b, c0, q * s), p.et)
            if add:
                wide = b.fadd(load(b, p, dst, s * Lb), wide)
            store(b, p, wide, dst)
        return
    n, k = s * Lb, p.q * s
    total = None
    for q in range(p.q + 1):   # the blocks shifted into one vector of n + k columns
        wide = _interleave(b, p, parts, q, Lb)
        shifted = b.shuffle_vector(wide, const(p, 0.0, n),
                                   _mask([c - q * s if 0 <= c - q * s < n else n for c in range(n + k)]))
        total = shifted if total is None else b.fadd(total, shifted)
    cin = b.load(carry, typ=_vt(p, k))
    head = b.shuffle_vector(total, total, _mask(list(range(n))))
    head = b.fadd(head, b.shuffle_vector(cin, const(p, 0.0, k), _mask(list(range(k)) + [k] * (n - k))))
    b.store(b.shuffle_vector(total, total, _mask(list(range(n, n + k)))), carry)
    dst = gep(b, row, c0, p.et)
    store(b, p, b.fadd(load(b, p, dst, n), head), dst)


def carries(p, Lb_min):
    """Whether store_phases can carry this plan's column overlap (q * s values, at most a block)."""
    return 0 < p.q <= Lb_min


def new_carry(fctx, p):
    return fctx.local(_vt(p, p.q * p.s))


def clear_carry(b, p, slot):
    b.store(const(p, 0.0, p.q * p.s), slot)


def flush_carry(b, p, row, c, slot):
    """Add a carry's values to columns c .. c + q * s - 1 of the row."""
    k = p.q * p.s
    dst = gep(b, row, c, p.et)
    store(b, p, b.fadd(load(b, p, dst, k), b.load(slot, typ=_vt(p, k))), dst)
