"""Maxima of rows of float or 32- and 64-bit integer values in vectors (numpy's max: a NaN
anywhere wins).

One chain of compare-and-select waits on each step's latency and never vectorises (the NaN rule
keeps LLVM from seeing a max; an argmax's index rides along): a (1024, 4096) float32 max over rows
took 8 ms that way, an int32 argmax 4.5 ms. RowMax keeps CHAINS independent L-lane maxima, as
RowSum keeps partials (kernels/row_sum.py): the row's whole vectors in turn (vector j into chain j
mod CHAINS), the vectors past its last whole group into the first chain, its last partial vector
loaded masked (the lanes past the row read as the dtype's lowest value, -inf for floats). The total
folds the chains, then their lanes, with the same rule. Which of several equal values is kept (0.0
or -0.0, one NaN or another) may differ from a scalar walk; the value does not. RowArgmax keeps
each lane's index beside its value, and picks as numpy does whatever the order.
"""
import numpy as np

from llvmlite import ir

from .. import irutil as U
from .row_sum import CHAINS, row_vectors_to_chains

# The dtypes RowMax and RowArgmax take (narrower integers keep the scalar walks: their many lanes
# would each carry an int64 index).
VECTOR_DTYPES = ("float32", "float64", "int32", "int64", "uint32", "uint64")


def greater(b, v, best, dtype):
    """v beats best (scalars or vectors): larger, or NaN where best is not (numpy propagates the
    first NaN)."""
    if U.is_float(dtype):
        return b.or_(b.fcmp_ordered(">", v, best),
                     b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best)))
    return (b.icmp_unsigned if U.is_unsigned(dtype) else b.icmp_signed)(">", v, best)


def same(b, v, best, dtype):
    """v ties with best (scalars or vectors): equal, or both NaN."""
    if U.is_float(dtype):
        return b.or_(b.fcmp_ordered("==", v, best),
                     b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_unordered("uno", best, best)))
    return b.icmp_unsigned("==", v, best)


class RowMax:
    """The maxima of one reduction, set to the lowest value where the RowMax is made; or, given `at` (a pointer
    to state_type(dt), e.g. one of many maxima's slot in a stack array), kept there as they are."""

    walk_name = "symcnn_reduce_max"   # (reduce.vector_rows: the threads' function)
    tag = "max"   # (reduce.vector_rows: its loops' names)

    def __init__(self, ctx, dt, at=None):
        self.ctx, self.dt = ctx, dt
        self.et = U.ll_type(dt)
        self.L = U.lanes(dt)
        self.vt = ir.VectorType(self.et, self.L)
        if at is None:
            self.accs = [ctx.local(self.vt, _lowest(self.vt, dt)) for _ in range(CHAINS)]
        else:
            b = ctx.b
            self.accs = [b.gep(at, [U.i64(0), ir.Constant(ir.IntType(32), c)], inbounds=True) for c in range(CHAINS)]

    @staticmethod
    def total_dtype(dt):
        return dt

    @staticmethod
    def state_type(dt):
        return ir.ArrayType(ir.VectorType(U.ll_type(dt), U.lanes(dt)), CHAINS)

    @staticmethod
    def zero(ctx, dt, at):
        """Set the maxima at `at` (as RowMax(ctx, dt, at) keeps them) to the lowest value."""
        vt = ir.VectorType(U.ll_type(dt), U.lanes(dt))
        for c in range(CHAINS):
            ctx.b.store(_lowest(vt, dt), ctx.b.gep(at, [U.i64(0), ir.Constant(ir.IntType(32), c)], inbounds=True))

    def _take(self, acc, v):
        b = self.ctx.b
        cur = b.load(acc, typ=self.vt)
        b.store(b.select(greater(b, v, cur, self.dt), v, cur), acc)

    def add_row(self, row, rowlen):
        """Take the rowlen (an int or an i64 value) values at pointer row into the maxima."""
        row_vectors_to_chains(self.ctx, self.dt, row, rowlen, lambda c, v, j: self._take(self.accs[c], v),
                              _lowest(self.vt, self.dt), "m")

    def total(self):
        """The maximum of every value taken so far (the lowest value if none)."""
        b = self.ctx.b
        best = b.load(self.accs[0], typ=self.vt)
        for acc in self.accs[1:]:
            v = b.load(acc, typ=self.vt)
            best = b.select(greater(b, v, best, self.dt), v, best)
        n = self.L
        while n > 1:   # the lanes pairwise, as irutil.lane_sum adds them
            half = n // 2
            lo = b.shuffle_vector(best, best, ir.Constant(ir.VectorType(U.I32, half), list(range(half))))
            hi = b.shuffle_vector(best, best, ir.Constant(ir.VectorType(U.I32, half), list(range(half, n))))
            best = b.select(greater(b, hi, lo, self.dt), hi, lo)
            n = half
        return b.extract_element(best, ir.Constant(U.I32, 0))


def lowest_value(dtype):
    """dtype's lowest value (a constant): -inf, or the integer type's minimum (False)."""
    if U.is_float(dtype):
        return U.const(dtype, float("-inf"))
    return U.const(dtype, int(np.iinfo(dtype).min) if dtype != "bool" else 0)


def _lowest(vt, dt):
    return ir.Constant(vt, [lowest_value(dt)] * vt.count)


def row_max(ctx, dt, ptr, rowlen):
    """The maximum of the rowlen values at pointer ptr, by RowMax."""
    m = RowMax(ctx, dt)
    m.add_row(ptr, rowlen)
    return m.total()


class RowArgmax:
    """numpy's argmax of one row (the index of the first largest value, of the first NaN if any):
    RowMax's chains with each lane's index beside its value. A lane keeps the first of its values
    that beats the others (its indices only grow); the total takes, of the chains' and lanes' picks,
    the one that beats the rest or ties with a smaller index, which does not depend on the order.
    Lanes past the row (loaded as the lowest value) carry indices past it: a value of the row ties or
    beats them with a smaller index."""

    walk_name = "symcnn_reduce_argmax"   # (reduce.vector_rows: the threads' function)
    tag = "argmax"   # (reduce.vector_rows: its loops' names)
    row_index = True   # (reduce: only rows that are the whole reduction, whose indices are the row's)

    def __init__(self, ctx, dt, at=None):
        self.ctx, self.dt = ctx, dt
        self.L = U.lanes(dt)
        self.vt = ir.VectorType(U.ll_type(dt), self.L)
        self.it = ir.VectorType(U.I64, self.L)
        if at is None:
            at = ctx.local(self.state_type(dt))
            self.zero(ctx, dt, at)
        b = ctx.b
        i32 = ir.IntType(32)
        self.vals = [b.gep(at, [U.i64(0), ir.Constant(i32, 0), ir.Constant(i32, c)], inbounds=True) for c in range(CHAINS)]
        self.idxs = [b.gep(at, [U.i64(0), ir.Constant(i32, 1), ir.Constant(i32, c)], inbounds=True) for c in range(CHAINS)]

    @staticmethod
    def total_dtype(dt):
        return "int64"

    @staticmethod
    def state_type(dt):
        L = U.lanes(dt)
        return ir.LiteralStructType([ir.ArrayType(ir.VectorType(U.ll_type(dt), L), CHAINS),
                                     ir.ArrayType(ir.VectorType(U.I64, L), CHAINS)])

    @staticmethod
    def zero(ctx, dt, at):
        """Set the picks at `at` to the lowest value at index INT64_MAX (which any value of the row beats
        or ties)."""
        L = U.lanes(dt)
        b = ctx.b
        i32 = ir.IntType(32)
        none = ir.Constant(ir.VectorType(U.I64, L), [2 ** 63 - 1] * L)
        for c in range(CHAINS):
            b.store(_lowest(ir.VectorType(U.ll_type(dt), L), dt),
                    b.gep(at, [U.i64(0), ir.Constant(i32, 0), ir.Constant(i32, c)], inbounds=True))
            b.store(none, b.gep(at, [U.i64(0), ir.Constant(i32, 1), ir.Constant(i32, c)], inbounds=True))

    def _pick(self, v, i, best, at):
        b = self.ctx.b
        return b.or_(greater(b, v, best, self.dt), b.and_(same(b, v, best, self.dt), b.icmp_signed("<", i, at)))

    def _take(self, c, v, j):
        b = self.ctx.b
        best = b.load(self.vals[c], typ=self.vt)
        at = b.load(self.idxs[c], typ=self.it)
        i = b.add(U.splat(b, j, self.it), ir.Constant(self.it, list(range(self.L))))
        take = self._pick(v, i, best, at)
        b.store(b.select(take, v, best), self.vals[c])
        b.store(b.select(take, i, at), self.idxs[c])

    def add_row(self, row, rowlen):
        """Take the rowlen values at pointer row, indices 0 .. rowlen - 1."""
        row_vectors_to_chains(self.ctx, self.dt, row, rowlen, self._take, _lowest(self.vt, self.dt), "a")

    def total(self):
        """The index of the row's pick."""
        b = self.ctx.b
        best, at = b.load(self.vals[0], typ=self.vt), b.load(self.idxs[0], typ=self.it)
        for c in range(1, CHAINS):
            v, i = b.load(self.vals[c], typ=self.vt), b.load(self.idxs[c], typ=self.it)
            take = self._pick(v, i, best, at)
            best, at = b.select(take, v, best), b.select(take, i, at)
        n = self.L
        while n > 1:
            half = n // 2
            lo_m = ir.Constant(ir.VectorType(U.I32, half), list(range(half)))
            hi_m = ir.Constant(ir.VectorType(U.I32, half), list(range(half, n)))
            lo, hi = b.shuffle_vector(best, best, lo_m), b.shuffle_vector(best, best, hi_m)
            ilo, ihi = b.shuffle_vector(at, at, lo_m), b.shuffle_vector(at, at, hi_m)
            take = self._pick(hi, ihi, lo, ilo)
            best, at = b.select(take, hi, lo), b.select(take, ihi, ilo)
            n = half
        return b.extract_element(at, ir.Constant(U.I32, 0))
