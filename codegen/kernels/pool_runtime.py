"""RuntimePool, RuntimeMaxPoolGrad, RuntimeAveragePoolGrad and RuntimeMaxPoolGradGrad: the
pooling kernels of pool.py with the window size, stride and padding read from the ops'
int64 vector inputs when the function runs.

The values are checked first, as the reference checks them (ws >= 1, stride >= 1,
0 <= pad < ws, pad = 0 unless ignore_border, each at most MAX_GEOMETRY); a failed check
reports E_VALUE and the reference explains it. The bound keeps every index computation
(n + 2 * pad, i * stride + ws) far from overflowing int64, and the pooled buffer's byte
count is computed with overflow checks.
"""
from llvmlite import ir

from symcnn.tensor.signal.pool_runtime import (MAX_GEOMETRY, RuntimeAveragePoolGrad, RuntimeMaxPoolGrad,
                                               RuntimeMaxPoolGradGrad, RuntimePool)

from .. import irutil as U
from ..lower import E_VALUE, lower
from .conv import dense
from .pool import Geometry, emit_average_pool_grad, emit_max_pool_grad, emit_max_pool_grad_grad, emit_pool


def _read_pair(ctx, arr):
    b = ctx.b
    if not isinstance(arr.shape[0], int):
        ctx.fail_if(b.icmp_signed("!=", arr.shape[0], U.i64(2)), E_VALUE, arr.shape[0])
    elif arr.shape[0] != 2:
        raise ValueError(f"a pooling geometry vector of static length {arr.shape[0]} (expected 2)")
    return [U.cast_value(b, b.load(arr.flat_addr(b, k), typ=arr.lltype), arr.dtype, "int64") for k in range(2)]


def runtime_geometry(ctx, node, x, ins):
    """Geometry from the last three inputs, after the run-time checks."""
    b = ctx.b
    op = node.op
    ws, st, pad = (_read_pair(ctx, a) for a in ins[-3:])
    for k in range(2):
        bad = b.or_(b.icmp_signed("<", ws[k], U.i64(1)), b.icmp_signed("<", st[k], U.i64(1)))
        bad = b.or_(bad, b.icmp_signed("<", pad[k], U.i64(0)))
        bad = b.or_(bad, b.icmp_signed(">=", pad[k], ws[k]))
        for v in (ws[k], st[k]):  # pad < ws bounds pad too
            bad = b.or_(bad, b.icmp_signed(">", v, U.i64(MAX_GEOMETRY)))
        if not op.ignore_border:
            bad = b.or_(bad, b.icmp_signed("!=", pad[k], U.i64(0)))
        ctx.fail_if(bad, E_VALUE, ws[k], st[k], pad[k])
    g = Geometry(ctx, op, x, ws, st, pad)
    _check_size(ctx, g.pooled_shape, x.dtype)
    return g


def _check_size(ctx, shape, dtype):
    """Fail (E_VALUE) if the pooled buffer's byte count overflows int64."""
    b = ctx.b
    smul = U.declare(ctx.module, "llvm.smul.with.overflow.i64", ir.LiteralStructType([U.I64, U.I1]),
                     [U.I64, U.I64])
    acc, overflow = U.i64(U.itemsize(dtype)), ir.Constant(U.I1, 0)
    for d in shape:
        r = b.call(smul, [acc, U.as_value(b, d)])
        acc, overflow = b.extract_value(r, 0), b.or_(overflow, b.extract_value(r, 1))
    ctx.fail_if(overflow, E_VALUE, acc)


@lower.register(RuntimePool)
def lower_runtime_pool(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    return emit_pool(ctx, node, x, runtime_geometry(ctx, node, x, ins))


@lower.register(RuntimeMaxPoolGrad)
def lower_runtime_max_pool_grad(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    return emit_max_pool_grad(ctx, node, x, ins, runtime_geometry(ctx, node, x, ins))


@lower.register(RuntimeMaxPoolGradGrad)
def lower_runtime_max_pool_grad_grad(ctx, node, ins):
    x = dense(ctx, ins[0], ins[0].dtype)
    return emit_max_pool_grad_grad(ctx, node, x, ins, runtime_geometry(ctx, node, x, ins))


@lower.register(RuntimeAveragePoolGrad)
def lower_runtime_average_pool_grad(ctx, node, ins):
    return emit_average_pool_grad(ctx, node, ins, runtime_geometry(ctx, node, ins[0], ins))
