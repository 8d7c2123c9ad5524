"""Tie masks nothing reads (phase 'fuse'). A max-pooling ConvPoolAct writes the tie bitmask of
every window for its gradient (which positions held the maximum). In a function without that
gradient (validation, test, inference) nothing reads it: drop_unused_tie_masks rebuilds the op with
keep_mask=False, whose kernels compute the window maxima alone and write no mask (LeNet's validate
step: 20 and 50 uint8 planes of every image's pooled output, and the comparisons that set them)."""
from ..tensor.nnet.convpool import ConvPoolAct
from .core import graph_rewrite


@graph_rewrite("fuse")
def drop_unused_tie_masks(fgraph):
    changes = 0
    for node in list(fgraph.toposort()):
        op = node.op
        if node not in fgraph.graph or not isinstance(op, ConvPoolAct) or "mask" not in op.output_roles():
            continue
        named = dict(zip(op.output_roles(), node.outputs))
        if fgraph.clients.get(named["mask"]):   # read by a node or returned
            continue
        new = ConvPoolAct(**dict({p: getattr(op, p) for p in op.__props__}, keep_mask=False))
        outs = new(*node.inputs)
        outs = dict(zip(new.output_roles(), outs if isinstance(outs, (list, tuple)) else [outs]))
        for role, v in outs.items():
            v.trace = named[role].trace
        outs["out"].owner.trace = node.trace
        fgraph.replace_all([(named[r], v) for r, v in outs.items()], reason="drop_unused_tie_masks")
        changes += 1
    return changes
