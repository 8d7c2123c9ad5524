"""Theano's old `theano.tensor.signal.downsample` module (replaced by `pool` in Theano 0.8)."""
from .pool import (AveragePoolGrad, DownsampleFactorMaxGradGrad, MaxPoolGrad, Pool,  # noqa: F401
                   max_pool_2d_same_size, pool_2d)

DownsampleFactorMax = Pool


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode="max"):
    """The old name of pool_2d: pool the last two dimensions of `input` with window `ds`,
    stride `st` (default ds) and zero `padding`; see `pool.pool_2d`."""
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding, mode=mode)
