"""Data-parallel training over MPI (mpi4py): the same script runs on one process or under
`mpirun -n N`, each rank on its own shard of every minibatch.

    rank(), size()               this process's place in COMM_WORLD (0 and 1 without mpirun)
    psum(x), pmean(x)            graph ops: sum / mean over the ranks (one allreduce for a list)
    broadcast(shared_vars, root) give every rank root's values
    shard(data, rank, size, batch_size=None)   this rank's part of the data

Without `mpirun` none of this needs mpi4py and the collectives are identities. Under
`mpirun` it needs mpi4py (`pip install 'symcnn[mpi]'`), and an exception that ends one rank
aborts the whole job (MPI_Abort) instead of leaving the others waiting.
"""
import numpy as np

from .comm import INSTALL_HINT, DistributedUnavailable, abort, launched_by_mpi, world  # noqa: F401
from .ops import PSum, psum  # noqa: F401

__all__ = ["rank", "size", "psum", "pmean", "broadcast", "broadcast_object", "shard", "shard_bounds",
           "barrier", "abort", "PSum", "INSTALL_HINT", "DistributedUnavailable"]


def rank():
    comm = world()
    return 0 if comm is None else comm.Get_rank()


def size():
    comm = world()
    return 1 if comm is None else comm.Get_size()


def pmean(*xs):
    """The mean over all ranks (psum / size()); its gradient is pmean of the output's gradient."""
    outs = psum(*xs)
    n = size()
    if isinstance(outs, list):
        return [o / np.asarray(n, dtype=o.dtype) if o.dtype.startswith("float") else o // n for o in outs]
    return outs / np.asarray(n, dtype=outs.dtype) if outs.dtype.startswith("float") else outs // n


def broadcast(shared_vars, root=0):
    """Give every rank root's values of the shared variables (e.g. the initial parameters)."""
    comm = world()
    shared_vars = list(shared_vars)
    if comm is None or comm.Get_size() == 1:
        return shared_vars
    for v in shared_vars:
        value = np.ascontiguousarray(v.get_value(borrow=True))
        shapes = comm.bcast((value.shape, value.dtype.str), root=root)
        if shapes != (value.shape, value.dtype.str):
            raise ValueError(f"broadcast: {v} is {value.dtype.str}{value.shape} on rank {comm.Get_rank()} but "
                             f"{shapes[1]}{shapes[0]} on rank {root}")
        value = value.copy()
        comm.Bcast(value, root=root)
        v.set_value(value, borrow=True)
    return shared_vars


def broadcast_object(obj, root=0):
    """root's picklable Python object on every rank."""
    comm = world()
    return obj if comm is None or comm.Get_size() == 1 else comm.bcast(obj, root=root)


def barrier():
    comm = world()
    if comm is not None:
        comm.Barrier()


def shard_bounds(n, rank, size):
    """[start, stop) of rank's part of n items: parts differ in length by at most one."""
    if not 0 <= rank < size:
        raise ValueError(f"shard: rank={rank} is not in [0, size={size})")
    return n * rank // size, n * (rank + 1) // size


def shard(dataset, rank, size, batch_size=None):
    """rank's part of `dataset` (an array, a shared variable, or a tuple/list of them split
    alike along axis 0).

    Without batch_size: a contiguous 1/size of the rows. With batch_size: rank's part of
    every minibatch of batch_size rows, gathered so that minibatch i of the result (of
    shard_bounds(batch_size, rank, size) length) is rank's part of global minibatch i;
    a trailing partial minibatch is dropped, as the tutorial's n_batches = n // batch_size does."""
    if isinstance(dataset, (tuple, list)):
        return type(dataset)(shard(d, rank, size, batch_size) for d in dataset)
    from ..compile.shared import SharedVariable, shared
    from ..graph.basic import Variable
    owner = getattr(dataset, "owner", None)
    if (isinstance(dataset, Variable) and not isinstance(dataset, SharedVariable) and owner is not None
            and len(owner.inputs) == 1 and isinstance(owner.inputs[0], SharedVariable)):
        # e.g. load_data's labels, T.cast(shared_y, 'int32'): shard the storage, apply the op again
        return owner.op(shard(owner.inputs[0], rank, size, batch_size))
    is_shared = isinstance(dataset, SharedVariable)
    value = dataset.get_value(borrow=True) if is_shared else np.asarray(dataset)
    if batch_size is None:
        lo, hi = shard_bounds(len(value), rank, size)
        part = value[lo:hi]
    else:
        lo, hi = shard_bounds(batch_size, rank, size)
        n_batches = len(value) // batch_size
        blocks = value[:n_batches * batch_size].reshape((n_batches, batch_size) + value.shape[1:])
        part = np.ascontiguousarray(blocks[:, lo:hi]).reshape((n_batches * (hi - lo),) + value.shape[1:])
    if is_shared:
        return shared(np.ascontiguousarray(part), name=dataset.name, borrow=True)
    return part
