"""Winograd matrices from interpolation points (codegen/microkernels/cook_toom.py): exact in rational
arithmetic, and the points 0, +-1 give the hand-written F(2x2, 3x3) matrices."""
from fractions import Fraction

import numpy as np
import pytest

from codegen.microkernels import cook_toom, gemm
from codegen.microkernels import winograd as WG


def _correlate(BT, G, AT, g, d):
    """A^T [(G g) (.) (B^T d)] in exact arithmetic."""
    u = [sum(G[j][k] * g[k] for k in range(len(g))) for j in range(len(G))]
    v = [sum(BT[j][i] * d[i] for i in range(len(d))) for j in range(len(BT))]
    return [sum(AT[i][j] * u[j] * v[j] for j in range(len(u))) for i in range(len(AT))]


@pytest.mark.parametrize("m,r,points", [(2, 3, (0, 1, -1)), (4, 3, (0, 1, -1, 2, -2)), (2, 5, WG.POINTS[(2, 5)]),
                                        (2, 5, (0, 1, -1, 2, -2)),
                                        (3, 4, (0, 1, -1, Fraction(1, 2), 3)), (2, 7, (0, 1, -1, 2, -2, 3, -3)),
                                        (4, 5, WG.POINTS[(4, 5)]), (2, 7, WG.POINTS[(2, 7)])])
def test_matrices_compute_the_correlation_exactly(m, r, points):
    BT, G, AT = cook_toom.matrices(m, r, points)
    n = m + r - 1
    assert (len(BT), len(BT[0]), len(G), len(G[0]), len(AT), len(AT[0])) == (n, n, n, r, m, n)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        g = [Fraction(int(x)) for x in rng.integers(-9, 10, r)]
        d = [Fraction(int(x)) for x in rng.integers(-9, 10, n)]
        want = [sum(g[k] * d[i + k] for k in range(r)) for i in range(m)]
        assert _correlate(BT, G, AT, g, d) == want


def test_points_0_1_minus_1_give_the_handwritten_f2x2_3x3():
    """Equal up to the sign of the infinity point's row of B^T and column of A^T (a sign moved
    between the two changes nothing)."""
    BT, G, AT = cook_toom.matrices(2, 3, (0, 1, -1))
    hBT, hG, hAT = WG.MATRICES[2]
    assert BT[:3] == [[Fraction(x) for x in row] for row in hBT[:3]]
    assert BT[3] == [-Fraction(x) for x in hBT[3]]
    assert G == [[Fraction(x) for x in row] for row in hG]
    assert [row[:3] for row in AT] == [[Fraction(x) for x in row[:3]] for row in hAT]
    assert [row[3] for row in AT] == [-Fraction(row[3]) for row in hAT]


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="5 distinct finite points"):
        cook_toom.matrices(2, 5, (0, 1, -1, 2, 1))
    with pytest.raises(ValueError, match="5 distinct finite points"):
        cook_toom.matrices(2, 5, (0, 1, -1))


def test_f2x2_5x5_plan_layout():
    """F(2x2, 5x5): 6x6 tiles, three row loads of a vector of tiles, a buffer with 4 more rows and
    columns than the tile grid covers; the 3x3 plans keep their layout."""
    p = WG.Plan("float32", 20, 50, 8, 8, 2, True, 5)
    assert (p.a, p.loads, p.Hb - 2 * p.tHp, p.Wb - 2 * p.tWp) == (6, 3, 4, 4)
    assert "r5" in p.name
    # a 12x12 output (6x6 tiles on a 6x8 grid): a panel of one image, narrower than the GEMM's where
    # the image has fewer tiles than the GEMM's panel is wide (16-lane targets), else the GEMM's panel
    n = WG.Plan("float32", 50, 20, 12, 12, 2, False, 5)
    lanes, _, nv, *_ = gemm.params("float32")
    if n.Timg < nv * lanes:
        assert n.NR == n.Gi * n.Timg and n.NR % n.L == 0 and n.efficiency(1) == 36 / n.NR
    else:
        assert (n.NR, n.Gi) == (nv * lanes, 1)
    q = WG.Plan("float32", 32, 32, 16, 16, 2, True)
    assert (q.a, q.loads, q.Hb - 2 * q.tHp, q.Wb - 2 * q.tWp, q.r) == (4, 2, 2, 2, 3)
    assert q.name == f"float32_F2_C32_K32_OH16_OW16_{q.tHp}x{q.tWp}_N{q.NR}"
    assert WG.tile_sizes(3) == (4, 2) and WG.tile_sizes(5) == (4, 2) and WG.tile_sizes(7) == (2,)
