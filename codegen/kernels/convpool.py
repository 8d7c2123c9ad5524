"""ConvPoolTanh and ConvPoolTanhGrad (symcnn/tensor/nnet/convpool.py): conv + max-pool + bias + tanh.

Both work one image at a time with the im2col + GEMM machinery of conv.py, so the conv output (forward)
and the conv-output gradient (backward) exist only as one image's (K, OH*OW) scratch tile, which stays
in cache, instead of a (B, K, OH, OW) buffer written and re-read by the separate kernels:

  forward, per image n:   cols = im2col(x[n]);  conv = W @ cols                       (K x N scratch)
                          for k, i, j: m = max of the window, bits = window positions equal to m,
                                       out[n, k, i, j] = tanh(m + b[k]), mask[n, k, i, j] = bits
  backward, per image n:  top[k, :] = 0; for k, i, j: gp = g_out * (1 - out^2); gb[k] += gp;
                                         top[k, window position of every set bit] += gp
                          dWT += im2col(x[n]) @ top^T      (accumulated over images, like Conv2dGradWeights)
                          if need_gx: gx[n] = col2im(W^T @ top)

The window loops are unrolled (ws is static); the loops over pooled columns j are innermost with
static strides. gb accumulates in float64 (a sum over batch * pooled pixels).

Threads (config.num_threads > 1, baked into the module when it is compiled): the per-image loop is
outlined into an internal function body(ptr args, i64 tid, i64 begin, i64 end) that reads the
pointers and dynamic dims it needs from an i64 array. With at least MIN_PARALLEL images the batch
is split into num_threads contiguous ranges: POSIX threads run ranges 1.. (through a trampoline)
while the calling thread runs range 0, then joins them. Every thread has its own scratch (one
buffer of num_threads 64-byte aligned parts) and, in the backward, its own dWT / gb partial
sums, added in thread order after the join (deterministic). The body has no error exits: all
checks (shapes, scratch allocation) are done before the parallel region.
"""
from llvmlite import ir

from symcnn.tensor.nnet.convpool import ConvPoolTanh, ConvPoolTanhGrad

from symcnn.config import config

from .. import irutil as U
from .. import vmath
from ..lower import E_SHAPE, Array, _checker, lower
from . import gemm as G
from .conv import (Geometry, Mat, _zero_fill, check_fits, dense, emit_col2im, emit_gemm, emit_im2col, gep,
                   image_view, out_len, padding, pin, pinned, same)
from .pool import out_len as pool_out_len
from .reduce import _greater, _lowest


def _dims(ctx, op, x, w):
    """(B, C, H, W, K, kh, kw, OH, OW, PH, PW) with the declared static sizes pinned and checked."""
    b = ctx.b
    B, C, H, W = (pin(ctx, x.shape[d], op.imshp[d]) for d in range(4))
    K, Ck, kh, kw = (pin(ctx, w.shape[d], op.kshp[d]) for d in range(4))
    C = same(ctx, C, Ck)
    ph, pw = padding(b, op.border_mode, kh, kw)
    check_fits(ctx, H, kh, ph)
    check_fits(ctx, W, kw, pw)
    OH = out_len(b, H, kh, ph, op.subsample[0])
    OW = out_len(b, W, kw, pw, op.subsample[1])
    PH = pool_out_len(b, OH, op.ws[0], op.stride[0], 0, True)
    PW = pool_out_len(b, OW, op.ws[1], op.stride[1], 0, True)
    return B, C, H, W, K, kh, kw, OH, OW, PH, PW


def _offsets(op):
    """(bit, u, v) for every position of the pooling window."""
    return [(u * op.ws[1] + v, u, v) for u in range(op.ws[0]) for v in range(op.ws[1])]



MIN_PARALLEL = 8   # fewer images than this run on the calling thread only


def _threads():
    """Threads for the per-image loops of the lowering in progress (1: inline serial loop)."""
    if _checker() is not None:  # bounds-checked builds keep the plain inline loop
        return 1
    return max(1, int(config.num_threads))


class _BodyCtx:
    """The parts of a lowering Context the per-image code uses, inside an outlined function.
    Nothing in it may allocate or fail: that happens before the parallel region."""

    def __init__(self, module, builder):
        self.module, self.b = module, builder

    def local(self, lltype, init=None):
        with self.b.goto_entry_block():
            slot = self.b.alloca(lltype)
        if init is not None:
            self.b.store(init, slot)
        return slot

    def scratch(self, *a):
        raise AssertionError("scratch allocation inside a parallel per-image body")

    def fail_if(self, *a):
        raise AssertionError("error check inside a parallel per-image body")

    check_equal = fail_if


def _round64(n):
    """Elements of one thread's part of a shared scratch buffer (keeps every part 64-byte aligned)."""
    if isinstance(n, int):
        return -(-n // 16) * 16
    return None


class _Parts:
    """A scratch buffer of T parts of n elements each (part t for thread t)."""

    def __init__(self, ctx, dtype, n, T):
        b = ctx.b
        r = _round64(n)
        if r is None:
            r = b.and_(b.add(U.as_value(b, n), U.i64(15)), U.i64(~15))
        self.dtype, self.stride = dtype, r
        self.arr = ctx.scratch(dtype, [U.mul(b, r, T)])

    def values(self):
        return [self.arr.ptr, self.stride]


def _part(b, base, stride, tid, dtype):
    return gep(b, base, U.mul(b, tid, stride), U.ll_type(dtype))


def _body_function(module, prefix):
    k = 0
    while f"{prefix}{k}" in module.globals:
        k += 1
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [U.PTR, U.I64, U.I64, U.I64]), name=f"{prefix}{k}")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    tramp = ir.Function(module, ir.FunctionType(U.PTR, [U.PTR]), name=f"{prefix}{k}_thread")
    tramp.linkage = "internal"
    tb = ir.IRBuilder(tramp.append_basic_block("entry"))
    arg = tramp.args[0]
    fields = [tb.load(tb.gep(arg, [U.i64(i)], source_etype=U.I64), typ=U.I64) for i in range(4)]
    tb.call(fn, [tb.inttoptr(fields[0], U.PTR)] + fields[1:])
    tb.ret(ir.Constant(U.PTR, None))
    return fn, tramp


def _stack_i64(b, n):
    """n i64s on the stack of the function being built (alloca in its entry block)."""
    with b.goto_entry_block():
        return b.alloca(U.I64, size=U.i64(n))


def _run_parallel(ctx, prefix, values, B, T, emit):
    """Outline emit(bctx, vals, tid, n0, n1) (vals: `values` with the IR ones reloaded inside the
    body; ints stay ints) and run it over [0, B) on up to T threads."""
    b = ctx.b
    module = ctx.module
    fn, tramp = _body_function(module, prefix)
    # the captured values: IR ones go into an i64 array (pointers as integers)
    dyn = [v for v in values if not isinstance(v, int)]
    arr = _stack_i64(b, max(len(dyn), 1))
    for i, v in enumerate(dyn):
        if isinstance(v.type, ir.PointerType):
            v = b.ptrtoint(v, U.I64)
        b.store(v, b.gep(arr, [U.i64(i)], source_etype=U.I64))
    # the body
    bb = ir.IRBuilder(fn.append_basic_block("entry"))
    args, tid, n0, n1 = fn.args
    inner, k = [], 0
    for v in values:
        if isinstance(v, int):
            inner.append(v)
            continue
        x = bb.load(bb.gep(args, [U.i64(k)], source_etype=U.I64), typ=U.I64)
        inner.append(bb.inttoptr(x, U.PTR) if isinstance(v.type, ir.PointerType) else x)
        k += 1
    emit(_BodyCtx(module, bb), inner, tid, n0, n1)
    bb.ret_void()
    # the call: serially for a small batch, else split over T threads
    argp = arr
    Bv = U.as_value(b, B)
    with b.if_else(b.icmp_signed("<", Bv, U.i64(MIN_PARALLEL))) as (small, big):
        with small:
            b.call(fn, [argp, U.i64(0), U.i64(0), Bv])
        with big:
            create = U.declare(module, "pthread_create", U.I32, [U.PTR, U.PTR, U.PTR, U.PTR])
            join = U.declare(module, "pthread_join", U.I32, [U.I64, U.PTR])
            bounds = [b.udiv(b.mul(Bv, U.i64(t)), U.i64(T)) if 0 < t < T else (U.i64(0) if t == 0 else Bv)
                      for t in range(T + 1)]
            started = []
            for t in range(1, T):
                targ = _stack_i64(b, 4)
                for i, v in enumerate([b.ptrtoint(argp, U.I64), U.i64(t), bounds[t], bounds[t + 1]]):
                    b.store(v, b.gep(targ, [U.i64(i)], source_etype=U.I64))
                handle = ctx.local(U.I64)
                rc = b.call(create, [handle, ir.Constant(U.PTR, None), tramp, targ])
                started.append((t, handle, rc))
            b.call(fn, [argp, U.i64(0), bounds[0], bounds[1]])
            for t, handle, rc in started:
                with b.if_else(b.icmp_signed("==", rc, ir.Constant(U.I32, 0))) as (ok, failed):
                    with ok:
                        b.call(join, [b.load(handle, typ=U.I64), ir.Constant(U.PTR, None)])
                    with failed:  # no thread: run its range here
                        b.call(fn, [argp, U.i64(t), bounds[t], bounds[t + 1]])


@lower.register(ConvPoolTanh)
def lower_conv_pool_tanh(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w, bias = ins
    dt = node.outputs[0].dtype
    mdt = node.outputs[1].dtype
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    ctx.check_equal(bias.shape[0], K, E_SHAPE)
    out = ctx.alloc(node.outputs[0], [B, K, PH, PW])
    B, K, PH, PW = out.shape
    mask = ctx.alloc(node.outputs[1], [B, K, PH, PW])
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    bd = dense(ctx, bias, dt)
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    if T == 1:
        cols = ctx.scratch(dt, [g.P, g.N])
        conv = ctx.scratch(dt, [K, g.N])
        parts = [cols.ptr, 0, conv.ptr, 0, None, 0, None, 0]
        _forward_images(ctx, op, dt, mdt, xs.dtype, dims, xs, [wd.ptr, bd.ptr, out.ptr, mask.ptr],
                        parts, 0, 0, B, packs=False)
        return [out, mask]
    na, nb = G.pack_sizes(b, dt, K, g.N, g.P)
    bufs = [_Parts(ctx, dt, n, T) for n in (U.mul(b, g.P, g.N), U.mul(b, K, g.N), na, nb)]
    values = dims + [xs.ptr] + list(xs.strides) + [wd.ptr, bd.ptr, out.ptr, mask.ptr]
    values += [v for p in bufs for v in p.values()]

    def emit(bctx, v, tid, n0, n1):
        _forward_images(bctx, op, dt, mdt, xs.dtype, v[:11], v[11:16], v[16:20], v[20:28], tid, n0, n1,
                        packs=True)

    _run_parallel(ctx, "symcnn_convpool_fwd", values, B, T, emit)
    return [out, mask]


def _forward_images(ctx, op, dt, mdt, xdt, dims, xv, ptrs, parts, tid, n0, n1, packs):
    """The forward for images [n0, n1); parts: (base, stride) of cols, conv, packed A, packed B."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, bptr, optr, mptr = ptrs
    cols, conv, ap, bp = (_part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None else None
                          for i in range(4))
    pk = (ap, bp) if packs else None
    et, mt = U.ll_type(dt), U.ll_type(mdt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    with U.for_range(b, n1, start=n0, name="img") as n:
        emit_im2col(ctx, g, image_view(b, xs, n), cols, dt)
        emit_gemm(ctx, dt, K, g.N, g.P, Mat(wptr, g.P, 1), Mat(cols, g.N), Mat(conv, g.N), packs=pk)
        with U.for_range(b, K, name="k") as k:
            bk = b.load(gep(b, bptr, k, et), typ=et)
            ck = gep(b, conv, U.mul(b, k, g.N), et)
            obase = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
            with U.for_range(b, PH, name="pi") as i:
                rows = [gep(b, ck, U.mul(b, U.add(b, U.mul(b, i, sh), u), OW), et) for u in range(op.ws[0])]
                orow = U.add(b, obase, U.mul(b, i, PW))
                with U.for_range(b, PW, name="pj") as j:
                    c0 = U.mul(b, j, sw)
                    vals = [b.load(gep(b, rows[u], U.add(b, c0, v), et), typ=et) for _, u, v in offs]
                    m = _lowest(dt)
                    for val in vals:
                        m = b.select(_greater(b, val, m, dt), val, m)
                    bits = ir.Constant(mt, 0)
                    for (bit, _, _), val in zip(offs, vals):
                        hit = b.zext(b.fcmp_ordered("==", val, m), mt)
                        bits = b.or_(bits, b.shl(hit, ir.Constant(mt, bit)) if bit else hit)
                    o = U.add(b, orow, j)
                    b.store(vmath.emit(b, ctx.module, "tanh", b.fadd(m, bk), dt), gep(b, optr, o, et))
                    b.store(bits, gep(b, mptr, o, mt))


@lower.register(ConvPoolTanhGrad)
def lower_conv_pool_tanh_grad(ctx, node, ins):
    b = ctx.b
    op = node.op
    x, w, outv, maskv, gout = ins
    dt = node.outputs[0].dtype
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = _dims(ctx, op, x, w)
    for arr in (outv, maskv, gout):
        for d, want in enumerate((B, K, PH, PW)):
            ctx.check_equal(arr.shape[d], want, E_SHAPE, d)
    st = node.inputs[2].type.shape
    PH = PH if st[2] is None else pin(ctx, PH, st[2])
    PW = PW if st[3] is None else pin(ctx, PW, st[3])
    gW = ctx.alloc(node.outputs[0], [K, C, kh, kw])
    K, C, kh, kw = gW.shape
    gb = ctx.alloc(node.outputs[1], [K])
    gx = ctx.alloc(node.outputs[2], [B, C, H, W]) if op.need_gx else None
    if gx is not None:
        B, C, H, W = gx.shape
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    et = U.ll_type(dt)
    wd = dense(ctx, pinned(b, w, [K, C, kh, kw]), dt)
    od = dense(ctx, pinned(b, outv, [B, K, PH, PW]), dt)
    md = dense(ctx, pinned(b, maskv, [B, K, PH, PW]), maskv.dtype)
    gd = dense(ctx, pinned(b, gout, [B, K, PH, PW]), dt)
    xs = pinned(b, x, [B, C, H, W])
    T = _threads()
    dims = [B, C, H, W, K, kh, kw, OH, OW, PH, PW]
    ptrs = [wd.ptr, od.ptr, md.ptr, gd.ptr, gx.ptr if gx is not None else None]
    need_gx = gx is not None
    # per-thread buffers: top, topT, cols, dcols, packed A/B of the two GEMMs; dwT, gb64 partials
    sizes = [U.mul(b, K, g.N), U.mul(b, g.N, K), U.mul(b, g.P, g.N), U.mul(b, g.P, g.N) if need_gx else 0]
    sizes += list(G.pack_sizes(b, dt, g.P, K, g.N))
    sizes += list(G.pack_sizes(b, dt, g.P, g.N, K)) if need_gx else [0, 0]
    if T == 1:
        bufs = [ctx.scratch(dt, [n]).ptr if not (isinstance(n, int) and n == 0) else None for n in sizes[:4]]
        parts = [v for p in bufs for v in (p, 0)] + [None, 0] * 4
        dwT = _Parts(ctx, dt, U.mul(b, g.P, K), 1)
        gb64 = _Parts(ctx, "float64", K, 1)
    else:
        bufs = [_Parts(ctx, dt, n, T) if not (isinstance(n, int) and n == 0) else None for n in sizes]
        parts = [v for p in bufs for v in (p.values() if p is not None else [None, 0])]
        dwT = _Parts(ctx, dt, U.mul(b, g.P, K), T)
        gb64 = _Parts(ctx, "float64", K, T)
    _zero_fill(b, dwT.arr.ptr, 0, U.mul(b, dwT.stride, T), dt)
    _zero_fill(b, gb64.arr.ptr, 0, U.mul(b, gb64.stride, T), "float64")
    acc_parts = dwT.values() + gb64.values()
    if T == 1:
        _backward_images(ctx, op, dt, md.lltype, xs.dtype, dims, xs, ptrs, parts, acc_parts, 0, 0, B, packs=False)
    else:
        dynptrs = [p for p in ptrs if p is not None]
        np_ = len(dynptrs)
        values = dims + [xs.ptr] + list(xs.strides) + dynptrs + [v for v in parts if v is not None] + acc_parts
        present = [p is not None for p in parts]

        def emit(bctx, v, tid, n0, n1):
            it = iter(v[16 + np_:])
            inner_parts = [next(it) if here else None for here in present]
            inner_acc = list(it)
            pp = list(v[16:16 + np_]) + ([None] if not need_gx else [])
            _backward_images(bctx, op, dt, md.lltype, xs.dtype, v[:11], v[11:16], pp, inner_parts, inner_acc,
                             tid, n0, n1, packs=True)

        _run_parallel(ctx, "symcnn_convpool_bwd", values, B, T, emit)
    # gW = sum over threads of dWT^T, gb = sum of the float64 partials (thread order)
    with U.for_range(b, K, name="ok") as k:
        with U.for_range(b, g.P, name="op") as p:
            v = None
            for t in range(T):
                x_ = b.load(gep(b, dwT.arr.ptr, U.add(b, U.mul(b, t, dwT.stride), U.add(b, U.mul(b, p, K), k)), et),
                            typ=et)
                v = x_ if v is None else b.fadd(v, x_)
            b.store(v, gep(b, gW.ptr, U.add(b, U.mul(b, k, g.P), p), et))
        v = None
        for t in range(T):
            x_ = b.load(gep(b, gb64.arr.ptr, U.add(b, U.mul(b, t, gb64.stride), k), U.F64), typ=U.F64)
            v = x_ if v is None else b.fadd(v, x_)
        b.store(U.cast_value(b, v, "float64", dt), gep(b, gb.ptr, k, et))
    outs = [gW, gb]
    if gx is not None:
        outs.append(gx)
    return outs


def _backward_images(ctx, op, dt, mt, xdt, dims, xv, ptrs, parts, acc_parts, tid, n0, n1, packs):
    """The backward for images [n0, n1); parts: (base, stride) of top, topT, cols, dcols and the packed
    A/B of the two GEMMs (base None: absent); acc_parts: (base, stride) of the dWT and gb64 partials."""
    b = ctx.b
    B, C, H, W, K, kh, kw, OH, OW, PH, PW = dims
    g = Geometry(b, op, C, H, W, kh, kw, OH, OW)
    xs = xv if isinstance(xv, Array) else Array(xdt, xv[0], [B, C, H, W], list(xv[1:5]))
    wptr, optr, mptr, gptr, gxptr = ptrs
    top, topT, cols, dcols, ap1, bp1, ap2, bp2 = (
        _part(b, parts[2 * i], parts[2 * i + 1], tid, dt) if parts[2 * i] is not None else None for i in range(8))
    dwT = _part(b, acc_parts[0], acc_parts[1], tid, dt)
    gb64 = _part(b, acc_parts[2], acc_parts[3], tid, "float64")
    pk1 = (ap1, bp1) if packs else None
    pk2 = (ap2, bp2) if packs else None
    et = U.ll_type(dt)
    sh, sw = op.stride
    offs = _offsets(op)
    plane = U.mul(b, PH, PW)
    one = U.const(dt, 1.0)
    zero = U.const(dt, 0.0)
    img = U.product(b, [C, H, W])
    with U.for_range(b, n1, start=n0, name="img") as n:
        _zero_fill(b, top, 0, U.mul(b, K, g.N), dt)
        with U.for_range(b, K, name="k") as k:
            tk = gep(b, top, U.mul(b, k, g.N), et)
            base = U.mul(b, U.add(b, U.mul(b, n, K), k), plane)
            acc = ctx.local(U.F64, ir.Constant(U.F64, 0.0))
            with U.for_range(b, PH, name="pi") as i:
                rows = [gep(b, tk, U.mul(b, U.add(b, U.mul(b, i, sh), u), OW), et) for u in range(op.ws[0])]
                prow = U.add(b, base, U.mul(b, i, PW))
                with U.for_range(b, PW, name="pj") as j:
                    p = U.add(b, prow, j)
                    o = b.load(gep(b, optr, p, et), typ=et)
                    gp = b.fmul(b.load(gep(b, gptr, p, et), typ=et), b.fsub(one, b.fmul(o, o)))
                    b.store(b.fadd(b.load(acc, typ=U.F64), U.cast_value(b, gp, dt, "float64")), acc)
                    bits = b.load(gep(b, mptr, p, mt), typ=mt)
                    c0 = U.mul(b, j, sw)
                    for bit, u, v in offs:
                        hit = b.icmp_unsigned("!=", b.and_(bits, ir.Constant(mt, 1 << bit)), ir.Constant(mt, 0))
                        dst = gep(b, rows[u], U.add(b, c0, v), et)
                        b.store(b.fadd(b.load(dst, typ=et), b.select(hit, gp, zero)), dst)
            gbk = gep(b, gb64, k, U.F64)
            b.store(b.fadd(b.load(gbk, typ=U.F64), b.load(acc, typ=U.F64)), gbk)
        # gW: dWT[P, K] += cols[P, N] @ top^T[N, K]
        emit_im2col(ctx, g, image_view(b, xs, n), cols, dt)
        with U.for_range(b, K, name="tk") as k:
            with U.for_range(b, g.N, name="tn") as m:
                v = b.load(gep(b, top, U.add(b, U.mul(b, k, g.N), m), et), typ=et)
                b.store(v, gep(b, topT, U.add(b, U.mul(b, m, K), k), et))
        emit_gemm(ctx, dt, g.P, K, g.N, Mat(cols, g.N, 1), Mat(topT, K), Mat(dwT, K), accumulate=True, packs=pk1)
        if gxptr is not None:
            emit_gemm(ctx, dt, g.P, g.N, K, Mat(wptr, 1, g.P), Mat(top, g.N), Mat(dcols, g.N), packs=pk2)
            dx = gep(b, gxptr, U.mul(b, n, img), et)
            _zero_fill(b, dx, 0, img, dt)
            emit_col2im(ctx, g, dcols, dx, dt)
