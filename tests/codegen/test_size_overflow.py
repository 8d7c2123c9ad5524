"""Sizes computed by native code never wrap int64: a shape whose element count or byte size
overflows raises (ValueError / MemoryError) instead of writing past a small buffer.
Each case runs in a child process, so a crash fails the test instead of killing pytest."""
import textwrap

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

from tests.helpers import run_child

_CHILD = """
import numpy as np, symcnn, symcnn.tensor as T
{body}
print("ok")
"""


def _child(body, **kw):
    out = run_child(_CHILD.format(body=textwrap.dedent(body)), **kw)
    assert out.stdout.split()[-1] == "ok"
    return out


@pytest.mark.parametrize("mode", ["native", "boundscheck"])
def test_reshape_whose_element_count_wraps_int64_raises(mode):
    # (2**62 + 1) * 4 wraps to 4, the size of the input: the size check passed, then SIGSEGV
    _child(f"""
    import pytest
    v, n = T.vector(), T.lscalar()
    f = symcnn.function([v, n], (v.reshape((n, 4)) * 2).sum(axis=1), mode={mode!r})
    with pytest.raises(ValueError, match="cannot reshape"):
        f(np.zeros(4, 'float32'), 2 ** 62 + 1)
    g = symcnn.function([v, n], v.reshape((n, n)) + 1, mode={mode!r})
    with pytest.raises(ValueError, match="cannot reshape"):
        g(np.zeros(0, 'float32'), 2 ** 32)          # 2**64 elements wrap to 0 = the input's size
    with pytest.raises(ValueError, match="cannot reshape"):
        g(np.zeros(0, 'float32'), 2 ** 31 + 1)      # positive product beyond int64 after one more dim
    assert g(np.arange(9, dtype='float32'), 3).shape == (3, 3)
    """)


def test_reshape_with_a_wrapping_known_part_and_minus_one_raises():
    _child("""
    import pytest
    v, n = T.vector(), T.lscalar()
    f = symcnn.function([v, n], v.reshape((-1, n, n)) + 1)
    with pytest.raises(ValueError):
        f(np.zeros(0, 'float32'), 2 ** 32)
    assert f(np.zeros(8, 'float32'), 2).shape == (2, 2, 2)
    """)


@pytest.mark.parametrize("mode", ["native", "boundscheck"])
def test_arange_whose_byte_size_wraps_raises_memory_error(mode):
    # 8 * (2**61 + 1) bytes wraps to 8: the kernel wrote 2**61 elements into one
    _child(f"""
    import pytest
    n = T.lscalar()
    f = symcnn.function([n], T.arange(n), mode={mode!r})
    with pytest.raises(MemoryError, match="does not fit in 64 bits"):
        f(2 ** 61 + 1)
    with pytest.raises(MemoryError):
        f(2 ** 63 - 1)
    assert f(5).tolist() == [0, 1, 2, 3, 4]
    """)


def test_arange_of_extreme_integer_bounds_raises():
    # stop - start overflows int64: the length must not be computed from the wrapped span
    _child("""
    import pytest
    a, b = T.lscalar(), T.lscalar()
    f = symcnn.function([a, b], T.arange(a, b))
    with pytest.raises((ValueError, MemoryError)):
        f(-2 ** 63, 2 ** 63 - 1)
    assert f(-2 ** 63, -2 ** 63 + 2).tolist() == [-2 ** 63, -2 ** 63 + 1]
    with pytest.raises(ValueError):      # numpy, too, cannot compute this span (an empty range)
        f(2 ** 63 - 1, -2 ** 63)
    """)


@pytest.mark.parametrize("stop", [1e19, np.inf, np.nan, -np.inf, -9.3e18])
def test_float_arange_with_a_length_beyond_int64_raises_as_reference(stop):
    a = T.dscalar("a")
    native = symcnn.function([a], T.arange(0., a))
    ref = symcnn.function([a], T.arange(0., a), mode="reference")
    try:
        want = ref(stop)
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            native(stop)
        assert str(e).split("\n")[0].split(": ")[-1] == str(got.value).split("\n")[0].split(": ")[-1]
    else:
        pytest.fail(f"the reference gave {want!r}")
    np.testing.assert_array_equal(native(3.5), [0., 1., 2., 3.])


def test_float_arange_error_without_the_reference_names_the_problem():
    # the message native code gives on its own (the reference normally explains first)
    from codegen.runtime import NativeRunner
    from symcnn.compile.function import function
    a = T.dscalar("a")
    f = function([a], T.arange(0., a))
    runner = f.runner
    with pytest.raises(ValueError):
        f(np.inf)
    with pytest.raises(ValueError, match="fits in int64"):
        NativeRunner._raise(runner, 1)
