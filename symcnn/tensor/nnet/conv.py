"""2-d convolution with Theano 1.0 semantics (`theano.tensor.nnet.conv2d`).

Three ops, as Theano's AbstractConv2d family:

  Conv2d             (input, filters)        -> output
  Conv2dGradInputs   (filters, topgrad, hw)  -> d cost / d input     (hw: the input's spatial shape)
  Conv2dGradWeights  (input, topgrad, khw)   -> d cost / d filters   (khw: the filters' spatial shape)

Shapes: input (batch, channels, rows, cols), filters (nkern, channels, krows, kcols),
output (batch, nkern, out_rows, out_cols) with out = (in + 2 * pad - e) // stride + 1, where
e = (k - 1) * dilation + 1 is the extent of the filter dilated by filter_dilation (its taps
`dilation` rows / cols apart; 'full' and 'half' pad by e - 1 and e // 2).
With filter_flip=True (the default) the filters are flipped (true convolution);
with filter_flip=False the op is a cross-correlation.

All three are bilinear, so each one's gradient is expressed with the other two,
and every op is differentiable any number of times.

This module also stands in for Theano's older `theano.tensor.nnet.conv` module:
`conv.conv2d(input=, filters=, filter_shape=, image_shape=)` works.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.basic import Apply, Variable
from ...graph.op import Op
from ..type import TensorType, is_float, is_int, upcast
from ..var import as_tensor_variable, constant
from .conv_geometry import (check_dilation, conv_flops, extent, fmt_shape, norm_border_mode, norm_shape,
                            norm_subsample, out_shape, padding, resolve)

__all__ = ["conv2d", "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights",
           "AbstractConv2d", "AbstractConv2d_gradInputs", "AbstractConv2d_gradWeights"]


def check_tensor4(v, role, who):
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
    from ..basic import static_ints
    known = static_ints(v) if v.type.shape[0] == 2 else [None, None]
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


def _im2col(xp, kh, kw, sh, sw, oh, ow, dil=(1, 1)):
    """(c * kh * kw, b * oh * ow) patches of the padded input, one GEMM away from the output: tap
    (u, v) reads the input dil[0] * u rows and dil[1] * v cols from the window's corner."""
    b, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    view = as_strided(xp, (c, kh, kw, b, oh, ow), (s1, s2 * dil[0], s3 * dil[1], s0, s2 * sh, s3 * sw),
                      writeable=False)
    return np.ascontiguousarray(view).reshape(c * kh * kw, b * oh * ow)


def corr(x, w, pad, stride, dil=(1, 1)):
    b, c, h, wd = x.shape
    nk, _, kh, kw = w.shape
    eh, ew = extent(kh, dil[0]), extent(kw, dil[1])
    oh, ow = (h + 2 * pad[0] - eh) // stride[0] + 1, (wd + 2 * pad[1] - ew) // stride[1] + 1
    cols = _im2col(_pad(x, *pad), kh, kw, stride[0], stride[1], oh, ow, dil)
    out = (w.reshape(nk, c * kh * kw) @ cols).reshape(nk, b, oh, ow)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


def corr_grad_weights(x, g, kshape, pad, stride, dil=(1, 1)):
    b, c = x.shape[:2]
    nk, oh, ow = g.shape[1:]
    kh, kw = kshape
    cols = _im2col(_pad(x, *pad), kh, kw, stride[0], stride[1], oh, ow, dil)
    gt = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(nk, b * oh * ow)
    return (gt @ cols.T).reshape(nk, c, kh, kw)


def corr_grad_inputs(w, g, hw, pad, stride, dil=(1, 1)):
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
                r, s = u * dil[0], v * dil[1]
                gxp[:, :, r:r + sh * (oh - 1) + 1:sh, s:s + sw * (ow - 1) + 1:sw] += gcols[:, u, v]
    return np.ascontiguousarray(gxp[:, :, ph:ph + h, pw:pw + wd].transpose(1, 0, 2, 3))


def flip(w):
    return w[:, :, ::-1, ::-1]


# ----------------------------------------------------------------------------------------------
# ops


class _BaseConv(Op):
    __props__ = ("border_mode", "subsample", "filter_flip", "imshp", "kshp", "filter_dilation")
    # a native backend chooses this op's kernels by the sizes its operands' types fix (function()
    # specialises a graph holding such ops on its arguments' sizes: compile/specialize.py)
    kernels_by_static_shapes = True
    filter_dilation = (1, 1)   # (what an op pickled before it had a dilation loads with)

    def __init__(self, imshp=None, kshp=None, border_mode="valid", subsample=(1, 1), filter_flip=True,
                 filter_dilation=(1, 1)):
        self.filter_dilation = check_dilation(filter_dilation, self._name)
        self.border_mode = norm_border_mode(border_mode)
        self.subsample = norm_subsample(subsample)
        self.filter_flip = bool(filter_flip)
        self.imshp = norm_shape(imshp, "input_shape")
        self.kshp = norm_shape(kshp, "filter_shape")

    def __str__(self):
        bm = self.border_mode
        s = f"{type(self).__name__}{{{bm!r}, subsample={self.subsample}, filter_flip={self.filter_flip}"
        if any(d is not None for d in self.imshp):
            s += f", imshp={fmt_shape(self.imshp)}"
        if any(d is not None for d in self.kshp):
            s += f", kshp={fmt_shape(self.kshp)}"
        if self.filter_dilation != (1, 1):
            s += f", filter_dilation={self.filter_dilation}"
        return s + "}"

    __repr__ = __str__

    _name = "conv2d"

    def _who(self):
        return self._name

    def _declared(self):
        return [(self.imshp, "the declared input_shape")], [(self.kshp, "the declared filter_shape")]

    def _clone(self, cls, imshp, kshp):
        return cls(imshp=imshp, kshp=kshp, border_mode=self.border_mode, subsample=self.subsample,
                   filter_flip=self.filter_flip, filter_dilation=self.filter_dilation)

    def _geometry(self, kh, kw):
        return padding(self.border_mode, kh, kw, dilation=self.filter_dilation), self.subsample

    def _resolve(self, im_srcs, k_srcs, top_srcs):
        return resolve(self._who(), self.border_mode, self.subsample, im_srcs, k_srcs, top_srcs,
                       self.filter_dilation)

    def kernel_sizes(self, node):
        """The sizes that choose a native backend's kernels for this node, as its declared shapes
        and operand types fix them (None: open): the input's past the batch, the filters'."""
        im_srcs, k_srcs = self._declared()
        im_more, k_more, top = self._operand_shapes(node)
        im, k, _ = self._resolve(im_srcs + im_more, k_srcs + k_more, top)
        return tuple(im[1:]), tuple(k)


class Conv2d(_BaseConv):
    """conv2d(input, filters): Theano's AbstractConv2d with a numpy (im2col + GEMM) reference."""

    def _operand_shapes(self, node):
        img, kern = node.inputs
        return [(img.type.shape, "the input")], [(kern.type.shape, "the filters")], []

    def make_node(self, img, kern):
        who = self._who()
        img = check_tensor4(img, "input", who)
        kern = check_tensor4(kern, "filters", who)
        im_srcs, k_srcs = self._declared()
        _, _, out = self._resolve(im_srcs + [(img.type.shape, f"the input {img.describe()}")],
                                  k_srcs + [(kern.type.shape, f"the filters {kern.describe()}")], [])
        return Apply(self, [img, kern], [TensorType(upcast(img.dtype, kern.dtype), shape=out)()])

    def perform(self, node, inputs, out):
        x, w = inputs
        img, kern = node.inputs
        who = self._who()
        im_srcs, k_srcs = self._declared()
        self._resolve(im_srcs + [(img.type.shape, f"the static type of input {img.describe()}"),
                                 (x.shape, f"the run-time value of input {img.describe()}")],
                      k_srcs + [(kern.type.shape, f"the static type of filters {kern.describe()}"),
                                (w.shape, f"the run-time value of filters {kern.describe()}")], [])
        dtype = node.outputs[0].dtype
        x = x.astype(dtype, copy=False)
        w = w.astype(dtype, copy=False)
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        out[0][0] = corr(x, flip(w) if self.filter_flip else w, pad, stride, self.filter_dilation)

    def infer_shape(self, node, shapes):
        imshp, kshp = shapes
        return [out_shape(imshp, kshp, self.border_mode, self.subsample, self.filter_dilation)]

    def flops(self, input_shapes, output_shapes=None):
        """2 * multiply-adds at these input shapes (a dilated filter's zeros are not counted)."""
        imshp, kshp = input_shapes[:2]
        return conv_flops(out_shape(imshp, kshp, self.border_mode, self.subsample, self.filter_dilation), kshp)

    def grad(self, inputs, grads):
        img, kern = inputs
        top, = grads
        im, k, _ = self._resolve(self._declared()[0] + [(img.type.shape, "input")],
                                 self._declared()[1] + [(kern.type.shape, "filters")], [])
        d_img = self._clone(Conv2dGradInputs, im, k)(kern, top, _hw_arg(img, im))
        d_kern = self._clone(Conv2dGradWeights, im, k)(img, top, _hw_arg(kern, k))
        return [_as_dtype(d_img, img.dtype), _as_dtype(d_kern, kern.dtype)]



class _Conv2dGrad(_BaseConv):
    """The two gradient ops: (operand, output_grad, hw) -> result, where the operand is the filters
    (Conv2dGradInputs, the result is the input's gradient) or the input (Conv2dGradWeights, the
    result is the filters' gradient), and hw, an int64 vector (rows, cols), gives the result's
    spatial size."""

    _operand_role = None     # "filters" or "input": the side of the convolution the operand is on
    _hw_what = None          # how errors name the hw argument

    def _place(self, operand, result):
        """(input side, filters side) of a pair given as (operand side, result side)."""
        return (result, operand) if self._operand_role == "filters" else (operand, result)

    def _sides(self, im, k):
        """(operand side, result side) of a pair given as (input side, filters side)."""
        return (k, im) if self._operand_role == "filters" else (im, k)

    def _operand_shapes(self, node):
        operand, topgrad, shape = node.inputs
        from ..basic import static_ints
        hw = tuple(static_ints(shape)) if shape.type.shape[0] == 2 else (None, None)
        im_more, k_more = self._place([(operand.type.shape, self._operand_role)],
                                      [((None, None) + hw, self._hw_what)])
        return im_more, k_more, [(topgrad.type.shape, "the output gradient")]

    def _make_node(self, operand, topgrad, shape):
        who = self._who()
        role = self._operand_role
        operand = check_tensor4(operand, role, who)
        topgrad = check_tensor4(topgrad, "output gradient", who)
        shape, hw = _check_hw(shape, f"the {self._hw_what}", who)
        im_srcs, k_srcs = self._declared()
        im_more, k_more = self._place([(operand.type.shape, f"the {role} {operand.describe()}")],
                                      [((None, None) + hw, f"the {self._hw_what} {shape.describe()}")])
        im, k, _ = self._resolve(im_srcs + im_more, k_srcs + k_more,
                                 [(topgrad.type.shape, f"the output gradient {topgrad.describe()}")])
        return Apply(self, [operand, topgrad, shape],
                     [TensorType(upcast(operand.dtype, topgrad.dtype), shape=self._sides(im, k)[1])()])

    def perform(self, node, inputs, out):
        a, g, hw = inputs
        operand, topgrad, shape = node.inputs
        hw = tuple(int(v) for v in np.asarray(hw).reshape(-1))
        who = self._who()
        role = self._operand_role
        if len(hw) != 2 or min(hw) < 0:
            raise ValueError(f"{who}: the {self._hw_what} {shape.describe()} must be 2 non-negative "
                             f"integers, got {hw}")
        im_srcs, k_srcs = self._declared()
        im_more, k_more = self._place(
            [(operand.type.shape, f"the static type of {role} {operand.describe()}"),
             (a.shape, f"the run-time value of {role} {operand.describe()}")],
            [((None, None) + hw, f"the run-time {self._hw_what} {shape.describe()}")])
        self._resolve(im_srcs + im_more, k_srcs + k_more,
                      [(topgrad.type.shape, f"the static type of output gradient {topgrad.describe()}"),
                       (g.shape, f"the run-time value of output gradient {topgrad.describe()}")])
        dtype = node.outputs[0].dtype
        out[0][0] = self._compute(a.astype(dtype, copy=False), g.astype(dtype, copy=False), hw)

    def infer_shape(self, node, shapes):
        ashp, tshp, _ = shapes
        shape = node.inputs[2]
        # the batch size (input side) or the number of filters (filters side) comes from the output gradient
        return [(tshp[0 if self._operand_role == "filters" else 1], ashp[1], shape[0], shape[1])]

    def grad(self, inputs, grads):
        operand, top, shape = inputs
        result, = grads
        im_more, k_more = self._place([(operand.type.shape, self._operand_role)], [])
        im, k, _ = self._resolve(self._declared()[0] + im_more,
                                 self._declared()[1] + k_more, [(top.type.shape, "output gradient")])
        partner = Conv2dGradWeights if self._operand_role == "filters" else Conv2dGradInputs
        d_operand = self._clone(partner, im, k)(result, top, _hw_arg(operand, self._sides(im, k)[0]))
        d_top = self._clone(Conv2d, im, k)(*self._place(operand, result))
        return [_as_dtype(d_operand, operand.dtype), _as_dtype(d_top, top.dtype), None]

    def connection_pattern(self, node):
        return [[True], [True], [False]]


class Conv2dGradInputs(_Conv2dGrad):
    """Gradient of conv2d with respect to its input: (filters, output_grad, input_hw) -> input_grad.

    input_hw, an int64 vector (rows, cols), gives the input's spatial size, which the
    output size does not determine when subsample > 1."""

    _name = "conv2d gradient w.r.t. the input"
    _operand_role = "filters"
    _hw_what = "input shape argument"

    def make_node(self, kern, topgrad, shape):
        return self._make_node(kern, topgrad, shape)

    def _compute(self, w, g, hw):
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        return corr_grad_inputs(flip(w) if self.filter_flip else w, g, hw, pad, stride, self.filter_dilation)

    def flops(self, input_shapes, output_shapes=None):
        """2 * multiply-adds at these input shapes (those of the forward convolution)."""
        kshp, tshp = input_shapes[:2]
        return conv_flops(tshp, kshp)



class Conv2dGradWeights(_Conv2dGrad):
    """Gradient of conv2d with respect to its filters: (input, output_grad, filter_hw) -> filters_grad.

    filter_hw, an int64 vector (krows, kcols), gives the filters' spatial size."""

    _name = "conv2d gradient w.r.t. the filters"
    _operand_role = "input"
    _hw_what = "filter shape argument"

    def _compute(self, x, g, hw):
        pad, stride = self._geometry(*hw)
        gw = corr_grad_weights(x, g, hw, pad, stride, self.filter_dilation)
        return np.ascontiguousarray(flip(gw)) if self.filter_flip else gw

    def make_node(self, img, topgrad, shape):
        return self._make_node(img, topgrad, shape)

    def flops(self, input_shapes, output_shapes=None):
        """2 * multiply-adds at these input shapes (those of the forward convolution). The filter
        rows and cols are the third input's values, not its shape: they come from output_shapes
        (the filters' gradient's shape) when given, else from the declared filter_shape."""
        imshp, tshp = input_shapes[:2]
        khw = tuple(output_shapes[0][2:]) if output_shapes is not None else self.kshp[2:]
        if None in khw:
            raise ValueError(f"{self._who()}: the FLOPs need the filter rows and cols, which the input shapes do "
                             f"not give and the op does not declare (filter_shape={fmt_shape(self.kshp)}); "
                             f"pass output_shapes")
        return conv_flops(tshp, (tshp[1], imshp[1]) + khw)



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
        if input_shape is not None and norm_shape(input_shape, "input_shape") != \
                norm_shape(image_shape, "image_shape"):
            raise ValueError(f"conv2d: input_shape={input_shape!r} and its old name image_shape="
                             f"{image_shape!r} are both given and disagree; give only input_shape")
        input_shape = image_shape
    op = Conv2d(imshp=input_shape, kshp=filter_shape, border_mode=border_mode, subsample=subsample,
                filter_flip=filter_flip, filter_dilation=filter_dilation)
    return op(input, filters)


def conv2d_grad_wrt_inputs(output_grad, filters, input_shape, filter_shape=None, border_mode="valid",
                           subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """Theano's `conv2d_grad_wrt_inputs` (a transposed convolution). input_shape gives the
    input's shape: 4 entries, of which the last two (rows, cols) must be given."""
    imshp = tuple(input_shape)
    if len(imshp) != 4:
        raise ValueError(f"conv2d_grad_wrt_inputs: input_shape must have 4 entries, got {input_shape!r}")
    hw = [as_tensor_variable(s) if isinstance(s, Variable) else s for s in imshp[2:]]
    if any(s is None for s in hw):
        raise ValueError("conv2d_grad_wrt_inputs: the rows and cols of input_shape must be given")
    if not any(isinstance(s, Variable) for s in hw):
        hw = constant(np.asarray([int(s) for s in hw], dtype="int64"))
    op = Conv2dGradInputs(imshp=[s if not isinstance(s, Variable) else None for s in imshp], kshp=filter_shape,
                          border_mode=border_mode, subsample=subsample, filter_flip=filter_flip,
                          filter_dilation=filter_dilation)
    return op(filters, output_grad, hw)


def conv2d_grad_wrt_weights(input, output_grad, filter_shape, input_shape=None, border_mode="valid",
                            subsample=(1, 1), filter_flip=True, filter_dilation=(1, 1)):
    """Theano's `conv2d_grad_wrt_weights`. filter_shape: 4 entries, the last two must be given."""
    kshp = tuple(filter_shape)
    if len(kshp) != 4:
        raise ValueError(f"conv2d_grad_wrt_weights: filter_shape must have 4 entries, got {filter_shape!r}")
    hw = [as_tensor_variable(s) if isinstance(s, Variable) else s for s in kshp[2:]]
    if any(s is None for s in hw):
        raise ValueError("conv2d_grad_wrt_weights: the rows and cols of filter_shape must be given")
    if not any(isinstance(s, Variable) for s in hw):
        hw = constant(np.asarray([int(s) for s in hw], dtype="int64"))
    op = Conv2dGradWeights(imshp=input_shape, kshp=[s if not isinstance(s, Variable) else None for s in kshp],
                           border_mode=border_mode, subsample=subsample, filter_flip=filter_flip,
                           filter_dilation=filter_dilation)
    return op(input, output_grad, hw)
