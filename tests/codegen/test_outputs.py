"""What a native call hands back: outputs of every kind, and updates that change shape."""
import numpy as np

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference


def test_outputs_that_are_inputs_and_0d_constants():
    x = T.dvector("x")
    a = np.array([1.0, 2.0])
    fn, (res,) = check_native_vs_reference([x], [x, T.constant(np.float64(3.0)), T.constant(np.arange(3))], [a])
    assert res[1].shape == () and res[1].dtype == np.float64
    assert not np.shares_memory(res[0], a)


def test_update_may_change_a_shared_variables_shape():
    w = symcnn.shared(np.zeros(3, "float32"), name="w")
    x = T.fvector("x")
    f = symcnn.function([x], w.sum(), updates=[(w, x * 2)], mode="native")
    f(np.ones(5, "float32"))
    np.testing.assert_array_equal(w.get_value(), np.full(5, 2, "float32"))
    f(np.ones(5, "float32"))
    assert f(np.arange(2, dtype="float32")) == 10
    np.testing.assert_array_equal(w.get_value(), [0, 2])


# -- large outputs are handed over, not copied ------------------------------------------------------

BIG = (160, 128)   # 80 KiB of float32: above codegen.runtime.HAND_OVER_BYTES


def _owner(a):
    from symcnn.compile.backend import OwnedBuffer
    base = a.base
    return base if isinstance(base, OwnedBuffer) else None


def test_a_large_output_is_handed_over_and_the_next_call_does_not_touch_it():
    x = T.fmatrix("x")
    f = symcnn.function([x], T.tanh(x) * 2, mode="native")
    a = np.random.default_rng(0).standard_normal(BIG).astype("float32")
    first = f(a)
    assert _owner(first) is not None, "the output's buffer was copied, not handed over"
    assert first.flags.c_contiguous and first.flags.writeable
    kept = first.copy()
    second = f(a + 1)
    assert _owner(second) is not None and not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_allclose(second, np.tanh(a + 1) * 2, rtol=1e-6)
    # the function's buffer went with the output: the next call allocates its own
    assert 0 in f.runner.memory_report()["per_buffer"]


def test_a_small_output_is_copied():
    from codegen.runtime import HAND_OVER_BYTES
    x = T.fvector("x")
    f = symcnn.function([x], x * 2, mode="native")
    out = f(np.ones(HAND_OVER_BYTES // 4 - 1, "float32"))
    assert _owner(out) is None and out.base is None


def test_outputs_sharing_a_buffer_are_handed_over_once():
    # y twice and a view into y: one of them takes the buffer, the others are copies of it
    x = T.fmatrix("x")
    y = x * 3
    a = np.ones(BIG, "float32")
    fn, (res,) = check_native_vs_reference([x], [y, y[1:]], [a])
    assert not np.shares_memory(res[0], res[1])
    f = symcnn.function([x], [y, y[1:], y], mode="native")
    r = f(a)
    r2 = f(a * 2)
    np.testing.assert_array_equal(r[0], np.full(BIG, 3, "float32"))
    np.testing.assert_array_equal(r[1], np.full((BIG[0] - 1, BIG[1]), 3, "float32"))
    assert not np.shares_memory(r[0], r[2]) and not np.shares_memory(r[0], r[1])
    np.testing.assert_array_equal(r2[2], np.full(BIG, 6, "float32"))


def test_an_input_returned_as_an_output_is_not_the_callers_array():
    x = T.fmatrix("x")
    a = np.ones(BIG, "float32")
    out = symcnn.function([x], x, mode="native")(a)
    assert not np.shares_memory(out, a)
    out[0, 0] = 5
    assert a[0, 0] == 1


def test_a_handed_over_buffer_is_freed_with_its_last_view():
    import gc
    import weakref
    x = T.fmatrix("x")
    f = symcnn.function([x], x + 1, mode="native")
    out = f(np.zeros(BIG, "float32"))
    view = out[::2]
    gone = weakref.ref(_owner(out))
    del out
    gc.collect()
    assert gone() is not None, "freed while a view still reads it"
    np.testing.assert_array_equal(view, np.ones((BIG[0] // 2, BIG[1]), "float32"))
    del view
    gc.collect()
    assert gone() is None
