"""Inline, branch-free, call-free (no libm) exp / expm1 / log / log1p / tanh / sigmoid / softplus for
float32 and float64.

Every function here emits straight-line LLVM IR on one scalar or one vector (`emit` on a `<L x float>`
value gives the same per-lane results): arithmetic, `select`s, bitcasts and the
`llvm.fma` / `llvm.rint` intrinsics (which the loop vectoriser widens to vfmadd/vrndscale), so a loop
applying them per element is vectorised (e.g. to <16 x float> on AVX-512), unlike a loop calling libm.

Algorithms (all in the argument's own precision; IEEE semantics, no fast-math):

* exp(x): clamp x to [lo, hi] (NaN -> lo), k = rint(x / ln2), r = x - k*ln2 with a Cody-Waite split
  of ln2 (hi part with trailing zero bits, both products fused), |r| <= ln2/2; e^r - 1 = q(r) with the
  Taylor polynomial to degree 7 (float32; truncation 5e-9 relative) / 13 (float64; 4e-18);
  e^x = (1 + q) * 2^k1 * 2^k2 with k1 = k >> 1, k2 = k - k1: both powers are built on the exponent
  bits and are normal numbers, so the first product is exact and the second rounds once — results in
  the subnormal range are gradual (no flush to zero), above ln(max) they overflow to +inf, below
  ln(min_subnormal/2) they are +0.  NaN is returned as is.
* expm1(x) (used by tanh): same reduction; 2^k * (1 + q) - 1 = fma(2^k, q, 2^k - 1) (exact for k = 0).
* log(x): subnormals are scaled by 2^25 / 2^54 first; the exponent k and a mantissa m in
  [sqrt(2)/2, sqrt(2)) come from the bits (musl/fdlibm); f = m - 1, s = f / (2 + f) and the fdlibm
  minimax R(s^2) give log(1 + f) = f - (hfsq - s*(hfsq + R)); log x = k*ln2_hi + (... + k*ln2_lo).
  log(+-0) = -inf, log(<0) = NaN, log(+inf) = +inf, NaN -> NaN.
* tanh(x): e = expm1(-2|x|) in (-1, 0] (|x| clamped to 20 / 40, where tanh is +-1 after rounding),
  tanh|x| = -e / (e + 2) (fdlibm's form for small |x|, exact for subnormal x), then x's sign bit is
  put back, so tanh(+-0) = +-0 and tanh(+-inf) = +-1; NaN -> NaN.
* sigmoid(x): e = exp(-|x|) (never overflows), s = 1 / (1 + e); x >= 0 -> s, x < 0 -> e * s.
* log1p(x): u = 1 + x, log(u) - ((u - 1) - x) / u (first-order correction of the rounding of u).
* expm1(x) on the whole line: as above for x in [-2 tanh_clamp, 80 / 700], exp(x) above, -1 below.
* softplus(x): Theano's bounds (0 below lo, x above hi), else log1p(exp(x)).
* sincos_2pi(u) (float64, u in [0, 1]; the normal draws' Box-Muller angle): exact reduction to the
  quadrant k = rint(4u) and x = (4u - k) pi/2 in [-pi/4, pi/4], then fdlibm's sin/cos kernels.
"""
import math

import numpy as np
from llvmlite import ir

from . import irutil as U
from . import target as targets

# dtypes whose exp/log/tanh/sigmoid are emitted inline (others call libm)
INLINE_DTYPES = {"float32", "float64"}


class _Spec:
    def __init__(self, dtype):
        self.dtype = dtype
        self.ft = U.ll_type(dtype)
        if dtype == "float32":
            self.it, self.mbits, self.bias = U.I32, 23, 127
            self.exp_lo, self.exp_hi = -105.0, 89.0
            self.exp_deg = 7
            self.tanh_clamp = 20.0
            self.sub_scale = 25
        else:
            self.it, self.mbits, self.bias = U.I64, 52, 1023
            self.exp_lo, self.exp_hi = -746.0, 710.0
            self.exp_deg = 13
            self.tanh_clamp = 40.0
            self.sub_scale = 54
        # Cody-Waite split of ln2: hi keeps its top bits only, so k*hi is exact for |k| < 2^12.
        np_f = np.float32 if dtype == "float32" else np.float64
        keep = 12 if dtype == "float32" else 32
        hi = float(np_f(math.log(2)))
        m, e = math.frexp(hi)
        hi = math.ldexp(math.floor(m * 2.0 ** keep) / 2.0 ** keep, e)
        self.ln2_hi = float(np_f(hi))
        # ln2 - hi to full double precision (ln2 as a 2-term double expansion)
        ln2_lo_exact = (0.6931471805599453 - hi) + 2.3190468138462996e-17
        self.ln2_lo = float(np_f(ln2_lo_exact))
        self.log2e = float(np_f(1.0 / math.log(2)))
        # log's split of ln2 (fdlibm's: hi has trailing zero bits, so dk*hi is exact)
        if dtype == "float32":
            self.ln2_hi_log, self.ln2_lo_log = float(np.float32(6.9313812256e-01)), float(np.float32(9.0580006145e-06))
        else:
            self.ln2_hi_log, self.ln2_lo_log = 6.93147180369123816490e-01, 1.90821492927058770002e-10


_SPECS = {}


def _spec(dtype):
    dtype = str(dtype)
    if dtype not in _SPECS:
        _SPECS[dtype] = _Spec(dtype)
    return _SPECS[dtype]


# fdlibm e_log.c minimax coefficients of R(z), z = s^2
_LG = [6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01]


class _E:
    """Tiny emitter bound to a builder, a module and a dtype."""

    def __init__(self, b, module, dtype, lanes=None):
        self.b, self.module, self.s = b, module, _spec(dtype)
        self.dtype = str(dtype)
        self.lanes = lanes
        self.ft = ir.VectorType(self.s.ft, lanes) if lanes else self.s.ft
        self.it = ir.VectorType(self.s.it, lanes) if lanes else self.s.it

    def c(self, v):
        k = ir.Constant(self.s.ft, float(v))
        return ir.Constant(self.ft, [k] * self.lanes) if self.lanes else k

    def ci(self, v):
        k = ir.Constant(self.s.it, int(v))
        return ir.Constant(self.it, [k] * self.lanes) if self.lanes else k

    def _intrinsic(self, name, nargs=1):
        if not self.lanes:
            return U.intrinsic(self.module, name, self.dtype, nargs)
        suffix = f"v{self.lanes}{'f32' if self.dtype == 'float32' else 'f64'}"
        return U.declare(self.module, f"llvm.{name}.{suffix}", self.ft, [self.ft] * nargs)

    def fma(self, a, x, y):
        # llvm.fmuladd where the target has no FMA (x86-64 baseline, v2): llvm.fma would be a libm
        # call per lane there; the reductions below stay exact without fusing (split constants)
        return self.b.call(self._intrinsic("fma" if targets.current().fma else "fmuladd", 3), [a, x, y])

    def rint(self, x):
        """x rounded to the nearest integer (ties to even), for |x| < 2^(mantissa bits - 1)."""
        if targets.current().vector_round:
            return self.b.call(self._intrinsic("rint"), [x])
        # no rounding instruction (x86-64 below SSE4.1): llvm.rint would call libm per lane. Adding
        # and subtracting 1.5 * 2^mbits rounds in the current (nearest-even) mode; the callers'
        # arguments are clamped far inside that range
        magic = self.c(1.5 * 2.0 ** self.s.mbits)
        return self.b.fsub(self.b.fadd(x, magic), magic)

    def bits(self, x):
        return self.b.bitcast(x, self.it)

    def flt(self, i):
        return self.b.bitcast(i, self.ft)

    def pow2(self, k):
        """2^k as a float from an integer k in the normal exponent range."""
        b = self.b
        return self.flt(b.shl(b.add(k, self.ci(self.s.bias)), self.ci(self.s.mbits)))

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def horner(self, x, coeffs):
        """coeffs[0] + x*(coeffs[1] + x*(...)) with fused steps."""
        acc = self.c(coeffs[-1])
        for cf in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(cf))
        return acc

    # -- exp ------------------------------------------------------------------------------------
    def reduce(self, x):
        """(k as integer, r, q = e^r - 1) for x already clamped to [exp_lo, exp_hi] (no NaN)."""
        b, s = self.b, self.s
        kf = self.rint(b.fmul(x, self.c(s.log2e)))
        nk = b.fneg(kf)
        r = self.fma(nk, self.c(s.ln2_hi), x)
        r = self.fma(nk, self.c(s.ln2_lo), r)
        # q = r + r^2 * (1/2 + r/6 + ... + r^(n-2)/n!)
        coeffs = [1.0 / math.factorial(i) for i in range(2, s.exp_deg + 1)]
        p = self.horner(r, coeffs)
        q = self.fma(b.fmul(r, r), p, r)
        return b.fptosi(kf, self.it), r, q

    def clamp(self, x, lo, hi):
        """x clamped to [lo, hi]; NaN becomes lo."""
        b = self.b
        x = b.select(b.fcmp_ordered(">", x, self.c(hi)), self.c(hi), x)
        return b.select(b.fcmp_unordered("<", x, self.c(lo)), self.c(lo), x)

    def exp(self, x):
        b, s = self.b, self.s
        xc = self.clamp(x, s.exp_lo, s.exp_hi)
        k, _, q = self.reduce(xc)
        k1 = b.ashr(k, self.ci(1))
        k2 = b.sub(k, k1)
        y = b.fadd(self.c(1.0), q)
        y = b.fmul(b.fmul(y, self.pow2(k1)), self.pow2(k2))
        return b.select(self.isnan(x), x, y, name="exp")

    def expm1_clamped(self, xc):
        """expm1 for xc in [-(clamp), 0] (no NaN): fma(2^k, q, 2^k - 1)."""
        b = self.b
        k, _, q = self.reduce(xc)
        p = self.pow2(k)
        return self.fma(p, q, b.fsub(p, self.c(1.0)))

    # -- log ------------------------------------------------------------------------------------
    def log(self, x):
        b, s = self.b, self.s
        tiny = float(np.finfo(self.dtype).tiny)
        sub = b.fcmp_ordered("<", x, self.c(tiny))
        xs = b.select(sub, b.fmul(x, self.c(2.0 ** s.sub_scale)), x)
        kadj = b.select(sub, self.ci(-s.sub_scale), self.ci(0))
        if self.dtype == "float32":
            one_bits, sqrt_half_bits = 0x3F800000, 0x3F3504F3
        else:
            one_bits, sqrt_half_bits = 0x3FF0000000000000, 0x3FE6A09E667F3BCD
        ix = b.add(self.bits(xs), self.ci(one_bits - sqrt_half_bits))
        k = b.add(b.sub(b.ashr(ix, self.ci(s.mbits)), self.ci(s.bias)), kadj)
        mbits = b.add(b.and_(ix, self.ci((1 << s.mbits) - 1)), self.ci(sqrt_half_bits))
        f = b.fsub(self.flt(mbits), self.c(1.0))
        sv = b.fdiv(f, b.fadd(self.c(2.0), f))
        z = b.fmul(sv, sv)
        R = b.fmul(z, self.horner(z, _LG))
        hfsq = b.fmul(self.c(0.5), b.fmul(f, f))
        dk = b.sitofp(k, self.ft)
        # dk*ln2_hi - ((hfsq - (s*(hfsq+R) + dk*ln2_lo)) - f)
        inner = self.fma(sv, b.fadd(hfsq, R), b.fmul(dk, self.c(s.ln2_lo_log)))
        res = self.fma(dk, self.c(s.ln2_hi_log), b.fsub(f, b.fsub(hfsq, inner)))
        res = b.select(b.fcmp_ordered("==", x, self.c(0.0)), self.c(-math.inf), res)
        res = b.select(b.fcmp_ordered("<", x, self.c(0.0)), self.c(math.nan), res)
        res = b.select(b.fcmp_ordered("==", x, self.c(math.inf)), x, res)
        return b.select(self.isnan(x), x, res, name="log")

    # -- tanh / sigmoid -------------------------------------------------------------------------
    def fabs(self, x):
        return self.b.call(self._intrinsic("fabs"), [x])

    def tanh(self, x):
        b, s = self.b, self.s
        ax = self.fabs(x)
        y = b.fmul(self.c(-2.0), ax)
        yc = self.clamp(y, -2.0 * s.tanh_clamp, 0.0)
        e = self.expm1_clamped(yc)
        t = b.fdiv(b.fneg(e), b.fadd(e, self.c(2.0)))
        signbit = 1 << (s.it.width - 1)
        sign = b.and_(self.bits(x), self.ci(signbit))
        mag = b.and_(self.bits(t), self.ci(signbit - 1))  # t may be -0 for x = +-0
        t = self.flt(b.or_(mag, sign))
        return b.select(self.isnan(x), x, t, name="tanh")

    def log1p(self, x):
        """log(u) - ((u - 1) - x) / u with u = 1 + x: the correction puts back the rounding
        error of 1 + x to first order, so tiny x give x. At u = 0 (x = -1) or u = +inf the
        correction is 0/0 or inf/inf and is dropped (log u is then -inf / +inf)."""
        b = self.b
        u = b.fadd(self.c(1.0), x)
        lu = self.log(u)
        corr = b.fdiv(b.fsub(b.fsub(u, self.c(1.0)), x), u)
        finite = b.and_(b.fcmp_ordered("!=", u, self.c(0.0)), b.fcmp_ordered("!=", u, self.c(math.inf)))
        res = b.select(finite, b.fsub(lu, corr), lu)
        return b.select(self.isnan(x), x, res, name="log1p")

    def expm1(self, x):
        """expm1 on the whole line: fma(2^k, q, 2^k - 1) on [-(2 tanh_clamp), big], where 2^k is
        a normal number; above `big` exp(x) (the -1 is below half an ulp); below, -1."""
        b, s = self.b, self.s
        big = 80.0 if self.dtype == "float32" else 700.0
        xc = self.clamp(x, -2.0 * s.tanh_clamp, big)
        res = b.select(b.fcmp_ordered(">", x, self.c(big)), self.exp(x), self.expm1_clamped(xc))
        return b.select(self.isnan(x), x, res, name="expm1")

    def softplus(self, x, lo, hi):
        """Theano's softplus: 0 below lo, x above hi, else log1p(exp(x))."""
        b = self.b
        mid = self.log1p(self.exp(x))
        res = b.select(b.fcmp_ordered(">", x, self.c(hi)), x, mid)
        return b.select(b.fcmp_ordered("<", x, self.c(lo)), self.c(0.0), res, name="softplus")

    def sigmoid(self, x):
        b = self.b
        e = self.exp(b.fneg(self.fabs(x)))
        sv = b.fdiv(self.c(1.0), b.fadd(self.c(1.0), e))
        neg = b.fcmp_ordered("<", x, self.c(0.0))
        res = b.select(neg, b.fmul(e, sv), sv)
        return b.select(self.isnan(x), x, res, name="sigmoid")


# fdlibm k_sin.c / k_cos.c coefficients: sin and cos on [-pi/4, pi/4] to within 1 ulp
_SIN = [-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10]
_COS = [4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11]


def sincos_2pi(b, module, u):
    """(cos 2 pi u, sin 2 pi u) for float64 u in [0, 1] (scalar or vector), branch-free: the
    quadrant k = rint(4u) and f = 4u - k are exact, x = f * pi/2 lies in [-pi/4, pi/4], where
    fdlibm's kernels give sin x and cos x; the quadrant then swaps and negates them."""
    e = _E(b, module, "float64", _lanes(u))
    r = b.fmul(u, e.c(4.0))
    k = e.rint(r)
    x = b.fmul(b.fsub(r, k), e.c(math.pi / 2))
    z = b.fmul(x, x)
    sin_x = e.fma(b.fmul(z, x), e.horner(z, _SIN), x)
    hz = b.fmul(e.c(0.5), z)
    w = b.fsub(e.c(1.0), hz)
    cos_x = b.fadd(w, e.fma(b.fmul(z, z), e.horner(z, _COS), b.fsub(b.fsub(e.c(1.0), w), hz)))
    q = b.and_(b.fptosi(k, e.it), e.ci(3))
    odd = b.icmp_unsigned("==", b.and_(q, e.ci(1)), e.ci(1))
    c = b.select(odd, sin_x, cos_x)
    s = b.select(odd, cos_x, sin_x)
    # quadrant 1: (-sin, cos); 2: (-cos, -sin); 3: (sin, -cos)
    neg_c = b.or_(b.icmp_unsigned("==", q, e.ci(1)), b.icmp_unsigned("==", q, e.ci(2)))
    neg_s = b.icmp_unsigned(">=", q, e.ci(2))
    return b.select(neg_c, b.fneg(c), c), b.select(neg_s, b.fneg(s), s)


def _lanes(x):
    return x.type.count if isinstance(x.type, ir.VectorType) else None


def exp(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).exp(x)


def log(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).log(x)


def tanh(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).tanh(x)


def sigmoid(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).sigmoid(x)


def expm1_nonpositive(b, module, x, dtype):
    """expm1 for x <= 0 only (what tanh needs); NaN -> NaN."""
    e = _E(b, module, dtype, _lanes(x))
    xc = e.clamp(x, -2.0 * e.s.tanh_clamp, 0.0)
    return b.select(e.isnan(x), x, e.expm1_clamped(xc))


def expm1(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).expm1(x)


def log1p(b, module, x, dtype):
    return _E(b, module, dtype, _lanes(x)).log1p(x)


def softplus(b, module, x, dtype, lo, hi):
    return _E(b, module, dtype, _lanes(x)).softplus(x, lo, hi)


_FUNCS = {"exp": exp, "log": log, "tanh": tanh, "sigmoid": sigmoid, "expm1": expm1, "log1p": log1p}


def inline_enabled(dtype):
    return str(dtype) in INLINE_DTYPES


def emit(b, module, name, x, dtype):
    """name(x) in `dtype` ('exp', 'log', 'tanh' or 'sigmoid'): inline when enabled for the dtype,
    otherwise a libm call (sigmoid as 1 / (1 + exp(-x)))."""
    dtype = str(dtype)
    if inline_enabled(dtype):
        return _FUNCS[name](b, module, x, dtype)
    if name == "sigmoid":
        one = U.const(dtype, 1.0)
        e = b.call(U.libm(module, "exp", dtype), [b.fneg(x)])
        return b.fdiv(one, b.fadd(one, e))
    return b.call(U.libm(module, name, dtype), [x])
