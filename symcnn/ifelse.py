"""theano.ifelse.ifelse: a lazy conditional, computing only the branch the condition selects.

`ifelse(cond, then_branch, else_branch)` makes one IfElse node whose inputs are the condition
and every variable the branches start from (graph inputs and shared variables); each branch
is kept as its own inner graph over stand-ins for those inputs. Running the node runs only the
selected inner graph: its numpy `perform` evaluates that graph node by node, and the native
lowering (the native backend's) emits both inner graphs' kernels under one branch
instruction. A node that a branch shares with the rest of the function is part of the inner
graph too, so it runs again inside the branch when that branch is taken.
"""
import numpy as np

from .graph.basic import Apply, Constant, Variable, clone_replace, graph_inputs
from .graph.fg import FunctionGraph
from .graph.op import Op, perform_nodes
from .graph.trace import user_trace, with_trace
from .tensor.type import TensorType, is_float
from .tensor.var import as_tensor_variable


def graph_signature(fg):
    """A structural description of an inner graph (equal graphs give equal signatures):
    input types, then per node its op, where its inputs come from, and its output types."""
    ids = {v: ("in", k) for k, v in enumerate(fg.inputs)}

    def where(v):
        if isinstance(v, Constant):
            data = np.asarray(v.data)
            return ("const", v.type, str(data.dtype), data.shape, data.tobytes())
        return ids[v]
    nodes = []
    for n, node in enumerate(fg.toposort()):
        ins = tuple(where(v) for v in node.inputs)
        for k, o in enumerate(node.outputs):
            ids[o] = ("node", n, k)
        nodes.append((node.op, ins, tuple(o.type for o in node.outputs)))
    return (tuple(v.type for v in fg.inputs), tuple(nodes), tuple(where(v) for v in fg.outputs))


class IfElse(Op):
    """IfElse(cond, *inputs): the outputs of the `then` inner graph when cond is true
    (nonzero), else those of the `else` inner graph; both graphs read stand-ins of `inputs`."""

    __props__ = ("signature",)

    def __init__(self, then_fg, else_fg, out_types, name=None):
        self.then_fg, self.else_fg = then_fg, else_fg
        self.out_types = tuple(out_types)
        self.name = name
        self.signature = (graph_signature(then_fg), graph_signature(else_fg), self.out_types)

    def __str__(self):
        return f"IfElse{{{self.name}}}" if self.name else "IfElse"

    def make_node(self, cond, *inputs):
        cond = as_tensor_variable(cond)
        if cond.ndim != 0:
            raise TypeError(f"ifelse: the condition must be a scalar, got {cond.describe()}")
        inputs = [as_tensor_variable(v) for v in inputs]
        for v, stand_in in zip(inputs, self.then_fg.inputs):
            if v.type != stand_in.type:
                raise TypeError(f"ifelse: input {v.describe()} does not have the type {stand_in.type} of the "
                                f"branches' input")
        return Apply(self, [cond] + inputs, [t() for t in self.out_types])

    def branch(self, cond_value):
        return self.then_fg if bool(np.asarray(cond_value)) else self.else_fg

    def perform(self, node, inputs, out):
        fg = self.branch(inputs[0])
        values = evaluate(fg, inputs[1:])
        for cell, value, var in zip(out, values, node.outputs):
            cell[0] = np.array(value, dtype=var.dtype, copy=True)

    def infer_shape(self, node, shapes):
        # The shapes are themselves chosen lazily (as Theano's IfElse.infer_shape does).
        from .tensor import basic as B
        cond, inputs = node.inputs[0], node.inputs[1:]
        then_outs = clone_replace(self.then_fg.outputs, dict(zip(self.then_fg.inputs, inputs)))
        else_outs = clone_replace(self.else_fg.outputs, dict(zip(self.else_fg.inputs, inputs)))
        t_dims = [B.shape(o)[d] for o in then_outs for d in range(o.ndim)]
        e_dims = [B.shape(o)[d] for o in else_outs for d in range(o.ndim)]
        if not t_dims:
            return [() for _ in node.outputs]
        dims = ifelse(cond, t_dims, e_dims)
        dims = dims if isinstance(dims, list) else [dims]
        result, k = [], 0
        for o in node.outputs:
            result.append(tuple(dims[k:k + o.ndim]))
            k += o.ndim
        return result

    def grad(self, inputs, grads):
        from . import gradient
        cond, free = inputs[0], inputs[1:]
        then_outs = clone_replace(self.then_fg.outputs, dict(zip(self.then_fg.inputs, free)))
        else_outs = clone_replace(self.else_fg.outputs, dict(zip(self.else_fg.inputs, free)))
        wrt = [v for v in free if is_float(v.dtype)]
        if not wrt:
            return [None] * len(inputs)

        def branch_grads(outs):
            known = [(o, g) for o, g in zip(outs, grads) if g is not None and is_float(o.dtype)]
            if not known:
                return [_zeros_like(v) for v in wrt]
            return _grads_given_output_grads(known, wrt)

        g = ifelse(cond, branch_grads(then_outs), branch_grads(else_outs))
        g = g if isinstance(g, list) else [g]
        by_var = dict(zip(wrt, g))
        return [None] + [by_var.get(v) for v in free]

    def connection_pattern(self, node):
        return [[False] * len(node.outputs)] + [[True] * len(node.outputs) for _ in node.inputs[1:]]


def _zeros_like(v):
    from .tensor.basic import zeros_like
    return zeros_like(v)


def _grads_given_output_grads(known, wrt):
    """d/d wrt of the branch, given the gradients `g` of its outputs `o`: the gradient of
    sum(o * g) with the g held constant."""
    from . import gradient
    from .tensor import math as M
    cost = None
    for o, g in known:
        term = M.sum(o * g)
        cost = term if cost is None else cost + term
    return gradient.grad(cost, wrt, consider_constant=[g for _, g in known], disconnected_inputs="ignore")


def evaluate(fg, values):
    """Run an inner graph's numpy references on `values` (one per input)."""
    order = fg.toposort()
    storage = {v: v.data for node in order for v in node.inputs if isinstance(v, Constant)}
    storage.update(zip(fg.inputs, values))
    perform_nodes(order, storage, lambda node, args: f"{node.op} (in a branch of ifelse)")
    return [v.data if isinstance(v, Constant) else storage[v] for v in fg.outputs]


def _common_type(a, b, k, trace):
    if a.dtype != b.dtype or a.ndim != b.ndim:
        raise TypeError(with_trace(
            f"ifelse: output {k} of the two branches must have the same dtype and ndim: {a.describe()} vs "
            f"{b.describe()} (cast one: T.cast(x, '{a.dtype}'))", trace))
    shape = tuple(x if x == y else None for x, y in zip(a.type.shape, b.type.shape))
    return TensorType(a.dtype, shape=shape)


def ifelse(condition, then_branch, else_branch, name=None):
    """Theano's ifelse: then_branch if the scalar `condition` is nonzero, else else_branch.
    Both are a variable or lists of the same length; only the selected branch is computed."""
    trace = user_trace()
    single = not isinstance(then_branch, (list, tuple))
    thens = [then_branch] if single else list(then_branch)
    elses = [else_branch] if not isinstance(else_branch, (list, tuple)) else list(else_branch)
    if len(thens) != len(elses):
        raise ValueError(with_trace(f"ifelse: the then branch has {len(thens)} outputs and the else branch "
                                    f"{len(elses)}", trace))
    if not thens:
        raise ValueError(with_trace("ifelse: the branches have no outputs", trace))
    thens = [as_tensor_variable(v) for v in thens]
    elses = [as_tensor_variable(v) for v in elses]
    cond = as_tensor_variable(condition)
    if cond.ndim != 0:
        raise TypeError(with_trace(f"ifelse: the condition must be a scalar, got {cond.describe()}", trace))
    out_types = [_common_type(t, e, k, trace) for k, (t, e) in enumerate(zip(thens, elses))]
    free = [v for v in dict.fromkeys(graph_inputs(thens) + graph_inputs(elses))
            if isinstance(v, Variable) and not isinstance(v, Constant) and v.owner is None]

    def inner(outs):
        stand_ins = [v.type() for v in free]
        for s, v in zip(stand_ins, free):
            s.name = v.name
        new = clone_replace(outs, dict(zip(free, stand_ins)))
        return FunctionGraph(stand_ins, new)

    op = IfElse(inner(thens), inner(elses), out_types, name=name)
    try:
        outs = op(cond, *free)
    except (TypeError, ValueError) as e:
        raise type(e)(with_trace(str(e), trace)) from None
    return outs if isinstance(outs, list) else (outs if single else [outs])
