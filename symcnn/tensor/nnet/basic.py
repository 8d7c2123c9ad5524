"""Softmax (row-wise), its gradient, log-softmax, the fused softmax cross-entropy with
integer targets (and its gradient), and the sigmoid re-export.

The fused ops are what the stabilize rewrites (symcnn/rewrite/stabilize.py) turn the
tutorial's `-mean(log(softmax(z))[arange(y.shape[0]), y])` and its gradient into:

* LogSoftmax(x)                  = x - max(x) - log(sum(exp(x - max(x))))   (last axis)
* SoftmaxGrad(dy, sm)            = sm * (dy - sum(dy * sm, axis=-1, keepdims=True))
* CrossEntropySoftmax(z, y)[i]   = -log_softmax(z)[i, y[i]]  for i < len(y)
* CrossEntropySoftmaxGrad(gsel, z, y)[i] = gsel[i] * (onehot(y[i]) - softmax(z)[i])  for i < len(y),
                                   0 for the rows of z beyond len(y)

(gsel is the gradient with respect to the selected log-probabilities log_softmax(z)[i, y[i]],
so the gradient of the tutorial's mean NLL is (softmax - onehot) / n.)  Labels follow numpy's
indexing: -C <= y[i] < C (negatives count from the end), anything else is an IndexError.
"""
import weakref

import numpy as np

from ...graph.basic import Apply
from ...graph.op import Op
from ..math import sigmoid  # noqa: F401  (T.nnet.sigmoid is the same object as T.sigmoid)
from ..type import TensorType, is_float, is_int
from ..var import as_tensor_variable

# id(input) -> (weakref to the input, weakref to the output) of the last Softmax/LogSoftmax
# node built on that input, so a gradient can reuse the forward node's output instead of
# building an equal node (the merge rewrite would dedupe it, but the reference mode does not
# rewrite).
_forward = {}


def _remember(op, x, out):
    key = (type(op), id(x))

    def forget(_, key=key):
        _forward.pop(key, None)

    _forward[key] = (weakref.ref(x, forget), weakref.ref(out))


def _forward_output(op, x):
    """The output of an existing `op(x)` node if there is one, else a new `op(x)`."""
    entry = _forward.get((type(op), id(x)))
    if entry is not None:
        xr, outr = entry
        out = outr()
        if xr() is x and out is not None and out.owner is not None and out.owner.op == op \
                and out.owner.inputs[0] is x:
            return out
    return op(x)


def _float_rows(x, who):
    x = as_tensor_variable(x)
    if x.ndim not in (1, 2):
        raise TypeError(f"{who} takes a vector or a matrix, got {x.describe()}")
    if not is_float(x.dtype):
        raise TypeError(f"{who} takes floats, got {x.describe()}")
    return x


def _merge_static(a, b, what):
    """The static shape both a and b agree on (an error if they contradict)."""
    out = []
    for d, (p, q) in enumerate(zip(a.type.shape, b.type.shape)):
        if p is not None and q is not None and p != q:
            raise ValueError(f"{what}: {a.describe()} and {b.describe()} differ in dimension {d} ({p} vs {q})")
        out.append(p if p is not None else q)
    return tuple(out)


def _labels(y, who):
    y = as_tensor_variable(y)
    if y.ndim != 1 or not is_int(y.dtype) or y.dtype == "bool":
        raise TypeError(f"{who}: the labels must be an integer vector, got {y.describe()}")
    return y


def _logits(z, who):
    z = as_tensor_variable(z)
    if z.ndim != 2 or not is_float(z.dtype):
        raise TypeError(f"{who}: the logits must be a float matrix (rows x classes), got {z.describe()}")
    return z


def _check_rows(z, y, who):
    m, n = z.type.shape[0], y.type.shape[0]
    if m is not None and n is not None and n > m:
        raise IndexError(f"{who}: {y.describe()} has {n} labels but {z.describe()} has only {m} rows")


def _np_checked_labels(z, y, who):
    """y as int64 in [0, C) (negatives wrapped), checking what numpy indexing would."""
    m, c = z.shape
    n = y.shape[0]
    if c == 0 and m > 0:
        raise ValueError(f"{who}: softmax over an empty dimension (logits of shape {z.shape})")
    if n > m:
        raise IndexError(f"{who}: index {m} is out of bounds for axis 0 with size {m} "
                         f"({n} labels for {m} rows of logits)")
    yy = y.astype("int64")
    bad = (yy < -c) | (yy >= c)
    if bad.any():
        raise IndexError(f"{who}: index {int(yy[bad][0])} is out of bounds for axis 1 with size {c} "
                         f"(a label out of range)")
    return np.where(yy < 0, yy + c, yy)


class Softmax(Op):
    """softmax over the last axis of a vector or matrix, computed stably."""

    def make_node(self, x):
        x = _float_rows(x, "softmax")
        node = Apply(self, [x], [TensorType(x.dtype, shape=x.type.shape)()])
        _remember(self, x, node.outputs[0])
        return node

    def perform(self, node, inputs, out):
        x = inputs[0]
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        out[0][0] = (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)

    def infer_shape(self, node, shapes):
        return shapes

    def grad(self, inputs, grads):
        from .. import math as T
        x, = inputs
        sm = _forward_output(self, x)
        g, = grads
        if g.ndim != sm.ndim or g.type.broadcastable != sm.type.broadcastable:
            # a broadcast gradient: the elementwise formula broadcasts it
            return [sm * (g - T.sum(g * sm, axis=-1, keepdims=True))]
        return [softmax_grad(g, sm)]


softmax_op = Softmax()


def softmax(c):
    """Softmax of each row of a matrix. As in Theano 1.0, a vector is taken as one row and the
    result is a 1 x N matrix."""
    c = as_tensor_variable(c)
    if c.ndim == 1:
        from ..basic import dimshuffle
        c = dimshuffle(c, "x", 0)
    return softmax_op(c)


class SoftmaxGrad(Op):
    """SoftmaxGrad(dy, sm) = sm * (dy - sum(dy * sm, axis=-1, keepdims=True)): the gradient of
    softmax given dy (the gradient of its output) and sm (its output), over the last axis."""

    def make_node(self, dy, sm):
        dy = _float_rows(dy, "SoftmaxGrad (dy)")
        sm = _float_rows(sm, "SoftmaxGrad (sm)")
        if dy.ndim != sm.ndim:
            raise TypeError(f"SoftmaxGrad: dy {dy.describe()} and sm {sm.describe()} differ in ndim")
        shape = _merge_static(dy, sm, "SoftmaxGrad")
        dtype = str(np.result_type(dy.dtype, sm.dtype))
        return Apply(self, [dy, sm], [TensorType(dtype, shape=shape)()])

    def perform(self, node, inputs, out):
        dy, sm = inputs
        if dy.shape != sm.shape:
            raise ValueError(f"SoftmaxGrad: dy of shape {dy.shape} and sm of shape {sm.shape} differ")
        dt = node.outputs[0].dtype
        dy, sm = dy.astype(dt), sm.astype(dt)
        out[0][0] = np.asarray(sm * (dy - (dy * sm).sum(axis=-1, keepdims=True)), dtype=dt)

    def infer_shape(self, node, shapes):
        return [shapes[1]]

    def grad(self, inputs, grads):
        from .. import math as T
        dy, sm = inputs
        g, = grads
        g_dy = softmax_grad(g, sm)
        s = T.sum(dy * sm, axis=-1, keepdims=True)
        g_sm = g * (dy - s) - dy * T.sum(g * sm, axis=-1, keepdims=True)
        return [T.cast(g_dy, dy.dtype), T.cast(g_sm, sm.dtype)]


softmax_grad_op = SoftmaxGrad()


def softmax_grad(dy, sm):
    return softmax_grad_op(dy, sm)


class LogSoftmax(Op):
    """log(softmax(x)) over the last axis, computed stably: x - max - log(sum(exp(x - max)))."""

    def make_node(self, x):
        x = _float_rows(x, "log_softmax")
        node = Apply(self, [x], [TensorType(x.dtype, shape=x.type.shape)()])
        _remember(self, x, node.outputs[0])
        return node

    def perform(self, node, inputs, out):
        x = inputs[0]
        s = x - x.max(axis=-1, keepdims=True)
        out[0][0] = np.asarray(s - np.log(np.exp(s).sum(axis=-1, keepdims=True)), dtype=x.dtype)

    def infer_shape(self, node, shapes):
        return shapes

    def grad(self, inputs, grads):
        from .. import math as T
        x, = inputs
        g, = grads
        out = _forward_output(self, x)
        return [T.cast(g - T.exp(out) * T.sum(g, axis=-1, keepdims=True), x.dtype)]


log_softmax_op = LogSoftmax()


def log_softmax(c):
    return log_softmax_op(c)


logsoftmax = log_softmax  # Theano's spelling


class CrossEntropySoftmax(Op):
    """Per-row loss -log_softmax(z)[i, y[i]] for i < len(y) (z: rows x classes, y: integer labels,
    len(y) <= rows), computed stably without forming the log-probabilities: per row the
    maximum, the sum of exp(z - max) and the logit of the label."""

    def make_node(self, z, y):
        z = _logits(z, "CrossEntropySoftmax")
        y = _labels(y, "CrossEntropySoftmax")
        _check_rows(z, y, "CrossEntropySoftmax")
        return Apply(self, [z, y], [TensorType(z.dtype, shape=(y.type.shape[0],))()])

    def perform(self, node, inputs, out):
        z, y = inputs
        yy = _np_checked_labels(z, y, "CrossEntropySoftmax")
        n = yy.shape[0]
        zr = z[:n].astype("float64")
        if zr.shape[1] == 0:  # no rows either (else _np_checked_labels raised)
            out[0][0] = np.zeros((n,), dtype=z.dtype)
            return
        mx = zr.max(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            lse = mx + np.log(np.exp(zr - mx[:, None]).sum(axis=1))
            out[0][0] = np.asarray(lse - zr[np.arange(n), yy], dtype=z.dtype)

    def infer_shape(self, node, shapes):
        return [(shapes[1][0],)]

    def grad(self, inputs, grads):
        from .. import math as T
        z, y = inputs
        g, = grads
        return [crossentropy_softmax_grad(T.neg(g), z, y), None]

    def connection_pattern(self, node):
        return [[True], [False]]


crossentropy_softmax_op = CrossEntropySoftmax()


def crossentropy_softmax(z, y):
    """-log(softmax(z))[arange(len(y)), y], fused and stable."""
    return crossentropy_softmax_op(z, y)


class CrossEntropySoftmaxGrad(Op):
    """out[i] = gsel[i] * (onehot(y[i]) - softmax(z[i])) for i < len(y), out[i] = 0 beyond:
    the gradient with respect to z of sum_i gsel[i] * log_softmax(z)[i, y[i]].

    gsel is a vector of len(y) values (or one value, broadcast, as the scatter-add it replaces
    would); the result has z's shape and dtype."""

    def make_node(self, gsel, z, y):
        gsel = as_tensor_variable(gsel)
        z = _logits(z, "CrossEntropySoftmaxGrad")
        y = _labels(y, "CrossEntropySoftmaxGrad")
        if gsel.ndim > 1 or not is_float(gsel.dtype):
            raise TypeError(f"CrossEntropySoftmaxGrad: the gradient of the selected log-probabilities must be "
                            f"a float vector (one per label) or scalar, got {gsel.describe()}")
        if gsel.ndim == 1:
            g, n = gsel.type.shape[0], y.type.shape[0]
            if g is not None and n is not None and g not in (1, n):
                raise ValueError(f"CrossEntropySoftmaxGrad: {gsel.describe()} has {g} values for {n} labels")
        _check_rows(z, y, "CrossEntropySoftmaxGrad")
        return Apply(self, [gsel, z, y], [TensorType(z.dtype, shape=z.type.shape)()])

    def perform(self, node, inputs, out):
        gsel, z, y = inputs
        yy = _np_checked_labels(z, y, "CrossEntropySoftmaxGrad")
        n = yy.shape[0]
        try:
            g = np.broadcast_to(gsel, (n,))
        except ValueError:
            raise ValueError(f"CrossEntropySoftmaxGrad: shape mismatch: {np.shape(gsel)} values of the gradient "
                             f"for {n} labels") from None
        dt = z.dtype
        res = np.zeros(z.shape, dtype=dt)
        if n:
            zr = z[:n]
            e = np.exp(zr - zr.max(axis=1, keepdims=True))
            sm = (e / e.sum(axis=1, keepdims=True)).astype(dt)
            oh = np.zeros_like(sm)
            oh[np.arange(n), yy] = 1
            res[:n] = g.astype(dt)[:, None] * (oh - sm)
        out[0][0] = res

    def infer_shape(self, node, shapes):
        return [shapes[1]]

    def grad(self, inputs, grads):
        # In terms of existing ops (rows < len(y) only; the others are constant zeros).
        from .. import math as T
        from ..basic import arange, zeros_like
        from ..subtensor import sum_to, inc_subtensor
        gsel, z, y = inputs
        G, = grads
        n = y.shape[0]
        c = z.shape[1]
        sm = softmax(z[:n])
        yw = T.switch(T.lt(y, 0), y + c, y)
        onehot = T.cast(T.eq(arange(c).dimshuffle("x", 0), yw.dimshuffle(0, "x")), z.dtype)
        Gn = G[:n]
        gb = gsel.dimshuffle(0, "x") if gsel.ndim == 1 else gsel
        g_gsel = sum_to(T.sum(Gn * (onehot - sm), axis=1), gsel)
        g_rows = -gb * softmax_grad(Gn, sm)
        g_z = inc_subtensor(zeros_like(z)[:n], T.cast(g_rows, z.dtype))
        return [g_gsel, g_z, None]

    def connection_pattern(self, node):
        return [[True], [True], [False]]


crossentropy_softmax_grad_op = CrossEntropySoftmaxGrad()


def crossentropy_softmax_grad(gsel, z, y):
    return crossentropy_softmax_grad_op(gsel, z, y)
