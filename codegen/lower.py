"""The lowering registry and the context a lowering emits into.

`lower.register(OpClass)` maps an op class to a function
    fn(ctx, node, inputs: list[Array]) -> list[Array]
that emits LLVM IR computing the node's outputs into buffers from `ctx.alloc`
(or returns views of its inputs). Every dimension is a Python int when it is
known at compile time and an i64 IR value otherwise, so static shapes fold.
"""
import threading

from llvmlite import ir

from . import irutil as U
from . import library

# Error codes written by native code; runtime.py turns them into exceptions.
E_SHAPE, E_INDEX, E_RESHAPE, E_ALLOC, E_UPDATE_SHAPE, E_STATIC, E_VALUE = 1, 2, 3, 4, 5, 6, 7
E_INDEX_BROADCAST, E_ZERO_STEP = 8, 9
E_NAN, E_OOB = 10, 11  # mode='nanguard' / mode='boundscheck' (see guard.py)

_active = threading.local()


def bounds_checker():
    """The bounds checker of the build in progress on this thread (mode='boundscheck'), else None."""
    return getattr(_active, "checker", None)


def set_bounds_checker(checker):
    """Make `checker` (a guard.BoundsChecker, or None) the one of this thread's builds; returns
    the one it replaces."""
    prev = bounds_checker()
    _active.checker = checker
    return prev


class Registry:
    def __init__(self):
        self.table = {}
        self.error_messages = {}

    def register(self, op_class, view=None, error_message=None):
        """view: None, or fn(node, input_contiguous) -> (is_view, output_contiguous) for ops
        whose output can be a view of input 0.
        error_message: None, or fn(code, node, where, vals) -> (exception class, message) or None,
        the op's own words for an error code its lowering writes (vals: the code's values, where:
        the op as the message names it); None falls back to runtime.py's message of the code."""
        def deco(fn):
            self.table[op_class] = (fn, view)
            if error_message is None:
                self.error_messages.pop(op_class, None)
            else:
                self.error_messages[op_class] = error_message
            return fn
        return deco

    def _entry_class(self, op):
        for cls in type(op).__mro__:
            if cls in self.table:
                return cls
        raise NotImplementedError(f"no native lowering for {type(op).__name__}; use mode='reference'")

    def lookup(self, op):
        return self.table[self._entry_class(op)]

    def error_message(self, op):
        """The error-message hook of the lowering of `op`, or None."""
        try:
            return self.error_messages.get(self._entry_class(op))
        except NotImplementedError:
            return None

    def __contains__(self, op_class):
        return op_class in self.table


lower = Registry()


class Array:
    """A tensor at run time: element pointer, shape and strides (in elements).

    bounds: optional guard.Bounds (base pointer, element extent, label) of the allocation
    `ptr` points into; only used (and only emitted) when a bounds-checked build is active.
    A view built from the same pointer value (or from flat_addr/addr) inherits it."""

    def __init__(self, dtype, ptr, shape, strides=None, b=None, bounds=None):
        self.dtype = str(dtype)
        self.ptr = ptr
        chk = bounds_checker()
        self.bounds = bounds if chk is None else chk.adopt(ptr, bounds)
        self.shape = list(shape)
        if strides is None:
            strides, acc = [], 1
            for d in reversed(self.shape):
                strides.append(acc)
                acc = U.mul(b, acc, d)
            strides.reverse()
            self.contiguous = True
        else:
            self.contiguous = False
        self.strides = list(strides)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def lltype(self):
        return U.ll_type(self.dtype)

    def offset(self, b, idx):
        off = 0
        for i, s in zip(idx, self.strides):
            off = U.add(b, off, U.mul(b, i, s))
        return off

    def addr(self, b, idx, _access=2):
        return self.flat_addr(b, self.offset(b, idx), _access)

    def load(self, b, idx):
        return b.load(self.addr(b, idx, 0), typ=self.lltype)

    def store(self, b, idx, value):
        b.store(value, self.addr(b, idx, 1))

    def flat_addr(self, b, i, _access=2):
        """Address of element offset i (an element access: bounds-checked when checking)."""
        chk = bounds_checker()
        if chk is not None:
            chk.check(b, self, i, _access)
        p = b.gep(self.ptr, [U.as_value(b, i)], source_etype=self.lltype)
        return p if chk is None else chk.derive(p, self)

    def view_addr(self, b, i):
        """Address for the start of a view (not an access: an empty view may point anywhere)."""
        p = b.gep(self.ptr, [U.as_value(b, i)], source_etype=self.lltype)
        chk = bounds_checker()
        return p if chk is None else chk.derive(p, self)

    def size(self, b):
        return U.product(b, self.shape)


# values a failure records after its code and node (the runtime's error array holds 8 fields)
FAIL_VALUES = 6


class Context(U.FunctionContext):
    """State while lowering one function graph into one LLVM function."""

    def __init__(self, module, builder, plan, slots_ptr, err_ptr):
        super().__init__(module, builder)
        self.plan = plan
        self.slots_ptr = slots_ptr
        self.err_ptr = err_ptr
        self.node_index = -1
        self.destination = {}  # var -> (Array, graph input index) it is computed into in place,
        # or a function of the shape giving that Array
        # Work a node started and others finish (a non-blocking collective): objects with
        # .outputs, .poll(ctx) (emitted after every later node) and .finish(ctx) (emitted
        # before the first node that reads an output, or before the results).
        self.pending = []
        # slot -> (bytes, node index): buffers of sizes known at compile time, grown once at the
        # start of the function (emit_static_grows) instead of where each is taken; None: each
        # is grown where it is taken
        self.static_sizes = None

    def before_node(self, node):
        """Finish the pending work whose outputs `node` reads (every piece when node is None)."""
        due = [p for p in self.pending if node is None or any(v in p.outputs for v in node.inputs)]
        for p in due:
            self.pending.remove(p)
            p.finish(self)

    def after_node(self):
        for p in self.pending:
            p.poll(self)

    # -- errors ---------------------------------------------------------------
    def fail_if(self, cond, code, *values):
        """If `cond` (i1) holds at run time: record (code, node, values) and return code."""
        b = self.b
        bad = b.append_basic_block("fail")
        ok = b.append_basic_block("ok")
        br = b.cbranch(cond, bad, ok)
        br.set_weights([1, 1000])
        b.position_at_end(bad)
        fields = [U.as_value(b, v) for v in values][:FAIL_VALUES]
        fields = [v if v.type == U.I64 else b.sext(v, U.I64) for v in fields]
        b.call(self.fail_function(), [self.err_ptr, U.i64(code), U.i64(self.node_index), U.i64(len(fields))]
               + fields + [U.i64(0)] * (FAIL_VALUES - len(fields)))
        b.ret(ir.Constant(U.I32, code))
        b.position_at_end(ok)

    def fail_function(self):
        """void symcnn_fail(ptr err, i64 code, i64 node, i64 n, i64 v0, ..., v5): err[:2 + n] =
        (code, node, v0, ..., v[n-1]). One cold call per failure branch instead of its stores: a
        training step has some 200-350 checks, whose stores were a third of its entry function's
        instructions, each one more for LLVM to optimise and emit."""
        fn = library.existing(self.module, "symcnn_fail")
        if fn is not None:
            return fn
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [U.PTR] + [U.I64] * (3 + FAIL_VALUES)),
                         name="symcnn_fail")
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("cold")
        b = ir.IRBuilder(fn.append_basic_block())
        err, code, node, n, *vals = fn.args
        b.store(code, b.gep(err, [U.i64(0)], source_etype=U.I64))
        b.store(node, b.gep(err, [U.i64(1)], source_etype=U.I64))
        for k, v in enumerate(vals):
            with b.if_then(b.icmp_signed(">", n, U.i64(k))):
                b.store(v, b.gep(err, [U.i64(2 + k)], source_etype=U.I64))
        b.ret_void()
        return fn

    def check_equal(self, x, y, code=E_SHAPE, *extra):
        """Fail unless two dimensions agree (no code when both are static)."""
        if isinstance(x, int) and isinstance(y, int):
            if x != y:
                raise ValueError(f"static dimensions {x} and {y} disagree")
            return
        if x is y:   # the same run-time value
            return
        b = self.b
        self.fail_if(b.icmp_signed("!=", U.as_value(b, x), U.as_value(b, y)), code, x, y, *extra)

    # -- memory ---------------------------------------------------------------
    def alloc(self, var, shape):
        """A contiguous buffer for `var` (its slot grows at run time if too small), or the
        storage it is written into in place (a shared variable it updates), or the Array a
        destination function gives for the shape (a scan step's result written into its row)."""
        if var in self.destination:
            if callable(self.destination[var]):
                return self.destination[var](self.static_shape(var, shape))
            dest, input_index = self.destination[var]
            for d, (x, y) in enumerate(zip(self.static_shape(var, shape), dest.shape)):
                self.check_equal(x, y, E_UPDATE_SHAPE, d, input_index)
            return dest
        arr = self.alloc_in(self.plan.slot[var], var.dtype, self.static_shape(var, shape))
        if arr.bounds is not None:
            arr.bounds.what = f"the buffer of {var}"
        return arr

    def scratch(self, dtype, shape):
        """A private contiguous work buffer for the current kernel."""
        arr = self.alloc_in(self.plan.new_slot(), dtype, shape)
        if arr.bounds is not None:
            arr.bounds.what = "a scratch buffer"
        return arr

    def alloc_in(self, slot, dtype, shape):
        b = self.b
        # every buffer's byte size goes through here: a size that wraps int64 would pass the
        # capacity test and let the kernel write far past a small buffer
        count, ovf = U.checked_product(b, shape)
        nbytes, o = U.checked(b, "mul", count, U.itemsize(dtype))
        ovf = U.either(b, ovf, o)
        if ovf is True:
            nbytes = -1
        if ovf is not False:
            bad = U.flag_value(b, ovf)
            if not isinstance(nbytes, int):
                bad = b.or_(bad, b.icmp_signed("<", nbytes, U.i64(0)))
            self.fail_if(bad, E_ALLOC, -1, len(shape), *shape[:4])
        entry = b.gep(self.slots_ptr, [U.i64(2 * slot)], source_etype=U.I64)
        if isinstance(nbytes, int) and self.static_sizes is not None:
            if nbytes > self.static_sizes.get(slot, (-1,))[0]:
                self.static_sizes[slot] = (nbytes, self.node_index)
        else:
            cap_ptr = b.gep(self.slots_ptr, [U.i64(2 * slot + 1)], source_etype=U.I64)
            need = U.as_value(b, nbytes)
            grow = b.icmp_signed(">", need, b.load(cap_ptr, typ=U.I64))
            with b.if_then(grow, likely=False):
                fn = self.grow_function()
                ok = b.call(fn, [entry, need])
                self.fail_if(b.icmp_signed("==", ok, U.i64(0)), E_ALLOC, need)
        ptr = b.load(entry, typ=U.PTR)
        chk = bounds_checker()
        bounds = None if chk is None else chk.new_bounds(ptr, shape, f"buffer (slot {slot})")
        return Array(dtype, ptr, shape, b=b, bounds=bounds)

    def static_shape(self, var, shape):
        """Check run-time dims against the variable's static type; use the constants after."""
        out = []
        for d, (dim, st) in enumerate(zip(shape, var.type.shape)):
            if st is not None and not isinstance(dim, int):
                self.check_equal(dim, st, E_STATIC, d)
                dim = st
            elif st is not None and dim != st:
                raise ValueError(f"lowering of {var} gave static dim {dim} where the type says {st}")
            out.append(dim)
        return out

    def emit_static_grows(self, b):
        """At b: grow every slot of static_sizes to its size, by one call of a loop over a table
        (a training step takes some 100-150 such buffers, whose tests, calls and failure branches
        were a third of its entry function's blocks, each one more for LLVM to optimise and
        emit). Returns the i32 result: 0, or E_ALLOC after recording the failure as the node that
        takes the buffer would have (None: no such buffer)."""
        rows = sorted((slot, nbytes, node) for slot, (nbytes, node) in (self.static_sizes or {}).items())
        if not rows:
            return None
        t = ir.ArrayType(U.I64, 3 * len(rows))
        table = ir.GlobalVariable(self.module, t, name=self.module.get_unique_name("static_sizes"))
        table.linkage, table.global_constant = "internal", True
        table.initializer = ir.Constant(t, [v for row in rows for v in row])
        return b.call(self._grow_all_function(), [self.slots_ptr, self.err_ptr, table, U.i64(len(rows))])

    def _grow_all_function(self):
        """i32 symcnn_grow_all(ptr slots, ptr err, ptr table, i64 n): for each (slot, bytes, node)
        of the table, grow the slot's buffer to bytes; 0, or E_ALLOC after recording the failure."""
        fn = library.existing(self.module, "symcnn_grow_all")
        if fn is not None:
            return fn
        fn = ir.Function(self.module, ir.FunctionType(U.I32, [U.PTR] * 3 + [U.I64]), name="symcnn_grow_all")
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        slots, err, table, n = fn.args
        b = ir.IRBuilder(fn.append_basic_block())
        failed = fn.append_basic_block("failed")
        with U.for_range(b, n, name="row") as i:
            row = [b.load(b.gep(table, [b.add(b.mul(i, U.i64(3)), U.i64(k))], source_etype=U.I64), typ=U.I64)
                   for k in range(3)]
            slot, need, node = row
            entry = b.gep(slots, [b.mul(slot, U.i64(2))], source_etype=U.I64)
            cap = b.load(b.gep(entry, [U.i64(1)], source_etype=U.I64), typ=U.I64)
            with b.if_then(b.icmp_signed(">", need, cap), likely=False):
                ok = b.call(self.grow_function(), [entry, need])
                with b.if_then(b.icmp_signed("==", ok, U.i64(0)), likely=False):
                    b.call(self.fail_function(), [err, U.i64(E_ALLOC), node, U.i64(1), need]
                           + [U.i64(0)] * (FAIL_VALUES - 1))
                    b.branch(failed)
        b.ret(ir.Constant(U.I32, 0))
        b.position_at_end(failed)
        b.ret(ir.Constant(U.I32, E_ALLOC))
        return fn

    def grow_function(self):
        """i64 symcnn_grow(ptr slot_entry, i64 nbytes): replace the slot's buffer by a larger one."""
        fn = library.existing(self.module, "symcnn_grow")
        if fn is not None:
            return fn
        m = self.module
        free = U.declare(m, "free", ir.VoidType(), [U.PTR])
        aligned = U.declare(m, "aligned_alloc", U.PTR, [U.I64, U.I64])
        fn = ir.Function(m, ir.FunctionType(U.I64, [U.PTR, U.I64]), name="symcnn_grow")
        fn.linkage = "internal"
        b = ir.IRBuilder(fn.append_basic_block())
        entry, need = fn.args
        b.call(free, [b.load(entry, typ=U.PTR)])
        rounded = b.and_(b.add(need, U.i64(127)), U.i64(~63))  # round up, and never 0 bytes
        p = b.call(aligned, [U.i64(64), rounded])
        b.store(p, entry)
        cap = b.gep(entry, [U.i64(1)], source_etype=U.I64)
        isnull = b.icmp_unsigned("==", b.ptrtoint(p, U.I64), U.i64(0))
        b.store(b.select(isnull, U.i64(0), rounded), cap)
        b.ret(b.select(isnull, U.i64(0), U.i64(1)))
        return fn

    # -- small conveniences ---------------------------------------------------
    def load_scalar(self, arr):
        """The value of a 0-d (or one-element) array."""
        chk = bounds_checker()
        if chk is not None:
            chk.check(self.b, arr, 0, 0)
        return self.b.load(arr.ptr, typ=arr.lltype)

    def load_index(self, arr):
        """An integer scalar as i64."""
        v = self.load_scalar(arr)
        return U.cast_value(self.b, v, arr.dtype, "int64")


def copy(ctx, src, dst):
    """dst[...] = src[...] (any strides in src, dst contiguous or strided)."""
    b = ctx.b
    if src.contiguous and dst.contiguous and src.dtype == dst.dtype:
        chk = bounds_checker()
        if chk is not None:
            chk.check_range(b, src, src.size(b), 0)
            chk.check_range(b, dst, src.size(b), 1)
        n = U.as_value(b, U.mul(b, src.size(b), U.itemsize(src.dtype)))
        U.memcpy(b, dst.ptr, src.ptr, n)
        return
    with U.loop_nest(b, dst.shape) as idx:
        v = src.load(b, idx)
        dst.store(b, idx, U.cast_value(b, v, src.dtype, dst.dtype))
