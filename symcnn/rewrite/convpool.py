"""Convolution epilogue fusion: a convolution, optionally max-pooled, optionally biased, followed
by any chain of elementwise ops, forward and backward together.

fuse_conv_epilogue (phase 'specialize', a graph rewrite) finds, for every Conv2d,

    pooled = Pool{ignore_border, pad 0}(conv)               (max, average_inc_pad, average_exc_pad or sum;
                                                              or pooled = conv: no pooling)
    z      = add(pooled, DimShuffle{x,0,x,x}(b))              (or z = pooled: no bias)
    out    = an elementwise function of z alone (any chain of Elemwise nodes whose other leaves
             are size-1 constants: tanh, sigmoid, maximum(z, 0), relu's 0.5*(z+abs(z)), z*(z>0),
             switch(z>0, z, 0), a scale, nothing)

and, when the graph differentiates it (what T.grad builds and canonicalize leaves),

    g_pre  = the gradient of z: an elementwise function of forward values (z, out, or anything
             computed from z), size-1 constants and tensors not computed from z (the gradients
             flowing in, g_1..g_m)
    g_conv = MaxPoolGrad(conv, pooled, g_pre)                (AveragePoolGrad(conv, g_pre) for the others;
                                                              g_conv = g_pre: no pooling)
    gW     = Conv2dGradWeights(x, g_conv, .)      gx = Conv2dGradInputs(W, g_conv, .)  (either may be absent)
    gb     = Sum{axis=A}(g_pre)                              (A covers axes 0, 2, 3 up to length-1 axes)

The pooling may also follow the activation (conv -> + bias -> act -> pool, as networks are written
today):

    out    = Pool{ignore_border, pad 0}(act)                 (act: the elementwise function of z above)
    g_act  = MaxPoolGrad(act, out, g_out)                    (AveragePoolGrad(act, g_out) for the others)
    g_pre  = an elementwise function of forward values and g_act alone

with act read by nothing but the Pool, its gradient and the gradient subgraph: that becomes
ConvPoolAct{order='act_pool'}(x, W[, b]) -> (out[, mask][, z][, act]) and
ConvPoolActGrad{order='act_pool'}(x, W[, b][, mask][, z][, act], g_out), the activation kept at full
resolution only if the derivative reads it and not z (tanh's; when it reads both, as the graph's
T.maximum(z, 0) derivative does, act is computed from z again). Otherwise the pooling stays
a Pool op and the activation fuses alone, as below.

It replaces all of it at once by ConvPoolAct(x, W[, b]) -> (out[, mask][, z]) and
ConvPoolActGrad(x, W[, mask][, z][, out], g_1..g_m) -> (gW[, gb][, gx]) (symcnn/tensor/nnet/convpool.py).
The activation and its derivative are not looked up in a table: they are the elementwise subgraphs
of the user's graph, turned into Composite programs (symcnn/tensor/nnet/conv_epilogue.py). The
forward keeps z as an output only if the derivative reads it (ReLU's does, tanh's does not).

Which value is `out`: the forward values (elementwise functions of z) read by anything outside the
forward chain and the gradient subgraph must all be computable from one of them (the earliest such
value); that one is out, and the others (the cost's out * out, say) are left in the graph, now
computed from the fused op's out.

Forward and backward must be replaced together: the unfused backward reads the conv output, the
pooled values and the pre-activation, which would keep the unfused forward alive. So the rewrite
fires only if every reader of the conv output, the pooled values, z, the chain's intermediate values,
the gradient subgraph's values and g_conv is part of the pattern (else nothing changes); a
forward-only graph (validate/test functions) fuses the forward alone. A bare convolution (no bias and
no activation) is left to Conv2d's own kernels, and so is a dilated one (filter_dilation != 1: the
fused kernels take undilated filters; Conv2d's direct kernels take the dilation).

Why 'specialize': the pattern is matched on the plain elementwise nodes that canonicalize/stabilize
leave. In 'fuse', fuse_elemwise merges them into Composite programs whose shape depends on the
neighbours, and the GEMM prologue/epilogue rewrites may pull them into products. Running before
'fuse' also means those rewrites then see the fused ops as opaque producers and consumers, and fuse
whatever elementwise work remains around them as usual.
"""
from ..graph.basic import io_toposort
from ..tensor.elemwise import DimShuffle, Elemwise
from ..tensor.math import Sum
from ..tensor.nnet.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from ..tensor.nnet.conv_epilogue import program_from_graph, scalar_constant_value
from ..tensor.nnet.convpool import MAX_WINDOW, POOL_MODES, ConvPoolAct, ConvPoolActGrad, kept_for_gradient
from ..tensor.signal.pool import AveragePoolGrad, MaxPoolGrad, Pool
from ..tensor.type import is_float
from .core import graph_rewrite

from .. import scalar as ts

MAX_GRADIENT_INPUTS = 4   # g_1..g_m the gradient kernel reads per pooled element


def _readers(fgraph, v):
    return fgraph.clients.get(v, [])


def _only_read_by(fgraph, v, allowed):
    return all(c != "output" and c in allowed for c, _ in _readers(fgraph, v))


def _elemwise(v):
    return v.owner is not None and isinstance(v.owner.op, Elemwise)


class _Match:
    pass


def _pool_of(fgraph, conv):
    """The Pool node reading conv that the fused kernels handle, or None."""
    for c, i in _readers(fgraph, conv):
        if c != "output" and isinstance(c.op, Pool):
            p = c.op
            if (p.mode in POOL_MODES and p.ignore_border is True and p.pad == (0, 0) and isinstance(p.ws, tuple)
                    and isinstance(p.stride, tuple) and (p.mode != "max" or p.ws[0] * p.ws[1] <= MAX_WINDOW)
                    and i == 0):
                return c
    return None


def _bias_of(fgraph, base):
    """(add node, b) for add(base, b.dimshuffle('x', 0, 'x', 'x')) (either order), or (None, None)."""
    for c, _ in _readers(fgraph, base):
        if c == "output" or not isinstance(c.op, Elemwise) or not isinstance(c.op.scalar_op, ts.Add):
            continue
        if len(c.inputs) != 2 or c.outputs[0].type.broadcastable != base.type.broadcastable:
            continue
        other = c.inputs[1] if c.inputs[0] is base else c.inputs[0]
        ds = other.owner
        if ds is None or not isinstance(ds.op, DimShuffle) or ds.op.new_order != ("x", 0, "x", "x"):
            continue
        b = ds.inputs[0]
        if b.ndim == 1 and b.dtype == base.dtype and c.outputs[0].dtype == base.dtype:
            return c, b
    return None, None


def _forward_values(fgraph, z):
    """The Elemwise nodes computing a value from z and size-1 constants alone (z's shape), in
    topological order, and the set of their outputs."""
    values, nodes = {z}, []
    for node in fgraph.toposort():
        if not isinstance(node.op, Elemwise) or len(node.outputs) != 1:
            continue
        o = node.outputs[0]
        if o.type.broadcastable != z.type.broadcastable:
            continue
        if all(i in values or scalar_constant_value(i) is not None for i in node.inputs) \
                and any(i in values for i in node.inputs):
            values.add(o)
            nodes.append(node)
    return nodes, values


def _without_gradient(fgraph, z, nodes, g_pre):
    """The forward values without g_pre and the values only it reads. A cost whose gradient has no
    input of its own (sum(h ** 2)'s: 2 * h, once T.grad's seed is a constant) makes g_pre a value
    of z alone, which the forward would otherwise claim."""
    drop = set()
    for n in reversed(nodes):
        o = n.outputs[0]
        readers = _readers(fgraph, o)
        if o is g_pre or (readers and all(c != "output" and c in drop for c, _ in readers)):
            drop.add(n)
    kept = [n for n in nodes if n not in drop]
    return kept, {z} | {n.outputs[0] for n in kept}


def _derived_from(nodes, root):
    """The outputs of `nodes` (topological) computable from root and constants alone."""
    got = {root}
    for n in nodes:
        if all(i in got or scalar_constant_value(i) is not None for i in n.inputs):
            got.add(n.outputs[0])
    return got


def _backward_subgraph(g_pre, z, fvalues):
    """(nodes, external inputs) of the elementwise graph computing g_pre from forward values,
    constants and tensors not computed from z; None if g_pre is not such a graph."""
    memo = {}

    def depends(v):
        if v in fvalues:
            return True
        if v not in memo:
            memo[v] = _elemwise(v) and any(depends(i) for i in v.owner.inputs)
        return memo[v]

    nodes, externals, seen = [], [], set()

    def visit(v):
        if v in seen or v in fvalues or scalar_constant_value(v) is not None:
            return True
        seen.add(v)
        if depends(v):
            if v.type.broadcastable != z.type.broadcastable:
                return False
            nodes.append(v.owner)
            return all(visit(i) for i in v.owner.inputs)
        externals.append(v)
        return True

    if not visit(g_pre):
        return None
    return nodes, externals


def _same_conv(a, b):
    return (a.border_mode, a.subsample, a.filter_flip, a.filter_dilation) == \
        (b.border_mode, b.subsample, b.filter_flip, b.filter_dilation)


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


def _conv_grads(fgraph, m, g_conv, allowed_others):
    """Sort the readers of g_conv into weight and input gradients of m's convolution (False if
    one is anything else, apart from allowed_others)."""
    gws, gxs = [], []
    cop = m.conv_node.op
    for c, i in _readers(fgraph, g_conv):
        if c == "output":
            return False
        if c in allowed_others:
            continue
        if i != 1:
            return False
        if isinstance(c.op, Conv2dGradWeights) and c.inputs[0] is m.x and _same_conv(c.op, cop) \
                and c.outputs[0].dtype == m.dtype:
            gws.append(c)
        elif isinstance(c.op, Conv2dGradInputs) and c.inputs[0] is m.W and _same_conv(c.op, cop) \
                and c.outputs[0].dtype == m.dtype:
            gxs.append(c)
        else:
            return False
    return gws, gxs


def _find_g_pre(fgraph, m):
    """(g_pre, MaxPoolGrad node or None, gws, gxs) of the backward, None when the graph has no
    backward of this convolution, False when it has one we cannot fuse."""
    if m.pool is not None:
        pop = m.pool.op
        cls = MaxPoolGrad if pop.mode == "max" else AveragePoolGrad
        mpgs = [c for c, _ in _readers(fgraph, m.conv) if c != "output" and isinstance(c.op, cls)]
        if not mpgs:
            return None
        if len(mpgs) != 1:
            return False
        mpg = mpgs[0]
        if (mpg.op.ws, mpg.op.stride, mpg.op.pad, mpg.op.ignore_border, mpg.op.mode) != \
                (pop.ws, pop.stride, pop.pad, True, pop.mode):
            return False
        if mpg.inputs[0] is not m.conv or (pop.mode == "max" and mpg.inputs[1] is not m.pooled):
            return False
        grads = _conv_grads(fgraph, m, mpg.outputs[0], ())
        if grads is False:
            return False
        return (mpg.inputs[-1], mpg) + grads
    # no pooling: g_pre is what the convolution gradients of this x / W read
    cands = set()
    for c, _ in _readers(fgraph, m.x):
        if c != "output" and isinstance(c.op, Conv2dGradWeights) and c.inputs[0] is m.x \
                and _same_conv(c.op, m.conv_node.op):
            cands.add(c.inputs[1])
    for c, _ in _readers(fgraph, m.W):
        if c != "output" and isinstance(c.op, Conv2dGradInputs) and c.inputs[0] is m.W \
                and _same_conv(c.op, m.conv_node.op):
            cands.add(c.inputs[1])
    cands = [g for g in cands if g.type.broadcastable == m.z.type.broadcastable
             and (_depends_on(g, m.fvalues) or _from_pool_grad(g, m.fvalues))]
    if not cands:
        return None
    if len(cands) != 1:
        return False
    g_pre = cands[0]
    sums = {c for c, _ in _readers(fgraph, g_pre) if c != "output" and isinstance(c.op, Sum)}
    grads = _conv_grads(fgraph, m, g_pre, sums)
    if grads is False:
        return False
    return (g_pre, None) + grads


def _depends_on(v, fvalues, memo=None):
    memo = {} if memo is None else memo
    if v in fvalues:
        return True
    if v not in memo:
        memo[v] = _elemwise(v) and any(_depends_on(i, fvalues, memo) for i in v.owner.inputs)
    return memo[v]


def _from_pool_grad(v, fvalues):
    """v is the gradient a pooling of a forward value routes back, or an elementwise function of it
    (an identity activation's, 0.5 * it for a scale's): what the convolution gradients read when
    the pooling follows the activation."""
    if v.owner is not None and isinstance(v.owner.op, (MaxPoolGrad, AveragePoolGrad)):
        return v.owner.inputs[0] in fvalues
    return _elemwise(v) and any(_from_pool_grad(i, fvalues) for i in v.owner.inputs)


def _match(fgraph, cnode):
    conv = cnode.outputs[0]
    x, W = cnode.inputs
    dtype = conv.dtype
    if conv.ndim != 4 or not is_float(dtype) or x.dtype != dtype or W.dtype != dtype:
        return None
    m = _Match()
    m.conv_node, m.conv, m.x, m.W, m.dtype = cnode, conv, x, W, dtype
    m.pool = _pool_of(fgraph, conv)
    m.pooled = m.pool.outputs[0] if m.pool is not None else conv
    if m.pooled.dtype != dtype:
        return None
    m.add, m.b = _bias_of(fgraph, m.pooled)
    m.z = m.add.outputs[0] if m.add is not None else m.pooled
    m.fnodes, m.fvalues = _forward_values(fgraph, m.z)
    fnode_set = set(m.fnodes)

    back = _find_g_pre(fgraph, m)
    if back is False:
        return None
    if back is not None and back[0] in m.fvalues:
        m.fnodes, m.fvalues = _without_gradient(fgraph, m.z, m.fnodes, back[0])
        fnode_set = set(m.fnodes)
    bnode_set, externals, m.back = set(), [], None
    if back is not None:
        g_pre, mpg, gws, gxs = back
        sub = _backward_subgraph(g_pre, m.z, m.fvalues)
        if sub is None or g_pre.dtype != dtype:
            return None
        bnodes, externals = sub
        # the kernel reads every external gradient as a dense pooled-shape array of the op's dtype
        if len(externals) > MAX_GRADIENT_INPUTS or any(e.ndim != 4 or e.dtype != dtype for e in externals):
            return None
        bnode_set = set(bnodes)
        m.back = (g_pre, mpg, gws, gxs, bnodes, externals)

    # which forward value is `out`
    inside = fnode_set | bnode_set
    routing = {m.back[1]} if m.back is not None and m.back[1] is not None else set()   # MaxPoolGrad reads z = pooled
    outside = [v for v in [m.z] + [n.outputs[0] for n in m.fnodes]
               if any(c == "output" or (c not in inside and c not in routing) for c, _ in _readers(fgraph, v))]
    m.out = None
    for cand in outside:
        derived = _derived_from(m.fnodes, cand)
        if all(v in derived for v in outside):
            m.out, m.derived = cand, derived
            break
    if m.out is None and not outside and back is not None:
        # only the gradients read the forward (a cost that sums the layer's output, its fill gone):
        # out is the chain's last value of z alone, an output no one reads
        from_z = _derived_from(m.fnodes, m.z)
        m.out = [v for v in [m.z] + [n.outputs[0] for n in m.fnodes] if v in from_z][-1]
        m.derived = _derived_from(m.fnodes, m.out)
    if m.out is None:
        return None
    if m.out is m.z and m.add is None:
        return None   # a bare convolution (maybe pooled): Conv2d's kernels
    m.act = program_from_graph([m.z], m.out)
    if m.act is None or m.act.out_dtype() != dtype:
        return None

    # every value the replacement removes must be read only inside the pattern
    pattern = inside | ({m.pool} if m.pool is not None else set()) | ({m.add} if m.add is not None else set())
    if back is not None:
        g_pre, mpg, gws, gxs, _, _ = m.back
        if mpg is not None:
            pattern.add(mpg)
    if m.pool is not None and not _only_read_by(fgraph, m.conv, pattern):
        return None
    if m.add is not None and not _only_read_by(fgraph, m.pooled, pattern):
        return None
    for v in [m.z] + [n.outputs[0] for n in m.fnodes]:
        if v is not m.out and v not in m.derived and not _only_read_by(fgraph, v, pattern):
            return None
    m.sums = []
    if back is not None:
        g_pre, mpg, gws, gxs, bnodes, externals = m.back
        ext = set(externals)
        memo = {}

        def from_out(v):
            """v is computed from out, constants and the external gradients alone: a reader outside
            the pattern (the cost reading out * y) keeps it, rebuilt on the fused op's out."""
            if v in m.derived or v in ext or scalar_constant_value(v) is not None:
                return True
            if v in m.fvalues or v.owner not in bnode_set:
                return False
            if v not in memo:
                memo[v] = all(from_out(i) for i in v.owner.inputs)
            return memo[v]
        for n in bnodes:
            o = n.outputs[0]
            if o is not g_pre and not _only_read_by(fgraph, o, bnode_set) and not from_out(o):
                return None
        for c, _ in _readers(fgraph, g_pre):
            if c == "output":
                return None
            if c is mpg or c in gws or c in gxs or c in bnode_set:
                if c in bnode_set:
                    return None
                continue
            if not isinstance(c.op, Sum) or m.add is None:
                return None
            order = _bias_sum_order(c, g_pre)
            if order is None:
                return None
            m.sums.append((c, order))
        m.dact = program_from_graph([m.z, m.out] + externals, g_pre)
        if m.dact is None or m.dact.out_dtype() != dtype:
            return None
    return m


def _pool_after(fgraph, m):
    """For a match without pooling (m.pool None): (Pool node, pool-gradient node or None, the
    derivative program of (z, act, g_act) or None) when the activation m.out is pooled and read by
    nothing else than that Pool, its gradient and the gradient subgraph, whose only input other
    than forward values and constants is the gradient g_act the pooling routes back; else None."""
    pools = [c for c, i in _readers(fgraph, m.out) if c != "output" and isinstance(c.op, Pool)]
    if len(pools) != 1 or m.out is m.z and m.add is None:
        return None
    pnode = pools[0]
    p = pnode.op
    if not (p.mode in POOL_MODES and p.ignore_border is True and p.pad == (0, 0) and isinstance(p.ws, tuple)
            and isinstance(p.stride, tuple) and (p.mode != "max" or p.ws[0] * p.ws[1] <= MAX_WINDOW)
            and pnode.inputs[0] is m.out and pnode.outputs[0].dtype == m.dtype):
        return None
    cls = MaxPoolGrad if p.mode == "max" else AveragePoolGrad
    pgs = [c for c, _ in _readers(fgraph, m.out) if c != "output" and isinstance(c.op, cls)]
    bnodes, externals = (m.back[4], m.back[5]) if m.back is not None else ([], [])
    if len(pgs) > 1 or bool(pgs) != (m.back is not None):
        return None
    pg = pgs[0] if pgs else None
    dact = None
    if pg is not None:
        o = pg.op
        if (o.ws, o.stride, o.pad, o.ignore_border, o.mode) != (p.ws, p.stride, p.pad, True, p.mode):
            return None
        if pg.inputs[0] is not m.out or (p.mode == "max" and pg.inputs[1] is not pnode.outputs[0]):
            return None
        g_out = pg.inputs[-1]
        if g_out.ndim != 4 or g_out.dtype != m.dtype:
            return None
        # the derivative's external inputs are g_act or elementwise functions of it alone (ReLU's
        # 0.5 * g_act); those nodes must be read only inside the derivative's graph
        g_act, g_pre = pg.outputs[0], m.back[0]
        extra = set()

        def from_g_act(v):
            if v is g_act or scalar_constant_value(v) is not None:
                return True
            if not _elemwise(v) or not all(from_g_act(i) for i in v.owner.inputs):
                return False
            extra.add(v.owner)
            return True
        if not all(from_g_act(e) for e in externals):
            return None
        for n in extra | {g_act.owner}:
            if n.outputs[0] is not g_pre and not _only_read_by(fgraph, n.outputs[0], set(bnodes) | extra):
                return None
        dact = program_from_graph([m.z, m.out, g_act], g_pre)
        if dact is None or dact.out_dtype() != m.dtype:
            return None
    # nothing else needs the activation (or a value computed from it) at full resolution
    inside = set(m.fnodes) | set(bnodes) | {pnode} | ({pg} if pg is not None else set())
    inside |= {m.add} if m.add is not None else set()
    for v in [m.z] + [n.outputs[0] for n in m.fnodes]:
        if not _only_read_by(fgraph, v, inside):
            return None
    return pnode, pg, dact


def _compatible(old, new):
    return old.type == new.type or old.type.is_compatible(new.type)


def _set_trace(outputs, blockers, trace):
    for node in io_toposort(list(outputs), blockers=blockers):
        node.trace = trace
        for o in node.outputs:
            o.trace = trace


def _as_gradient_input(v, like):
    """An external gradient input at the pooled shape (broadcast ones are filled in)."""
    from ..tensor import basic as B
    return B.second(like, v) if v.type.broadcastable != like.type.broadcastable else v


@graph_rewrite("specialize")
def fuse_conv_epilogue(fgraph):
    changes = 0
    for node in list(fgraph.toposort()):
        if node not in fgraph.graph or not isinstance(node.op, Conv2d):
            continue
        if node.op.filter_dilation != (1, 1):   # the fused kernels take undilated filters only
            continue
        m = _match(fgraph, node)
        if m is None:
            continue
        c = node.op
        args = dict(imshp=c.imshp, kshp=c.kshp, border_mode=c.border_mode, subsample=c.subsample,
                    filter_flip=c.filter_flip, has_bias=m.add is not None, act=m.act,
                    pool="max" if m.pool is not None else None)
        after = _pool_after(fgraph, m) if m.pool is None else None
        pool_node = m.pool if after is None else after[0]
        if pool_node is not None:
            args.update(pool=pool_node.op.mode, ws=pool_node.op.ws, stride=pool_node.op.stride)
        dact = after[2] if after is not None else getattr(m, "dact", None)
        keep_z, keep_act = kept_for_gradient(dact, "act_pool" if after is not None else "pool_act") \
            if m.back is not None else (False, False)
        if after is not None:
            args.update(order="act_pool")
        fop = ConvPoolAct(**args, keep_z=keep_z, keep_act=keep_act)
        fouts = fop(m.x, m.W, *([m.b] if m.add is not None else []))
        fouts = fouts if isinstance(fouts, (list, tuple)) else [fouts]
        named = dict(zip(fop.output_roles(), fouts))
        out = named["out"]
        replaced = m.out if after is None else after[0].outputs[0]
        if not _compatible(replaced, out):
            continue
        pairs = [(replaced, out)]
        if m.back is not None:
            g_pre, mpg, gws, gxs, bnodes, externals = m.back
            bop = ConvPoolActGrad(**args, dact=dact, need_gx=bool(gxs))
            if after is not None:   # the gradient flowing in is the pooled out's
                mpg, externals = after[1], [after[1].inputs[-1]]
            gins = [_as_gradient_input(v, out) for v in externals]
            by_role = {"x": m.x, "W": m.W, "b": m.b, "mask": named.get("mask"), "z": named.get("z"), "out": out,
                       "act": named.get("act")}
            by_role.update({f"g{i}": g for i, g in enumerate(gins)})
            grads = bop(*[by_role[r] for r in bop.input_roles()])
            grads = grads if isinstance(grads, (list, tuple)) else [grads]
            gnamed = dict(zip(bop.output_roles(), grads))
            for cn in gws:
                pairs.append((cn.outputs[0], gnamed["gW"]))
            for cn in gxs:
                pairs.append((cn.outputs[0], gnamed["gx"]))
            for cn, order in m.sums:
                gb = gnamed["gb"]
                pairs.append((cn.outputs[0], gb if order == [0] else DimShuffle(1, order)(gb)))
            if not all(_compatible(old, new) for old, new in pairs):
                continue
            trace = mpg.trace if mpg is not None else g_pre.owner.trace if g_pre.owner is not None else node.trace
            _set_trace([new for _, new in pairs[1:]],
                       [m.x, m.W] + ([m.b] if m.add is not None else []) + list(fouts) + list(externals), trace)
        _set_trace(list(fouts), [m.x, m.W] + ([m.b] if m.add is not None else []), replaced.owner.trace)
        fgraph.replace_all(pairs, reason="fuse_conv_epilogue")
        changes += 1
    return changes
