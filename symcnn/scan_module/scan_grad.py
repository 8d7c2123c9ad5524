"""The gradient of a Scan: another Scan that runs backwards over the saved states.

Forward step t computes out_i(t) = X_i[L_i + t] from the sequences' rows at t, the state rows
X_i[L_i + t + k] of its taps k and the non-sequences. Going backwards (u = 0, 1, ... for
t = n-1, n-2, ...), the backward step:
  - reads, as reversed sequences, the forward sequences' rows at t, the forward state rows of
    every tap at t, and the gradients arriving at X_i[L_i + t] and at the per-step outputs at t;
  - carries, per state, a window W_i of L_i rows: W_i[j] is the gradient already collected for
    the state row X_i[t + 1 + j] from later steps; the total gradient of X_i[L_i + t] is then
    (its direct gradient) + W_i[L_i - 1];
  - rebuilds the forward step on its placeholders and takes the vector-Jacobian product of
    it with those gradients (symcnn.grad with known_grads): tap k's gradient is added to the
    row of the shifted window that stands for X_i[L_i + t + k];
  - adds each non-sequence's gradient to a carried accumulator, and outputs each sequence
    row's gradient as a per-step output (written in forward time order).
After the loop the windows hold the gradients of the initial rows. truncate_gradient=k runs
the backward loop over the last k steps only (Theano's truncated back-propagation through time).
"""
from ..gradient import grad
from ..graph.basic import graph_inputs
from ..graph.trace import with_trace
from ..tensor.basic import dimshuffle, zeros_like
from ..tensor.math import identity, minimum
from ..tensor.subtensor import inc_subtensor, set_subtensor
from ..tensor.type import TensorType, is_float
from ..graph.basic import clone_replace


def scan_grad(op, inputs, outputs, output_grads):
    info = op.info
    n_in = inputs[0]
    seqs, inits = info.outer_seqs(inputs), info.outer_states(inputs)
    nonseqs = info.outer_nonseqs(inputs)
    X = outputs[:info.n_states]
    Y = outputs[info.n_states + info.n_carries:]
    gX = output_grads[:info.n_states]
    gY = output_grads[info.n_states + info.n_carries:]
    fin = op.inner_inputs
    fout = op.inner_outputs
    carry_grads = output_grads[info.n_states:info.n_states + info.n_carries]
    carries = outputs[info.n_states:info.n_states + info.n_carries]
    # an integer carry (a random stream's state) has no gradient, whatever zeros grad() passed for it
    if any(is_float(c.dtype) and is_float(g.dtype) and not _is_zeros(g) for c, g in zip(carries, carry_grads)):
        raise NotImplementedError(with_trace(
            "gradient through the final value of a state the step updates (a shared variable's update, or "
            "a gradient accumulated by a gradient loop: a second derivative through scan) is not supported",
            op.trace))

    # the steps actually run (a while loop may stop early)
    if info.as_while:
        if X:
            n = X[0].shape[0] - info.lag(0)
        elif Y:
            n = Y[0].shape[0]
        else:
            raise NotImplementedError("gradient of a while loop with no outputs")
    else:
        n = n_in
    k = getattr(op, "truncate_gradient", -1)
    nb = n if k == -1 else minimum(n, k)

    # -- the backward step's placeholders ----------------------------------------------------------------
    def ph(v, suffix):
        return v.type(f"{v.name or 'v'}{suffix}")

    inner_seq = info.inner_seqs(fin)
    inner_taps = info.inner_state_taps(fin)
    inner_carries = info.inner_carries(fin)
    inner_nonseqs = info.inner_nonseqs(fin)
    b_seq = [ph(v, "") for v in inner_seq]
    b_taps = [[ph(v, "") for v in taps] for taps in inner_taps]
    b_carry = [ph(v, "") for v in inner_carries]
    b_nonseq = [ph(v, "") for v in inner_nonseqs]
    float_states = [i for i in range(info.n_states) if is_float(X[i].dtype)]
    float_nits = [m for m in range(info.n_nitsot) if is_float(Y[m].dtype)]
    b_gx = {i: TensorType(X[i].dtype, shape=X[i].type.shape[1:])(f"g_out{i}[t]") for i in float_states}
    b_gy = {m: TensorType(Y[m].dtype, shape=Y[m].type.shape[1:])(f"g_out{info.n_states + m}[t]")
            for m in float_nits}
    b_win = {}
    for i in float_states:
        L = info.lag(i)
        row = TensorType(X[i].dtype, shape=X[i].type.shape[1:])
        b_win[i] = row(f"g_state{i}") if L == 1 else TensorType(X[i].dtype, shape=(L,) + row.shape)(f"g_state{i}")

    replace = dict(zip(inner_seq, b_seq))
    for taps, btaps in zip(inner_taps, b_taps):
        replace.update(zip(taps, btaps))
    replace.update(zip(inner_carries, b_carry))
    replace.update(zip(inner_nonseqs, b_nonseq))
    n_fwd = info.n_states + info.n_carries + info.n_nitsot
    step = clone_replace(fout[:n_fwd], replace)
    s_out, y_out = step[:info.n_states], step[info.n_states + info.n_carries:n_fwd]

    known = {}

    def seed(v, g):
        # grad() takes a known gradient as the whole gradient of its variable, but a step's output
        # may also feed another output (rnnslu's s_t = softmax(h_t), lstm's h = o * tanh(c)): the
        # gradient is attached to an identity copy so that both paths reach the output (as Theano does)
        known[identity(v)] = g

    for i in float_states:
        L = info.lag(i)
        seed(s_out[i], b_gx[i] + (b_win[i] if L == 1 else b_win[i][L - 1]))
    for m in float_nits:
        seed(y_out[m], b_gy[m])

    wrt = [v for v in b_seq if is_float(v.dtype)]
    for i in float_states:
        wrt += b_taps[i]
    wrt += [v for v in b_nonseq if is_float(v.dtype)]
    if not known or not wrt:
        return [None] * len(inputs)
    gs = grad(None, wrt, known_grads=known, disconnected_inputs="ignore", return_disconnected="None")
    g_of = dict(zip(wrt, gs))
    used = [g for g in gs if g is not None]
    if set(graph_inputs(used)) & set(b_carry):
        raise NotImplementedError(with_trace(
            "gradient through a scan whose step reads a value it updates (such as a random stream drawn "
            "inside the step) is not supported: the per-step values of that state are not kept. Draw the "
            "random numbers outside the loop and pass them as a sequence", op.trace))

    # -- the backward step's results ---------------------------------------------------------------------
    new_win = {}
    for i in float_states:
        L = info.lag(i)
        W = b_win[i]
        contrib = [(kk, g_of.get(v)) for kk, v in zip(info.state_taps[i], b_taps[i])]
        if L == 1:
            c = contrib[0][1]
            new_win[i] = c if c is not None else zeros_like(W)
            continue
        acc = set_subtensor(zeros_like(W)[1:], W[:L - 1])
        for kk, c in contrib:
            if c is not None:
                acc = inc_subtensor(acc[L + kk], c)
        new_win[i] = acc
    seq_grads = [(j, g_of[v]) for j, v in enumerate(b_seq) if g_of.get(v) is not None]
    ns_grads = [(p, g_of[v]) for p, v in enumerate(b_nonseq) if g_of.get(v) is not None]
    b_acc = [ph(b_nonseq[p], "_grad") for p, _ in ns_grads]

    # -- the backward Scan --------------------------------------------------------------------------------
    from .scan_op import Scan, ScanInfo
    outer_seqs, inner_seqs, rev = [], [], []

    def add_seq(outer, inner, reverse_in_forward):
        # forward step t = n-1-u reads row t (row n-1-t when the forward reads reversed)
        if reverse_in_forward:
            outer_seqs.append(outer[:nb])
            rev.append(False)
        else:
            outer_seqs.append(outer[:n] if k == -1 else outer[n - nb:n])
            rev.append(True)
        inner_seqs.append(inner)

    for S, v, r in zip(seqs, b_seq, info.seq_reverse):
        add_seq(S, v, r)
    for i in range(info.n_states):
        L = info.lag(i)
        for kk, v in zip(info.state_taps[i], b_taps[i]):
            add_seq(X[i][L + kk:], v, False)
    for i in float_states:
        add_seq(gX[i][info.lag(i):], b_gx[i], False)
    for m in float_nits:
        add_seq(gY[m], b_gy[m], info.nit_reverse[m])

    carry_init = []
    for i in float_states:
        L = info.lag(i)
        carry_init.append(zeros_like(X[i][0]) if L == 1 else zeros_like(X[i][:L]))
    carry_init += [zeros_like(nonseqs[p]) for p, _ in ns_grads]
    carry_in = [b_win[i] for i in float_states] + b_acc
    carry_out = [new_win[i] for i in float_states] + [a + g for a, (_, g) in zip(b_acc, ns_grads)]
    # b_carry (the forward's carried values) are not read by the gradient (checked above)
    nit_out = [g for _, g in seq_grads]
    nit_rev = [not info.seq_reverse[j] for j, _ in seq_grads]

    binfo = ScanInfo(n_seqs=len(outer_seqs), state_taps=[], n_carries=len(carry_in), n_nitsot=len(nit_out),
                     n_nonseqs=len(b_nonseq), seq_reverse=rev, nit_reverse=nit_rev,
                     name=f"grad_of_{info.name}" if info.name else "grad_of_scan")
    bop = Scan(inner_seqs + carry_in + b_nonseq, carry_out + nit_out, binfo, trace=op.trace)
    bouts = bop(nb, *(outer_seqs + carry_init + list(nonseqs)))
    bouts = bouts if isinstance(bouts, list) else [bouts]

    # -- gradients of the outer inputs --------------------------------------------------------------------
    result = [None] * len(inputs)
    base = 1
    for (j, _), g in zip(seq_grads, bouts[len(carry_in):]):
        S = seqs[j]
        # the rows the loop did not read get zeros; a sequence of exactly n rows read in full
        # needs no padding (a fill and a copy of the whole sequence saved)
        if k == -1 and _is_length(n, S):
            result[base + j] = g
        elif info.seq_reverse[j] or k == -1:
            result[base + j] = inc_subtensor(zeros_like(S)[:nb], g)
        else:
            result[base + j] = inc_subtensor(zeros_like(S)[n - nb:n], g)
    base += info.n_seqs
    for c, i in enumerate(float_states):
        L = info.lag(i)
        Wf = bouts[c]
        if L == 1:
            Wf = dimshuffle(Wf, "x", *range(Wf.ndim))
        if k == -1:
            g_first = Wf + gX[i][:L]
        else:  # the window stands for rows n-nb .. n-nb+L-1 of the state buffer
            full = inc_subtensor(zeros_like(X[i])[n - nb:n - nb + L], Wf)
            g_first = full[:L] + gX[i][:L]
        init = inits[i]
        if init.type.shape[0] == L:
            result[base + i] = g_first
        else:
            result[base + i] = inc_subtensor(zeros_like(init)[:L], g_first)
    base += info.n_states + info.n_carries
    nc = len(float_states)
    for (p, _), g in zip(ns_grads, bouts[nc:len(carry_in)]):
        result[base + p] = g
    return result


def _is_zeros(g):
    """Is g the zeros_like(...) that grad() gives outputs no gradient reaches?"""
    from ..graph.basic import Constant
    from ..tensor.basic import second
    from ..tensor.elemwise import DimShuffle
    node = g.owner
    if node is None or node.op != second:
        return False
    fill = node.inputs[1]
    while fill.owner is not None and isinstance(fill.owner.op, DimShuffle):
        fill = fill.owner.inputs[0]
    return isinstance(fill, Constant) and not fill.data.any()


def _is_length(n, S):
    """Is the scalar n, as the graph is written, S.shape[0] (S's static length, the x.shape[0]
    scan takes when n_steps is not given, or the first entry of the shape S was reshaped to)?"""
    from ..graph.basic import Constant
    from ..tensor.basic import MakeVector, Reshape, Shape_i
    n = _strip_cast(n)
    if isinstance(n, Constant):
        return S.type.shape[0] is not None and int(n.data) == S.type.shape[0]
    if _is_shape0(n, S):
        return True
    r = S.owner
    if r is not None and isinstance(r.op, Reshape):
        shp = r.inputs[1]
        if shp.owner is not None and isinstance(shp.owner.op, MakeVector):
            m = _strip_cast(shp.owner.inputs[0])
            return m is n or (m.owner is not None and n.owner is not None and isinstance(m.owner.op, Shape_i)
                              and m.owner.op == n.owner.op and m.owner.inputs[0] is n.owner.inputs[0])
    return False


def _is_shape0(n, S):
    from ..tensor.basic import Shape, Shape_i
    from ..tensor.subtensor import Subtensor
    from ..graph.basic import Constant
    o = n.owner
    if o is None:
        return False
    if isinstance(o.op, Shape_i):
        return o.op.i == 0 and o.inputs[0] is S
    if isinstance(o.op, Subtensor) and o.op.idx_list == ("int",) and isinstance(o.inputs[1], Constant) \
            and int(o.inputs[1].data) == 0:
        sh = o.inputs[0].owner
        return sh is not None and isinstance(sh.op, Shape) and sh.inputs[0] is S
    return False


def _strip_cast(v):
    """v without casts from one integer type to int64 (they keep its value)."""
    from .. import scalar as ts
    from ..tensor.elemwise import Elemwise
    while v.owner is not None and isinstance(v.owner.op, Elemwise) and isinstance(v.owner.op.scalar_op, ts.Cast) \
            and v.dtype == "int64" and v.owner.inputs[0].dtype.startswith("int"):
        v = v.owner.inputs[0]
    return v
