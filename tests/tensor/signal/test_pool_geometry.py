"""pool_geometry.out_len: one formula for Python ints, symbolic scalars (infer_shape, the
run-time-geometry ops) and, through codegen's IRArith, the native kernels (tested in
tests/codegen/test_pool*.py)."""
import itertools

import numpy as np

import symcnn
import symcnn.tensor as T
from symcnn.tensor.signal.pool_geometry import out_len


def ref_out_len(n, ws, st, pad, ignore_border):
    """Theano's Pool.out_shape rule, written out (an empty axis pools to nothing)."""
    if ignore_border:
        return max(0, (n + 2 * pad - ws) // st + 1)
    if n == 0:
        return 0
    if st >= ws:
        return (n - 1) // st + 1
    return max(0, (n - 1 - ws + st) // st) + 1


CASES = [(n, ws, st, pad, ib) for n, ws, st, ib in itertools.product(range(0, 9), (1, 2, 3), (1, 2, 4), (True, False))
         for pad in ((0, 1) if ib else (0,)) if pad < ws]


def test_ints():
    for case in CASES:
        assert out_len(*case) == ref_out_len(*case), case


def test_symbolic_length_and_symbolic_geometry():
    n, ws, st, pad = (T.lscalar() for _ in range(4))
    fns = {ib: (symcnn.function([n], out_len(n, 3, 2, 0, ib)),
                symcnn.function([n, ws, st, pad], out_len(n, ws, st, pad, ib), on_unused_input="ignore"))
           for ib in (True, False)}
    for case in CASES:
        nv, wsv, stv, padv, ib = case
        assert int(fns[ib][1](nv, wsv, stv, padv)) == ref_out_len(*case), case
        assert int(fns[ib][0](nv)) == ref_out_len(nv, 3, 2, 0, ib), case
    assert out_len(None, 2, 2, 0, True) is None
    assert isinstance(out_len(np.int64(5), 2, 2, 0, False), (int, np.integer))
