"""Elementwise fusion: a connected tree of Elemwise nodes becomes one Elemwise
whose scalar op is a Composite, so the native backend emits one loop for it."""
from ..tensor.composite import Composite
from ..tensor.elemwise import Elemwise
from .core import node_rewrite
from .inplace import may_update_in_place

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
