"""symcnn.tensor.signal: pooling (Theano's `theano.tensor.signal`)."""
from . import pool  # noqa: F401
from . import downsample  # noqa: F401
