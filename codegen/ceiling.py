"""The float32 ceiling a profile's "share of the ceiling" is measured against, from the target:

    lanes x FMA units x 2 flops x clock x cores

lanes: float32 lanes of the target's vectors (16 AVX-512, 8 AVX2, 4 SSE2 / NEON); FMA units: 2 (the
vector FMA pipes of current x86 cores since Haswell / Zen 2 and of Neoverse cores; 1 on a CPU whose
pipes are half its vectors' width, HALF_WIDTH_PIPES: Zen 1 runs a 256-bit FMA as two 128-bit halves,
measured at 36 GFLOP/s per core at 2.2 GHz, 8 lanes x 1 x 2 flops); a target without
FMA (SSE2, AVX) issues one multiply and one add per cycle instead, which is the same 2 flops per
lane per cycle as one FMA pipe; clock: the highest "cpu MHz" of /proc/cpuinfo (or cpufreq's maximum,
when the kernel exposes it), the figure the report names; cores: the threads the function may use.
It is an estimate, not a measurement: turbo clocks above the reported one, or a CPU with a single
512-bit FMA pipe, make it off by up to 2x; pass `peak_gflops=` to profile() to use your own figure.
"""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ceiling:
    gflops: float
    method: str      # how the figure was obtained, printed beside it

    def __str__(self):
        return f"{self.gflops:.0f} GFLOP/s ({self.method})"


def clock_ghz():
    """(GHz, where the figure comes from) of this machine's cores, or (None, why not)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read().strip()) / 1e6, "cpufreq maximum"
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
        if mhz:
            return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz"
    except (OSError, ValueError, IndexError):
        pass
    return None, "no clock found"


def cores(threads=None):
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        n = os.cpu_count() or 1
    return max(1, min(n, threads or n))


FMA_UNITS = 2
HALF_WIDTH_PIPES = {"znver1", "btver2", "bdver1", "bdver2", "bdver3", "bdver4"}   # LLVM CPU names
DEFAULT_GHZ = 3.0    # when the clock cannot be read (said so in the method)


def ceiling(target, threads=None):
    """The Ceiling of float32 work for code compiled for `target` running on `threads` cores here."""
    lanes = target.lanes("float32")
    units = FMA_UNITS if target.fma and target.cpu not in HALF_WIDTH_PIPES else 1
    flops_per_unit = 2
    ghz, source = clock_ghz()
    if ghz is None:
        ghz, source = DEFAULT_GHZ, f"assumed, {source}"
    n = cores(threads)
    gflops = lanes * units * flops_per_unit * ghz * n
    pipes = (f"{units} FMA unit{'s' if units != 1 else ''} x 2" if target.fma else "1 multiply + 1 add") + (
        f" ({target.cpu}: pipes half the vector width)" if target.cpu in HALF_WIDTH_PIPES else "")
    method = (f"{target.isa()} target: {lanes} float32 lanes x {pipes} x {ghz:.2f} GHz ({source}) "
              f"x {n} core{'s' if n != 1 else ''}")
    return Ceiling(gflops, method)
