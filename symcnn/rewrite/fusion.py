"""Elementwise fusion: a connected tree of Elemwise nodes becomes one Elemwise
whose scalar op is a Composite, so the native backend emits one loop for it."""
from ..graph.basic import Constant
from ..tensor.composite import Composite
from ..tensor.elemwise import Elemwise
from ..tensor.math import Sum
from ..tensor.sum_of_elemwise import SumOfElemwise
from .core import node_rewrite
from .inplace import may_update_in_place

MAX_FUSED_INPUTS = 16  # one loop reading more arrays than this spills registers and streams


def _program(node):
    return Composite.of(node.op.scalar_op, [i.dtype for i in node.inputs], node.outputs[0].dtype)


@node_rewrite("fuse", [Elemwise])
def fuse_elemwise(fgraph, node):
    """Inline an Elemwise input whose only reader is this node (x * x counts once) and which has
    the same broadcast pattern (so no element is computed twice)."""
    out = node.outputs[0]
    program, inputs = _program(node).dedupe(node.inputs)
    for i, inp in enumerate(inputs):
        producer = inp.owner
        if producer is None or not isinstance(producer.op, Elemwise):
            continue
        if not _only_reader(fgraph, inp, node) or inp.type.broadcastable != out.type.broadcastable:
            continue
        fused, new_inputs = program.inline(i, _program(producer)).dedupe(inputs[:i] + producer.inputs + inputs[i + 1:])
        if len(new_inputs) > MAX_FUSED_INPUTS:
            continue
        return [Elemwise(fused)(*new_inputs)]
    return None


def _only_reader(fgraph, v, node):
    readers = fgraph.clients.get(v, ())
    return bool(readers) and all(c is node for c, _ in readers)


@node_rewrite("fuse", [Sum, SumOfElemwise])
def fuse_sum_prologue(fgraph, node):
    """Sum(Elemwise(...)) -> SumOfElemwise, when the Sum is the Elemwise's only reader: the
    elementwise result is computed as the sum reads it, never written. A SumOfElemwise inlines
    an Elemwise input the same way, where fuse_elemwise would (one reader, the elementwise
    result's broadcast pattern: no element computed twice)."""
    if isinstance(node.op, Sum):
        inp = node.inputs[0]
        if inp.owner is None or not isinstance(inp.owner.op, Elemwise) \
                or len(fgraph.clients.get(inp, ())) != 1 or inp.ndim == 0:
            return None
        return [SumOfElemwise(_program(inp.owner), node.op)(*inp.owner.inputs)]
    bcast = node.op.elemwise_type(node.inputs).broadcastable
    program, inputs = node.op.program.dedupe(node.inputs)
    for i, inp in enumerate(inputs):
        producer = inp.owner
        if producer is None or not isinstance(producer.op, Elemwise) \
                or not _only_reader(fgraph, inp, node) or inp.type.broadcastable != bcast:
            continue
        fused, new_inputs = program.inline(i, _program(producer)).dedupe(inputs[:i] + producer.inputs + inputs[i + 1:])
        if len(new_inputs) > MAX_FUSED_INPUTS:
            continue
        return [SumOfElemwise(fused, node.op.sum)(*new_inputs)]
    return None


def _elementwise_shape(node):
    """The broadcast pattern of the elements an Elemwise, SumOfElemwise or Sum node computes (or sums)."""
    if isinstance(node.op, SumOfElemwise):
        return node.op.elemwise_type(node.inputs).broadcastable
    if isinstance(node.op, Sum):
        return node.inputs[0].type.broadcastable
    return node.outputs[0].type.broadcastable


def _full_inputs(node):
    """How many of node's inputs have its elements' full extent (not broadcast, not a constant)."""
    bcast = _elementwise_shape(node)
    return sum(1 for v in set(node.inputs) if v.type.broadcastable == bcast and not isinstance(v, Constant))


@node_rewrite("fuse", [Elemwise, SumOfElemwise, Sum])
def fuse_elemwise_into_readers(fgraph, node):
    """Inline an Elemwise input that several elementwise nodes read (Elemwise, SumOfElemwise or Sum,
    each over the Elemwise's own elements), each reader computing it again: in a batch norm,
    x_hat = (x - mean) / std feeds the scale and shift, and the backward's sums and products.
    Only where that moves less memory: the Elemwise reads k full-size arrays and writes one, which
    its r readers read back (k + 1 + r arrays); inlined, each reader reads the k (r * k). And only
    a cheap program (_cheap), for it runs r times."""
    if isinstance(node.op, Sum):
        program, inputs = None, node.inputs
    else:
        program, inputs = (node.op.program if isinstance(node.op, SumOfElemwise) else _program(node)).dedupe(node.inputs)
    for i, inp in enumerate(inputs):
        producer = inp.owner
        if producer is None or not isinstance(producer.op, Elemwise) or isinstance(inp, Constant):
            continue
        readers = {c for c, _ in fgraph.clients.get(inp, ())}
        if len(readers) < 2 or "output" in readers or not _cheap(_program(producer)):
            continue
        bcast = inp.type.broadcastable
        if not all(isinstance(r.op, (Elemwise, SumOfElemwise, Sum)) and _elementwise_shape(r) == bcast
                   and len(set(r.inputs) | set(producer.inputs)) - 1 <= MAX_FUSED_INPUTS for r in readers):
            continue
        k, r = _full_inputs(producer), len(readers)
        if r * k >= k + 1 + r:
            continue
        if isinstance(node.op, Sum):
            return [SumOfElemwise(_program(producer), node.op)(*producer.inputs)]
        fused, new_inputs = program.inline(i, _program(producer)).dedupe(inputs[:i] + producer.inputs + inputs[i + 1:])
        if isinstance(node.op, SumOfElemwise):
            return [SumOfElemwise(fused, node.op.sum)(*new_inputs)]
        return [Elemwise(fused)(*new_inputs)]
    return None

# -- GEMM prologues and epilogues -------------------------------------------------------
#
# After fuse_elemwise has merged elementwise chains into single Composite Elemwise nodes,
# elementwise work next to a matrix product moves into the product's kernel (FusedDot,
# symcnn/tensor/blas.py):
#
#   fuse_dot_epilogue: Elemwise(..., dot(A, B), ...) -> FusedDot(epilogue=that Elemwise), when
#     the product is read by nothing else and the Elemwise's result has the product's shape
#     (its other inputs, e.g. a bias row or a saved activation, are broadcast to that shape
#     and read once per output element). The product is never written to memory unfused.
#     If several inputs are products, the first one that qualifies is fused; the others are
#     read as extra operands. Not fused: an Elemwise computing a function output from a shared
#     variable of its type (an SGD update, written in place; see _may_update_in_place). An
#     Elemwise that fuse_elemwise is about to inline into its reader waits, so the epilogue is
#     the whole chain.
#
#   fuse_dot_prologue: dot(Elemwise(...), B) -> FusedDot(prologue_a=that Elemwise) (and the
#     same for B), when every reader of the Elemwise's result is a product loading it as an
#     operand (Dot, or a FusedDot operand without a prologue yet). Each product then evaluates
#     the elementwise program once per operand element (A's value is hoisted out of the
#     innermost loop; B is packed once into a panel), which is what the Elemwise itself costs,
#     against a product that does n multiply-adds per operand element; and the Elemwise's
#     result is never written and read back. With one reader nothing is duplicated. With
#     several readers the program is copied into each, but only if it is cheap (a few
#     arithmetic steps, no libm call): in the backward of tanh(dot(x, W) + b), the derivative
#     g * (1 - h*h) feeds dot(g_pre, W.T) and dot(x.T, g_pre). When any reader is not a product
#     (e.g. the Sum computing the bias gradient), the Elemwise must be materialized anyway,
#     and then the products read its one output instead of re-reading its (often several)
#     inputs: no prologue. In practice the derivative usually goes into the *epilogue* of the
#     product computing g_h = dot(g_out, W_next.T), which fuse_dot_epilogue does first (the
#     rewrites visit nodes producers first), so it is computed once.
from ..tensor.blas import FusedDot, move_input_first  # noqa: E402
from ..tensor.math import Dot  # noqa: E402

from .. import scalar as _ts
DUPLICATE_MAX_STEPS = 8   # a prologue copied into several products: at most this many scalar steps
_EXPENSIVE = (_ts.Exp, _ts.Log, _ts.Tanh, _ts.Sigmoid, _ts.Pow, _ts.Sqrt, _ts.IntDiv, _ts.Mod)


def _is_product(v):
    return v.owner is not None and isinstance(v.owner.op, (Dot, FusedDot))


def _parts(node):
    """(prologue_a, A inputs, prologue_b, B inputs, epilogue, extra inputs) of a Dot or FusedDot."""
    op = node.op
    if isinstance(op, Dot):
        return None, [node.inputs[0]], None, [node.inputs[1]], None, []
    a_ins, b_ins, extras = op.split(node.inputs)
    return op.prologue_a, a_ins, op.prologue_b, b_ins, op.epilogue, extras


def _build(pa, a_ins, pb, b_ins, epi, extras, like):
    """The FusedDot node's output, or None if its type would differ from `like`'s."""
    new = FusedDot(pa, len(a_ins), pb, len(b_ins), epi)(*(a_ins + b_ins + extras))
    return new if new.type == like.type else None


def _may_update_in_place(fgraph, node):
    """An Elemwise computing a function output from a shared variable it may update in place:
    an SGD-style update (W - lr * dot(x.T, g)), which the native memory plan writes in place
    into W's storage (see rewrite/inplace.py). A FusedDot accumulates into its output buffer
    before its epilogue reads W, so it cannot, and its result would be copied into W afterwards:
    reading the product once from memory is no worse than that. Such updates stay unfused."""
    return any(getattr(i, "is_shared", False) and may_update_in_place(fgraph, node, i) for i in node.inputs)


def _elemwise_consumer_will_absorb(fgraph, node):
    """fuse_elemwise will inline this node into its only reader: wait for the whole chain, so
    the epilogue is the complete chain (and an SGD update keeps its multiply, see above)."""
    out = node.outputs[0]
    readers = fgraph.clients.get(out, ())
    if len(readers) != 1 or readers[0][0] == "output":
        return False
    reader = readers[0][0]
    return (isinstance(reader.op, Elemwise) and reader.outputs[0].type.broadcastable == out.type.broadcastable
            and len(set(node.inputs) | set(reader.inputs)) - 1 <= MAX_FUSED_INPUTS)


@node_rewrite("fuse", [Elemwise])
def fuse_dot_epilogue(fgraph, node):
    """Elemwise(..., dot(A, B), ...) -> FusedDot with the Elemwise as its epilogue."""
    out = node.outputs[0]
    if _may_update_in_place(fgraph, node) or _elemwise_consumer_will_absorb(fgraph, node):
        return None
    program, inputs = _program(node).dedupe(node.inputs)
    for pos, d in enumerate(inputs):
        if not _is_product(d) or d.type.broadcastable != out.type.broadcastable:
            continue
        readers = fgraph.clients.get(d, ())
        if not readers or any(c is not node for c, _ in readers):
            continue
        pa, a_ins, pb, b_ins, old_epi, old_extras = _parts(d.owner)
        epi = move_input_first(program, pos)
        extras = old_extras + inputs[:pos] + inputs[pos + 1:]
        if old_epi is not None:
            epi = epi.inline(0, old_epi)     # inputs: the product, old extras, then ours
        epi, ins = epi.dedupe([d] + extras)  # d stands for the product (input 0)
        if len(ins) - 1 > MAX_FUSED_INPUTS:
            continue
        new = _build(pa, a_ins, pb, b_ins, epi, ins[1:], out)
        if new is not None:
            return [new]
    return None


def _cheap(program):
    return len(program.steps) <= DUPLICATE_MAX_STEPS and not any(
        isinstance(s, _EXPENSIVE) for s, _, _, _ in program.steps)


def _operand_readers_only(fgraph, v):
    """How many readers v has, if all of them load it as a product operand without a prologue
    (else 0)."""
    readers = fgraph.clients.get(v, ())
    for c, i in readers:
        if c == "output":
            return 0
        if isinstance(c.op, Dot):
            continue
        if isinstance(c.op, FusedDot) and ((i == 0 and c.op.prologue_a is None)
                                           or (i == c.op.na and c.op.prologue_b is None)):
            continue
        return 0
    return len(readers)


@node_rewrite("fuse", [Dot, FusedDot])
def fuse_dot_prologue(fgraph, node):
    """dot(Elemwise(...), B) -> FusedDot with the Elemwise as A's prologue (likewise for B)."""
    pa, a_ins, pb, b_ins, epi, extras = _parts(node)
    for side, (comp, ins) in enumerate(((pa, a_ins), (pb, b_ins))):
        if comp is not None:
            continue
        producer = ins[0].owner
        if producer is None or not isinstance(producer.op, Elemwise):
            continue
        n_readers = _operand_readers_only(fgraph, ins[0])
        if n_readers == 0:
            continue
        program, new_ins = _program(producer).dedupe(producer.inputs)
        if len(new_ins) > MAX_FUSED_INPUTS or (n_readers > 1 and not _cheap(program)):
            continue
        parts = [pa, a_ins, pb, b_ins]
        parts[2 * side:2 * side + 2] = [program, new_ins]
        new = _build(*parts, epi, extras, node.outputs[0])
        if new is not None:
            return [new]
    return None
