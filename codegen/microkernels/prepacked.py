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
