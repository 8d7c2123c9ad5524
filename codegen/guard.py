"""Checked native builds: mode='nanguard' and mode='boundscheck'.

nanguard: after each node's lowering, every float output of the node (except views of
  outputs that were already checked) is scanned for NaN/Inf by a tight loop emitted in
  IR: a branch-free, vectorisable OR-reduction of |v| == inf (true for NaN too), and only
  when it trips, a second loop that finds the first bad element and returns E_NAN with
  (node index, flat element index in C order, kind, output index). The runner raises
  NanGuardError (a FloatingPointError) naming the user's line, the op, the output, the
  element and which inputs of the node already held NaN/Inf (graph inputs and constants
  are inspected on the Python side; intermediates are finite, or an earlier node would
  have failed).

boundscheck: while a build runs with a BoundsChecker active (lower.bounds_checker()), every element
  access through Array.load/store/addr/flat_addr, Context.load_scalar and copy() checks the
  element offset against the extent of the allocation the Array points into (Bounds:
  base pointer, element count, label). Slots (ctx.alloc/scratch/alloc_in), graph inputs and
  constants create Bounds; views inherit them: explicitly (Array(..., bounds=x.bounds)) or
  implicitly, because an Array built on a pointer value that came from a bounded Array
  (its .ptr, or a flat_addr/addr/view_addr result) adopts that Array's bounds. Arrays on
  pointers computed with raw `builder.gep` (conv.py, pool.py) have no bounds and their
  accesses are not checked; neither are raw loads/stores that bypass Array.
  An out-of-bounds access returns E_OOB with (node index, offset, extent, label, access).
  When no checker is active nothing is emitted.
"""
import math
from contextlib import contextmanager

import numpy as np
from llvmlite import ir

from symcnn.graph.basic import Constant
from symcnn.graph.trace import with_trace

from . import irutil as U
from . import lower as L
from .runtime import NativeRunner


class NanGuardError(FloatingPointError):
    """A node of a mode='nanguard' function produced NaN or Inf."""


# -- runners ---------------------------------------------------------------------------------

class NanGuardRunner(NativeRunner):
    """mode='nanguard': native code that checks every node's float outputs for NaN/Inf."""

    build_options = {"guard_nan": True}


class BoundsCheckRunner(NativeRunner):
    """mode='boundscheck': native code that checks every Array element access."""

    build_options = {"bounds_check": True}


# -- nanguard: IR ----------------------------------------------------------------------------

NAN, POS_INF, NEG_INF = 0, 1, 2
_KIND = {NAN: "NaN", POS_INF: "+Inf", NEG_INF: "-Inf"}


def emit_nan_guard(ctx, node, arrays):
    """Check the float outputs of `node` (just lowered; `arrays` are their Arrays)."""
    plan = ctx.plan
    for j, (var, arr) in enumerate(zip(node.outputs, arrays)):
        if not U.is_float(var.dtype):
            continue
        base = plan.base.get(var, var)
        if base is not var and base.owner is not None:
            continue  # a view of an earlier node's output, which was checked whole
        _check_finite(ctx, arr, j)


def _raw_addr(b, arr, off):
    return b.gep(arr.ptr, [U.as_value(b, off)], source_etype=arr.lltype)


def _nonfinite(ctx, v, dtype):
    """i1: v is NaN or +-Inf (|v| == inf, unordered)."""
    b = ctx.b
    fabs = U.intrinsic(ctx.module, "fabs", dtype)
    return b.fcmp_unordered("==", b.call(fabs, [v]), U.const(dtype, math.inf))


def _check_finite(ctx, arr, out_index):
    b = ctx.b
    dt = arr.dtype
    seen = ctx.local(U.I8, ir.Constant(U.I8, 0))
    if arr.contiguous:  # one flat loop: vectorises into a SIMD or-reduction
        with U.for_range(b, arr.size(b), name="ng") as i:
            v = b.load(_raw_addr(b, arr, i), typ=arr.lltype)
            bad = b.zext(_nonfinite(ctx, v, dt), U.I8)
            b.store(b.or_(b.load(seen, typ=U.I8), bad), seen)
    else:
        with U.loop_nest(b, arr.shape, name="ng") as idx:
            v = b.load(_raw_addr(b, arr, arr.offset(b, idx)), typ=arr.lltype)
            bad = b.zext(_nonfinite(ctx, v, dt), U.I8)
            b.store(b.or_(b.load(seen, typ=U.I8), bad), seen)
    tripped = b.icmp_unsigned("!=", b.load(seen, typ=U.I8), ir.Constant(U.I8, 0))
    with b.if_then(tripped, likely=False):
        # Slow path, only on failure: the first bad element in C order.
        cstrides, acc = [], 1
        for d in reversed(arr.shape):
            cstrides.append(acc)
            acc = U.mul(b, acc, d)
        cstrides.reverse()
        with U.loop_nest(b, arr.shape, name="nf") as idx:
            v = b.load(_raw_addr(b, arr, arr.offset(b, idx)), typ=arr.lltype)
            flat = 0
            for i, s in zip(idx, cstrides):
                flat = U.add(b, flat, U.mul(b, i, s))
            isnan = b.fcmp_unordered("uno", v, v)
            pos = b.fcmp_ordered(">", v, U.const(dt, 0.0))
            kind = b.select(isnan, U.i64(NAN), b.select(pos, U.i64(POS_INF), U.i64(NEG_INF)))
            ctx.fail_if(_nonfinite(ctx, v, dt), L.E_NAN, flat, kind, out_index)


# -- nanguard: the Python side -------------------------------------------------------------------

def _first_bad(a):
    a = np.asarray(a)
    if a.dtype.kind != "f" or a.size == 0:
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    k = int(np.flatnonzero(bad.ravel())[0])
    v = a.ravel()[k]
    kind = NAN if np.isnan(v) else (POS_INF if v > 0 else NEG_INF)
    return k, kind


def nan_error(runner, node, vals, arrays):
    """The NanGuardError for an E_NAN record (vals: flat index, kind, output index)."""
    flat, kind, j = vals[0], vals[1], vals[2]
    if node is None:
        return NanGuardError(f"non-finite value ({_KIND.get(kind, kind)}) at element {flat} of a result")
    out = node.outputs[j]
    inputs = list(runner.fgraph.inputs)
    culprits = []
    for i, v in enumerate(node.inputs):
        if not U.is_float(v.dtype):
            continue
        if isinstance(v, Constant):
            hit = _first_bad(v.data)
            if hit:
                culprits.append(f"input {i} (a constant {v}) holds {_KIND[hit[1]]} at element {hit[0]}")
        elif v in inputs and arrays is not None:
            hit = _first_bad(arrays[inputs.index(v)])
            if hit:
                culprits.append(f"input {i} {v.describe()} (a graph input) holds {_KIND[hit[1]]} "
                                f"at element {hit[0]}")
        # Otherwise v is an intermediate, a view of one, or a view of a graph input or a
        # constant: the guard checked all of those (earlier nodes) and found them finite.
    if culprits:
        origin = "; ".join(culprits) + " (it came in through the input, not from this node)"
    else:
        origin = "all inputs finite: this node produced it"
    msg = (f"{node.op} produced {_KIND.get(kind, kind)} in output {j} {out.describe()} "
           f"at flat element {flat}; {origin}")
    return NanGuardError(with_trace(msg, node.trace))


# -- boundscheck ---------------------------------------------------------------------------------

ACCESS = {0: "load", 1: "store", 2: "access"}


class Bounds:
    """The allocation an Array points into: base pointer, element extent, a label."""

    __slots__ = ("base", "extent", "what")

    def __init__(self, base, extent, what):
        self.base, self.extent, self.what = base, extent, what

    def __repr__(self):
        return f"Bounds({self.what}, extent={self.extent})"


class BoundsChecker:
    def __init__(self):
        self.ctx = None
        self.labels = []       # label index (recorded by E_OOB) -> Bounds
        self._by_ptr = {}      # id(pointer value) -> (pointer value, Bounds)

    def attach(self, ctx):
        self.ctx = ctx

    # -- bookkeeping
    def new_bounds(self, ptr, shape, what):
        b = self.ctx.b if self.ctx is not None else None
        bd = Bounds(ptr, U.product(b, shape), what)
        self._by_ptr.setdefault(id(ptr), (ptr, bd))
        return bd

    def bind(self, arr, what):
        """Give a fresh allocation (graph input, constant) its own bounds."""
        arr.bounds = self.new_bounds(arr.ptr, arr.shape, what)
        return arr

    def adopt(self, ptr, bounds):
        """The bounds of a new Array on `ptr`: given ones, else those of the pointer's origin."""
        if bounds is not None:
            self._by_ptr.setdefault(id(ptr), (ptr, bounds))
            return bounds
        hit = self._by_ptr.get(id(ptr))
        return hit[1] if hit is not None else None

    def derive(self, p, arr):
        """`p` was computed from `arr`'s pointer: a view built on it inherits arr's bounds."""
        if arr.bounds is not None:
            self._by_ptr[id(p)] = (p, arr.bounds)
        return p

    def _label(self, bd):
        for k, x in enumerate(self.labels):
            if x is bd:
                return k
        self.labels.append(bd)
        return len(self.labels) - 1

    def _active(self, b, arr):
        return arr.bounds is not None and self.ctx is not None and b is self.ctx.b

    def _start(self, b, arr):
        """Element offset of arr.ptr from its allocation's base (an int when it is the base)."""
        bd = arr.bounds
        if arr.ptr is bd.base:
            return 0
        diff = b.sub(b.ptrtoint(arr.ptr, U.I64), b.ptrtoint(bd.base, U.I64))
        return b.sdiv(diff, U.i64(U.itemsize(arr.dtype)))

    # -- emitted checks
    def check(self, b, arr, off, access):
        """Element arr.ptr[off] must lie in [0, extent) of arr's allocation."""
        if not self._active(b, arr):
            return
        bd = arr.bounds
        rel = U.add(b, self._start(b, arr), off)
        if isinstance(rel, int) and isinstance(bd.extent, int):
            if 0 <= rel < bd.extent:
                return
            bad = ir.Constant(U.I1, 1)
        else:
            bad = b.icmp_unsigned(">=", U.as_value(b, rel), U.as_value(b, bd.extent))
        self.ctx.fail_if(bad, L.E_OOB, rel, bd.extent, self._label(bd), access)

    def check_range(self, b, arr, n, access):
        """Elements arr.ptr[0:n] (a memcpy) must lie inside arr's allocation."""
        if not self._active(b, arr):
            return
        bd = arr.bounds
        start = self._start(b, arr)
        end = U.add(b, start, n)
        if all(isinstance(x, int) for x in (start, end, n, bd.extent)):
            if n <= 0 or (start >= 0 and end <= bd.extent):
                return
            bad = ir.Constant(U.I1, 1)
        else:
            sv, ev, nv = U.as_value(b, start), U.as_value(b, end), U.as_value(b, n)
            outside = b.or_(b.icmp_signed("<", sv, U.i64(0)),
                            b.icmp_signed(">", ev, U.as_value(b, bd.extent)))
            bad = b.and_(b.icmp_signed(">", nv, U.i64(0)), outside)
        last = U.sub(b, end, 1)
        if not isinstance(start, int):
            last = b.select(b.icmp_signed("<", start, U.i64(0)), start, U.as_value(b, last))
        self.ctx.fail_if(bad, L.E_OOB, last, bd.extent, self._label(bd), access)


@contextmanager
def bounds_checking():
    """Activate a BoundsChecker for the build running inside (this thread only)."""
    checker = BoundsChecker()
    prev = L.set_bounds_checker(checker)
    try:
        yield checker
    finally:
        L.set_bounds_checker(prev)


def oob_message(runner, where, vals):
    off, extent, label, access = vals[0], vals[1], vals[2], vals[3]
    labels = getattr(runner.spec, "oob_labels", None) or []
    what = labels[label].what if 0 <= label < len(labels) else "a buffer"
    return (f"{where}: out-of-bounds {ACCESS.get(access, 'access')} at element {off} of "
            f"{what}, which has {extent} elements")
