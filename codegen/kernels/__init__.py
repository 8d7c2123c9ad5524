"""Native lowerings, one module per family of ops (importing registers them)."""
from . import elemwise, shape, reduce, dot, subtensor, nnet, conv, pool, pool_runtime, convpool, random  # noqa: F401
from . import gradient_ops, join, scalar_extra, ifelse, printing, index_map, scan, collective, sort  # noqa: F401
from . import conv_forward, conv_grad, phases, sum_of_elemwise  # noqa: F401
