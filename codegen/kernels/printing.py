"""Print: the native code calls back into Python with the value, which Print's global_fn prints.

The callback is a C function pointer made with ctypes and registered with LLVM as the symbol
`symcnn_print_callback`, so JIT-loaded code can call it. It receives the op's index in a
process-local table, the dtype, a pointer to the (contiguous) data and the shape. A function
containing a Print is never written to the compile cache: its global_fn is a Python function,
which the cache key cannot describe (codegen/build.py treats it as uncacheable).
"""
import ctypes
import threading

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir

from symcnn.print_op import Print

from .. import irutil as U
from ..lower import Array, copy, lower

_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
_ops = []
_lock = threading.Lock()

_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                          ctypes.c_int64)


def _callback(op_index, dtype_index, data, shape_ptr, ndim):
    op = _ops[op_index]
    shape = tuple(shape_ptr[d] for d in range(ndim))
    dt = np.dtype(_DTYPES[dtype_index])
    n = int(np.prod(shape)) if shape else 1
    if n == 0 or not data:
        value = np.empty(shape, dtype=dt)
    else:
        buf = (ctypes.c_char * (n * dt.itemsize)).from_address(data)
        value = np.frombuffer(buf, dtype=dt, count=n).reshape(shape).copy()
    try:
        op.global_fn(op, value)
    except Exception as e:  # an exception cannot cross the native frames: report it and go on
        import sys
        print(f"symcnn: Print{{{op.message}}}: global_fn raised {type(e).__name__}: {e}", file=sys.stderr)


_c_callback = _PROTO(_callback)  # kept alive for the life of the process
llvm.add_symbol("symcnn_print_callback", ctypes.cast(_c_callback, ctypes.c_void_p).value)


def _register(op):
    with _lock:
        _ops.append(op)
        return len(_ops) - 1


def _as_view(node, contig):
    return True, contig[0]


@lower.register(Print, view=_as_view)
def lower_print(ctx, node, ins):
    b = ctx.b
    x, = ins
    dense = x
    if not x.contiguous:
        dense = ctx.scratch(x.dtype, x.shape)
        copy(ctx, x, dense)
    fn = U.declare(ctx.module, "symcnn_print_callback", ir.VoidType(), [U.I64, U.I64, U.PTR, U.PTR, U.I64])
    shape = ctx.scratch("int64", [max(x.ndim, 1)])
    for d, dim in enumerate(x.shape):
        b.store(U.as_value(b, dim), shape.flat_addr(b, d))
    shape_ptr = shape.ptr
    b.call(fn, [U.i64(_register(node.op)), U.i64(_DTYPES.index(x.dtype)), dense.ptr, shape_ptr, U.i64(x.ndim)])
    return [Array(x.dtype, x.ptr, x.shape, x.strides if not x.contiguous else None, b=b)]
