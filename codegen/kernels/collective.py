"""Collectives in native code: PSum calls MPI_Allreduce from the compiled function itself.

The MPI entry point and handles (communicator, MPI_SUM, datatypes) are read at run time
from `symcnn_mpi_table`, an external symbol resolved to symcnn.distributed.comm.TABLE: they
are addresses of this process, so they are never baked into machine code that the disk
cache may hand to another process. A table of size <= 1 (no mpirun) makes the collective a
copy, so one compiled function serves a single process and every rank.

Each dtype of a node's inputs is packed into one send buffer and reduced by one call (a
gradient bucket), then unpacked into the outputs.
"""
import ctypes

import numpy as np

import llvmlite.binding as llvm
from llvmlite import ir

from symcnn.distributed.comm import NATIVE_DTYPES, TABLE
from symcnn.distributed.ops import PSum

from .. import irutil as U
from ..lower import E_VALUE, copy, lower

TABLE_SYMBOL = "symcnn_mpi_table"
INT32_MAX = 2 ** 31 - 1
# int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype, MPI_Op, MPI_Comm).
# Handles are passed pointer-sized: Open MPI's are pointers (MPICH's ints travel in the low
# half of the same argument register on x86-64 and AArch64).
ALLREDUCE_TYPE = ir.FunctionType(U.I32, [U.PTR, U.PTR, U.I32, U.PTR, U.PTR, U.PTR])

llvm.add_symbol(TABLE_SYMBOL, ctypes.addressof(TABLE))


def _table(ctx):
    g = ctx.module.globals.get(TABLE_SYMBOL)
    if g is None:
        g = ir.GlobalVariable(ctx.module, ir.ArrayType(U.I64, len(TABLE)), name=TABLE_SYMBOL)
    return g


def _entry(ctx, k):
    b = ctx.b
    return b.load(b.gep(_table(ctx), [U.i64(0), U.i64(k)], source_etype=ir.ArrayType(U.I64, len(TABLE))),
                  typ=U.I64)


def _allreduce(ctx, dtype, send, recv, count):
    """recv[:count] = sum over ranks of send[:count] (a copy when there is one rank)."""
    b = ctx.b
    count = U.as_value(b, count)
    nbytes = b.mul(count, U.i64(U.itemsize(dtype)))
    many = b.icmp_signed(">", _entry(ctx, 0), U.i64(1))
    with b.if_else(many) as (then, otherwise):
        with then:
            # MPI counts are C ints
            ctx.fail_if(b.icmp_signed(">", count, U.i64(INT32_MAX)), E_VALUE, count, INT32_MAX, 1)
            fn = b.inttoptr(_entry(ctx, 1), ALLREDUCE_TYPE.as_pointer())
            handle = lambda k: b.inttoptr(_entry(ctx, k), U.PTR)  # noqa: E731
            rc = b.call(fn, [send, recv, b.trunc(count, U.I32), handle(4 + NATIVE_DTYPES.index(dtype)),
                             handle(3), handle(2)])
            ctx.fail_if(b.icmp_signed("!=", rc, ir.Constant(U.I32, 0)), E_VALUE, b.sext(rc, U.I64), 0, 2)
        with otherwise:
            memcpy = U.declare(ctx.module, "llvm.memcpy.p0.p0.i64", ir.VoidType(), [U.PTR, U.PTR, U.I64, U.I1])
            b.call(memcpy, [recv, send, nbytes, ir.Constant(U.I1, 0)])


@lower.register(PSum)
def lower_psum(ctx, node, inputs):
    b = ctx.b
    outs = [None] * len(inputs)
    for dtype in sorted({a.dtype for a in inputs}, key=lambda d: np.dtype(d).str):
        group = [k for k, a in enumerate(inputs) if a.dtype == dtype]
        sizes = [inputs[k].size(b) for k in group]
        total = 0
        for n in sizes:
            total = U.add(b, total, n)
        if len(group) == 1 and inputs[group[0]].contiguous:
            send = inputs[group[0]]
        else:  # pack the bucket
            send = ctx.scratch(dtype, [total])
            off = 0
            for k, n in zip(group, sizes):
                part = _flat_part(ctx, send, off, inputs[k].shape)
                copy(ctx, inputs[k], part)
                off = U.add(b, off, n)
        if len(group) == 1:
            k = group[0]
            outs[k] = ctx.alloc(node.outputs[k], inputs[k].shape)
            _allreduce(ctx, dtype, send.ptr, outs[k].ptr, total)
            continue
        recv = ctx.scratch(dtype, [total])
        _allreduce(ctx, dtype, send.ptr, recv.ptr, total)
        off = 0
        for k, n in zip(group, sizes):
            outs[k] = ctx.alloc(node.outputs[k], inputs[k].shape)
            copy(ctx, _flat_part(ctx, recv, off, inputs[k].shape), outs[k])
            off = U.add(b, off, n)
    return outs


def _flat_part(ctx, flat, offset, shape):
    """A contiguous view of `shape` starting at element `offset` of the 1-d buffer `flat`."""
    from ..lower import Array
    return Array(flat.dtype, flat.view_addr(ctx.b, offset), shape, b=ctx.b, bounds=flat.bounds)
