"""Window geometry of 2-d pooling, shared by the pooling ops (pool.py, pool_runtime.py,
nnet/convpool.py) and the native backend's pooling kernels: argument
normalisation (ws, stride, pad as pairs of ints), the pooled length of an axis, and where the
windows fall in padded coordinates for the numpy kernels.

Rows (and likewise columns) of the input padded by `pad` on both sides are split into windows
starting every `stride` rows, each `ws` rows long:
  ignore_border=True:  n_out = max(0, (rows + 2 * pad - ws) // stride + 1)
  ignore_border=False: n_out = (rows - 1) // stride + 1                    if stride >= ws
                               max(0, (rows - 1 - ws + stride) // stride) + 1  otherwise (0 if rows == 0)
"""
import builtins

import numpy as np

from ...graph.basic import Constant, Variable
from ..shape_arith import SCALAR, int_pair

__all__ = ["KnownOnlyAtRunTime", "known_when_building", "pair", "out_len", "fmt_shape", "WindowGeometry"]


class KnownOnlyAtRunTime(NotImplementedError):
    """A window geometry the static-geometry ops cannot take (pool_2d handles it)."""


_RUNTIME_HINT = ("these pooling ops are specialised on a window geometry known when building the graph; "
                 "pool_2d accepts one known only at run time (it builds RuntimePool)")


def known_when_building(value, what):
    """A symbolic ws/stride/pad (a vector, or a tuple holding scalars) as Python ints, when its
    value is known while building the graph (a constant or computed from constants, static
    shapes included). The kernels of these ops are specialised on the window geometry, so a
    value known only at run time is refused here: pool_2d then builds the ops of
    pool_runtime.py, which take the geometry as inputs."""
    from ..scalar_constant import NotScalarConstantError, get_scalar_constant_value
    items = list(value) if isinstance(value, Variable) and value.ndim == 1 and value.type.shape[0] is not None \
        else value if isinstance(value, (list, tuple)) else None
    if items is None:
        if isinstance(value, Variable) and value.ndim == 1:
            raise KnownOnlyAtRunTime(f"{what} is the symbolic vector {value.describe()} whose values are only "
                                     f"known at run time: {_RUNTIME_HINT}")
        raise TypeError(f"{what} must be a pair of ints (rows, cols); got the symbolic {value.describe()}")
    out = []
    for v in items:
        if not isinstance(v, Variable):
            out.append(v)
            continue
        try:
            out.append(get_scalar_constant_value(v).item())
        except NotScalarConstantError:
            raise KnownOnlyAtRunTime(f"{what} is symbolic and its value ({v.describe()}) is only known at run "
                                     f"time: {_RUNTIME_HINT}") from None
    return out


def pair(value, what, minimum):
    if isinstance(value, Constant):
        value = value.data.tolist()
    if isinstance(value, Variable) or (isinstance(value, (list, tuple))
                                       and any(isinstance(v, Variable) for v in value)):
        value = known_when_building(value, what)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a pair of ints (rows, cols), got the single int {value!r}")
    return int_pair(value, what, minimum, "a pair of ints (rows, cols)")


def out_len(n, ws, st, pad, ignore_border, arith=SCALAR):
    """Output length along one axis. n may be an int, None or a symbolic int64 scalar, and
    ws, st, pad ints or (RuntimePool) symbolic int64 scalars; the native kernels pass their IR
    values with an `arith` of theirs (see symcnn/tensor/shape_arith.py)."""
    if n is None:
        return None
    A = arith
    if ignore_border:
        return A.max0(A.add(A.floordiv(A.sub(A.add(n, A.mul(2, pad)), ws), st), 1))

    def wide():   # stride >= ws: a window starts at every stride step inside the image
        return A.add(A.floordiv(A.sub(n, 1), st), 1)

    def full():   # stride < ws: the last window starts within ws - stride of the end
        return A.add(A.max0(A.floordiv(A.sub(A.sub(n, 1), A.sub(ws, st)), st)), 1)

    if isinstance(st, int) and isinstance(ws, int):
        return wide() if st >= ws else A.if_positive(n, full())
    return A.if_positive(n, A.select_ge(st, ws, wide(), full()))


def fmt_shape(shape):
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


class WindowGeometry:
    """Where the windows of a (rows, cols) image fall in padded coordinates."""

    def __init__(self, h, w, ws, st, pad, ignore_border):
        self.h, self.w, self.ws, self.st, self.pad = h, w, ws, st, pad
        self.nr = out_len(h, ws[0], st[0], pad[0], ignore_border)
        self.nc = out_len(w, ws[1], st[1], pad[1], ignore_border)
        # padded extent: the image plus padding, extended if partial windows run past it
        self.hp = builtins.max(h + 2 * pad[0], (self.nr - 1) * st[0] + ws[0] if self.nr else 0)
        self.wp = builtins.max(w + 2 * pad[1], (self.nc - 1) * st[1] + ws[1] if self.nc else 0)
        self.empty = self.nr == 0 or self.nc == 0
        self.overlap = st[0] < ws[0] or st[1] < ws[1]

    def padded(self, x, fill):
        """x (N, h, w) placed in an (N, hp, wp) array filled with `fill`."""
        ph, pw = self.pad
        if (self.hp, self.wp) == (self.h, self.w):
            return x
        xp = np.full((x.shape[0], self.hp, self.wp), fill, dtype=x.dtype)
        xp[:, ph:ph + self.h, pw:pw + self.w] = x
        return xp

    def crop(self, xp):
        ph, pw = self.pad
        return xp[:, ph:ph + self.h, pw:pw + self.w]

    def offsets(self):
        """One index per offset (u, v) inside the window: it selects, for every window, the
        element at that offset -- an (N, nr, nc) strided view of a padded array."""
        (sh, sw), (nr, nc) = self.st, (self.nr, self.nc)
        for u in range(self.ws[0]):
            for v in range(self.ws[1]):
                yield (slice(None), slice(u, u + sh * (nr - 1) + 1, sh), slice(v, v + sw * (nc - 1) + 1, sw))

    def divisor(self, mode, ignore_border, dtype):
        """Per-window divisor for the average modes, broadcastable to (N, nr, nc)."""
        if mode == "average_inc_pad" and ignore_border:
            return np.asarray(self.ws[0] * self.ws[1], dtype=dtype)
        (ph, pw), (sh, sw) = self.pad, self.st
        r0 = np.arange(self.nr) * sh
        c0 = np.arange(self.nc) * sw
        cnt_r = np.minimum(r0 + self.ws[0], ph + self.h) - np.maximum(r0, ph)
        cnt_c = np.minimum(c0 + self.ws[1], pw + self.w) - np.maximum(c0, pw)
        return np.outer(cnt_r, cnt_c).astype(dtype)
