"""Fused convolution + max pooling + bias + tanh (the LeNetConvPoolLayer), forward and backward.

    ConvPoolTanh      (x, W, b)                      -> (out, mask)
    ConvPoolTanhGrad  (x, W, out, mask, g_out)       -> (gW, gb[, gx])

out  = tanh(pool_2d(conv2d(x, W), ws, stride, ignore_border=True, mode='max') + b.dimshuffle('x', 0, 'x', 'x'))
mask = for every pooling window, a bitmask of the window positions whose conv value equals the
       window maximum: bit (u * ws[1] + v) is set when conv[n, k, i*st0 + u, j*st1 + v] == max.
       uint8 for windows of at most 8 elements, uint16 up to 16, uint32 up to 32 (the rewrite
       symcnn/rewrite/convpool.py does not fire for larger windows).

Why a bitmask and not an argmax: Theano's max-pool gradient goes to *every* element tied for the
window maximum (symcnn.tensor.signal.pool.MaxPoolGrad), so one argmax per window would be wrong for
ties. The bitmask records exactly the set MaxPoolGrad would route to, for 1 byte per pooled value
(vs the 4 * ws[0] * ws[1] bytes of the conv output that the unfused graph keeps for the backward),
and the backward needs no recomputation of the convolution.

The backward computes g_pre = g_out * (1 - out * out) (tanh'), gb = sum of g_pre over (batch, rows,
cols), routes g_pre to every set bit of its window (summing where windows overlap) into the conv-output
gradient of one image at a time, and from that one image's gradient accumulates gW and, when
`need_gx`, computes gx (the native kernel never holds more than one image of the conv-output
gradient). Its outputs are (gW, gb) and, with need_gx=True, gx as a third output.

Restrictions (checked by the constructors): pool mode 'max', ignore_border=True, pad=(0, 0); x, W,
b of one float dtype. Any conv border_mode/subsample/filter_flip and any pool ws/stride.
"""
import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..type import TensorType, is_float
from ..var import as_tensor_variable
from . import conv as C
from . import conv_geometry as G
from ..signal import pool as P
from ..signal import pool_geometry as PG

__all__ = ["ConvPoolTanh", "ConvPoolTanhGrad", "mask_dtype", "MAX_WINDOW"]

MAX_WINDOW = 32


def mask_dtype(ws):
    """The unsigned type holding one bit per element of a ws[0] x ws[1] window."""
    n = ws[0] * ws[1]
    if n <= 8:
        return "uint8"
    if n <= 16:
        return "uint16"
    if n <= MAX_WINDOW:
        return "uint32"
    raise ValueError(f"ConvPoolTanh: pooling windows of {n} elements (ws={ws}) do not fit the "
                     f"{MAX_WINDOW}-bit tie mask")


class _ConvPoolBase(Op):
    __props__ = ("imshp", "kshp", "border_mode", "subsample", "filter_flip",
                 "ws", "stride", "ignore_border", "mode", "pad")

    def __init__(self, imshp=None, kshp=None, border_mode="valid", subsample=(1, 1), filter_flip=True,
                 ws=(2, 2), stride=None, ignore_border=True, mode="max", pad=(0, 0)):
        self.imshp = G.norm_shape(imshp, "input_shape")
        self.kshp = G.norm_shape(kshp, "filter_shape")
        self.border_mode = G.norm_border_mode(border_mode)
        self.subsample = G.norm_subsample(subsample)
        self.filter_flip = bool(filter_flip)
        self.ws = PG.pair(ws, "ws (the pooling window size)", 1)
        self.stride = self.ws if stride is None else PG.pair(stride, "stride", 1)
        self.pad = (0, 0) if pad is None else PG.pair(pad, "pad", 0)
        self.ignore_border = ignore_border
        self.mode = mode
        if mode != "max" or ignore_border is not True or self.pad != (0, 0):
            raise NotImplementedError(f"{type(self).__name__}: only mode='max', ignore_border=True, pad=(0, 0) "
                                      f"are supported, got mode={mode!r}, ignore_border={ignore_border!r}, "
                                      f"pad={self.pad}")
        self.mask_dtype = mask_dtype(self.ws)

    def __str__(self):
        s = f"{type(self).__name__}{{{self.border_mode!r}, subsample={self.subsample}"
        if not self.filter_flip:
            s += ", filter_flip=False"
        s += f", ws={self.ws}, stride={self.stride}"
        if getattr(self, "need_gx", None) is not None:
            s += f", need_gx={self.need_gx}"
        return s + "}"

    __repr__ = __str__

    # -- the pieces of the unfused graph ---------------------------------------------------------
    def conv_op(self, imshp=None, kshp=None):
        return C.Conv2d(imshp=imshp or self.imshp, kshp=kshp or self.kshp, border_mode=self.border_mode,
                        subsample=self.subsample, filter_flip=self.filter_flip)

    def pool_op(self):
        return P.Pool(self.ws, ignore_border=True, stride=self.stride, pad=(0, 0), mode="max")

    def unfused(self, x, W, b):
        """The graph this op stands for: (activation, conv output, pooled output)."""
        from .. import math as T
        conv = self.conv_op()(x, W)
        pooled = self.pool_op()(conv)
        return T.tanh(pooled + b.dimshuffle("x", 0, "x", "x")), conv, pooled

    # -- shapes ------------------------------------------------------------------------------------
    def _who(self):
        return type(self).__name__

    def _resolve(self, x_shape, w_shape, x_desc, w_desc):
        im, k, conv = G.resolve(self._who(), self.border_mode, self.subsample,
                                 [(self.imshp, "the declared input_shape"), (x_shape, x_desc)],
                                 [(self.kshp, "the declared filter_shape"), (w_shape, w_desc)], [])
        return im, k, conv, self._pooled(conv)

    def _pooled(self, conv):
        return tuple(conv[:2]) + tuple(PG.out_len(conv[2 + d], self.ws[d], self.stride[d], 0, True)
                                       for d in range(2))

    def _conv_shape_sym(self, xs, ws):
        return G.out_shape(xs, ws, self.border_mode, self.subsample)

    def _conv_flops(self, input_shapes):
        """2 * multiply-adds of the convolution at these input shapes (x and W first)."""
        xs, ws = input_shapes[:2]
        return G.conv_flops(G.out_shape(xs, ws, self.border_mode, self.subsample), ws)

    def _check_float(self, v, role, dtype=None):
        v = as_tensor_variable(v)
        if not is_float(v.dtype):
            raise TypeError(f"{self._who()}: the {role} must be a float tensor, got {v.describe()}")
        if dtype is not None and v.dtype != dtype:
            raise TypeError(f"{self._who()}: the {role} {v.describe()} must have the input's dtype {dtype}")
        return v

    def _geometry(self, kh, kw):
        return G.padding(self.border_mode, kh, kw), self.subsample

    # -- numpy helpers -----------------------------------------------------------------------------
    def _offsets(self, ph_, pw_):
        """(bit, index) for every window offset: index selects that offset of every window of a
        (B, K, OH, OW) conv output as a (B, K, PH, PW) strided view."""
        (sh, sw), bit = self.stride, 0
        for u in range(self.ws[0]):
            for v in range(self.ws[1]):
                yield bit, (slice(None), slice(None), slice(u, u + sh * (ph_ - 1) + 1, sh),
                            slice(v, v + sw * (pw_ - 1) + 1, sw))
                bit += 1


class ConvPoolTanh(_ConvPoolBase):
    """(x, W, b) -> (tanh(maxpool(conv2d(x, W)) + b[k]), tie bitmask of every window)."""

    def make_node(self, x, W, b):
        who = self._who()
        x = C.check_tensor4(x, "input", who)
        W = C.check_tensor4(W, "filters", who)
        W = self._check_float(W, "filters", x.dtype)
        b = self._check_float(b, "bias", x.dtype)
        if b.ndim != 1:
            raise TypeError(f"{who}: the bias must be a vector (one value per filter), got {b.describe()}")
        _, k, _, pooled = self._resolve(x.type.shape, W.type.shape, f"the input {x.describe()}",
                                        f"the filters {W.describe()}")
        if k[0] is not None and b.type.shape[0] is not None and k[0] != b.type.shape[0]:
            raise ValueError(f"{who}: the bias {b.describe()} has {b.type.shape[0]} entries but there are "
                             f"{k[0]} filters")
        return Apply(self, [x, W, b], [TensorType(x.dtype, shape=pooled)(),
                                       TensorType(self.mask_dtype, shape=pooled)()])

    def perform(self, node, inputs, out):
        x, w, b = inputs
        _, _, _, _ = self._resolve(x.shape, w.shape, "the run-time input", "the run-time filters")
        if b.shape != (w.shape[0],):
            raise ValueError(f"{self._who()}: the bias has shape {b.shape} at run time, expected ({w.shape[0]},)")
        dtype = node.outputs[0].dtype
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        conv = C.corr(x, C.flip(w) if self.filter_flip else w, pad, stride)
        B, K, OH, OW = conv.shape
        ph_ = max(0, (OH - self.ws[0]) // self.stride[0] + 1)
        pw_ = max(0, (OW - self.ws[1]) // self.stride[1] + 1)
        mask = np.zeros((B, K, ph_, pw_), dtype=self.mask_dtype)
        if ph_ and pw_:
            offsets = list(self._offsets(ph_, pw_))
            pooled = np.array(conv[offsets[0][1]])
            for _, idx in offsets[1:]:
                np.maximum(pooled, conv[idx], out=pooled)
            for bit, idx in offsets:
                mask |= (conv[idx] == pooled).astype(self.mask_dtype) << np.asarray(bit, self.mask_dtype)
        else:
            pooled = np.zeros((B, K, ph_, pw_), dtype=dtype)
        out[0][0] = np.tanh(pooled + b.reshape(1, K, 1, 1)).astype(dtype, copy=False)
        out[1][0] = mask

    def infer_shape(self, node, shapes):
        xs, ws, _ = shapes
        pooled = self._pooled(self._conv_shape_sym(xs, ws))
        return [pooled, pooled]

    def flops(self, input_shapes, output_shapes=None):
        """The convolution's (the pooling, bias and tanh are not counted)."""
        return self._conv_flops(input_shapes)

    def debug_mismatch(self, node, inputs, k, native, reference, rtol, atol):
        """mode='debug' compares the tie mask (output 1) by what it means: the set of window
        positions holding the maximum. Which of two values that agree to rounding error is the
        larger depends on the order of the sums, so a window's bits may differ from the
        reference's at positions whose (reference) conv value is within tolerance of the window
        maximum; a bit anywhere else, or a window with no bit, is a real difference. Returns a
        description of the difference, None if there is none, or NotImplemented for the other
        outputs (compared as usual)."""
        if k != 1 or native.shape != reference.shape or native.dtype != reference.dtype:
            return NotImplemented
        differ = native != reference
        if not differ.any():
            return None
        x, w, _ = inputs
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        conv = C.corr(x, C.flip(w) if self.filter_flip else w, pad, stride).astype("float64")
        offsets = list(self._offsets(*native.shape[2:]))
        pooled = np.max([conv[idx] for _, idx in offsets], axis=0)
        tol = atol * max(1.0, float(np.abs(pooled).max(initial=0.0))) + rtol * np.abs(pooled)
        flipped = native ^ reference
        bad = differ & (native == 0)
        for bit, idx in offsets:
            changed = ((flipped >> np.asarray(bit, native.dtype)) & 1).astype(bool)
            bad |= changed & (pooled - conv[idx] > tol)
        if bad.any():
            n = int(bad.sum())
            return (f"the tie masks of {n} window{'s' * (n != 1)} differ at positions that do not hold "
                    f"the window maximum (first at index {tuple(int(i) for i in np.argwhere(bad)[0])})")
        return None

    def connection_pattern(self, node):
        return [[True, False], [True, False], [True, False]]

    def grad(self, inputs, grads):
        """The gradient of the unfused graph (conv2d, Pool, add, tanh) it stands for."""
        from ...gradient import grad_of_expansion
        return grad_of_expansion(lambda ins: self.unfused(*ins)[0], inputs, grads[:1])



class ConvPoolTanhGrad(_ConvPoolBase):
    """(x, W, out, mask, g_out) -> (gW, gb) + (gx,) if need_gx: the gradient of ConvPoolTanh."""

    __props__ = _ConvPoolBase.__props__ + ("need_gx",)

    def __init__(self, *args, need_gx=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.need_gx = bool(need_gx)

    def make_node(self, x, W, out, mask, g_out):
        who = self._who()
        x = C.check_tensor4(x, "input", who)
        W = self._check_float(C.check_tensor4(W, "filters", who), "filters", x.dtype)
        out = self._check_float(out, "forward activation", x.dtype)
        g_out = self._check_float(g_out, "output gradient", x.dtype)
        mask = as_tensor_variable(mask)
        if mask.dtype != self.mask_dtype:
            raise TypeError(f"{who}: the tie mask must be {self.mask_dtype} for ws={self.ws}, got {mask.describe()}")
        im, k, _, pooled = self._resolve(x.type.shape, W.type.shape, f"the input {x.describe()}",
                                         f"the filters {W.describe()}")
        for v, role in ((out, "forward activation"), (mask, "tie mask"), (g_out, "output gradient")):
            if v.ndim != 4:
                raise TypeError(f"{who}: the {role} must be 4-d, got {v.describe()}")
            for d, (a, e) in enumerate(zip(v.type.shape, pooled)):
                if a is not None and e is not None and a != e:
                    raise ValueError(f"{who}: the {role} {v.describe()} has static shape {v.type.shape} but the "
                                     f"pooled conv output has shape {pooled} (dimension {d}: {a} vs {e})")
        outs = [TensorType(x.dtype, shape=k)(), TensorType(x.dtype, shape=(k[0],))()]
        if self.need_gx:
            outs.append(TensorType(x.dtype, shape=im)())
        return Apply(self, [x, W, out, mask, g_out], outs)

    def conv_output_grad(self, mask, g_pre, conv_shape):
        """g_pre routed to every tied maximum of its window (numpy)."""
        gconv = np.zeros(conv_shape, dtype=g_pre.dtype)
        ph_, pw_ = g_pre.shape[2:]
        if ph_ and pw_:
            overlap = self.stride[0] < self.ws[0] or self.stride[1] < self.ws[1]
            for bit, idx in self._offsets(ph_, pw_):
                hit = (mask >> np.asarray(bit, mask.dtype)) & np.asarray(1, mask.dtype)
                if overlap:
                    gconv[idx] += hit * g_pre
                else:
                    gconv[idx] = hit * g_pre
        return gconv

    def perform(self, node, inputs, out_storage):
        x, w, out, mask, g_out = inputs
        im, k, conv, pooled = self._resolve(x.shape, w.shape, "the run-time input", "the run-time filters")
        for v, role in ((out, "forward activation"), (mask, "tie mask"), (g_out, "output gradient")):
            if tuple(v.shape) != tuple(pooled):
                raise ValueError(f"{self._who()}: the {role} has shape {v.shape} at run time, expected {pooled}")
        dtype = node.outputs[0].dtype
        one = np.asarray(1, dtype=dtype)
        g_pre = (g_out * (one - out * out)).astype(dtype, copy=False)
        gconv = self.conv_output_grad(mask, g_pre, conv)
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        gw = C.corr_grad_weights(x, gconv, w.shape[2:], pad, stride)
        out_storage[0][0] = np.ascontiguousarray(C.flip(gw) if self.filter_flip else gw).astype(dtype, copy=False)
        out_storage[1][0] = g_pre.sum(axis=(0, 2, 3)).astype(dtype, copy=False)
        if self.need_gx:
            wf = C.flip(w) if self.filter_flip else w
            out_storage[2][0] = C.corr_grad_inputs(wf, gconv, x.shape[2:], pad, stride).astype(dtype, copy=False)

    def flops(self, input_shapes, output_shapes=None):
        """The convolution gradients': the filters' and, with need_gx, the input's, each as many
        as the forward convolution."""
        return self._conv_flops(input_shapes) * (2 if self.need_gx else 1)

    def infer_shape(self, node, shapes):
        xs, ws = shapes[0], shapes[1]
        res = [tuple(ws), (ws[0],)]
        if self.need_gx:
            res.append(tuple(xs))
        return res

    def connection_pattern(self, node):
        n = len(node.outputs)
        return [[True] * n, [True] * n, [True] * n, [False] * n, [True] * n]

    def grad(self, inputs, grads):
        """Expand to the unfused backward graph and differentiate that. The routing is rebuilt
        from the forward (the maxima of the recomputed conv of x and W): it is what the mask
        encodes, and it is piecewise constant, so the mask gets no gradient."""
        from ... import gradient
        from .. import math as T
        x, W, out, mask, g_out = inputs
        conv = self.conv_op()(x, W)
        pooled = self.pool_op()(conv)
        g_pre = g_out * (1 - out * out)
        gconv = P.MaxPoolGrad(self.ws, True, self.stride, (0, 0))(conv, pooled, g_pre)
        conv_op = self.conv_op()
        gW = conv_op.grad([x, W], [gconv])[1]
        gb = T.sum(g_pre, axis=(0, 2, 3))
        outs = [gW, gb]
        if self.need_gx:
            outs.append(conv_op.grad([x, W], [gconv])[0])
        known = {o: g for o, g in zip(outs, grads) if g is not None}
        res = gradient.grad(None, [x, W, out, g_out], known_grads=known, disconnected_inputs="ignore")
        return [res[0], res[1], res[2], None, res[3]]

