"""Float64 sums of rows of float32 or float64 values in vectors, in a fixed order.

A sum of many values in one chain of adds waits on each add's latency (3-4 cycles): a bias
gradient's 13 MB took 4.3 ms that way. RowSum keeps CHAINS independent L-lane float64 partials
and adds each row into them in a fixed order: the row's whole vectors in turn (vector j into
partial j mod CHAINS), the vectors past its last whole group into the first partial, its last
partial vector (masked) into the first too; the total adds the partials in order, then their
lanes pairwise. The order depends only on the row lengths and the target's vector width, never
on threads or timing.
"""
from llvmlite import ir

from .. import irutil as U
from ..microkernels.directconv import masked_load

# Independent float64 vector partials (a first layer's bias gradient: 2.6 of a 5.3 ms
# weight-gradient step with one chain and every load masked).
CHAINS = 4


class RowSum:
    """Partials of one sum, zeroed where the RowSum is made (in a loop: at every iteration); or,
    given `at` (a pointer to CHAINS vectors of partials_type(dt), e.g. one of many sums' slot in a
    stack array), kept there as they are."""

    walk_name = "symcnn_reduce_sums"   # (reduce.vector_rows: the threads' function)
    tag = "sum"   # (reduce.vector_rows: its loops' names)

    def __init__(self, ctx, dt, at=None):
        self.ctx, self.dt = ctx, dt
        self.et = U.ll_type(dt)
        self.L = L = U.lanes(dt)
        self.vt = ir.VectorType(self.et, L)
        self.dvt = dvt = partials_type(dt)
        if at is None:
            zero = ir.Constant(dvt, [ir.Constant(U.F64, 0.0)] * L)
            self.accs = [ctx.local(dvt, zero) for _ in range(CHAINS)]
        else:
            b = ctx.b
            self.accs = [b.gep(at, [U.i64(0), ir.Constant(ir.IntType(32), c)], inbounds=True) for c in range(CHAINS)]

    @staticmethod
    def state_type(dt):
        """What RowSum(ctx, dt, at) keeps at `at`."""
        return ir.ArrayType(partials_type(dt), CHAINS)

    @staticmethod
    def total_dtype(dt):
        return "float64"

    @staticmethod
    def zero(ctx, dt, at):
        """Zero the partials at `at` (as RowSum(ctx, dt, at) keeps them)."""
        dvt = partials_type(dt)
        zero = ir.Constant(dvt, [ir.Constant(U.F64, 0.0)] * dvt.count)
        for c in range(CHAINS):
            ctx.b.store(zero, ctx.b.gep(at, [U.i64(0), ir.Constant(ir.IntType(32), c)], inbounds=True))

    def _add(self, acc, v):
        b = self.ctx.b
        b.store(b.fadd(b.load(acc, typ=self.dvt), b.fpext(v, self.dvt) if self.dt == "float32" else v), acc)

    def add_row(self, row, rowlen):
        """Add the rowlen (an int or an i64 value) values at pointer row."""
        zero = ir.Constant(self.vt, [ir.Constant(self.et, 0.0)] * self.L)
        row_vectors_to_chains(self.ctx, self.dt, row, rowlen, lambda c, v, j: self._add(self.accs[c], v), zero, "s")

    def total(self):
        """The float64 sum of every value added so far."""
        b = self.ctx.b
        total = b.load(self.accs[0], typ=self.dvt)
        for acc in self.accs[1:]:
            total = b.fadd(total, b.load(acc, typ=self.dvt))
        return U.lane_sum(b, total)


def row_vectors_to_chains(ctx, dt, row, rowlen, take, fill, tag):
    """take(c, v, j) for each vector v (its first value the row's j-th, an i64) of the rowlen (an int or an i64 value) dt values at pointer row,
    in a fixed order: the whole vectors in turn (vector j to chain j mod CHAINS), those past the
    last whole group of CHAINS to chain 0, the last partial vector (its lanes past the row loaded
    as `fill`) to chain 0. tag: the first letter of the loops' names."""
    b, L, n = ctx.b, U.lanes(dt), CHAINS
    et = U.ll_type(dt)
    vt = ir.VectorType(et, L)

    def load(j):
        return b.load(U.gep(b, row, j, et), typ=vt, align=U.itemsize(dt))
    whole = U.floordiv(b, rowlen, L)
    groups = U.floordiv(b, whole, n)
    left = U.sub(b, whole, U.mul(b, groups, n))
    tail = U.sub(b, rowlen, U.mul(b, whole, L))
    if not (isinstance(groups, int) and groups == 0):
        with U.for_range(b, groups, name=tag + "g") as q:
            base = U.mul(b, q, n * L)
            for c in range(n):
                j = U.add(b, base, c * L)
                take(c, load(j), U.as_value(b, j))
    if not (isinstance(left, int) and left == 0):
        rest = U.mul(b, groups, n * L)
        with U.for_range(b, left, name=tag + "v") as v:
            j = U.add(b, rest, U.mul(b, v, L))
            take(0, load(j), U.as_value(b, j))
    if not (isinstance(tail, int) and tail == 0):
        i64v = ir.VectorType(U.I64, L)
        lane = ir.Constant(i64v, list(range(L)))
        with b.if_then(b.icmp_signed(">", U.as_value(b, tail), U.i64(0))):
            keep = b.icmp_signed("<", lane, U.splat(b, U.as_value(b, tail), i64v))
            mload = masked_load(ctx.module, dt, L)
            j = U.mul(b, whole, L)
            take(0, b.call(mload, [U.gep(b, row, j, et), ir.Constant(U.I32, U.itemsize(dt)), keep, fill]),
                 U.as_value(b, j))


def partials_type(dt):
    """One of a sum's CHAINS float64 partials: a vector of as many lanes as dt has in a register."""
    return ir.VectorType(U.F64, U.lanes(dt))


def row_sum(ctx, dt, ptr, rows, rowlen, rowstride):
    """The float64 sum of rows x rowlen values, rows rowstride apart, in RowSum's order."""
    b = ctx.b
    s = RowSum(ctx, dt)
    with U.for_range(b, rows, name="sr") as r:
        s.add_row(U.gep(b, ptr, U.mul(b, r, rowstride), s.et), rowlen)
    return s.total()
