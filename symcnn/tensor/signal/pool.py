"""2-d pooling over the last two dimensions, with Theano 1.0 semantics
(`theano.tensor.signal.pool`).

Ops:
  Pool(ws, ignore_border, stride, pad, mode)        x -> pooled
  MaxPoolGrad(ws, ignore_border, stride, pad)        (x, maxout, gz) -> gx
  AveragePoolGrad(ws, ignore_border, stride, pad, mode)  (x, gz) -> gx   (sum / average modes)
  MaxPoolGradGrad(ws, ignore_border, stride, pad)    (x, maxout, ggx) -> ggz
      (Theano's DownsampleFactorMaxGradGrad: the gradient of MaxPoolGrad w.r.t. gz)

Window geometry. Rows (and likewise columns) of the input padded by `pad` on both
sides are split into windows starting every `stride` rows, each `ws` rows long:
  ignore_border=True:  n_out = max(0, (rows + 2 * pad - ws) // stride + 1)
  ignore_border=False: n_out = (rows - 1) // stride + 1                    if stride >= ws
                               max(0, (rows - 1 - ws + stride) // stride) + 1  otherwise
                       (partial windows at the bottom/right border are kept; pad must be 0)
Modes: 'max' (padding never wins), 'sum', 'average_inc_pad' (divide by ws[0] * ws[1],
padding counted as zeros; partial border windows divide by their size), and
'average_exc_pad' (divide by the number of non-padding elements in the window).
Max pooling sends the gradient to every element equal to its window's maximum
(Theano's CPU rule for ties).
"""
import weakref
import warnings

import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..type import TensorType, is_float
from ..var import as_tensor_variable
from .pool_geometry import KnownOnlyAtRunTime, WindowGeometry, fmt_shape, out_len, pair

__all__ = ["pool_2d", "Pool", "MaxPoolGrad", "AveragePoolGrad", "MaxPoolGradGrad", "DownsampleFactorMaxGradGrad",
           "PoolGrad", "max_pool_2d_same_size", "KnownOnlyAtRunTime"]

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")

# Value used when pool_2d(ignore_border=None): Theano 1.0's, with its warning, so ported
# code gets Theano's output sizes.
DEFAULT_IGNORE_BORDER = False


# ----------------------------------------------------------------------------------------------
# numpy kernels. x is viewed as (N, rows, cols).


def _weakrefable(v):
    try:
        weakref.ref(v)
        return True
    except TypeError:
        return False


def _lowest(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind == "b":
        return False
    return np.iinfo(dtype).min


def flat_images(x):
    return x.reshape((int(np.prod(x.shape[:-2], dtype=np.int64)),) + x.shape[-2:])


def pool_reference(x, g, mode, ignore_border, out_dtype):
    n = x.shape[0]
    if g.empty:
        return np.zeros((n, g.nr, g.nc), dtype=out_dtype)
    fill = _lowest(x.dtype) if mode == "max" else 0
    xp = g.padded(x, fill)
    # one vectorised elementwise step per window offset: ws[0] * ws[1] passes over the output
    offsets = g.offsets()
    if mode == "max":
        acc = np.array(xp[next(offsets)], dtype=x.dtype)
        for idx in offsets:
            np.maximum(acc, xp[idx], out=acc)
        return acc.astype(out_dtype, copy=False)
    acc_dtype = out_dtype if is_float(str(np.dtype(out_dtype))) or mode == "sum" else "float64"
    acc = np.array(xp[next(offsets)], dtype=acc_dtype)
    for idx in offsets:
        acc += xp[idx]
    if mode != "sum":
        acc /= g.divisor(mode, ignore_border, acc_dtype)
    return acc.astype(out_dtype, copy=False)


def _all_finite(a):
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())


def _masked(mask, values, out, finite):
    """out = values where mask else 0: a multiply when the values are all finite (fast),
    else a select (0 * inf would give nan where the mask is False)."""
    if finite:
        return np.multiply(mask, values, out=out)
    out[...] = np.where(mask, values, np.zeros((), out.dtype))
    return out


def max_pool_grad_reference(x, z, gz, g, dtype):
    gxp = np.zeros((x.shape[0], g.hp, g.wp), dtype=dtype)
    if not g.empty:
        xp = g.padded(x, _lowest(x.dtype))
        gz = gz.astype(dtype, copy=False)
        finite = _all_finite(gz)
        mask = np.empty(z.shape, dtype=bool)
        tmp = np.empty(z.shape, dtype=dtype) if g.overlap else None
        for idx in g.offsets():
            np.equal(xp[idx], z, out=mask)
            if g.overlap:
                gxp[idx] += _masked(mask, gz, tmp, finite)
            else:  # each element belongs to at most one window
                _masked(mask, gz, gxp[idx], finite)
    return g.crop(gxp)


def max_pool_grad_grad_reference(x, z, ggx, g, dtype):
    ggz = np.zeros((x.shape[0], g.nr, g.nc), dtype=dtype)
    if not g.empty:
        xp = g.padded(x, _lowest(x.dtype))
        ggxp = g.padded(ggx.astype(dtype, copy=False), 0)
        finite = _all_finite(ggxp)
        mask = np.empty(z.shape, dtype=bool)
        tmp = np.empty(z.shape, dtype=dtype)
        for idx in g.offsets():
            np.equal(xp[idx], z, out=mask)
            ggz += _masked(mask, ggxp[idx], tmp, finite)
    return ggz


def average_pool_grad_reference(gz, g, mode, ignore_border, dtype):
    gxp = np.zeros((gz.shape[0], g.hp, g.wp), dtype=dtype)
    if not g.empty:
        gz = gz.astype(dtype, copy=False)
        if mode != "sum":
            gz = gz / g.divisor(mode, ignore_border, dtype)
        for idx in g.offsets():
            if g.overlap:
                gxp[idx] += gz
            else:
                gxp[idx] = gz
    return g.crop(gxp)


# ----------------------------------------------------------------------------------------------
# ops


class _PoolBase(Op):
    __props__ = ("ws", "ignore_border", "stride", "pad", "mode")

    def __init__(self, ws, ignore_border=True, stride=None, pad=(0, 0), mode="max"):
        self.ws = pair(ws, "ws (the pooling window size)", 1)
        self.stride = self.ws if stride is None else pair(stride, "stride", 1)
        self.pad = (0, 0) if pad is None else pair(pad, "pad", 0)
        if not isinstance(ignore_border, (bool, np.bool_)):
            raise TypeError(f"ignore_border must be True or False, got {ignore_border!r}")
        self.ignore_border = bool(ignore_border)
        if mode not in MODES:
            raise ValueError(f"pooling mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        self.mode = mode
        if self.pad != (0, 0):
            if not self.ignore_border:
                raise NotImplementedError(f"pooling with padding (pad={self.pad}) works only with "
                                          f"ignore_border=True")
            if self.pad[0] >= self.ws[0] or self.pad[1] >= self.ws[1]:
                raise ValueError(f"pooling padding {self.pad} must be smaller than the window size "
                                 f"ws={self.ws} in each dimension")

    def __str__(self):
        s = f"{type(self).__name__}{{ws={self.ws}, stride={self.stride}"
        if self.pad != (0, 0):
            s += f", pad={self.pad}"
        s += f", ignore_border={self.ignore_border}"
        if not isinstance(self, (MaxPoolGrad, MaxPoolGradGrad)):
            s += f", mode={self.mode!r}"
        return s + "}"

    __repr__ = __str__

    def _pooled_shape(self, shape):
        return tuple(shape[:-2]) + (out_len(shape[-2], self.ws[0], self.stride[0], self.pad[0], self.ignore_border),
                                    out_len(shape[-1], self.ws[1], self.stride[1], self.pad[1], self.ignore_border))

    def _geom(self, x):
        return WindowGeometry(x.shape[-2], x.shape[-1], self.ws, self.stride, self.pad, self.ignore_border)

    def _check_input(self, x, role="input"):
        x = as_tensor_variable(x)
        if x.ndim < 2:
            raise TypeError(f"{self}: the {role} must have at least 2 dimensions (pooling is over the last two), "
                            f"got {x.describe()}")
        return x

    def _check_static(self, x, others):
        """others: (variable, role, expected static shape) to check against the variables' types."""
        for v, role, want in others:
            if v.ndim != len(want):
                raise TypeError(f"{self}: the {role} must be {len(want)}-d like the pooled input, got {v.describe()}")
            for d, (a, b) in enumerate(zip(v.type.shape, want)):
                if a is not None and b is not None and a != b:
                    raise ValueError(f"{self}: the {role} {v.describe()} has static shape {fmt_shape(v.type.shape)} "
                                     f"but pooling the input {x.describe()} gives shape {fmt_shape(want)} "
                                     f"(dimension {d}: {a} vs {b})")

    def _check_runtime(self, node, values, roles):
        """Check run-time shapes: each value against its variable's static type, and the
        pooled-shaped ones against pooling the first input's run-time shape."""
        x = values[0]
        pooled = self._pooled_shape(x.shape)
        for var, val, (role, kind) in zip(node.inputs, values, roles):
            if val.ndim != var.ndim:
                raise ValueError(f"{self}: the {role} {var.describe()} is {val.ndim}-d at run time, "
                                 f"expected {var.ndim}-d")
            static = var.type.shape
            if any(s is not None and s != a for s, a in zip(static, val.shape)):
                raise ValueError(f"{self}: the {role} {var.describe()} has shape {val.shape} at run time "
                                 f"but its declared static shape is {fmt_shape(static)}")
            if kind == "pooled" and tuple(val.shape) != tuple(pooled):
                raise ValueError(f"{self}: the {role} {var.describe()} has shape {tuple(val.shape)} at run time, "
                                 f"expected {tuple(pooled)}, the shape of pooling the input "
                                 f"{node.inputs[0].describe()} of shape {tuple(x.shape)}")
            if kind == "input" and tuple(val.shape) != tuple(x.shape):
                raise ValueError(f"{self}: the {role} {var.describe()} has shape {tuple(val.shape)} at run time, "
                                 f"expected the input's shape {tuple(x.shape)}")


# input variable -> {op: weak reference to the pooled output}: lets Pool.grad reuse the forward output instead of
# building (and, without a merge pass, computing) a second identical pooling node.
_POOLED = weakref.WeakKeyDictionary()


class Pool(_PoolBase):
    """Pool the last two dimensions of an N-d (N >= 2) tensor."""

    @staticmethod
    def out_shape(imgshape, ws=None, ignore_border=False, stride=None, pad=None, ndim=2, ds=None, st=None,
                  padding=None):
        """Theano's Pool.out_shape: imgshape with its last two entries (ints or symbolic
        scalars) replaced by the pooled rows and cols."""
        ws = ds if ws is None else ws
        stride = st if stride is None else stride
        pad = padding if pad is None else pad
        if ndim != 2:
            raise NotImplementedError(f"Pool.out_shape: only ndim=2 is supported, got {ndim}")
        if ws is None:
            raise ValueError("Pool.out_shape: the window size ws must be given")
        if len(imgshape) < ndim:
            raise TypeError(f"imgshape must have at least {ndim} dimensions, got {imgshape!r}")
        ws = pair(ws, "ws", 1)
        stride = ws if stride is None else pair(stride, "stride", 1)
        pad = (0, 0) if pad is None else pair(pad, "pad", 0)
        rows_cols = [out_len(imgshape[-2 + i], ws[i], stride[i], pad[i], ignore_border) for i in range(2)]
        return list(imgshape[:-2]) + rows_cols

    def make_node(self, x):
        x = self._check_input(x)
        node = Apply(self, [x], [TensorType(x.dtype, shape=self._pooled_shape(x.type.shape))()])
        try:
            _POOLED.setdefault(x, {})[self] = weakref.ref(node.outputs[0])
        except TypeError:  # not weak-referenceable
            pass
        return node

    def _output_for(self, x):
        ref = _POOLED.get(x, {}).get(self) if _weakrefable(x) else None
        z = ref() if ref is not None else None
        return z if z is not None else self(x)

    def perform(self, node, inputs, out):
        x, = inputs
        self._check_runtime(node, [x], [("input", "x")])
        g = self._geom(x)
        res = pool_reference(flat_images(x), g, self.mode, self.ignore_border, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape[:-2] + (g.nr, g.nc))

    def infer_shape(self, node, shapes):
        return [self._pooled_shape(shapes[0])]

    def grad(self, inputs, grads):
        x, = inputs
        gz, = grads
        if not is_float(x.dtype):
            return [None]
        if self.mode == "max":
            gx = MaxPoolGrad(self.ws, self.ignore_border, self.stride, self.pad)(x, self._output_for(x), gz)
        else:
            gx = AveragePoolGrad(self.ws, self.ignore_border, self.stride, self.pad, self.mode)(x, gz)
        return [gx]


class PoolGrad(_PoolBase):
    """Base of the pooling gradient ops (Theano's PoolGrad)."""


class _MaxPoolTieGrad(PoolGrad):
    """MaxPoolGrad and MaxPoolGradGrad: (x, maxout, g) -> a gradient that goes through the elements
    equal to their window's maximum. MaxPoolGrad spreads a pooled-shaped g over those elements;
    MaxPoolGradGrad, its transpose, sums an input-shaped g over them per window."""

    __props__ = ("ws", "ignore_border", "stride", "pad")

    _g_role = None       # how errors name the gradient input g
    _g_kind = None       # "pooled" (g has the pooled shape, the result the input's) or "input" (the reverse)
    _mode_hint = ""
    _reference = None    # the numpy kernel

    def __init__(self, ws, ignore_border=True, stride=None, pad=(0, 0), mode="max"):
        if mode != "max":
            raise ValueError(f"{type(self).__name__} is for mode='max', got {mode!r}{self._mode_hint}")
        super().__init__(ws, ignore_border, stride, pad, "max")

    def _make_node(self, x, maxout, g):
        x = self._check_input(x)
        maxout = as_tensor_variable(maxout)
        g = as_tensor_variable(g)
        if not is_float(g.dtype):
            raise TypeError(f"{self}: the {self._g_role} must be float, got {g.describe()}")
        if maxout.dtype != x.dtype:
            raise TypeError(f"{self}: the pooled output {maxout.describe()} must have the input's dtype "
                            f"({x.describe()})")
        pooled = self._pooled_shape(x.type.shape)
        g_shape, out_shape = (pooled, x.type.shape) if self._g_kind == "pooled" else (x.type.shape, pooled)
        self._check_static(x, [(maxout, "pooled output", pooled), (g, self._g_role, g_shape)])
        # the gradient w.r.t. x has x's dtype; the one w.r.t. gz has the incoming gradient's
        dtype = x.dtype if self._g_kind == "pooled" else g.dtype
        return Apply(self, [x, maxout, g], [TensorType(dtype, shape=out_shape)()])

    def perform(self, node, inputs, out):
        x, z, g = inputs
        self._check_runtime(node, inputs, [("input", "x"), ("pooled output", "pooled"), (self._g_role, self._g_kind)])
        geom = self._geom(x)
        res = self._reference(flat_images(x), flat_images(z), flat_images(g), geom, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape if self._g_kind == "pooled" else x.shape[:-2] + (geom.nr, geom.nc))

    def infer_shape(self, node, shapes):
        return [shapes[0] if self._g_kind == "pooled" else self._pooled_shape(shapes[0])]

    def grad(self, inputs, grads):
        from ..basic import cast, zeros_like
        x, maxout, g = inputs
        gout, = grads
        transpose = MaxPoolGradGrad if self._g_kind == "pooled" else MaxPoolGrad
        gg = transpose(self.ws, self.ignore_border, self.stride, self.pad)(x, maxout, gout)
        if gg.dtype != g.dtype:
            gg = cast(gg, g.dtype)
        return [zeros_like(x), zeros_like(maxout), gg]


class MaxPoolGrad(_MaxPoolTieGrad):
    """(x, maxout, gz) -> gx: each window's gradient goes to every element equal to its maximum."""

    _g_role = "output gradient"
    _g_kind = "pooled"
    _mode_hint = "; use AveragePoolGrad"
    _reference = staticmethod(max_pool_grad_reference)

    def make_node(self, x, maxout, gz):
        return self._make_node(x, maxout, gz)


class MaxPoolGradGrad(_MaxPoolTieGrad):
    """(x, maxout, ggx) -> ggz: the gradient of MaxPoolGrad with respect to its gz input.

    MaxPoolGrad is linear in gz; this is its transpose: each window sums ggx over the
    elements equal to the window's maximum. (Theano's DownsampleFactorMaxGradGrad.)"""

    _reference = staticmethod(max_pool_grad_grad_reference)
    _g_kind = "input"
    _g_role = "incoming gradient"

    def make_node(self, x, maxout, ggx):
        return self._make_node(x, maxout, ggx)


DownsampleFactorMaxGradGrad = MaxPoolGradGrad


class AveragePoolGrad(PoolGrad):
    """(x, gz) -> gx for the 'sum' and average modes (x is used only for its shape)."""

    def __init__(self, ws, ignore_border=True, stride=None, pad=(0, 0), mode="average_inc_pad"):
        if mode == "max":
            raise ValueError("AveragePoolGrad is for the 'sum' and average modes; use MaxPoolGrad for 'max'")
        super().__init__(ws, ignore_border, stride, pad, mode)

    def make_node(self, x, gz):
        x = self._check_input(x)
        gz = as_tensor_variable(gz)
        if not is_float(gz.dtype):
            raise TypeError(f"{self}: the output gradient must be float, got {gz.describe()}")
        self._check_static(x, [(gz, "output gradient", self._pooled_shape(x.type.shape))])
        dtype = x.dtype if is_float(x.dtype) else gz.dtype
        return Apply(self, [x, gz], [TensorType(dtype, shape=x.type.shape)()])

    def perform(self, node, inputs, out):
        x, gz = inputs
        self._check_runtime(node, inputs, [("input", "x"), ("output gradient", "pooled")])
        g = self._geom(x)
        res = average_pool_grad_reference(flat_images(gz), g, self.mode, self.ignore_border, node.outputs[0].dtype)
        out[0][0] = res.reshape(x.shape)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, grads):
        from ..basic import cast, zeros_like
        x, gz = inputs
        ggx, = grads
        ggz = Pool(self.ws, self.ignore_border, self.stride, self.pad, self.mode)(ggx)
        if ggz.dtype != gz.dtype:
            ggz = cast(ggz, gz.dtype)
        return [zeros_like(x), ggz]


# ----------------------------------------------------------------------------------------------
# user functions


def pool_2d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0), mode="max", ds=None, st=None,
            padding=None):
    """Theano 1.0's `pool_2d`: pool the last two dimensions of `input` (N >= 2 dimensions).

    ws: window size (rows, cols); ds is its deprecated name. ws, stride and pad may be
        symbolic (int vectors, or pairs holding int scalars); when their values are known
        only at run time they are checked when the function runs.
    ignore_border: True drops partial windows at the bottom/right border; False keeps them.
        None warns and means False, as in Theano 1.0.
    stride: step between windows (default ws); st is its deprecated name.
    pad: zero padding (rows, cols) on both sides, requires ignore_border=True and pad < ws;
        padding is its deprecated name.
    mode: 'max', 'sum', 'average_inc_pad' or 'average_exc_pad'.
    """
    if ds is not None:
        if ws is not None:
            raise ValueError("pool_2d: give the window size as ws or as its old name ds, not both")
        ws = ds
    if ws is None:
        raise ValueError("pool_2d: the window size ws must be given (a pair of ints)")
    if st is not None:
        if stride is not None:
            raise ValueError("pool_2d: give the stride as stride or as its old name st, not both")
        stride = st
    if padding is not None:
        if pad not in (None, (0, 0)):
            raise ValueError("pool_2d: give the padding as pad or as its old name padding, not both")
        pad = padding
    if ignore_border is None:
        warnings.warn("pool_2d() was called without ignore_border: using ignore_border=False, as Theano 1.0 "
                      "did (Theano announced the default would become True). Pass ignore_border=True or "
                      "False explicitly to choose; the tutorial passes True.", stacklevel=2)
        ignore_border = DEFAULT_IGNORE_BORDER
    x = as_tensor_variable(input)
    if x.ndim < 2:
        raise NotImplementedError(f"pool_2d requires an input with at least 2 dimensions, got {x.describe()}")
    try:
        op = Pool(ws, ignore_border=ignore_border, stride=stride, pad=pad, mode=mode)
    except KnownOnlyAtRunTime:
        # the geometry is checked when the function runs
        from .pool_runtime import RuntimePool
        return RuntimePool(ignore_border, mode)(x, ws, stride, pad)
    return op(x)


def max_pool_2d_same_size(input, patch_size):
    """Theano's max_pool_2d_same_size: keep only each patch's maxima (others set to 0),
    output the same size as the input."""
    x = as_tensor_variable(input)
    if not is_float(x.dtype):
        raise TypeError(f"max_pool_2d_same_size takes a float input, got {x.describe()}")
    out = pool_2d(x, ws=patch_size, ignore_border=True)
    return MaxPoolGrad(patch_size, True)(x, out, out)
