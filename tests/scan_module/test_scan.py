"""scan: Theano's semantics (taps, None outputs, go_backwards, until, updates, nesting), its
gradient (back-propagation through time, truncated) and native == reference."""
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symcnn as theano
import symcnn.tensor as T
from symcnn.scan_module import until
from tests.helpers import assert_close, check_native_vs_reference, here, make_rng, rand

F64 = "float64"


def _rnn(x, h0, W):
    return theano.scan(lambda xt, h, W: T.tanh(T.dot(xt, W) + h), sequences=x, outputs_info=h0,
                       non_sequences=W)[0]


def test_rnn_matches_numpy_in_both_modes():
    rng = make_rng(0)
    xv, hv, Wv = rand((6, 3), F64, rng), rand((3,), F64, rng), rand((3, 3), F64, rng)
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    hs = _rnn(x, h0, W)
    want, h = [], hv
    for t in range(6):
        h = np.tanh(xv[t] @ Wv + h)
        want.append(h)
    for mode in ("reference", "native"):
        assert_close(theano.function([x, h0, W], hs, mode=mode)(xv, hv, Wv), np.array(want))


def test_rnn_gradient_verify_grad_and_native():
    rng = make_rng(1)
    vals = [rand((5, 3), F64, rng), rand((3,), F64, rng), rand((3, 3), F64, rng)]
    theano.verify_grad(_rnn, vals, mode="reference", rng=np.random.default_rng(0))
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    cost = (_rnn(x, h0, W) ** 2).sum()
    check_native_vs_reference([x, h0, W], [cost] + T.grad(cost, [x, h0, W]), vals, rtol=1e-10, atol=1e-12)


def test_taps_on_sequences_and_outputs():
    """Fibonacci-like recurrence with taps [-2, -1] and a sequence read at t-1, t, t+1."""
    x, x0 = T.dvector("x"), T.dvector("x0")

    def step(xm1, xt, xp1, ym2, ym1):
        return 0.5 * ym2 + 0.25 * ym1 + xm1 - xt + 2 * xp1

    ys, _ = theano.scan(step, sequences=dict(input=x, taps=[-1, 0, 1]),
                        outputs_info=dict(initial=x0, taps=[-2, -1]))
    xv, x0v = np.arange(7.0), np.array([1.0, 2.0])
    buf = list(x0v)
    for t in range(5):
        buf.append(0.5 * buf[-2] + 0.25 * buf[-1] + xv[t] - xv[t + 1] + 2 * xv[t + 2])
    for mode in ("reference", "native"):
        assert_close(theano.function([x, x0], ys, mode=mode)(xv, x0v), np.array(buf[2:]))
    theano.verify_grad(lambda x, x0: theano.scan(step, sequences=dict(input=x, taps=[-1, 0, 1]),
                                                  outputs_info=dict(initial=x0, taps=[-2, -1]))[0],
                       [rand((7,), F64), rand((2,), F64)], mode="reference")


def test_none_outputs_and_several_outputs():
    x, s0 = T.dmatrix("x"), T.dvector("s0")

    def step(xt, s):
        return s + xt, T.sum(xt * s)

    (ss, dots), upd = theano.scan(step, sequences=x, outputs_info=[s0, None])
    assert isinstance(upd, OrderedDict) and not upd
    xv, sv = rand((4, 3), F64), rand((3,), F64)
    s, want_s, want_d = sv, [], []
    for t in range(4):
        want_d.append(np.sum(xv[t] * s))
        s = s + xv[t]
        want_s.append(s)
    for mode in ("reference", "native"):
        got_s, got_d = theano.function([x, s0], [ss, dots], mode=mode)(xv, sv)
        assert_close(got_s, np.array(want_s))
        assert_close(got_d, np.array(want_d))


def test_go_backwards_and_negative_n_steps():
    x = T.dvector("x")
    fwd, _ = theano.scan(lambda xt, acc: acc * 2 + xt, sequences=x, outputs_info=T.constant(np.float64(0)),
                         go_backwards=True)
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    acc, want = 0.0, []
    for v in xv[::-1]:
        acc = acc * 2 + v
        want.append(acc)
    for mode in ("reference", "native"):
        assert_close(theano.function([x], fwd, mode=mode)(xv), np.array(want))
    theano.verify_grad(lambda x: theano.scan(lambda xt, acc: T.tanh(acc * 2 + xt), sequences=x,
                                             outputs_info=T.constant(np.float64(0.1)), go_backwards=True)[0],
                       [rand((5,), F64)], mode="reference")
    # a negative n_steps goes backwards too
    back, _ = theano.scan(lambda xt: xt * 10, sequences=x, n_steps=-3)
    for mode in ("reference", "native"):
        assert_close(theano.function([x], back, mode=mode)(xv), np.array([40.0, 30.0, 20.0]))


def test_truncate_gradient_stops_after_k_steps():
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    hs, _ = theano.scan(lambda xt, h, W: T.tanh(T.dot(xt, W) + h), sequences=x, outputs_info=h0,
                        non_sequences=W, truncate_gradient=2)
    cost = hs[-1].sum() + hs.sum()
    grads = T.grad(cost, [x, h0, W])
    vals = [rand((6, 3), F64), rand((3,), F64), rand((3, 3), F64)]
    _, (res,) = check_native_vs_reference([x, h0, W], grads, vals, rtol=1e-10, atol=1e-12)
    gx, gh0, gW = res
    assert np.all(gx[:4] == 0) and np.all(np.abs(gx[4:]) > 0)
    assert np.all(gh0 == 0)
    # against the gradient of the last two steps alone, started from the saved state
    full = theano.function([x, h0, W], hs, mode="reference")(*vals)
    x2, h2 = T.dmatrix("x2"), T.dvector("h2")
    hs2 = _rnn(x2, h2, W)
    cost2 = hs2[-1].sum() + hs2.sum()
    want = theano.function([x2, h2, W], T.grad(cost2, [x2, W]), mode="reference")(vals[0][4:], full[3], vals[2])
    assert_close(gx[4:], want[0])
    assert_close(gW, want[1])


def test_until_stops_the_loop():
    x0 = T.dscalar("x0")

    def step(x):
        nxt = x * 2
        return nxt, until(nxt > 100)

    xs, _ = theano.scan(step, outputs_info=x0, n_steps=50)
    for mode in ("reference", "native"):
        assert_close(theano.function([x0], xs, mode=mode)(3.0), np.array([6.0, 12, 24, 48, 96, 192]))
    # the gradient runs over the steps taken
    cost = xs.sum()
    check_native_vs_reference([x0], T.grad(cost, x0), [3.0])
    assert_close(theano.function([x0], T.grad(cost, x0), mode="reference")(3.0), 2.0 + 4 + 8 + 16 + 32 + 64)


def test_nested_scan_forward_and_gradient():
    X, v0 = T.dtensor3("X"), T.dvector("v0")

    def outer_step(M, v):
        inner, _ = theano.scan(lambda row, acc: T.tanh(acc + row * v), sequences=M, outputs_info=v)
        return inner[-1]

    def build(X, v0):
        return theano.scan(outer_step, sequences=X, outputs_info=v0)[0]

    vals = [rand((3, 4, 2), F64), rand((2,), F64)]
    out = build(X, v0)
    check_native_vs_reference([X, v0], [out] + T.grad((out ** 2).sum(), [X, v0]), vals, rtol=1e-10, atol=1e-12)
    theano.verify_grad(build, vals, mode="reference")


def test_map_reduce_foldl_foldr():
    x = T.dvector("x")
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    sq, _ = theano.map(lambda v: v ** 2, sequences=x)
    total, _ = theano.reduce(lambda v, acc: acc + v, sequences=x, outputs_info=T.constant(np.float64(0)))
    left, _ = theano.foldl(lambda v, acc: acc * 10 + v, sequences=x, outputs_info=T.constant(np.float64(0)))
    right, _ = theano.foldr(lambda v, acc: acc * 10 + v, sequences=x, outputs_info=T.constant(np.float64(0)))
    for mode in ("reference", "native"):
        got = theano.function([x], [sq, total, left, right], mode=mode)(xv)
        assert_close(got[0], xv ** 2)
        assert float(got[1]) == 10.0 and float(got[2]) == 1234.0 and float(got[3]) == 4321.0
    import symcnn.scan_module as sm
    assert sm.map is theano.map and sm.foldr is theano.foldr and sm.scan is theano.scan


def test_grad_inside_the_step():
    """HMC's leapfrog: each step takes the gradient of an energy."""
    pos0, A = T.dvector("pos0"), T.dmatrix("A")

    def leapfrog(pos, A):
        energy = 0.5 * T.sum(pos * T.dot(A, pos))
        return pos - 0.1 * T.grad(energy, pos)

    ps, _ = theano.scan(leapfrog, outputs_info=pos0, non_sequences=A, n_steps=4)
    Av = np.array([[2.0, 0.5], [0.5, 1.0]])
    p, want = np.array([1.0, -1.0]), []
    for _ in range(4):
        p = p - 0.1 * (0.5 * (Av + Av.T) @ p)
        want.append(p)
    for mode in ("reference", "native"):
        # (0.1 and 0.5 are float32 constants, as in Theano)
        assert_close(theano.function([pos0, A], ps, mode=mode)(np.array([1.0, -1.0]), Av), np.array(want),
                     rtol=1e-6)


def test_updates_returned_by_the_step():
    acc = theano.shared(np.float64(0.0), name="acc")
    x = T.dvector("x")
    _, upd = theano.scan(lambda v: OrderedDict([(acc, acc + v)]), sequences=x)
    assert list(upd) == [acc]
    for mode in ("reference", "native"):
        acc.set_value(np.float64(1.0))
        theano.function([x], [], updates=upd, mode=mode)(np.array([1.0, 2.0, 3.0]))
        assert float(acc.get_value()) == 7.0


def test_random_draws_inside_the_step():
    from symcnn.tensor.shared_randomstreams import RandomStreams
    srng = RandomStreams(seed=42)
    h0 = T.fmatrix("h0")

    def gibbs(h):
        return srng.binomial(size=h.shape, n=1, p=T.nnet.sigmoid(h * 2 - 1), dtype="float32") + 0.5 * h

    hs, upd = theano.scan(gibbs, outputs_info=h0, n_steps=5)
    assert len(upd) == 1
    hv = np.full((3, 4), 0.3, dtype="float32")
    runs = {}
    for mode in ("reference", "native"):
        srng.seed(42)
        f = theano.function([h0], hs, updates=upd, mode=mode)
        runs[mode] = [f(hv), f(hv)]
    np.testing.assert_array_equal(runs["native"][0], runs["reference"][0])
    np.testing.assert_array_equal(runs["native"][1], runs["reference"][1])
    assert not np.array_equal(runs["native"][0], runs["native"][1])  # the stream advanced
    assert not np.array_equal(runs["native"][0][0], runs["native"][0][1])  # each step draws anew


def test_step_with_shared_weights_closed_over():
    W = theano.shared(np.eye(2) * 0.5, name="W")
    x = T.dmatrix("x")
    hs, _ = theano.scan(lambda xt, h: T.dot(h, W) + xt, sequences=x, outputs_info=T.zeros_like(x[0]))
    g = T.grad(hs.sum(), W)
    check_native_vs_reference([x], [hs, g], [rand((4, 2), F64)], rtol=1e-10, atol=1e-12)


# -- native == reference on random step functions -----------------------------------------------------------
_UNARY = [T.tanh, T.nnet.sigmoid, lambda a: a * 0.7, lambda a: T.sqr(a) * 0.3, lambda a: -a]
_BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - 0.5 * b, lambda a, b: T.maximum(a, b)]


@settings(max_examples=10, deadline=None)
@given(seq_taps=st.sampled_from([[0], [-1, 0], [0, 2], [-2, 1]]), out_taps=st.sampled_from([[-1], [-2], [-3, -1]]),
       with_none=st.booleans(), go_backwards=st.booleans(), truncate=st.sampled_from([-1, 2]),
       ops=st.lists(st.tuples(st.integers(0, len(_UNARY) - 1), st.integers(0, len(_BINARY) - 1)), min_size=1,
                    max_size=3), seed=st.integers(0, 1000))
def test_random_step_native_equals_reference(seq_taps, out_taps, with_none, go_backwards, truncate, ops, seed):
    rng = make_rng(seed)
    x, init, W = T.dmatrix("x"), T.dmatrix("init"), T.dmatrix("W")

    def step(*args):
        seq_in = args[:len(seq_taps)]
        state_in = args[len(seq_taps):len(seq_taps) + len(out_taps)]
        W = args[-1]
        h = T.dot(state_in[0], W)
        for k, (u, bop) in enumerate(ops):
            h = _BINARY[bop](_UNARY[u](h), seq_in[k % len(seq_in)] + state_in[k % len(state_in)])
        return (h, T.sum(h * seq_in[0])) if with_none else h

    L = -min(out_taps)
    outs_info = [dict(initial=init, taps=out_taps) if out_taps != [-1] else init[0]]
    if with_none:
        outs_info.append(None)
    outs, _ = theano.scan(step, sequences=dict(input=x, taps=seq_taps), outputs_info=outs_info, non_sequences=W,
                          go_backwards=go_backwards, truncate_gradient=truncate)
    outs = outs if isinstance(outs, list) else [outs]
    cost = sum((o * rand((1,) * o.ndim, F64, rng)).sum() for o in outs) + (outs[0] ** 2).sum()
    grads = T.grad(cost, [x, init, W])
    vals = [rand((6, 3), F64, rng), rand((max(L, 1), 3), F64, rng), rand((3, 3), F64, rng) * 0.5]
    check_native_vs_reference([x, init, W], outs + grads, vals, rtol=1e-9, atol=1e-11)


# -- errors --------------------------------------------------------------------------------------------------
def test_output_dtype_differs_from_initial_value():
    x, h0 = T.fmatrix("x"), T.dvector("h0")
    with pytest.raises(TypeError) as info:
        loc = here(1)
        theano.scan(lambda xt, h: xt + T.cast(h, "float32"), sequences=x, outputs_info=h0)
    msg = str(info.value)
    assert msg.startswith(loc + ":") and "float64" in msg and "float32" in msg


def test_wrong_number_of_outputs_and_no_length():
    x = T.dvector("x")
    with pytest.raises(ValueError) as info:
        loc = here(1)
        theano.scan(lambda v: (v, v), sequences=x, outputs_info=[None])
    assert str(info.value).startswith(loc + ":") and "2 outputs" in str(info.value)
    with pytest.raises(ValueError) as info:
        loc = here(1)
        theano.scan(lambda h: h, outputs_info=x)
    assert str(info.value).startswith(loc + ":") and "n_steps" in str(info.value)
    with pytest.raises(ValueError, match="truncate_gradient"):
        theano.scan(lambda v: v, sequences=x, truncate_gradient=0)


@pytest.mark.parametrize("mode", ["reference", "native"])
def test_sequence_shorter_than_n_steps(mode):
    x = T.dvector("x")
    n = T.lscalar("n")
    ys, _ = theano.scan(lambda v: v * 2, sequences=x, n_steps=n)
    f = theano.function([x, n], ys, mode=mode)
    assert_close(f(np.arange(5.0), 3), np.array([0.0, 2, 4]))
    with pytest.raises(ValueError) as info:
        f(np.arange(5.0), 7)
    assert "fewer than the 7 steps" in str(info.value)


def test_gradient_through_draws_inside_the_step_is_refused():
    from symcnn.tensor.shared_randomstreams import RandomStreams
    srng = RandomStreams(seed=1)
    h0 = T.fvector("h0")
    loc = here(1)
    hs, _ = theano.scan(lambda h: h * srng.uniform(size=h.shape), outputs_info=h0, n_steps=3)
    with pytest.raises(NotImplementedError) as info:
        T.grad(hs.sum(), h0)
    assert str(info.value).startswith(loc + ":") and "random" in str(info.value)


def test_native_mode_never_falls_back_for_an_op_without_lowering():
    from symcnn.graph.basic import Apply
    from symcnn.graph.op import Op

    class NumpyOnly(Op):
        def make_node(self, x):
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, out):
            out[0][0] = inputs[0] * 2

    x = T.dvector("x")
    ys, _ = theano.scan(lambda v: NumpyOnly()(v), sequences=x)
    assert_close(theano.function([x], ys, mode="reference")(np.ones(3)), np.full(3, 2.0))
    with pytest.raises(NotImplementedError, match="no native lowering for NumpyOnly"):
        theano.function([x], ys, mode="native")


@pytest.mark.parametrize("taps", [[-1], [2], [-2, -1], [1, 2], [-1, 0, 1], [0, 2]])
def test_sequence_taps_follow_theano(taps):
    """Which rows step t reads, for Theano's slicing of a sequence with taps (also when all taps
    are negative or all positive: the sequence is then shifted as Theano shifts it)."""
    x = T.dvector("x")
    lo, hi = min(taps), max(taps)
    offset = -hi if hi < 0 else 0
    xv = np.arange(10.0)
    if hi == lo and hi != 0:
        slices = [xv[:hi] if hi < 0 else xv[hi:]]
    else:
        slices = [xv[offset + k - lo:-(hi - k)] if hi - k else xv[offset + k - lo:] for k in taps]
    n = min(len(s) for s in slices)
    want = sum(10.0 ** j * s[:n] for j, s in enumerate(slices))
    ys, _ = theano.scan(lambda *r: sum(10.0 ** j * v for j, v in enumerate(r)), sequences=dict(input=x, taps=taps))
    for mode in ("reference", "native"):
        assert_close(theano.function([x], ys, mode=mode)(xv), want)


@settings(max_examples=6, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, len(_UNARY) - 1), st.integers(0, len(_BINARY) - 1)), min_size=1,
                    max_size=3),
       threshold=st.floats(0.5, 3.0), nested=st.booleans(), inner_backwards=st.booleans(), seed=st.integers(0, 1000))
def test_random_while_and_nested_native_equals_reference(ops, threshold, nested, inner_backwards, seed):
    """A while loop (until) whose step may run a scan of its own over a matrix, forward and gradient."""
    rng = make_rng(seed)
    M, h0 = T.dmatrix("M"), T.dvector("h0")

    def body(h, M):
        for u, bop in ops:
            h = _BINARY[bop](_UNARY[u](h), h * 0.5)
        if nested:
            rows, _ = theano.scan(lambda r, acc: T.tanh(acc * r + h), sequences=M, outputs_info=h,
                                  go_backwards=inner_backwards)
            h = rows[-1]
        return h

    def step(h, M):
        nxt = body(h, M) + 0.3
        return nxt, until(T.sum(abs(nxt)) > threshold * 3)

    hs, _ = theano.scan(step, outputs_info=h0, non_sequences=M, n_steps=6)
    cost = (hs * rand((1, 3), F64, rng)).sum()
    vals = [rand((4, 3), F64, rng), rand((3,), F64, rng) * 0.2]
    grads = T.grad(cost, [M, h0], disconnected_inputs="ignore")
    check_native_vs_reference([M, h0], [hs] + grads, vals, rtol=1e-9, atol=1e-11)


def test_shared_variable_given_as_non_sequence():
    step = theano.shared(np.float64(0.5), name="step")
    x0 = T.dvector("x0")
    xs, upd = theano.scan(lambda x, s: x * s, outputs_info=x0, non_sequences=[step], n_steps=3)
    assert not upd
    for mode in ("reference", "native"):
        assert_close(theano.function([x0], xs, mode=mode)(np.ones(2)), np.array([[0.5] * 2, [0.25] * 2, [0.125] * 2]))
    g = T.grad(xs.sum(), step)
    check_native_vs_reference([x0], g, [np.ones(2)])


def test_second_derivative_through_scan_is_refused():
    x0, w = T.dvector("x0"), T.dscalar("w")
    xs, _ = theano.scan(lambda x, w: T.tanh(x * w), outputs_info=x0, non_sequences=w, n_steps=3)
    gw = T.grad(xs.sum(), w)
    with pytest.raises(NotImplementedError, match="second derivative"):
        T.grad(gw, w)


@pytest.mark.parametrize("which", ["per_step_output", "other_state"])
def test_gradient_of_an_output_computed_from_another_output_of_the_step(which):
    """rnnslu's step returns h_t and softmax(h_t), lstm's returns h = o * tanh(c) and c: a cost on
    the second output alone must reach the recurrence through the first (it was dropped: the
    gradient of a step output was taken as known, which cut the path through the other output)."""
    rng = make_rng(7)
    vals = [rand((5, 3), F64, rng), rand((3,), F64, rng), rand((3, 3), F64, rng)]

    def build(x, h0, W):
        if which == "per_step_output":
            def step(xt, h, W):
                h_t = T.tanh(T.dot(xt, W) + h)
                return h_t, T.nnet.softmax(h_t)
            outputs_info = [h0, None]
        else:
            def step(xt, c, h, W):
                c_t = T.tanh(T.dot(xt, W) + c)
                return c_t, T.nnet.sigmoid(h) * T.tanh(c_t)
            outputs_info = [h0, h0]
        return theano.scan(step, sequences=x, outputs_info=outputs_info, non_sequences=W)[0][1]

    theano.verify_grad(build, vals, mode="reference", rng=np.random.default_rng(0))
    x, h0, W = T.dmatrix("x"), T.dvector("h0"), T.dmatrix("W")
    cost = (build(x, h0, W) ** 2).sum()
    grads = T.grad(cost, [x, h0, W])
    # without the path through the first output only the last step's direct terms would remain
    assert np.abs(theano.function([x, h0, W], grads[2], mode="reference")(*vals)).max() > 1e-3
    check_native_vs_reference([x, h0, W], [cost] + grads, vals, rtol=1e-10, atol=1e-12)
