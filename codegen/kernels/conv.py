"""The im2col + packed GEMM building blocks of the convolutions (the lowerings of Conv2d,
Conv2dGradInputs and Conv2dGradWeights are in conv_forward.py and conv_grad.py; convpool.py uses them too).

Per image, the (padded, strided, optionally flipped) patches of the input are
unrolled into `cols[(c, r, s), (i, j)]` (P x N with P = C*kh*kw, N = OH*OW); then

    forward:       out[b][k, n]   = sum_p W[k, p] * cols[p, n]
    grad inputs:   dcols[p, n]    = sum_k W[k, p] * top[b][k, n];  dx[b] += col2im(dcols)
    grad weights:  dWT[p, k]     += sum_n cols[p, n] * top[b][k, n]  (dW = dWT transposed)

The GEMMs go through the packed, cache-blocked GEMM of microkernels/gemm.py (convolutions are
float32 or float64). Patch copies (im2col / col2im) are emitted inline with dims as Python ints
whenever the graph knows them statically, so those short loops specialise.
The filter flip is folded into the patch offsets: cols row (c, r, s) reads the
input at kernel offset (kh-1-r, kw-1-s) for a true convolution; a filter dilated by (dh, dw)
reads it at (dh*r, dw*s) (no zero-filled filter).
"""

from llvmlite import ir

from symcnn.graph.basic import Constant
from symcnn.tensor.nnet import conv_geometry as geometry
from symcnn.tensor.nnet.conv import Conv2dGradInputs

from .. import irutil as U
from ..lower import E_SHAPE, E_VALUE, Array, copy
from ..microkernels import gemm
from ..irutil import ceildiv, floordiv, gep


def clamp(b, x, lo, hi):
    return U.smin(b, U.smax(b, x, lo), hi)


# -- GEMM -------------------------------------------------------------------------------------

class Mat:
    """A matrix in memory: element pointer, row stride and column stride (in elements)."""

    def __init__(self, ptr, rs, cs=1):
        self.ptr, self.rs, self.cs = ptr, rs, cs


def emit_gemm(ctx, dtype, M, N, Q, A, B, C, accumulate=False, packs=None):
    """C[M, N] (+)= A[M, Q] @ B[Q, N] through the packed GEMM of gemm.py; B and C must have unit
    column stride (C must not alias A, B). packs: see gemm.emit_gemm (the packed GEMM's buffers;
    None allocates them)."""
    gemm.emit_gemm(ctx, dtype, M, N, Q, gemm.Strided(dtype, A.ptr, A.rs, A.cs),
                   gemm.Strided(dtype, B.ptr, B.rs, B.cs), C.ptr, C.rs, accumulate, packs=packs)


# -- patches ----------------------------------------------------------------------------------

class Geometry:
    """Sizes of one convolution (ints where static, i64 values otherwise)."""

    def __init__(self, b, op, C, H, W, kh, kw, OH, OW):
        self.C, self.H, self.W, self.kh, self.kw, self.OH, self.OW = C, H, W, kh, kw, OH, OW
        self.sh, self.sw = op.subsample
        self.dh, self.dw = dilation(op)
        self.flip = op.filter_flip
        self.ph, self.pw = padding(b, op.border_mode, kh, kw, (self.dh, self.dw))
        self.P = U.product(b, [C, kh, kw])
        self.N = U.mul(b, OH, OW)
        self.no_pad = isinstance(self.ph, int) and isinstance(self.pw, int) and self.ph == 0 and self.pw == 0


class IRArith:
    """The integer arithmetic of the shape formulas in symcnn (conv_geometry.py, pool_geometry.py)
    on i64 values, with ints folded statically (irutil's helpers)."""

    def __init__(self, b):
        self.b = b

    def add(self, x, y):
        return U.add(self.b, x, y)

    def sub(self, x, y):
        return U.sub(self.b, x, y)

    def mul(self, x, y):
        return U.mul(self.b, x, y)

    def floordiv(self, x, y):
        return floordiv(self.b, x, y)

    def max0(self, x):
        return U.smax(self.b, x, 0)

    def select_ge(self, x, y, a, c):
        b = self.b
        if isinstance(x, int) and isinstance(y, int):
            return a if x >= y else c
        return b.select(b.icmp_signed(">=", U.as_value(b, x), U.as_value(b, y)), U.as_value(b, a), U.as_value(b, c))

    def if_positive(self, n, v):
        b = self.b
        if isinstance(n, int):
            return v if n > 0 else 0
        return b.select(b.icmp_signed(">", n, U.i64(0)), U.as_value(b, v), U.i64(0))


def dilation(op):
    """(dh, dw) of a conv op (the fused conv ops have none: (1, 1))."""
    return tuple(getattr(op, "filter_dilation", (1, 1)))


def padding(b, border_mode, kh, kw, dil=(1, 1)):
    return geometry.padding(border_mode, kh, kw, IRArith(b), dil)


def extent(b, k, d):
    """The rows (cols) a k-tap filter dilated by d spans."""
    return geometry.extent(k, d, IRArith(b))


def out_len(b, n, k, p, s):
    return geometry.out_len(n, k, p, s, IRArith(b))


def _valid_range(b, off, size, stride, count):
    """[lo, hi) of the output positions i in [0, count) with 0 <= i*stride + off < size."""
    lo = clamp(b, ceildiv(b, U.sub(b, 0, off), stride), 0, count)
    hi = clamp(b, U.add(b, floordiv(b, U.sub(b, U.sub(b, size, 1), off), stride), 1), lo, count)
    return lo, hi


def _kernel_offsets(ctx, g, r, s):
    """(row offset, col offset) of the input read by patch row (r, s), padding included."""
    b = ctx.b
    rr = U.sub(b, U.sub(b, g.kh, 1), r) if g.flip else r
    ss = U.sub(b, U.sub(b, g.kw, 1), s) if g.flip else s
    return U.sub(b, U.mul(b, rr, g.dh), g.ph), U.sub(b, U.mul(b, ss, g.dw), g.pw)


def _patch_loops(ctx, g, body):
    """for c, r, s: body(p, c, off_r, off_c, (i_lo, i_hi), (j_lo, j_hi))."""
    b = ctx.b
    with U.for_range(b, g.C, name="c") as c:
        with U.for_range(b, g.kh, name="r") as r:
            with U.for_range(b, g.kw, name="s") as s:
                p = U.add(b, U.mul(b, U.add(b, U.mul(b, c, g.kh), r), g.kw), s)
                off_r, off_c = _kernel_offsets(ctx, g, r, s)
                if g.no_pad:
                    ir_, jr = (0, g.OH), (0, g.OW)
                else:
                    ir_ = _valid_range(b, off_r, g.H, g.sh, g.OH)
                    jr = _valid_range(b, off_c, g.W, g.sw, g.OW)
                body(p, c, off_r, off_c, ir_, jr)


def zero_fill(b, ptr, start, stop, dtype):
    """ptr[start:stop] = 0 (a memset: float and integer zeros are all-zero bytes)."""
    if isinstance(start, int) and isinstance(stop, int) and stop <= start:
        return
    et = U.ll_type(dtype)
    size = U.itemsize(dtype)
    n = U.smax(b, U.sub(b, stop, start), 0)
    U.memset_zero(b, gep(b, ptr, start, et), U.mul(b, n, size))


def emit_im2col(ctx, g, x, cols, dtype):
    """cols[p, i*OW + j] = x[c, i*sh + off_r, j*sw + off_c] (0 outside): x is one image (C, H, W)."""
    b = ctx.b
    et = U.ll_type(dtype)
    xt = x.lltype

    def body(p, c, off_r, off_c, ir_, jr):
        row = gep(b, cols, U.mul(b, p, g.N), et)
        (i_lo, i_hi), (j_lo, j_hi) = ir_, jr
        if not g.no_pad:
            zero_fill(b, row, 0, U.mul(b, i_lo, g.OW), dtype)
            zero_fill(b, row, U.mul(b, i_hi, g.OW), g.N, dtype)
        xc = U.mul(b, c, x.strides[0])
        with U.for_range(b, i_hi, start=i_lo, name="i") as i:
            dst = gep(b, row, U.mul(b, i, g.OW), et)
            ih = U.add(b, U.mul(b, i, g.sh), off_r)
            src = gep(b, x.ptr, U.add(b, xc, U.add(b, U.mul(b, ih, x.strides[1]),
                                                    U.mul(b, off_c, x.strides[2]))), xt)
            if not g.no_pad:
                zero_fill(b, dst, 0, j_lo, dtype)
                zero_fill(b, dst, j_hi, g.OW, dtype)
            step = U.mul(b, g.sw, x.strides[2])
            # short rows: masked vector steps (LLVM's vectoriser left 10 values to a scalar loop: a
            # 'valid' 5x5 layer on 14x14 images spent a third of its forward there)
            fold = isinstance(j_hi, int) and isinstance(j_lo, int) and U.fold_tail_pays(j_hi - j_lo, dtype)
            with U.for_range(b, j_hi, start=j_lo, name="j", fold_tail=fold) as j:
                v = b.load(gep(b, src, U.mul(b, j, step), xt), typ=xt)
                b.store(U.cast_value(b, v, x.dtype, dtype), gep(b, dst, j, et))

    _patch_loops(ctx, g, body)


def emit_col2im(ctx, g, dcols, dx, dtype):
    """dx[c, i*sh + off_r, j*sw + off_c] += dcols[p, i*OW + j]: dx is one contiguous image (C, H, W)."""
    b = ctx.b
    et = U.ll_type(dtype)

    # unit column strides: a row by whole vectors, then narrower ones (add_row; rows too short for
    # LLVM's vectoriser, such as 14 columns with 16 lanes, ran one value at a time)
    rows = isinstance(g.sw, int) and g.sw == 1 and str(dtype) in ("float32", "float64") and U.lanes(dtype) > 1

    def body(p, c, off_r, off_c, ir_, jr):
        row = gep(b, dcols, U.mul(b, p, g.N), et)
        (i_lo, i_hi), (j_lo, j_hi) = ir_, jr
        xc = U.mul(b, c, U.mul(b, g.H, g.W))
        with U.for_range(b, i_hi, start=i_lo, name="i") as i:
            srow = gep(b, row, U.mul(b, i, g.OW), et)
            ih = U.add(b, U.mul(b, i, g.sh), off_r)
            drow = gep(b, dx, U.add(b, xc, U.add(b, U.mul(b, ih, g.W), off_c)), et)
            if rows:
                add_row(ctx, gep(b, srow, j_lo, et), gep(b, drow, j_lo, et), U.sub(b, j_hi, j_lo), dtype)
            else:
                with U.for_range(b, j_hi, start=j_lo, name="j") as j:
                    d = gep(b, drow, U.mul(b, j, g.sw), et)
                    v = b.load(gep(b, srow, j, et), typ=et)
                    b.store(b.fadd(b.load(d, typ=et), v), d)

    _patch_loops(ctx, g, body)


def add_row(ctx, src, dst, n, dtype):
    """dst[:n] += src[:n] (float dtype) by vectors of the target's lanes, then (n static) narrower
    ones, halving, for what remains, else one value at a time. No masked stores: a masked store
    blocks every later load of its whole vector's bytes until it retires (no forwarding), and the
    next row of dx starts W values on (col2im: 18 columns of 24, 16 lanes, 1.5x the time)."""
    b = ctx.b
    L = U.lanes(dtype)
    et = U.ll_type(dtype)
    size = U.itemsize(dtype)

    def add(j, width):
        s_, d_ = gep(b, src, j, et), gep(b, dst, j, et)
        if width == 1:
            b.store(b.fadd(b.load(d_, typ=et), b.load(s_, typ=et)), d_)
            return
        vt = ir.VectorType(et, width)
        b.store(b.fadd(b.load(d_, typ=vt, align=size), b.load(s_, typ=vt, align=size)), d_, align=size)

    n = U.smax(b, n, 0)
    full = n // L if isinstance(n, int) else b.udiv(n, U.i64(L))
    with U.for_range(b, full, name="rv") as v:
        add(b.mul(v, U.i64(L)), L)
    j = U.mul(b, full, L)
    if not isinstance(n, int):
        with U.for_range(b, n, start=j, name="rj") as k:
            add(k, 1)
        return
    width = L // 2
    while j < n:
        while width > n - j:
            width //= 2
        add(j, width)
        j += width


# -- helpers shared by the three lowerings ----------------------------------------------------

def pin(ctx, value, static, *extra):
    """A dimension known statically (from an op's declared shapes): check it at run time, use the int."""
    if static is None:
        return value
    if isinstance(value, int):
        if value != static:
            raise ValueError(f"static dimension {value} disagrees with the declared {static}")
        return value
    ctx.check_equal(value, static, E_SHAPE, *extra)
    return static


def same(ctx, x, y):
    """Two dims that must agree: check at run time, and prefer the static one."""
    ctx.check_equal(x, y, E_SHAPE)
    return x if isinstance(x, int) else y


def dense(ctx, arr, dtype):
    """arr as a contiguous buffer of `dtype` (arr itself when it already is one)."""
    if arr.contiguous and arr.dtype == dtype:
        return arr
    out = ctx.scratch(dtype, arr.shape)
    copy(ctx, arr, out)
    return out


def pinned(b, arr, shape):
    """arr with (possibly now static) dims `shape`; contiguous arrays get folded strides."""
    if arr.contiguous:
        return Array(arr.dtype, arr.ptr, shape, b=b)
    return Array(arr.dtype, arr.ptr, shape, arr.strides)


def image_view(b, arr, n):
    off = U.mul(b, n, arr.strides[0])
    return Array(arr.dtype, gep(b, arr.ptr, off, arr.lltype), arr.shape[1:], arr.strides[1:])


def hw_values(ctx, arr, var, who):
    """The two entries of an int64 (rows, cols) input: ints when it is a constant."""
    b = ctx.b
    if isinstance(var, Constant):
        vals = [int(v) for v in var.data.reshape(-1)]
        if len(vals) == 2:
            return vals
    ctx.check_equal(arr.shape[0], 2, E_SHAPE)
    vals = [U.cast_value(b, b.load(arr.flat_addr(b, U.mul(b, k, arr.strides[0])), typ=arr.lltype),
                         arr.dtype, "int64") for k in range(2)]
    for v in vals:
        ctx.fail_if(b.icmp_signed("<", v, U.i64(0)), E_VALUE, v)
    return vals


def check_fits(ctx, n, k, p):
    """The (padded) input must be at least as large as the filters."""
    b = ctx.b
    padded = U.add(b, n, U.mul(b, 2, p))
    if isinstance(padded, int) and isinstance(k, int):
        if padded < k:
            raise ValueError(f"filter size {k} is larger than the padded input size {padded}")
        return
    ctx.fail_if(b.icmp_signed("<", U.as_value(b, padded), U.as_value(b, k)), E_SHAPE, padded, k)


def output_dims(ctx, op, H, W, kh, kw, top=None):
    """(OH, OW) of the convolution, the padded input checked to hold the filters; the grad ops pass
    the output gradient's (OH, OW) as `top`, checked equal."""
    b = ctx.b
    dil = dilation(op)
    ph, pw = padding(b, op.border_mode, kh, kw, dil)
    eh, ew = extent(b, kh, dil[0]), extent(b, kw, dil[1])
    check_fits(ctx, H, eh, ph)
    check_fits(ctx, W, ew, pw)
    OH = out_len(b, H, eh, ph, op.subsample[0])
    if top is not None:
        OH = same(ctx, OH, top[0])
    OW = out_len(b, W, ew, pw, op.subsample[1])
    if top is not None:
        OW = same(ctx, OW, top[1])
    return OH, OW


def forward_dims(ctx, op, x, w):
    """(B, C, H, W, K, kh, kw, OH, OW) of a forward convolution of x by w, with the op's declared
    static sizes pinned and checked."""
    B, C, H, W = (pin(ctx, x.shape[d], op.imshp[d]) for d in range(4))
    K, Ck, kh, kw = (pin(ctx, w.shape[d], op.kshp[d]) for d in range(4))
    C = same(ctx, C, Ck)
    OH, OW = output_dims(ctx, op, H, W, kh, kw)
    return B, C, H, W, K, kh, kw, OH, OW


def grad_dims(ctx, node, ins):
    """(B, C, H, W, K, kh, kw, OH, OW) of a Conv2dGradInputs node (inputs: filters, output gradient,
    input rows and cols) or Conv2dGradWeights node (input, output gradient, filter rows and cols),
    with the op's declared static sizes pinned and the operands checked against each other."""
    op = node.op
    operand, top = ins[:2]
    if isinstance(op, Conv2dGradInputs):
        H, W = (pin(ctx, v, op.imshp[2 + d]) for d, v in enumerate(hw_values(ctx, ins[2], node.inputs[2], op)))
        K, C, kh, kw = (pin(ctx, operand.shape[d], op.kshp[d]) for d in range(4))
        B = pin(ctx, top.shape[0], op.imshp[0])
        C = pin(ctx, C, op.imshp[1])
        K = same(ctx, K, top.shape[1])
    else:
        kh, kw = (pin(ctx, v, op.kshp[2 + d]) for d, v in enumerate(hw_values(ctx, ins[2], node.inputs[2], op)))
        B, C, H, W = (pin(ctx, operand.shape[d], op.imshp[d]) for d in range(4))
        B = same(ctx, B, top.shape[0])
        K = pin(ctx, top.shape[1], op.kshp[0])
        C = pin(ctx, C, op.kshp[1])
    OH, OW = output_dims(ctx, op, H, W, kh, kw, top.shape[2:])
    return B, C, H, W, K, kh, kw, OH, OW


def grad_output(ctx, node, ins):
    """(out, g, B, K) of a grad op: its result allocated, the convolution's geometry, batch size and
    number of filters, with every dimension the result makes static folded."""
    B, C, H, W, K, kh, kw, OH, OW = grad_dims(ctx, node, ins)
    if isinstance(node.op, Conv2dGradInputs):
        out = ctx.alloc(node.outputs[0], [B, C, H, W])
        B, C, H, W = out.shape
    else:
        out = ctx.alloc(node.outputs[0], [K, C, kh, kw])
        K, C, kh, kw = out.shape
    return out, Geometry(ctx.b, node.op, C, H, W, kh, kw, OH, OW), B, K
