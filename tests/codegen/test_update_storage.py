"""Native code writes updates into the storage of their shared variables. It only writes memory
numpy says is writeable (else the shared variable gets a copy, once), and an input that shares
memory with an updated shared variable reads the value from before the call: native results
and updates equal the reference's."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import run_child


def _step(W, x=None):
    """(inputs, outputs, updates) of an SGD-like step of W, with an output reading W."""
    x = T.vector("x") if x is None else x
    return [x], [T.dot(W, x), W * 1], [(W, W - 0.5 * x)]


def _both(value, borrow=True, **kw):
    """Native and reference (function, shared variable) pairs over copies of `value`'s data."""
    out = []
    for mode in ("native", "reference"):
        v = value if mode == "native" else np.array(value)
        W = symcnn.shared(v, "W", borrow=borrow)
        ins, outs, upd = _step(W)
        out.append((symcnn.function(ins, outs, updates=upd, mode=mode), W))
    return out


def _check_same(native, ref, args_list):
    (fn, Wn), (fr, Wr) = native, ref
    for args in args_list:
        got, want = fn(*args), fr(*args)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)
        np.testing.assert_allclose(Wn.get_value(), Wr.get_value(), rtol=1e-6)


def test_shared_variable_over_immutable_bytes_is_not_written():
    data = bytes(np.arange(4, dtype="float32").tobytes())
    before = bytes(data)
    value = np.frombuffer(data, dtype="float32")
    native, ref = _both(value)
    x = np.ones(4, "float32")
    _check_same(native, ref, [[x], [x * 2], [x]])
    assert data == before                     # the bytes object is immutable
    assert native[1].get_value(borrow=True).flags.writeable


def test_shared_variable_over_a_read_only_array_is_copied_once():
    value = np.arange(4, dtype="float32")
    value.flags.writeable = False
    native, ref = _both(value)
    x = np.ones(4, "float32")
    _check_same(native, ref, [[x]])
    assert value.tolist() == [0, 1, 2, 3]
    storage = native[1].get_value(borrow=True)
    _check_same(native, ref, [[x], [x]])
    assert native[1].get_value(borrow=True) is storage   # copied once, then updated in place


def test_shared_variable_over_a_read_only_memory_map(tmp_path):
    # writing a read-only mapping is a SIGSEGV: run it in a child process
    path = tmp_path / "w.npy"
    np.save(path, np.arange(6, dtype="float32"))
    out = run_child(f"""
import numpy as np, symcnn, symcnn.tensor as T
m = np.load({str(path)!r}, mmap_mode='r')
W = symcnn.shared(m, 'W', borrow=True)
x = T.vector('x')
f = symcnn.function([x], T.sum(W * x), updates=[(W, W - x)])
f(np.ones(6, 'float32')); f(np.ones(6, 'float32'))
print(W.get_value().tolist(), np.load({str(path)!r}).tolist(), sep="|")
""")
    new, on_disk = out.stdout.strip().split("\n")[-1].split("|")
    assert new == str([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]) and on_disk == str([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


def test_input_that_is_the_updated_shared_storage_reads_the_old_value():
    rng = np.random.RandomState(0)
    value = rng.standard_normal((3, 4)).astype("float32")
    res = {}
    for mode in ("native", "reference"):
        W = symcnn.shared(value.copy(), "W", borrow=True)
        x = T.matrix("x")
        f = symcnn.function([x], [x * 2, T.sum(x * W), x], updates=[(W, W - 0.5 * x)], mode=mode)
        outs = [f(W.get_value(borrow=True)) for _ in range(3)]
        res[mode] = outs, W.get_value()
    for a, b in zip(res["native"][0], res["reference"][0]):
        for g, w in zip(a, b):
            np.testing.assert_allclose(g, w, rtol=1e-6)
    np.testing.assert_allclose(res["native"][1], res["reference"][1], rtol=1e-6)


def test_input_that_is_a_view_of_the_updated_shared_storage():
    value = np.arange(8, dtype="float32")
    res = {}
    for mode in ("native", "reference"):
        W = symcnn.shared(value.copy(), "W", borrow=True)
        x = T.vector("x")
        f = symcnn.function([x], [x + 0, T.sum(x)], updates=[(W, W * 2 + 1)], mode=mode)
        res[mode] = [f(W.get_value(borrow=True)[2:6]) for _ in range(2)], W.get_value()
    for a, b in zip(res["native"][0], res["reference"][0]):
        for g, w in zip(a, b):
            np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(res["native"][1], res["reference"][1])


@pytest.mark.parametrize("second", ["same", "view"])
def test_two_shared_variables_borrowed_over_one_array(second):
    res = {}
    for mode in ("native", "reference"):
        data = np.arange(6, dtype="float32")
        A = symcnn.shared(data, "A", borrow=True)
        B = symcnn.shared(data if second == "same" else data[:], "B", borrow=True)
        f = symcnn.function([], [A + B], updates=[(A, A + 1), (B, B * 10)], mode=mode)
        outs = [f() for _ in range(3)]
        res[mode] = outs, A.get_value(), B.get_value()
    (on, an, bn), (orf, ar, br) = res["native"], res["reference"]
    for g, w in zip(on, orf):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(an, ar)
    np.testing.assert_array_equal(bn, br)


def test_shared_variable_read_but_not_updated_over_an_updated_array():
    res = {}
    for mode in ("native", "reference"):
        data = np.arange(5, dtype="float32")
        A = symcnn.shared(data, "A", borrow=True)
        R = symcnn.shared(data, "R", borrow=True)   # only read
        f = symcnn.function([], [R * 1], updates=[(A, A - R)], mode=mode)
        res[mode] = [f() for _ in range(2)], A.get_value()
    for g, w in zip(res["native"][0], res["reference"][0]):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(res["native"][1], res["reference"][1])


def test_unaliased_updates_still_write_in_place():
    W = symcnn.shared(np.zeros(4, "float32"), "W", borrow=True)
    storage = W.get_value(borrow=True)
    f = symcnn.function([], [], updates=[(W, W + 1)])
    f()
    f()
    assert W.get_value(borrow=True) is storage and storage.tolist() == [2.0] * 4
