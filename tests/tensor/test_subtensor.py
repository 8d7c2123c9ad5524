"""Indexing: basic (views, symbolic bounds), advanced (gather / scatter-add), inc/set_subtensor."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.subtensor import Subtensor
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, compile_and_run, here,
                           inferred_shapes, make_rng, rand)

A = rand((5, 6), rng=make_rng(11))

BASIC = [
    lambda v: v[1],
    lambda v: v[-1],
    lambda v: v[1:3],
    lambda v: v[:, 2],
    lambda v: v[1:4, 2:5],
    lambda v: v[::2],
    lambda v: v[1::3],
    lambda v: v[-3:],
    lambda v: v[:-2, 1:],
    lambda v: v[2, 1:5:2],
    lambda v: v[10:],
    lambda v: v[-100:2],
    lambda v: v[3, 4],
    lambda v: v[..., 1],
    lambda v: v[None, 1:3],
    lambda v: v[:, None, 2],
]


@pytest.mark.parametrize("k", range(len(BASIC)))
def test_basic_indexing_values_contract_and_grad(k):
    idx = BASIC[k]
    (got,) = assert_op_contract(idx, [A])
    np.testing.assert_array_equal(got, idx(A))
    if np.asarray(idx(A)).size:
        check_grad(idx, [(5, 6)], n_tests=1)


def test_negative_step_values():
    x = T.dmatrix("x")
    got = compile_and_run([x], x[::-1, 4:1:-2], [A])
    np.testing.assert_array_equal(got, A[::-1, 4:1:-2])
    check_grad(lambda v: v[::-1], [(4, 2)])


def test_static_shapes_of_slices():
    x = T.TensorType("float64", shape=(5, 6))("x")
    assert x[1:3].type.shape == (2, 6)
    assert x[::2, 1].type.shape == (3,)
    assert x[-2:, :].type.shape == (2, 6)
    assert x[T.lscalar():].type.shape == (None, 6)
    assert T.dmatrix()[1:3].type.shape == (None, None)


@pytest.mark.parametrize("start,stop", [(0, 2), (1, 4), (3, 10), (-3, -1), (4, 2), (-10, 3), (2, 2)])
def test_symbolic_bounds(start, stop):
    x = T.dmatrix("x")
    a, b = T.lscalar("a"), T.lscalar("b")
    out = x[a:b]
    got = compile_and_run([x, a, b], out, [A, start, stop])
    np.testing.assert_array_equal(got, A[start:stop])
    (shp,) = inferred_shapes(out.owner, [x, a, b], [A, start, stop])
    assert shp == A[start:stop].shape


def test_symbolic_bounds_expression_and_int32():
    """The minibatch pattern: x[i * bs:(i + 1) * bs] with an int32 index."""
    x = T.dmatrix("x")
    i = T.iscalar("i")
    bs = 2
    out = x[i * bs:(i + 1) * bs]
    for k in range(3):
        np.testing.assert_array_equal(compile_and_run([x, i], out, [A, k]), A[k * bs:(k + 1) * bs])
    g = theano.grad(out.sum(), x)
    np.testing.assert_array_equal(compile_and_run([x, i], g, [A, 1]), np.r_[np.zeros((2, 6)), np.ones((2, 6)),
                                                                          np.zeros((1, 6))])


def test_symbolic_int_index_and_step():
    x = T.dmatrix("x")
    i, s = T.lscalar("i"), T.lscalar("s")
    got = compile_and_run([x, i, s], [x[i], x[::s], x[:, i]], [A, -2, 2])
    np.testing.assert_array_equal(got[0], A[-2])
    np.testing.assert_array_equal(got[1], A[::2])
    np.testing.assert_array_equal(got[2], A[:, -2])


def test_basic_index_returns_view_in_perform(monkeypatch):
    seen = []
    orig = Subtensor.perform

    def spy(self, node, inputs, out):
        orig(self, node, inputs, out)
        seen.append(np.shares_memory(out[0][0], inputs[0]))

    monkeypatch.setattr(Subtensor, "perform", spy)
    x = T.dmatrix("x")
    compile_and_run([x], x[1:3] * 2, [A])
    assert seen == [True]


def test_output_slice_is_not_a_view_of_the_input():
    x = T.dmatrix("x")
    a = A.copy()
    got = compile_and_run([x], x[1:3], [a])
    assert not np.shares_memory(got, a)
    got[:] = 0
    np.testing.assert_array_equal(a, A)


def test_index_errors():
    x = T.TensorType("float64", shape=(5, 6))("x")
    with pytest.raises(IndexError, match="out of bounds") as ei:
        x[5]
    assert_starts_with_location(ei, here(-1))
    with pytest.raises(IndexError, match="out of bounds"):
        x[:, -7]
    with pytest.raises(IndexError, match="too many indices"):
        x[1, 2, 3]
    with pytest.raises(TypeError, match="integer scalar"):
        x[T.dscalar()]
    with pytest.raises(TypeError, match="integer scalar"):
        x[1.5]
    with pytest.raises(ValueError, match="step cannot be zero"):
        x[::0]
    with pytest.raises(TypeError, match="boolean mask"):
        x[T.bvector() > 0]


def test_index_past_end_at_run_time():
    x = T.dmatrix("x")
    i = T.lscalar("i")
    out = x[i]; loc = here()  # noqa: E702
    f = theano.function([x, i], out)
    np.testing.assert_array_equal(f(A, 4), A[4])
    with pytest.raises(IndexError, match="out of bounds") as ei:
        f(A, 5)
    assert_starts_with_location(ei, loc)
    with pytest.raises(IndexError):
        f(A, -6)


# -- advanced indexing ---------------------------------------------------------------------
def test_nll_pattern_values_with_repeated_labels():
    p = T.dmatrix("p")
    y = T.ivector("y")
    picked = p[T.arange(y.shape[0]), y]
    assert picked.ndim == 1 and picked.dtype == "float64"
    labels = np.array([0, 2, 2, 5, 0], "int32")
    np.testing.assert_array_equal(compile_and_run([p, y], picked, [A, labels]), A[np.arange(5), labels])


def test_advanced_grad_scatter_adds_repeated_indices():
    x = T.dmatrix("x")
    idx = T.lvector("idx")
    out = x[idx].sum()
    g = theano.grad(out, x)
    got = compile_and_run([x, idx], g, [A, np.array([1, 1, 3, 1])])
    want = np.zeros_like(A)
    want[1] = 3
    want[3] = 1
    np.testing.assert_array_equal(got, want)
    labels = np.array([0, 2, 2, 5, 0], "int32")

    def nll(v):
        y = T.constant(labels)
        return v[T.arange(y.shape[0]), y]

    check_grad(nll, [(5, 6)])
    rows = np.array([0, 0, 4, 4])
    cols = np.array([1, 1, 2, 2])
    check_grad(lambda v: v[T.constant(rows), T.constant(cols)] * T.constant(np.arange(1.0, 5.0)), [(5, 6)])


@pytest.mark.parametrize("build,np_idx", [
    (lambda v, i: v[i], lambda i: (i,)),
    (lambda v, i: v[:, i], lambda i: (slice(None), i)),
])
def test_advanced_index_along_axes(build, np_idx):
    x = T.dmatrix("x")
    i = T.lvector("i")
    iv = np.array([3, 0, 3])
    got = compile_and_run([x, i], build(x, i), [A, iv])
    np.testing.assert_array_equal(got, A[np_idx(iv)])
    assert_op_contract(lambda v, j: build(v, j), [A, iv], check_infer_shape=False)
    check_grad(lambda v: build(v, T.constant(iv)), [(5, 6)])


def test_advanced_index_with_list_and_matrix_index():
    x = T.dmatrix("x")
    np.testing.assert_array_equal(compile_and_run([x], x[[0, 2, 2]], [A]), A[[0, 2, 2]])
    m = T.lmatrix("m")
    iv = np.array([[0, 1], [4, 4]])
    out = x[m]
    assert out.ndim == 3
    np.testing.assert_array_equal(compile_and_run([x, m], out, [A, iv]), A[iv])


def test_advanced_index_errors():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="integer tensor"):
        x[T.dvector()]
    with pytest.raises(NotImplementedError, match="bounded slices"):
        x[1:3, T.lvector()]
    with pytest.raises(IndexError, match="too many"):
        T.dvector()[T.lvector(), T.lvector()]


# -- inc_subtensor / set_subtensor ------------------------------------------------------------
def test_inc_and_set_subtensor_basic():
    x = T.dmatrix("x")
    y = T.dvector("y")
    inc = T.inc_subtensor(x[1:3, 2], y)
    st = T.set_subtensor(x[1:3, 2], y)
    yv = np.array([10.0, 20.0])
    r_inc, r_set = compile_and_run([x, y], [inc, st], [A, yv])
    w_inc, w_set = A.copy(), A.copy()
    w_inc[1:3, 2] += yv
    w_set[1:3, 2] = yv
    np.testing.assert_array_equal(r_inc, w_inc)
    np.testing.assert_array_equal(r_set, w_set)
    assert inc.type == x.type


def test_inc_subtensor_does_not_modify_input():
    x = T.dmatrix("x")
    a = A.copy()
    compile_and_run([x], T.set_subtensor(x[0], 0.0), [a])
    np.testing.assert_array_equal(a, A)


def test_inc_set_subtensor_broadcast_scalar_and_symbolic_bounds():
    x = T.dmatrix("x")
    i = T.lscalar("i")
    got = compile_and_run([x, i], T.set_subtensor(x[i:i + 2], 7.0), [A, 1])
    want = A.copy()
    want[1:3] = 7.0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("setf", [False, True])
def test_inc_set_subtensor_grads(setf):
    f = T.set_subtensor if setf else T.inc_subtensor
    check_grad(lambda x, y: f(x[1:3, ::2], y) * 3.0, [(4, 5), (2, 3)])
    check_grad(lambda x, y: f(x[1:3, ::2], y.dimshuffle("x", 0)), [(4, 5), (3,)])
    check_grad(lambda x, y: f(x[2], y), [(4, 5), (5,)])


def test_set_subtensor_grad_wrt_x_is_zero_at_overwritten_entries():
    x = T.dvector("x")
    y = T.dscalar("y")
    g = theano.grad(T.set_subtensor(x[1:3], y).sum(), [x, y])
    gx, gy = compile_and_run([x, y], g, [np.arange(4.0), 5.0])
    np.testing.assert_array_equal(gx, [1, 0, 0, 1])
    assert gy == 2.0


def test_advanced_inc_and_set_subtensor():
    x = T.dmatrix("x")
    r = T.lvector("r")
    c = T.lvector("c")
    rows, cols = np.array([0, 0, 2]), np.array([1, 1, 3])
    inc = T.inc_subtensor(x[r, c], 1.0)
    st = T.set_subtensor(x[r, c], -1.0)
    got_inc, got_set = compile_and_run([x, r, c], [inc, st], [A, rows, cols])
    w_inc = A.copy()
    np.add.at(w_inc, (rows, cols), 1.0)
    w_set = A.copy()
    w_set[rows, cols] = -1.0
    np.testing.assert_array_equal(got_inc, w_inc)
    assert got_inc[0, 1] == A[0, 1] + 2  # repeated index accumulates
    np.testing.assert_array_equal(got_set, w_set)
    check_grad(lambda v, w: T.inc_subtensor(v[T.constant(rows), T.constant(cols)], w), [(3, 4), (3,)])
    check_grad(lambda v, w: T.set_subtensor(v[T.constant(np.array([2, 0]))], w), [(3, 4), (2, 4)])


def test_inc_subtensor_errors():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="indexed variable"):
        T.inc_subtensor(x, 1.0)
    with pytest.raises(ValueError, match="cannot write"):
        T.inc_subtensor(x[0], T.dmatrix())
    with pytest.raises(ValueError, match="cannot write"):
        T.set_subtensor(x[T.lvector()], T.dtensor3())


def test_inc_subtensor_contract():
    got = assert_op_contract(lambda x, y: T.inc_subtensor(x[1:3], y), [A, np.ones((2, 6))])
    w = A.copy()
    w[1:3] += 1
    np.testing.assert_array_equal(got[0], w)
    got = assert_op_contract(lambda x, i, y: T.inc_subtensor(x[i], y), [A, np.array([1, 1]), np.ones((2, 6))])
    w = A.copy()
    w[1] += 2
    np.testing.assert_array_equal(got[0], w)


def test_verify_grad_with_symbolic_bounds():
    check_grad(lambda v: v[v.shape[0] // 3:v.shape[0] - 1], [(6, 2)])
    check_grad(lambda v: v[1:, v.shape[1] - 2], [(4, 3)])


def test_subtensor_of_shape_vector():
    x = T.dmatrix("x")
    r = compile_and_run([x], [x.shape[::-1], x[x.shape[0] - 1]], [A])
    np.testing.assert_array_equal(r[0], [6, 5])
    np.testing.assert_array_equal(r[1], A[-1])
