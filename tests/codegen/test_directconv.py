"""The prefetch arithmetic of codegen/microkernels/directconv.py: the kernels' windows of a region,
their lines spread over a loop, and shares of a region (the same functions compute them from ints
here and from IR values in the kernels)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.microkernels.directconv import (PREFETCH_LINE, share_bounds, spread_offset, window_first,
                                             window_lines)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 1 << 22), st.integers(1, 600))
def test_the_windows_of_the_calls_cover_the_region_and_stay_inside(nbytes, ncalls):
    total = -(-nbytes // PREFETCH_LINE)
    lines = window_lines((None, nbytes), ncalls)
    seen = set()
    for j in range(ncalls):
        first = window_first(None, j, nbytes, ncalls)
        assert 0 <= first and first + lines <= total, (j, first, lines, total)
        seen.update(range(first, first + lines))
    assert seen == set(range(total))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.one_of(st.integers(1, 600), st.integers(600, 1 << 20)))
def test_a_loop_asks_for_every_line_of_its_window_and_nothing_past_it(lines, count):
    per = -(-lines // count)
    asked = [spread_offset(None, i, q, lines, count) for i in range(count) for q in range(per)]
    assert all(0 <= at < lines * PREFETCH_LINE for at in asked), (lines, count)
    assert {at // PREFETCH_LINE for at in asked} == set(range(lines)), (lines, count)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1 << 22), st.integers(1, 9))
def test_shares_cut_a_region_into_whole_lines_in_order(nbytes, n):
    at = 0
    for i in range(n):
        first, size = share_bounds(nbytes, i, n)
        assert first == at and size >= 0
        if first + size < nbytes:
            assert (first + size) % PREFETCH_LINE == 0
        at = first + size
    assert at == nbytes
