"""inc_subtensor_sum_to_join: a sum of zero arrays incremented in disjoint constant slices of one
axis (the gradient of a product cut into parts) becomes one Join; elsewhere it does not fire."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.tensor.join import Join
from symcnn.tensor.subtensor import IncSubtensor

from tests.helpers import check_native_vs_reference, make_rng, rand

NAME = "inc_subtensor_sum_to_join"


def _fired(fn):
    return NAME in {r.rewrite for r in fn.rewrite_log}


def _ops(fn):
    return [n.op for n in fn.fgraph.toposort()]


def _gates_grad(dim):
    """The LSTM's gate gradient: preact cut into four parts along axis 1."""
    p = T.matrix("p")
    part = lambda k: p[:, k * dim:(k + 1) * dim]  # noqa: E731
    cost = (T.nnet.sigmoid(part(0)) * T.tanh(part(3)) + T.nnet.sigmoid(part(1)) * 3
            - T.nnet.sigmoid(part(2)) ** 2).sum()
    return p, T.grad(cost, p)


@pytest.mark.parametrize("dim,rows", [(5, 3), (16, 32), (3, 1)])
def test_gate_gradient_is_one_join(dim, rows):
    p, g = _gates_grad(dim)
    value = rand((rows, 4 * dim), "float32", make_rng(dim))
    fn, _ = check_native_vs_reference([p], g, [value], rtol=1e-5, atol=1e-6)
    assert _fired(fn)
    ops = _ops(fn)
    assert any(isinstance(op, Join) for op in ops)
    assert not any(isinstance(op, IncSubtensor) for op in ops)
    without = symcnn.function([p], g, mode=Mode("native", excluding=[NAME]))
    assert not _fired(without) and any(isinstance(op, IncSubtensor) for op in _ops(without))
    np.testing.assert_array_equal(fn(value), without(value))


def test_gaps_unordered_parts_and_a_part_to_the_end():
    # parts [4:6], [0:2] (added in that order) and [7:]: zeros in [2:4] and [6:7]
    x = T.tensor3("x")
    cost = (T.exp(x[:, :, 4:6]) * 2).sum() + (x[:, :, 0:2] ** 2).sum() + T.tanh(x[:, :, 7:]).sum()
    g = T.grad(cost, x)
    fn, (got,) = check_native_vs_reference([x], g, [rand((2, 3, 9), "float32", make_rng(1))], rtol=1e-5, atol=1e-6)
    assert _fired(fn)
    assert (got[:, :, 2:4] == 0).all() and (got[:, :, 6] == 0).all()


def test_leading_axis_and_parts_past_the_end():
    # the last part's slice [3:10] runs past the 5 rows: cut at the end, as the increment's was
    x = T.matrix("x")
    g = T.grad(T.exp(x[0:3]).sum() + (x[3:10] * 4).sum(), x)
    fn, _ = check_native_vs_reference([x], g, [rand((5, 4), "float32", make_rng(2))], rtol=1e-5, atol=1e-6)
    assert _fired(fn)


def test_shape_changes_between_calls():
    p, g = _gates_grad(4)
    rng = make_rng(3)
    calls = [[rand((r, 16), "float32", rng)] for r in (2, 7, 1)]
    fn, _ = check_native_vs_reference([p], g, None, calls=calls, rtol=1e-5, atol=1e-6)
    assert _fired(fn)


def _sum_of_increments(kind):
    x, y = T.matrix("x"), T.matrix("y")
    z = T.zeros_like(x)
    a = T.inc_subtensor(z[:, 0:2], y[:, 0:2])
    if kind == "overlap":
        b = T.inc_subtensor(z[:, 1:3], y[:, 1:3])
    elif kind == "step":
        b = T.inc_subtensor(z[:, 2:6:2], y[:, 0:2])
    elif kind == "negative":
        b = T.inc_subtensor(z[:, -2:], y[:, 0:2])
    elif kind == "symbolic":
        n = T.lscalar("n")
        b = T.inc_subtensor(z[:, n:n + 2], y[:, 0:2])
    elif kind == "set":
        b = T.set_subtensor(z[:, 2:4], y[:, 0:2])
    elif kind == "nonzero":
        b = T.inc_subtensor(T.ones_like(x)[:, 2:4], y[:, 0:2])
    elif kind == "other_zeros":
        b = T.inc_subtensor(T.zeros_like(y)[:, 2:4], y[:, 0:2])
    elif kind == "two_axes":
        b = T.inc_subtensor(z[0:1, 2:4], y[0:1, 0:2])
    else:
        b = T.inc_subtensor(z[:, 2:4], y[:, 0:2])
    ins = [x, y] + ([n] if kind == "symbolic" else [])
    return ins, a + b


@pytest.mark.parametrize("kind", ["overlap", "step", "negative", "symbolic", "set", "nonzero", "other_zeros",
                                  "two_axes"])
def test_does_not_fire_where_the_sum_is_not_a_join(kind):
    ins, out = _sum_of_increments(kind)
    rng = make_rng(4)
    values = [rand((3, 6), "float32", rng), rand((3, 6), "float32", rng)] + ([1] if kind == "symbolic" else [])
    fn, _ = check_native_vs_reference(ins, out, values)
    assert not _fired(fn)


def test_fires_on_written_increments_and_keeps_results():
    ins, out = _sum_of_increments("plain")
    rng = make_rng(5)
    fn, (got,) = check_native_vs_reference(ins, out, [rand((3, 6), "float32", rng), rand((3, 6), "float32", rng)])
    assert _fired(fn)
    assert (got[:, 4:] == 0).all()


def test_a_term_read_elsewhere_is_left_alone():
    x, y = T.matrix("x"), T.matrix("y")
    z = T.zeros_like(x)
    a = T.inc_subtensor(z[:, 0:2], y[:, 0:2])
    b = T.inc_subtensor(z[:, 2:4], y[:, 0:2])
    rng = make_rng(6)
    fn, _ = check_native_vs_reference([x, y], [a + b, a * 2], [rand((3, 4), "float32", rng),
                                                                rand((3, 4), "float32", rng)])
    assert not _fired(fn)


# -- subtensor_of_inc_subtensor ------------------------------------------------------------------

def _fired_named(fn, name):
    return name in {r.rewrite for r in fn.rewrite_log}


def test_rows_of_a_padded_gradient_are_the_gradient():
    # the gradient of a scan's returned rows, read back by the gradient loop (states[1:])
    x = T.tensor3("x")
    g = T.grad((T.tanh(x[1:]) * 3).sum(), x)
    fn, _ = check_native_vs_reference([x], [g[1:] * 2, g[1:]], [rand((5, 3, 4), "float32", make_rng(7))],
                                      rtol=1e-5, atol=1e-6)
    assert _fired_named(fn, "subtensor_of_inc_subtensor")
    assert not any(isinstance(op, IncSubtensor) for op in _ops(fn))


def test_symbolic_bounds_that_are_the_same_variables():
    x, n = T.matrix("x"), T.lscalar("n")
    g = T.grad((x[n:n + 2] ** 2).sum(), x)
    fn, _ = check_native_vs_reference([x, n], g[n:n + 2] + 1, [rand((6, 3), "float32", make_rng(8)), 3],
                                      rtol=1e-5, atol=1e-6)
    assert _fired_named(fn, "subtensor_of_inc_subtensor")


@pytest.mark.parametrize("kind", ["other_slice", "set", "nonzero", "int_index"])
def test_subtensor_of_inc_subtensor_does_not_fire(kind):
    x, y = T.matrix("x"), T.matrix("y")
    z = T.ones_like(x) if kind == "nonzero" else T.zeros_like(x)
    if kind == "set":
        out = T.set_subtensor(z[1:], y[1:])[1:]
    elif kind == "int_index":
        out = T.inc_subtensor(z[1], y[1])[1]
    elif kind == "other_slice":
        out = T.inc_subtensor(z[1:], y[1:])[2:]
    else:
        out = T.inc_subtensor(z[1:], y[1:])[1:]
    rng = make_rng(9)
    fn, _ = check_native_vs_reference([x, y], out * 2, [rand((4, 3), "float32", rng), rand((4, 3), "float32", rng)])
    assert not _fired_named(fn, "subtensor_of_inc_subtensor")
