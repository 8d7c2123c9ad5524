"""PSum: the sum of each input over all ranks (MPI_Allreduce), as a graph op.

One node may take several tensors: they are packed into one buffer and reduced by one
allreduce (Horovod's tensor fusion, DDP's gradient bucket), so a training step's gradients
cost one collective, not one per parameter.

The gradient is JAX's: psum is linear and its transpose is psum again (jax.lax's
_psum_transpose_rule: "we treat psum as psum + pbroadcast, which is why the transpose
reduces over the named axes again"). So the gradient of psum(x) with respect to x is
psum of the output's gradient, and that of pmean(x) = psum(x) / size() is pmean of it.
"""
import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from ..tensor.basic import zeros_like
from ..tensor.var import as_tensor_variable
from . import comm as C

REDUCIBLE = C.NATIVE_DTYPES


class PSum(Op):
    """psum over the ranks of COMM_WORLD of n tensors (outputs: same types as the inputs)."""

    __props__ = ()
    # Not folded at compile time even for constant inputs: a collective must run when every
    # rank runs the function.
    collective = True

    def make_node(self, *xs):
        if not xs:
            raise TypeError("psum: needs at least one tensor")
        xs = [as_tensor_variable(x) for x in xs]
        for k, x in enumerate(xs):
            if x.dtype not in REDUCIBLE:
                raise TypeError(f"psum: input {k} ({x.describe()}) has dtype {x.dtype}; the collectives "
                                f"reduce {', '.join(REDUCIBLE)} (cast it first)")
        C.world()  # open the communicator before any function that needs it is compiled
        return Apply(self, xs, [x.type() for x in xs])

    def perform(self, node, inputs, out):
        comm = C.world()
        arrays = [np.asarray(x, dtype=v.dtype) for x, v in zip(inputs, node.inputs)]
        if comm is None or comm.Get_size() == 1:
            for cell, a in zip(out, arrays):
                cell[0] = a.copy()
            return
        # The same one-buffer-per-dtype packing as the native lowering.
        for dtype in sorted({a.dtype.str for a in arrays}):
            group = [k for k, a in enumerate(arrays) if a.dtype.str == dtype]
            send = np.concatenate([arrays[k].ravel() for k in group]) if group else None
            recv = np.empty_like(send)
            comm.Allreduce(send, recv)
            off = 0
            for k in group:
                n = arrays[k].size
                out[k][0] = recv[off:off + n].reshape(arrays[k].shape)
                off += n

    def infer_shape(self, node, shapes):
        return list(shapes)

    def grad(self, inputs, grads):
        grads = [zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        outs = psum(*grads)
        return outs if isinstance(outs, list) else [outs]


def psum(*xs):
    """The sum over all ranks: psum(x) -> tensor, psum(x, y, ...) or psum([x, y, ...]) -> list,
    reduced in one collective."""
    as_list = len(xs) == 1 and isinstance(xs[0], (list, tuple))
    if as_list:
        xs = tuple(xs[0])
    outs = PSum()(*xs)
    outs = outs if isinstance(outs, list) else [outs]
    return outs if (as_list or len(xs) > 1) else outs[0]
