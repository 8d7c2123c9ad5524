"""When an update may be computed in place: the one rule the front end and the backend share.

No graph rewrite makes ops destructive. The native backend decides in its memory plan
which update values it writes straight into the shared variable's storage,
and fusion (rewrite/fusion.py) keeps such an update an Elemwise so that the plan can: both ask
`may_update_in_place`.
"""
from ..tensor.elemwise import Elemwise


def may_update_in_place(fgraph, node, target):
    """Whether the Elemwise `node` may write its result into the storage of `target`, the graph
    input (a shared variable) its result updates: the result is read by nothing but one function
    output, and the node reads `target` itself with the result's dtype and broadcast pattern (only
    then is the new value sure to have the target's shape: an update may otherwise change it, as in
    Theano). The memory plan adds what only it knows (views of the target, aliased outputs)."""
    if not isinstance(node.op, Elemwise):
        return False
    out = node.outputs[0]
    readers = fgraph.clients.get(out, ())
    return (len(readers) == 1 and readers[0][0] == "output" and target in node.inputs
            and target.dtype == out.dtype and target.type.broadcastable == out.type.broadcastable)
