"""PhaseSplit and PhaseMerge (symcnn/tensor/nnet/phases.py): per (image, channel) plane, on the
module's threads, each phase's rows copied with the phase's column step.

Every index range is static (the op fixes the dilation, padding, image and phase sizes): a phase
row's columns inside the image are one loop of static length reading (split) or writing (merge)
every dw-th element, which LLVM vectorises; the rest of the destination plane is zeroed first.
"""
from symcnn.tensor.nnet.phases import PhaseMerge, PhaseSplit

from .. import irutil as U
from ..lower import E_ALLOC, E_SHAPE, lower
from ..options import options
from ..parallel import run_parallel, threads


def _inside(p, d, n, s):
    """[i0, i1): the phase indices a with 0 <= d*a + s - p < n (s: the phase, p: the padding)."""
    i0 = max(0, -(-(p - s) // d))
    i1 = max(i0, -(-(n + p - s) // d))
    return i0, i1


def _planes(ctx, op, src, dst, B, C, plane):
    """plane(bb, x, y, n, c, C, strides) for every (image n, channel c) of the B x C planes, on the
    threads when they are worth waking (x, y: the source's and destination's element pointers;
    strides: the source's)."""
    b = ctx.b
    H, W = op.image_hw
    Hs, Ws = op.phase_hw
    work = U.mul(b, U.mul(b, B, C), H * W + op.count * Hs * Ws)
    total = U.mul(b, B, C)
    values = [src.ptr, dst.ptr, B, C] + list(src.strides)

    def emit(bctx, v, tid, n0, n1):
        bb = bctx.b
        x, y, Bv, Cv = v[:4]
        strides = v[4:]
        with U.for_range(bb, n1, start=n0, name="plane") as i:
            n = bb.sdiv(U.as_value(bb, i), U.as_value(bb, Cv))
            c = bb.srem(U.as_value(bb, i), U.as_value(bb, Cv))
            plane(bb, x, y, n, c, Cv, strides)

    serial = b.icmp_signed("<", U.as_value(b, work), U.i64(options.elemwise_min_parallel))
    run_parallel(ctx, "symcnn_phases", values, total, threads(), emit, serial=serial)


def _copy_phase(bb, op, r, s, image, image_strides, phase, phase_strides, t, into_phase):
    """Phase (r, s)'s elements inside the image, between image[row * si + col * sj] and
    phase[a * sa + q * sq]: copied into the phase (into_phase) or out of it."""
    (dh, dw), (ph, pw), (H, W), (Hs, Ws) = op.dilation, op.pad, op.image_hw, op.phase_hw
    a0, a1 = _inside(ph, dh, H, r)
    q0, q1 = _inside(pw, dw, W, s)
    if min(a1, Hs) <= a0 or min(q1, Ws) <= q0:
        return
    (si, sj), (sa, sq) = image_strides, phase_strides
    with U.for_range(bb, min(a1, Hs), start=a0, name="row") as a:
        image_row = U.gep(bb, image, U.mul(bb, U.add(bb, U.mul(bb, a, dh), r - ph), si), t)
        phase_row = U.gep(bb, phase, U.mul(bb, a, sa), t)
        with U.for_range(bb, min(q1, Ws), start=q0, name="col") as q:
            at_image = U.gep(bb, image_row, U.mul(bb, U.add(bb, U.mul(bb, q, dw), s - pw), sj), t)
            at_phase = U.gep(bb, phase_row, U.mul(bb, q, sq), t)
            src, dst = (at_image, at_phase) if into_phase else (at_phase, at_image)
            bb.store(bb.load(src, typ=t), dst)


def _operand(ctx, ins, hw):
    """The op's operand, its rows and columns checked against hw (the op's sizes)."""
    arr, = ins
    for d, n in zip((2, 3), hw):
        ctx.check_equal(arr.shape[d], n, E_SHAPE, d)
    return arr


@lower.register(PhaseSplit)
def lower_phase_split(ctx, node, ins):
    b, op = ctx.b, node.op
    x = _operand(ctx, ins, op.image_hw)
    dh, dw = op.dilation
    Hs, Ws = op.phase_hw
    B, C = x.shape[0], x.shape[1]
    n, ovf = U.checked(b, "mul", B, op.count)
    if not isinstance(ovf, bool):
        ctx.fail_if(ovf, E_ALLOC, B)
    out = ctx.alloc(node.outputs[0], [n, C, Hs, Ws])
    t = x.lltype

    def plane(bb, xp, yp, img, c, Cv, strides):
        s0, s1, s2, s3 = strides
        src = U.gep(bb, xp, U.add(bb, U.mul(bb, img, s0), U.mul(bb, c, s1)), t)
        for r in range(dh):
            for s in range(dw):
                k = U.add(bb, U.mul(bb, U.add(bb, U.mul(bb, img, op.count), r * dw + s), Cv), c)
                dst = U.gep(bb, yp, U.mul(bb, k, Hs * Ws), t)
                U.memset_zero(bb, dst, Hs * Ws * U.itemsize(x.dtype))
                _copy_phase(bb, op, r, s, src, (s2, s3), dst, (Ws, 1), t, True)

    _planes(ctx, op, x, out, B, C, plane)
    return [out]


@lower.register(PhaseMerge)
def lower_phase_merge(ctx, node, ins):
    b, op = ctx.b, node.op
    p = _operand(ctx, ins, op.phase_hw)
    dh, dw = op.dilation
    H, W = op.image_hw
    n, C = p.shape[0], p.shape[1]
    if isinstance(n, int):
        if n % op.count:
            raise ValueError(f"{op}: {n} phases, not a multiple of {op.count}")
        B = n // op.count
    else:
        ctx.fail_if(b.icmp_signed("!=", b.srem(n, U.i64(op.count)), U.i64(0)), E_SHAPE, n)
        B = b.sdiv(n, U.i64(op.count))
    out = ctx.alloc(node.outputs[0], [B, C, H, W])
    t = p.lltype

    def plane(bb, pp, yp, img, c, Cv, strides):
        s0, s1, s2, s3 = strides
        dst = U.gep(bb, yp, U.mul(bb, U.add(bb, U.mul(bb, img, Cv), c), H * W), t)
        U.memset_zero(bb, dst, H * W * U.itemsize(p.dtype))
        for r in range(dh):
            for s in range(dw):
                k = U.add(bb, U.mul(bb, img, op.count), r * dw + s)
                src = U.gep(bb, pp, U.add(bb, U.mul(bb, k, s0), U.mul(bb, c, s1)), t)
                _copy_phase(bb, op, r, s, dst, (W, 1), src, (s2, s3), t, False)

    _planes(ctx, op, p, out, B, C, plane)
    return [out]
