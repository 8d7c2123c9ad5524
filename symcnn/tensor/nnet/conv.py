"""2-d convolution with Theano 1.0 semantics (`theano.tensor.nnet.conv2d`).

Three ops, as Theano's AbstractConv2d family:

  Conv2d             (input, filters)        -> output
  Conv2dGradInputs   (filters, topgrad, hw)  -> d cost / d input     (hw: the input's spatial shape)
  Conv2dGradWeights  (input, topgrad, khw)   -> d cost / d filters   (khw: the filters' spatial shape)

Shapes: input (batch, channels, rows, cols), filters (nkern, channels, krows, kcols),
output (batch, nkern, out_rows, out_cols) with out = (in + 2 * pad - k) // stride + 1.
With filter_flip=True (the default) the filters are flipped (true convolution);
with filter_flip=False the op is a cross-correlation.

All three are bilinear, so each one's gradient is expressed with the other two,
and every op is differentiable any number of times.

This module also stands in for Theano's older `theano.tensor.nnet.conv` module:
`conv.conv2d(input=, filters=, filter_shape=, image_shape=)` works.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.basic import Apply, Constant, Variable
from ...graph.op import Op
from ..type import TensorType, is_float, is_int, upcast
from ..var import as_tensor_variable, constant
from .dilation import dilate_filters, dilate_shape

__all__ = ["conv2d", "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights",
           "AbstractConv2d", "AbstractConv2d_gradInputs", "AbstractConv2d_gradWeights"]


# ----------------------------------------------------------------------------------------------
# argument normalisation


def _fmt(shape):
    if shape is None:
        return "None"
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def _static_int(v, what):
    """An int, None, or a constant symbolic scalar -> int/None (other symbolic -> None)."""
    if v is None:
        return None
    if isinstance(v, Constant):
        v = v.data
    if isinstance(v, Variable):
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, np.ndarray)):
        raise TypeError(f"{what} must contain ints or None, got {v!r}")
    v = int(v)
    if v < 0:
        raise ValueError(f"{what} must not contain negative sizes, got {v}")
    return v


def _norm_shape(shape, what):
    """None or a 4-sequence of ints/None -> a 4-tuple (None entries for unknown)."""
    if shape is None:
        return (None,) * 4
    if isinstance(shape, Constant):
        shape = [int(s) for s in shape.data]
    if isinstance(shape, Variable):
        return (None,) * 4
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of 4 ints or None, got {shape!r}") from None
    if len(shape) != 4:
        raise ValueError(f"{what} must have 4 entries (batch, channels, rows, cols), got {shape!r}")
    return tuple(_static_int(s, what) for s in shape)


def _norm_pair(value, what, minimum):
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{what} must be a pair of ints, got {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                 for v in pair):
        raise TypeError(f"{what} must be a pair of ints, got {value!r}")
    pair = tuple(int(v) for v in pair)
    if any(v < minimum for v in pair):
        raise ValueError(f"{what} entries must be >= {minimum}, got {pair}")
    return pair


def _norm_border_mode(border_mode):
    """'valid' | 'full' | 'half' | (ph, pw) with (0, 0) written 'valid' (as Theano does)."""
    if isinstance(border_mode, str):
        if border_mode not in ("valid", "full", "half"):
            raise ValueError(f"conv2d: border_mode must be 'valid', 'full', 'half', an int or a pair of ints "
                             f"(the padding), got {border_mode!r}")
        return border_mode
    try:
        pad = _norm_pair(border_mode, "border_mode", 0)
    except TypeError:
        raise ValueError(f"conv2d: border_mode must be 'valid', 'full', 'half', an int or a pair of ints "
                         f"(the padding), got {border_mode!r}") from None
    except ValueError:
        raise ValueError(f"conv2d: border_mode padding must be non-negative, got {border_mode!r}") from None
    return "valid" if pad == (0, 0) else pad


def _norm_subsample(subsample):
    msg = f"conv2d: subsample must be a pair of positive ints (the strides), got {subsample!r}"
    try:
        return _norm_pair(subsample, "subsample", 1)
    except TypeError:
        raise TypeError(msg) from None
    except ValueError:
        raise ValueError(msg) from None


def _check_dilation(filter_dilation):
    """The dilation as a pair of positive ints (filters are dilated by dilation.py)."""
    try:
        return _norm_pair(filter_dilation, "filter_dilation", 1)
    except (TypeError, ValueError):
        raise ValueError(f"conv2d: filter_dilation must be a pair of positive ints, got {filter_dilation!r}") from None


def _padding(border_mode, kh, kw):
    """(ph, pw) for a border mode and kernel size; entries are None when unknown.
    Works with ints and with symbolic int scalars (for infer_shape)."""
    if border_mode == "valid":
        return 0, 0
    if border_mode == "full":
        return (None if kh is None else kh - 1), (None if kw is None else kw - 1)
    if border_mode == "half":
        return (None if kh is None else kh // 2), (None if kw is None else kw // 2)
    return border_mode


def _out_len(n, k, p, s):
    if n is None or k is None or p is None:
        return None
    return (n + 2 * p - k) // s + 1


def _out_shape(imshp, kshp, border_mode, subsample):
    ph, pw = _padding(border_mode, kshp[2], kshp[3])
    return (imshp[0], kshp[0], _out_len(imshp[2], kshp[2], ph, subsample[0]),
            _out_len(imshp[3], kshp[3], pw, subsample[1]))


# ----------------------------------------------------------------------------------------------
# shape resolution shared by the three ops (at build time and at run time)


def _merge(who, what, sources):
    """Merge (shape, description) sources of one 4-d shape; raise naming both sources on conflict."""
    merged, origin = [None] * 4, [None] * 4
    for shp, desc in sources:
        if shp is None:
            continue
        for d, s in enumerate(shp):
            if s is None:
                continue
            if merged[d] is None:
                merged[d], origin[d] = s, (shp, desc)
            elif merged[d] != s:
                oshp, odesc = origin[d]
                raise ValueError(f"{who}: inconsistent {what} shape: {desc} has shape {_fmt(shp)} but "
                                 f"{odesc} has shape {_fmt(oshp)} (dimension {d}: {s} vs {merged[d]})")
    return merged, origin


def _origin(origin, d, default):
    return origin[d][1] if origin[d] is not None else default


def _resolve(who, border_mode, subsample, im_srcs, k_srcs, top_srcs):
    """Combine everything known about the input, filters and output shapes.

    Returns (imshp, kshp, outshp) as 4-tuples with None for unknown entries, or
    raises ValueError naming where the conflicting sizes come from.
    """
    im, im_o = _merge(who, "input", im_srcs)
    k, k_o = _merge(who, "filters", k_srcs)
    top, top_o = _merge(who, "output (gradient)", top_srcs)
    if im[1] is not None and k[1] is not None and im[1] != k[1]:
        raise ValueError(f"{who}: the input has {im[1]} channels ({_origin(im_o, 1, 'input')}) but the filters "
                         f"expect {k[1]} input channels ({_origin(k_o, 1, 'filters')}); "
                         f"filter_shape[1] must equal input_shape[1]")
    for d in (0, 1):
        a = im[0] if d == 0 else k[0]
        if a is not None and top[d] is not None and a != top[d]:
            what, src = (("batch size", _origin(im_o, 0, "input")) if d == 0
                         else ("number of filters", _origin(k_o, 0, "filters")))
            raise ValueError(f"{who}: the output gradient has {top[d]} in dimension {d} "
                             f"({_origin(top_o, d, 'output gradient')}) but the {what} is {a} ({src})")
    ph, pw = _padding(border_mode, k[2], k[3])
    for d, p in ((2, ph), (3, pw)):
        if im[d] is not None and k[d] is not None and im[d] + 2 * p < k[d]:
            raise ValueError(f"{who}: the filters ({_origin(k_o, d, 'filters')}) are larger than the "
                             f"{'padded ' if p else ''}input ({_origin(im_o, d, 'input')}) in dimension {d}: "
                             f"filter size {k[d]} > input size {im[d]}" + (f" + 2 * padding {p}" if p else "")
                             + f" (border_mode={border_mode!r})")
    expect = _out_shape(im, k, border_mode, subsample)
    for d in (2, 3):
        if expect[d] is not None and top[d] is not None and expect[d] != top[d]:
            raise ValueError(
                f"{who}: the output gradient ({_origin(top_o, d, 'output gradient')}) has shape {_fmt(top)}, "
                f"but a border_mode={border_mode!r}, subsample={subsample} convolution of an input of shape "
                f"{_fmt(im)} by filters of shape {_fmt(k)} gives {_fmt(expect)} (dimension {d}: "
                f"{top[d]} vs {expect[d]})")
    im = (im[0] if im[0] is not None else top[0], im[1] if im[1] is not None else k[1], im[2], im[3])
    k = (k[0] if k[0] is not None else top[1], k[1] if k[1] is not None else im[1], k[2], k[3])
    out = tuple(e if e is not None else t for e, t in zip(_out_shape(im, k, border_mode, subsample), top))
    return im, k, out


def _check_tensor4(v, role, who):
    v = as_tensor_variable(v)
    if v.ndim != 4:
        raise TypeError(f"{who}: the {role} must be a 4-d tensor, got {v.describe()}")
    if not is_float(v.dtype):
        raise TypeError(f"{who}: the {role} must be a float tensor, got {v.describe()}")
    return v


def _check_hw(v, role, who):
    """The spatial-shape input of the grad ops: 2 integers (tuple, array or int vector variable)."""
    if isinstance(v, (list, tuple)) and not any(isinstance(e, Variable) for e in v):
        v = constant(np.asarray([int(e) for e in v], dtype="int64"))
    v = as_tensor_variable(v)
    if v.ndim != 1 or not is_int(v.dtype) or v.dtype == "bool" or v.type.shape[0] not in (2, None):
        raise TypeError(f"{who}: {role} must be a vector of 2 integers (rows, cols), got {v.describe()}")
    if v.dtype != "int64":
        from ..basic import cast
        v = cast(v, "int64")
    from ..basic import _static_ints
    known = _static_ints(v) if v.type.shape[0] == 2 else [None, None]
    if any(k is not None and k < 0 for k in known):
        raise ValueError(f"{who}: {role} must be non-negative, got {known}")
    return v, tuple(known)


def _hw_arg(var, static):
    """The spatial shape of `var` as an int64 vector: a constant when statically known."""
    if static[2] is not None and static[3] is not None:
        return constant(np.asarray(static[2:], dtype="int64"))
    from ..basic import shape
    return shape(var)[2:]


# ----------------------------------------------------------------------------------------------
# numpy kernels (correlation; the caller flips the filters for a true convolution)


def _pad(x, ph, pw):
    if ph == 0 and pw == 0:
        return x
    b, c, h, w = x.shape
    xp = np.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _im2col(xp, kh, kw, sh, sw, oh, ow):
    """(c * kh * kw, b * oh * ow) patches of the padded input, one GEMM away from the output."""
    b, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    view = as_strided(xp, (c, kh, kw, b, oh, ow), (s1, s2, s3, s0, s2 * sh, s3 * sw), writeable=False)
    return np.ascontiguousarray(view).reshape(c * kh * kw, b * oh * ow)


def _corr(x, w, pad, stride):
    b, c, h, wd = x.shape
    nk, _, kh, kw = w.shape
    oh, ow = (h + 2 * pad[0] - kh) // stride[0] + 1, (wd + 2 * pad[1] - kw) // stride[1] + 1
    cols = _im2col(_pad(x, *pad), kh, kw, stride[0], stride[1], oh, ow)
    out = (w.reshape(nk, c * kh * kw) @ cols).reshape(nk, b, oh, ow)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


def _corr_grad_weights(x, g, kshape, pad, stride):
    b, c = x.shape[:2]
    nk, oh, ow = g.shape[1:]
    kh, kw = kshape
    cols = _im2col(_pad(x, *pad), kh, kw, stride[0], stride[1], oh, ow)
    gt = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(nk, b * oh * ow)
    return (gt @ cols.T).reshape(nk, c, kh, kw)


def _corr_grad_inputs(w, g, hw, pad, stride):
    nk, c, kh, kw = w.shape
    b, _, oh, ow = g.shape
    h, wd = hw
    ph, pw = pad
    sh, sw = stride
    gt = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(nk, b * oh * ow)
    gcols = (w.reshape(nk, c * kh * kw).T @ gt).reshape(c, kh, kw, b, oh, ow)
    hp, wp = h + 2 * ph, wd + 2 * pw
    gxp = np.zeros((c, b, hp, wp), dtype=gcols.dtype)
    if oh > 0 and ow > 0:
        for u in range(kh):
            for v in range(kw):
                gxp[:, :, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw] += gcols[:, u, v]
    return np.ascontiguousarray(gxp[:, :, ph:ph + h, pw:pw + wd].transpose(1, 0, 2, 3))


def _flip(w):
    return w[:, :, ::-1, ::-1]


# ----------------------------------------------------------------------------------------------
# ops


class _BaseConv(Op):
    __props__ = ("border_mode", "subsample", "filter_flip", "imshp", "kshp")

    def __init__(self, imshp=None, kshp=None, border_mode="valid", subsample=(1, 1), filter_flip=True,
                 filter_dilation=(1, 1)):
        _check_dilation(filter_dilation)
        self.border_mode = _norm_border_mode(border_mode)
        self.subsample = _norm_subsample(subsample)
        self.filter_flip = bool(filter_flip)
        self.imshp = _norm_shape(imshp, "input_shape")
        self.kshp = _norm_shape(kshp, "filter_shape")

    def __str__(self):
        bm = self.border_mode
        s = f"{type(self).__name__}{{{bm!r}, subsample={self.subsample}, filter_flip={self.filter_flip}"
        if any(d is not None for d in self.imshp):
            s += f", imshp={_fmt(self.imshp)}"
        if any(d is not None for d in self.kshp):
            s += f", kshp={_fmt(self.kshp)}"
        return s + "}"

    __repr__ = __str__

    _name = "conv2d"

    def _who(self):
        return self._name

    def _declared(self):
        return [(self.imshp, "the declared input_shape")], [(self.kshp, "the declared filter_shape")]

    def _clone(self, cls, imshp, kshp):
        return cls(imshp=imshp, kshp=kshp, border_mode=self.border_mode, subsample=self.subsample,
                   filter_flip=self.filter_flip)

    def _geometry(self, kh, kw):
        return _padding(self.border_mode, kh, kw), self.subsample


class Conv2d(_BaseConv):
    """conv2d(input, filters): Theano's AbstractConv2d with a numpy (im2col + GEMM) reference."""

    def make_node(self, img, kern):
        who = self._who()
        img = _check_tensor4(img, "input", who)
        kern = _check_tensor4(kern, "filters", who)
        im_srcs, k_srcs = self._declared()
        _, _, out = _resolve(who, self.border_mode, self.subsample,
                             im_srcs + [(img.type.shape, f"the input {img.describe()}")],
                             k_srcs + [(kern.type.shape, f"the filters {kern.describe()}")], [])
        return Apply(self, [img, kern], [TensorType(upcast(img.dtype, kern.dtype), shape=out)()])

    def perform(self, node, inputs, out):
        x, w = inputs
        img, kern = node.inputs
        who = self._who()
        im_srcs, k_srcs = self._declared()
        _resolve(who, self.border_mode, self.subsample,
                 im_srcs + [(img.type.shape, f"the static type of input {img.describe()}"),
                            (x.shape, f"the run-time value of input {img.describe()}")],
                 k_srcs + [(kern.type.shape, f"the static type of filters {kern.describe()}"),
                           (w.shape, f"the run-time value of filters {kern.describe()}")], [])
        dtype = node.outputs[0].dtype
        x = x.astype(dtype, copy=False)
        w = w.astype(dtype, copy=False)
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        out[0][0] = _corr(x, _flip(w) if self.filter_flip else w, pad, stride)

    def infer_shape(self, node, shapes):
        imshp, kshp = shapes
        return [_out_shape(imshp, kshp, self.border_mode, self.subsample)]

    def grad(self, inputs, grads):
        img, kern = inputs
        top, = grads
        im, k, _ = _resolve(self._who(), self.border_mode, self.subsample,
                            self._declared()[0] + [(img.type.shape, "input")],
                            self._declared()[1] + [(kern.type.shape, "filters")], [])
        d_img = self._clone(Conv2dGradInputs, im, k)(kern, top, _hw_arg(img, im))
        d_kern = self._clone(Conv2dGradWeights, im, k)(img, top, _hw_arg(kern, k))
        return [_as_dtype(d_img, img.dtype), _as_dtype(d_kern, kern.dtype)]

    def flops(self, input_shapes, output_shapes):
        return conv_flops(output_shapes[0], input_shapes[1])


class Conv2dGradInputs(_BaseConv):
    """Gradient of conv2d with respect to its input: (filters, output_grad, input_hw) -> input_grad.

    input_hw, an int64 vector (rows, cols), gives the input's spatial size, which the
    output size does not determine when subsample > 1."""

    _name = "conv2d gradient w.r.t. the input"

    def make_node(self, kern, topgrad, shape):
        who = self._who()
        kern = _check_tensor4(kern, "filters", who)
        topgrad = _check_tensor4(topgrad, "output gradient", who)
        shape, hw = _check_hw(shape, "the input shape argument", who)
        im_srcs, k_srcs = self._declared()
        im, _, _ = _resolve(who, self.border_mode, self.subsample,
                            im_srcs + [((None, None) + hw, f"the input shape argument {shape.describe()}")],
                            k_srcs + [(kern.type.shape, f"the filters {kern.describe()}")],
                            [(topgrad.type.shape, f"the output gradient {topgrad.describe()}")])
        return Apply(self, [kern, topgrad, shape],
                     [TensorType(upcast(kern.dtype, topgrad.dtype), shape=im)()])

    def perform(self, node, inputs, out):
        w, g, hw = inputs
        kern, topgrad, shape = node.inputs
        hw = tuple(int(v) for v in np.asarray(hw).reshape(-1))
        who = self._who()
        if len(hw) != 2 or min(hw) < 0:
            raise ValueError(f"{who}: the input shape argument {shape.describe()} must be 2 non-negative "
                             f"integers, got {hw}")
        im_srcs, k_srcs = self._declared()
        _resolve(who, self.border_mode, self.subsample,
                 im_srcs + [((None, None) + hw, f"the run-time input shape argument {shape.describe()}")],
                 k_srcs + [(kern.type.shape, f"the static type of filters {kern.describe()}"),
                           (w.shape, f"the run-time value of filters {kern.describe()}")],
                 [(topgrad.type.shape, f"the static type of output gradient {topgrad.describe()}"),
                  (g.shape, f"the run-time value of output gradient {topgrad.describe()}")])
        dtype = node.outputs[0].dtype
        w = w.astype(dtype, copy=False)
        g = g.astype(dtype, copy=False)
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        out[0][0] = _corr_grad_inputs(_flip(w) if self.filter_flip else w, g, hw, pad, stride)

    def infer_shape(self, node, shapes):
        kshp, tshp, _ = shapes
        shape = node.inputs[2]
        return [(tshp[0], kshp[1], shape[0], shape[1])]

    def grad(self, inputs, grads):
        kern, top, shape = inputs
        bottom, = grads
        im, k, _ = _resolve(self._who(), self.border_mode, self.subsample, self._declared()[0],
                            self._declared()[1] + [(kern.type.shape, "filters")],
                            [(top.type.shape, "output gradient")])
        d_kern = self._clone(Conv2dGradWeights, im, k)(bottom, top, _hw_arg(kern, k))
        d_top = self._clone(Conv2d, im, k)(bottom, kern)
        return [_as_dtype(d_kern, kern.dtype), _as_dtype(d_top, top.dtype), None]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def flops(self, input_shapes, output_shapes):
        return conv_flops(input_shapes[1], input_shapes[0])


class Conv2dGradWeights(_BaseConv):
    """Gradient of conv2d with respect to its filters: (input, output_grad, filter_hw) -> filters_grad.

    filter_hw, an int64 vector (krows, kcols), gives the filters' spatial size."""

    _name = "conv2d gradient w.r.t. the filters"

    def make_node(self, img, topgrad, shape):
        who = self._who()
        img = _check_tensor4(img, "input", who)
        topgrad = _check_tensor4(topgrad, "output gradient", who)
        shape, hw = _check_hw(shape, "the filter shape argument", who)
        im_srcs, k_srcs = self._declared()
        _, k, _ = _resolve(who, self.border_mode, self.subsample,
                           im_srcs + [(img.type.shape, f"the input {img.describe()}")],
                           k_srcs + [((None, None) + hw, f"the filter shape argument {shape.describe()}")],
                           [(topgrad.type.shape, f"the output gradient {topgrad.describe()}")])
        return Apply(self, [img, topgrad, shape],
                     [TensorType(upcast(img.dtype, topgrad.dtype), shape=k)()])

    def perform(self, node, inputs, out):
        x, g, hw = inputs
        img, topgrad, shape = node.inputs
        hw = tuple(int(v) for v in np.asarray(hw).reshape(-1))
        who = self._who()
        if len(hw) != 2 or min(hw) < 0:
            raise ValueError(f"{who}: the filter shape argument {shape.describe()} must be 2 non-negative "
                             f"integers, got {hw}")
        im_srcs, k_srcs = self._declared()
        _resolve(who, self.border_mode, self.subsample,
                 im_srcs + [(img.type.shape, f"the static type of input {img.describe()}"),
                            (x.shape, f"the run-time value of input {img.describe()}")],
                 k_srcs + [((None, None) + hw, f"the run-time filter shape argument {shape.describe()}")],
                 [(topgrad.type.shape, f"the static type of output gradient {topgrad.describe()}"),
                  (g.shape, f"the run-time value of output gradient {topgrad.describe()}")])
        dtype = node.outputs[0].dtype
        x = x.astype(dtype, copy=False)
        g = g.astype(dtype, copy=False)
        pad, stride = self._geometry(*hw)
        gw = _corr_grad_weights(x, g, hw, pad, stride)
        out[0][0] = np.ascontiguousarray(_flip(gw)) if self.filter_flip else gw

    def infer_shape(self, node, shapes):
        ishp, tshp, _ = shapes
        shape = node.inputs[2]
        return [(tshp[1], ishp[1], shape[0], shape[1])]

    def grad(self, inputs, grads):
        img, top, shape = inputs
        weights, = grads
        im, k, _ = _resolve(self._who(), self.border_mode, self.subsample,
                            self._declared()[0] + [(img.type.shape, "input")], self._declared()[1],
                            [(top.type.shape, "output gradient")])
        d_img = self._clone(Conv2dGradInputs, im, k)(weights, top, _hw_arg(img, im))
        d_top = self._clone(Conv2d, im, k)(img, weights)
        return [_as_dtype(d_img, img.dtype), _as_dtype(d_top, top.dtype), None]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def flops(self, input_shapes, output_shapes):
        return conv_flops(input_shapes[1], output_shapes[0])


def _as_dtype(v, dtype):
    if v.dtype == dtype:
        return v
    from ..basic import cast
    return cast(v, dtype)


def conv_flops(top, kern):
    """2*N*K*C*kh*kw*OH*OW of a convolution, from its output (N, K, OH, OW) and filters (K, C, kh, kw)."""
    n, k, oh, ow = (int(d) for d in top)
    _, c, kh, kw = (int(d) for d in kern)
    return 2 * n * k * c * kh * kw * oh * ow


# Theano's names
AbstractConv2d = Conv2d
AbstractConv2d_gradInputs = Conv2dGradInputs
AbstractConv2d_gradWeights = Conv2dGradWeights


# ----------------------------------------------------------------------------------------------
# user function


def conv2d(input, filters, input_shape=None, filter_shape=None, border_mode="valid", subsample=(1, 1),
           filter_flip=True, image_shape=None, filter_dilation=(1, 1), **kwargs):
    """Theano's `theano.tensor.nnet.conv2d`: a batch of 2-d convolutions.

    input:   4-d tensor (batch, channels, rows, cols)
    filters: 4-d tensor (nkern, channels, krows, kcols)
    input_shape, filter_shape: optional 4-tuples of ints or None (static shapes; they are
        checked against the variables' types when building and against the values at run time)
    border_mode: 'valid' (no padding), 'full' (padding k - 1), 'half' (padding k // 2),
        an int or a pair (ph, pw) of explicit paddings
    subsample: the strides (sh, sw)
    filter_flip: True (default) flips the filters (a true convolution); False correlates
    image_shape: the old name of input_shape (Theano's `nnet.conv.conv2d`)
    filter_dilation: (dh, dw), Theano's dilated convolution (the filter's taps dh rows and dw columns apart)
    Returns a 4-d tensor (batch, nkern, out_rows, out_cols).
    """
    for key in ("imshp_logical", "kshp_logical", "kshp_logical_top_aligned"):
        if key in kwargs:
            raise ValueError(f"conv2d: the old keyword {key!r} is not supported")
    if kwargs.get("num_groups", 1) != 1:
        raise NotImplementedError("conv2d: grouped convolution (num_groups != 1) is not supported")
    if kwargs.get("unshared", False):
        raise NotImplementedError("conv2d: unshared convolution is not supported")
    # Theano's old conv2d tuning knobs: they changed speed, never results.
    unknown = set(kwargs) - {"num_groups", "unshared", "unroll_batch", "unroll_kern", "unroll_patch",
                             "openmp", "verbose"}
    if unknown:
        raise TypeError(f"conv2d() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if image_shape is not None:
        if input_shape is not None and _norm_shape(input_shape, "input_shape") != \
                _norm_shape(image_shape, "image_shape"):
            raise ValueError(f"conv2d: input_shape={input_shape!r} and its old name image_shape="
                             f"{image_shape!r} are both given and disagree; give only input_shape")
        input_shape = image_shape
    dil = _check_dilation(filter_dilation)
    if dil != (1, 1):
        filters, filter_shape = dilate_filters(filters, dil), dilate_shape(filter_shape, dil)
    op = Conv2d(imshp=input_shape, kshp=filter_shape, border_mode=border_mode, subsample=subsample,
                filter_flip=filter_flip)
    return op(input, filters)


def conv2d_grad_wrt_inputs(output_grad, filters, input_shape, filter_shape=None, border_mode="valid",
                           subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """Theano's `conv2d_grad_wrt_inputs` (a transposed convolution). input_shape gives the
    input's shape: 4 entries, of which the last two (rows, cols) must be given."""
    dil = _check_dilation(filter_dilation)
    if dil != (1, 1):
        filters, filter_shape = dilate_filters(filters, dil), dilate_shape(filter_shape, dil)
    imshp = tuple(input_shape)
    if len(imshp) != 4:
        raise ValueError(f"conv2d_grad_wrt_inputs: input_shape must have 4 entries, got {input_shape!r}")
    hw = [as_tensor_variable(s) if isinstance(s, Variable) else s for s in imshp[2:]]
    if any(s is None for s in hw):
        raise ValueError("conv2d_grad_wrt_inputs: the rows and cols of input_shape must be given")
    if not any(isinstance(s, Variable) for s in hw):
        hw = constant(np.asarray([int(s) for s in hw], dtype="int64"))
    op = Conv2dGradInputs(imshp=[s if not isinstance(s, Variable) else None for s in imshp], kshp=filter_shape,
                          border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    return op(filters, output_grad, hw)


def conv2d_grad_wrt_weights(input, output_grad, filter_shape, input_shape=None, border_mode="valid",
                            subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """Theano's `conv2d_grad_wrt_weights`. filter_shape: 4 entries, the last two must be given."""
    dil = _check_dilation(filter_dilation)
    kshp = tuple(filter_shape)
    if len(kshp) != 4:
        raise ValueError(f"conv2d_grad_wrt_weights: filter_shape must have 4 entries, got {filter_shape!r}")
    if dil != (1, 1):
        # the gradient of the dilated filter, read at the taps of the real one
        kshp = tuple(kshp[:2]) + tuple(None if k is None else (k - 1) * d + 1 for k, d in zip(kshp[2:], dil))
        g = conv2d_grad_wrt_weights(input, output_grad, kshp, input_shape, border_mode, subsample, filter_flip)
        return g[:, :, ::dil[0], ::dil[1]]
    hw = [as_tensor_variable(s) if isinstance(s, Variable) else s for s in kshp[2:]]
    if any(s is None for s in hw):
        raise ValueError("conv2d_grad_wrt_weights: the rows and cols of filter_shape must be given")
    if not any(isinstance(s, Variable) for s in hw):
        hw = constant(np.asarray([int(s) for s in hw], dtype="int64"))
    op = Conv2dGradWeights(imshp=input_shape, kshp=[s if not isinstance(s, Variable) else None for s in kshp],
                           border_mode=border_mode, subsample=subsample, filter_flip=filter_flip)
    return op(input, output_grad, hw)
