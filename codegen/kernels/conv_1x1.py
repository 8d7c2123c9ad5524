"""1x1 unpadded convolutions (Conv2d, also strided, and the unit-stride input gradient) as one GEMM
over the batch.

Both are out[n] = A @ src[n] for every image n, with A = W [K][C] (forward: src the images, out
(B, K, H, W)) or A = W^T [C][K] (input gradient: src the output gradient, out (B, C, H, W)). The
batch is the GEMM's column dimension: column j of image n is pixel j of n, so A is packed once for
the whole batch (prepacked.py) instead of once per image, and the work items of the thread pool are
(image, block of pixels) pairs: each packs its B panels from the image's rows (row stride H*W) and
the micro-kernels store its C tiles straight into the NCHW output at row stride H*W.
With few images per thread (batch 1, or an odd batch on two threads) the pixels of each image are
split into blocks of whole NR-column panels, so every core gets an even share of the columns.
A strided forward (enough filters: MIN_STRIDED_FILTERS) copies the pixels each image's outputs read
into a dense per-thread buffer first, whole images per item.
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


# A strided 1x1 forward takes one GEMM over the batch (each image's sampled pixels copied first) with
# at least this many filters, else the phase kernels or im2col (one thread, float32, CPU ms, stride 2:
# 64x64x16x16 by 128 filters 0.71 -> 0.66; 32x64x28x28 by 64 0.74 -> 0.72; 32x128x28x28 by 128
# 2.07 -> 1.88; 16x256x14x14 by 512 1.92 -> 1.61; 32x32x32x32 by 64 (im2col) 0.51 -> 0.50; but
# 7x64x15x17 by 30: 0.042 -> 0.045).
MIN_STRIDED_FILTERS = 32


class Pointwise:
    """out[n][M][HW] = A[M][Q] @ src[n][Q][HW] for n < B, all sizes static ints, Q within one KC slice.
    cols: the pixels of one work item (whole NR-column panels, or all of an image); nblk per image."""

    variant = "gemm batch"

    def __init__(self, dtype, B, M, Q, HW, T, sampled=None):
        self.dtype, self.B, self.M, self.Q, self.HW = dtype, B, M, Q, HW
        # a strided forward: (H, W, OW, sh, sw); each item first copies the pixels it reads from its
        # image into a dense per-thread buffer (the packing then reads whole vectors)
        self.sampled = sampled
        L, MR, NV, KC, MC, NC = G.params(dtype)
        NR = NV * L
        nblk = 1
        if T > 1 and B % T and B < ITEMS_PER_THREAD * T and sampled is None:   # (a strided item copies its image)
            nblk = min(-(-HW // NR), -(-ITEMS_PER_THREAD * T // B))
        per = -(-HW // nblk)
        self.cols = -(-per // NR) * NR if nblk > 1 else HW
        self.nblk = -(-HW // self.cols)

    @property
    def items(self):
        return self.B * self.nblk


def pointwise_gemm(dtype, dims, grad_inputs, T, stride=(1, 1)):
    """The Pointwise of a 1x1 unpadded convolution with dims (B, C, H, W, K, kh, kw, OH, OW): of its
    forward (strided too: stride), or (grad_inputs) of its unit-stride input gradient; None when a size
    is not a static int or the contraction (C forward, K input gradient) is deeper than one KC slice
    (then each image is its own GEMM)."""
    B, C, H, W, K, kh, kw, OH, OW = dims
    if str(dtype) not in ("float32", "float64") or not all(isinstance(v, int) for v in (B, C, H, W, K, OH, OW)):
        return None
    M, Q = (C, K) if grad_inputs else (K, C)
    if not PP.applies(str(dtype), Q) or min(B, M, OH, OW) < 1:
        return None
    sampled = None if tuple(stride) == (1, 1) else (H, W, OW) + tuple(stride)
    if sampled is not None and (grad_inputs or K < MIN_STRIDED_FILTERS):
        return None
    return Pointwise(str(dtype), B, M, Q, OH * OW, T, sampled)


def emit_pointwise(ctx, pw, A, src, out, prefix, T):
    """out (dense (B, M, HW)) = A @ src[n] for every image; A a gemm loader of A[M][Q] (packed here,
    once), src a dense (B, Q, HW) buffer of pw.dtype ((B, Q, H, W) for a strided forward)."""
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
    cap.add_parts("sub", PerThread(ctx, dt, [pw.Q, pw.HW], T) if pw.sampled is not None else None)
    HW, cols, nblk = pw.HW, pw.cols, pw.nblk

    def emit(bctx, v, i0, i1):
        bb = bctx.b
        bp = v.part("bp", dt)
        with U.for_range(bb, i1, start=i0, name="item") as it:
            n, jb = (it, U.i64(0)) if nblk == 1 else (bb.udiv(it, U.i64(nblk)), bb.urem(it, U.i64(nblk)))
            j0 = bb.mul(jb, U.i64(cols))
            nc = U.smin(bb, bb.sub(U.i64(HW), j0), cols)
            d = gep(bb, v["out"], bb.add(bb.mul(n, U.i64(pw.M * HW)), j0), et)
            if pw.sampled is None:
                src = G.Strided(dt, gep(bb, v["src"], bb.add(bb.mul(n, U.i64(pw.Q * HW)), j0), et), HW)
            else:
                H, W = pw.sampled[:2]
                sub = v.part("sub", dt)
                _sample(bb, gep(bb, v["src"], bb.mul(n, U.i64(pw.Q * H * W)), et), sub, pw.Q, HW, pw.sampled, dt)
                src = G.Strided(dt, gep(bb, sub, j0, et), HW)
            PP.emit_gemm(bctx, dt, pw.M, nc, pw.Q, v["ap"], src, d, HW, False, bp)

    # a few large items (a small batch's column blocks) go to the threads too; a small product stays
    # on the calling thread (waking the pool costs a few microseconds)
    flops = 2 * pw.items * pw.cols * pw.M * pw.Q
    serial = ir.Constant(U.I1, int(pw.items < 2 or flops < MIN_PARALLEL_FLOPS))
    cap.run(ctx, prefix, pw.items, emit, serial)


def _sample(b, img, sub, Q, HW, sampled, dt):
    """sub[c][i*OW + jj] = img[c][i*sh][jj*sw]: the pixels a strided 1x1 forward reads, dense."""
    H, W, OW, sh, sw = sampled
    et = U.ll_type(dt)
    with U.for_range(b, Q, name="sc") as c:
        with U.for_range(b, HW // OW, name="si") as i:
            s = gep(b, img, b.add(b.mul(c, U.i64(H * W)), b.mul(i, U.i64(sh * W))), et)
            d = gep(b, sub, b.add(b.mul(c, U.i64(HW)), b.mul(i, U.i64(OW))), et)
            with U.for_range(b, OW, name="sj") as j:
                b.store(b.load(gep(b, s, b.mul(j, U.i64(sw)), et), typ=et), gep(b, d, j, et))
