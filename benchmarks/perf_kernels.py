"""Where a zoo setup's train step spends its cycles, per native function, sampled by Linux perf.

    python benchmarks/perf_kernels.py allconv [--threads 2] [--seconds 10] [--hot symcnn_convpool_bwd2]
    python benchmarks/perf_kernels.py validate:lenet               (the setup's validate step)
    python benchmarks/perf_kernels.py conv:k1:fwd --threads 1     (one op of bench_conv.py)
    python benchmarks/perf_kernels.py layer:1x1-s1-64-64-8x8:valid  (one layer of bench_layers.py)

The profile mode (codegen/profile.py) times whole kernels; this names the native functions inside
them: the micro-kernels (symcnn_dconv_*, symcnn_gemm_ukr_*, ...) and the outlined thread bodies
of each fused op (symcnn_convpool_fwdN / _bwdN: its prologues, copies, phase splits and epilogues).
It runs the step in a child process, writes /tmp/perf-<pid>.map for the JIT-loaded code (each
object file's symbol table, placed by the address of one of its global functions), samples the
child with `perf record` and prints each function's share of the samples. --hot adds, for one
function, its hottest instructions (objdump of the object file), to tell a copy loop from an FMA
loop. Needs `perf` and `objdump` on PATH and permission to sample the child
(kernel.perf_event_paranoid <= 1, or root).
"""
import argparse
import collections
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def elf_symbols(data):
    """[(name, section index, value, size, is_global, is_function)] of an ELF64 little-endian object."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for _, typ, _, _, off, size, link, _, _, entsize in secs:
        if typ != 2:   # SHT_SYMTAB
            continue
        stroff = secs[link][4]
        for k in range(size // entsize):
            st_name, st_info, _, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, off + k * entsize)
            name = data[stroff + st_name:data.index(b"\0", stroff + st_name)].decode()
            out.append((name, st_shndx, st_value, st_size, st_info >> 4 == 1, st_info & 0xF == 2))
    return out


def _child(args):
    """Compile the setup, write the perf map and the object files, signal, then run steps."""
    sys.path.insert(0, HERE)
    import codegen.jit as jit
    loaded = []
    load = jit._load

    def keep(obj, target):
        engine = load(obj, target)
        loaded.append((engine, [obj] if isinstance(obj, (bytes, bytearray)) else list(obj)))
        return engine
    jit._load = keep
    if args.setup.startswith("conv:"):   # conv:<bench_conv name>:<fwd|gx|gw>
        import symcnn
        import bench_conv as bc
        symcnn.config.num_threads = args.threads
        _, name, op = args.setup.split(":")
        # a name of the list, or r<i>@<seed>: configuration i of `bench_conv.py --random N --seed <seed>`
        convs = bc.random_convs(int(name.split("@")[0][1:]) + 1, int(name.split("@")[1])) if "@" in name \
            else bc.CONVS
        fn, fargs = bc.symcnn_ops(next(c for c in convs if c[0] == name.split("@")[0]))[("fwd", "gx", "gw").index(op)]

        def train(i):
            fn(*fargs)
    elif args.setup.startswith("layer:"):   # layer:<bench_layers name>:<train|valid>
        import symcnn
        import bench_layers as bl
        symcnn.config.num_threads = args.threads
        _, name, call = args.setup.split(":")
        calls = bl.symcnn_calls(next(l for l in bl.LAYERS if l[0] == name))
        step = calls[("train", "valid").index(call)]

        def train(i):
            step()
    else:   # a zoo setup's train step, or (validate:<setup>) its validate step
        import bench_models as bm
        name = args.setup.split(":")[-1]
        train, validate, _ = bm.symcnn_model(name, args.threads)
        train = validate if args.setup.startswith("validate:") else train
    for i in range(5):
        train(i % 4)
    lines = []
    for i, (engine, objs) in enumerate(loaded):
        for j, obj in enumerate(objs):
            data = bytes(obj)
            with open(os.path.join(args.dir, f"obj_{i}_{j}.o"), "wb") as f:
                f.write(data)
            syms = elf_symbols(data)
            bases = {}
            for name, sh, value, size, glob, func in syms:
                if glob and func and size and sh not in bases:
                    addr = engine.get_function_address(name)
                    if addr:
                        bases[sh] = addr - value
            lines += [f"{bases[sh] + value:x} {size:x} {name}" for name, sh, value, size, _, func in syms
                      if func and size and sh in bases]
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as f:
        f.write("\n".join(lines) + "\n")
    open(os.path.join(args.dir, "ready"), "w").close()
    end = time.time() + args.seconds + 30
    while time.time() < end and not os.path.exists(os.path.join(args.dir, "done")):
        train(0)


def _hot(fn, data, objdir, pid, top):
    """The hottest instructions of native function fn: (samples, share, instruction)."""
    base = None
    with open(f"/tmp/perf-{pid}.map") as f:
        for line in f:
            addr, _, name = line.split()
            if name == fn:
                base = int(addr, 16)
    if base is None:
        return []
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True).stdout
    counts = collections.Counter(int(p[0], 16) - base for p in (ln.split() for ln in script.splitlines())
                                 if len(p) >= 2 and p[1] == fn)
    total = sum(counts.values()) or 1
    for obj in sorted(os.listdir(objdir)):
        if not obj.endswith(".o"):
            continue
        path = os.path.join(objdir, obj)
        with open(path, "rb") as f:
            syms = elf_symbols(f.read())
        value = next((v for n, _, v, size, _, func in syms if n == fn and func and size), None)
        if value is None:
            continue
        dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={fn}", path],
                             capture_output=True, text=True).stdout
        ins = {int(m.group(1), 16) - value: m.group(2).strip()
               for m in (re.match(r"\s+([0-9a-f]+):\s*(.*)", ln) for ln in dis.splitlines()) if m}
        rows = sorted(((c, off) for off, c in counts.items() if off in ins), reverse=True)[:top]
        return [(c, 100 * c / total, f"{off:x}: {ins[off]}") for c, off in rows]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("setup", help="a setup of bench_models.py's zoo (lenet, allconv, ...; validate:lenet for its "
                    "validate step), one op of bench_conv.py's list: conv:<name>:<fwd|gx|gw> (conv:k1:fwd; "
                    "conv:r16@31:gx: configuration r16 of bench_conv.py --random N --seed 31), "
                    "or one layer of bench_layers.py's: layer:<name>:<train|valid>")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hot", action="append", default=[], help="native function to show instructions of")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.dir = args.child
        return _child(args)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SYMCNN_CACHE_DIR=os.path.join(tmp, "cache"))
        child = subprocess.Popen([sys.executable, __file__, args.setup, "--threads", str(args.threads),
                                  "--seconds", str(args.seconds), "--child", tmp], env=env)
        while not os.path.exists(os.path.join(tmp, "ready")):
            if child.poll() is not None:
                sys.exit(f"the step did not start (exit code {child.returncode})")
            time.sleep(0.2)
        data = os.path.join(tmp, "perf.data")
        try:
            subprocess.run(["perf", "record", "-q", "-F", "2000", "-p", str(child.pid), "-o", data, "--",
                            "sleep", str(args.seconds)], check=True, stdout=subprocess.DEVNULL)
        finally:
            open(os.path.join(tmp, "done"), "w").close()
            child.wait()
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
                                capture_output=True, text=True).stdout
        print(f"{args.setup}, {args.threads} threads: share of the samples per function")
        rows = [ln for ln in report.splitlines() if ln.strip() and not ln.startswith("#") and "%" in ln]
        for ln in rows[:args.top]:
            share, _, rest = ln.split(None, 2)   # "9.83%  [.] symcnn_gemm_ukr_float32_6x4x16  -  -"
            print(f"{share:>8}  {rest.split()[0]}")
        for fn in args.hot:
            print(f"\n{fn}: hottest instructions")
            for c, share, text in _hot(fn, data, tmp, child.pid, 15):
                print(f"{c:6d} {share:5.1f}%  {text}")
        try:
            os.remove(f"/tmp/perf-{child.pid}.map")
        except OSError:
            pass


if __name__ == "__main__":
    main()
