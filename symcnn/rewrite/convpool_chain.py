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

When every gradient Ag reads is zero or an elementwise function of the B gradients' gx alone (read
by nothing else), the derivative moves too: each B gradient gets dx_act, act's derivative (and its
part of that function), applied to each image's gx while it is in cache, so its gx is the gradient
of z, and Ag's dact only sums them: Ag reads neither z nor out, one pass over the layer's largest
array fewer (allconv's 32x32x32 first layer: 13 MB a step). A gradient program is linear in the
gradients flowing in, so the sum of the parts is the whole.

It applies to A in the order 'pool_act' (without pooling or pooling before the activation: out is
act(z) elementwise); with 'act_pool' the activation comes before the pooling and cannot move past
it. Readers of out that are not fused convolutions (a dense layer, a function output) keep the
rewrite from firing.
"""
from ..scalar import Second
from ..tensor.elemwise import Elemwise
from ..tensor.nnet.conv_epilogue import (gradient_of_one, out_from_z, program_from_graph, scalar_constant_value,
                                         sum_of_gradients)
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
        moved = _consumer_derivatives(fgraph, grads, consumers, op.act)
        derivs, sources = moved if moved is not None else (None, {})
        new = _with(op, act=None, keep_z=False)
        nouts = new(*node.inputs)
        nouts = nouts if isinstance(nouts, (list, tuple)) else [nouts]
        _trace(node, nouts)
        nnamed = dict(zip(new.output_roles(), nouts))
        pre = nnamed["out"]
        # one node at a time in graph order, each rebuilt from its inputs as the earlier
        # replacements left them (a consumer's gradient reads the consumer's new outputs)
        order = {n: k for k, n in enumerate(fgraph.toposort())}
        new_gx = {}   # a consumer gradient -> its new gx (the gradient of z)
        for old in sorted(grads + consumers, key=order.get):
            if old in grads:
                dact = (sum_of_gradients(len(sources[old]), old.outputs[0].dtype) if derivs is not None
                        else out_from_z(old.op.dact, op.act))
                gop = _with(old.op, dact=dact)
                by_role = dict(zip(old.op.input_roles(), old.inputs))
                by_role.update(z=pre, mask=nnamed.get("mask"))
                if derivs is not None:   # the consumers' gradients of z, one each
                    by_role.update({f"g{i}": new_gx[c] for i, c in enumerate(sources[old])})
                rop, ins = gop, [by_role[r] for r in gop.input_roles()]
            elif derivs is not None and old in derivs:
                rop, ins = _with(old.op, in_act=op.act, dx_act=derivs[old]), [pre] + list(old.inputs[1:])
            else:
                rop, ins = _with(old.op, in_act=op.act), [pre] + list(old.inputs[1:])
            outs = rop(*ins)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            if derivs is not None and old in derivs:
                new_gx[old] = outs[rop.output_roles().index("gx")]
            _trace(old, outs)
            fgraph.replace_all(list(zip(old.outputs, outs)), reason="move_activation_to_consumers")
        changes += 1
    return changes


def _consumer_derivatives(fgraph, grads, consumers, act):
    """({consumer gradient node: its dx_act}, {layer gradient: [consumer gradient nodes]}) when every
    gradient g_i flowing into the layer's gradients is zero or an elementwise function of consumer
    gradients' gx alone (a sum of them, T.grad's 0.5 * g of relu's 0.5 * (z + |z|)), none read by
    anything else: each consumer then applies act's derivative (and its part of that function) to
    its own gx (gradient_of_one), on each image while it is in cache, and the layer's gradient only
    sums them, reading neither z nor out; else None (the layer's gradient applies it)."""
    derivs, sources = {}, {}
    for ag in grads:
        dact = out_from_z(ag.op.dact, act)
        roles = ag.op.input_roles()
        slots = {}   # consumer gradient -> {slot: (program of the leaves, the consumer's leaf)}
        for i in range(ag.op.n_grads):
            g = ag.inputs[roles.index(f"g{i}")]
            if _is_zero(g):
                continue
            found = _gradient_leaves(fgraph, g, ag)
            if found is None:
                return None
            leaves, prog = found
            for j, c in enumerate(leaves):
                if c not in consumers or c in derivs:
                    return None
                slots.setdefault(c, {})[i] = (prog, j)
        if not slots:
            return None
        for c, taken in slots.items():
            derivs[c] = gradient_of_one(dact, taken, ag.outputs[0].dtype)
        sources[ag] = list(slots)
    return (derivs, sources) if derivs else None


def _is_zero(v):
    """A gradient that is a constant 0 or zeros shaped like something (second(x, 0))."""
    if scalar_constant_value(v) == 0:
        return True
    node = v.owner
    return node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, Second) \
        and scalar_constant_value(node.inputs[1]) == 0


def _gradient_leaves(fgraph, g, reader):
    """([ConvPoolActGrad nodes], program) with g = program(their gx..) through Elemwise steps of
    those alone (and size-1 constants), each step read only by the next (g: only by reader; a
    second(v, 0) may read v's shape); else None."""
    leaves, leaf_vars = [], []

    def visit(v, nxt):
        if any(c is not nxt and not (c != "output" and i == 0 and _is_zero(c.outputs[0]))
               for c, i in fgraph.clients.get(v, [])):
            return False
        node = v.owner
        if node is None:
            return False
        if isinstance(node.op, ConvPoolActGrad):
            if not node.op.need_gx or v is not node.outputs[node.op.output_roles().index("gx")]:
                return False
            if all(u is not v for u in leaf_vars):
                leaves.append(node)
                leaf_vars.append(v)
            return True
        if not isinstance(node.op, Elemwise):
            return False
        ins = [i for i in node.inputs if scalar_constant_value(i) is None]
        return bool(ins) and all(visit(i, node) for i in ins)

    if not visit(g, reader):
        return None
    prog = program_from_graph(leaf_vars, g)
    return None if prog is None else (leaves, prog)


def _trace(node, outs):
    """The new outputs (and their node) trace to node's line."""
    for o, n in zip(node.outputs, outs):
        n.trace = o.trace
    if outs[0].owner is not None:
        outs[0].owner.trace = node.trace
