"""codegen/vmath.py: inline exp/log/tanh/sigmoid/log1p/expm1, in ulps against numpy over the whole input range.

float32 results are compared with numpy's float64 result rounded to float32; float64 results with
numpy's long double (x87 80-bit) result rounded to float64 when long double is wider than double,
else with numpy's float64 result."""
import ctypes

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

import symcnn.tensor as T
from codegen import irutil as U
from codegen import jit, vmath
from symcnn.tensor import nnet

from codegen import target as targets
from codegen.options import options
from tests.helpers import check_native_vs_reference, target  # noqa: F401 (target: a fixture)

FUNCS = ["exp", "log", "tanh", "sigmoid", "log1p", "expm1"]
DTYPES = ["float32", "float64"]
MAX_ULP = 4


def _module(name, dtype):
    """void f(T *src, T *dst, i64 n): dst[i] = name(src[i])."""
    mod = ir.Module(name=f"vmath_{name}_{dtype}")
    mod.triple, mod.data_layout = jit.module_header()
    ft = U.ll_type(dtype)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [U.PTR, U.PTR, U.I64]), name="f")
    b = ir.IRBuilder(fn.append_basic_block())
    src, dst, n = fn.args
    with U.for_range(b, n) as i:
        v = b.load(b.gep(src, [i], source_etype=ft), typ=ft)
        b.store(vmath.emit(b, mod, name, v, dtype), b.gep(dst, [i], source_etype=ft))
    b.ret_void()
    return mod


_COMPILED = {}


def _run(name, x):
    key = (name, str(x.dtype), targets.current())
    if key not in _COMPILED:
        cm = jit.CompiledModule(str(_module(name, str(x.dtype))), use_cache=False)
        cfn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(cm.address("f"))
        _COMPILED[key] = (cm, cfn)
    cfn = _COMPILED[key][1]
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    cfn(x.ctypes.data, out.ctypes.data, x.size)
    return out


def _reference(name, x):
    if x.dtype == np.float32:
        wide = np.float64
    else:
        wide = np.longdouble if np.finfo(np.longdouble).nmant > 52 else np.float64
    with np.errstate(all="ignore"):
        xw = x.astype(wide)
        if name == "exp":
            r = np.exp(xw)
        elif name == "log":
            r = np.log(xw)
        elif name == "tanh":
            r = np.tanh(xw)
        elif name == "log1p":
            r = np.log1p(xw)
        elif name == "expm1":
            r = np.expm1(xw)
        else:
            e = np.exp(-np.abs(xw))
            r = np.where(xw >= 0, 1 / (1 + e), e / (1 + e))
        return r.astype(x.dtype)


def ulp_distance(a, b):
    """Distance in units in the last place (on the ordered integer line); NaN vs NaN is 0, NaN vs
    a number is inf, +0 vs -0 is 0."""
    it = np.int32 if a.dtype == np.float32 else np.int64
    mask = np.int64(np.iinfo(it).max)

    def ordered(v):
        i = v.view(it).astype(np.int64)
        return np.where(i < 0, -(i & mask), i)

    oa, ob = ordered(a), ordered(b)
    with np.errstate(over="ignore"):
        same = (oa >= 0) == (ob >= 0)
        d = np.where(same, np.abs(oa - ob).astype(np.float64),
                     np.abs(oa.astype(np.float64)) + np.abs(ob.astype(np.float64)))
    na, nb = np.isnan(a), np.isnan(b)
    d = np.where(na & nb, 0.0, d)
    return np.where(na != nb, np.inf, d)


def _inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    parts = [np.linspace(-100, 100, 200_001)]
    # log-uniform magnitudes from the smallest subnormal to the largest finite value, both signs
    lo, hi = np.log(float(fi.smallest_subnormal)), np.log(float(fi.max))
    mags = np.exp(rng.uniform(lo, hi, 100_000))
    parts.append(mags * rng.choice([-1.0, 1.0], mags.size))
    # around the overflow / underflow thresholds of exp and other breakpoints, both signs
    for c in (hi, lo, lo - np.log(2.0), np.log(float(fi.tiny)), 0.0, 0.5, 1.0, 9.0, 20.0, 40.0):
        w = 1e-3 * max(1.0, abs(c))
        sweep = c + np.linspace(-w, w, 4001)
        parts += [sweep, -sweep]
    x = np.concatenate(parts).astype(dtype)
    # random bit patterns (every exponent), subnormals and the special values
    it, ut = (np.int32, np.uint32) if dtype == "float32" else (np.int64, np.uint64)
    nbits = 31 if dtype == "float32" else 63
    rnd = rng.integers(0, 2 ** nbits, 50_000, dtype=np.uint64).astype(ut).view(dtype)
    sub = rng.integers(1, 2 ** fi.nmant, 20_000, dtype=np.int64).astype(it).view(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.tiny, -fi.tiny,
                        fi.smallest_subnormal, -fi.smallest_subnormal, 1.0, -1.0, 2.0, 0.5], dtype=dtype)
    return np.concatenate([x, rnd, -rnd, sub, -sub, special])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_ulp_accuracy(name, dtype, target):
    x = _inputs(dtype, seed=FUNCS.index(name))
    got, want = _run(name, x), _reference(name, x)
    d = ulp_distance(got, want)
    worst = int(np.argmax(d))
    assert d.max() <= MAX_ULP, (f"{name} {dtype}: {d.max()} ulp at x={x[worst]!r}: "
                                f"got {got[worst]!r}, want {want[worst]!r}")


def _bits_equal(got, want):
    got, want = np.asarray(got), np.asarray(want)
    both_nan = np.isnan(got) & np.isnan(want)
    same = got.view(np.uint8).reshape(got.size, -1) == want.view(np.uint8).reshape(want.size, -1)
    return np.all(same.all(axis=1) | both_nan)


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype, target):
    fi = np.finfo(dtype)
    inf, nan, tiny, sub = np.inf, np.nan, float(fi.tiny), float(fi.smallest_subnormal)
    a = lambda *v: np.array(v, dtype=dtype)  # noqa: E731
    cases = {
        "exp": (a(0.0, -0.0, inf, -inf, nan, 1e6, -1e6, float(fi.max), -float(fi.max), sub, -sub),
                a(1.0, 1.0, inf, 0.0, nan, inf, 0.0, inf, 0.0, 1.0, 1.0)),
        "log": (a(0.0, -0.0, -1.0, -sub, inf, -inf, nan, 1.0),
                a(-inf, -inf, nan, nan, inf, nan, nan, 0.0)),
        "tanh": (a(0.0, -0.0, inf, -inf, nan, 100.0, -100.0, float(fi.max), -float(fi.max), sub, -sub, tiny),
                 a(0.0, -0.0, 1.0, -1.0, nan, 1.0, -1.0, 1.0, -1.0, sub, -sub, tiny)),
        "sigmoid": (a(0.0, -0.0, inf, -inf, nan, 1e6, -1e6),
                    a(0.5, 0.5, 1.0, 0.0, nan, 1.0, 0.0)),
    }
    for name, (x, want) in cases.items():
        got = _run(name, x)
        assert _bits_equal(got, want), f"{name} {dtype}: {x} -> {got}, want {want}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_subnormal_and_overflow_edges(dtype):
    fi = np.finfo(dtype)
    lnmax = np.log(np.float64(fi.max))
    # the largest x whose exp is finite, and the next float up
    x = np.array([lnmax], dtype=dtype)
    while not np.isfinite(_reference("exp", x))[0]:
        x = np.nextafter(x, np.array(-np.inf, dtype))
    up = np.nextafter(x, np.array(np.inf, dtype))
    assert np.isfinite(_run("exp", x))[0] and np.isposinf(_run("exp", up))[0]
    # gradual underflow: results in the subnormal range are subnormals, not flushed to zero
    lo = np.log(np.float64(fi.tiny))
    xs = np.linspace(lo - 10, lo - 1, 1001).astype(dtype)
    got = _run("exp", xs)
    assert np.all(got > 0) and np.all(got < fi.tiny)
    assert ulp_distance(got, _reference("exp", xs)).max() <= 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_loop_is_vectorised(name, dtype, target):
    """The optimised loop works on vectors of the width the target's loop vectoriser uses (64 bytes
    with AVX-512, 32 with AVX2, 16 with SSE2) and calls no libm (nor fma/rint emulation)."""
    mod = llvm.parse_assembly(str(_module(name, dtype)))
    jit.optimize(mod)
    text = str(mod)
    for libname in ("exp", "log", "tanh", "fma", "rint"):
        for fn in (libname, libname + "f"):
            assert f"@{fn}(" not in text
    lanes = target.loop_vector_bytes // np.dtype(dtype).itemsize
    assert f"<{lanes} x {'float' if dtype == 'float32' else 'double'}>" in text
    want = {"AVX-512": 64, "AVX2": 32, "SSE2": 16}.get(target.isa())
    if want is not None and (options.full_width_loops or target.isa() != "AVX-512"):
        assert target.loop_vector_bytes == want


@pytest.mark.parametrize("dtype", DTYPES)
def test_elemwise_uses_inline_math(dtype, target):
    x = T.vector("x", dtype=dtype)
    outs = [T.exp(x), T.log(x), T.tanh(x), nnet.sigmoid(x), T.tanh(x * 2 + 1)]
    rng = np.random.RandomState(0)
    v = (rng.randn(97) * 30).astype(dtype)
    v[:8] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40, 89.0, -104.0]
    with np.errstate(all="ignore"):
        fn, _ = check_native_vs_reference([x], outs, [v], rtol=4 * float(np.finfo(dtype).eps), atol=0)
    text = fn.dump_llvm()
    for libname in ("exp", "log", "tanh"):
        for f in (libname, libname + "f"):
            assert f"@{f}(" not in text and f'@"{f}"(' not in text


def _vector_module(name, dtype, lanes):
    """void f(T *src, T *dst, i64 nvec): the same function applied to <lanes x T> vectors."""
    mod = ir.Module(name=f"vmath_vec_{name}_{dtype}")
    mod.triple, mod.data_layout = jit.module_header()
    vt = ir.VectorType(U.ll_type(dtype), lanes)
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [U.PTR, U.PTR, U.I64]), name="f")
    b = ir.IRBuilder(fn.append_basic_block())
    src, dst, n = fn.args
    with U.for_range(b, n) as i:
        v = b.load(b.gep(src, [i], source_etype=vt), typ=vt, align=1)
        b.store(vmath.emit(b, mod, name, v, dtype), b.gep(dst, [i], source_etype=vt), align=1)
    b.ret_void()
    return mod


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_vector_form_equals_scalar_form(name, dtype):
    lanes = 16 if dtype == "float32" else 8
    x = _inputs(dtype, seed=7)
    x = x[:x.size // lanes * lanes]
    cm = jit.CompiledModule(str(_vector_module(name, dtype, lanes)), use_cache=False)
    cfn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(cm.address("f"))
    out = np.empty_like(x)
    cfn(x.ctypes.data, out.ctypes.data, x.size // lanes)
    assert _bits_equal(out, _run(name, x))


# -- sincos_2pi (the Box-Muller angle of the normal draws) ------------------------------

def _sincos_module():
    """void f(double *u, double *cos, double *sin, i64 n)."""
    mod = ir.Module(name="vmath_sincos_2pi")
    mod.triple, mod.data_layout = jit.module_header()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [U.PTR, U.PTR, U.PTR, U.I64]), name="f")
    b = ir.IRBuilder(fn.append_basic_block())
    src, cos_p, sin_p, n = fn.args
    with U.for_range(b, n) as i:
        u = b.load(b.gep(src, [i], source_etype=U.F64), typ=U.F64)
        c, s = vmath.sincos_2pi(b, mod, u)
        b.store(c, b.gep(cos_p, [i], source_etype=U.F64))
        b.store(s, b.gep(sin_p, [i], source_etype=U.F64))
    b.ret_void()
    return mod


def test_sincos_2pi_against_numpy():
    cm = jit.CompiledModule(str(_sincos_module()), use_cache=False)
    f = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64)(cm.address("f"))
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.random(200000), np.arange(0, 4097) / 4096, [2.0 ** -53, 1 - 2.0 ** -53]])
    c, s = np.empty_like(u), np.empty_like(u)
    f(u.ctypes.data, c.ctypes.data, s.ctypes.data, u.size)
    # against the exact angle (long double where it is wider): a few ulps of 1 in absolute terms
    wide = np.longdouble if np.finfo(np.longdouble).nmant > 52 else np.float64
    t = u.astype(wide) * (2 * np.pi if wide is np.float64 else wide(2) * np.arccos(wide(-1)))
    np.testing.assert_allclose(c, np.cos(t).astype(np.float64), rtol=0, atol=4e-16)
    np.testing.assert_allclose(s, np.sin(t).astype(np.float64), rtol=0, atol=4e-16)
    quarter = {0.0: (1, 0), 0.25: (0, 1), 0.5: (-1, 0), 0.75: (0, -1), 1.0: (1, 0)}
    for q, (cq, sq) in quarter.items():
        k = int(np.flatnonzero(u == q)[0])
        assert (c[k], s[k]) == (cq, sq)
    assert np.abs(c * c + s * s - 1).max() < 1e-15
