"""A packed, cache-blocked, register-blocked float32/float64 GEMM (BLIS/Goto style):

    C[M, N] (+)= A[M, K] @ B[K, N]

A and B are "loaders": anything with .dtype, and .load(builder, [row, col]) -> scalar (an
Array with any strides, a FusedDot Prologue, or `Strided` below), so operands are packed from
arbitrary strides with their dtype conversion (and a FusedDot prologue) applied once per packed
element. C has unit column stride and a row stride `c_rs`.

Blocking (loop order jc -> pc -> ic -> jr -> ir):
  jc: NC columns of B/C        pc: KC-deep slices of K (pack B[pc:pc+kc, jc:jc+nc] into panels)
  ic: MC rows of A/C (pack A[ic:ic+mc, pc:pc+kc] into MR-row micro-panels)
  jr/ir: the micro-kernel on an MR x NR tile (NR = NV vectors) with MR*NV vector accumulators
         kept in registers, one FMA per (row, vector) per k step.
Packed A micro-panel: [kc][MR] (rows past M are zero). Packed B panel: [kc][NR]; the last,
partial panel of a block is only ceil(rem / L) vectors wide ([kc][w], zero-padded columns),
and it runs a micro-kernel variant with that many vectors whose last vector is stored with
llvm.masked.store -- no scalar loops. Rows past M in the last row panel are computed on the
zero padding and not stored. The packing loops are emitted inline (their loaders are
graph-specific); the micro-kernels and the macro-kernel (jr/ir loops) are internal functions
shared per module and dtype. The micro-kernel adds the old C (accumulate, or a later k slice)
on one of its two store paths; the other overwrites C without reading it.
"""
import os

from llvmlite import ir

from .. import library
from .. import irutil as U
from .. import target as targets
from ..options import options


def vec_bytes():
    """Width of the vector registers of the target compiled for (64 with AVX-512, 32 with AVX2,
    16 with SSE2 or NEON)."""
    return targets.current().vector_bytes


def fma_name():
    """The vector multiply-add intrinsic: llvm.fma where the target fuses in hardware, else
    llvm.fmuladd (a multiply and an add; llvm.fma there would be a libm call per lane)."""
    return "fma" if targets.current().fma else "fmuladd"


def params(dtype):
    """(L lanes, MR rows, NV vectors, KC, MC, NC) for a dtype on the target: MR x NV accumulators
    plus NV loaded vectors and a broadcast must fit the vector registers (6 x 4 of 32, 6 x 2 of 16)."""
    size = U.itemsize(dtype)
    L = max(1, vec_bytes() // size)
    NV = 4 if targets.current().vector_registers >= 32 else 2
    MR = 6
    KC = 256
    MC = 120
    NC = (4096 // size) // (NV * L) * (NV * L)   # 1024 float32 / 512 float64 columns
    if _TUNE:  # SYMCNN_GEMM_BLOCKS="KC,MC,NC" (float32 sizes; float64 halves NC), for tuning runs
        KC, MC, NC = _TUNE
        MC = max(MR, MC // MR * MR)
        NC = (NC * 4 // size) // (NV * L) * (NV * L)
    return L, MR, NV, KC, MC, max(NC, NV * L)


_TUNE = tuple(int(x) for x in os.environ["SYMCNN_GEMM_BLOCKS"].split(",")) if os.environ.get("SYMCNN_GEMM_BLOCKS") else None


class Strided:
    """A matrix in memory as a loader: element pointer, row and column strides (elements)."""

    def __init__(self, dtype, ptr, rs, cs=1):
        self.dtype, self.ptr, self.rs, self.cs = str(dtype), ptr, rs, cs

    def load(self, b, idx):
        i, j = idx
        off = U.add(b, U.mul(b, i, self.rs), U.mul(b, j, self.cs))
        et = U.ll_type(self.dtype)
        return b.load(U.gep(b, self.ptr, off, et), typ=et)


def _sfx(dtype):
    return "f32" if dtype == "float32" else "f64"


# -- shared functions ---------------------------------------------------------------------------

def _function(module, name, argtypes, noinline=True):
    """(fn, new): the module's void function `name`; new when the module had none, then declared
    here (internal, and never inlined with noinline) for the caller to emit its body."""
    fn = library.existing(module, name)
    if fn is not None:
        return fn, False
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), argtypes), name=name)
    fn.linkage = "internal"
    if noinline:
        fn.attributes.add("noinline")
    return fn, True


def panel_group(dtype, nv):
    """Row panels of A that the micro-kernel of nv vectors of columns takes at once: NV for a column
    block one vector wide (the edge of C, or all of a C one vector wide: a small image's im2col
    product), whose MR accumulators alone are too few chains to hide the multiply-add's latency,
    each with a broadcast load; else 1 (2 of 4 vectors: 12 accumulators ran near the full tile's
    speed, and each grouped kernel adds compile time to every module with a GEMM). Measured: a
    'half' 3x3 stride-2 128 -> 256 layer on 8x8 (batch 64, 2 threads; its input gradient a product
    one vector wide per image), train step 9.36-9.49 -> 8.60-9.25 ms in alternating runs."""
    return params(dtype)[2] if nv == 1 else 1


def _microkernel(module, dtype, nv, group=1):
    """void ukr(kc, Ap, Bp, C, c_rs, i1 acc, mrows, ncols):
    C[:mrows, :ncols] (+)= Ap^T @ Bp with Ap `group` consecutive micro-panels [kc][MR] (MR*kc
    elements apart) and Bp [kc][nv*L] packed (ncols > (nv-1)*L); mrows <= group*MR."""
    L, MR1, NV, KC, MC, NC = params(dtype)
    MR = MR1 * group
    I64, P = U.I64, U.PTR
    name = f"symcnn_gemm_ukr_{dtype}_{MR1}x{nv}x{L}" + (f"_g{group}" if group > 1 else "")
    fn, new = _function(module, name, [I64, P, P, P, I64, U.I1, I64, I64])
    if not new:
        return fn
    kc, ap, bp, c, crs, acc, mrows, ncols = fn.args
    for arg in (ap, bp, c):
        arg.add_attribute("noalias")
    et = U.ll_type(dtype)
    size = U.itemsize(dtype)
    vt = ir.VectorType(et, L)
    mt = ir.VectorType(U.I1, L)
    fma = U.declare(module, f"llvm.{fma_name()}.v{L}{_sfx(dtype)}", vt, [vt, vt, vt])
    mload = U.declare(module, f"llvm.masked.load.v{L}{_sfx(dtype)}.p0", vt, [P, U.I32, mt, vt])
    mstore = U.declare(module, f"llvm.masked.store.v{L}{_sfx(dtype)}.p0", ir.VoidType(), [vt, P, U.I32, mt])
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(vt, [ir.Constant(et, 0.0)] * L)
    W = nv * L
    # prefetch the C tile (it is read/written only after the k loop; a large C is not in cache)
    prefetch = U.declare(module, "llvm.prefetch.p0", ir.VoidType(), [P, U.I32, U.I32, U.I32])
    for i in range(MR):
        crow = U.gep(b, c, b.mul(U.i64(i), crs) if i else 0, et)
        for j in range(nv):
            b.call(prefetch, [U.gep(b, crow, j * L, et), ir.Constant(U.I32, 1), ir.Constant(U.I32, 3),
                              ir.Constant(U.I32, 1)])
    # the k loop with the accumulators as phis
    head, body, done = U.loop_blocks(b, "k")
    q = b.phi(I64, name="q")
    q.add_incoming(U.i64(0), entry)
    accs = [[b.phi(vt, name=f"c{i}_{j}") for j in range(nv)] for i in range(MR)]
    for row in accs:
        for ph in row:
            ph.add_incoming(zero, entry)
    b.cbranch(b.icmp_signed("<", q, kc), body, done)
    b.position_at_end(body)
    brow = b.gep(bp, [b.mul(q, U.i64(W))], source_etype=et)
    bv = [b.load(U.gep(b, brow, j * L, et), typ=vt, align=64) for j in range(nv)]
    arows = [b.gep(ap, [b.add(b.mul(q, U.i64(MR1)), b.mul(kc, U.i64(g * MR1)) if g else U.i64(0))],
                   source_etype=et) for g in range(group)]
    new = []
    for i in range(MR):
        a = U.splat(b, b.load(U.gep(b, arows[i // MR1], i % MR1, et), typ=et), vt)
        new.append([b.call(fma, [a, bv[j], accs[i][j]]) for j in range(nv)])
    nxt = b.add(q, U.i64(1))
    for i in range(MR):
        for j in range(nv):
            accs[i][j].add_incoming(new[i][j], body)
    q.add_incoming(nxt, body)
    b.branch(head)
    b.position_at_end(done)
    # store: the last vector masked to the columns that exist; old C added where acc
    lanes = ir.Constant(ir.VectorType(U.I64, L), list(range(L)))
    last = b.icmp_signed("<", lanes, U.splat(b, b.sub(ncols, U.i64((nv - 1) * L)), ir.VectorType(U.I64, L)))
    full = ir.Constant(mt, [ir.Constant(U.I1, 1)] * L)
    masks = [full] * (nv - 1) + [last]
    align = ir.Constant(U.I32, size)
    def store_rows(add_old):
        def store_row(i):
            crow = U.gep(b, c, b.mul(U.i64(i), crs) if i else 0, et)
            for j in range(nv):
                ptr = U.gep(b, crow, j * L, et)
                v = accs[i][j]
                if add_old:
                    v = b.fadd(v, b.call(mload, [ptr, align, masks[j], zero]))
                if j < nv - 1:
                    b.store(v, ptr, align=size)
                else:
                    b.call(mstore, [v, ptr, align, masks[j]])
        for_tile_rows(b, MR, mrows, store_row)
    # two store paths: beside a short k loop (a Winograd product over 20 channels) the masked loads
    # and adds of C that an overwrite does not need were a good part of the tile's time
    with b.if_else(acc) as (then, otherwise):
        with then:
            store_rows(True)
        with otherwise:
            store_rows(False)
    b.ret_void()
    return fn


def for_tile_rows(b, MR, mrows, emit):
    """emit(i) for the rows i < mrows of an MR-row micro-tile (mrows >= 1 at run time: row 0 always)."""
    for i in range(MR):
        if i == 0:
            emit(0)
        else:
            with b.if_then(b.icmp_signed("<", U.i64(i), mrows)):
                emit(i)


def macrokernel(module, dtype):
    """void macro(mc, nc, kc, Ap, Bp, C, c_rs, i1 acc): all micro-tiles of one packed block."""
    L, MR, NV, KC, MC, NC = params(dtype)
    I64, P = U.I64, U.PTR
    fn, new = _function(module, f"symcnn_gemm_macro_{dtype}_{MR}x{NV}x{L}", [I64, I64, I64, P, P, P, I64, U.I1])
    if not new:
        return fn
    mc, nc, kc, ap, bp, c, crs, acc = fn.args
    et = U.ll_type(dtype)
    NR = NV * L
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    npan = U.ceildiv(b, mc, MR)

    def row_panels(ukr, bpanel, c0, ncols, first=None, group=1):
        """ukr on the row panels from `first` on, `group` at a time."""
        stop = npan if group == 1 else b.udiv(npan, U.i64(group))
        with U.for_range(b, stop, start=0 if first is None else first, name="ir") as ip:
            r0 = b.mul(ip, U.i64(MR * group))
            rows = U.smin(b, b.sub(mc, r0), MR * group)
            a = b.gep(ap, [b.mul(r0, kc)], source_etype=et)
            cc = b.gep(c0, [b.mul(r0, crs)], source_etype=et)
            b.call(ukr, [kc, a, bpanel, cc, crs, acc, rows, ncols])

    nfull = b.udiv(nc, U.i64(NR))
    full = _microkernel(module, dtype, NV)
    with U.for_range(b, nfull, name="jr") as jp:
        col = b.mul(jp, U.i64(NR))
        row_panels(full, b.gep(bp, [b.mul(col, kc)], source_etype=et),
                   b.gep(c, [col], source_etype=et), U.i64(NR))
    col = b.mul(nfull, U.i64(NR))
    rem = b.sub(nc, col)
    bpanel = b.gep(bp, [b.mul(col, kc)], source_etype=et)
    c0 = b.gep(c, [col], source_etype=et)
    nv_e = U.ceildiv(b, rem, L)
    for nv in range(1, NV + 1):
        with b.if_then(b.icmp_signed("==", nv_e, U.i64(nv))):
            g = panel_group(dtype, nv)   # whole groups of panels, then those left over one at a time
            row_panels(_microkernel(module, dtype, nv, g), bpanel, c0, rem, group=g)
            if g > 1:
                row_panels(_microkernel(module, dtype, nv), bpanel, c0, rem,
                           first=b.mul(b.udiv(npan, U.i64(g)), U.i64(g)))
    b.ret_void()
    return fn


# -- the inline driver ---------------------------------------------------------------------------

def _pack_b(ctx, dtype, B, N, pc, kc, jc, nc, bp):
    """bp <- B[pc:pc+kc, jc:jc+nc] as NR-column panels [kc][NR], then one [kc][w] partial panel."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = params(dtype)
    NR = NV * L
    et = U.ll_type(dtype)
    nfull = b.udiv(U.as_value(b, nc), U.i64(NR))
    with U.for_range(b, nfull, name="pbj") as jp:
        col0 = b.add(U.as_value(b, jc), b.mul(jp, U.i64(NR)))
        panel = b.gep(bp, [b.mul(b.mul(jp, U.i64(NR)), kc)], source_etype=et)
        with U.for_range(b, kc, name="pbp") as p:
            row = b.add(U.as_value(b, pc), p)
            dst = b.gep(panel, [b.mul(p, U.i64(NR))], source_etype=et)
            with U.for_range(b, NR, name="pbc") as j:
                v = U.cast_value(b, B.load(b, [row, b.add(col0, j)]), B.dtype, dtype)
                b.store(v, b.gep(dst, [j], source_etype=et))
    done = b.mul(nfull, U.i64(NR))
    rem = b.sub(U.as_value(b, nc), done)
    with b.if_then(b.icmp_signed(">", rem, U.i64(0))):
        w = b.mul(U.ceildiv(b, rem, L), U.i64(L))
        col0 = b.add(U.as_value(b, jc), done)
        last = b.sub(U.as_value(b, N), U.i64(1))
        panel = b.gep(bp, [b.mul(done, kc)], source_etype=et)
        zero = U.const(dtype, 0)
        with U.for_range(b, kc, name="pep") as p:
            row = b.add(U.as_value(b, pc), p)
            dst = b.gep(panel, [b.mul(p, w)], source_etype=et)
            with U.for_range(b, w, name="pec") as j:
                col = b.add(col0, j)
                v = U.cast_value(b, B.load(b, [row, U.smin(b, col, last)]), B.dtype, dtype)
                b.store(b.select(b.icmp_signed("<", j, rem), v, zero), b.gep(dst, [j], source_etype=et))


def _pack_a(ctx, dtype, A, M, ic, mc, pc, kc, ap):
    """ap <- A[ic:ic+mc, pc:pc+kc] as MR-row micro-panels [kc][MR] (rows past M are zero)."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = params(dtype)
    et = U.ll_type(dtype)
    npan = U.ceildiv(b, U.as_value(b, mc), MR)
    last = b.sub(U.as_value(b, M), U.i64(1))
    zero = U.const(dtype, 0)
    with U.for_range(b, npan, name="pai") as ip:
        r0 = b.add(U.as_value(b, ic), b.mul(ip, U.i64(MR)))
        rows = [b.add(r0, U.i64(i)) for i in range(MR)]
        valid = [b.icmp_signed("<=", r, last) for r in rows]
        clamped = [U.smin(b, r, last) for r in rows]
        panel = b.gep(ap, [b.mul(b.mul(ip, U.i64(MR)), kc)], source_etype=et)
        with U.for_range(b, kc, name="pap") as p:
            col = b.add(U.as_value(b, pc), p)
            dst = b.gep(panel, [b.mul(p, U.i64(MR))], source_etype=et)
            for i in range(MR):
                v = U.cast_value(b, A.load(b, [clamped[i], col]), A.dtype, dtype)
                b.store(b.select(valid[i], v, zero), U.gep(b, dst, i, et))


def _transpose_shuffles(b, rows, L):
    """The L x L transpose of `rows` (L vectors of L lanes): log2(L) butterfly stages, stage h
    swapping bit h of the row index with bit h of the lane index."""
    rows = list(rows)
    h = 1
    while h < L:
        lo = [k if not k & h else L + k - h for k in range(L)]
        hi = [k + h if not k & h else L + k for k in range(L)]
        out = list(rows)
        for i in range(L):
            if not i & h:
                x, y = rows[i], rows[i + h]
                out[i] = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(U.I32, L), lo))
                out[i + h] = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(U.I32, L), hi))
        rows = out
        h *= 2
    return rows


def _pack_b_transposed(ctx, dtype, x, ld, N, pc, kc, jc, nc, bp):
    """_pack_b of B[p, j] = x[p + j*ld] (a transposed matrix, unit row stride): the full NR-column
    panels read L x L blocks along p (contiguous), transpose them in registers and store whole
    vectors; the rows of a panel past the last whole block of L, and the partial panel, go
    through _pack_b's element loops."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = params(dtype)
    NR = NV * L
    et = U.ll_type(dtype)
    vt = ir.VectorType(et, L)
    size = U.itemsize(dtype)
    nfull = b.udiv(nc, U.i64(NR))
    kblk = b.mul(b.udiv(kc, U.i64(L)), U.i64(L))
    with U.for_range(b, nfull, name="tbj") as jp:
        col0 = b.add(jc, b.mul(jp, U.i64(NR)))
        panel = b.gep(bp, [b.mul(b.mul(jp, U.i64(NR)), kc)], source_etype=et)
        with U.for_range(b, kblk, step=L, name="tbp") as p0:
            row = b.add(pc, p0)
            # one L x L block per iteration of a loop over the panel's NV vectors (compile time:
            # one transposition network, not NV)
            with U.for_range(b, NV, name="tbv") as v:
                c0 = b.add(col0, b.mul(v, U.i64(L)))
                vecs = [b.load(b.gep(x, [b.add(b.mul(b.add(c0, U.i64(j)), ld), row)], source_etype=et), typ=vt,
                               align=size) for j in range(L)]
                for q, vec in enumerate(_transpose_shuffles(b, vecs, L)):
                    dst = b.gep(panel, [b.add(b.mul(b.add(p0, U.i64(q)), U.i64(NR)), b.mul(v, U.i64(L)))],
                                source_etype=et)
                    b.store(vec, dst, align=size)
        with U.for_range(b, kc, start=kblk, name="tbq") as p:
            row = b.add(pc, p)
            dst = b.gep(panel, [b.mul(p, U.i64(NR))], source_etype=et)
            with U.for_range(b, NR, name="tbc") as j:
                v = b.load(b.gep(x, [b.add(b.mul(b.add(col0, j), ld), row)], source_etype=et), typ=et)
                b.store(v, b.gep(dst, [j], source_etype=et))
    done = b.mul(nfull, U.i64(NR))
    with b.if_then(b.icmp_signed(">", b.sub(nc, done), U.i64(0))):
        # the partial panel: _pack_b's own loops, on the columns from `done` on (their panels
        # start at done * kc in bp, where _pack_b puts a block's first panel)
        _pack_b(ctx, dtype, Strided(dtype, x, 1, ld), N, pc, kc, b.add(jc, done), b.sub(nc, done),
                b.gep(bp, [b.mul(done, kc)], source_etype=et))


def _pack_a_transposed(ctx, dtype, x, ld, M, ic, mc, pc, kc, ap):
    """_pack_a of A[i, p] = x[i + p*ld] (a transposed matrix, unit row stride): for each p the
    block's rows are contiguous in memory, read in order into their micro-panels (rows past M zero)."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = params(dtype)
    et = U.ll_type(dtype)
    npan = U.ceildiv(b, mc, MR)
    nfull = b.udiv(b.sub(M, ic), U.i64(MR))   # panels whose MR rows all exist
    nfull = U.smin(b, nfull, npan)
    zero = U.const(dtype, 0)
    with U.for_range(b, kc, name="tap") as p:
        src = b.gep(x, [b.add(b.mul(b.add(pc, p), ld), ic)], source_etype=et)
        dst0 = b.gep(ap, [b.mul(p, U.i64(MR))], source_etype=et)
        with U.for_range(b, nfull, name="tai") as ip:
            s = b.gep(src, [b.mul(ip, U.i64(MR))], source_etype=et)
            d = b.gep(dst0, [b.mul(b.mul(ip, U.i64(MR)), kc)], source_etype=et)
            for i in range(MR):
                b.store(b.load(U.gep(b, s, i, et), typ=et), U.gep(b, d, i, et))
        with b.if_then(b.icmp_signed("<", nfull, npan)):
            # the last panel, with rows past M: zeros there
            r0 = b.mul(nfull, U.i64(MR))
            s = b.gep(src, [r0], source_etype=et)
            d = b.gep(dst0, [b.mul(r0, kc)], source_etype=et)
            left = b.sub(b.sub(M, ic), r0)
            for i in range(MR):
                ok = b.icmp_signed("<", U.i64(i), left)
                v = b.load(U.gep(b, s, U.smin(b, U.i64(i), b.sub(left, U.i64(1))), et), typ=et)
                b.store(b.select(ok, v, zero), U.gep(b, d, i, et))


def _strided_of(x, dtype):
    """A Strided view of a loader that is plain memory of `dtype` (else None)."""
    from ..lower import Array, bounds_checker
    if isinstance(x, Strided):
        return x if x.dtype == dtype else None
    if isinstance(x, Array) and x.dtype == dtype and x.ndim == 2 and bounds_checker() is None:
        return Strided(dtype, x.ptr, x.strides[0], x.strides[1])
    return None


def _pack_function(module, dtype, which):
    """void pack(X, rs, cs, dim, r0, rn, c0, cn, dst): _pack_a (which='a': dim = M, rows ic/mc, cols
    pc/kc) or _pack_b (which='b': dim = N, rows pc/kc, cols jc/nc) of a strided matrix; unit
    column stride gets its own loop (contiguous loads the vectorizer can use)."""
    I64, P = U.I64, U.PTR
    fn, new = _function(module, f"symcnn_gemm_pack{which}_{dtype}", [P] + [I64] * 7 + [P])
    if not new:
        return fn
    x, rs, cs, dim, r0, rn, c0, cn, dst = fn.args
    for arg in (x, dst):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fctx = U.FunctionContext(module, b)
    with b.if_else(b.icmp_signed("==", cs, U.i64(1))) as (unit, other):
        with unit:
            (_pack_a if which == "a" else _pack_b)(fctx, dtype, Strided(dtype, x, rs, 1), dim, r0, rn, c0, cn, dst)
        with other:
            # a transposed operand (unit row stride, as X.T): its own loops, along memory
            with b.if_else(b.icmp_signed("==", rs, U.i64(1))) as (transposed, strided):
                with transposed:
                    if which == "a":
                        _pack_a_transposed(fctx, dtype, x, cs, dim, r0, rn, c0, cn, dst)
                    else:
                        _pack_b_transposed(fctx, dtype, x, cs, dim, r0, rn, c0, cn, dst)
                with strided:
                    (_pack_a if which == "a" else _pack_b)(fctx, dtype, Strided(dtype, x, rs, cs), dim, r0, rn, c0, cn, dst)
    b.ret_void()
    return fn


def packer(ctx, dtype, which, X):
    """fn(ctx, dtype, loader, dim, r0, rn, c0, cn, dst): the shared pack function for plain
    strided memory, else the inline packing loops (prologues, other dtypes, bounds checks)."""
    sx = _strided_of(X, dtype)
    if sx is None:
        return X, (_pack_a if which == "a" else _pack_b)
    fn = _pack_function(ctx.module, dtype, which)

    def call(ctx, dtype, loader, dim, r0, rn, c0, cn, dst):
        b = ctx.b
        args = [loader.ptr, loader.rs, loader.cs, dim, r0, rn, c0, cn]
        b.call(fn, [U.as_value(b, v) for v in args] + [dst])
    return sx, call


def _driver(ctx, dtype, M, N, K, A, B, c_ptr, c_rs, acc0, ap, bp, pack_a=_pack_a, pack_b=_pack_b):
    b = ctx.b
    L, MR, NV, KC, MC, NC = params(dtype)
    et = U.ll_type(dtype)
    macro = macrokernel(ctx.module, dtype)
    Mv, Nv, Kv = (U.as_value(b, x) for x in (M, N, K))
    crs = U.as_value(b, c_rs)
    with U.for_range(b, Nv, step=NC, name="jc") as jc:
        nc = U.smin(b, b.sub(Nv, jc), NC)
        with U.for_range(b, U.smax(b, Kv, U.i64(1)), step=KC, name="pc") as pc:
            kc = U.smin(b, b.sub(Kv, pc), KC)
            pack_b(ctx, dtype, B, Nv, pc, kc, jc, nc, bp)
            acc = b.or_(acc0, b.icmp_signed(">", pc, U.i64(0)))
            with U.for_range(b, Mv, step=MC, name="ic") as ic:
                mc = U.smin(b, b.sub(Mv, ic), MC)
                pack_a(ctx, dtype, A, Mv, ic, mc, pc, kc, ap)
                cblk = b.gep(c_ptr, [b.add(b.mul(ic, crs), jc)], source_etype=et)
                b.call(macro, [mc, nc, kc, ap, bp, cblk, crs, acc])


def _driver_function(module, dtype):
    """void gemm(M, N, K, A, ars, acs, B, brs, bcs, C, crs, i1 acc, Ap, Bp): strided operands."""
    I64, P = U.I64, U.PTR
    fn, new = _function(module, f"symcnn_gemm_{dtype}_packed",
                        [I64] * 3 + [P, I64, I64, P, I64, I64, P, I64, U.I1, P, P], noinline=False)
    if not new:
        return fn
    M, N, K, a, ars, acs, bm, brs, bcs, c, crs, acc, ap, bp = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fctx = U.FunctionContext(module, b)
    A, B = Strided(dtype, a, ars, acs), Strided(dtype, bm, brs, bcs)
    _, pa = packer(fctx, dtype, "a", A)
    _, pb = packer(fctx, dtype, "b", B)
    _driver(fctx, dtype, M, N, K, A, B, c, crs, acc, ap, bp, pa, pb)
    b.ret_void()
    return fn


def pack_sizes(b, dtype, M, N, K):
    """(elements of the packed-A buffer, elements of the packed-B buffer) emit_gemm needs."""
    L, MR, NV, KC, MC, NC = params(dtype)
    kc_max = U.smax(b, U.smin(b, K, KC), 1)
    mc_max = U.mul(b, U.ceildiv(b, U.smin(b, M, MC), MR), MR)
    nc_max = U.mul(b, U.ceildiv(b, U.smin(b, N, NC), L), L)
    return U.smax(b, U.mul(b, mc_max, kc_max), 1), U.smax(b, U.mul(b, nc_max, kc_max), 1)


def emit_gemm(ctx, dtype, M, N, K, A, B, c_ptr, c_rs, accumulate=False, packs=None):
    """C[M, N] (+)= A[M, K] @ B[K, N] computed in `dtype` (float32/float64); A, B loaders,
    C at c_ptr with row stride c_rs and unit column stride (not aliasing A or B).
    accumulate: Python bool or an i1 value. packs: None (allocate the packing buffers with
    ctx.scratch), or (ap, bp) pointers to 64-byte aligned buffers of pack_sizes() elements.
    Plain strided operands of `dtype` call one shared function per module and dtype; others
    (FusedDot prologues, dtype conversions) get inline packing loops around the shared kernels."""
    b = ctx.b
    if packs is None:
        # packing buffers sized for this product (64-byte aligned scratch)
        na, nb = pack_sizes(b, dtype, M, N, K)
        ap = ctx.scratch(dtype, [na]).ptr
        bp = ctx.scratch(dtype, [nb]).ptr
    else:
        ap, bp = packs
    acc0 = accumulate if isinstance(accumulate, ir.Value) else ir.Constant(U.I1, int(bool(accumulate)))
    sa, sb = _strided_of(A, dtype), _strided_of(B, dtype)
    if options.gemm_shared_driver and sa is not None and sb is not None:
        fn = _driver_function(ctx.module, dtype)
        args = [M, N, K, sa.ptr, sa.rs, sa.cs, sb.ptr, sb.rs, sb.cs, c_ptr, c_rs]
        b.call(fn, [U.as_value(b, v) for v in args] + [acc0, ap, bp])
        return
    A, pa = packer(ctx, dtype, "a", A)
    B, pb = packer(ctx, dtype, "b", B)
    _driver(ctx, dtype, M, N, K, A, B, c_ptr, c_rs, acc0, ap, bp, pa, pb)
