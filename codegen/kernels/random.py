"""UniformDraw / NormalDraw (Philox4x32-10) and MultinomialFromUniform.

The draw kernel emits the arithmetic that symcnn/tensor/philox.py specifies, so native and
reference uniforms are the same bits; normals use vmath's inline log and sincos, within an ulp or
two (before rounding to the dtype) of numpy's log/cos/sin. Element j depends only on (key, draw
counter, j), so the blocks of a large draw are split into chunks over the thread pool
(parallel.run_parallel): every thread computes its own blocks, and the result does not depend
on the number of threads or on which thread ran what. The loop over the blocks of a chunk is
plain scalar IR that LLVM's loop vectoriser widens across blocks (each lane one block counter).
"""
import math

from llvmlite import ir

from symcnn.sandbox.multinomial import MultinomialFromUniform
from symcnn.tensor import philox
from symcnn.tensor.raw_random import INT64_MAX, RandomDraw

from .. import irutil as U
from .. import vmath
from ..lower import E_SHAPE, E_VALUE, lower
from ..options import options
from ..parallel import run_parallel, threads

CHUNK = 1024               # Philox blocks per parallel work item


def _c32(v):
    return ir.Constant(U.I32, v & philox.MASK32)


def _mulhilo(b, x, m):
    p = b.mul(b.zext(x, U.I64), ir.Constant(U.I64, m))
    return b.trunc(b.lshr(p, ir.Constant(U.I64, 32)), U.I32), b.trunc(p, U.I32)


def emit_philox(b, c, key):
    """The 4 output words (i32) of Philox4x32-10 for counter words c and key (k0, k1) (i32)."""
    k0, k1 = key
    for r in range(philox.ROUNDS):
        rk0 = b.add(k0, _c32(r * philox.W0)) if r else k0
        rk1 = b.add(k1, _c32(r * philox.W1)) if r else k1
        hi0, lo0 = _mulhilo(b, c[0], philox.M0)
        hi1, lo1 = _mulhilo(b, c[2], philox.M1)
        c = [b.xor(b.xor(hi1, c[1]), rk0), lo1, b.xor(b.xor(hi0, c[3]), rk1), lo0]
    return c


def _uniforms(b, w, dtype):
    """The block's uniforms in (0, 1), as philox.uniform_words."""
    if dtype == "float32":
        out = []
        for x in w:
            k = b.or_(b.shl(b.lshr(x, _c32(9)), _c32(1)), _c32(1))  # 2 * (x >> 9) + 1 < 2^24
            out.append(b.fmul(b.sitofp(k, U.F32), ir.Constant(U.F32, 2.0 ** -24)))
        return out
    out = []
    for s in range(2):
        x = b.or_(b.zext(w[2 * s], U.I64), b.shl(b.zext(w[2 * s + 1], U.I64), U.i64(32)))
        k = b.or_(b.shl(b.lshr(x, U.i64(12)), U.i64(1)), U.i64(1))  # < 2^53: exact in a double
        out.append(b.fmul(b.sitofp(k, U.F64), ir.Constant(U.F64, 2.0 ** -53)))
    return out


def _box_muller(b, module, u, dtype):
    """philox.box_muller on one block: pairs (u[2m], u[2m+1]) -> (r cos t, r sin t), in float64
    with inline, vectorisable log / sqrt / sincos (vmath), within an ulp or two of numpy's."""
    sqrt = U.intrinsic(module, "sqrt", "float64")
    out = []
    for m in range(len(u) // 2):
        u1, u2 = (U.cast_value(b, v, dtype, "float64") for v in (u[2 * m], u[2 * m + 1]))
        r = b.call(sqrt, [b.fmul(ir.Constant(U.F64, -2.0), vmath.log(b, module, u1, "float64"))])
        cos_t, sin_t = vmath.sincos_2pi(b, module, u2)
        out += [b.fmul(r, cos_t), b.fmul(r, sin_t)]
    return [U.cast_value(b, z, "float64", dtype) for z in out]


def _block_values(b, module, blk, key, ctr, dtype, distribution):
    c = [b.trunc(blk, U.I32), b.trunc(b.lshr(blk, U.i64(32)), U.I32), ctr[0], ctr[1]]
    u = _uniforms(b, emit_philox(b, c, key), dtype)
    return _box_muller(b, module, u, dtype) if distribution == "normal" else u


def _emit_blocks(b, module, dtype, distribution, out_ptr, key, ctr, blk0, blk1):
    """Fill the elements of blocks [blk0, blk1) (all full blocks) of the output."""
    e = philox.PER_BLOCK[dtype]
    ft = U.ll_type(dtype)
    with U.for_range(b, blk1, start=blk0, name="blk") as blk:
        vals = _block_values(b, module, blk, key, ctr, dtype, distribution)
        base = b.mul(blk, U.i64(e))
        for s, v in enumerate(vals):
            b.store(v, b.gep(out_ptr, [b.add(base, U.i64(s))], source_etype=ft))


def _checked_size(ctx, node, size):
    """The sample's dims (static ints or i64 values), after the checks the reference makes:
    no negative dimension, and a byte count that fits in int64."""
    b = ctx.b
    op = node.op
    static = node.outputs[1].type.shape
    if not isinstance(size.shape[0], int):  # a size vector whose length is only known at run time
        ctx.fail_if(b.icmp_signed("!=", size.shape[0], U.i64(op.ndim)), E_VALUE, size.shape[0])
    dims = []
    for d, st in enumerate(static):
        if st is not None:
            dims.append(st)
            continue
        v = U.cast_value(b, b.load(size.flat_addr(b, d), typ=size.lltype), size.dtype, "int64")
        ctx.fail_if(b.icmp_signed("<", v, U.i64(0)), E_VALUE, v, d)
        dims.append(v)
    itemsize = U.itemsize(op.dtype)
    if all(isinstance(d, int) for d in dims):
        if math.prod(dims) * itemsize > INT64_MAX:
            raise ValueError(f"{op}: size {tuple(dims)} is too large (its byte count overflows int64)")
        return dims
    smul = U.declare(ctx.module, "llvm.smul.with.overflow.i64",
                     ir.LiteralStructType([U.I64, U.I1]), [U.I64, U.I64])
    acc, overflow = U.i64(itemsize), ir.Constant(U.I1, 0)
    for d in dims:
        r = b.call(smul, [acc, U.as_value(b, d)])
        acc, overflow = b.extract_value(r, 0), b.or_(overflow, b.extract_value(r, 1))
    ctx.fail_if(overflow, E_VALUE, acc)
    return dims


@lower.register(RandomDraw)
def lower_random_draw(ctx, node, ins):
    b = ctx.b
    state, size = ins
    dtype, distribution = node.op.dtype, node.op.distribution
    if not isinstance(state.shape[0], int):  # set_value may have given the state any length
        ctx.fail_if(b.icmp_signed("!=", state.shape[0], U.i64(philox.STATE_WORDS)), E_VALUE, state.shape[0])
    dims = _checked_size(ctx, node, size)
    words = [b.load(state.flat_addr(b, k), typ=U.I32) for k in range(philox.STATE_WORDS)]
    key, ctr = words[:2], words[2:]
    out = ctx.alloc(node.outputs[1], dims)
    new_state = ctx.alloc(node.outputs[0], [philox.STATE_WORDS])
    count = b.add(b.or_(b.zext(ctr[0], U.I64), b.shl(b.zext(ctr[1], U.I64), U.i64(32))), U.i64(1))
    nxt = [words[0], words[1], b.trunc(count, U.I32), b.trunc(b.lshr(count, U.i64(32)), U.I32)]
    for k, w in enumerate(nxt):
        b.store(w, new_state.flat_addr(b, k))

    e = philox.PER_BLOCK[dtype]
    n = U.as_value(b, out.size(b))
    full = b.udiv(n, U.i64(e))
    rest = b.urem(n, U.i64(e))
    if out.bounds is not None:  # bounds-checked build: one checked range for the whole output
        from ..lower import bounds_checker
        bounds_checker().check_range(b, out, n, 1)
    T = threads()
    if T == 1:
        _emit_blocks(b, ctx.module, dtype, distribution, out.ptr, key, ctr, U.i64(0), full)
    else:
        chunks = b.udiv(b.add(full, U.i64(CHUNK - 1)), U.i64(CHUNK))
        values = [out.ptr, b.zext(key[0], U.I64), b.zext(key[1], U.I64), b.zext(ctr[0], U.I64),
                  b.zext(ctr[1], U.I64), full]

        def emit(bctx, v, tid, n0, n1):
            bb = bctx.b
            ptr, nfull = v[0], v[5]
            k = [bb.trunc(x, U.I32) for x in v[1:3]]
            c = [bb.trunc(x, U.I32) for x in v[3:5]]
            lo = bb.mul(n0, U.i64(CHUNK))
            hi = U.smin(bb, bb.mul(n1, U.i64(CHUNK)), nfull)
            _emit_blocks(bb, bctx.module, dtype, distribution, ptr, k, c, lo, hi)

        serial = b.icmp_signed("<", full, U.i64(options.random_min_parallel_blocks))
        run_parallel(ctx, "symcnn_random", values, chunks, T, emit, serial=serial)
    # the last, partial block: its first `rest` values
    with b.if_then(b.icmp_unsigned(">", rest, U.i64(0))):
        vals = _block_values(b, ctx.module, full, key, ctr, dtype, distribution)
        base = b.mul(full, U.i64(e))
        for s, v in enumerate(vals[:e - 1]):
            with b.if_then(b.icmp_unsigned("<", U.i64(s), rest)):
                b.store(v, b.gep(out.ptr, [b.add(base, U.i64(s))], source_etype=out.lltype))
    return [new_state, out]


@lower.register(MultinomialFromUniform)
def lower_multinomial_from_uniform(ctx, node, ins):
    b = ctx.b
    pvals, unis = ins
    ctx.check_equal(pvals.shape[0], unis.shape[0], E_SHAPE)
    out = ctx.alloc(node.outputs[0], [pvals.shape[0], pvals.shape[1]])
    pdt, udt, odt = node.inputs[0].dtype, node.inputs[1].dtype, node.outputs[0].dtype
    acc = ctx.local(U.F64)
    found = ctx.local(U.I1)
    one, zero = U.const(odt, 1), U.const(odt, 0)
    with U.for_range(b, out.shape[0], name="row") as i:
        u = U.cast_value(b, unis.load(b, [i]), udt, "float64")
        b.store(ir.Constant(U.F64, 0.0), acc)
        b.store(ir.Constant(U.I1, 0), found)
        with U.for_range(b, out.shape[1], name="col") as m:
            a = b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, pvals.load(b, [i, m]), pdt, "float64"))
            b.store(a, acc)
            seen = b.load(found, typ=U.I1)
            hit = b.and_(b.fcmp_ordered(">", a, u), b.not_(seen))
            out.store(b, [i, m], b.select(hit, one, zero))
            b.store(b.or_(seen, hit), found)
    return [out]
