"""codegen/target.py: config.target_cpu / target_features, what the kernels read from them, the cache
key, and code for a machine this one is not (AArch64 objects, emitted only)."""
import dataclasses
import os
import platform
import re
import struct
import subprocess
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen import jit
from codegen import target as targets
from codegen.build import emit_object
from symcnn.layers import build_lenet5

X86 = platform.machine().lower() in ("x86_64", "amd64")
needs_x86 = pytest.mark.skipif(not X86, reason="x86-64 levels need an x86-64 host")

AARCH64 = "aarch64-unknown-linux-gnu"


@needs_x86
@pytest.mark.parametrize("level,vbytes,fma,regs", [("x86-64", 16, False, 16), ("x86-64-v2", 16, False, 16),
                                                   ("x86-64-v3", 32, True, 16), ("x86-64-v4", 64, True, 32)])
def test_levels(level, vbytes, fma, regs):
    t = targets.resolve(level)
    assert (t.vector_bytes, t.fma, t.vector_registers, t.x86) == (vbytes, fma, regs, True)
    assert t.lanes("float32") == vbytes // 4 and t.lanes("float64") == vbytes // 8
    # LLVM's own meaning of the level name (no features added) agrees with the table's
    asm = targets._probe_asm(level, t.triple, level, "")
    assert ("zmm" in asm) == (vbytes == 64) and ("vfmadd" in asm) == fma


@needs_x86
def test_level_feature_table_alone_gives_the_level():
    """The LEVELS feature sets on the baseline CPU mean the same vector ISA as LLVM's level names."""
    for level, (zmm, ymm, fma) in {"x86-64": (False, False, False), "x86-64-v2": (False, False, False),
                                   "x86-64-v3": (False, True, True), "x86-64-v4": (True, True, True)}.items():
        asm = targets._probe_asm(level, llvm.get_process_triple(), "x86-64", targets.LEVELS[level])
        assert ("zmm" in asm, "ymm" in asm or "zmm" in asm, "vfmadd" in asm) == (zmm, ymm, fma), level


def test_host_follows_the_cpu_features():
    t = targets.resolve("host")
    feats = llvm.get_host_cpu_features()
    assert t.cpu == llvm.get_host_cpu_name() and t.host
    if X86:
        want = 64 if feats.get("avx512f", False) else 32 if feats.get("avx", False) else 16
        assert t.vector_bytes == want and t.fma == bool(feats.get("fma", False))


def test_named_cpus_and_errors():
    if X86:
        assert targets.resolve("haswell").vector_bytes == 32 and targets.resolve("haswell").fma
        assert targets.resolve("skylake-avx512").vector_bytes == 64
        assert targets.resolve("x86-64", "+avx2,+fma").vector_bytes == 32
    with pytest.raises(ValueError, match="config.target_cpu: 'no-such-cpu' is not a CPU LLVM knows"):
        targets.resolve("no-such-cpu")
    with pytest.raises(ValueError, match="config.target_features"):
        targets.resolve("host", "+no-such-feature")
    with pytest.raises(TypeError, match="config.target_cpu must be a string"):
        symcnn.config.target_cpu = 3


def test_flags_set_the_target():
    env = dict(os.environ, SYMCNN_FLAGS="target_cpu=haswell,target_features=+avx2")
    out = subprocess.run([sys.executable, "-c", "import symcnn; c = symcnn.config; "
                          "print(c.target_cpu, c.target_features)"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["haswell", "+avx2"]


def _dot_function():
    a, b = T.matrix("a"), T.matrix("b")
    return symcnn.function([a, b], T.tanh(T.dot(a, b)), mode="native")


@needs_x86
@pytest.mark.parametrize("level", ["x86-64", "x86-64-v3", "x86-64-v4"])
def test_kernels_use_the_target_width(level, monkeypatch):
    """The GEMM micro-kernel's vectors, its multiply-add and the loop vectoriser's width follow the
    target; the result is right where this machine can run the level (an AVX2 host cannot run
    x86-64-v4: its module is built, not loaded)."""
    from codegen.build import build_module
    t = targets.resolve(level)
    if t.host:
        monkeypatch.setattr(symcnn.config, "target_cpu", level)
        f = _dot_function()
        text = f.dump_llvm()
    else:
        f = _dot_function()
        with targets.using(t):
            text = build_module(f.maker.fgraph, []).ir_text
        monkeypatch.setattr(symcnn.config, "target_cpu", level)
        with pytest.raises(ValueError, match=f"target_cpu='{level}'.*cannot run"):
            _dot_function()
    assert f"<{t.lanes('float32')} x float>" in text
    assert ("llvm.fma.v" in text) == t.fma and ("llvm.fmuladd.v" in text) == (not t.fma)
    wider = [w for w in (4, 8, 16, 32) if w > t.lanes("float32")]
    assert not any(f"<{w} x float>" in text for w in wider)
    if not t.host:
        pytest.skip(f"this CPU cannot run {level} code")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 70)).astype("float32"), rng.standard_normal((70, 45)).astype("float32")
    np.testing.assert_allclose(f(a, b), np.tanh(a @ b), rtol=1e-4, atol=1e-5)


@needs_x86
def test_target_is_in_the_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path))
    keys = {}
    for level in ("x86-64", "x86-64-v3"):
        monkeypatch.setattr(symcnn.config, "target_cpu", level)
        keys[level] = jit.entry_hasher().hexdigest(), jit.cache_key("; empty")
        f = _dot_function()
        f.wait()
        assert not f.runner.cache_hit   # the other level's entry is not this one's
        assert f.runner.module.target.name == level
    assert keys["x86-64"][0] != keys["x86-64-v3"][0] and keys["x86-64"][1] != keys["x86-64-v3"][1]
    g = _dot_function()           # same target (v3) again: a hit
    g.wait()
    assert g.runner.cache_hit


def _lenet_functions():
    rng = np.random.RandomState(0)
    x, y, index = T.matrix("x"), T.ivector("y"), T.lscalar()
    batch = 20
    data_x = symcnn.shared(np.zeros((40, 784), dtype="float32"), borrow=True)
    data_y = symcnn.shared(np.zeros(40, dtype="int32"), borrow=True)
    model = build_lenet5(rng, x, batch)
    cost = model.negative_log_likelihood(y)
    grads = T.grad(cost, model.params)
    givens = {x: data_x[index * batch:(index + 1) * batch], y: data_y[index * batch:(index + 1) * batch]}
    train = symcnn.function([index], cost, updates=[(p, p - 0.1 * g) for p, g in zip(model.params, grads)],
                            givens=givens)
    validate = symcnn.function([index], model.errors(y), givens=givens)
    test = symcnn.function([index], model.errors(y), givens=givens)
    return {"train": train, "validate": validate, "test": test}


_ELF_AARCH64 = 183   # e_machine of an AArch64 ELF object
_ELF_X86_64 = 62


@pytest.fixture(scope="module")
def lenet():
    return _lenet_functions()


@pytest.mark.parametrize("cpu", ["generic", "neoverse-v1"])
def test_lenet_compiles_for_aarch64(lenet, cpu):
    """The LeNet train / validate / test functions (conv-pool kernels, GEMM, thread pool, inline
    math) lower and compile to AArch64 objects: nothing x86-only is emitted for them."""
    t = targets.resolve(cpu, triple=AARCH64)
    assert (t.vector_bytes, t.lanes("float32"), t.x86, t.host) == (16, 4, False, False)
    for name, fn in lenet.items():
        obj = emit_object(fn, t)
        assert obj[:4] == b"\x7fELF" and obj[4] == 2   # 64-bit ELF
        (machine,) = struct.unpack("<H", obj[18:20])
        assert machine == _ELF_AARCH64, (name, machine)
        assert len(obj) > 10_000, name


def test_prefetching_conv_kernels_compile_for_aarch64():
    """A first layer's few-tap kernels and a strided layer's phase kernels, which prefetch what their
    callers touch next (llvm.prefetch: PRFM on AArch64), compile to an AArch64 object."""
    from codegen.build import build_module
    from symcnn.tensor.nnet import conv2d
    rng = np.random.RandomState(0)
    x = T.tensor4("x")
    w1 = symcnn.shared((0.1 * rng.standard_normal((8, 3, 3, 3))).astype("float32"))
    w2 = symcnn.shared((0.1 * rng.standard_normal((8, 8, 3, 3))).astype("float32"))
    h = T.maximum(conv2d(x, w1, input_shape=(4, 3, 16, 16), filter_shape=(8, 3, 3, 3), border_mode="half"), 0)
    out = T.maximum(conv2d(h, w2, input_shape=(4, 8, 16, 16), filter_shape=(8, 8, 3, 3), border_mode="half",
                           subsample=(2, 2)), 0)
    cost = out.sum()
    fn = symcnn.function([x], cost, updates=[(w, w - 0.1 * g) for w, g in zip((w1, w2), T.grad(cost, [w1, w2]))])
    t = targets.resolve("generic", triple=AARCH64)
    with targets.using(t):
        updates = [(fn.maker.fgraph.inputs.index(sv), fn.n_outputs + k) for k, sv in enumerate(fn.update_targets)]
        text = build_module(fn.maker.fgraph, updates).ir_text
    assert re.search(r"symcnn_fewtaps_fwd_\w+_pfw[0-9]+", text) and re.search(r"symcnn_dconv_\w+_pfw[0-9]+r[0-9]+", text)
    assert "llvm.x86" not in text
    obj = emit_object(fn, t)
    assert obj[:4] == b"\x7fELF" and struct.unpack("<H", obj[18:20])[0] == _ELF_AARCH64


def test_aarch64_ir_has_no_x86_intrinsics(lenet):
    from codegen.build import build_module
    t = targets.resolve("generic", triple=AARCH64)
    fn = lenet["train"]
    updates = [(fn.maker.fgraph.inputs.index(sv), fn.n_outputs + k) for k, sv in enumerate(fn.update_targets)]
    with targets.using(t):
        text = build_module(fn.maker.fgraph, updates).ir_text
    assert "llvm.x86" not in text and 'target triple = "aarch64' in text
    assert "llvm.aarch64.hint" in text    # the thread pool's spin-wait hint
    assert "llvm.readcyclecounter" not in text   # (its spin counts polls: the cycle counter may trap)
    assert "<4 x float>" in text and "<16 x float>" not in text and "<8 x float>" not in text


def test_x86_pool_times_its_spin_by_the_time_stamp_counter(lenet):
    from codegen.build import build_module
    fn = lenet["train"]
    updates = [(fn.maker.fgraph.inputs.index(sv), fn.n_outputs + k) for k, sv in enumerate(fn.update_targets)]
    for cpu in ("x86-64", "x86-64-v4"):
        with targets.using(targets.resolve(cpu)):
            text = build_module(fn.maker.fgraph, updates).ir_text
        assert "llvm.readcyclecounter" in text and "llvm.x86.sse2.pause" in text, cpu


def test_code_for_another_machine_is_not_loaded():
    t = targets.resolve("generic", triple=AARCH64)
    with pytest.raises(ValueError, match="cannot run on this machine"):
        jit.CompiledModule("", use_cache=False, target=t, obj=b"\x7fELF")


@needs_x86
def test_helper_process_compiles_for_the_same_target(monkeypatch):
    """Modules compiled in the helper process (while another thread compiles) get the caller's target."""
    monkeypatch.setattr(symcnn.config, "target_cpu", "x86-64-v3")
    x = T.vector("x")
    ir_text = symcnn.function([x], T.tanh(x) * 3, mode="native").dump_llvm()
    worker = jit._worker()
    if worker is None:
        pytest.skip("one core: no helper process")
    t = targets.current()
    got = worker.compile(ir_text, t)
    assert got is not None and got == jit._compile_here(ir_text, t)
    again = jit._worker().compile(ir_text, t)   # (a fresh helper if that one retired)
    assert again is not None and again != jit._compile_here(ir_text, targets.resolve("x86-64"))


def _fake_caches(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return str(root)


@pytest.mark.parametrize("entries,want", [
    ([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "260M")],
     (48 << 10, 2 << 20)),
    ([(1, "Instruction", "64K"), (1, "Data", "32K"), (2, "Unified", "1M")], (32 << 10, 1 << 20)),
    ([(1, "Data", "65536")], (65536, None)),                 # no L2 listed
    ([(1, "Data", "big"), (2, "Unified", "512K")], (None, 512 << 10)),   # an unreadable size
    ([], (None, None)),
])
def test_host_caches_read_from_sysfs(tmp_path, entries, want):
    assert targets.host_caches(_fake_caches(tmp_path, entries)) == want


def test_host_caches_without_sysfs(tmp_path):
    assert targets.host_caches(str(tmp_path / "absent")) == (None, None)


def test_cache_sizes_are_in_the_target_description():
    t = targets.current()
    assert t.l1d_bytes >= 4096 and t.l2_bytes >= t.l1d_bytes
    smaller = dataclasses.replace(t, l1d_bytes=t.l1d_bytes // 2)
    assert smaller.describe() != t.describe()
    foreign = targets.resolve("generic", triple=AARCH64)
    assert (foreign.l1d_bytes, foreign.l2_bytes) == (32 << 10, 1 << 20)   # not this machine's


def test_blockings_follow_the_targets_l1():
    """The strided forward's channel blocks and the Winograd weight gradient's image groups are sized
    to the L1 data cache of the target compiled for."""
    from codegen.microkernels import directconv as D, winograd_grad as WGG
    t = targets.current()
    plans = {}
    for l1 in (32 << 10, 48 << 10, 96 << 10):
        with targets.using(dataclasses.replace(t, l1d_bytes=l1)):
            assert D.l1_image_bytes() == l1 * 5 // 6
            plans[l1] = WGG.GradPlan("float32", 20, 12, 12, 50, 8, 8, (0, 0), True, r=5).Gi
    assert plans[32 << 10] <= plans[48 << 10] <= plans[96 << 10]
    assert plans[32 << 10] < plans[96 << 10]



@pytest.mark.parametrize("triple,cpu", [(AARCH64, "generic"), ("x86_64-unknown-linux-gnu", "x86-64"),
                                        ("x86_64-unknown-linux-gnu", "skylake-avx512")])
def test_opaque_vectors_compile_for_each_target(triple, cpu):
    """irutil.opaque (the phase split's activated rows, kept whole): an empty inline-asm operand in a
    vector register, "w" on AArch64 and "v" on x86, that compiles to each target's object (the
    phase-split tests of test_convpool.py check its values on this host)."""
    from llvmlite import ir
    from codegen import irutil as U
    t = targets.resolve(cpu, triple=triple)
    lanes = t.lanes("float32")
    vt = ir.VectorType(ir.FloatType(), lanes)
    m = ir.Module()
    m.triple = triple
    f = ir.Function(m, ir.FunctionType(ir.VoidType(), [U.PTR, U.PTR]), "copy_through")
    b = ir.IRBuilder(f.append_basic_block())
    with targets.using(t):
        b.store(U.opaque(b, b.load(f.args[0], typ=vt)), f.args[1])
    b.ret_void()
    text = str(m)
    assert re.search(r'asm\s+"", "=' + ("w" if t.aarch64 else "v") + r',0"', text)
    mod = llvm.parse_assembly(text)
    obj = t.machine().emit_object(mod)
    assert obj[:4] == b"\x7fELF"
    assert struct.unpack("<H", obj[18:20])[0] == (_ELF_AARCH64 if t.aarch64 else _ELF_X86_64)
