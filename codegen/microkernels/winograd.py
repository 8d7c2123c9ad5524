"""Winograd F(m x m, r x r) convolution of zero-bordered images (Lavin & Gray, 2016): F(2x2, 3x3),
F(4x4, 3x3), F(2x2, 5x5), F(4x4, 5x5), F(2x2, 7x7) and F(4x4, 2x2).

A 'valid' r x r correlation of a (C, Hb, Wb) buffer is cut into m x m output tiles; each reads an
a x a input tile d (a = m + r - 1) and, per filter k, is

    Y = A^T [ sum_c (G g[k, c] G^T) * (B^T d[c] B) ] A

with '*' elementwise: the a*a products of each position p of the transformed tile are a GEMM over
the channels, M[p][k, tile] = U[p][k, :] @ V[p][:, tile], which does a*a multiplications per tile
and channel instead of the r*r*m*m of the direct convolution (F(2x2, 3x3): 2.25x fewer, F(4x4, 3x3):
4x, F(2x2, 5x5): 2.78x, F(4x4, 5x5): 6.25x, F(2x2, 7x7): 3.06x).

  filters  U = G g G^T once per call (in float64, rounded once), packed as the packed GEMM's A
           micro-panels: up[p][K/MR][C][MR] (gemm.py).
  inputs   V = B^T d B of NR tiles at a time (one packed-B panel, gemm.py): vp[p][C][NR] (the
           positions' panels a cache line more than their size apart). The
           tiles of an image are numbered row by row over a grid (tHp, tWp) padded so that one
           vector of L tiles is a run of one tile row (tWp a multiple of L) or G = L/tWp whole
           tile rows (tWp a power of two below L), and so that an image holds a whole number of
           panels, or a panel a whole number of images (Timg = tHp*tWp); with span (small
           images), a panel's Gi images' tile rows follow each other unpadded (tHp = tH) and a
           vector's G rows may lie in several images (Plan._span_images). A vector's columns s of
           input row are the stride-m lanes of ceil(a/m) contiguous loads of the row (at m*tj,
           m*tj + m, ...), picked apart by shuffles; the padded tiles read the buffer's zeros.
  GEMM     per position p, gemm.macrokernel on the packed panels: no packing per image. (5x5: a panel
           of images narrower than NR holds a whole number of images, Gi*Timg columns.)
  outputs  Y = A^T M A for L tiles at a time; the m columns of an output row are interleaved back
           into m*L contiguous values and stored with masks that drop the columns past OW and the
           rows past OH (ragged last tiles, padded tiles).

The buffer must hold the image at (0, 0) and zeros where the tiles read past it: Hb = m*tHp + r - 1
rows and Wb = m*tWp + m*(ceil(a/m) - 1) columns (the a columns of every tile, and the last load).
Float32 error, relative to the largest output (measured, Gaussian / positive data, 32 to 128
channels): F(2x2), whose transforms multiply by 0, +-1, +-1/2, 3e-7 to 1e-6, as a sum taken in
another order; F(4x4) with the points 0, +-1, 1/2, -2 (POINTS) 1.7e-6 to 2.6e-6 (32 and 64
channels; Lavin & Gray's 0, +-1, +-2: 3e-6 to 1.2e-5); F(2x2, 5x5) with the same points 0.8e-6
to 2e-6 (20 to 128 channels), as the direct kernel's 1e-6 to 2.5e-6. A non-finite input value makes every output of its tiles NaN (inf - inf in the
transforms), not only those it reaches.
"""
import functools
from fractions import Fraction as F
from math import gcd

from llvmlite import ir

from .. import library
from .. import irutil as U
from ..irutil import lanes
from . import cook_toom, gemm
from .directconv import Vec, kernel_function

# (B^T, G, A^T) of F(2 x 2, 3 x 3) with the interpolation points 0, +-1, infinity (Lavin & Gray)
MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [F(1, 2), F(1, 2), F(1, 2)], [F(1, 2), F(-1, 2), F(1, 2)], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
}


# interpolation points of the F(m x m, r x r) whose matrices Cook-Toom generates (cook_toom.py).
# F(2x2, 5x5): 0, +-1, 1/2, -2, the smallest float32 error among 0, +-1 with two of +-1/2, +-2,
# +-3/2, +-3/4 (emulated over 20 channels: 1.3e-6 of the largest output; 0, +-1, +-2, the points
# of F(4x4, 3x3), 2.1e-6; natively 0.8-2e-6 against 1.9-5.3e-6, at the same speed on LeNet).
# F(4x4, 3x3): the same points, against Lavin & Gray's 0, +-1, +-2 (float32, Gaussian data, 8
# images, natively): 32 channels on 32x32 1.7e-6 of the largest output against 5.1e-6, 64 on
# 32x32 2.6e-6 against 9.0e-6, 64 on 16x16 2.2e-6 against 5.6e-6 (0, +-1, +-1/2: no better than
# 0, +-1, +-2); their transforms take 16 and 12 operations (_input_f4, _output_f4) against 14 and 10.
# F(4x4, 2x2) (the sub-filters of 3x3 and 4x4 filters with stride 2 over their phase channels,
# kernels/conv_winograd_strided.py): 0, -1, 1/2, 2 (float32, Gaussian and positive data, 4x4 filters
# with stride 2 on 32x32 images, natively: 128 phase channels 1.4-2.4e-6 of the largest output, 256
# 1.9-3.3e-6, 512 2.8-5.3e-6) against 0, +-1, -2 (3.4-5.1e-6, 3.2-6.8e-6, 5.7-8.7e-6), 0, +-1, 2 or
# +-1/2 (as those), 0, -1, +-1/2 (1e-5 to 3e-5).
# F(2x2, 7x7): 0, +-1, +-1/2, +-2 (float32, natively, 24 channels: 3.3e-6 of the largest output;
# +-3/2 in place of +-2 4.7e-6, 2 and -3/2 3.7e-6, +-3/4 or 1/4 in place of a pair 4e-5 to 6e-5).
# F(4x4, 5x5) (the same a = 8): the same points (natively, Gaussian data, batch 128: 16 to 32
# channels 3.7e-6 to 5.5e-6 of the largest output, positive data 2.5e-6 to 3.9e-6; without hardware
# FMA (x86-64) 4.6e-6 to 7.6e-6 and 2.7e-6 to 4.7e-6; emulated over
# 20 channels, the best of 0, +-1 with four of +-1/2, +-2, +-3/2, +-2/3, +-3, +-1/3, +-3/4, +-4/3,
# +-1/4, +-4 came within 20% of these).
POINTS = {(2, 7): (0, 1, -1, F(1, 2), F(-1, 2), 2, -2), (4, 5): (0, 1, -1, F(1, 2), F(-1, 2), 2, -2),
          (2, 5): (0, 1, -1, F(1, 2), -2), (4, 3): (0, 1, -1, F(1, 2), -2), (4, 2): (0, -1, F(1, 2), 2)}


@functools.lru_cache(maxsize=None)
def matrices(m, r):
    """(B^T, G, A^T) of F(m x m, r x r) (shared: read only)."""
    if r == 3 and m in MATRICES:
        return MATRICES[m]
    return cook_toom.matrices(m, r, POINTS[(m, r)])


def tile_sizes(r):
    """The output tile sizes m of F(m x m, r x r) there are kernels for, largest first."""
    return tuple(sorted(set(m for m, r_ in POINTS if r_ == r) | (set(MATRICES) if r == 3 else set()), reverse=True))


def _ceil(a, b):
    return -(-a // b)


class Plan:
    """Static layout of a Winograd F(m x m, r x r) 'valid' correlation of (C, Hb, Wb) buffers into
    (K, OH, OW) results (all sizes Python ints). flip: the filters are turned 180 degrees (a true
    convolution). span: vectors of tiles may span images where that wastes fewer of them
    (_span_images). panel: the tiles of a panel (the GEMM's columns), a multiple of the lanes
    below the GEMM's NR (default: NR), so that one image has several panels (emit_image_panels)."""

    def __init__(self, dtype, C, K, OH, OW, m, flip, r=3, span=False, panel=None):
        self.dtype, self.C, self.K, self.OH, self.OW, self.m, self.flip = dtype, C, K, OH, OW, m, flip
        self.r = r
        self.a = m + r - 1
        self.loads = _ceil(self.a, m)             # row loads per vector of tiles
        self.BT, self.Gm, self.AT = matrices(m, r)
        self.L = L = lanes(dtype)
        L_, self.MR, self.NV, *_ = gemm.params(dtype)
        self.NR = NR = panel or self.NV * L
        self.nkb = _ceil(K, self.MR)
        self.tH, self.tW = _ceil(OH, m), _ceil(OW, m)
        if self.tW >= L:
            self.tWp, self.G = _ceil(self.tW, L) * L, 1
        else:
            self.tWp = 1
            while self.tWp < self.tW:
                self.tWp *= 2
            self.G = L // self.tWp
        self.tHp = _ceil(self.tH, self.G) * self.G
        while not self._whole(self.tHp * self.tWp):
            self.tHp += self.G
        self.Timg = self.tHp * self.tWp
        self.Gi = max(1, NR // self.Timg)          # images per panel
        if r != 3 and self.Timg < NR:
            # a panel of Gi whole images, narrower than the GEMM's NR where they do not fill it (the
            # packed GEMM's edge micro-kernels): one 12x12 image of 48 tiles wastes none of it
            self.NR = NR = self.Gi * self.Timg
        self.span = False
        if span and self.G > 1 and self.tHp > self.tH:
            self._span_images(L, self.NV * L)
            NR = self.NR
        self.nblk = max(1, self.Timg // NR)       # panels per image
        self.Hb, self.Wb = m * self.tHp + r - 1, m * self.tWp + m * (self.loads - 1)
        # the a*a positions' blocks of tiles and of products, one 64-byte line more than their size
        # apart: blocks a power of two apart (often 8 KiB) would put the a*a vectors the transforms
        # store and load together into one cache set
        line = 64 // U.itemsize(dtype)
        self.vq, self.mq = C * NR + line, K * NR + line

    def _span_images(self, L, NR):
        """Vectors of tiles that span images: where a vector holds G tile rows and an image fewer
        (padded up to G: 8x8 outputs in F(4x4) tiles, 2 tile rows of 2, fill a quarter of a 16-lane
        vector), the tile rows of the Gi images of a panel follow each other unpadded (tHp = tH) and
        a vector's G rows may lie in several images; a panel then holds Gi*Timg tiles, a whole
        number of vectors, at most the GEMM's NR (the rest of a thread's last group: tiles of stale
        buffers, never stored)."""
        T = self.tH * self.tWp
        step = L // gcd(T, L)                     # images per whole number of vectors
        Gi = NR // (step * T) * step
        if step < 2 or Gi < 2:   # (step 1: the rows were padded for the panels, not for the vectors)
            return
        self.span, self.tHp, self.Timg, self.Gi, self.NR = True, self.tH, T, Gi, Gi * T

    def _whole(self, T):
        if self.r != 3:
            return T % self.L == 0 and (T < self.NR or T % self.NR == 0)
        return T % self.L == 0 and (self.NR % T == 0 or T % self.NR == 0)

    @property
    def name(self):
        return (f"{self.dtype}_F{self.m}{'' if self.r == 3 else f'r{self.r}'}_C{self.C}_K{self.K}_OH{self.OH}_"
                f"OW{self.OW}_{self.tHp}x{self.tWp}{'s' if self.span else ''}_N{self.NR}")

    def u_elems(self):
        return self.a * self.a * self.nkb * self.MR * self.C

    def v_elems(self):
        return self.a * self.a * self.vq

    def m_elems(self):
        return self.a * self.a * self.mq

    def buf_elems(self):
        return self.Gi * self.C * self.Hb * self.Wb

    def efficiency(self, n=None):
        """Share of the GEMM's columns that are output tiles (the rest: grid padding, and the empty
        places of a thread's last panel of n images (None: many))."""
        share = (self.tH * self.tW) / self.Timg
        if n is None or self.Gi == 1:
            return share
        return share * n / (-(-n // self.Gi) * self.Gi)


# -- filters ------------------------------------------------------------------------------------

def transform_filters(ctx, p, w_ptr, up):
    """up[((q*nkb + k//MR)*C + c)*MR + k%MR] = (G g G^T)[q] for g = w[k, c] (dense [K][C][r][r],
    turned when p.flip), computed in float64; rows past K are zero. A vector of MR float64 lanes
    takes the MR filters of a row block at one channel, by a call of one function per row block
    and channel (irutil.call_outlined), so that each transformed value q of them is one store of
    MR consecutive values. This runs on the calling thread before the parallel part, and with few
    images it is much of the convolution: one image, 64 -> 64 channels on 32x32, one thread, 25-27%
    of the samples with vectors over channels and a store per lane, 12-17% so (32 images
    128 -> 128 on 8x8: 9.4-9.8% -> 3.8-4.2%).

    The function takes the distances between filters and between transformed values as arguments,
    so every layer of a module with the same tile, filter size and flip shares it (an F(4x4, 5x5)
    one is some 1200 lines of IR, each compiled in the entry part of every module). A last, short
    row block goes through it too: its filters are first copied into a small buffer of MR filters
    whose lanes past K are zero."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    a, MR, C, r = p.a, p.MR, p.C, p.r
    step = p.nkb * C * MR   # between the transformed values q of one filter
    fstride = C * r * r     # between the filters of a row block
    Gm = p.Gm
    dvec = Vec(ctx.module, "float64", MR)
    ot = ir.VectorType(et, MR)

    def one(fb, params):
        g_ptr, u_ptr, fstride_v, step_v = params
        filters = [g_ptr]
        for i in range(1, MR):
            filters.append(U.gep(fb, filters[-1], fstride_v, et))
        g = [[None] * r for _ in range(r)]
        for u in range(r):
            for s_ in range(r):
                src = (r - 1 - u) * r + (r - 1 - s_) if p.flip else u * r + s_
                v = dvec.zero
                for i in range(MR):
                    x = fb.load(U.gep(fb, filters[i], U.i64(src), et), typ=et)
                    v = fb.insert_element(v, U.cast_value(fb, x, p.dtype, "float64"), U.i64(i))
                g[u][s_] = v
        t = [[combine(fb, dvec, Gm[x], [g[u][s_] for u in range(r)]) for s_ in range(r)] for x in range(a)]
        dst = u_ptr
        for x in range(a):
            for y in range(a):
                v = combine(fb, dvec, Gm[y], t[x])
                v = fb.fptrunc(v, ot) if p.dtype == "float32" else v
                fb.store(v, dst, align=U.itemsize(p.dtype))
                dst = U.gep(fb, dst, step_v, et)
    name = f"symcnn_wino_filter_{p.dtype}_F{p.m}r{r}{'_flip' if p.flip else ''}_m{MR}"

    full, rem = divmod(p.K, MR)
    if full:
        with U.for_range(b, full, name="wk") as kb:
            with U.for_range(b, C, name="wc") as c:
                src = b.mul(b.add(b.mul(kb, U.i64(MR * C)), c), U.i64(r * r))
                dst = b.mul(b.add(b.mul(kb, U.i64(C)), c), U.i64(MR))
                U.call_outlined(b, name, [U.gep(b, w_ptr, src, et), U.gep(b, up, dst, et),
                                          U.i64(fstride), U.i64(step)], one)
    if rem:
        # the last row block's rem filters at one channel, then MR - rem zero filters
        short = ctx.scratch(p.dtype, [MR * r * r])
        U.memset_zero(b, short.ptr, MR * r * r * U.itemsize(p.dtype))
        with U.for_range(b, C, name="wc") as c:
            for i in range(rem):
                src = b.mul(b.add(U.i64((full * MR + i) * C), c), U.i64(r * r))
                U.memcpy(b, U.gep(b, short.ptr, i * r * r, et), U.gep(b, w_ptr, src, et),
                         r * r * U.itemsize(p.dtype))
            dst = b.mul(b.add(U.i64(full * C), c), U.i64(MR))
            U.call_outlined(b, name, [short.ptr, U.gep(b, up, dst, et), U.i64(r * r), U.i64(step)], one)


def _scalar_comb(b, coeffs, vals):
    acc = None
    for c, v in zip(coeffs, vals):
        if c == 0:
            continue
        term = v if c == 1 else b.fmul(ir.Constant(U.F64, float(c)), v)
        acc = term if acc is None else b.fadd(acc, term)
    return acc if acc is not None else ir.Constant(U.F64, 0.0)


# -- vectors ------------------------------------------------------------------------------------

def _comb(b, vec, coeffs, vals):
    """sum of c * v over the nonzero coefficients (vectors): adds and subtracts for +-1 (a +1 term
    first where there is one, so no negation)."""
    acc = None
    terms = sorted(zip(coeffs, vals), key=lambda cv: cv[0] != 1)
    for c, v in terms:
        if c == 0:
            continue
        if acc is None:
            acc = v if c == 1 else (b.fneg(v) if c == -1 else b.fmul(U.vector_constant(vec.t, float(c)), v))
        elif c == 1:
            acc = b.fadd(acc, v)
        elif c == -1:
            acc = b.fsub(acc, v)
        else:
            acc = b.call(vec.fma, [U.vector_constant(vec.t, float(c)), v, acc])
    return acc if acc is not None else vec.zero


def _const(vec, c):
    return U.vector_constant(vec.t, float(c))


def _input_f4(b, vec, d):
    """B^T d of F(4x4) (POINTS[(4, 3)]) with shared terms: 16 operations instead of 21. The rows
    of B^T: (1, -3/2, -2, 3/2, 1, 0), (0, -1, 1/2, 5/2, 1, 0), (0, -1, 5/2, -1/2, -1, 0),
    (0, 2, 1, -2, -1, 0), (0, 1/2, -1, -1/2, 1, 0), (0, 1, -3/2, -2, 3/2, 1)."""
    fma = lambda c, x, y: b.call(vec.fma, [_const(vec, c), x, y])
    d0, d1, d2, d3, d4, d5 = d
    u, v = b.fsub(d1, d3), b.fsub(d2, d4)
    return [fma(-1.5, u, fma(-2, d2, b.fadd(d0, d4))), fma(2.5, d3, fma(0.5, d2, b.fsub(d4, d1))),
            fma(-0.5, d3, fma(2.5, d2, b.fneg(b.fadd(d1, d4)))), fma(2, u, v), fma(0.5, u, b.fneg(v)),
            fma(-1.5, v, fma(-2, d3, b.fadd(d1, d5)))]


def _output_f4(b, vec, mv):
    """A^T m of F(4x4) (POINTS[(4, 3)]) with shared terms: 12 operations instead of 14. The rows
    of A^T: (1, 1, 1, 1, 1, 0), (0, 1, -1, 1/2, -2, 0), (0, 1, 1, 1/4, 4, 0), (0, 1, -1, 1/8, -8, 1)."""
    fma = lambda c, x, y: b.call(vec.fma, [_const(vec, c), x, y])
    m0, m1, m2, m3, m4, m5 = mv
    a, s = b.fadd(m1, m2), b.fsub(m1, m2)
    return [b.fadd(b.fadd(b.fadd(m0, a), m3), m4), fma(-2, m4, fma(0.5, m3, s)), fma(4, m4, fma(0.25, m3, a)),
            fma(-8, m4, fma(0.125, m3, b.fadd(s, m5)))]


def _transform(b, vec, p, which, vals):
    """The 1-D input (B^T) or output (A^T) transform of the plan's F(m x m, r x r) of a vals vectors."""
    if p.m == 4 and p.r == 3:
        return (_input_f4 if which == "in" else _output_f4)(b, vec, vals)
    rows = p.BT if which == "in" else p.AT
    return [_comb(b, vec, row, vals) for row in rows]


# the combinations the weight gradient (winograd_grad.py) builds on
combine, combine_scalars = _comb, _scalar_comb


def input_transform(b, vec, p, vals):
    """B^T vals of the plan p's F(m x m, r x r) (any object with m, r and BT)."""
    return _transform(b, vec, p, "in", vals)


def _concat(b, parts):
    """One vector of the parts' lanes in order (pairwise shuffles; a power-of-two count)."""
    while len(parts) > 1:
        n = parts[0].type.count
        idx = ir.Constant(ir.VectorType(U.I32, 2 * n), list(range(2 * n)))
        parts = [b.shuffle_vector(parts[i], parts[i + 1], idx) for i in range(0, len(parts), 2)]
    return parts[0]


def _pick(b, v, idx):
    return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(U.I32, len(idx)), list(idx)))


def _vector_tiles(b, p, lt0):
    """[(tile row, first tile column)] of the G runs of the vector of tiles lt0 .. lt0 + L - 1
    (p.span: [(image of the group, its tile row, first tile column)])."""
    if p.G == 1:
        return [(b.udiv(lt0, U.i64(p.tWp)), b.urem(lt0, U.i64(p.tWp)))]
    ti0 = b.udiv(lt0, U.i64(p.tWp))
    rows = [b.add(ti0, U.i64(g)) if g else ti0 for g in range(p.G)]
    if p.span:
        return [(b.udiv(t, U.i64(p.tH)), b.urem(t, U.i64(p.tH)), U.i64(0)) for t in rows]
    return [(t, U.i64(0)) for t in rows]


def _input_function(module, p):
    """void in(buf, vp, col0, lt_start, nvec): vp[q][c][col0 + j*L + lane] = (B^T d B)[q] of the
    tiles lt_start + j*L + lane of the image in buf, j < nvec."""
    name = f"symcnn_wino_in_{p.name}_{p.Hb}x{p.Wb}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64 = U.I64
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, I64, I64, I64])
    buf, vp, col0, lt_start, nvec = fn.args
    et = U.ll_type(p.dtype)
    L, m, a, G = p.L, p.m, p.a, p.G
    vec = Vec(module, p.dtype, L)
    seg = L // G
    w = m * seg
    wt = ir.VectorType(et, w)
    with U.for_range(b, p.C, name="c") as c:
        bc = U.gep(b, buf, b.mul(c, U.i64(p.Hb * p.Wb)), et)
        vc = U.gep(b, vp, b.add(b.mul(c, U.i64(p.NR)), col0), et)
        with U.for_range(b, nvec, name="j") as j:
            lt0 = b.add(lt_start, b.mul(j, U.i64(L)))
            runs = _vector_tiles(b, p, lt0)
            e = []   # e[r][y]: row r of the tiles transformed along its columns, right after its loads
            for r in range(a):
                loads = [[] for _ in range(p.loads)]
                for *img, ti, tj in runs:
                    row = b.add(b.mul(b.add(b.mul(ti, U.i64(m)), U.i64(r)), U.i64(p.Wb)), b.mul(tj, U.i64(m)))
                    if img:   # (p.span) the run's image of the group
                        row = b.add(row, b.mul(img[0], U.i64(p.C * p.Hb * p.Wb)))
                    ptr = U.gep(b, bc, row, et)
                    for h in range(p.loads):
                        loads[h].append(b.load(U.gep(b, ptr, m * h, et) if h else ptr, typ=wt, align=vec.size))
                rows = [_concat(b, parts) for parts in loads]
                d = [_pick(b, rows[s // m], [m * i + (s % m) for i in range(L)]) for s in range(a)]
                e.append(_transform(b, vec, p, "in", d))
            for y in range(a):
                for x, v in enumerate(_transform(b, vec, p, "in", [e[r][y] for r in range(a)])):
                    off = b.add(U.i64((x * a + y) * p.vq), b.mul(j, U.i64(L)))
                    b.store(v, U.gep(b, vc, off, et), align=vec.size * L)
    b.ret_void()
    return fn


def _output_function(module, p, ks, rs):
    """void out(mp, dst, col0, lt_start, nvec): dst[k*ks + i*rs + j] = the outputs of the tiles
    lt_start + jv*L + lane (jv < nvec; products at mp[q][k][col0 + jv*L + lane]) inside (OH, OW).
    p.span: out(mp, dst, col0, lt_start, nvec, step, gn), the tiles of the group's image g < gn
    to dst + g*step, those of the images past gn dropped."""
    name = f"symcnn_wino_out_{p.name}_{ks}_{rs}"
    fn = library.existing(module, name)
    if fn is not None:
        return fn
    I64 = U.I64
    fn, b = kernel_function(module, name, [U.PTR, U.PTR, I64, I64, I64] + [I64, I64] * p.span)
    mp, dst, col0, lt_start, nvec = fn.args[:5]
    step, gn = fn.args[5:] if p.span else (None, None)
    et = U.ll_type(p.dtype)
    L, m, a, G = p.L, p.m, p.a, p.G
    vec = Vec(module, p.dtype, L)
    seg = L // G
    w = m * seg
    chunk = min(w, L)
    ct = ir.VectorType(et, chunk)
    mt = ir.VectorType(U.I1, chunk)
    sfx = f"v{chunk}{'f32' if p.dtype == 'float32' else 'f64'}"
    mstore = U.declare(module, f"llvm.masked.store.{sfx}.p0", ir.VoidType(), [ct, U.PTR, U.I32, mt])
    lane = ir.Constant(ir.VectorType(I64, chunk), list(range(chunk)))
    # interleave m vectors: lane m*i + j of the result is lane i of vector j
    with U.for_range(b, p.K, name="k") as k:
        mk = U.gep(b, mp, b.add(b.mul(k, U.i64(p.NR)), col0), et)
        dk = U.gep(b, dst, b.mul(k, U.i64(ks)), et)
        with U.for_range(b, nvec, name="j") as j:
            lt0 = b.add(lt_start, b.mul(j, U.i64(L)))
            runs = _vector_tiles(b, p, lt0)
            f = []   # f[x][jj]: row x of the products transformed along its columns, after its loads
            for x in range(a):
                mv = [b.load(U.gep(b, mk, b.add(U.i64((x * a + y) * p.mq), b.mul(j, U.i64(L))), et),
                             typ=vec.t, align=vec.size * L) for y in range(a)]
                f.append(_transform(b, vec, p, "out", mv))
            cols = [_transform(b, vec, p, "out", [f[x][jj] for x in range(a)]) for jj in range(m)]
            for i in range(m):
                z = _interleave(b, [cols[jj][i] for jj in range(m)])
                for g, (*img, ti, tj) in enumerate(runs):
                    orow = b.add(b.mul(ti, U.i64(m)), U.i64(i))
                    ocol = b.mul(tj, U.i64(m))
                    inside = b.icmp_signed("<", orow, U.i64(p.OH))
                    off = b.add(b.mul(orow, U.i64(rs)), ocol)
                    if img:   # (p.span) the run's image of the group, dropped past gn
                        inside = b.and_(inside, b.icmp_signed("<", img[0], gn))
                        off = b.add(off, b.mul(b.select(inside, img[0], U.i64(0)), step))
                    rowp = U.gep(b, dk, off, et)
                    for off in range(0, w, chunk):
                        piece = _pick(b, z, range(g * w + off, g * w + off + chunk))
                        left = b.sub(U.i64(p.OW - off), ocol)
                        left = b.select(inside, left, U.i64(0))
                        mask = b.icmp_signed("<", lane, U.splat(b, left, ir.VectorType(I64, chunk)))
                        b.call(mstore, [piece, U.gep(b, rowp, off, et), vec.align, mask])
    b.ret_void()
    return fn


def _interleave(b, ys):
    """The lanes of the m vectors ys interleaved: lane m*i + j is ys[j][i]."""
    n = ys[0].type.count
    while len(ys) > 1:
        # neighbours pairwise, blocks of (width / n) lanes alternating: (0,1), (2,3) -> (0,1,2,3)
        width = ys[0].type.count
        blk = width // n
        idx = []
        for i in range(n):
            idx += list(range(i * blk, (i + 1) * blk)) + list(range(width + i * blk, width + (i + 1) * blk))
        ys = [b.shuffle_vector(ys[j], ys[j + 1], ir.Constant(ir.VectorType(U.I32, 2 * width), idx))
              for j in range(0, len(ys), 2)]
    return ys[0]


# -- one panel of tiles --------------------------------------------------------------------------

def emit_input(ctx, p, buf, vp, col0, lt_start, nvec):
    ctx.b.call(_input_function(ctx.module, p), [buf, vp] + [U.as_value(ctx.b, v) for v in (col0, lt_start, nvec)])


def emit_products(ctx, p, up, vp, mp):
    """mp[q][k][:NR] = U[q] @ V[q] for every position q (the packed GEMM's macro-kernel)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    macro = gemm.macrokernel(ctx.module, p.dtype)
    with U.for_range(b, p.a * p.a, name="wq") as q:
        b.call(macro, [U.i64(p.K), U.i64(p.NR), U.i64(p.C),
                       U.gep(b, up, b.mul(q, U.i64(p.nkb * p.MR * p.C)), et),
                       U.gep(b, vp, b.mul(q, U.i64(p.vq)), et),
                       U.gep(b, mp, b.mul(q, U.i64(p.mq)), et),
                       U.i64(p.NR), ir.Constant(U.I1, 0)])


def emit_output(ctx, p, mp, dst, ks, rs, col0, lt_start, nvec, step=0, gn=1):
    """(p.span: the group's image g < gn at dst + g*step)"""
    more = (step, gn) if p.span else ()
    ctx.b.call(_output_function(ctx.module, p, ks, rs),
               [mp, dst] + [U.as_value(ctx.b, v) for v in (col0, lt_start, nvec) + more])


def emit_images(ctx, p, bufs, up, vp, mp, n0, n1, prepare, dst_of, ks, rs, finish=None, step=None, direct=None):
    """The convolution of images [n0, n1), Gi at a time: prepare(n, buf) fills image n's bordered
    buffer (bufs holds Gi of them, buf_elems() / Gi apart); dst_of(n, gi) is where image n (the
    group's gi-th) gets its (K, OH, OW) result, k planes ks apart and rows rs apart; finish(n, gi)
    (optional) then runs for each image of the group. step: the elements between the results of
    consecutive images of a group (dst_of(n + 1, gi + 1) - dst_of(n, gi)), which a plan whose
    vectors of tiles span images (p.span) needs. direct (p.span only): g0 -> where images g0 ..
    g0 + Gi - 1 lie as a group's buffers would hold them, read in place by every full group."""
    if p.span:
        if step is None:
            raise ValueError("a Winograd plan whose tiles span images needs the results' step")
        return _emit_span_images(ctx, p, bufs, up, vp, mp, n0, n1, prepare, dst_of, ks, rs, finish, step, direct)
    b = ctx.b
    et = U.ll_type(p.dtype)
    img = p.C * p.Hb * p.Wb
    with U.for_range(b, n1, start=n0, step=p.Gi, name="wg") as g0:
        gn = U.smin(b, b.sub(U.as_value(b, n1), g0), p.Gi) if p.Gi > 1 else 1
        with U.for_range(b, gn, name="wi") as gi:
            prepare(b.add(g0, gi), U.gep(b, bufs, b.mul(gi, U.i64(img)), et))
        nvec = min(p.Timg, p.NR) // p.L
        with U.for_range(b, p.nblk, name="wb") as blk:
            lt_start = b.mul(blk, U.i64(p.NR))
            with U.for_range(b, gn, name="wt") as gi:
                emit_input(ctx, p, U.gep(b, bufs, b.mul(gi, U.i64(img)), et), vp,
                           b.mul(gi, U.i64(p.Timg)), lt_start, nvec)
            emit_products(ctx, p, up, vp, mp)
            with U.for_range(b, gn, name="wo") as gi:
                emit_output(ctx, p, mp, dst_of(b.add(g0, gi), gi), ks, rs, b.mul(gi, U.i64(p.Timg)), lt_start,
                            nvec)
        if finish is not None:
            with U.for_range(b, gn, name="wf") as gi:
                finish(b.add(g0, gi), gi)


def emit_image_panels(ctx, p, buf, up, vp, mp, i0, i1, S, prepare, dst_of, ks, rs):
    """The items [i0, i1) of a batch whose images are split into S items each, of p.nblk // S panels
    (so that a batch smaller than the threads keeps them all busy): item i is image i // S's
    (i % S)-th run of panels. prepare(n, buf) fills image n's bordered buffer (each item fills its
    own: the threads' buffers are their own); dst_of(n) is where image n gets its result."""
    b = ctx.b
    per = p.nblk // S
    nvec = p.NR // p.L
    with U.for_range(b, i1, start=i0, name="wp") as it:
        n = b.udiv(it, U.i64(S))
        prepare(n, buf)
        first = b.mul(b.urem(it, U.i64(S)), U.i64(per))
        with U.for_range(b, per, name="wb") as j:
            lt_start = b.mul(b.add(first, j), U.i64(p.NR))
            emit_input(ctx, p, buf, vp, 0, lt_start, nvec)
            emit_products(ctx, p, up, vp, mp)
            emit_output(ctx, p, mp, dst_of(n), ks, rs, 0, lt_start, nvec)


def _emit_span_images(ctx, p, bufs, up, vp, mp, n0, n1, prepare, dst_of, ks, rs, finish, step, direct=None):
    """emit_images for a plan whose vectors of tiles span images: a group's Gi buffers are one panel
    (its tiles numbered image after image), transformed, multiplied and written back at once. With
    direct, a full group's images are read where they are; a short last group's are copied (its
    panel reads Gi images: past the batch there, past the buffers' last image)."""
    b = ctx.b
    et = U.ll_type(p.dtype)
    img = p.C * p.Hb * p.Wb
    nvec = p.NR // p.L
    with U.for_range(b, n1, start=n0, step=p.Gi, name="wg") as g0:
        gn = U.smin(b, b.sub(U.as_value(b, n1), g0), p.Gi)

        def copied():
            with U.for_range(b, gn, name="wi") as gi:
                prepare(b.add(g0, gi), U.gep(b, bufs, b.mul(gi, U.i64(img)), et))
            emit_input(ctx, p, bufs, vp, 0, 0, nvec)

        if direct is None:
            copied()
        else:
            with b.if_else(b.icmp_signed("==", gn, U.i64(p.Gi))) as (full, short):
                with full:
                    emit_input(ctx, p, direct(g0), vp, 0, 0, nvec)
                with short:
                    copied()
        emit_products(ctx, p, up, vp, mp)
        emit_output(ctx, p, mp, dst_of(g0, 0), ks, rs, 0, 0, nvec, step, gn)
        if finish is not None:
            with U.for_range(b, gn, name="wf") as gi:
                finish(b.add(g0, gi), gi)
