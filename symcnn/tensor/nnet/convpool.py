"""A convolution with its epilogue fused: conv2d, optional max pooling, optional bias, any
elementwise activation; forward and backward.

    ConvPoolAct      (x, W[, b])                              -> (out[, mask][, z])
    ConvPoolActGrad  (x, W[, mask][, z][, out], g_1..g_m)     -> (gW[, gb][, gx])

order='pool_act' (the tutorial's layer: conv -> pool -> + bias -> act):

z    = pool_2d(conv2d(x, W), ws, stride, ignore_border=True, mode=pool) + b.dimshuffle('x', 0, 'x', 'x')
       (pool 'max', 'average_inc_pad', 'average_exc_pad' or 'sum' -- without padding the two averages
       agree -- or None: no pooling; has_bias=False: no bias)
out  = act(z), act a scalar Composite program of one input (symcnn/tensor/nnet/conv_epilogue.py;
       None: the identity)
mask = (max pooling only) for every pooling window, a bitmask of the window positions whose conv value equals the
       window maximum: bit (u * ws[1] + v) is set when conv[n, k, i*st0 + u, j*st1 + v] == max.
       uint8 for windows of at most 8 elements, uint16 up to 16, uint32 up to 32.
z    is an output only with keep_z=True: when the gradient program reads the pre-activation
     (ReLU's derivative does; tanh's and sigmoid's read only out).

order='act_pool' (conv -> + bias -> act -> pool, as networks are written today):

z    = conv2d(x, W) + b.dimshuffle('x', 0, 'x', 'x')             (the conv output's shape)
act  = act(z)                                                    (the conv output's shape)
out  = pool_2d(act, ws, stride, ignore_border=True, mode=pool)   (the pooled shape)
mask = as above, of the activated values: bit (u * ws[1] + v) is set when act[n, k, i*st0 + u, j*st1 + v]
       equals its window's maximum (so ReLU's all-zero windows route the gradient to all their zeros,
       as MaxPoolGrad does).
z, act are outputs only when the gradient program reads them (keep_z, keep_act; when it reads both,
only z is kept and the backward computes act(z) again, the same program on the same values, which
saves a full-resolution write and read: kept_for_gradient). The values are
pooled after the activation, exactly as the unfused graph does: pooling and activation are not
commuted (with ties and rounding they differ).

Why a bitmask and not an argmax: Theano's max-pool gradient goes to *every* element tied for the
window maximum (symcnn.tensor.signal.pool.MaxPoolGrad), so one argmax per window would be wrong for
ties. The bitmask records exactly the set MaxPoolGrad would route to, for 1 byte per pooled value
(vs the 4 * ws[0] * ws[1] bytes of the conv output that the unfused graph keeps for the backward),
and the backward needs no recomputation of the convolution.

The backward ('pool_act') computes g_pre = dact(z, out, g_1, ..., g_m) (dact: a Composite of 2 + m inputs, the
elementwise graph T.grad built between the gradients flowing in and the pool gradient; z and out are
inputs of the op only when dact reads them), gb = sum of g_pre over (batch, rows, cols), routes g_pre
to every set bit of its window (summing where windows overlap; without pooling g_pre is the
conv-output gradient itself), and from that accumulates gW and, when `need_gx`, computes gx.
'act_pool' first routes the gradient g_1 of the pooled out to the activated values (every set bit
of the mask; an average pool spreads it over the window), giving g_act, then g_pre = dact(z, act,
g_act) at the conv output's shape is the conv-output gradient (dact has exactly 3 inputs; its op
also takes b, read only by `grad`, which rebuilds the routing from act(conv + b)).

in_act (either order): a program of one input applied to x before the convolution, conv2d(in_act(x),
W), in both ops; ConvPoolActGrad's gx is then the gradient of in_act(x), not of x. It is the
activation of the layer producing x, moved here when that layer would otherwise store both z and
act(z) (symcnn/rewrite/convpool_chain.py): it then stores z alone.

gx_act (ConvPoolActGrad with need_gx): a program of (x, g) applied to the input gradient g before it
is stored, gx = gx_act(x, g): the derivative of the layer producing x, moved here from that layer's
own gradient op (symcnn/rewrite/convpool_chain.py), which then reads this gx alone instead of also
reading x back from memory. gx is then the gradient of that layer's pre-activation.

Restrictions (checked by the constructors): ignore_border=True, pad=(0, 0); x,
W, b of one float dtype. Any conv border_mode/subsample/filter_flip and any pool ws/stride.
"""
import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..composite import Composite
from ..type import TensorType, is_float
from ..var import as_tensor_variable
from . import conv as C
from . import conv_geometry as G
from . import conv_epilogue as E
from ..signal import pool as P
from ..signal import pool_geometry as PG

__all__ = ["ConvPoolAct", "ConvPoolActGrad", "mask_dtype", "kept_for_gradient", "MAX_WINDOW", "POOL_MODES",
           "ORDERS"]

MAX_WINDOW = 32
POOL_MODES = ("max", "average_inc_pad", "average_exc_pad", "sum")
# the epilogue's order: 'pool_act' conv -> pool -> + bias -> act (the tutorial's LeNetConvPoolLayer),
# 'act_pool' conv -> + bias -> act -> pool
ORDERS = ("pool_act", "act_pool")


def kept_for_gradient(dact, order):
    """(keep_z, keep_act): which forward values the gradient program dact (inputs z, out or act, g..)
    needs from the forward. order 'act_pool' keeps only z when dact reads both z and act (act is
    act(z) again in the backward)."""
    reads_z, reads_second = E.reads_input(dact, 0), E.reads_input(dact, 1)
    if order != "act_pool":
        return reads_z, False
    return reads_z, reads_second and not reads_z


def mask_dtype(ws):
    """The unsigned type holding one bit per element of a ws[0] x ws[1] window."""
    n = ws[0] * ws[1]
    if n <= 8:
        return "uint8"
    if n <= 16:
        return "uint16"
    if n <= MAX_WINDOW:
        return "uint32"
    raise ValueError(f"ConvPoolAct: pooling windows of {n} elements (ws={ws}) do not fit the "
                     f"{MAX_WINDOW}-bit tie mask")


class _ConvPoolBase(Op):
    __props__ = ("imshp", "kshp", "border_mode", "subsample", "filter_flip",
                 "pool", "ws", "stride", "has_bias", "act", "order", "in_act")
    # a native backend chooses this op's kernels by the sizes its operands' types fix (function()
    # specialises a graph holding such ops on its arguments' sizes: compile/specialize.py)
    kernels_by_static_shapes = True

    def __init__(self, imshp=None, kshp=None, border_mode="valid", subsample=(1, 1), filter_flip=True,
                 pool="max", ws=(2, 2), stride=None, ignore_border=True, pad=(0, 0),
                 has_bias=True, act=None, order="pool_act", in_act=None):
        self.imshp = G.norm_shape(imshp, "input_shape")
        self.kshp = G.norm_shape(kshp, "filter_shape")
        self.border_mode = G.norm_border_mode(border_mode)
        self.subsample = G.norm_subsample(subsample)
        self.filter_flip = bool(filter_flip)
        self.pool = pool   # pool_2d's mode: 'max', or None for no pooling
        if self.pool is None:
            self.ws = self.stride = None
        else:
            self.ws = PG.pair(ws, "ws (the pooling window size)", 1)
            self.stride = self.ws if stride is None else PG.pair(stride, "stride", 1)
            pad = (0, 0) if pad is None else PG.pair(pad, "pad", 0)
            if self.pool not in POOL_MODES or ignore_border is not True or pad != (0, 0):
                raise NotImplementedError(f"{type(self).__name__}: only the modes {POOL_MODES} (or no pooling), "
                                          f"ignore_border=True, pad=(0, 0) are supported, got mode={self.pool!r}, "
                                          f"ignore_border={ignore_border!r}, pad={pad}")
        self.has_bias = bool(has_bias)
        if act is not None and not (isinstance(act, Composite) and act.nin == 1):
            raise TypeError(f"{type(self).__name__}: act must be a Composite of one input or None, got {act!r}")
        self.act = None if E.is_identity(act) else act
        # in_act: a program applied to x before the convolution -- the producing layer's
        # activation, which the rewrite moves here so that layer stores its pre-activation alone
        # (symcnn/rewrite/convpool_chain.py); the gradient's gx is then that of in_act(x)
        if in_act is not None and not (isinstance(in_act, Composite) and in_act.nin == 1):
            raise TypeError(f"{type(self).__name__}: in_act must be a Composite of one input or None, got {in_act!r}")
        self.in_act = None if E.is_identity(in_act) else in_act
        self.mask_dtype = mask_dtype(self.ws) if self.pool == "max" else None
        if order not in ORDERS:
            raise ValueError(f"{type(self).__name__}: order must be one of {ORDERS}, got {order!r}")
        self.order = order if self.pool else "pool_act"   # without pooling the two orders agree
        self.pool_last = self.order == "act_pool"

    def __str__(self):
        s = f"{type(self).__name__}{{{self.border_mode!r}, subsample={self.subsample}"
        if not self.filter_flip:
            s += ", filter_flip=False"
        if self.pool:
            s += f", ws={self.ws}, stride={self.stride}" + ("" if self.pool == "max" else f", mode={self.pool!r}")
            if self.pool_last:
                s += ", pool after act"
        if not self.has_bias:
            s += ", no bias"
        s += f", act={self.act.name if self.act is not None else 'identity'}"
        if self.in_act is not None:
            s += f", in_act={self.in_act.name}"
        if getattr(self, "gx_act", None) is not None:
            s += f", gx_act={self.gx_act.name}"
        for p in ("keep_z", "keep_act", "need_gx"):
            if getattr(self, p, None) is not None:
                s += f", {p}={getattr(self, p)}"
        if self.pool == "max" and getattr(self, "keep_mask", True) is False:
            s += ", keep_mask=False"
        return s + "}"

    __repr__ = __str__

    # -- the pieces of the unfused graph ---------------------------------------------------------
    def conv_op(self):
        return C.Conv2d(imshp=self.imshp, kshp=self.kshp, border_mode=self.border_mode,
                        subsample=self.subsample, filter_flip=self.filter_flip)

    def pool_op(self):
        return P.Pool(self.ws, ignore_border=True, stride=self.stride, pad=(0, 0), mode=self.pool)

    def window_scale(self):
        """What an average pool multiplies a window's sum by (1 for 'sum'; no padding, so both
        averages divide by the window size)."""
        return 1.0 if self.pool == "sum" else 1.0 / (self.ws[0] * self.ws[1])

    def activation(self, z):
        return z if self.act is None else E.expand_program(self.act, [z])

    def input_activation(self, x):
        """The convolution's input: in_act(x) (x itself without in_act), symbolic."""
        return x if self.in_act is None else E.expand_program(self.in_act, [x])

    def activated_input(self, x):
        """in_act(x) in numpy (x itself without in_act)."""
        return x if self.in_act is None else _impl(self.in_act, [x], x.dtype, x.shape)

    def unfused(self, x, W, b=None):
        """The graph this op stands for: (out, z, conv output, pooled output); 'act_pool': (out, z,
        conv output, the activated values)."""
        conv = self.conv_op()(self.input_activation(x), W)
        if self.pool_last:
            z = conv + b.dimshuffle("x", 0, "x", "x") if self.has_bias else conv
            act = self.activation(z)
            return self.pool_op()(act), z, conv, act
        pooled = self.pool_op()(conv) if self.pool else conv
        z = pooled + b.dimshuffle("x", 0, "x", "x") if self.has_bias else pooled
        return self.activation(z), z, conv, pooled

    def role_shape(self, role, conv, pooled):
        """The shape of a pooled-side operand (out, mask, the gradients flowing in) or, in the
        'act_pool' order, of a conv-side one (z, act)."""
        return tuple(conv) if self.pool_last and role in ("z", "act") else tuple(pooled)

    # -- shapes ------------------------------------------------------------------------------------
    def _who(self):
        return type(self).__name__

    def _resolve(self, x_shape, w_shape, x_desc, w_desc):
        im, k, conv = G.resolve(self._who(), self.border_mode, self.subsample,
                                 [(self.imshp, "the declared input_shape"), (x_shape, x_desc)],
                                 [(self.kshp, "the declared filter_shape"), (w_shape, w_desc)], [])
        return im, k, conv, self._pooled(conv)

    def _pooled(self, conv):
        if not self.pool:
            return tuple(conv)
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

    def _check_program(self, prog, nin, dtype, role):
        if prog is None:
            return
        if prog.out_dtype() != dtype:
            raise TypeError(f"{self._who()}: the {role} program computes {prog.out_dtype()}, expected {dtype}")

    def _geometry(self, kh, kw):
        return G.padding(self.border_mode, kh, kw), self.subsample

    def _conv(self, x, w):
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        return C.corr(self.activated_input(x), C.flip(w) if self.filter_flip else w, pad, stride)

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

    def sum_pool(self, conv):
        """The average (or sum) pool of a (B, K, OH, OW) conv output (numpy)."""
        B, K, OH, OW = conv.shape
        ph_ = max(0, (OH - self.ws[0]) // self.stride[0] + 1)
        pw_ = max(0, (OW - self.ws[1]) // self.stride[1] + 1)
        acc = np.zeros((B, K, ph_, pw_), dtype=conv.dtype)
        if ph_ and pw_:
            for _, idx in self._offsets(ph_, pw_):
                acc += conv[idx]
        return (acc * np.asarray(self.window_scale(), conv.dtype)).astype(conv.dtype, copy=False)

    def max_pool_with_mask(self, conv):
        """(pooled, tie mask) of a (B, K, OH, OW) conv output (numpy)."""
        B, K, OH, OW = conv.shape
        ph_ = max(0, (OH - self.ws[0]) // self.stride[0] + 1)
        pw_ = max(0, (OW - self.ws[1]) // self.stride[1] + 1)
        mask = np.zeros((B, K, ph_, pw_), dtype=self.mask_dtype)
        if not (ph_ and pw_):
            return np.zeros((B, K, ph_, pw_), dtype=conv.dtype), mask
        offsets = list(self._offsets(ph_, pw_))
        pooled = np.array(conv[offsets[0][1]])
        for _, idx in offsets[1:]:
            np.maximum(pooled, conv[idx], out=pooled)
        for bit, idx in offsets:
            mask |= (conv[idx] == pooled).astype(self.mask_dtype) << np.asarray(bit, self.mask_dtype)
        return pooled, mask


def _impl(prog, values, dtype, shape):
    with np.errstate(all="ignore"):
        return np.asarray(np.broadcast_to(prog.impl(*values), shape), dtype=dtype).copy()


class ConvPoolAct(_ConvPoolBase):
    """(x, W[, b]) -> (act(maxpool(conv2d(x, W)) + b[k])[, tie bitmask of every window][, z]);
    order='act_pool': (maxpool(act(conv2d(x, W) + b[k]))[, mask][, z][, act]). With in_act, x is
    in_act(x) throughout. keep_mask=False: no tie mask (a function without the gradient:
    rewrite/convpool_outputs.py)."""

    __props__ = _ConvPoolBase.__props__ + ("keep_z", "keep_act", "keep_mask")

    def __init__(self, *args, keep_z=False, keep_act=False, keep_mask=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_z = bool(keep_z)
        self.keep_act = bool(keep_act)
        self.keep_mask = bool(keep_mask)
        if self.keep_act and not self.pool_last:
            raise ValueError(f"{self._who()}: keep_act is for order='act_pool' (otherwise out is the activation)")

    def output_roles(self):
        return (["out"] + (["mask"] if self.pool == "max" and self.keep_mask else []) + (["z"] if self.keep_z else [])
                + (["act"] if self.keep_act else []))

    def make_node(self, x, W, b=None):
        who = self._who()
        x = C.check_tensor4(x, "input", who)
        W = C.check_tensor4(W, "filters", who)
        W = self._check_float(W, "filters", x.dtype)
        self._check_program(self.act, 1, x.dtype, "activation")
        self._check_program(self.in_act, 1, x.dtype, "input activation")
        ins = [x, W]
        _, k, conv, pooled = self._resolve(x.type.shape, W.type.shape, f"the input {x.describe()}",
                                           f"the filters {W.describe()}")
        if self.has_bias:
            if b is None:
                raise TypeError(f"{who}: has_bias=True needs a bias vector")
            b = self._check_float(b, "bias", x.dtype)
            if b.ndim != 1:
                raise TypeError(f"{who}: the bias must be a vector (one value per filter), got {b.describe()}")
            if k[0] is not None and b.type.shape[0] is not None and k[0] != b.type.shape[0]:
                raise ValueError(f"{who}: the bias {b.describe()} has {b.type.shape[0]} entries but there are "
                                 f"{k[0]} filters")
            ins.append(b)
        elif b is not None:
            raise TypeError(f"{who}: has_bias=False takes no bias, got {as_tensor_variable(b).describe()}")
        outs = []
        for role in self.output_roles():
            outs.append(TensorType(self.mask_dtype if role == "mask" else x.dtype,
                                   shape=self.role_shape(role, conv, pooled))())
        return Apply(self, ins, outs)

    def compute(self, x, w, b=None):
        """(out, mask or None, z) in numpy; 'act_pool': (out, mask or None, z, act)."""
        _, _, _, _ = self._resolve(x.shape, w.shape, "the run-time input", "the run-time filters")
        if self.has_bias and b.shape != (w.shape[0],):
            raise ValueError(f"{self._who()}: the bias has shape {b.shape} at run time, expected ({w.shape[0]},)")
        dtype = x.dtype
        conv = self._conv(x, w)
        if self.pool_last:
            z = ((conv + b.reshape(1, -1, 1, 1)) if self.has_bias else conv).astype(dtype, copy=False)
            act = z.copy() if self.act is None else _impl(self.act, [z], dtype, z.shape)
            if self.pool == "max":
                out, mask = self.max_pool_with_mask(act)
            else:
                out, mask = self.sum_pool(act), None
            return out, mask, z, act
        if self.pool == "max":
            pooled, mask = self.max_pool_with_mask(conv)
        else:
            pooled, mask = (self.sum_pool(conv) if self.pool else conv), None
        z = (pooled + b.reshape(1, -1, 1, 1)) if self.has_bias else pooled
        z = z.astype(dtype, copy=False)
        out = z.copy() if self.act is None else _impl(self.act, [z], dtype, z.shape)
        return out, mask, z

    def perform(self, node, inputs, out):
        res = self.compute(*inputs)
        vals = dict(zip(["out", "mask", "z", "act"], res))
        for k, role in enumerate(self.output_roles()):
            out[k][0] = vals[role]

    def infer_shape(self, node, shapes):
        xs, ws = shapes[:2]
        conv = self._conv_shape_sym(xs, ws)
        pooled = self._pooled(conv)
        return [self.role_shape(role, conv, pooled) for role in self.output_roles()]

    def flops(self, input_shapes, output_shapes=None):
        """The convolution's (the pooling, bias and activation are not counted)."""
        return self._conv_flops(input_shapes)

    def debug_mismatch(self, node, inputs, k, native, reference, rtol, atol):
        """mode='debug' compares the tie mask by what it means: the set of window
        positions holding the maximum. Which of two values that agree to rounding error is the
        larger depends on the order of the sums, so a window's bits may differ from the
        reference's at positions whose (reference) conv value is within tolerance of the window
        maximum; a bit anywhere else, or a window with no bit, is a real difference. Returns a
        description of the difference, None if there is none, or NotImplemented for the other
        outputs (compared as usual)."""
        if (self.output_roles()[k] != "mask" or native.shape != reference.shape
                or native.dtype != reference.dtype):
            return NotImplemented
        differ = native != reference
        if not differ.any():
            return None
        x, w = inputs[:2]
        conv = self._conv(x, w).astype("float64")
        if self.pool_last:   # the pooled values are the activated ones (computed as compute does)
            conv = self.compute(*inputs)[3].astype("float64")
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
        return [[role != "mask" for role in self.output_roles()] for _ in node.inputs]

    def grad(self, inputs, grads):
        """The gradient of the unfused graph (conv2d, Pool, add, activation) it stands for."""
        from ...gradient import grad_of_expansion
        roles = self.output_roles()
        kept = [r for r in ("z", "act") if r in roles]
        want = [grads[roles.index("out")]] + [grads[roles.index(r)] for r in kept]

        def build(ins):
            out, z, _, act = self.unfused(*ins)
            # z's (act's) own output is a copy: a known gradient of z itself would replace, not add
            # to, the gradient that reaches z from out
            from ... import scalar as ts
            from ..elemwise import Elemwise
            values = {"z": z, "act": act}
            return [out] + [Elemwise(ts.identity)(values[r]) for r in kept]
        return grad_of_expansion(build, inputs, want)


class ConvPoolActGrad(_ConvPoolBase):
    """(x, W[, mask][, z][, out], g_1..g_m) -> (gW[, gb][, gx]): the gradient of ConvPoolAct, with
    g_pre = dact(z, out, g_1..g_m) the gradient of its pre-activation (m = 0 when the cost is a
    function of out alone, sum(out ** 2) say). With in_act, x is in_act(x)
    throughout, and gx is the gradient of in_act(x) (what the producer's own gradient reads); with
    gx_act, gx is gx_act(x, that gradient) (the producer's derivative, moved here)."""

    __props__ = _ConvPoolBase.__props__ + ("dact", "need_gx", "gx_act")

    def __init__(self, *args, dact=None, need_gx=True, gx_act=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(dact, Composite) or dact.nin < 2:
            raise TypeError(f"{self._who()}: dact must be a Composite of inputs (z, out[, g_1, ...]), got {dact!r}")
        self.dact = dact
        self.need_gx = bool(need_gx)
        if gx_act is not None and not (isinstance(gx_act, Composite) and gx_act.nin == 2 and self.need_gx):
            raise TypeError(f"{self._who()}: gx_act must be a Composite of inputs (x, gx), with need_gx, "
                            f"or None, got {gx_act!r}")
        self.gx_act = gx_act
        self.reads_z = E.reads_input(dact, 0)
        self.reads_out = E.reads_input(dact, 1)   # out, or 'act_pool': act
        self.n_grads = dact.nin - 2
        # 'act_pool' with a program reading z and act: act is act(z) again, not an input
        self.recompute_act = self.pool_last and self.reads_z and self.reads_out
        if self.pool_last and self.n_grads != 1:
            raise TypeError(f"{self._who()}: with order='act_pool' dact reads (z, act, g_act): 3 inputs, "
                            f"got {dact.nin}")

    def _second_role(self):
        """The role of dact's input 1: the activation, pooled ('out') or not ('act')."""
        return "act" if self.pool_last else "out"

    def input_roles(self):
        return (["x", "W"] + (["b"] if self.pool_last and self.has_bias else [])
                + (["mask"] if self.pool == "max" else []) + (["z"] if self.reads_z else [])
                + ([self._second_role()] if self.reads_out and not self.recompute_act else [])
                + [f"g{i}" for i in range(self.n_grads)])

    def output_roles(self):
        return ["gW"] + (["gb"] if self.has_bias else []) + (["gx"] if self.need_gx else [])

    def make_node(self, *inputs):
        who = self._who()
        roles = self.input_roles()
        if len(inputs) != len(roles):
            raise TypeError(f"{who}: expected {len(roles)} inputs ({', '.join(roles)}), got {len(inputs)}")
        x = C.check_tensor4(inputs[0], "input", who)
        W = self._check_float(C.check_tensor4(inputs[1], "filters", who), "filters", x.dtype)
        self._check_program(self.dact, self.dact.nin, x.dtype, "gradient")
        self._check_program(self.in_act, 1, x.dtype, "input activation")
        self._check_program(self.gx_act, 2, x.dtype, "input gradient's activation derivative")
        im, k, conv, pooled = self._resolve(x.type.shape, W.type.shape, f"the input {x.describe()}",
                                            f"the filters {W.describe()}")
        ins = [x, W]
        for role, v in zip(roles[2:], inputs[2:]):
            v = as_tensor_variable(v)
            if role == "b":
                v = self._check_float(v, "bias", x.dtype)
                if v.ndim != 1:
                    raise TypeError(f"{who}: the bias must be a vector (one value per filter), got {v.describe()}")
                ins.append(v)
                continue
            if role == "mask":
                if v.dtype != self.mask_dtype:
                    raise TypeError(f"{who}: the tie mask must be {self.mask_dtype} for ws={self.ws}, "
                                    f"got {v.describe()}")
            else:
                v = self._check_float(v, role, x.dtype)
            if v.ndim != 4:
                raise TypeError(f"{who}: the {role} must be 4-d, got {v.describe()}")
            want = self.role_shape(role, conv, pooled)
            what = "conv output" if self.pool_last and role in ("z", "act") else "pooled conv output"
            for d, (a, e) in enumerate(zip(v.type.shape, want)):
                if a is not None and e is not None and a != e:
                    raise ValueError(f"{who}: the {role} {v.describe()} has static shape {v.type.shape} but the "
                                     f"{what} has shape {want} (dimension {d}: {a} vs {e})")
            ins.append(v)
        outs = [TensorType(x.dtype, shape=k)()]
        if self.has_bias:
            outs.append(TensorType(x.dtype, shape=(k[0],))())
        if self.need_gx:
            outs.append(TensorType(x.dtype, shape=im)())
        return Apply(self, ins, outs)

    def conv_output_grad(self, mask, g_pre, conv_shape):
        """g_pre routed to every tied maximum of its window, or spread over the window (average
        pools) (numpy)."""
        gconv = np.zeros(conv_shape, dtype=g_pre.dtype)
        ph_, pw_ = g_pre.shape[2:]
        if ph_ and pw_:
            overlap = self.stride[0] < self.ws[0] or self.stride[1] < self.ws[1]
            for bit, idx in self._offsets(ph_, pw_):
                if mask is None:
                    gconv[idx] += g_pre * np.asarray(self.window_scale(), g_pre.dtype)
                    continue
                hit = (mask >> np.asarray(bit, mask.dtype)) & np.asarray(1, mask.dtype)
                if overlap:
                    gconv[idx] += hit * g_pre
                else:
                    gconv[idx] = hit * g_pre
        return gconv

    def program_inputs(self, named):
        """The dact program's inputs (z, out, g_1..g_m) from the op's inputs by role; a value the
        program does not read is a 0 of the right dtype."""
        zero = np.zeros((), dtype=named["x"].dtype)
        if self.recompute_act:   # as the forward computed it
            named = dict(named, act=_impl(self.act, [named["z"]], named["z"].dtype, named["z"].shape)
                         if self.act is not None else named["z"])
        return ([named.get("z", zero), named.get(self._second_role(), zero)]
                + [named[f"g{i}"] for i in range(self.n_grads)])

    def perform(self, node, inputs, out_storage):
        named = dict(zip(self.input_roles(), inputs))
        x, w = named["x"], named["W"]
        im, k, conv, pooled = self._resolve(x.shape, w.shape, "the run-time input", "the run-time filters")
        for role, v in named.items():
            if role == "b":
                if v.shape != (k[0],):
                    raise ValueError(f"{self._who()}: the bias has shape {v.shape} at run time, expected ({k[0]},)")
            elif role not in ("x", "W") and tuple(v.shape) != self.role_shape(role, conv, pooled):
                raise ValueError(f"{self._who()}: the {role} has shape {v.shape} at run time, "
                                 f"expected {self.role_shape(role, conv, pooled)}")
        dtype = node.outputs[0].dtype
        if self.pool_last:
            # the pooled gradient to the activated values, then through the activation's derivative
            named = dict(named, g0=self.conv_output_grad(named.get("mask"), named["g0"], conv))
            g_pre = gconv = _impl(self.dact, self.program_inputs(named), dtype, tuple(conv))
        else:
            g_pre = _impl(self.dact, self.program_inputs(named), dtype, tuple(pooled))
            gconv = self.conv_output_grad(named.get("mask"), g_pre, conv) if self.pool else g_pre
        pad, stride = self._geometry(w.shape[2], w.shape[3])
        gw = C.corr_grad_weights(self.activated_input(x), gconv, w.shape[2:], pad, stride)
        res = {"gW": np.ascontiguousarray(C.flip(gw) if self.filter_flip else gw).astype(dtype, copy=False),
               "gb": g_pre.sum(axis=(0, 2, 3), dtype="float64").astype(dtype)}   # float64 sums, as Theano
        if self.need_gx:
            wf = C.flip(w) if self.filter_flip else w
            res["gx"] = C.corr_grad_inputs(wf, gconv, x.shape[2:], pad, stride).astype(dtype, copy=False)
            if self.gx_act is not None:
                res["gx"] = _impl(self.gx_act, [x, res["gx"]], dtype, x.shape)
        for k_, role in enumerate(self.output_roles()):
            out_storage[k_][0] = res[role]

    def flops(self, input_shapes, output_shapes=None):
        """The convolution gradients': the filters' and, with need_gx, the input's, each as many
        as the forward convolution."""
        return self._conv_flops(input_shapes) * (2 if self.need_gx else 1)

    def infer_shape(self, node, shapes):
        xs, ws = shapes[0], shapes[1]
        res = {"gW": tuple(ws), "gb": (ws[0],), "gx": tuple(xs)}
        return [res[r] for r in self.output_roles()]

    def connection_pattern(self, node):
        n = len(node.outputs)
        return [[r not in ("mask", "b")] * n for r in self.input_roles()]

    def grad(self, inputs, grads):
        """Expand to the unfused backward graph and differentiate that. The routing is rebuilt
        from the forward (the maxima of the recomputed conv of x and W; 'act_pool': of the
        recomputed act(conv + b)): it is what the mask encodes, and it is piecewise constant, so
        the mask and b get no gradient. The expansion is built on stand-ins for the inputs
        (grad_of_expansion): z, out or act computed by the forward from x and W get only their
        own paths here, the outer grad adds the forward's."""
        from ...gradient import grad_of_expansion
        roles = self.input_roles()

        def build(ins):
            res = self._expansion(dict(zip(roles, ins)))
            return [res[r] for r in self.output_roles()]
        got = grad_of_expansion(build, inputs, grads)
        return [None if r in ("mask", "b") else g for r, g in zip(roles, got)]

    def _expansion(self, named):
        """The unfused backward graph of the inputs by role: {'gW', 'gb', 'gx'}."""
        from .. import math as T
        x, W = self.input_activation(named["x"]), named["W"]   # gx: the gradient of in_act(x)
        conv_op = self.conv_op()
        if self.pool_last:
            conv = conv_op(x, W)
            act = self.activation(conv + named["b"].dimshuffle("x", 0, "x", "x") if self.has_bias else conv)
            if self.pool == "max":
                g_act = P.MaxPoolGrad(self.ws, True, self.stride, (0, 0))(act, self.pool_op()(act), named["g0"])
            else:
                g_act = P.AveragePoolGrad(self.ws, True, self.stride, (0, 0), self.pool)(act, named["g0"])
            zero = T.zeros_like(g_act)
            act_in = self.activation(named["z"]) if self.recompute_act else named.get("act", zero)
            g_pre = gconv = E.expand_program(self.dact, [named.get("z", zero), act_in, g_act])
        else:
            zero = T.zeros_like(named["g0"]) if self.n_grads else None
            prog_ins = [named.get("z", zero), named.get("out", zero)] + [named[f"g{i}"] for i in range(self.n_grads)]
            g_pre = E.expand_program(self.dact, prog_ins)
            if self.pool == "max":
                conv = conv_op(x, W)
                gconv = P.MaxPoolGrad(self.ws, True, self.stride, (0, 0))(conv, self.pool_op()(conv), g_pre)
            elif self.pool:
                gconv = P.AveragePoolGrad(self.ws, True, self.stride, (0, 0), self.pool)(conv_op(x, W), g_pre)
            else:
                gconv = g_pre
        res = {"gW": conv_op.grad([x, W], [gconv])[1], "gb": T.sum(g_pre, axis=(0, 2, 3))}
        if self.need_gx:
            res["gx"] = conv_op.grad([x, W], [gconv])[0]
            if self.gx_act is not None:
                res["gx"] = E.expand_program(self.gx_act, [named["x"], res["gx"]])
        return res
