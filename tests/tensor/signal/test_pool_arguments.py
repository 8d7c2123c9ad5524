"""Pool arguments as Theano 1.0 takes them: symbolic ws/stride/pad (the static-geometry op when
their value is known while building, RuntimePool otherwise), Pool.out_shape."""
import numpy as np
import pytest

import symcnn.tensor as T
from symcnn.tensor.signal.pool import Pool, pool_2d
from symcnn.tensor.signal.pool_runtime import RuntimePool
from tests.helpers import check_native_vs_reference, make_rng, rand


def test_symbolic_window_stride_and_pad_known_when_building():
    x = T.dtensor4("x")
    ws = T.constant(np.array([2, 3]))
    h = T.dtensor4("h", shape=(None, None, 3, None))
    out = pool_2d(x, ws=ws, ignore_border=True, stride=(T.constant(1) + 1, h.shape[2] - 2),
                  pad=T.as_tensor_variable([0, 1]))
    assert out.owner.op == Pool((2, 3), True, (2, 1), (0, 1), "max")
    xv = rand((2, 3, 7, 6), rng=make_rng(1))
    plain = pool_2d(x, ws=(2, 3), ignore_border=True, stride=(2, 1), pad=(0, 1))
    _, (got,) = check_native_vs_reference([x], [out, plain], [xv], rtol=0, atol=0)
    np.testing.assert_array_equal(got[0], got[1])


def test_symbolic_window_known_only_at_run_time():
    # the static-geometry op refuses it clearly; pool_2d builds the op taking it as an input
    x = T.dtensor4("x")
    with pytest.raises(NotImplementedError, match="ws .*run time"):
        Pool((T.lscalar("a"), 2), True)
    with pytest.raises(NotImplementedError, match="stride .*run time"):
        Pool((2, 2), True, stride=T.lvector("s"))
    assert isinstance(pool_2d(x, ws=(T.lscalar("a"), 2), ignore_border=True).owner.op, RuntimePool)
    assert isinstance(pool_2d(x, ws=(2, 2), stride=T.lvector("s"), ignore_border=True).owner.op, RuntimePool)


def test_out_shape():
    for h in range(1, 9):
        for ws, st, ib, pad in [((2, 2), None, True, None), ((3, 2), (2, 1), False, None),
                                ((3, 3), (1, 2), True, (1, 1)), ((2, 3), (3, 3), False, (0, 0))]:
            if pad is not None and not ib:
                continue
            want = pool_2d(T.dtensor4(shape=(1, 2, h, 7)), ws, ignore_border=ib, stride=st,
                           pad=pad or (0, 0)).type.shape
            assert tuple(Pool.out_shape((1, 2, h, 7), ws, ignore_border=ib, stride=st, pad=pad)) == want
    rows = T.lscalar("rows")
    shape = Pool.out_shape((4, 3, rows, 10), ws=(3, 3), ignore_border=False, stride=(2, 2))
    assert shape[:2] == [4, 3] and shape[3] == 5
    assert int(shape[2].eval({rows: np.int64(9)})) == 4
    assert Pool.out_shape((5, 5), ds=(2, 2), ignore_border=True) == [2, 2]
    with pytest.raises(TypeError, match="at least 2"):
        Pool.out_shape((5,), (2, 2))
