"""Rewrites of the outer graph that make a Scan do less work per step (Theano's scan_opt).

They run in the canonicalize phase, before the fuse phase turns the outer dots they create
into fused GEMMs; the inner graph of every Scan is rewritten again when it is lowered.

- scan_remove_unused: outputs nobody reads (a gradient scan computes the gradient of every
  sequence, also of a mask nobody differentiates) and inputs the step no longer reads are
  dropped; a state or carry stays while a kept output reads it.
- scan_pushout_nonseqs (Theano's PushOutNonSeqScan): a computation of the step that reads only
  non-sequences and constants gives the same value at every step: it is computed once before
  the loop and passed in as a new non-sequence.
- scan_pushout_add (Theano's PushOutScanOutput / scan_pushout_add): a carry that only
  accumulates, c <- c + dot(a_t, b_t) (also with a_t = p_t.T, vectors, or c <- c + sum(b_t, axis)),
  is computed after the loop: the step outputs a_t and b_t (unless they already are sequences or
  per-step outputs) and the sum over steps becomes one dot of the stacks, their step and row
  dimensions merged (T*B rows), added to the initial value. One large GEMM instead of T small
  ones; the gradient of a recurrent weight is the case that matters.
- scan_reuse_forward_dots: a gradient loop rebuilds its forward step to differentiate it; the
  products (dots, with their elementwise epilogue) it would compute again from the forward
  step's own inputs are output by the forward loop, one row per step, and read back.
"""
from ..graph.basic import Constant, clone_replace, graph_inputs, io_toposort
from ..print_op import Print
from ..rewrite.core import graph_rewrite, node_rewrite, replace_node
from ..tensor.basic import dimshuffle, reshape
from ..tensor.elemwise import DimShuffle, Elemwise
from ..tensor.math import Dot, Sum, dot, identity
from ..tensor.subtensor import Subtensor
from .. import scalar as ts
from .scan_op import Scan, ScanInfo


class _Parts:
    """A Scan node taken apart into editable groups; build() makes the new node."""

    def __init__(self, node):
        op, info = node.op, node.op.info
        ins, outs, outer = op.inner_inputs, op.inner_outputs, node.inputs
        self.node = node
        self.n_steps = outer[0]
        self.seqs = [[o, i, r] for o, i, r in zip(info.outer_seqs(outer), info.inner_seqs(ins), info.seq_reverse)]
        self.states = [[o, taps, list(i), out, res] for o, taps, i, out, res in
                       zip(info.outer_states(outer), info.state_taps, info.inner_state_taps(ins),
                           outs[:info.n_states], node.outputs[:info.n_states])]
        a = info.n_states
        self.carries = [[o, i, out, res] for o, i, out, res in
                        zip(info.outer_carries(outer), info.inner_carries(ins), outs[a:a + info.n_carries],
                            node.outputs[a:a + info.n_carries])]
        a += info.n_carries
        self.nitsots = [[out, r, res] for out, r, res in
                        zip(outs[a:a + info.n_nitsot], info.nit_reverse, node.outputs[a:])]
        self.nonseqs = [[o, i] for o, i in zip(info.outer_nonseqs(outer), info.inner_nonseqs(ins))]
        self.cond = outs[-1] if info.as_while else None

    def inner_outputs(self):
        return ([s[3] for s in self.states] + [c[2] for c in self.carries] + [m[0] for m in self.nitsots]
                + ([self.cond] if self.cond is not None else []))

    def set_inner_outputs(self, outs):
        """Give the states, carries, per-step outputs and condition these new inner outputs (in
        the order inner_outputs() lists them)."""
        k = 0
        for s in self.states:
            s[3] = outs[k]
            k += 1
        for c in self.carries:
            c[2] = outs[k]
            k += 1
        for m in self.nitsots:
            m[0] = outs[k]
            k += 1
        if self.cond is not None:
            self.cond = outs[k]

    def build(self):
        """The new Scan node's outputs: (states, carries, per-step outputs), in the groups' order."""
        old = self.node.op
        info = ScanInfo(n_seqs=len(self.seqs), state_taps=[s[1] for s in self.states],
                        n_carries=len(self.carries), n_nitsot=len(self.nitsots), n_nonseqs=len(self.nonseqs),
                        as_while=self.cond is not None, seq_reverse=[s[2] for s in self.seqs],
                        nit_reverse=[m[1] for m in self.nitsots], name=old.info.name)
        inner_in = ([s[1] for s in self.seqs] + [v for s in self.states for v in s[2]]
                    + [c[1] for c in self.carries] + [n[1] for n in self.nonseqs])
        # an inner output must be computed by the step, not be one of its inputs
        inner_out = [identity(v) if v in set(inner_in) or isinstance(v, Constant) else v
                     for v in self.inner_outputs()]
        op = Scan(inner_in, inner_out, info, trace=old.trace)
        op.truncate_gradient = old.truncate_gradient
        outer = ([self.n_steps] + [s[0] for s in self.seqs] + [s[0] for s in self.states]
                 + [c[0] for c in self.carries] + [n[0] for n in self.nonseqs])
        res = op(*outer)
        res = res if isinstance(res, list) else [res]
        a, b = info.n_states, info.n_states + info.n_carries
        return res[:a], res[a:b], res[b:]


def _inner_clients(outputs):
    clients = {}
    for node in io_toposort(outputs):
        for k, v in enumerate(node.inputs):
            clients.setdefault(v, []).append((node, k))
    for k, v in enumerate(outputs):
        clients.setdefault(v, []).append(("output", k))
    return clients


def _same_type(a, b):
    return a.type.dtype == b.type.dtype and a.type.ndim == b.type.ndim


def _side_effect(op):
    return isinstance(op, Print) or getattr(op, "collective", False)


# -- dropping what nobody reads ----------------------------------------------------------------------

@node_rewrite("canonicalize", [Scan], name="scan_remove_unused")
def scan_remove_unused(fgraph, node):
    p = _Parts(node)
    used = lambda v: bool(fgraph.clients.get(v))  # noqa: E731
    keep_state = [used(s[4]) for s in p.states]
    keep_carry = [used(c[3]) for c in p.carries]
    keep_nit = [used(m[2]) for m in p.nitsots]
    while True:  # a kept output may read a state or carry nobody reads outside
        outs = ([s[3] for s, k in zip(p.states, keep_state) if k] + [c[2] for c, k in zip(p.carries, keep_carry) if k]
                + [m[0] for m, k in zip(p.nitsots, keep_nit) if k] + ([p.cond] if p.cond is not None else []))
        read = set(graph_inputs(outs))
        grown = False
        for i, s in enumerate(p.states):
            if not keep_state[i] and read & set(s[2]):
                keep_state[i] = grown = True
        for i, c in enumerate(p.carries):
            if not keep_carry[i] and c[1] in read:
                keep_carry[i] = grown = True
        if not grown:
            break
    keep_seq = [s[1] in read for s in p.seqs]
    keep_nonseq = [n[1] in read for n in p.nonseqs]
    if all(keep_state + keep_carry + keep_nit + keep_seq + keep_nonseq):
        return None
    if not any(keep_state + keep_carry + keep_nit):
        return None  # nothing read: the node goes with its last client
    old = (p.states, p.carries, p.nitsots)
    p.states = [s for s, k in zip(p.states, keep_state) if k]
    p.carries = [c for c, k in zip(p.carries, keep_carry) if k]
    p.nitsots = [m for m, k in zip(p.nitsots, keep_nit) if k]
    p.seqs = [s for s, k in zip(p.seqs, keep_seq) if k]
    p.nonseqs = [n for n, k in zip(p.nonseqs, keep_nonseq) if k]
    new = p.build()
    result = []
    for group, keeps, fresh, res_at in zip(old, (keep_state, keep_carry, keep_nit), new, (4, 3, 2)):
        it = iter(fresh)
        # an output nobody reads is "replaced" by itself: no client moves
        result += [next(it) if k else entry[res_at] for entry, k in zip(group, keeps)]
    return result


# -- computations that do not change from step to step -----------------------------------------------

@node_rewrite("canonicalize", [Scan], name="scan_pushout_nonseqs")
def scan_pushout_nonseqs(fgraph, node):
    p = _Parts(node)
    outs = p.inner_outputs()
    invariant = {n[1] for n in p.nonseqs}
    order = io_toposort(outs)
    moved = set()
    for inode in order:
        if _side_effect(inode.op) or not inode.inputs:
            continue
        if all(v in invariant or isinstance(v, Constant) for v in inode.inputs) and \
                not all(isinstance(v, Constant) for v in inode.inputs):
            invariant.update(inode.outputs)
            moved.add(inode)
    if not moved:
        return None
    clients = _inner_clients(outs)
    frontier = []
    for inode in order:
        if inode not in moved:
            continue
        for v in inode.outputs:
            cl = clients.get(v, [])
            if any(c == "output" for c, _ in cl):
                continue  # the step's result itself: keep computing it inside (a rare case)
            if any(c not in moved for c, _ in cl):
                frontier.append(v)
    if not frontier:
        return None
    to_outer = {n[1]: n[0] for n in p.nonseqs}
    outer_vals = clone_replace(frontier, to_outer)
    holders = [v.type(v.name) for v in frontier]
    new_outs = clone_replace(outs, dict(zip(frontier, holders)))
    p.set_inner_outputs(new_outs)
    p.nonseqs += [[o, h] for o, h in zip(outer_vals, holders)]
    states, carries, nits = p.build()
    return states + carries + nits


# -- accumulators computed after the loop --------------------------------------------------------------

def _accumulated_term(carry, clients):
    """X when the carry's step is c <- c + X and the step reads c nowhere else."""
    inner_in, inner_out = carry[1], carry[2]
    node = inner_out.owner
    if node is None or not isinstance(node.op, Elemwise) or not isinstance(node.op.scalar_op, ts.Add) \
            or len(node.inputs) != 2 or inner_in not in node.inputs:
        return None
    if len(clients.get(inner_in, [])) != 1:
        return None  # the step reads the accumulator: it feeds back
    term = node.inputs[1 - node.inputs.index(inner_in)]
    if term is inner_in or term.dtype != inner_in.dtype or term.ndim > inner_in.ndim:
        return None
    if len(clients.get(term, [])) != 1:
        return None  # the step needs the term anyway: a dot after the loop would repeat it
    return term


def _summable(term, per_step):
    """How the sum over steps of term is computed from stacks of per-step values, or None:
    (kind, ..., wrappers) with kind ('dot', P, Q, transposed) for dot(P, Q) (dot(p.T, Q) when
    transposed, P then being p) or ('sum', B, sum_op) for sum_op(B); wrappers are the linear,
    step-independent ops (DimShuffle, Sum) applied to that result, innermost first: the sum
    over steps goes through them (a bias's gradient is such a chain of sums and dimshuffles)."""
    wrappers = []
    while term.owner is not None and isinstance(term.owner.op, (DimShuffle, Sum)) \
            and not (isinstance(term.owner.op, Sum) and term.owner.op.dtype not in (None, term.dtype)):
        node = term.owner
        inner = node.inputs[0]
        if isinstance(node.op, Sum) and per_step(inner) and not _wrapped_sum_below(inner):
            return ("sum", inner, node.op, wrappers[::-1])
        wrappers.append(node.op)
        term = inner
    node = term.owner
    if node is None or not isinstance(node.op, Dot):
        return None
    P, Q = node.inputs
    transposed = False
    if P.owner is not None and isinstance(P.owner.op, DimShuffle) and P.ndim == 2 and \
            tuple(P.owner.op.new_order) == (1, 0):
        P, transposed = P.owner.inputs[0], True
    if not (per_step(P) and per_step(Q)):
        return None
    return ("dot", P, Q, transposed, wrappers[::-1])


def _wrapped_sum_below(v):
    """Does v reach a Dot or a Sum through DimShuffles and Sums only (then sum there instead)?"""
    while v.owner is not None and isinstance(v.owner.op, (DimShuffle, Sum)):
        v = v.owner.inputs[0]
        if v.owner is not None and isinstance(v.owner.op, (Sum, Dot)):
            return True
    return False


@node_rewrite("canonicalize", [Scan], name="scan_pushout_add")
def scan_pushout_add(fgraph, node):
    info = node.op.info
    if info.as_while:
        return None  # the steps a while loop runs are known only after it
    p = _Parts(node)
    outs = p.inner_outputs()
    clients = _inner_clients(outs)
    seq_of = {s[1]: j for j, s in enumerate(p.seqs)}
    nit_of = {}
    for m, entry in enumerate(p.nitsots):
        nit_of.setdefault(entry[0], m)
    # per-step values: those that depend on a sequence, a state's taps or a carry
    varying = set(seq_of) | {v for s in p.states for v in s[2]} | {c[1] for c in p.carries}
    for inode in io_toposort(outs):
        if any(v in varying for v in inode.inputs):
            varying.update(inode.outputs)

    plans = []             # (index among the carries, or among the states as ('state', i), how)
    for c, carry in enumerate(p.carries):
        term = _accumulated_term(carry, clients)
        if term is None:
            continue
        # (a term may read other carries, such as the gradient windows: its per-step values exist all the same)
        how = _summable(term, lambda v: v in varying)
        if how is not None:
            plans.append((c, how))
    last_reads = {}        # a sit-sot state of which only the last value is read (Theano's case)
    for i, st in enumerate(p.states):
        if tuple(st[1]) != (-1,):
            continue
        reads = _last_row_reads(fgraph, st[4])
        term = _accumulated_term([None, st[2][0], st[3]], clients) if reads else None
        how = _summable(term, lambda v: v in varying) if term is not None else None
        if how is not None:
            plans.append((("state", i), how))
            last_reads[i] = reads
    if not plans:
        return None

    # where each stacked value comes from: an outer sequence, an existing or a new per-step output
    removed = {c for c, _ in plans}
    kept_carries = [x for k, x in enumerate(p.carries) if k not in removed]
    kept_states = [x for k, x in enumerate(p.states) if ("state", k) not in removed]
    n = p.n_steps
    new_nits = []          # inner values added as per-step outputs, with their direction

    def source(v, reverse=None):
        """('seq', j) or ('nit', m) or ('new', k), and the direction of its rows."""
        if v in seq_of:
            j = seq_of[v]
            return ("seq", j), p.seqs[j][2]
        if v in nit_of:
            m = nit_of[v]
            return ("nit", m), p.nitsots[m][1]
        for k, (w, r) in enumerate(new_nits):
            if w is v and (reverse is None or r == reverse):
                return ("new", k), r
        new_nits.append((v, bool(reverse)))
        return ("new", len(new_nits) - 1), bool(reverse)

    specs = []
    for c, how in plans:
        if how[0] == "dot":
            _, P, Q, transposed, _ = how
            sp, rp = source(P)
            sq, rq = source(Q, rp)
            if rq != rp:  # two existing stacks in opposite orders: write Q's again in P's order
                sq, rq = ("new", len(new_nits)), rp
                new_nits.append((Q, rp))
            specs.append((c, how, [sp, sq]))
        else:
            specs.append((c, how, [source(how[1])[0]]))

    old_nits = list(p.nitsots)
    old_states = list(p.states)
    p.carries = kept_carries
    p.states = kept_states
    p.nitsots = old_nits + [[v, r, None] for v, r in new_nits]
    states, carries, nits = p.build()

    def stack(src):
        kind, k = src
        if kind == "seq":
            return p.seqs[k][0][:n]
        if kind == "nit":
            return nits[k]
        return nits[len(old_nits) + k]

    replacement = {}
    for c, how, srcs in specs:
        if isinstance(c, tuple):
            init = old_states[c[1]][0][0]   # the initial row of a tap -1 state
        else:
            init = node.op.info.outer_carries(node.inputs)[c]
        if how[0] == "dot":
            _, P, Q, transposed, wrappers = how
            total = dot(_rows_merged(stack(srcs[0]), P.ndim, transposed), _rows_merged(stack(srcs[1]), Q.ndim, False,
                                                                                         first=True))
        else:
            _, B, sum_op, wrappers = how
            total = Sum((0,) + tuple(a + 1 for a in sum_op.axis), dtype=sum_op.dtype)(stack(srcs[0]))
        for w in wrappers:  # linear and the same at every step: the sum over steps goes through
            total = w(total)
        value = init + total
        olds = last_reads[c[1]] if isinstance(c, tuple) else [p.node.outputs[info.n_states + c]]
        for old in olds:
            if not _same_type(value, old) or value.type.shape != old.type.shape and \
                    any(a is not None and b is not None and a != b for a, b in zip(value.type.shape, old.type.shape)):
                return None
        replacement[c] = value
    # the last values read of a pushed-out state: their readers read the sum instead, and the
    # state's buffer (no longer read) goes with the old node
    for c, value in replacement.items():
        if isinstance(c, tuple):
            for old in last_reads[c[1]]:
                fgraph.replace(old, value, reason="scan_pushout_add")
    it = iter(states)
    result = [old_states[i][4] if ("state", i) in replacement else next(it) for i in range(info.n_states)]
    it = iter(carries)
    for c in range(info.n_carries):
        result.append(replacement[c] if c in replacement else next(it))
    result += nits[:len(old_nits)]
    return result


def _last_row_reads(fgraph, X):
    """The variables X[-1] (also X[k:][-1] for a constant 0 <= k <= 1, the rows scan returns) when
    they are the only uses of the state buffer X; else None."""
    def last_row(node, v):
        return (node != "output" and isinstance(node.op, Subtensor) and node.op.idx_list == ("int",)
                and node.inputs[0] is v and isinstance(node.inputs[1], Constant) and int(node.inputs[1].data) == -1)

    reads = []
    for client, _ in fgraph.clients.get(X, []):
        if last_row(client, X):
            reads.append(client.outputs[0])
            continue
        if client == "output" or not isinstance(client.op, Subtensor) or len(client.op.idx_list) != 1 \
                or client.op.idx_list[0] != ("slice", True, False, False):
            return None
        start = client.inputs[1]
        if not isinstance(start, Constant) or not 0 <= int(start.data) <= 1:
            return None
        rows = client.outputs[0]
        for c2, _ in fgraph.clients.get(rows, []):
            if not last_row(c2, rows):
                return None
            reads.append(c2.outputs[0])
    return reads or None


def _rows_merged(S, ndim, transposed, first=False):
    """A stack S of per-step operands of a dot (steps first) as one operand whose contracted
    dimension runs over every step's rows: dot(merged P, merged Q) = sum over steps of dot(P_t, Q_t).
    P_t (M, B) -> (M, T*B); P_t = p_t.T with p_t (B, M) -> (T*B, M).T; a vector (B,) -> (T*B,);
    Q_t (B, N) -> (T*B, N)."""
    shp = S.shape
    if ndim == 1:
        return reshape(S, (shp[0] * shp[1],))
    if transposed:
        return dimshuffle(reshape(S, (shp[0] * shp[1], shp[2])), 1, 0)
    if first:
        return reshape(S, (shp[0] * shp[1], shp[2]))
    moved = dimshuffle(S, 1, 0, 2)
    return reshape(moved, (shp[1], shp[0] * shp[2]))


# -- the gradient loop reads the forward loop's products instead of computing them again ---------------

@graph_rewrite("canonicalize", name="scan_reuse_forward_dots")
def scan_reuse_forward_dots(fgraph):
    """A gradient loop G rebuilds the forward step of loop F to differentiate it, so it computes
    again, at backward step u, the products F computed at step t = n-1-u (the LSTM's h_{t-1} U).
    When G's step reads, for such a product, only values that are F's own step inputs at step t
    (F's state rows through G's sequences, F's sequences, F's non-sequences), F outputs the
    product as a per-step output and G reads it as a sequence: one GEMM per step less, for a
    buffer of one product per step."""
    changes = 0
    for G in list(fgraph.toposort()):
        if G not in fgraph.graph or not isinstance(G.op, Scan) or G.op.info.as_while:
            continue
        found = _forward_products(G)
        if found is None:
            continue
        F, pairs = found
        _reuse(fgraph, F, G, pairs)
        changes += 1
    return changes


def _rows_from(v):
    """(x, k) when row r of v is row r + k of x, through slices [k:stop] with a constant k >= 0."""
    k = 0
    while v.owner is not None and isinstance(v.owner.op, Subtensor) and len(v.owner.op.idx_list) == 1 \
            and v.owner.op.idx_list[0] != "int" and not v.owner.op.idx_list[0][3]:
        _, has_start, _, _ = v.owner.op.idx_list[0]
        if has_start:
            start = v.owner.inputs[1]
            if not isinstance(start, Constant) or int(start.data) < 0:
                break
            k += int(start.data)
        v = v.owner.inputs[0]
    return v, k


def _forward_products(G):
    """(F, [(G's inner product, F's inner product)]) or None."""
    g = _Parts(G)
    n = g.n_steps
    F = None
    for s in g.seqs:
        base, _ = _rows_from(s[0])
        if base.owner is not None and isinstance(base.owner.op, Scan) and base.owner is not G \
                and base.owner.inputs[0] is n and not base.owner.op.info.as_while:
            F = base.owner
            break
    if F is None:
        return None
    f = _Parts(F)
    # G's inner inputs that stand for F's inner inputs at the matching step (G step u, F step n-1-u)
    fmap = {}
    f_state_of = {out: i for i, out in enumerate(F.outputs[:len(f.states)])}
    f_seq_rows = [(_rows_from(s[0]), s[1], s[2]) for s in f.seqs]
    for outer, inner, rev in g.seqs:
        base, k = _rows_from(outer)
        if base in f_state_of and rev:
            i = f_state_of[base]
            taps, tap_inputs = f.states[i][1], f.states[i][2]
            L = -min(taps)
            if k - L in taps:
                fmap[inner] = tap_inputs[taps.index(k - L)]
            continue
        for (fbase, fk), finner, frev in f_seq_rows:
            if fbase is base and fk == k and rev != frev:
                fmap[inner] = finner
                break
    f_nonseq = {o: i for o, i in f.nonseqs}
    for outer, inner in g.nonseqs:
        if outer in f_nonseq:
            fmap[inner] = f_nonseq[outer]
    if not fmap:
        return None
    f_nodes = {}
    for node in io_toposort(f.inner_outputs()):
        f_nodes.setdefault((node.op, tuple(node.inputs)), node)
    g_outs = g.inner_outputs()
    g_clients = _inner_clients(g_outs)
    mapped_dots = []
    for node in io_toposort(g_outs):
        if not all(v in fmap or isinstance(v, Constant) for v in node.inputs):
            continue
        twin = f_nodes.get((node.op, tuple(fmap.get(v, v) for v in node.inputs)))
        if twin is None or _side_effect(node.op):
            continue
        fmap.update(zip(node.outputs, twin.outputs))
        if isinstance(node.op, Dot):
            mapped_dots.append(node.outputs[0])
    pairs = []
    for v in mapped_dots:
        # take the sums the dot feeds along (h W + x U + b: one buffer, and F keeps its fused dot + add)
        while True:
            cl = g_clients.get(v, [])
            if len(cl) != 1 or cl[0][0] == "output":
                break
            nxt = cl[0][0]
            if not isinstance(nxt.op, Elemwise) or not isinstance(nxt.op.scalar_op, (ts.Add, ts.Sub)) \
                    or nxt.outputs[0] not in fmap:
                break
            v = nxt.outputs[0]
        if all(v is not w for w, _ in pairs):
            pairs.append((v, fmap[v]))
    return (F, pairs) if pairs else None


def _reuse(fgraph, F, G, pairs):
    f = _Parts(F)
    start = len(f.nitsots)
    f.nitsots += [[fv, False, None] for _, fv in pairs]
    states, carries, nits = f.build()
    replace_node(fgraph, F, states + carries + nits[:start], "scan_reuse_forward_dots")
    g = _Parts(G)  # G now reads the new F
    holders = [v.type(v.name) for v, _ in pairs]
    new_outs = clone_replace(g.inner_outputs(), {v: h for (v, _), h in zip(pairs, holders)})
    g.set_inner_outputs(new_outs)
    # F wrote the product of its step t at row t; G's step u is F's step n-1-u
    g.seqs += [[nit, h, True] for nit, h in zip(nits[start:], holders)]
    gs, gc, gn = g.build()
    replace_node(fgraph, G, gs + gc + gn, "scan_reuse_forward_dots")
