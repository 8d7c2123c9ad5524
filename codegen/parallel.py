"""Running an outlined per-item loop body on several threads.

Threads (config.num_threads > 1, baked into the module when it is compiled): a loop body is
outlined into an internal function body(ptr args, i64 tid, i64 begin, i64 end) that reads the
pointers and dynamic dims it needs from an i64 array, and the items are split into T contiguous
ranges. Range t is always run with tid t, and tid t selects its scratch (Parts) and partial sums,
which the caller adds in order after the region: results do not depend on which thread ran which
range, nor on timing. The body has no error exits: all checks (shapes, scratch allocation) are
done before the region.

The threads are the module's pool (threadpool.py).
"""
from llvmlite import ir

from symcnn.config import config

from . import irutil as U
from .lower import bounds_checker
from .options import options
from .threadpool import BODY_TYPE, Pool



def threads():
    """Threads for the per-image loops of the lowering in progress (1: inline serial loop)."""
    if bounds_checker() is not None:  # bounds-checked builds keep the plain inline loop
        return 1
    return max(1, int(config.num_threads))


class _BodyCtx(U.FunctionContext):
    """The parts of a lowering Context the per-image code uses, inside an outlined function.
    Nothing in it may allocate or fail: that happens before the parallel region."""

    def scratch(self, *a):
        raise AssertionError("scratch allocation inside a parallel per-image body")

    def fail_if(self, *a):
        raise AssertionError("error check inside a parallel per-image body")

    check_equal = fail_if


def _round64(n):
    """Elements of one thread's part of a shared scratch buffer (keeps every part 64-byte aligned)."""
    if isinstance(n, int):
        return -(-n // 16) * 16
    return None


class Parts:
    """A scratch buffer of T parts of n elements each (part t for thread t)."""

    def __init__(self, ctx, dtype, n, T):
        b = ctx.b
        r = _round64(n)
        if r is None:
            r = b.and_(b.add(U.as_value(b, n), U.i64(15)), U.i64(~15))
        self.dtype, self.stride = dtype, r
        self.arr = ctx.scratch(dtype, [U.mul(b, r, T)])

    def values(self):
        return [self.arr.ptr, self.stride]


def part(b, base, stride, tid, dtype):
    off = U.mul(b, tid, stride)
    if isinstance(off, int) and off == 0:
        return base
    return b.gep(base, [U.as_value(b, off)], source_etype=U.ll_type(dtype))




def _body_function(module, prefix):
    k = 0
    while f"{prefix}{k}" in module.globals:
        k += 1
    fn = ir.Function(module, BODY_TYPE, name=f"{prefix}{k}")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn


def _stack_i64(b, n):
    """n i64s on the stack of the function being built (alloca in its entry block)."""
    with b.goto_entry_block():
        return b.alloca(U.I64, size=U.i64(n))


def outline(ctx, prefix, values, emit):
    """Outline emit(bctx, vals, tid, n0, n1) into a body function (vals: `values` with the IR ones
    reloaded inside the body; ints stay ints). Returns (body, pointer to its captured values)."""
    b = ctx.b
    module = ctx.module
    fn = _body_function(module, prefix)
    # the captured values: IR ones go into an i64 array (pointers as integers)
    dyn = [v for v in values if not isinstance(v, int)]
    arr = _stack_i64(b, max(len(dyn), 1))
    for i, v in enumerate(dyn):
        if isinstance(v.type, ir.PointerType):
            v = b.ptrtoint(v, U.I64)
        b.store(v, b.gep(arr, [U.i64(i)], source_etype=U.I64))
    bb = ir.IRBuilder(fn.append_basic_block("entry"))
    args, tid, n0, n1 = fn.args
    inner, k = [], 0
    for v in values:
        if isinstance(v, int):
            inner.append(v)
            continue
        x = bb.load(bb.gep(args, [U.i64(k)], source_etype=U.I64), typ=U.I64)
        inner.append(bb.inttoptr(x, U.PTR) if isinstance(v.type, ir.PointerType) else x)
        k += 1
    emit(_BodyCtx(module, bb), inner, tid, n0, n1)
    bb.ret_void()
    return fn, arr


def dispatch(ctx, fn, argp, bounds, T):
    """Run body fn over the T ranges [bounds[t], bounds[t+1]) (bounds: T + 1 IR i64 values) on
    the module's pool: range t with tid t."""
    b = ctx.b
    arr = _stack_i64(b, T + 1)
    for t, v in enumerate(bounds):
        b.store(U.as_value(b, v), b.gep(arr, [U.i64(t)], source_etype=U.I64))
    b.call(Pool.get(ctx.module, T).run, [fn, argp, arr, U.i64(T)])


def even_bounds(b, n, T):
    """[0, n*1/T, ..., n]: T contiguous ranges of [0, n) whose sizes differ by at most one."""
    n = U.as_value(b, n)
    return [U.i64(0)] + [b.udiv(b.mul(n, U.i64(t)), U.i64(T)) for t in range(1, T)] + [n]


def min_items(item_flops=None):
    """The fewest items a loop hands to the threads. Without item_flops (the work of one item, a
    static int): options.min_parallel. With it: two, or as many as make options.min_parallel_flops
    of work in all, so that a small batch of large items (one image's convolution is often millions
    of multiply-adds) still takes every thread."""
    if item_flops is None:
        return options.min_parallel
    return max(2, -(-options.min_parallel_flops // max(1, int(item_flops))))


def serial_rule(b, items, item_flops=None):
    """The i1 that keeps a loop over items on the calling thread (fewer than min_items)."""
    return b.icmp_signed("<", U.as_value(b, items), U.i64(min_items(item_flops)))


def run_parallel(ctx, prefix, values, B, T, emit, serial=None, item_flops=None, serial_prelude=None,
                 inline_serial=False):
    """Outline emit(bctx, vals, tid, n0, n1) (vals: `values` with the IR ones reloaded inside the
    body; ints stay ints) and run it over [0, B) on up to T threads (every range t < T runs, empty
    or not). serial: an i1 that keeps the whole range on the calling thread, as range 0 (default:
    serial_rule(B, item_flops)); serial_prelude(ctx) is emitted before that call.
    inline_serial: the calling thread's range is emitted in place (emit(ctx, values, ...)) instead of
    calling the body, which then only the pool runs: LLVM cannot specialise it for a direct call
    (drop its unused thread index, say) where a shape check makes the serial branch's condition
    known, which codegen/split.py could not tell (a body that does not read its thread index)."""
    b = ctx.b
    if inline_serial and isinstance(serial, ir.Constant) and serial.constant:
        if serial_prelude is not None:
            serial_prelude(ctx)
        emit(ctx, values, U.i64(0), U.i64(0), U.as_value(b, B))
        return
    fn, argp = outline(ctx, prefix, values, emit)
    Bv = U.as_value(b, B)
    early = getattr(ctx, "early_parts", None)
    if early is not None:   # can a run hand it to the pool? (the split's root part holds those that cannot)
        if isinstance(serial, ir.Constant):
            early.job(fn, not serial.constant)
        elif inline_serial:   # a shape check may fold the condition where the split's folding does not see it
            early.job(fn, None)
        else:
            early.job(fn, serial is not None or not isinstance(B, int) or B >= min_items(item_flops))
    if serial is None:
        serial = serial_rule(b, Bv, item_flops)
    if isinstance(serial, ir.Constant):   # one way only: no direct call of a body the pool runs
        if serial.constant:
            if serial_prelude is not None:
                serial_prelude(ctx)
            b.call(fn, [argp, U.i64(0), U.i64(0), Bv])
        else:
            dispatch(ctx, fn, argp, even_bounds(b, Bv, T), T)
        return
    with b.if_else(serial) as (small, big):
        with small:
            if serial_prelude is not None:
                serial_prelude(ctx)
            if inline_serial:
                emit(ctx, values, U.i64(0), U.i64(0), Bv)
            else:
                b.call(fn, [argp, U.i64(0), U.i64(0), Bv])
        with big:
            dispatch(ctx, fn, argp, even_bounds(b, Bv, T), T)


def run_by_work(ctx, prefix, values, items, work, T, emit, min_work=None, min_items=1):
    """emit over [0, items) as run_parallel's body: in place with one thread, below min_work
    (default options.elemwise_min_parallel) of work or fewer than min_items items (a static size),
    else on the T threads; a run-time size is told apart when called, the calling thread's range
    emitted in place (inline_serial). A static size large enough is only dispatched (the split must
    see that nothing calls the body directly)."""
    b = ctx.b
    min_work = options.elemwise_min_parallel if min_work is None else min_work
    if T == 1 or (isinstance(work, int) and work < min_work) or (isinstance(items, int) and items < min_items):
        emit(ctx, values, U.i64(0), U.i64(0), U.as_value(b, items))
        return
    serial = ir.Constant(U.I1, 0)   # (static sizes that pass stay static: only dispatched)
    if not isinstance(work, int):
        serial = b.icmp_signed("<", U.as_value(b, work), U.i64(min_work))
    if min_items > 1 and not isinstance(items, int):
        few = b.icmp_signed("<", U.as_value(b, items), U.i64(min_items))
        serial = few if isinstance(serial, ir.Constant) else b.or_(serial, few)
    run_parallel(ctx, prefix, values, items, T, emit, serial=serial, inline_serial=True)
