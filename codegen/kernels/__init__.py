"""Native lowerings, one module per family of ops (importing registers them)."""
from . import elemwise, shape, reduce, dot, subtensor, nnet, conv, pool, convpool, random  # noqa: F401
from . import collective  # noqa: F401
