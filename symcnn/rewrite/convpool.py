"""Conv + max-pool + bias + tanh fusion (the LeNetConvPoolLayer), forward and backward together.

fuse_conv_pool_tanh (phase 'specialize', a graph rewrite) finds

    out    = tanh(add(Pool{max, ignore_border, pad 0}(Conv2d(x, W)), DimShuffle{x,0,x,x}(b)))

and, when the graph differentiates it (what T.grad builds and canonicalize leaves),

    g_pre  = mul(g_out, sub(1, mul(out, out)))                  (tanh's gradient, either operand order)
    g_conv = MaxPoolGrad(conv, pooled, g_pre)
    gW     = Conv2dGradWeights(x, g_conv, .)      gx = Conv2dGradInputs(W, g_conv, .)  (either may be absent)
    gb     = Sum{axis=A}(g_pre)                   (A covers axes 0, 2, 3 up to length-1 axes; what the
                                                   gradient of the broadcast bias add builds)

and replaces all of it at once by ConvPoolTanh(x, W, b) -> (out, mask) and ConvPoolTanhGrad(x, W, out, mask,
g_out) -> (gW, gb[, gx]) (symcnn/tensor/nnet/convpool.py). Forward and backward must be replaced together:
the unfused backward reads the conv output and the pooled values, which would keep the unfused forward
alive. So the rewrite fires only if every reader of the conv output, of the pooled values, of g_pre and of
g_conv is part of the pattern (else nothing changes); a forward-only graph (validate/test functions) fuses
the forward alone.

Why 'specialize': the pattern is matched on the plain elementwise nodes (add, tanh, mul, sub) that
canonicalize/stabilize leave. In 'fuse', fuse_elemwise merges them into Composite programs whose shape
depends on the neighbours (the tanh derivative may absorb the upstream gradient's arithmetic), and the GEMM
prologue/epilogue rewrites may pull them into products; matching there would mean decompiling Composite
programs. Running before 'fuse' also means those rewrites then see the fused ops as opaque producers and
consumers, and fuse whatever elementwise work remains around them as usual.
"""
from ..graph.basic import Constant
from ..tensor.elemwise import DimShuffle, Elemwise
from ..tensor.math import Sum
from ..tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from ..tensor.nnet.convpool import MAX_WINDOW, ConvPoolTanh, ConvPoolTanhGrad
from ..tensor.signal.pool import MaxPoolGrad, Pool
from ..tensor.type import is_float
from .core import graph_rewrite

from .. import scalar as ts


def _elemwise(v, cls, nin=None):
    node = v.owner
    if node is None or not isinstance(node.op, Elemwise) or not isinstance(node.op.scalar_op, cls):
        return None
    if nin is not None and len(node.inputs) != nin:
        return None
    return node


def _readers(fgraph, v):
    return fgraph.clients.get(v, [])


def _only_read_by(fgraph, v, allowed):
    return all(c != "output" and c in allowed for c, _ in _readers(fgraph, v))


def _is_one(v):
    if not isinstance(v, Constant):
        return False
    import numpy as np
    flat = np.ravel(v.data)
    return flat.size >= 1 and bool((flat == 1).all())


def _is_square_of(v, t):
    """v == t * t (mul(t, t), sqr(t) or pow(t, 2))."""
    node = v.owner
    if node is None or not isinstance(node.op, Elemwise):
        return False
    sop = node.op.scalar_op
    if isinstance(sop, ts.Mul) and len(node.inputs) == 2:
        return node.inputs[0] is t and node.inputs[1] is t
    if isinstance(sop, ts.Sqr):
        return node.inputs[0] is t
    if isinstance(sop, ts.Pow) and node.inputs[0] is t and isinstance(node.inputs[1], Constant):
        import numpy as np
        flat = np.ravel(node.inputs[1].data)
        return flat.size >= 1 and bool((flat == 2).all())
    return False


class _Forward:
    pass


def _match_forward(fgraph, tanh):
    """The pieces of tanh(Pool(Conv2d(x, W)) + b.dimshuffle('x', 0, 'x', 'x')), or None."""
    out = tanh.outputs[0]
    add = _elemwise(tanh.inputs[0], ts.Add, 2)
    if add is None or not _only_read_by(fgraph, add.outputs[0], {tanh}):
        return None
    for pooled, bias in (add.inputs, add.inputs[::-1]):
        pool = pooled.owner
        ds = bias.owner
        if pool is None or not isinstance(pool.op, Pool) or ds is None or not isinstance(ds.op, DimShuffle):
            continue
        if ds.op.new_order != ("x", 0, "x", "x") or ds.inputs[0].ndim != 1:
            continue
        break
    else:
        return None
    pop = pool.op
    if pop.mode != "max" or not pop.ignore_border or pop.pad != (0, 0) or pop.ws[0] * pop.ws[1] > MAX_WINDOW:
        return None
    conv = pool.inputs[0]
    cnode = conv.owner
    if cnode is None or not isinstance(cnode.op, Conv2d) or conv.ndim != 4:
        return None
    x, W = cnode.inputs
    b = ds.inputs[0]
    dtype = out.dtype
    if not is_float(dtype) or any(v.dtype != dtype for v in (x, W, b, conv, pooled, add.outputs[0])):
        return None
    f = _Forward()
    f.tanh, f.add, f.pool, f.conv_node, f.out = tanh, add, pool, cnode, out
    f.x, f.W, f.b, f.conv, f.pooled = x, W, b, conv, pooled
    c = cnode.op
    f.op_args = dict(imshp=c.imshp, kshp=c.kshp, border_mode=c.border_mode, subsample=c.subsample,
                     filter_flip=c.filter_flip, ws=pop.ws, stride=pop.stride)
    return f


def _same_conv(a, b):
    return (a.border_mode, a.subsample, a.filter_flip) == (b.border_mode, b.subsample, b.filter_flip)


def _bias_sum_order(s, g_pre):
    """For Sum{axis}(g_pre) equal to the bias gradient gb (K,) laid out differently: the DimShuffle
    order turning gb into it ([0] for gb itself), else None."""
    axis = set(s.op.axis)
    shape = g_pre.type.shape
    if 1 in axis or s.op.dtype not in (None, g_pre.dtype) or s.outputs[0].dtype != g_pre.dtype:
        return None
    for d in (0, 2, 3):
        if d not in axis and shape[d] != 1:
            return None
    return [0 if d == 1 else "x" for d in range(4) if d not in axis]


class _Backward:
    pass


def _match_backward(fgraph, f):
    """None (the forward has no gradient in the graph), False (readers we cannot fuse), or the pieces."""
    mpgs = [c for c, i in _readers(fgraph, f.conv) if c != "output" and isinstance(c.op, MaxPoolGrad)]
    conv_ok = {f.pool} | set(mpgs)
    if not _only_read_by(fgraph, f.conv, conv_ok) or not _only_read_by(fgraph, f.pooled, {f.add} | set(mpgs)):
        return False
    if not mpgs:
        return None
    if len(mpgs) != 1:
        return False
    mpg = mpgs[0]
    pop = f.pool.op
    if (mpg.op.ws, mpg.op.stride, mpg.op.pad, mpg.op.ignore_border) != (pop.ws, pop.stride, pop.pad, True):
        return False
    if mpg.inputs[0] is not f.conv or mpg.inputs[1] is not f.pooled:
        return False
    g_pre = mpg.inputs[2]
    mul = _elemwise(g_pre, ts.Mul, 2)
    if mul is None:
        return False
    g_out = None
    for g, d in (mul.inputs, mul.inputs[::-1]):
        sub = _elemwise(d, ts.Sub, 2)
        if sub is not None and _is_one(sub.inputs[0]) and _is_square_of(sub.inputs[1], f.out):
            g_out = g
            break
    if g_out is None or g_out.dtype != f.out.dtype or g_out.type.broadcastable != f.out.type.broadcastable:
        return False
    sums = []
    for c, _ in _readers(fgraph, g_pre):
        if c is mpg:
            continue
        if c == "output" or not isinstance(c.op, Sum):
            return False
        order = _bias_sum_order(c, g_pre)
        if order is None:
            return False
        sums.append((c, order))
    gws, gxs = [], []
    for c, i in _readers(fgraph, mpg.outputs[0]):
        if c == "output" or i != 1:
            return False
        if isinstance(c.op, Conv2dGradWeights) and c.inputs[0] is f.x and _same_conv(c.op, f.conv_node.op) \
                and c.outputs[0].dtype == f.out.dtype:
            gws.append(c)
        elif isinstance(c.op, Conv2dGradInputs) and c.inputs[0] is f.W and _same_conv(c.op, f.conv_node.op) \
                and c.outputs[0].dtype == f.out.dtype:
            gxs.append(c)
        else:
            return False
    k = _Backward()
    k.mpg, k.g_out, k.sums, k.gws, k.gxs = mpg, g_out, sums, gws, gxs
    return k


def _compatible(old, new):
    return old.type == new.type or old.type.is_compatible(new.type)


def _set_trace(outputs, blockers, trace):
    from ..graph.basic import io_toposort
    for node in io_toposort(list(outputs), blockers=blockers):
        node.trace = trace
        for o in node.outputs:
            o.trace = trace


@graph_rewrite("specialize")
def fuse_conv_pool_tanh(fgraph):
    changes = 0
    for node in list(fgraph.toposort()):
        if node not in fgraph.graph or _elemwise(node.outputs[0], ts.Tanh, 1) is None:
            continue
        f = _match_forward(fgraph, node)
        if f is None:
            continue
        k = _match_backward(fgraph, f)
        if k is False:
            continue
        out, mask = ConvPoolTanh(**f.op_args)(f.x, f.W, f.b)
        if not _compatible(f.out, out):
            continue
        pairs = [(f.out, out)]
        if k is not None:
            bop = ConvPoolTanhGrad(**f.op_args, need_gx=bool(k.gxs))
            grads = bop(f.x, f.W, out, mask, k.g_out)
            gW, gb = grads[0], grads[1]
            for c in k.gws:
                pairs.append((c.outputs[0], gW))
            for c in k.gxs:
                pairs.append((c.outputs[0], grads[2]))
            for c, order in k.sums:
                pairs.append((c.outputs[0], gb if order == [0] else DimShuffle(1, order)(gb)))
            if not all(_compatible(old, new) for old, new in pairs):
                continue
            _set_trace([new for _, new in pairs[1:]], [f.x, f.W, out, mask, k.g_out], k.mpg.trace)
        _set_trace([out, mask], [f.x, f.W, f.b], node.trace)
        fgraph.replace_all(pairs, reason="fuse_conv_pool_tanh")
        changes += 1
    return changes
