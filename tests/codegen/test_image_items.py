"""The work items of a batch that is not a multiple of the threads (conv_threads.image_items):
every image's every block of filters is computed by exactly one item, and even ranges of items give
every thread the same work."""
import ctypes

import numpy as np
import pytest

import symcnn
from codegen import irutil as U
from codegen.kernels.conv_threads import image_items
from codegen.parallel import even_bounds
from tests.helpers import allow_more_threads_than_cores, jit_ir_function


def _items_table(items, fb):
    """[(image, lo, hi, first filter, filters)] of every item, from the emitted IR run natively."""
    def emit(ctx, outp):
        b = ctx.b
        with U.for_range(b, U.i64(items.count), name="i") as i:
            n, (lo, hi), (k0, kc) = items.image_part(b, i, fb)
            for f, v in enumerate((n, lo, hi, k0, kc)):
                b.store(v, b.gep(outp, [b.add(b.mul(i, U.i64(5)), U.i64(f))], source_etype=U.I64))

    engine, fn = jit_ir_function(1, emit)
    out = np.full((items.count, 5), -1, np.int64)
    fn(out.ctypes.data_as(ctypes.c_void_p))
    del engine
    return out


def _even_ranges(count, T):
    """The item ranges parallel.even_bounds gives the T threads, evaluated natively."""
    def emit(ctx, outp):
        b = ctx.b
        for t, v in enumerate(even_bounds(b, U.i64(count), T)):
            b.store(v, b.gep(outp, [U.i64(t)], source_etype=U.I64))

    engine, fn = jit_ir_function(1, emit)
    out = np.zeros(T + 1, np.int64)
    fn(out.ctypes.data_as(ctypes.c_void_p))
    del engine
    return out


@pytest.mark.parametrize("T", [2, 3, 4])
@pytest.mark.parametrize("nb", [2, 3, 5])
def test_items_cover_every_block_once_and_balance_the_threads(T, nb, monkeypatch):
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(symcnn.config, "num_threads", T)
    fb = [(4 * j, min(4 * j + 4, 4 * nb - 2)) for j in range(nb)]   # a short last block
    for B in range(1, 12):
        items = image_items(B, fb)
        if B % T == 0:
            assert items is None
            continue
        if items is None:   # too few blocks to split the images left over evenly
            assert B >= T and T // np.gcd(B % T, T) > nb
            continue
        table = _items_table(items, fb)
        seen = np.zeros((B, nb), int)
        for n, lo, hi, k0, kc in table:
            assert 0 <= n < B and 0 <= lo < hi <= nb, (B, table)
            assert (k0, k0 + kc) == (fb[lo][0], fb[hi - 1][1])
            seen[n, lo:hi] += 1
        assert (seen == 1).all(), (B, T, nb, table)
        work = [sum((hi - lo) / nb for _, lo, hi, _, _ in table[a:e])
                for a, e in zip(_even_ranges(items.count, T)[:-1], _even_ranges(items.count, T)[1:])]
        if B >= T or T // np.gcd(B, T) <= nb:   # S parts of equal blocks where nb is a multiple of S
            whole = B // T + (B % T) / T
            tol = 0 if nb % items.S == 0 else 1 / nb
            assert max(abs(w - whole) for w in work) <= tol + 1e-12, (B, T, nb, work)


def test_a_multiple_of_the_threads_or_one_block_is_not_split(monkeypatch):
    monkeypatch.setattr(symcnn.config, "num_threads", 2)
    assert image_items(8, [(0, 4), (4, 8)]) is None
    assert image_items(7, [(0, 8)]) is None
    assert image_items(7, None) is None
    assert image_items(None, [(0, 4), (4, 8)]) is None
    items = image_items(7, [(0, 4), (4, 8)])
    assert (items.q, items.r, items.S, items.count) == (3, 1, 2, 8)
