"""Drop the run-time checks that an earlier check of the same condition already decided.

Each node's lowering checks the dimensions it relies on (Context.fail_if: a branch to a block that
records the failure and returns), so a training step tests the same input dimension against the
same constant in every node that reads it: about half of a cifar-sized step's 240 checks repeat
one made before. A check whose condition is the same comparison of the same values as a check on
every path to it (one whose block dominates it) can never fail: the earlier one would have returned
first. Its branch becomes unconditional and its failure block goes, so LLVM has fewer blocks to
optimise and emit. The error reported for bad input is unchanged: it always came from the earlier
check.
"""
import networkx as nx
from llvmlite import ir

from .irutil import successors


def _operand_key(v):
    if isinstance(v, ir.Constant):
        return ("const", str(v))
    return ("value", id(v))


def _condition_key(cond):
    """A hashable identity of an integer comparison of values (None: not such a comparison)."""
    if not isinstance(cond, ir.ICMPInstr):
        return None
    ops = [_operand_key(v) for v in cond.operands]
    if cond.op in ("eq", "ne"):
        ops.sort(key=repr)
    return (cond.op, tuple(ops))


def _failure_block(block, fail_fn):
    """Whether the block only records a failure (a call of fail_fn) and returns."""
    ins = block.instructions
    return (len(ins) == 2 and isinstance(ins[0], ir.CallInstr) and ins[0].callee is fail_fn
            and isinstance(ins[1], ir.Ret))


def drop_dominated_checks(fn, fail_fn):
    """Remove fn's checks (conditional branches to a failure block of fail_fn) whose comparison a
    dominating check already made; returns how many went."""
    if fail_fn is None or not fn.blocks:
        return 0
    g = nx.DiGraph()
    preds = {}
    for blk in fn.blocks:
        g.add_node(blk)
        for s in successors(blk):
            g.add_edge(blk, s)
            preds[s] = preds.get(s, 0) + 1
    entry = fn.blocks[0]
    idom = nx.immediate_dominators(g, entry)
    g.clear()   # its views refer back to it: let the blocks go without the cyclic collector
    children = {}
    for blk, parent in idom.items():
        if blk is not parent:
            children.setdefault(parent, []).append(blk)
    dropped = []
    # walk the dominator tree; `known` holds the conditions checked in dominating blocks
    stack = [(entry, frozenset())]
    while stack:
        blk, known = stack.pop()
        term = blk.terminator
        if isinstance(term, ir.ConditionalBranch):
            cond, on_true, on_false = term.operands
            key = _condition_key(cond)
            if key is not None and _failure_block(on_true, fail_fn) and preds[on_true] == 1:
                if key in known:
                    dropped.append((blk, on_true, on_false))
                else:
                    known = known | {key}
        for child in children.get(blk, ()):
            stack.append((child, known))
    for blk, fail_block, ok in dropped:
        gone = blk.terminator
        blk.instructions.remove(gone)
        blk.terminator = None
        ir.IRBuilder(blk).branch(ok)
        fn.blocks.remove(fail_block)
        # the removed IR points at its block and back: break the cycles now, as build.release_ir
        # does for the rest of the module
        for ins in fail_block.instructions + [gone]:
            ins.__dict__.clear()
        fail_block.__dict__.clear()
    return len(dropped)
