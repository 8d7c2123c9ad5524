"""Pooling whose window size, stride and padding are symbolic values known only at run
time (Theano's Pool takes them as inputs: make_node(x, ws, stride, pad)).

Ops (ws, stride and pad are int64 vectors of length 2, the op's last three inputs):
  RuntimePool(ignore_border, mode)                 (x, ws, stride, pad) -> pooled
  RuntimeMaxPoolGrad(ignore_border)                (x, maxout, gz, ws, stride, pad) -> gx
  RuntimeAveragePoolGrad(ignore_border, mode)      (x, gz, ws, stride, pad) -> gx
  RuntimeMaxPoolGradGrad(ignore_border)            (x, maxout, ggx, ws, stride, pad) -> ggz

Window geometry, modes and tie rule are those of pool.py (which pool_2d uses when the
geometry is known while building: its kernels are specialised on it). The values are
checked when the function runs, as Theano checks them: ws >= 1, stride >= 1,
0 <= pad < ws, and pad = 0 unless ignore_border. Each is also at most MAX_GEOMETRY so
the native kernels' index arithmetic cannot overflow.
"""
import numpy as np

from ...graph.basic import Apply, Variable
from ...graph.op import Op
from ..type import TensorType, is_float
from ..var import as_tensor_variable
from .pool import (MODES, average_pool_grad_reference, flat_images, max_pool_grad_grad_reference,
                   max_pool_grad_reference, pool_reference)
from .pool_geometry import WindowGeometry, out_len

__all__ = ["RuntimePool", "RuntimeMaxPoolGrad", "RuntimeAveragePoolGrad", "RuntimeMaxPoolGradGrad",
           "geometry_vector", "MAX_GEOMETRY"]

MAX_GEOMETRY = 2 ** 31 - 1
_ROLES = ("ws (the pooling window size)", "stride", "pad")


def geometry_vector(value, what):
    """ws / stride / pad as a symbolic int64 vector of length 2 (a vector, or a pair whose
    entries may be ints or symbolic int scalars)."""
    from ..basic import cast
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise TypeError(f"{what} must be a pair (rows, cols), got {len(value)} entries: {value!r}")
        for v in value:
            if isinstance(v, Variable) and (v.ndim != 0 or not v.dtype.startswith(("int", "uint"))):
                raise TypeError(f"{what} entries must be int scalars, got {v.describe()}")
    v = as_tensor_variable(value)
    if v.ndim != 1 or not v.dtype.startswith(("int", "uint")):
        raise TypeError(f"{what} must be an int vector of length 2 (rows, cols), got {v.describe()}")
    if v.type.shape[0] not in (None, 2):
        raise TypeError(f"{what} must have length 2 (rows, cols), got {v.describe()}")
    return v if v.dtype == "int64" else cast(v, "int64")


def _check_geometry(op, node, ws, stride, pad):
    """The run-time values as pairs of ints, after Theano's checks."""
    pairs = []
    for var, val, role in zip(node.inputs[-3:], (ws, stride, pad), _ROLES):
        if val.shape != (2,):
            raise ValueError(f"{op}: {role} {var.describe()} must hold 2 values (rows, cols) at run time, "
                             f"got shape {val.shape}")
        pairs.append(tuple(int(v) for v in val))
    ws, stride, pad = pairs
    for pair, role, low in ((ws, _ROLES[0], 1), (stride, _ROLES[1], 1), (pad, _ROLES[2], 0)):
        if any(v < low or v > MAX_GEOMETRY for v in pair):
            raise ValueError(f"{op}: {role} is {pair} at run time; each entry must be between {low} and "
                             f"{MAX_GEOMETRY}")
    if pad != (0, 0) and not op.ignore_border:
        raise ValueError(f"{op}: pad is {pad} at run time; padding works only with ignore_border=True")
    if pad[0] >= ws[0] or pad[1] >= ws[1]:
        raise ValueError(f"{op}: pad {pad} must be smaller than the window size ws={ws} in each dimension "
                         f"(values at run time)")
    return ws, stride, pad


class _RuntimePoolBase(Op):
    __props__ = ("ignore_border", "mode")
    n_data = 1  # inputs before ws, stride, pad

    def __init__(self, ignore_border=False, mode="max"):
        if not isinstance(ignore_border, (bool, np.bool_)):
            raise TypeError(f"ignore_border must be True or False, got {ignore_border!r}")
        if mode not in MODES:
            raise ValueError(f"pooling mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        self.ignore_border = bool(ignore_border)
        self.mode = mode

    def __str__(self):
        return f"{type(self).__name__}{{ignore_border={self.ignore_border}, mode={self.mode!r}}}"

    __repr__ = __str__

    def _data_and_geometry(self, data, ws, stride, pad):
        x = as_tensor_variable(data[0])
        if x.ndim < 2:
            raise TypeError(f"{self}: the input must have at least 2 dimensions (pooling is over the last two), "
                            f"got {x.describe()}")
        ws = geometry_vector(ws, _ROLES[0])
        stride = ws if stride is None else geometry_vector(stride, _ROLES[1])
        pad = geometry_vector((0, 0) if pad is None else pad, _ROLES[2])
        return [x] + [as_tensor_variable(d) for d in data[1:]], [ws, stride, pad]

    def _pooled_type_shape(self, x):
        return tuple(x.type.shape[:-2]) + (None, None)

    def _pooled_shape(self, shape, geometry):
        ws, st, pad = geometry
        return tuple(shape[:-2]) + tuple(out_len(shape[-2 + i], ws[i], st[i], pad[i], self.ignore_border)
                                         for i in range(2))

    def _geom(self, node, inputs):
        x = inputs[0]
        ws, st, pad = _check_geometry(self, node, *inputs[-3:])
        return WindowGeometry(x.shape[-2], x.shape[-1], ws, st, pad, self.ignore_border)

    def _check_runtime(self, node, values, g, roles):
        x = values[0]
        pooled = tuple(x.shape[:-2]) + (g.nr, g.nc)
        for var, val, (role, kind) in zip(node.inputs, values, roles):
            want = pooled if kind == "pooled" else tuple(x.shape)
            if val.ndim != var.ndim or tuple(val.shape) != want:
                raise ValueError(f"{self}: the {role} {var.describe()} has shape {tuple(val.shape)} at run time, "
                                 f"expected {want} (pooling the input {node.inputs[0].describe()} of shape "
                                 f"{tuple(x.shape)} with the run-time ws/stride/pad gives {pooled})")

    def _check_float(self, v, role):
        if not is_float(v.dtype):
            raise TypeError(f"{self}: the {role} must be float, got {v.describe()}")

    def connection_pattern(self, node):
        return [[True]] * self.n_data + [[False]] * 3


class RuntimePool(_RuntimePoolBase):
    """Pool the last two dimensions of x with run-time ws, stride and pad."""

    def make_node(self, x, ws, stride=None, pad=None):
        (x,), geometry = self._data_and_geometry([x], ws, stride, pad)
        out = TensorType(x.dtype, shape=self._pooled_type_shape(x))()
        return Apply(self, [x] + geometry, [out])

    def perform(self, node, inputs, out):
        x = inputs[0]
        g = self._geom(node, inputs)
        res = pool_reference(flat_images(x), g, self.mode, self.ignore_border, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape[:-2] + (g.nr, g.nc))

    def infer_shape(self, node, shapes):
        return [self._pooled_shape(shapes[0], node.inputs[1:])]

    def grad(self, inputs, grads):
        x, ws, stride, pad = inputs
        gz, = grads
        if not is_float(x.dtype):
            return [None] * 4
        if self.mode == "max":
            gx = RuntimeMaxPoolGrad(self.ignore_border)(x, self(x, ws, stride, pad), gz, ws, stride, pad)
        else:
            gx = RuntimeAveragePoolGrad(self.ignore_border, self.mode)(x, gz, ws, stride, pad)
        return [gx, None, None, None]


class _RuntimeMaxPoolTieGrad(_RuntimePoolBase):
    """RuntimeMaxPoolGrad and RuntimeMaxPoolGradGrad: (x, maxout, g, ws, stride, pad), pool.py's
    MaxPoolGrad and MaxPoolGradGrad with the window geometry as inputs."""

    __props__ = ("ignore_border",)
    n_data = 3

    _g_role = None       # how errors name the gradient input g
    _g_kind = None       # "pooled" (g has the pooled shape, the result the input's) or "input" (the reverse)
    _reference = None    # the numpy kernel

    def __init__(self, ignore_border=False, mode="max"):
        if mode != "max":
            raise ValueError(f"{type(self).__name__} is for mode='max', got {mode!r}")
        super().__init__(ignore_border, "max")

    def _make_node(self, x, maxout, g, ws, stride, pad):
        (x, maxout, g), geometry = self._data_and_geometry([x, maxout, g], ws, stride, pad)
        self._check_float(g, self._g_role)
        if maxout.dtype != x.dtype or maxout.ndim != x.ndim or g.ndim != x.ndim:
            raise TypeError(f"{self}: the pooled output {maxout.describe()} and {self._g_role} {g.describe()} "
                            f"must have the input's dtype and ndim ({x.describe()})")
        if self._g_kind == "pooled":
            out = TensorType(x.dtype, shape=x.type.shape)()
        else:
            out = TensorType(g.dtype, shape=self._pooled_type_shape(x))()
        return Apply(self, [x, maxout, g] + geometry, [out])

    def perform(self, node, inputs, out):
        x, z, gin = inputs[:3]
        g = self._geom(node, inputs)
        self._check_runtime(node, inputs[:3], g, [("input", "x"), ("pooled output", "pooled"),
                                                  (self._g_role, self._g_kind)])
        res = self._reference(flat_images(x), flat_images(z), flat_images(gin), g, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape if self._g_kind == "pooled" else x.shape[:-2] + (g.nr, g.nc))

    def infer_shape(self, node, shapes):
        return [shapes[0] if self._g_kind == "pooled" else self._pooled_shape(shapes[0], node.inputs[3:])]

    def grad(self, inputs, grads):
        from ..basic import cast, zeros_like
        x, maxout, g, ws, stride, pad = inputs
        gout, = grads
        transpose = RuntimeMaxPoolGradGrad if self._g_kind == "pooled" else RuntimeMaxPoolGrad
        gg = transpose(self.ignore_border)(x, maxout, gout, ws, stride, pad)
        if gg.dtype != g.dtype:
            gg = cast(gg, g.dtype)
        return [zeros_like(x), zeros_like(maxout), gg, None, None, None]


class RuntimeMaxPoolGrad(_RuntimeMaxPoolTieGrad):
    """(x, maxout, gz, ws, stride, pad) -> gx: each window's gradient goes to every element
    equal to its maximum."""

    _g_role = "output gradient"
    _g_kind = "pooled"
    _reference = staticmethod(max_pool_grad_reference)

    def make_node(self, x, maxout, gz, ws, stride=None, pad=None):
        return self._make_node(x, maxout, gz, ws, stride, pad)


class RuntimeMaxPoolGradGrad(_RuntimeMaxPoolTieGrad):
    """(x, maxout, ggx, ws, stride, pad) -> ggz: the gradient of RuntimeMaxPoolGrad with
    respect to gz (each window sums ggx over the elements equal to its maximum)."""

    _reference = staticmethod(max_pool_grad_grad_reference)
    _g_kind = "input"
    _g_role = "incoming gradient"

    def make_node(self, x, maxout, ggx, ws, stride=None, pad=None):
        return self._make_node(x, maxout, ggx, ws, stride, pad)


class RuntimeAveragePoolGrad(_RuntimePoolBase):
    """(x, gz, ws, stride, pad) -> gx for the 'sum' and average modes (x gives the shape)."""

    n_data = 2

    def __init__(self, ignore_border=False, mode="average_inc_pad"):
        if mode == "max":
            raise ValueError("RuntimeAveragePoolGrad is for the 'sum' and average modes; use RuntimeMaxPoolGrad")
        super().__init__(ignore_border, mode)

    def make_node(self, x, gz, ws, stride=None, pad=None):
        (x, gz), geometry = self._data_and_geometry([x, gz], ws, stride, pad)
        self._check_float(gz, "output gradient")
        if gz.ndim != x.ndim:
            raise TypeError(f"{self}: the output gradient {gz.describe()} must have the input's ndim "
                            f"({x.describe()})")
        dtype = x.dtype if is_float(x.dtype) else gz.dtype
        return Apply(self, [x, gz] + geometry, [TensorType(dtype, shape=x.type.shape)()])

    def perform(self, node, inputs, out):
        x, gz = inputs[:2]
        g = self._geom(node, inputs)
        self._check_runtime(node, inputs[:2], g, [("input", "x"), ("output gradient", "pooled")])
        res = average_pool_grad_reference(flat_images(gz), g, self.mode, self.ignore_border, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, grads):
        from ..basic import cast, zeros_like
        x, gz, ws, stride, pad = inputs
        ggx, = grads
        ggz = RuntimePool(self.ignore_border, self.mode)(ggx, ws, stride, pad)
        if ggz.dtype != gz.dtype:
            ggz = cast(ggz, gz.dtype)
        return [zeros_like(x), ggz, None, None, None]
