"""The numpy Philox4x32-10 reference (symcnn/tensor/philox.py) and the draw ops' contract."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor import philox
from symcnn.tensor.raw_random import NormalDraw, UniformDraw

from tests.helpers import assert_op_contract


def _one(*words):
    return [np.array([w], dtype=np.uint32) for w in words]


# Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_known_answers(ctr, key, want):
    got = philox.philox4x32(*_one(*ctr), *key)
    assert tuple(int(w[0]) for w in got) == want


def test_uniform_words_are_in_the_open_interval_and_exact():
    w = _one(0, 0xFFFFFFFF, 0x1FF, 0x200)
    u32 = philox.uniform_words(w, "float32").ravel()
    assert u32.dtype == np.float32
    assert u32[0] == np.float32(2.0 ** -24) and u32[1] == np.float32(1 - 2.0 ** -24)
    assert u32[2] == u32[0] and u32[3] == np.float32(3 * 2.0 ** -24)
    u64 = philox.uniform_words(w, "float64").ravel()
    assert u64.dtype == np.float64 and 0 < u64.min() and u64.max() < 1


def test_advance_carries_into_the_high_word():
    s = np.array([1, 2, 0xFFFFFFFF, 7], dtype=np.uint32)
    assert list(philox.advance(s)) == [1, 2, 0, 8]
    assert list(philox.advance(np.array([1, 2, 0xFFFFFFFF, 0xFFFFFFFF], np.uint32))) == [1, 2, 0, 0]


def test_streams_get_different_keys_and_seeds_matter():
    keys = {philox.stream_key(s, i) for s in (0, 1, 2 ** 40) for i in range(50)}
    assert len(keys) == 150


def test_draw_is_a_prefix_of_a_longer_draw():
    """Element j depends only on (state, j): a shorter draw is the start of a longer one."""
    s = philox.initial_state(5, 0)
    for dtype in ("float32", "float64"):
        for dist in ("uniform", "normal"):
            long = philox.draw(s, 101, dtype, dist)
            for n in (0, 1, 2, 3, 5, 100):
                np.testing.assert_array_equal(philox.draw(s, n, dtype, dist), long[:n])


@pytest.mark.parametrize("op_class", [UniformDraw, NormalDraw])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_draw_op_contract(op_class, dtype):
    state = philox.initial_state(3, 0)
    got = assert_op_contract(lambda s, size: op_class(dtype, 2)(s, size), [state, np.array([4, 3])])
    assert list(got[0]) == list(philox.advance(state))
    assert got[1].shape == (4, 3) and got[1].dtype == dtype


def test_draw_op_rejects_bad_inputs():
    with pytest.raises(TypeError, match="uint32 vector"):
        UniformDraw("float32", 1)(T.fvector("s"), np.array([3]))
    with pytest.raises(TypeError, match="length 2"):
        UniformDraw("float32", 2)(T.vector("s", dtype="uint32"), np.array([3]))
    with pytest.raises(TypeError, match="float32 or float64"):
        UniformDraw("int32", 1)
    with pytest.raises(ValueError, match="negative"):
        UniformDraw("float32", 1)(T.vector("s", dtype="uint32"), np.array([-3]))


def test_draw_op_grad_is_disconnected():
    s = T.vector("s", dtype="uint32")
    u = UniformDraw("float64", 1)(s, np.array([3]))[1]
    w = T.dvector("w")
    g = T.grad(T.sum(u * w), w)  # the sample is a constant with respect to w
    assert g.owner is not None
    node = u.owner
    assert node.op.connection_pattern(node) == [[False, False], [False, False]]
    assert node.op.grad(node.inputs, [None, None]) == [None, None]
