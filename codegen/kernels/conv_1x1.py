"""1x1 unit-stride unpadded convolutions (Conv2d and its input gradient) as one GEMM over the batch.

Both are out[n] = A @ src[n] for every image n, with A = W [K][C] (forward: src the images, out
(B, K, H, W)) or A = W^T [C][K] (input gradient: src the output gradient, out (B, C, H, W)). The
batch is the GEMM's column dimension: column j of image n is pixel j of n, so A is packed once for
the whole batch (prepacked.py) instead of once per image, and the work items of the thread pool are
(image, block of pixels) pairs: each packs its B panels from the image's rows (row stride H*W) and
the micro-kernels store its C tiles straight into the NCHW output at row stride H*W.
With few images per thread (batch 1, or an odd batch on two threads) the pixels of each image are
split into blocks of whole NR-column panels, so every core gets an even share of the columns.
"""
from llvmlite import ir

from .. import irutil as U
from ..microkernels import gemm as G
from ..microkernels import prepacked as PP
from .conv import gep
from .conv_threads import Captured, PerThread


# Items per thread below which the pixels of an image are split into column blocks: a contiguous
# share of the items per thread, so B = 3 on 2 threads leaves one thread 2 images and the other 1
# (33% idle); 4 items per thread keep the imbalance under a quarter of an item.
ITEMS_PER_THREAD = 4


# Fewer multiply-adds than this (about 10 us on one core) and the product runs on the calling thread.
MIN_PARALLEL_FLOPS = 2_000_000


class Pointwise:
    """out[n][M][HW] = A[M][Q] @ src[n][Q][HW] for n < B, all sizes static ints, Q within one KC slice.
    cols: the pixels of one work item (whole NR-column panels, or all of an image); nblk per image."""

    variant = "gemm batch"

    def __init__(self, dtype, B, M, Q, HW, T):
        self.dtype, self.B, self.M, self.Q, self.HW = dtype, B, M, Q, HW
        L, MR, NV, KC, MC, NC = G.params(dtype)
        NR = NV * L
        nblk = 1
        if T > 1 and B % T and B < ITEMS_PER_THREAD * T:
            nblk = min(-(-HW // NR), -(-ITEMS_PER_THREAD * T // B))
        per = -(-HW // nblk)
        self.cols = -(-per // NR) * NR if nblk > 1 else HW
        self.nblk = -(-HW // self.cols)

    @property
    def items(self):
        return self.B * self.nblk


def pointwise_gemm(dtype, dims, grad_inputs, T):
    """The Pointwise of a 1x1 convolution with dims (B, C, H, W, K, ...): of its forward, or
    (grad_inputs) of its input gradient; None when a size is not a static int or the contraction
    (C forward, K input gradient) is deeper than one KC slice (then each image is its own GEMM)."""
    B, C, H, W, K = dims[:5]
    if str(dtype) not in ("float32", "float64") or not all(isinstance(v, int) for v in (B, C, H, W, K)):
        return None
    M, Q = (C, K) if grad_inputs else (K, C)
    if not PP.applies(str(dtype), Q) or min(B, M, H, W) < 1:
        return None
    return Pointwise(str(dtype), B, M, Q, H * W, T)


def emit_pointwise(ctx, pw, A, src, out, prefix, T):
    """out (dense (B, M, HW)) = A @ src[n] for every image; A a gemm loader of A[M][Q] (packed here,
    once), src a dense (B, Q, HW) buffer of pw.dtype."""
    b = ctx.b
    dt = pw.dtype
    et = U.ll_type(dt)
    ap = ctx.scratch(dt, [PP.size(b, dt, pw.M, pw.Q)])
    PP.pack_a(ctx, dt, A, pw.M, pw.Q, ap.ptr)
    cap = Captured()
    cap.add("ap", ap.ptr)
    cap.add("src", src.ptr)
    cap.add("out", out.ptr)
    cap.add_parts("bp", PerThread(ctx, dt, [G.pack_sizes(b, dt, pw.M, pw.cols, pw.Q)[1]], T))
    HW, cols, nblk = pw.HW, pw.cols, pw.nblk

    def emit(bctx, v, i0, i1):
        bb = bctx.b
        bp = v.part("bp", dt)
        with U.for_range(bb, i1, start=i0, name="item") as it:
            n, jb = (it, U.i64(0)) if nblk == 1 else (bb.udiv(it, U.i64(nblk)), bb.urem(it, U.i64(nblk)))
            j0 = bb.mul(jb, U.i64(cols))
            nc = U.smin(bb, bb.sub(U.i64(HW), j0), cols)
            s = gep(bb, v["src"], bb.add(bb.mul(n, U.i64(pw.Q * HW)), j0), et)
            d = gep(bb, v["out"], bb.add(bb.mul(n, U.i64(pw.M * HW)), j0), et)
            PP.emit_gemm(bctx, dt, pw.M, nc, pw.Q, v["ap"], G.Strided(dt, s, HW), d, HW, False, bp)

    # a few large items (a small batch's column blocks) go to the threads too; a small product stays
    # on the calling thread (waking the pool costs a few microseconds)
    flops = 2 * pw.items * pw.cols * pw.M * pw.Q
    serial = ir.Constant(U.I1, int(pw.items < 2 or flops < MIN_PARALLEL_FLOPS))
    cap.run(ctx, prefix, pw.items, emit, serial)
