"""Lowering an op's inner graph (ifelse branches, IndexMap rows) into the enclosing function."""
from symcnn.graph.basic import Constant
from symcnn.graph.fg import FunctionGraph

from ..lower import lower


def rewritten(fg):
    """A rewritten copy of an inner graph (rewrites never touch the op's own graph)."""
    from symcnn.rewrite import rewrite_graph
    inner = FunctionGraph(fg.inputs, fg.outputs)
    rewrite_graph(inner)
    return inner


def lower_inner(ctx, fg, env):
    """Emit fg's kernels in order at the builder's position. env maps fg's inputs to Arrays;
    returns it completed with every inner variable (constant outputs included). Intermediate
    values get buffer slots of their own in the enclosing plan."""
    from ..build import constant_array
    for node in fg.toposort():
        for v in node.inputs:
            if v not in env and isinstance(v, Constant):
                env[v] = constant_array(ctx.module, v, ctx.b)
        for v in node.outputs:
            ctx.plan.slot[v] = ctx.plan.new_slot()
        fn_lower, _ = lower.lookup(node.op)
        for var, arr in zip(node.outputs, fn_lower(ctx, node, [env[v] for v in node.inputs])):
            arr.shape = ctx.static_shape(var, arr.shape)
            env[var] = arr
    for res in fg.outputs:
        if res not in env and isinstance(res, Constant):
            env[res] = constant_array(ctx.module, res, ctx.b)
    return env
