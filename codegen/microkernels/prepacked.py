"""GEMMs whose A operand is packed once and reused by many products (gemm.py's micro-panel layout).

A loop that multiplies the same A by a different B per item (the filters in a per-image conv
gradient) would otherwise repack A for every item. With the contraction no deeper than one KC
slice, the panels of all of A's rows laid end to end are exactly the blocks the driver packs, so
block ic of the packed A starts at ic*K.
"""
from llvmlite import ir

from .. import irutil as U
from . import gemm


def applies(dtype, K):
    """Whether A[M, K] can be packed whole for reuse (one KC slice: K static and small)."""
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    return isinstance(K, int) and 1 <= K <= KC


def size(b, dtype, M, K):
    """Elements of the whole packed A."""
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    return U.mul(b, U.mul(b, U.ceildiv(b, M, MR), MR), K)


def pack_a(ctx, dtype, A, M, K, ap):
    """ap <- all of A[M, K] as MR-row micro-panels (A a loader, e.g. gemm.Strided)."""
    A, pack = gemm.packer(ctx, dtype, "a", A)
    pack(ctx, dtype, A, *(U.as_value(ctx.b, v) for v in (M, 0, M, 0, K)), ap)


def emit_gemm(ctx, dtype, M, N, K, ap, B, c_ptr, c_rs, accumulate, bp):
    """C[M, N] (+)= A @ B[K, N] with A packed by pack_a; bp: a packed-B buffer of
    gemm.pack_sizes()[1] elements."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    et = U.ll_type(dtype)
    macro = gemm.macrokernel(ctx.module, dtype)
    B, pack_b = gemm.packer(ctx, dtype, "b", B)
    Mv, Nv, Kv = (U.as_value(b, v) for v in (M, N, K))
    crs = U.as_value(b, c_rs)
    acc = ir.Constant(U.I1, int(bool(accumulate)))
    with U.for_range(b, Nv, step=NC, name="pjc") as jc:
        nc = U.smin(b, b.sub(Nv, jc), NC)
        pack_b(ctx, dtype, B, Nv, U.i64(0), Kv, jc, nc, bp)
        with U.for_range(b, Mv, step=MC, name="pic") as ic:
            mc = U.smin(b, b.sub(Mv, ic), MC)
            a = b.gep(ap, [b.mul(ic, Kv)], source_etype=et)
            cblk = b.gep(c_ptr, [b.add(b.mul(ic, crs), jc)], source_etype=et)
            b.call(macro, [mc, nc, Kv, a, bp, cblk, crs, acc])


# -- a B operand packed once (a loop-invariant right operand: an RNN's recurrent weight) ----------
#
# The whole of B[K, N] in the driver's B-panel layout, K-slice by K-slice: slice pc (every KC rows;
# kc = min(KC, K - pc) deep) starts at pc * Np, Np = N rounded up to whole vectors, and holds the
# NR-column panels [kc][NR] of all of N, then the one partial panel [kc][w]. A block of NC columns
# starting at jc (a multiple of NR) is then exactly the packed block the driver makes for (jc, pc),
# at pc * Np + jc * kc. Every panel starts 64-byte aligned, as the micro-kernel's loads require.

def b_size(b, dtype, K, N):
    """Elements of the whole packed B[K, N] (at least 1)."""
    L = gemm.params(dtype)[0]
    return U.smax(b, U.mul(b, K, U.mul(b, U.ceildiv(b, N, L), L)), 1)


def pack_b(ctx, dtype, B, K, N, bp):
    """bp <- all of B[K, N] (a loader) in the layout above."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    et = U.ll_type(dtype)
    B, pack = gemm.packer(ctx, dtype, "b", B)
    Kv, Nv = U.as_value(b, K), U.as_value(b, N)
    Np = b.mul(U.ceildiv(b, Nv, L), U.i64(L))
    with U.for_range(b, Kv, step=KC, name="ppc") as pc:
        kc = U.smin(b, b.sub(Kv, pc), KC)
        pack(ctx, dtype, B, Nv, pc, kc, U.i64(0), Nv, b.gep(bp, [b.mul(pc, Np)], source_etype=et))


def emit_gemm_packed_b(ctx, dtype, M, N, K, A, bp, c_ptr, c_rs):
    """C[M, N] = A[M, K] @ B with B packed by pack_b; A a loader, packed here block by block (each
    block of A once, for every block of columns: B needs no packing)."""
    b = ctx.b
    L, MR, NV, KC, MC, NC = gemm.params(dtype)
    et = U.ll_type(dtype)
    macro = gemm.macrokernel(ctx.module, dtype)
    na, _ = gemm.pack_sizes(b, dtype, M, N, K)
    ap = ctx.scratch(dtype, [na]).ptr
    A, pack_a = gemm.packer(ctx, dtype, "a", A)
    Mv, Nv, Kv = (U.as_value(b, v) for v in (M, N, K))
    crs = U.as_value(b, c_rs)
    Np = b.mul(U.ceildiv(b, Nv, L), U.i64(L))
    # (K == 0: one pass with kc = 0, which writes zeros, as the driver does)
    with U.for_range(b, U.smax(b, Kv, U.i64(1)), step=KC, name="qpc") as pc:
        kc = U.smin(b, b.sub(Kv, pc), KC)
        acc = b.icmp_signed(">", pc, U.i64(0))
        bslice = b.gep(bp, [b.mul(pc, Np)], source_etype=et)
        with U.for_range(b, Mv, step=MC, name="qic") as ic:
            mc = U.smin(b, b.sub(Mv, ic), MC)
            pack_a(ctx, dtype, A, Mv, ic, mc, pc, kc, ap)
            with U.for_range(b, Nv, step=NC, name="qjc") as jc:
                nc = U.smin(b, b.sub(Nv, jc), NC)
                bblk = b.gep(bslice, [b.mul(jc, kc)], source_etype=et)
                cblk = b.gep(c_ptr, [b.add(b.mul(ic, crs), jc)], source_etype=et)
                b.call(macro, [mc, nc, kc, ap, bblk, cblk, crs, acc])
