"""Winograd's minimal-filtering matrices F(m, r) from interpolation points, by Cook-Toom.

The linear convolution h = g * e of an r-tap g and an m-tap e (n = m + r - 1 coefficients) is
found from its values at n - 1 finite points p_j and at infinity (its leading coefficient):

    h = R [(Vr g) (.) (Vm e)]    Vr, Vm: n x r and n x m Vandermonde rows p_j^i (infinity: x^(r-1))

with R the Lagrange reconstruction: column j the coefficients of N_j(x) = prod_{l != j} (x - p_l)
divided by f_j = N_j(p_j), the infinity column those of M(x) = prod_l (x - p_l). The correlation
y_i = sum_k g_k d_{i+k} (i < m) is this map transposed in e, so

    y = A^T [(G g) (.) (B^T d)]    A^T = Vm^T,  G = Vr / f,  B^T = R f = rows N_j, M

(the 1 / f_j moved into G, where the filters are transformed once in float64; a row of G and of
B^T negated together where f_j < 0 changes nothing but keeps G's rows positive-leading).
The points 0, +-1 give F(2, 3) with the matrices of Lavin & Gray up to the infinity row's sign.
"""
from fractions import Fraction


def _polymul(p, q):
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, c in enumerate(q):
            out[i + j] += a * c
    return out


def matrices(m, r, points):
    """(B^T n x n, G n x r, A^T m x n) as lists of Fractions for F(m, r) with the n - 1 distinct finite
    interpolation points (ints or Fractions) and infinity."""
    n = m + r - 1
    pts = [Fraction(x) for x in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points, got {points}")
    AT = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    G, BT = [], []
    for j, p in enumerate(pts):
        f, N = Fraction(1), [Fraction(1)]
        for l, q in enumerate(pts):
            if l != j:
                f *= p - q
                N = _polymul(N, [-q, Fraction(1)])
        s = 1 if f > 0 else -1
        G.append([s * p ** k / f for k in range(r)])
        BT.append([s * c for c in N] + [Fraction(0)])
    M = [Fraction(1)]
    for q in pts:
        M = _polymul(M, [-q, Fraction(1)])
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    BT.append(M)
    return BT, G, AT
