"""Native Subtensor / IncSubtensor / AdvancedSubtensor / AdvancedIncSubtensor vs the reference."""
import re
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen.lower import lower
from codegen.plan import Plan
from symcnn.tensor.subtensor import AdvancedIncSubtensor, IncSubtensor, Subtensor
from tests.helpers import check_native_vs_reference, check_same_error

SIZES = (1, 7, 17, 33)


def _rand(rng, *shape, dtype="float32"):
    return rng.standard_normal(shape).astype(dtype)


def _bound(rng, n):
    """A random slice bound: in range, negative, or far past either end."""
    return int(rng.choice([rng.randint(-n - 1, n + 2), rng.randint(-3 * n - 5, 3 * n + 6)]))


def _step(rng):
    return int(rng.choice([1, 2, 3, -1, -2, -5, 7]))


def _user_line_first(msg):
    return msg.split(":", 1)[0].endswith("test_subtensor.py")


# -- basic indexing: slices with symbolic bounds ----------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_symbolic_slice_matches_numpy(n):
    rng = np.random.RandomState(n)
    x = T.matrix("x")
    a, b, c = T.lscalar("a"), T.lscalar("b"), T.lscalar("c")
    xv = _rand(rng, n, 3)
    calls = [[xv, _bound(rng, n), _bound(rng, n), _step(rng)] for _ in range(60)]
    calls += [[xv, 0, 0, 1], [xv, n, 2 * n, 1], [xv, -1, -n - 10, -1], [xv, 5 * n, -5 * n, -3]]
    check_native_vs_reference([x, a, b, c], x[a:b:c], None, calls=calls)
    # The same through a graph that consumes the view (no output copy path).
    check_native_vs_reference([x, a, b, c], (x[a:b:c] * 2).sum(axis=0), None, calls=calls)


@pytest.mark.parametrize("n", SIZES)
def test_partial_slices_and_second_axis(n):
    rng = np.random.RandomState(100 + n)
    x = T.matrix("x")
    a, c = T.lscalar("a"), T.lscalar("c")
    xv = _rand(rng, 5, n)
    calls = [[xv, _bound(rng, n), _step(rng)] for _ in range(30)]
    check_native_vs_reference([x, a, c], [x[:, a::c], x[:, :a:c], x[1:, ::c], x[::c, a:]], None, calls=calls)


def test_constant_slices_on_static_shape_fold():
    rng = np.random.RandomState(1)
    x = T.TensorType("float32", shape=(7, 5))("x")
    outs = [x[2:5], x[::-2], x[-100:100:3], x[10:], x[:, 4:0:-1], x[3, 1:], x[-1, ::-1], x[1:6:2, -2]]
    fn, _ = check_native_vs_reference([x], outs, [_rand(rng, 7, 5)])
    assert [o.shape for o in fn(_rand(rng, 7, 5))] == [(3, 5), (4, 5), (3, 5), (0, 5), (7, 4), (4,), (5,), (3,)]


def test_zero_step_raises_value_error():
    x = T.vector("x")
    c = T.lscalar("c")
    nat, ref = check_same_error([x, c], x[::c], [np.ones(4, "float32"), 0], exc=ValueError)
    assert _user_line_first(nat)


def test_three_dims_and_vector():
    rng = np.random.RandomState(2)
    t = T.tensor3("t")
    v = T.vector("v")
    a, b = T.lscalar("a"), T.lscalar("b")
    tv, vv = _rand(rng, 7, 17, 3), _rand(rng, 33)
    calls = [[tv, vv, _bound(rng, 7), _bound(rng, 17)] for _ in range(20)]
    check_native_vs_reference([t, v, a, b], [t[a:, :b], t[:, a:b:-1, 1:], v[a:b], v[b::-1]], None, calls=calls)


# -- integer indices --------------------------------------------------------------------------------

def test_int_indices_wrap_negative():
    rng = np.random.RandomState(3)
    x = T.matrix("x")
    i, j = T.lscalar("i"), T.lscalar("j")
    xv = _rand(rng, 7, 17)
    calls = [[xv, int(rng.randint(-7, 7)), int(rng.randint(-17, 17))] for _ in range(30)]
    check_native_vs_reference([x, i, j], [x[i], x[i, j], x[1:, j], x[i, ::-1], x[i][j:]], None, calls=calls)


@pytest.mark.parametrize("bad", [7, -8, 100])
def test_int_index_out_of_bounds_raises_index_error(bad):
    x = T.matrix("x")
    i = T.lscalar("i")
    y = x[i] * 2
    f = symcnn.function([x, i], y, mode="native")
    with pytest.raises(IndexError) as info:
        f(np.ones((7, 3), "float32"), bad)
    msg = str(info.value)
    assert _user_line_first(msg), msg
    assert f"index {bad}" in msg and re.search(r"(length|size) 7", msg), msg
    with pytest.raises(IndexError):
        symcnn.function([x, i], y, mode="reference")(np.ones((7, 3), "float32"), bad)


def test_int_index_on_second_axis_out_of_bounds():
    x = T.matrix("x")
    j = T.lscalar("j")
    f = symcnn.function([x, j], x[:, j], mode="native")
    with pytest.raises(IndexError, match=r"index -6 is out of bounds for .*(length|size) 5"):
        f(np.ones((3, 5), "float32"), -6)
    np.testing.assert_array_equal(f(np.arange(15, dtype="float32").reshape(3, 5), -5), [0, 5, 10])


# -- views: shared datasets through givens, contiguity ----------------------------------------------

def _subtensor_nodes(fn):
    return [n for n in fn.fgraph.toposort() if isinstance(n.op, Subtensor)]


def test_minibatch_of_shared_dataset_is_a_view():
    rng = np.random.RandomState(4)
    data = _rand(rng, 1234, 17)
    shared_x = symcnn.shared(data, name="shared_x")
    index = T.lscalar("index")
    x = T.matrix("x")
    batch = 500
    cost = (x * x).sum(axis=1)
    fns = {mode: symcnn.function([index], cost, givens={x: shared_x[index * batch:(index + 1) * batch]},
                                 mode=mode) for mode in ("native", "reference")}
    for i in (0, 1, 2, 3, 10, -1, -3):  # 2 is short, 3 and 10 are empty, -1 wraps the start only
        got, want = fns["native"](i), fns["reference"](i)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert fns["native"](2).shape == (234,) and fns["native"](3).shape == (0,)

    fn = fns["native"]
    plan = Plan(fn.fgraph, lower)
    node, = _subtensor_nodes(fn)
    sv = fn.fgraph.inputs[-1]
    assert sv is shared_x or getattr(sv, "name", None) == "shared_x"
    assert plan.base[node.outputs[0]] is sv           # a view: reads the shared storage
    assert plan.contiguous[node.outputs[0]] is True   # leading rows with step 1
    assert node.outputs[0] not in plan.slot           # owns no buffer


def test_view_contiguity_rule():
    x = T.matrix("x")
    i = T.lscalar("i")
    cases = [(x[2:5], True), (x[i], True), (x[i, 1:], True), (x[1:, 2:], False), (x[::2], False),
             (x[::-1], False), (x[:, i], False), (x[1:, i], False), (x.T[1:3], False), (x[i][2:], True)]
    for expr, contiguous in cases:
        fn = symcnn.function([x, i], expr + 1, mode="native", on_unused_input="ignore")
        plan = Plan(fn.fgraph, lower)
        last = _subtensor_nodes(fn)[-1].outputs[0]
        assert plan.contiguous[last] is contiguous, expr
        assert plan.base[last] is fn.fgraph.inputs[0]


def test_non_contiguous_inputs():
    rng = np.random.RandomState(5)
    x = T.matrix("x")
    a = T.lscalar("a")
    xv = _rand(rng, 17, 7)
    outs = [x.T[1:3], x[::2], x[::2][1:], x.T[a:, ::-1], x[::-1].T[1:], (x.T[1:3] + 1).sum(),
            x[::3, ::2][a], T.flatten(x[::2]), T.flatten(x[2:5])]
    calls = [[xv, int(a_)] for a_ in (0, 1, 3, -2)]
    check_native_vs_reference([x, a], outs, None, calls=calls)


# -- IncSubtensor -----------------------------------------------------------------------------------

@pytest.mark.parametrize("set_", [False, True])
def test_inc_subtensor_slices_and_broadcasting(set_):
    rng = np.random.RandomState(6)
    op = T.set_subtensor if set_ else T.inc_subtensor
    x = T.matrix("x")
    a, b, c = T.lscalar("a"), T.lscalar("b"), T.lscalar("c")
    yr, ys = T.row("yr"), T.scalar("ys")
    yv = T.vector("yv")
    xv = _rand(rng, 17, 7)
    outs = [op(x[a:b:c], yr), op(x[a:b:c], ys), op(x[a:b:c, 2], ys), op(x[:, a:b:c], ys), op(x[a], yv)]
    calls = []
    for _ in range(25):
        calls.append([xv, int(rng.randint(-17, 17)), _bound(rng, 17), _step(rng),
                      _rand(rng, 1, 7), np.float32(rng.randn()), _rand(rng, 7)])
    check_native_vs_reference([x, a, b, c, yr, ys, yv], outs, None, calls=calls)


def test_inc_subtensor_full_shape_and_lower_rank_y():
    rng = np.random.RandomState(7)
    x = T.tensor3("x")
    y2, y3 = T.matrix("y2"), T.tensor3("y3")
    a = T.lscalar("a")
    xv = _rand(rng, 5, 4, 3)
    calls = [[xv, _rand(rng, 4, 3), _rand(rng, 5 - k, 4, 3), k] for k in (0, 1, 3)]
    check_native_vs_reference([x, y2, y3, a], [T.inc_subtensor(x[a:], y2), T.inc_subtensor(x[a:], y3),
                                               T.set_subtensor(x[a:, 1:3], y2[1:3])], None, calls=calls)


def test_inc_subtensor_shape_mismatch_raises():
    x, y = T.matrix("x"), T.matrix("y")
    a = T.lscalar("a")
    check_same_error([x, y, a], T.inc_subtensor(x[a:], y), [np.ones((5, 3), "float32"),
                                                            np.ones((2, 3), "float32"), 1], exc=ValueError)


def test_inc_subtensor_y_runtime_length_one_broadcasts():
    x, y = T.matrix("x"), T.matrix("y")
    check_native_vs_reference([x, y], T.inc_subtensor(x[1:4], y),
                              [np.zeros((5, 3), "float32"), np.arange(3, dtype="float32").reshape(1, 3)])


def test_subtensor_gradient():
    rng = np.random.RandomState(8)
    x = T.matrix("x")
    a, b, c = T.lscalar("a"), T.lscalar("b"), T.lscalar("c")
    cost = (T.tanh(x[a:b:c]) ** 2).sum() + x[a, 0] * 3
    g = T.grad(cost, x)
    xv = _rand(rng, 17, 7)
    calls = [[xv, int(rng.randint(-17, 17)), _bound(rng, 17), _step(rng)] for _ in range(20)]
    fn, _ = check_native_vs_reference([x, a, b, c], [cost, g], None, calls=calls, rtol=1e-5, atol=1e-5)
    assert any(isinstance(n.op, IncSubtensor) for n in fn.fgraph.toposort())


# -- advanced indexing ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_tutorial_nll_indexing(n):
    rng = np.random.RandomState(9 + n)
    p = T.matrix("p")
    y = T.lvector("y")
    out = T.log(p)[T.arange(y.shape[0]), y]
    pv = rng.uniform(0.01, 1, size=(n, 10)).astype("float32")
    check_native_vs_reference([p, y], [out, -T.mean(out)], [pv, rng.randint(-10, 10, size=n)])


def test_advanced_subtensor_patterns():
    rng = np.random.RandomState(10)
    x = T.matrix("x")
    t = T.tensor3("t")
    v, w, u = T.lvector("v"), T.lvector("w"), T.lvector("u")
    m = T.lmatrix("m")
    iv = T.ivector("iv")
    xv, tv = _rand(rng, 7, 17), _rand(rng, 7, 4, 7)
    outs = [x[v], x[:, w], x[v, w], x[m], x[m, v], x[iv], t[v, :, v], t[:, u, v], t[v, u], t[:, :, m],
            t[m, :, v], t[m, u]]
    calls = []
    for _ in range(8):
        k = int(rng.randint(0, 6))
        calls.append([xv, tv, rng.randint(-7, 7, size=k), rng.randint(-17, 17, size=k), rng.randint(-4, 4, size=k),
                      rng.randint(-7, 7, size=(3, k)), rng.randint(-7, 7, size=4).astype("int32")])
    # Run-time length-1 index arrays broadcast against the others.
    calls.append([xv, tv, np.array([3]), np.array([-1, 0, 16]), np.array([2]), rng.randint(0, 7, size=(2, 1)),
                  np.array([0], "int32")])
    check_native_vs_reference([x, t, v, w, u, m, iv], outs, None, calls=calls)


@pytest.mark.parametrize("bad", [7, -8])
def test_advanced_index_out_of_bounds(bad):
    x = T.matrix("x")
    v = T.lvector("v")
    f = symcnn.function([x, v], x[v].sum(), mode="native")
    with pytest.raises(IndexError) as info:
        f(np.ones((7, 3), "float32"), np.array([0, bad, 1]))
    msg = str(info.value)
    assert _user_line_first(msg), msg
    assert f"index {bad}" in msg and re.search(r"(length|size) 7", msg), msg
    g = symcnn.function([x, v], T.inc_subtensor(x[:, v], 1.0), mode="native")
    with pytest.raises(IndexError, match=r"(length|size) 3"):
        g(np.ones((7, 3), "float32"), np.array([bad]))


def test_advanced_index_broadcast_mismatch():
    x = T.matrix("x")
    v, w = T.lvector("v"), T.lvector("w")
    check_same_error([x, v, w], x[v, w], [np.ones((4, 4), "float32"), np.array([0, 1]), np.array([0, 1, 2])],
                     exc=(ValueError, IndexError))


@pytest.mark.parametrize("set_", [False, True])
def test_advanced_inc_subtensor_repeated_indices(set_):
    rng = np.random.RandomState(11)
    x = T.matrix("x")
    t = T.tensor3("t")
    v, w = T.lvector("v"), T.lvector("w")
    y1, y2, ys = T.vector("y1"), T.matrix("y2"), T.scalar("ys")
    op = T.set_subtensor if set_ else T.inc_subtensor
    xv, tv = _rand(rng, 7, 5), _rand(rng, 7, 7, 5)
    vv = np.array([0, 3, 3, -4, 6, 0, 0])      # repeats, including -4 == 3
    wv = np.array([1, 1, 4, -1, 0, 1, 1])
    outs = [op(x[v], y1), op(x[v, w], ys), op(x[:, w], ys), op(x[v], y2), op(t[v, :, w], y2[:, :1]),
            op(t[:, v, w], ys)]
    fn, res = check_native_vs_reference([x, t, v, w, y1, y2, ys], outs,
                                        [xv, tv, vv, wv, _rand(rng, 5), _rand(rng, 7, 5), np.float32(2.5)])
    if not set_:
        want = xv.copy()
        np.add.at(want, (vv, wv), 2.5)
        np.testing.assert_allclose(res[0][1], want, rtol=1e-6)
        assert any(isinstance(n.op, AdvancedIncSubtensor) for n in fn.fgraph.toposort())


def test_advanced_inc_subtensor_random_scatter_add():
    rng = np.random.RandomState(12)
    x, y = T.matrix("x"), T.matrix("y")
    v = T.lvector("v")
    calls = []
    for n in SIZES:
        k = int(rng.randint(1, 3 * n + 2))
        calls.append([_rand(rng, n, 7), _rand(rng, k, 7), rng.randint(-n, n, size=k)])
    check_native_vs_reference([x, y, v], T.inc_subtensor(x[v], y), None, calls=calls, atol=1e-5)


def test_advanced_subtensor_gradient():
    rng = np.random.RandomState(13)
    x = T.matrix("x")
    v = T.lvector("v")
    cost = (T.tanh(x[v]) * T.arange(v.shape[0]).dimshuffle(0, "x")).sum()
    g = T.grad(cost, x)
    check_native_vs_reference([x, v], [cost, g], [_rand(rng, 7, 5), np.array([1, 1, -1, 0, 1])],
                              rtol=1e-5, atol=1e-5)


# -- the tutorial's logistic regression gradient ----------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_logistic_regression_nll_gradient(n):
    rng = np.random.RandomState(20 + n)
    n_in, n_out = 17, 10
    x = T.matrix("x")
    y = T.lvector("y")
    results = {}
    xv = _rand(rng, n, n_in)
    yv = rng.randint(0, n_out, size=n)
    W0 = (rng.randn(n_in, n_out) * 0.3).astype("float32")
    b0 = (rng.randn(n_out) * 0.3).astype("float32")
    for mode in ("native", "reference"):
        W = symcnn.shared(W0.copy(), name="W")
        b = symcnn.shared(b0.copy(), name="b")
        p = T.nnet.softmax(T.dot(x, W) + b)
        nll = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
        gW, gb = T.grad(nll, [W, b])
        f = symcnn.function([x, y], [nll, gW, gb], updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)], mode=mode)
        results[mode] = [f(xv, yv) for _ in range(3)] + [[W.get_value(), b.get_value()]]
    for got, want in zip(results["native"], results["reference"]):
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-6)
