"""Join (T.concatenate, T.join, T.stack) and Alloc (T.alloc, T.zeros, T.ones)."""
import numpy as np
import pytest

import symcnn.tensor as T
from tests.helpers import (assert_op_contract, assert_starts_with_location, check_grad, check_native_vs_reference,
                           compile_and_run, here, make_rng, rand)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concatenate_matches_numpy(axis):
    rng = make_rng(3)
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes = [tuple(s + k if d == axis % 3 else s for d, s in enumerate(sh)) for k, sh in enumerate(shapes)]
    vals = [rand(s, rng=rng) for s in shapes]
    xs = [T.dtensor3(f"x{k}") for k in range(3)]
    got = compile_and_run(xs, T.concatenate(xs, axis=axis), vals)
    np.testing.assert_array_equal(got, np.concatenate(vals, axis=axis))
    check_native_vs_reference(xs, T.concatenate(xs, axis=axis), vals)
    check_grad(lambda a, b, c: T.concatenate([a, b, c], axis=axis), shapes)


def test_join_op_contract_and_dtype():
    got = assert_op_contract(lambda a, b: T.join(1, a, b), [rand((2, 3), "float32"), rand((2, 5), "int32")])
    assert got[0].dtype == np.float64 and got[0].shape == (2, 8)
    a, b = T.TensorType("float32", shape=(2, 3))("a"), T.TensorType("float32", shape=(2, None))("b")
    assert T.concatenate([a, b], axis=1).type.shape == (2, None)
    assert T.concatenate([a, a], axis=0).type.shape == (4, 3)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_matches_numpy(axis):
    rng = make_rng(4)
    vals = [rand((3, 4), rng=rng) for _ in range(3)]
    xs = [T.dmatrix(f"x{k}") for k in range(3)]
    got = compile_and_run(xs, T.stack(xs, axis=axis), vals)
    np.testing.assert_array_equal(got, np.stack(vals, axis=axis))
    check_native_vs_reference(xs, T.stack(xs, axis=axis), vals)
    check_grad(lambda a, b, c: T.stack([a, b, c], axis=axis), [(3, 4)] * 3)
    # the old spelling T.stack(a, b, c); scalars stack into a vector
    np.testing.assert_array_equal(compile_and_run(xs, T.stack(*xs), vals), np.stack(vals))
    s = T.dscalar("s")
    np.testing.assert_array_equal(compile_and_run([s], T.stack([s, s * 2]), [1.5]), [1.5, 3.0])


def test_join_native_random_shapes():
    rng = make_rng(5)
    for _ in range(5):
        n, m, k = (int(v) for v in rng.integers(0, 5, size=3))
        vals = [rand((n, 3), "float32", rng), rand((m, 3), "float32", rng), rand((k, 3), "float32", rng)]
        xs = [T.fmatrix(f"x{j}") for j in range(3)]
        check_native_vs_reference(xs, T.concatenate(xs), vals)


def test_join_errors_name_the_line():
    a, b = T.dmatrix("a"), T.dtensor3("b")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.concatenate([a, b])
    assert_starts_with_location(e, loc)
    assert "2 dimensions" in str(e.value)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.concatenate(a, b)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.concatenate([a, a], axis=2)
    assert_starts_with_location(e, loc)
    c = T.TensorType("float64", shape=(2, 3))("c")
    d = T.TensorType("float64", shape=(3, 3))("d")
    loc = here(2)
    with pytest.raises(ValueError) as e:
        T.concatenate([c, d], axis=1)
    assert_starts_with_location(e, loc)
    assert "dimension 0 differs" in str(e.value)


def test_join_run_time_mismatch_in_both_modes():
    from tests.helpers import check_same_error
    a, b = T.dmatrix("a"), T.dmatrix("b")
    nat, ref = check_same_error([a, b], T.concatenate([a, b], axis=1), [rand((2, 3)), rand((3, 3))])
    assert "dimension 0" in ref and "dimension 0" in nat


def test_alloc_zeros_ones():
    v, n = T.dvector("v"), T.lscalar("n")
    vv = rand((4,))
    got = compile_and_run([v, n], T.alloc(v, n, 4), [vv, 3])
    np.testing.assert_array_equal(got, np.broadcast_to(vv, (3, 4)))
    check_native_vs_reference([v, n], [T.alloc(v, n, 4), T.alloc(v.sum(), n, 2), T.zeros((n, 2)),
                                       T.ones((2, n), dtype="int32")], [vv, 3])
    z = T.zeros((2, 3))
    assert z.dtype == "float32" and z.type.shape == (2, 3)
    assert compile_and_run([], T.ones(5, dtype="int64"), []).tolist() == [1] * 5
    check_grad(lambda x: T.alloc(x, 3, 4), [(4,)])
    col = T.dcol("col")
    gcol = T.grad(T.alloc(col, 2, 3, 4).sum(), col)
    np.testing.assert_array_equal(compile_and_run([col], gcol, [rand((3, 1))]), np.full((3, 1), 8.0))
    got = assert_op_contract(lambda x, k: T.alloc(x, k, 2, 3), [rand((2, 3)), np.int64(4)])
    assert got[0].shape == (4, 2, 3)


def test_alloc_native_random_shapes():
    rng = make_rng(6)
    v, n, m = T.fmatrix("v"), T.lscalar("n"), T.lscalar("m")
    for _ in range(5):
        a, b = (int(x) for x in rng.integers(0, 4, size=2))
        check_native_vs_reference([v, n, m], T.alloc(v, 2, n, m), [rand((a, b), "float32", rng), a, b])
        r = T.frow("r")
        check_native_vs_reference([r, n, m], T.alloc(r, 2, n, m), [rand((1, b), "float32", rng), a, b])


def test_alloc_errors():
    v, n = T.dvector("v"), T.lscalar("n")
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.alloc(T.dmatrix("w"), 3)
    assert_starts_with_location(e, loc)
    loc = here(2)
    with pytest.raises(TypeError) as e:
        T.alloc(v, 2.5)
    assert_starts_with_location(e, loc)
    from tests.helpers import check_same_error
    check_same_error([v, n], T.alloc(v, n, 3), [rand((4,)), 2])  # a length-4 value cannot fill 3
    check_same_error([v, n], T.alloc(v, n, 4), [rand((4,)), -1])


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("shapes,axis,threaded", [
    ([(5, 40, 33, 40), (5, 24, 33, 40)], 1, True),           # 5 rows of two blocks: on the threads
    ([(3, 7, 9, 200), (3, 1, 9, 200), (3, 60, 9, 200)], 1, True),
    ([(1, 300, 500), (1, 400, 500)], 1, False),              # one row: the calling thread
    ([(3000, 64), (1500, 64), (7, 64)], 0, False),
    ([(2, 3, 4), (2, 0, 4), (2, 5, 4)], 1, False),           # small, an input empty
])
def test_join_of_contiguous_inputs_copies_blocks(shapes, axis, threaded, static, monkeypatch):
    """A join of contiguous inputs copies each input's block of every outer row (kernels/join.py);
    large ones split the rows over the threads (static sizes: decided when compiled, else when
    called): the same result on 1, 2 and 3 threads."""
    from symcnn.config import config
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    rng = make_rng(6)
    vals = [rand(s, "float32", rng) for s in shapes]
    xs = [T.TensorType("float32", shape=s if static else (None,) * len(s))(f"x{k}") for k, s in enumerate(shapes)]
    for n in (1, 2, 3):
        monkeypatch.setattr(config, "num_threads", n)
        fn, (got,) = check_native_vs_reference(xs, [T.concatenate(xs, axis=axis)], vals, rtol=0, atol=0)
        np.testing.assert_array_equal(got[0], np.concatenate(vals, axis=axis))
        if static:
            assert ('@"symcnn_pool_run"(' in fn.runner.ir) == (threaded and n > 1)
