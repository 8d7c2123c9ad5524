"""The input activation of ConvPoolAct / ConvPoolActGrad (op.in_act). The strided forward's phase
split (conv_phases.PhaseImages.fill) and the padded weight gradient's zero-bordered copies
(conv_threads.shift_copy) apply it to the values as they copy them (in_act_of), whatever the
program: their zero borders are the padding of in_act(x). The other kernels of
codegen/kernels/convpool.py that copy each image into a zero-bordered buffer apply the program to
that copy in place, in cache, when it maps 0 to 0 (ReLU's, tanh's: the borders stay zero); the
others, and every kernel for other programs, read the image through activated_image, which applies
it to one (C, H, W) image into a per-thread dense buffer. Either way every convolution variant reads
in_act(x) unchanged.

The producing layer then stores its pre-activation z alone instead of z and act(z): one
full-resolution array less written by its forward (symcnn/rewrite/convpool_chain.py).
"""
from .. import irutil as U
from ..irutil import gep
from ..lower import Array
from .conv import image_view
from .elemwise import emit_scalar


def activated_image(ctx, op, dt, xs, n, buf, activate=True):
    """Image n of xs ((B, C, H, W) Array) as the kernels read it: itself without op.in_act (or
    activate False: the caller activates its copy), else in_act of it written densely at buf (C*H*W
    values) and returned as a dense (C, H, W) Array."""
    b = ctx.b
    src = image_view(b, xs, n)
    if op.in_act is None or not activate:
        return src
    et = U.ll_type(dt)
    C, H, W = src.shape
    s0, s1, s2 = src.strides
    with U.for_range(b, C, name="iac") as c:
        with U.for_range(b, H, name="iai") as i:
            row = gep(b, src.ptr, U.add(b, U.mul(b, c, s0), U.mul(b, i, s1)), et)
            drow = gep(b, buf, U.mul(b, U.add(b, U.mul(b, c, H), i), W), et)
            with U.for_range(b, W, name="iaj") as j:
                v = b.load(gep(b, row, U.mul(b, j, s2), et), typ=et)
                b.store(emit_scalar(ctx, op.in_act, [v], [dt], dt), gep(b, drow, j, et))
    return Array(dt, buf, [C, H, W], [U.mul(b, H, W), W, 1])


def keeps_zero(op, dt):
    """Whether op.in_act maps 0 to 0: then it may run over a zero-bordered copy of the image in
    place, borders included (activate_copy), instead of through a separate activated image."""
    import numpy as np
    if op.in_act is None:
        return True
    with np.errstate(all="ignore"):
        return bool(np.asarray(op.in_act.impl(np.zeros((), dt))) == 0)


def activate_copy(ctx, op, dt, buf, n):
    """buf[:n] = in_act(buf[:n]) in place (a copy of the image just written, in cache); nothing
    without op.in_act."""
    if op.in_act is None:
        return
    b = ctx.b
    et = U.ll_type(dt)
    with U.for_range(b, n, name="iap") as k:
        p = gep(b, buf, k, et)
        b.store(emit_scalar(ctx, op.in_act, [b.load(p, typ=et)], [dt], dt), p)


def in_act_of(ctx, op, dt):
    """op.in_act as a function of one value of dtype dt, for the copies that apply it as they copy
    (None without op.in_act)."""
    if op.in_act is None:
        return None
    return lambda v: emit_scalar(ctx, op.in_act, [v], [dt], dt)
