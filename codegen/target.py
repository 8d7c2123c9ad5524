"""The machine the generated code is for: `symcnn.config.target_cpu` / `target_features` read here.

The front end only holds the two strings; this module turns them into what the kernels need:

    triple, cpu, features      what the LLVM target machine is created with
    vector_bytes               the vector registers the hand-written kernels use (64 AVX-512, 32 AVX/AVX2,
                               16 SSE2 / NEON / anything else)
    loop_vector_bytes          the width LLVM's loop vectoriser picks for the elementwise loops
    fma                        fused multiply-add in hardware (else kernels emit llvm.fmuladd, which
                               becomes a multiply and an add instead of a libm call per lane)
    vector_registers           32 (AVX-512, AArch64) or 16: bounds the kernels' register tiles
    x86                        whether x86-only intrinsics (pause) may be used
    l1d_bytes, l2_bytes        the data caches the kernels' blockings are sized to (this machine's
                               when the code is for this machine's triple, else 32 KB and 1 MB)

target_cpu is "host" (the default: this machine's CPU and features), any CPU name LLVM knows for the
triple (e.g. "haswell", "znver4", "neoverse-v1"), or one of the x86-64 levels "x86-64" (SSE2),
"x86-64-v2" (SSE4.2), "x86-64-v3" (AVX2, FMA), "x86-64-v4" (AVX-512). target_features adds LLVM
feature flags ("+avx2,-avx512f") on top of the CPU's own.

What a CPU name implies is asked of LLVM itself (llvmlite cannot list a CPU's features): a tiny
function is compiled for it and its assembly read (zmm registers mean AVX-512, vfmadd means FMA), and
a tiny loop is vectorised to see the width LLVM's tuning for that CPU prefers. This is done once per
target and costs a few milliseconds.
"""
import os
import re
import tempfile
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

# x86-64 micro-architecture levels (the psABI's), as LLVM feature sets. LLVM 17+ also knows the
# level names as CPUs; the features are passed as well so the meaning does not depend on that.
LEVELS = {
    "x86-64": "+sse,+sse2,+cmov,+cx8,+fxsr,+mmx",
    "x86-64-v2": "+sse,+sse2,+cmov,+cx8,+fxsr,+mmx,+cx16,+popcnt,+sahf,+sse3,+sse4.1,+sse4.2,+ssse3",
    "x86-64-v3": "+sse,+sse2,+cmov,+cx8,+fxsr,+mmx,+cx16,+popcnt,+sahf,+sse3,+sse4.1,+sse4.2,+ssse3,"
                 "+avx,+avx2,+bmi,+bmi2,+f16c,+fma,+lzcnt,+movbe,+xsave",
    "x86-64-v4": "+sse,+sse2,+cmov,+cx8,+fxsr,+mmx,+cx16,+popcnt,+sahf,+sse3,+sse4.1,+sse4.2,+ssse3,"
                 "+avx,+avx2,+bmi,+bmi2,+f16c,+fma,+lzcnt,+movbe,+xsave,"
                 "+avx512f,+avx512bw,+avx512cd,+avx512dq,+avx512vl",
}


@dataclass(frozen=True)
class Target:
    name: str                 # what was asked for: "host", a CPU name or a level
    extra: str                # config.target_features as given
    triple: str
    cpu: str
    features: str
    vector_bytes: int
    loop_vector_bytes: int
    fma: bool
    vector_round: bool        # rint is an instruction (SSE4.1, NEON), not a libm call per lane
    vector_registers: int
    x86: bool
    host: bool                # the code can run in this process
    l1d_bytes: int = 32 * 1024
    l2_bytes: int = 1024 * 1024

    def lanes(self, dtype):
        """Elements of dtype per hand-written kernel vector."""
        import numpy as np
        return max(1, self.vector_bytes // np.dtype(dtype).itemsize)

    @property
    def aarch64(self):
        return self.triple.startswith(("aarch64", "arm64"))

    def describe(self):
        """Equal across processes iff the generated code is: part of every cache key."""
        return (f"{self.triple}|{self.cpu}|{self.features}|{self.vector_bytes}|{self.loop_vector_bytes}|"
                f"{self.fma}|{self.vector_round}|{self.l1d_bytes}|{self.l2_bytes}")

    def machine(self, jit=False, opt=3):
        """A new llvmlite TargetMachine (the caller owns it); opt: LLVM's code generation level."""
        _init()
        t = llvm.Target.from_triple(self.triple)
        return t.create_target_machine(cpu=self.cpu, features=self.features, opt=opt, jit=jit)

    def isa(self):
        """A short name of the vector instruction set the kernels use."""
        if self.x86:
            return {64: "AVX-512", 32: "AVX2" if self.fma else "AVX"}.get(self.vector_bytes, "SSE2")
        if self.aarch64:
            return "NEON"
        return f"{self.vector_bytes * 8}-bit vectors"


_lock = threading.Lock()
_cache = {}
_local = threading.local()
_inited = []


def _init():
    if not _inited:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _inited.append(True)


def current():
    """The target of code compiled now: an override (see `using`) or the config's settings."""
    t = getattr(_local, "override", None)
    if t is not None:
        return t
    from symcnn.config import config
    return resolve(getattr(config, "target_cpu", "host"), getattr(config, "target_features", ""))


class using:
    """`with using(target):` code lowered in this thread is for `target` (e.g. a cross-compile)."""

    def __init__(self, target):
        self.target = target

    def __enter__(self):
        self.prev = getattr(_local, "override", None)
        _local.override = self.target
        return self.target

    def __exit__(self, *exc):
        _local.override = self.prev


def resolve(cpu="host", features="", triple=None):
    """The Target for a CPU name (or "host" / a level), extra features and a triple (default: this
    process's). Raises ValueError naming the setting for a CPU LLVM does not know."""
    cpu = (cpu or "host").strip()
    features = (features or "").strip()
    from .options import options   # (not at the top: the compile helper loads this file alone)
    full_width = options.full_width_loops
    key = (cpu, features, triple, full_width)
    with _lock:
        t = _cache.get(key)
        if t is None:
            t = _cache[key] = _make(cpu, features, triple, full_width)
        return t


def _make(name, extra, triple, full_width_loops=True):
    _init()
    process_triple = llvm.get_process_triple()
    triple = triple or process_triple
    if name == "host":
        if triple != process_triple:
            raise ValueError(f"config.target_cpu: 'host' means this machine ({process_triple}); "
                             f"name a CPU for {triple}")
        cpu, feats = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    elif name in LEVELS:
        if not triple.startswith("x86_64"):
            raise ValueError(f"config.target_cpu: {name!r} is an x86-64 level, not a CPU for {triple}")
        cpu, feats = name, LEVELS[name]
    else:
        cpu, feats = name, ""
    feats = ",".join(f for f in (feats, extra) if f)
    x86 = triple.startswith(("x86_64", "i386", "i686"))
    asm = _probe_asm(name, triple, cpu, feats)
    if x86:
        avx512 = "zmm" in asm
        vbytes = 64 if avx512 else 32 if "ymm" in asm else 16
        fma = "vfmadd" in asm
        rnd = "round" in asm or "rndscale" in asm
    else:
        vbytes, avx512 = 16, False
        fma = rnd = triple.startswith(("aarch64", "arm64"))   # AArch64 always has fmla and frintx
    if x86 and avx512 and full_width_loops:   # (codegen/options.py says why)
        feats = ",".join(f for f in (feats, "-prefer-256-bit") if f)
    loop = _probe_loop_width(triple, cpu, feats)
    # loop vector width: what the vectoriser picked for a plain float loop (scalable SVE vectors or
    # none at all count as 16 bytes: NEON width)
    loop_bytes = min(loop, vbytes) if loop else 16
    regs = 32 if (avx512 or triple.startswith(("aarch64", "arm64"))) else 16
    l1d, l2 = host_caches() if triple == process_triple else (None, None)
    return Target(name=name, extra=extra, triple=triple, cpu=cpu, features=feats, vector_bytes=vbytes,
                  loop_vector_bytes=loop_bytes, fma=fma, vector_round=rnd, vector_registers=regs, x86=x86,
                  host=(triple == process_triple and _runs_here(x86, vbytes, fma, feats, name)),
                  l1d_bytes=l1d or 32 * 1024, l2_bytes=l2 or 1024 * 1024)


# where Linux describes cpu0's caches (one directory per cache: level, type, size such as "48K")
CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def host_caches(root=CACHE_DIR):
    """(L1 data, L2) sizes in bytes of this machine's first CPU, each None where the system does not
    say (not Linux, a container hiding sysfs, an unexpected format)."""
    found = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None, None
    for e in entries:
        if not e.startswith("index"):
            continue
        try:
            with open(os.path.join(root, e, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, e, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, e, "size")) as f:
                size = _cache_size(f.read())
        except (OSError, ValueError):
            continue
        if size and ((level, kind) == (1, "Data") or (level == 2 and kind in ("Unified", "Data"))):
            found.setdefault(level, size)
    return found.get(1), found.get(2)


def _cache_size(text):
    """Bytes of a sysfs cache size ("48K", "2048K", "1M", "32768"); ValueError if it is none of these."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text)
    if m is None:
        raise ValueError(f"cache size {text!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def _runs_here(x86, vbytes, fma, feats, name):
    """Whether code for this target can run on this CPU (its vector ISA is a subset of the host's)."""
    if name == "host":
        return True
    host = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")}
    if x86:
        need = {64: {"avx512f"}, 32: {"avx", "avx2"}}.get(vbytes, {"sse2"})
        if fma:
            need.add("fma")
        need |= {f[1:] for f in feats.split(",") if f.startswith("+") and f[1:] in _ISA_FEATURES}
        return need <= host
    return True


_ISA_FEATURES = {"sse3", "ssse3", "sse4.1", "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                 "avx512dq", "avx512vl", "avx512cd", "f16c", "bmi", "bmi2"}

_PROBE_FMA = """
define void @probe(ptr %p) {
  %a = load <16 x float>, ptr %p
  %s = fadd <16 x float> %a, %a
  %q = getelementptr <16 x float>, ptr %p, i64 1
  store <16 x float> %s, ptr %q
  %r = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %a, <16 x float> %a)
  store <16 x float> %r, ptr %p
  %b = load <4 x float>, ptr %q
  %n = call <4 x float> @llvm.rint.v4f32(<4 x float> %b)
  store <4 x float> %n, ptr %q
  ret void
}
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
declare <4 x float> @llvm.rint.v4f32(<4 x float>)
"""

_PROBE_LOOP = """
define void @probe(ptr noalias %a, ptr noalias %b, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %p = getelementptr float, ptr %a, i64 %i
  %v = load float, ptr %p
  %w = fmul float %v, 3.0
  %q = getelementptr float, ptr %b, i64 %i
  store float %w, ptr %q
  %i1 = add i64 %i, 1
  %c = icmp slt i64 %i1, %n
  br i1 %c, label %loop, label %exit
exit:
  ret void
}
"""


def _machine(triple, cpu, feats, name):
    """A target machine; LLVM only warns on stderr about a CPU it does not know, so that warning is
    captured and turned into an error naming the setting."""
    t = llvm.Target.from_triple(triple)
    with tempfile.TemporaryFile() as err:
        saved = os.dup(2)
        try:
            os.dup2(err.fileno(), 2)
            tm = t.create_target_machine(cpu=cpu, features=feats, opt=2)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        msg = err.read().decode(errors="replace")
    if "is not a recognized processor" in msg:
        raise ValueError(f"config.target_cpu: {name!r} is not a CPU LLVM knows for {triple} "
                         f"(use 'host', an LLVM CPU name such as 'haswell', or one of {sorted(LEVELS)})")
    if "is not a recognized feature" in msg:
        raise ValueError(f"config.target_features: {msg.strip()}")
    return tm


def _probe_asm(name, triple, cpu, feats):
    tm = _machine(triple, cpu, feats, name)
    mod = llvm.parse_assembly(_PROBE_FMA)
    mod.triple, mod.data_layout = triple, str(tm.target_data)
    return tm.emit_assembly(mod)


def _probe_loop_width(triple, cpu, feats):
    tm = llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=feats, opt=2)
    mod = llvm.parse_assembly(_PROBE_LOOP)
    mod.triple, mod.data_layout = triple, str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pto.loop_vectorization = True
    pto.loop_interleaving = False
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    widths = [int(w) for w in re.findall(r"<(\d+) x float>", str(mod))]
    return 4 * max(widths) if widths else 0
