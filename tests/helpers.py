"""Helpers shared by the whole test suite.

Everything compiles through `compile_and_run` / `compile_fn`, which take a
`mode` (default: the reference linker), so a backend can reuse the same checks
by passing its own mode; `check_native_vs_reference` compiles a graph natively and
with the reference linker and compares everything (values, dtypes, shapes, NaN/Inf).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.compile.compare import mismatch
from symcnn.graph.basic import Variable
from symcnn.tensor.type import TensorType, is_float

# Modes every mode-parametrised check runs in; a backend appends its own.
REFERENCE = "reference"
MODES = [REFERENCE]


# -- targets -------------------------------------------------------------------
def _extra_targets():
    """x86-64 levels below the configured target that this machine can also run: the kernel tests
    run for them too (code for a lower level runs on any x86-64 CPU, so these are real executions).
    x86-64-v3 (AVX2, 32-byte vectors) only where the configured target's vectors are wider: on an
    AVX2 host the configured run already takes the 32-byte kernels."""
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    from codegen.target import current
    wider = current().vector_bytes > 32
    return [t for t in ("x86-64", "x86-64-v3") if t != theano.config.target_cpu and (t == "x86-64" or wider)]


# "configured" is config.target_cpu as the run set it (the host unless SYMCNN_FLAGS says otherwise)
EXTRA_TARGETS = _extra_targets()
TARGETS = ["configured"] + EXTRA_TARGETS


def is_extra_target(t):
    """Whether a `target` fixture value is one of the extra levels (tests may run a representative
    subset of their shapes there, to keep the suite's time in check)."""
    return t.name in EXTRA_TARGETS


@pytest.fixture(params=TARGETS)
def target(request, monkeypatch):
    """A test taking this fixture runs once per entry of TARGETS, compiling for that target; the
    value is the codegen Target (import this name into a test module to use it)."""
    if request.param != "configured":
        monkeypatch.setattr(theano.config, "target_cpu", request.param)
    from codegen.target import current
    return current()


# -- data ----------------------------------------------------------------------
def entry_function_ir(ir_text):
    """The text of a module's entry function (symcnn_entry), from its define to its closing brace."""
    body = ir_text[ir_text.index('define i32 @"symcnn_entry"'):]
    return body[:body.index("\n}\n")]


def make_rng(seed=0):
    return np.random.default_rng(seed)


def rand(shape, dtype="float64", rng=None, low=-1.0, high=1.0):
    """Random array: uniform floats in [low, high), integers in [low, high), bools."""
    rng = make_rng() if rng is None else rng
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.asarray(rng.uniform(low, high, size=shape), dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    lo, hi = int(np.floor(low)), int(np.ceil(high))
    if hi <= lo:
        hi = lo + 1
    return rng.integers(lo, hi, size=shape).astype(dtype)


def rand_pos(shape, dtype="float64", rng=None, low=0.5, high=2.0):
    """Random strictly positive floats (for log, sqrt, pow, division)."""
    return rand(shape, dtype, rng, low, high)


def sym_like(value, name=None, static=False):
    """A symbolic input of `value`'s dtype and ndim (static shape unknown unless static=True)."""
    value = np.asarray(value)
    shape = value.shape if static else (None,) * value.ndim
    return TensorType(str(value.dtype), shape=shape)(name)


# -- compiling and running -------------------------------------------------------
def compile_fn(inputs, outputs, mode=None, **kwargs):
    return theano.function(inputs, outputs, mode=mode or REFERENCE, **kwargs)


def compile_and_run(inputs, outputs, values, mode=None, **kwargs):
    """Compile `outputs` from `inputs` and call once with `values`."""
    return compile_fn(inputs, outputs, mode=mode, **kwargs)(*values)


def check_grad(fn, shapes, rng=None, positive=False, low=None, high=None, values=None, **kwargs):
    """verify_grad of `fn` in float64 at random points of the given shapes.

    positive=True draws from [0.5, 2) (for log, sqrt, pow, division)."""
    rng = make_rng(1) if rng is None else rng
    if values is None:
        lo = (0.5 if positive else -1.0) if low is None else low
        hi = (2.0 if positive else 1.0) if high is None else high
        values = [rand(s, "float64", rng, lo, hi) for s in shapes]
    kwargs.setdefault("mode", REFERENCE)  # the symbolic gradient is what is checked here
    theano.verify_grad(fn, values, rng=rng, **kwargs)
    return values


# -- the op contract -------------------------------------------------------------
def _flat_outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def assert_static_type_matches(var, value, what="output"):
    """The runtime `value` has var's dtype and ndim, and agrees with every known static length."""
    value = np.asarray(value)
    assert str(value.dtype) == var.dtype, f"{what}: static dtype {var.dtype}, perform gave {value.dtype}"
    assert value.ndim == var.ndim, f"{what}: static ndim {var.ndim}, perform gave {value.ndim}-d"
    for d, (want, got) in enumerate(zip(var.type.shape, value.shape)):
        assert want is None or want == got, f"{what}: static shape {var.type.shape}, got {value.shape} (dim {d})"


def symbolic_shapes(variables):
    """input_shapes for Op.infer_shape: a tuple of symbolic int64 scalars per variable."""
    return [tuple(T.shape(v)[i] for i in range(v.ndim)) for v in variables]


def _as_int64(s):
    if isinstance(s, Variable):
        return T.cast(s, "int64") if s.dtype != "int64" else s
    return T.constant(np.asarray(int(s), dtype="int64"))


def inferred_shapes(node, inputs, values, mode=None):
    """Compile node.op.infer_shape(node, symbolic input shapes) and evaluate it.

    `inputs` are the graph's root inputs and `values` their runtime values."""
    shapes = node.op.infer_shape(node, symbolic_shapes(node.inputs))
    assert len(shapes) == len(node.outputs), "infer_shape must give one shape per output"
    flat, layout = [], []
    for shp, out in zip(shapes, node.outputs):
        shp = tuple(shp)
        assert len(shp) == out.ndim, f"infer_shape gave {len(shp)} dims for {out.ndim}-d {out}"
        layout.append(len(shp))
        flat += [_as_int64(s) for s in shp]
    got = compile_fn(inputs, flat, mode=mode, on_unused_input="ignore")(*values) if flat else []
    res, k = [], 0
    for n in layout:
        res.append(tuple(int(v) for v in got[k:k + n]))
        k += n
    return res


def assert_op_contract(op_builder, inputs, check_infer_shape=True, mode=None, static=False):
    """Build `op_builder(*symbolic inputs)` (its output's owner is the node under test), run it
    on the numpy `inputs`, and check make_node's static dtype/ndim/shape against perform's
    result and infer_shape against the actual shapes. Returns the output values (a list)."""
    inputs = [np.asarray(v) for v in inputs]
    sym = [sym_like(v, f"in{i}", static=static) for i, v in enumerate(inputs)]
    outs = _flat_outputs(op_builder(*sym))
    node = outs[0].owner
    assert node is not None, "op_builder must return the output of an op"
    got = compile_fn(sym, list(node.outputs), mode=mode, on_unused_input="ignore")(*inputs)
    for k, (var, val) in enumerate(zip(node.outputs, got)):
        assert isinstance(val, np.ndarray), f"output {k} is {type(val).__name__}, not ndarray"
        assert_static_type_matches(var, val, f"{node.op} output {k}")
    if check_infer_shape:
        shapes = inferred_shapes(node, sym, inputs, mode=mode)
        for k, (shp, val) in enumerate(zip(shapes, got)):
            assert shp == val.shape, f"{node.op}.infer_shape gave {shp} for output {k}, perform gave {val.shape}"
    return got


# -- errors --------------------------------------------------------------------------
def here(offset=0):
    """'file:line' of the caller's line (plus offset), as error messages print it."""
    f = sys._getframe(1)
    return f"{f.f_code.co_filename}:{f.f_lineno + offset}"


def assert_starts_with_location(excinfo, location):
    msg = str(excinfo.value)
    assert msg.startswith(location + ":"), f"message should start with {location!r}:\n{msg}"


def assert_close(got, want, rtol=None, atol=None):
    got, want = np.asarray(got), np.asarray(want)
    if rtol is None:
        rtol = 1e-5 if got.dtype == np.float32 else 1e-10
    if atol is None:
        atol = 1e-6 if got.dtype == np.float32 else 1e-12
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


__all__ = ["MODES", "REFERENCE", "rand", "rand_pos", "make_rng", "sym_like", "compile_fn", "compile_and_run",
           "check_grad", "assert_op_contract", "assert_static_type_matches", "symbolic_shapes",
           "inferred_shapes", "here", "assert_starts_with_location", "assert_close", "pytest", "is_float"]


# -- native backend vs reference ---------------------------------------------------

def assert_native_matches(native, ref, rtol, atol, what):
    """`native` matches the reference result `ref` under symcnn.compile.compare's policy (the one
    mode='debug' uses): equal dtypes and shapes, NaN/+inf/-inf at the same positions, bools byte
    for byte, integers exactly, floats within atol + rtol * |ref|. `what` starts the message."""
    problem = mismatch(native, ref, rtol, atol)
    assert problem is None, f"{what}: {problem}"


def rewritten(inputs, outputs, mode="native"):
    """What function(inputs, outputs, mode=mode) would lower, without lowering or compiling it:
    an object with the rewritten `fgraph` and the `rewrite_log`, as a compiled function has them
    (for tests that only look at the graph)."""
    from types import SimpleNamespace

    from symcnn.compile.function import _ordered_roots
    from symcnn.compile.mode import backend_for, get_mode, rewrites_for
    from symcnn.compile.shared import SharedVariable
    from symcnn.graph.fg import FunctionGraph
    from symcnn.rewrite import rewrite_graph
    outputs = list(outputs)
    mode = get_mode(mode)
    shared = [v for v in _ordered_roots(outputs) if isinstance(v, SharedVariable) and v not in inputs]
    fgraph = FunctionGraph(list(inputs) + shared, outputs)
    return SimpleNamespace(fgraph=fgraph, rewrite_log=rewrite_graph(fgraph, query=rewrites_for(mode, backend_for(mode))))


def compile_both(inputs, outputs, updates=None, mode="native", **kwargs):
    """(native function, reference function) for the same graph; `mode` may be a
    Mode (e.g. native with some rewrites excluded)."""
    fn_native = theano.function(inputs, outputs, updates=updates, mode=mode, **kwargs)
    fn_ref = theano.function(inputs, outputs, updates=updates, mode="reference", **kwargs)
    return fn_native, fn_ref


def check_native_vs_reference(inputs, outputs, values, rtol=1e-5, atol=1e-6, calls=None, **kwargs):
    """Compile `outputs` from `inputs` natively and with the reference linker, call
    both with `values` (one list of input values; or `calls`, a list of such lists
    for several calls on the same compiled functions) and assert equal dtypes,
    shapes and values (NaN positions and infinities included).

    Returns (native function, list of native results per call)."""
    fn_native, fn_ref = compile_both(inputs, outputs, **kwargs)
    calls = [values] if calls is None else calls
    single = not isinstance(outputs, (list, tuple))
    results = []
    for c, vals in enumerate(calls):
        got = fn_native(*[np.copy(v) if isinstance(v, np.ndarray) else v for v in vals])
        want = fn_ref(*[np.copy(v) if isinstance(v, np.ndarray) else v for v in vals])
        got_l, want_l = ([got], [want]) if single else (got, want)
        assert len(got_l) == len(want_l)
        for k, (g, w) in enumerate(zip(got_l, want_l)):
            assert_native_matches(g, w, rtol, atol, f"call {c}, output {k} ({outputs if single else outputs[k]})")
        results.append(got)
    return fn_native, results


def check_same_error(inputs, outputs, values, exc=ValueError, **kwargs):
    """Both modes raise `exc` for these values; returns (native message, reference message)."""
    fn_native, fn_ref = compile_both(inputs, outputs, **kwargs)
    with pytest.raises(exc) as ref_info:
        fn_ref(*values)
    with pytest.raises(exc) as nat_info:
        fn_native(*values)
    return str(nat_info.value), str(ref_info.value)


# -- random streams ----------------------------------------------------------------

def compare_random_modes(build, calls, rtol=0.0, atol=0.0, mode="native", **kwargs):
    """Random draws in two modes. build() -> (inputs, outputs) must make fresh random streams
    with the same seed each time (the state is a shared variable each function advances), so
    both functions start from the same state. Compiles the graph with `mode` and with the
    reference linker, runs `calls` (argument lists) on each, and compares every call's outputs:
    bit for bit when rtol = atol = 0. Returns (mode's results, reference results)."""
    results = []
    for m in (mode, "reference"):
        inputs, outputs = build()
        fn = theano.function(inputs, outputs, mode=m, **kwargs)
        results.append([fn(*[np.copy(v) for v in vals]) for vals in calls])
    for c, (got, want) in enumerate(zip(*results)):
        got_l, want_l = (got, want) if isinstance(got, list) else ([got], [want])
        for k, (g, w) in enumerate(zip(got_l, want_l)):
            assert_native_matches(g, w, rtol, atol, f"call {c}, output {k}")
    return results


def moments_within(sample, mean, var, mu4, sigmas=5.0, what="sample"):
    """The sample's mean and variance are within `sigmas` standard errors of a distribution's
    mean and variance (mu4: its 4th central moment, which sets the variance's standard error)."""
    x = np.asarray(sample, dtype=np.float64).ravel()
    n = x.size
    m = x.mean()
    v = x.var()
    se_mean = np.sqrt(var / n)
    se_var = np.sqrt((mu4 - var ** 2) / n)
    assert abs(m - mean) <= sigmas * se_mean, f"{what}: mean {m} vs {mean} (+- {sigmas} x {se_mean:.3g})"
    assert abs(v - var) <= sigmas * se_var, f"{what}: variance {v} vs {var} (+- {sigmas} x {se_var:.3g})"


def ks_statistic(sample, cdf):
    """Kolmogorov-Smirnov D = sup |F_n(x) - F(x)| of a sample against a vectorised cdf."""
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def normal_cdf(x):
    from math import erf, sqrt
    return 0.5 * (1.0 + np.frompyfunc(lambda t: erf(t / sqrt(2.0)), 1, 1)(x).astype(np.float64))


# sqrt(n) * D above this has probability 0.001 for a sample of the distribution (Kolmogorov)
KS_CRITICAL_0_001 = 1.95
# -- child processes ----------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code, timeout=180, env=None, check=True):
    """Run Python `code` in a fresh interpreter (cwd and import path: the repository), so a
    crash or a hang fails the test instead of killing pytest. Returns the CompletedProcess;
    with check=True asserts it exited with status 0, showing its output otherwise."""
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    try:
        out = subprocess.run([sys.executable, "-c", code], env=e, cwd=ROOT, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired as t:
        pytest.fail(f"child process hung (no exit within {timeout} s); its output:\n{t.stdout}\n{t.stderr}")
    if check:
        assert out.returncode == 0, f"child exited with status {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def pin_caches(monkeypatch, l1d_bytes=48 * 1024, l2_bytes=2 * 1024 * 1024):
    """Plan the kernels for these cache sizes, whatever this machine's are: for tests that assert a
    blocking sized to the caches (the same on every host). Targets resolved before are forgotten."""
    import codegen.target as targets
    monkeypatch.setattr(targets, "host_caches", lambda root=None: (l1d_bytes, l2_bytes))
    monkeypatch.setattr(targets, "_cache", {})


def allow_more_threads_than_cores(monkeypatch, cores=64):
    """Let config.num_threads exceed this machine's cores (normally capped), so tests can run
    more pool threads than cores."""
    import importlib
    monkeypatch.setattr(importlib.import_module("symcnn.config"), "_default_threads", lambda: cores)


# -- fused convolution epilogues (symcnn/tensor/nnet/convpool.py) -------------------------------

# activations a user writes after a convolution, each as the user writes it
CONV_ACTIVATIONS = {
    "tanh": lambda z: T.tanh(z),
    "sigmoid": lambda z: T.nnet.sigmoid(z),
    "maximum": lambda z: T.maximum(z, 0),
    "relu": lambda z: T.nnet.relu(z),
    "leaky_relu": lambda z: T.nnet.relu(z, 0.1),
    "mul_gt": lambda z: z * (z > 0),
    "switch": lambda z: T.switch(z > 0, z, 0),
    "identity": lambda z: z,
    "scale": lambda z: 0.5 * z,
}


def conv_act_ops(act="tanh", dtype="float32", **kw):
    """(ConvPoolAct, its gradient with gx, its gradient without) for activation `act` (a name of
    CONV_ACTIVATIONS): the ops the rewrite builds for that graph, written by hand. tanh's and
    sigmoid's derivatives read out (as T.grad writes them), the others z. With order='act_pool' the
    derivative's second input is the (unpooled) activation, kept by the forward when read."""
    from symcnn.tensor.nnet.conv_epilogue import program_of
    from symcnn.tensor.nnet.convpool import ConvPoolAct, ConvPoolActGrad
    fn = CONV_ACTIVATIONS[act]
    prog = program_of(fn, dtype)
    if act == "tanh":
        dact = program_of(lambda z, out, g: g * (1 - out * out), dtype, nin=3)
    elif act == "sigmoid":
        dact = program_of(lambda z, out, g: g * out * (1 - out), dtype, nin=3)
    else:
        def dact_fn(z, out, g):
            return theano.grad(None, z, known_grads={fn(z): g})
        dact = program_of(dact_fn, dtype, nin=3)
    from symcnn.tensor.nnet.convpool import kept_for_gradient
    order = kw.get("order", "pool_act") if kw.get("pool", "max") is not None else "pool_act"
    keep_z, keep_act = kept_for_gradient(dact, order)
    fwd = ConvPoolAct(act=prog, keep_z=keep_z, keep_act=keep_act, **kw)
    return fwd, ConvPoolActGrad(act=prog, dact=dact, need_gx=True, **kw), \
        ConvPoolActGrad(act=prog, dact=dact, need_gx=False, **kw)


def _reads_z(prog):
    from symcnn.tensor.nnet.conv_epilogue import reads_input
    return reads_input(prog, 0)


def conv_act_apply(fwd, bwd, x, W, b, g):
    """The outputs of fwd(x, W, b) and of bwd fed by them and the output gradient g, as a list
    (forward outputs first)."""
    fouts = fwd(x, W, *([b] if fwd.has_bias else []))
    fouts = fouts if isinstance(fouts, (list, tuple)) else [fouts]
    named = dict(zip(fwd.output_roles(), fouts))
    roles = {"x": x, "W": W, "b": b, "mask": named.get("mask"), "z": named.get("z"), "out": named["out"],
             "act": named.get("act"), "g0": g}
    grads = bwd(*[roles[r] for r in bwd.input_roles()])
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return list(fouts), list(grads)


def jit_ir_function(nargs, emit):
    """(engine, callable) of a native void function of nargs pointer arguments, its body built by
    emit(ctx, *args) (ctx.module, ctx.b: the module and an IRBuilder in the entry block), optimised
    and compiled for the current target; keep the engine alive while calling."""
    import ctypes

    import llvmlite.binding as llvm
    from llvmlite import ir

    from codegen import irutil as U
    from codegen import jit
    from codegen import target as targets

    class Ctx:
        def __init__(self, module, builder):
            self.module, self.b = module, builder

    mod = ir.Module(name="test_function")
    mod.triple, mod.data_layout = jit.module_header()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [U.PTR] * nargs), name="f")
    b = ir.IRBuilder(fn.append_basic_block())
    emit(Ctx(mod, b), *fn.args)
    b.ret_void()
    ref = llvm.parse_assembly(str(mod))
    ref.verify()
    jit.optimize(ref)
    engine = llvm.create_mcjit_compiler(ref, targets.current().machine(jit=True))
    engine.finalize_object()
    return engine, ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * nargs)(engine.get_function_address("f"))
