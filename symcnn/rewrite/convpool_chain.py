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
"""
from ..tensor.nnet.conv_epilogue import out_from_z
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
            outs = rop(*ins)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            _trace(old, outs)
            fgraph.replace_all(list(zip(old.outputs, outs)), reason="move_activation_to_consumers")
        changes += 1
    return changes


def _trace(node, outs):
    """The new outputs (and their node) trace to node's line."""
    for o, n in zip(node.outputs, outs):
        n.trace = o.trace
    if outs[0].owner is not None:
        outs[0].owner.trace = node.trace
