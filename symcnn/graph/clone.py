"""theano.clone: copies of a graph with some variables replaced."""
from .basic import Constant, Variable, clone_graph, clone_replace, graph_inputs
from .trace import user_trace, with_trace


def clone(output, replace=None, strict=True, share_inputs=True):
    """Copies of `output` (a variable or a list/tuple of them) in which each key of `replace`
    (a dict or a list of pairs) is replaced by its value. Every node is copied, so the user's
    graph is never changed. strict=True: a replacement must have exactly the type of what it
    replaces; strict=False converts it (a cast, or a different static shape) when it can.
    share_inputs=False: the graph's inputs are copied too (constants and shared variables stay)."""
    trace = user_trace()
    single = not isinstance(output, (list, tuple))
    outputs = [output] if single else list(output)
    for o in outputs:
        if not isinstance(o, Variable):
            raise TypeError(with_trace(f"clone: outputs must be symbolic variables, got {o!r}", trace))
    pairs = list(replace.items()) if isinstance(replace, dict) else list(replace or [])
    table = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise TypeError(with_trace(f"clone: replace must be a dict or (variable, replacement) pairs, "
                                       f"got {pair!r}", trace))
        old, new = pair
        if not isinstance(old, Variable):
            raise TypeError(with_trace(f"clone: replace keys must be symbolic variables, got {old!r}", trace))
        from ..tensor.var import as_tensor_variable
        new = as_tensor_variable(new)
        if new.type != old.type:
            if strict or new.ndim != old.ndim:
                raise TypeError(with_trace(
                    f"clone: {old.describe()} is {old.type} but its replacement {new.describe()} is {new.type}"
                    + ("; pass strict=False to convert it" if strict and new.ndim == old.ndim else ""), trace))
            if new.dtype != old.dtype:
                from ..tensor.basic import cast
                new = cast(new, old.dtype)
        table[old] = new
    result = clone_replace(outputs, table) if table else outputs
    if not share_inputs:
        from ..compile.shared import SharedVariable
        roots = {v: v.clone() for v in graph_inputs(result)
                 if not isinstance(v, (Constant, SharedVariable)) and v.owner is None}
        result = clone_replace(result, roots) if roots else result
    result, _ = clone_graph(result)
    return result[0] if single else result
