"""Elementwise fusion: a connected tree of Elemwise nodes becomes one Elemwise
whose scalar op is a Composite, so the native backend emits one loop for it."""
from ..tensor.composite import Composite
from ..tensor.elemwise import Elemwise
from .core import node_rewrite

MAX_FUSED_INPUTS = 16  # one loop reading more arrays than this spills registers and streams


def _program(node):
    return Composite.of(node.op.scalar_op, [i.dtype for i in node.inputs], node.outputs[0].dtype)


@node_rewrite("fuse", [Elemwise])
def fuse_elemwise(fgraph, node):
    """Inline an Elemwise input whose only reader is this node and which has the same
    broadcast pattern (so no element is computed twice)."""
    out = node.outputs[0]
    for i, inp in enumerate(node.inputs):
        producer = inp.owner
        if producer is None or not isinstance(producer.op, Elemwise):
            continue
        if len(fgraph.clients.get(inp, ())) != 1 or inp.type.broadcastable != out.type.broadcastable:
            continue
        new_inputs = node.inputs[:i] + producer.inputs + node.inputs[i + 1:]
        program = _program(node).inline(i, _program(producer))
        program, new_inputs = program.dedupe(new_inputs)
        if len(new_inputs) > MAX_FUSED_INPUTS:
            continue
        return [Elemwise(program)(*new_inputs)]
    return None
