"""Collectives in native code: PSum calls MPI from the compiled function itself.

The MPI entry points and handles (communicator, MPI_SUM, datatypes) are read at run time
from `symcnn_mpi_table`, an external symbol resolved to symcnn.distributed.comm.TABLE: they
are addresses of this process, so they are never baked into machine code that the disk
cache may hand to another process. A table of size <= 1 (no mpirun) makes the collective a
copy, so one compiled function serves a single process and every rank.

Each dtype of a node's inputs is packed into one buffer and reduced by one non-blocking
MPI_Iallreduce (a gradient bucket), started where the node stands in the schedule, that is
as soon as its inputs are computed. The code of every later node is followed by an
MPI_Test (Open MPI advances a non-blocking collective only inside MPI calls), and the
MPI_Wait and the unpacking into the outputs come just before the first node that reads
them: a bucket of the last layers' gradients travels while the backward pass of the first
layers runs, as in PyTorch DDP.
"""
import ctypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from symcnn.distributed.comm import SLOT, TABLE
from symcnn.distributed.ops import PSum

from .. import irutil as U
from ..lower import E_VALUE, Array, copy, lower

TABLE_SYMBOL = "symcnn_mpi_table"
INT32_MAX = 2 ** 31 - 1
STATUS_BYTES = 256  # room for any MPI library's MPI_Status
# Handles are passed pointer-sized: Open MPI's are pointers (MPICH's ints travel in the low
# half of the same argument register on x86-64 and AArch64); a request is stored in 8 bytes.
# int MPI_Iallreduce(const void *send, void *recv, int count, MPI_Datatype, MPI_Op, MPI_Comm, MPI_Request *)
IALLREDUCE_TYPE = ir.FunctionType(U.I32, [U.PTR, U.PTR, U.I32, U.PTR, U.PTR, U.PTR, U.PTR])
TEST_TYPE = ir.FunctionType(U.I32, [U.PTR, U.PTR, U.PTR])  # (MPI_Request *, int *flag, MPI_Status *)
WAIT_TYPE = ir.FunctionType(U.I32, [U.PTR, U.PTR])         # (MPI_Request *, MPI_Status *)

llvm.add_symbol(TABLE_SYMBOL, ctypes.addressof(TABLE))


def _entry(ctx, name):
    b = ctx.b
    ty = ir.ArrayType(U.I64, len(TABLE))
    g = ctx.module.globals.get(TABLE_SYMBOL)
    if g is None:
        g = ir.GlobalVariable(ctx.module, ty, name=TABLE_SYMBOL)
    return b.load(b.gep(g, [U.i64(0), U.i64(SLOT[name])], source_etype=ty), typ=U.I64)


def _call(ctx, name, fnty, args):
    b = ctx.b
    return b.call(b.inttoptr(_entry(ctx, name), fnty.as_pointer()), args)


def _check(ctx, rc, name):
    b = ctx.b
    ctx.fail_if(b.icmp_signed("!=", rc, ir.Constant(U.I32, 0)), E_VALUE, b.sext(rc, U.I64), 0, 2)


def _many(ctx):
    return ctx.b.icmp_signed(">", _entry(ctx, "size"), U.i64(1))


class _Bucket:
    """One dtype's packed allreduce in flight: its request, receive buffer and outputs."""

    def __init__(self, ctx, dtype, send, count, parts, outs):
        b = ctx.b
        self.dtype, self.parts, self.outs = dtype, parts, outs
        self.recv = ctx.scratch(dtype, [count])
        self.request = ctx.local(U.I64, U.i64(0))
        self.status = ctx.local(ir.ArrayType(U.I8, STATUS_BYTES))
        self.flag = ctx.local(U.I32, ir.Constant(U.I32, 0))
        count = U.as_value(b, count)
        with b.if_else(_many(ctx)) as (then, otherwise):
            with then:
                # MPI counts are C ints
                ctx.fail_if(b.icmp_signed(">", count, U.i64(INT32_MAX)), E_VALUE, count, INT32_MAX, 1)
                handle = lambda name: b.inttoptr(_entry(ctx, name), U.PTR)  # noqa: E731
                rc = _call(ctx, "MPI_Iallreduce", IALLREDUCE_TYPE,
                           [send.ptr, self.recv.ptr, b.trunc(count, U.I32), handle(dtype), handle("sum"),
                            handle("comm"), self.request])
                _check(ctx, rc, "MPI_Iallreduce")
            with otherwise:
                copy(ctx, send, self.recv)

    def poll(self, ctx):
        b = ctx.b
        with b.if_then(_many(ctx)):
            _call(ctx, "MPI_Test", TEST_TYPE, [self.request, self.flag, self.status])

    def finish(self, ctx):
        b = ctx.b
        with b.if_then(_many(ctx)):
            _check(ctx, _call(ctx, "MPI_Wait", WAIT_TYPE, [self.request, self.status]), "MPI_Wait")
        for (off, shape), out in zip(self.parts, self.outs):
            copy(ctx, _flat_part(ctx, self.recv, off, shape), out)


class _InFlight:
    """A PSum node's buckets, finished together before the first reader of any output."""

    def __init__(self, node_index, outputs, buckets):
        self.node_index, self.outputs, self.buckets = node_index, set(outputs), buckets

    def poll(self, ctx):
        for bucket in self.buckets:
            bucket.poll(ctx)

    def finish(self, ctx):
        here, ctx.node_index = ctx.node_index, self.node_index  # errors name the PSum node
        for bucket in self.buckets:
            bucket.finish(ctx)
        ctx.node_index = here


def _psum_message(code, node, where, vals):
    if code != E_VALUE:
        return None
    return RuntimeError, (f"{where}: an MPI call (MPI_Iallreduce or MPI_Wait) failed with error code {vals[0]}"
                          if vals[2] == 2 else
                          f"{where}: {vals[0]} elements of one dtype exceed MPI's count limit of {vals[1]}")


@lower.register(PSum, error_message=_psum_message)
def lower_psum(ctx, node, inputs):
    b = ctx.b
    outs = [ctx.alloc(v, a.shape) for v, a in zip(node.outputs, inputs)]
    buckets = []
    # the same order of dtypes on every rank (and as the reference, PSum.perform)
    for dtype in sorted({a.dtype for a in inputs}, key=lambda d: np.dtype(d).str):
        group = [k for k, a in enumerate(inputs) if a.dtype == dtype]
        total, parts = 0, []
        for k in group:
            parts.append((total, inputs[k].shape))
            total = U.add(b, total, inputs[k].size(b))
        # Packed even for one contiguous input: that input's buffer may be reused by the
        # nodes that run while the collective is in flight.
        send = ctx.scratch(dtype, [total])
        for k, (off, shape) in zip(group, parts):
            copy(ctx, inputs[k], _flat_part(ctx, send, off, shape))
        buckets.append(_Bucket(ctx, dtype, send, total, parts, [outs[k] for k in group]))
    ctx.pending.append(_InFlight(ctx.node_index, node.outputs, buckets))
    return outs


def _flat_part(ctx, flat, offset, shape):
    """A contiguous view of `shape` starting at element `offset` of the 1-d buffer `flat`."""
    return Array(flat.dtype, flat.view_addr(ctx.b, offset), shape, b=ctx.b, bounds=flat.bounds)
