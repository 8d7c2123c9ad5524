"""A sum of zero arrays each incremented in one slice -> one Join of the pieces; a slice of such
an array that is the incremented slice -> the increment.

The gradient of `x[:, a:b]` is `inc_subtensor(zeros_like(x)[:, a:b], g)`. A step that cuts one
product into parts (the LSTM's four gates, `preact[:, k*dim:(k+1)*dim]`) gets the product's
gradient as the sum of one such array per part: each is a full array of zeros, copied and then
incremented, and the sum reads them all again. When the parts' slices lie along one axis, with
constant bounds, and do not overlap, that sum is the concatenation along the axis of the parts'
gradients, with zeros in the gaps and after the last part: every element is written once.

Each part's gradient `g` enters as `g + zeros(slice)`, the zeros being `second(x[slice], 0)` made
from the x the zeros were made of, so a slice that runs past x's end is cut exactly as the
increment's was and the joined lengths add up to x's. Where g's type equals the sum's, the
canonical `g + 0 -> g` (identity_arithmetic) then drops the addition, as it does for any sum
with zeros: the join copies g itself. (The increment broadcast a g of length 1 at run time along
a dimension its type does not mark broadcastable; the parts of a gradient have their slice's
shape, and a g whose broadcast pattern differs from the zeros' is left alone.)
"""
from .. import scalar as ts
from ..graph.basic import Constant
from ..tensor.elemwise import Elemwise
from ..tensor.join import Join
from ..tensor.subtensor import IncSubtensor, Subtensor
from .canonicalize import const_value
from .core import node_rewrite

_FULL = ("slice", False, False, False)


def _is_add(node):
    return node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ts.Add)


def _zeros_maker(z):
    """fill(index) -> zeros of z[index] (a variable), when z is zeros_like(x) (second(x, 0) with a
    scalar-like 0) or a constant array of zeros; else None."""
    node = z.owner
    if node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ts.Second):
        x, zero = node.inputs
        if const_value(zero) == 0 and all(s == 1 for s in zero.type.shape) and x.ndim == z.ndim:
            return lambda index: node.op(x[index], zero)
        return None
    if isinstance(z, Constant) and const_value(z) == 0:
        return lambda index: z[index]
    return None


def _region(node):
    """(axis, start, stop or None) of inc_subtensor(z, y, ...) incrementing z in one slice along
    one axis with constant bounds 0 <= start < stop and no step; else None."""
    op = node.op
    if op.set_instead_of_inc:
        return None
    cut = [d for d, e in enumerate(op.idx_list) if e != _FULL]
    if len(cut) != 1 or op.idx_list[cut[0]] == "int":
        return None
    axis = cut[0]
    _, has_start, has_stop, has_step = op.idx_list[axis]
    if has_step:
        return None
    scalars = iter(node.inputs[2:])
    bounds = []
    for present, default in ((has_start, 0), (has_stop, None)):
        if not present:
            bounds.append(default)
            continue
        v = next(scalars)
        if not isinstance(v, Constant):
            return None
        bounds.append(int(v.data))
    start, stop = bounds
    if start < 0 or (stop is not None and stop <= start):
        return None
    return axis, start, stop


def _terms(fgraph, var, out):
    """The terms of the sum `var` through Add nodes read by nothing else (appended to out)."""
    node = var.owner
    if _is_add(node) and len(fgraph.clients.get(var, ())) == 1:
        for v in node.inputs:
            _terms(fgraph, v, out)
    else:
        out.append(var)
    return out


@node_rewrite("canonicalize", [Elemwise], name="inc_subtensor_sum_to_join")
def inc_subtensor_sum_to_join(fgraph, node):
    if not _is_add(node):
        return None
    out = node.outputs[0]
    clients = fgraph.clients.get(out, ())
    if len(clients) == 1 and clients[0][0] != "output" and _is_add(clients[0][0]):
        return None  # an inner add of a larger sum: the sum's root takes the whole tree
    terms = []
    for v in node.inputs:
        _terms(fgraph, v, terms)
    if len(terms) < 2:
        return None
    z, fill, axis, parts = None, None, None, []
    for t in terms:
        inc = t.owner
        if inc is None or not isinstance(inc.op, IncSubtensor) or len(fgraph.clients.get(t, ())) != 1:
            return None
        region = _region(inc)
        if region is None:
            return None
        if z is None:
            z, axis = inc.inputs[0], region[0]
            fill = _zeros_maker(z)
            if fill is None or z.type.shape[axis] == 1:
                return None
        y = inc.inputs[1]
        if inc.inputs[0] is not z or region[0] != axis or y.dtype != z.dtype \
                or y.type.broadcastable != z.type.broadcastable:
            return None
        parts.append((region[1], region[2], y))
    if out.dtype != z.dtype or out.type.broadcastable != z.type.broadcastable:
        return None
    parts.sort(key=lambda p: p[0])
    lead = (slice(None),) * axis
    pieces, pos = [], 0
    for start, stop, y in parts:
        if pos is None or start < pos:
            return None  # overlapping parts (or one after a part that runs to the end)
        if start > pos:
            pieces.append(fill(lead + (slice(pos, start),)))
        pieces.append(y + fill(lead + (slice(start, stop),)))
        pos = stop
    if pos is not None:
        pieces.append(fill(lead + (slice(pos, None),)))
    joined = Join(axis)(*pieces)
    if joined.dtype != out.dtype or joined.ndim != out.ndim:
        return None
    return [joined]


def _same_index(a, b):
    return a is b or (isinstance(a, Constant) and isinstance(b, Constant) and a.signature() == b.signature())


@node_rewrite("canonicalize", [Subtensor], name="subtensor_of_inc_subtensor")
def subtensor_of_inc_subtensor(fgraph, node):
    """inc_subtensor(zeros, y, idx)[idx] -> y + zeros[idx] (Theano's local_subtensor_inc_subtensor):
    the gradient of the rows a scan returns (`outputs[1:]`) pads them into zeros, and the gradient
    loop reads those same rows back. With y's type that of the selection, `+ zeros` then goes
    (identity_arithmetic), and so do the zero fill and the copy."""
    inc = node.inputs[0].owner
    if inc is None or not isinstance(inc.op, IncSubtensor) or inc.op.set_instead_of_inc \
            or inc.op.idx_list != node.op.idx_list or len(inc.inputs) - 2 != len(node.inputs) - 1 \
            or not all(_same_index(a, b) for a, b in zip(inc.inputs[2:], node.inputs[1:])):
        return None
    z, y, out = inc.inputs[0], inc.inputs[1], node.outputs[0]
    fill = _zeros_maker(z)
    if fill is None or "int" in node.op.idx_list or y.dtype != out.dtype \
            or y.type.broadcastable != out.type.broadcastable:
        return None
    scalars = iter(node.inputs[1:])
    index = tuple(slice(*[next(scalars) if present else None for present in entry[1:]])
                  for entry in node.op.idx_list)
    return [y + fill(index)]
