"""One stored array per layer between fused convolutions (phase 'specialize', after
fuse_conv_epilogue).

A fused layer A whose gradient reads its pre-activation z (ReLU's derivative compares z with
act(z)) stores both z and out = act(z) at the resolution of its output, and when out feeds only
other fused convolutions (their forward and gradient reading it as x) act(z) is written only to be
read back. move_activation_to_consumers then rewrites

    A  = ConvPoolAct{act}(x, W[, b]) -> (out[, mask], z)
    Ag = ConvPoolActGrad{dact}(x, W[, mask], z[, out], g..)
    Bs = ConvPoolAct(out, ..), ConvPoolActGrad(out, ..)            (every reader of out)

into A' = ConvPoolAct{act=None}(x, W[, b]) -> (z[, mask]) (the pre-activation is its out),
Ag' = ConvPoolActGrad{dact'}(x, W[, mask], z, g..) with dact'(z, _, g..) = dact(z, act(z), g..)
(conv_epilogue.out_from_z: the same program with out computed from z, as the forward did), and
every B with in_act=act: B computes conv2d(act(z), ..) and its gradient's gx is the gradient of
act(z), what Ag reads as before. The values are the reference's: act(z) is the same program on the
same values wherever it is computed.

It applies to A in the order 'pool_act' (without pooling or pooling before the activation: out is
act(z) elementwise); with 'act_pool' the activation comes before the pooling and cannot move past
it. Readers of out that are not fused convolutions (a dense layer, a function output) keep the
rewrite from firing.

absorb_gradient_terms: a gradient op (order 'pool_act') whose gradients g_1..g_m are one variable g
and elementwise functions of g alone (T.nnet.relu's gradient reads 0.5 * g, its leaky form two
scaled terms, T.switch's a fill of zeros beside g), read nowhere else, reads g alone: the terms go
into its program, and the tensors they were are neither computed nor stored.

fold_dact_into_gx then takes the derivative to the gradient that feeds it. When the gradient Ag of
layer A (order 'pool_act') reads one stored array v (z, or out for a derivative of out alone such as
tanh's) and gradients g_1..g_m that are the gx of a single ConvPoolActGrad Bg whose x is v, or
elementwise functions of that gx alone (T.nnet.relu's gradient reads 0.5 * gx, its leaky form two
scaled terms, T.switch's a fill of zeros beside gx: they go into the program), and nothing else reads
gx, it rewrites

    Bg  = ConvPoolActGrad(v, ..) -> (.., gx)
    Ag  = ConvPoolActGrad{dact}(x, W[, mask], v, g_1..g_m)
into
    Bg' = ConvPoolActGrad{gx_act}(v, ..) -> (.., gx')     gx' = dact(v, g_1(gx)..) as Bg stores it
    Ag' = ConvPoolActGrad{dact=g}(x, W[, mask], gx')

Bg reads v (its x) image by image anyway, so the derivative is applied while both are in cache, and
Ag no longer reads v back from memory (a whole activation, the size of a layer's output, per step).
The values are the reference's: the same program on the same values.
"""
from .. import scalar as ts
from ..tensor.composite import Composite
from ..tensor.elemwise import Elemwise
from ..tensor.nnet.conv_epilogue import out_from_z, program_from_graph, reads_input, scalar_constant_value
from ..tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
from .core import graph_rewrite


def _with(op, **changes):
    """The op with some properties changed."""
    props = {p: getattr(op, p) for p in op.__props__}
    props.update(changes)
    return type(op)(**props)


def _consumers(clients, out):
    """The fused convolutions among clients ((node, input index) pairs of out) reading out as their
    x alone, or None if any client does something else."""
    nodes = []
    for c, i in clients:
        if c == "output" or not isinstance(c.op, (ConvPoolAct, ConvPoolActGrad)) or i != 0 \
                or c.op.in_act is not None or any(v is out for v in c.inputs[1:]):
            return None
        nodes.append(c)
    return nodes


@graph_rewrite("specialize")
def move_activation_to_consumers(fgraph):
    changes = 0
    for node in list(fgraph.toposort()):
        if node not in fgraph.graph or not isinstance(node.op, ConvPoolAct):
            continue
        op = node.op
        if op.pool_last or op.act is None or not op.keep_z:
            continue
        named = dict(zip(op.output_roles(), node.outputs))
        out, z = named["out"], named["z"]
        readers = [c for c, _ in fgraph.clients.get(z, [])]
        grads = [c for c in readers if c != "output" and isinstance(c.op, ConvPoolActGrad) and
                 c.inputs[0] is node.inputs[0] and c.inputs[1] is node.inputs[1]]
        if not grads or len(grads) != len(readers):
            continue
        # the gradients read out only as dact's second input: it becomes act(z)
        consumers = _consumers([(c, i) for c, i in fgraph.clients.get(out, []) if c not in grads], out)
        if not consumers:
            continue
        new = _with(op, act=None, keep_z=False)
        nouts = new(*node.inputs)
        nouts = nouts if isinstance(nouts, (list, tuple)) else [nouts]
        _trace(node, nouts)
        nnamed = dict(zip(new.output_roles(), nouts))
        pre = nnamed["out"]
        # one node at a time in graph order, each rebuilt from its inputs as the earlier
        # replacements left them (a consumer's gradient reads the consumer's new outputs)
        order = {n: k for k, n in enumerate(fgraph.toposort())}
        for old in sorted(grads + consumers, key=order.get):
            if old in grads:
                gop = _with(old.op, dact=out_from_z(old.op.dact, op.act))
                by_role = dict(zip(old.op.input_roles(), old.inputs))
                by_role.update(z=pre, mask=nnamed.get("mask"))
                rop, ins = gop, [by_role[r] for r in gop.input_roles()]
            else:
                rop, ins = _with(old.op, in_act=op.act), [pre] + list(old.inputs[1:])
            _rebuild(fgraph, old, rop, ins, "move_activation_to_consumers")
        changes += 1
    return changes


def _trace(node, outs):
    """The new outputs (and their node) trace to node's line."""
    for o, n in zip(node.outputs, outs):
        n.trace = o.trace
    if outs[0].owner is not None:
        outs[0].owner.trace = node.trace


def _pass_through(dtype):
    """dact(z, out, g) = g: a gradient op that reads neither z nor out."""
    return Composite(3, [(ts.identity, (2,), (dtype,), dtype)])


def _of_x_and_g(dact, k):
    """dact(z, out, g), which reads its input k (0: z, 1: out) and g alone, as a program of (x, g)."""
    remap = {k: 0, 2: 1}
    return Composite(2, [(s, tuple(remap[a] if a < 3 else a - 1 for a in args), d, o)
                         for s, args, d, o in dact.steps])


def _one_source(fgraph, gs, reader):
    """(gx, programs): every g of gs is gx, or programs[i](gx) through a chain of elementwise nodes
    each with one input that is not a size-1 constant (T.nnet.relu's gradient scales gx by 0.5; its
    leaky form splits it into two scaled terms; T.switch's adds a fill of zeros), the chains read only
    on the way to `reader` (programs[i] None where g is gx); None if not."""
    roots, progs, chain = [], [], {reader}
    for g in gs:
        v = g
        while v.owner is not None and isinstance(v.owner.op, Elemwise):
            free = [i for i in v.owner.inputs if scalar_constant_value(i) is None]
            if len(free) != 1:
                break
            chain.add(v.owner)
            v = free[0]
        prog = None if v is g else program_from_graph([v], g)
        if v is not g and prog is None:
            return None
        roots.append(v)
        progs.append(prog)
    gx = roots[0]
    if any(r is not gx for r in roots) or any(not g.type.is_compatible(gx.type) for g in gs):
        return None   # (one tensor, of the gradients' dtype and shape)
    for n in chain - {reader}:   # each chain's values go nowhere else
        if any(c not in chain for c, _ in fgraph.clients.get(n.outputs[0], [])):
            return None
    if any(c not in chain for c, _ in fgraph.clients.get(gx, [])):
        return None
    return gx, progs


def _on_one_gradient(dact, progs):
    """dact(z, out, g_1..g_m) with g_i = progs[i](g) (None: g itself), as a program of (z, out, g)."""
    for i, prog in enumerate(progs):
        if prog is not None:
            dact = dact.inline(2 + i, prog)
    z, out, g = object(), object(), object()
    merged, _ = dact.dedupe([z, out] + [g] * len(progs))
    return merged


def _one_gradient_ops(fgraph):
    """(node, named, gx, programs) for every gradient op (order 'pool_act') whose gradients are one
    tensor gx and elementwise terms of it alone (_one_source); named: its other inputs by role."""
    for node in list(fgraph.toposort()):
        op = node.op
        if node not in fgraph.graph or not isinstance(op, ConvPoolActGrad) or op.pool_last:
            continue
        named = dict(zip(op.input_roles(), node.inputs))
        gs = [named.pop(f"g{i}") for i in range(op.n_grads)]
        if not gs or any(i is g for g in gs for i in named.values()):
            continue
        found = _one_source(fgraph, gs, node)
        if found is not None:
            yield (node, named) + found


def _rebuild(fgraph, node, op, ins, reason):
    """node's outputs replaced by those of op(*ins), returned."""
    outs = op(*ins)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    _trace(node, outs)
    fgraph.replace_all(list(zip(node.outputs, outs)), reason=reason)
    return outs


@graph_rewrite("specialize")
def absorb_gradient_terms(fgraph):
    changes = 0
    for node, named, gx, progs in _one_gradient_ops(fgraph):
        if progs == [None]:   # already one gradient
            continue
        new = _with(node.op, dact=_on_one_gradient(node.op.dact, progs))
        _rebuild(fgraph, node, new, [dict(named, g0=gx)[r] for r in new.input_roles()], "absorb_gradient_terms")
        changes += 1
    return changes


@graph_rewrite("specialize")
def fold_dact_into_gx(fgraph):
    changes = 0
    for node, named, gx, progs in _one_gradient_ops(fgraph):
        op, src = node.op, gx.owner
        reads = [k for k in (0, 1) if reads_input(op.dact, k)]
        if len(reads) != 1 or src is None or not isinstance(src.op, ConvPoolActGrad) or not src.op.need_gx \
                or src.op.gx_act is not None or src.inputs[0] is not named["z" if reads[0] == 0 else "out"] \
                or dict(zip(src.op.output_roles(), src.outputs))["gx"] is not gx:
            continue
        bop = _with(src.op, gx_act=_of_x_and_g(_on_one_gradient(op.dact, progs), reads[0]))
        bouts = _rebuild(fgraph, src, bop, src.inputs, "fold_dact_into_gx")
        aop = _with(op, dact=_pass_through(op.dact.out_dtype()))
        ins = dict(named, g0=dict(zip(bop.output_roles(), bouts))["gx"])
        _rebuild(fgraph, node, aop, [ins[r] for r in aop.input_roles()], "fold_dact_into_gx")
        changes += 1
    return changes
