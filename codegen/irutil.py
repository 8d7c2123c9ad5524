"""Small helpers for emitting LLVM IR with llvmlite: types, constants, loops, libm."""
from contextlib import contextmanager

import numpy as np
from llvmlite import ir

from . import library

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

_LL = {"bool": I8, "int8": I8, "uint8": I8, "int16": I16, "uint16": I16, "int32": I32, "uint32": I32,
       "int64": I64, "uint64": I64, "float32": F32, "float64": F64}


def ll_type(dtype):
    return _LL[str(dtype)]


def is_float(dtype):
    return str(dtype).startswith("float")


def is_unsigned(dtype):
    return str(dtype).startswith("uint") or str(dtype) == "bool"


# Constants are shared: llvmlite formats a value's text once per object, and a module's text was
# half the Python time of a compile, much of it the same small integers and vectors formatted
# again for every use (a constant has no parent, so one object serves every module and thread).
_I64 = {}


def i64(v):
    v = int(v)
    if not -4096 <= v <= 65536:   # (sizes and offsets: the rest are rare)
        return ir.Constant(I64, v)
    c = _I64.get(v)
    if c is None:
        c = _I64[v] = ir.Constant(I64, v)
    return c


def const(dtype, value):
    t = ll_type(dtype)
    if is_float(dtype):
        return ir.Constant(t, float(value))
    return ir.Constant(t, int(value))


def itemsize(dtype):
    return np.dtype(dtype).itemsize



def as_value(b, v):
    return i64(v) if isinstance(v, (int, np.integer)) else v


def add(b, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x + y
    if isinstance(x, int) and x == 0:
        return y
    if isinstance(y, int) and y == 0:
        return x
    return b.add(as_value(b, x), as_value(b, y))


def sub(b, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x - y
    if isinstance(y, int) and y == 0:
        return x
    return b.sub(as_value(b, x), as_value(b, y))


def mul(b, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    for a, c in ((x, y), (y, x)):
        if isinstance(a, int):
            if a == 0:
                return 0
            if a == 1:
                return c
    return b.mul(as_value(b, x), as_value(b, y))


def smax(b, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return max(x, y)
    x, y = as_value(b, x), as_value(b, y)
    return b.select(b.icmp_signed(">", x, y), x, y)


def smin(b, x, y):
    if isinstance(x, int) and isinstance(y, int):
        return min(x, y)
    x, y = as_value(b, x), as_value(b, y)
    return b.select(b.icmp_signed("<", x, y), x, y)


def product(b, values):
    out = 1
    for v in values:
        out = mul(b, out, v)
    return out


INT64_MAX = 2 ** 63 - 1


def _overflowing(b, op, x, y):
    """(x op y, i1 signed-overflow flag) through llvm.s<op>.with.overflow.i64."""
    pair = ir.LiteralStructType([I64, I1])
    fn = declare(b.module, f"llvm.s{op}.with.overflow.i64", pair, [I64, I64])
    r = b.call(fn, [as_value(b, x), as_value(b, y)])
    return b.extract_value(r, 0), b.extract_value(r, 1)


def _static(op, x, y):
    v = {"mul": x * y, "add": x + y, "sub": x - y}[op]
    return v, not (-INT64_MAX - 1 <= v <= INT64_MAX)


def checked(b, op, x, y):
    """(x op y, overflow) for op in 'mul', 'add', 'sub' on i64: overflow is a Python bool when
    both operands are static, else an i1 that is set when the signed result wrapped."""
    if isinstance(x, int) and isinstance(y, int):
        return _static(op, x, y)
    if op == "mul":
        for a, c in ((x, y), (y, x)):
            if isinstance(a, int) and a in (0, 1):
                return (0 if a == 0 else c), False
    if op in ("add", "sub") and isinstance(y, int) and y == 0:
        return x, False
    return _overflowing(b, op, x, y)


def either(b, f, g):
    """The or of two overflow flags (Python bools or i1 values)."""
    if f is False or g is False:
        return g if f is False else f
    if f is True or g is True:
        return True
    return b.or_(f, g)


def checked_product(b, values):
    """(product of i64 values, overflow flag as for `checked`): the size of a shape, checked."""
    out, ovf = 1, False
    for v in values:
        out, o = checked(b, "mul", out, v)
        ovf = either(b, ovf, o)
    return out, ovf


def flag_value(b, flag):
    """An overflow flag as an i1 value."""
    return ir.Constant(I1, int(flag)) if isinstance(flag, bool) else flag


@contextmanager
def for_range(b, stop, start=0, step=1, name="i", fold_tail=False):
    """for (i = start; i < stop; i += step): the body is emitted inside the with-block.
    fold_tail: LLVM's vectoriser is asked to run the iterations past the last whole vector as one
    masked vector step, not one by one (short rows: 13 values were 13 scalar steps)."""
    if isinstance(stop, int) and isinstance(start, int) and stop - start == 1 and step == 1:
        yield i64(start)
        return
    pre = b.block
    start_v, stop_v, step_v = as_value(b, start), as_value(b, stop), as_value(b, step)
    header, body, end = loop_blocks(b, name)
    idx = b.phi(I64, name=name)
    idx.add_incoming(start_v, pre)
    b.cbranch(b.icmp_signed("<", idx, stop_v), body, end)
    b.position_at_end(body)
    yield idx
    nxt = b.add(idx, step_v)
    idx.add_incoming(nxt, b.block)
    latch = b.branch(header)
    if fold_tail:
        _fold_tail(b.module, latch)
    b.position_at_end(end)


def fold_tail_pays(n, dtype):
    """Whether a loop over a row of n values (a static int) should run as masked vector steps
    (for_range's fold_tail): rows shorter than a vector, which LLVM's vectoriser leaves to a scalar
    loop. (Folding the tail of longer rows, 30 values with 16 lanes, measured no faster.)"""
    return isinstance(n, int) and 0 < n < lanes(dtype)


def _fold_tail(module, latch):
    """Loop metadata on the latch branch: vectorise, with the tail folded into masked steps."""
    def hint(name):
        return module.add_metadata([ir.MetaDataString(module, name), ir.Constant(ir.IntType(1), 1)])
    loop_id = ir.values.MDValue(module, [], name=str(len(module.metadata)))
    loop_id.operands = (loop_id, hint("llvm.loop.vectorize.enable"), hint("llvm.loop.vectorize.predicate.enable"))
    latch.set_metadata("llvm.loop", loop_id)


def loop_blocks(b, name):
    """(head, body, end): the blocks of a loop (named name.head/.body/.end), with the builder
    branched from where it was to the head and left there to emit the loop test."""
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    return head, body, end


@contextmanager
def loop_nest(b, shape, name="d"):
    """Nested for-loops over `shape` (outermost first); yields the index list. Nothing runs
    when any dimension is 0: outer loops over an empty inner one could spin 2**63 times."""
    shape = list(shape)
    dynamic = [d for d in shape[:-1] if not isinstance(d, (int, np.integer))]
    if len(shape) < 2 or not dynamic:
        with _nest(b, shape, [], name) as idx:
            yield idx
        return
    empty = None
    for d in shape:
        z = b.icmp_signed("==", as_value(b, d), i64(0))
        empty = z if empty is None else b.or_(empty, z)
    with b.if_then(b.not_(empty)):
        with _nest(b, shape, [], name) as idx:
            yield idx


@contextmanager
def _nest(b, shape, acc, name):
    if not shape:
        yield acc
        return
    with for_range(b, shape[0], name=f"{name}{len(acc)}") as i:
        with _nest(b, shape[1:], acc + [i], name) as idx:
            yield idx


def declare(module, name, ret, args):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
    return fn


def successors(block):
    """The blocks a finished block's terminator may branch to (none for a return)."""
    term = block.terminator
    if term is None:
        return []
    out = [op for op in term.operands if isinstance(op, ir.Block)]
    if isinstance(term, ir.SwitchInstr):
        out += [term.default] + [blk for _, blk in term.cases]
    return out


def memset_zero(b, ptr, nbytes):
    """nbytes (an int or an i64 value) zero bytes at ptr (llvm.memset)."""
    fn = declare(b.block.function.module, "llvm.memset.p0.i64", ir.VoidType(), [PTR, I8, I64, I1])
    b.call(fn, [ptr, ir.Constant(I8, 0), as_value(b, nbytes), ir.Constant(I1, 0)])


def memcpy(b, dst, src, nbytes):
    """nbytes (an int or an i64 value) from src to dst, not overlapping (llvm.memcpy)."""
    fn = declare(b.block.function.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [PTR, PTR, I64, I1])
    b.call(fn, [dst, src, as_value(b, nbytes), ir.Constant(I1, 0)])


def copy_i64_table(b, prefix, values, dst):
    """dst[i] = values[i] (Python ints) for every i: a memcpy from an internal constant table of the
    module, named by its prefix and contents. For offset tables known when the module is built:
    stored one by one, a loop unrolled over a filter's taps, they were hundreds of lines of the
    entry function for LLVM to compile."""
    import hashlib
    module = b.block.function.module
    name = f"{prefix}_{len(values)}_{hashlib.sha1(repr(list(values)).encode()).hexdigest()[:16]}"
    g = module.globals.get(name)
    if g is None:
        at = ir.ArrayType(I64, len(values))
        g = ir.GlobalVariable(module, at, name=name)
        g.linkage = "internal"
        g.global_constant = True
        g.initializer = ir.Constant(at, [ir.Constant(I64, v) for v in values])
    memcpy(b, dst, g, 8 * len(values))


def call_outlined(b, name, args, emit):
    """Call the module's void function `name` with the IR values args, first emitting it (internal,
    noinline) as emit(fb, params) with an IRBuilder fb in its entry block and its parameters.
    For the body of a scalar loop unrolled over a filter's taps: out of the loop, LLVM's loop
    passes see only a call there. The loop-access analysis (of LoopLoadElimination, and of the loop
    vectoriser where it runs) checks every pair of a loop's loads and stores: on LeNet's Winograd
    filter transform (25 loads, 36 stores a filter) alone in a module it took 0.14 of the 0.23 s
    of optimisation; with the body outlined that module optimises in 0.02 s."""
    module = b.block.function.module
    fn = library.existing(module, name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [a.type for a in args]), name=name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        emit(fb, list(fn.args))
        fb.ret_void()
    return b.call(fn, args)


def libm(module, name, dtype):
    """A C math function for float32 (tanhf) or float64 (tanh)."""
    t = ll_type(dtype)
    return declare(module, name + ("f" if dtype == "float32" else ""), t, [t])


def intrinsic(module, name, dtype, nargs=1):
    t = ll_type(dtype)
    suffix = "f32" if dtype == "float32" else "f64"
    return declare(module, f"llvm.{name}.{suffix}", t, [t] * nargs)


def cast_value(b, v, src, dst):
    """Convert a scalar value between dtypes with numpy's semantics."""
    src, dst = str(src), str(dst)
    if src == dst:
        return v
    st, dt = ll_type(src), ll_type(dst)
    if dst == "bool":
        if is_float(src):
            return b.zext(b.fcmp_unordered("!=", v, ir.Constant(st, 0.0)), I8)
        return b.zext(b.icmp_unsigned("!=", v, ir.Constant(st, 0)), I8)
    if is_float(src) and is_float(dst):
        return b.fpext(v, dt) if dt == F64 else b.fptrunc(v, dt)
    if is_float(src):
        return b.fptoui(v, dt) if is_unsigned(dst) else b.fptosi(v, dt)
    if is_float(dst):
        return b.uitofp(v, dt) if is_unsigned(src) else b.sitofp(v, dt)
    sw, dw = st.width, dt.width
    if sw == dw:
        return v
    if sw > dw:
        return b.trunc(v, dt)
    return b.zext(v, dt) if is_unsigned(src) else b.sext(v, dt)


_SPLAT = {}


def opaque(b, v):
    """v, through an empty inline-asm statement on x86 and AArch64 (elsewhere v itself): LLVM's
    passes cannot see what it holds, so they do not take apart the vector a caller built on
    purpose (an activation lane by lane that the SLP vectoriser joins, before shuffles that use its
    lanes in part: instcombine moved each lane's activation past them, into pieces of vectors)."""
    from .target import current
    t = current()
    reg = "v" if t.x86 else "w" if t.aarch64 else None
    if reg is None or not isinstance(v.type, ir.VectorType):
        return v
    return b.asm(ir.FunctionType(v.type, [v.type]), "", f"={reg},0", [v], False)


def splat(b, v, vt):
    """A vector of type vt with every lane v."""
    key = str(vt)
    consts = _SPLAT.get(key)
    if consts is None:
        consts = _SPLAT[key] = (ir.Constant(vt, ir.Undefined), ir.Constant(I32, 0),
                                ir.Constant(ir.VectorType(I32, vt.count), [0] * vt.count))
    undef, lane0, mask = consts
    x = b.insert_element(undef, v, lane0)
    return b.shuffle_vector(x, undef, mask)


_VCONST = {}


def vector_constant(vt, value):
    """The vector constant of type vt with every lane the Python number value (shared)."""
    key = (str(vt), repr(value))
    c = _VCONST.get(key)
    if c is None:
        c = _VCONST[key] = ir.Constant(vt, [ir.Constant(vt.element, value)] * vt.count)
    return c


# -- integer division and addressing (fold when static) -------------------------------------------

def floordiv(b, x, d):
    """floor(x / d) for d > 0 (x may be negative)."""
    if isinstance(x, int) and isinstance(d, int):
        return x // d
    if isinstance(d, int) and d == 1:
        return x
    xv, dv = as_value(b, x), as_value(b, d)
    q = b.sdiv(xv, dv)
    r = b.srem(xv, dv)
    return b.sub(q, b.zext(b.icmp_signed("<", r, i64(0)), I64))


def ceildiv(b, x, d):
    """ceil(x / d) for d > 0 (x may be negative)."""
    return sub(b, 0, floordiv(b, sub(b, 0, x), d))


def gep(b, ptr, off, etype):
    """ptr + off elements of type etype (off an int or an i64 value)."""
    if isinstance(off, int) and off == 0:
        return ptr
    return b.gep(ptr, [as_value(b, off)], source_etype=etype)


def lanes(dtype):
    """Elements of dtype in one vector register of the target compiled for."""
    from .target import current
    return max(1, current().vector_bytes // itemsize(dtype))


class FunctionContext:
    """A builder in a function being emitted, with stack variables: what helper functions and
    outlined loop bodies need of a lowering Context (which extends it)."""

    def __init__(self, module, builder):
        self.module, self.b = module, builder

    def local(self, lltype, init=None):
        """A stack variable (alloca in the entry block, so LLVM promotes it to a register)."""
        with self.b.goto_entry_block():
            slot = self.b.alloca(lltype)
        if init is not None:
            self.b.store(init, slot)
        return slot


def lane_sum(b, vec):
    """The sum of a vector's lanes, pairwise: a fixed order, so partial sums add up the same way on
    every run and thread count."""
    n = vec.type.count
    while n > 1:
        half = n // 2
        lo = b.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(half))))
        hi = b.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(half, n))))
        vec = b.fadd(lo, hi)
        n = half
    return b.extract_element(vec, ir.Constant(ir.IntType(32), 0))
