"""mode='profile': per-kernel wall-clock profile of a native function, related to the hardware.

In the spirit of Theano's ProfileMode, but for one fused native function: the machine code is the
'native' code (same plan, same rewrites, same kernels) with, around every kernel of `fn.kernels`
(views emit no code and are not timed):

  * two reads of the monotonic clock, calls to libc `clock_gettime(CLOCK_MONOTONIC, &ts)`
    declared in the module (about 20 ns each through the vDSO: negligible against kernels of
    microseconds or more), the difference accumulated into `symcnn_prof[2*i]` (nanoseconds)
    and `symcnn_prof[2*i+1]` (calls), an i64 global array of the module;
  * after the second clock read (so outside the timed region), the run-time dimensions of the
    kernel's operands (node inputs then outputs; for a copy, source then destination) stored
    into `symcnn_prof_dims`, another i64 global: the shapes of the last call.

The entry point and its signature are unchanged; the runner finds both globals by name in the
loaded object (`engine.get_global_value_address`) and reads them with numpy.

The report (`fn.profile()`) computes per kernel, from the op and the last call's shapes:
  FLOPs per call: what the op says, `node.op.flops(input_shapes, output_shapes)` (see Op.flops;
    None counts 0): Dot / FusedDot 2*m*n*k (prologues and epilogue not counted); Conv2d and both
    of its gradients 2*N*K*C*kh*kw*OH*OW; ConvPoolAct the conv it computes, ConvPoolActGrad the
    gW conv plus the gx conv when it computes gx (pooling, bias, activation not counted); Elemwise the
    number of output elements times its scalar ops (the steps of a fused Composite, else 1);
    every other kernel (reductions, softmax, copies, indexing...) 0.
  bytes per call: the sum of the sizes of the node's inputs and outputs at the last call's shapes
    (logical elements x itemsize). An approximation of the traffic: a broadcast or strided view
    counts as its logical size, re-reads from cache and scratch buffers are not counted, an input
    overwritten in place counts twice (read, then written as the output), Shape/Shape_i count
    only their output. The table shows paths relative to the current directory.
The whole-step line: total of the kernels' mean times, total GFLOP per step, achieved GFLOP/s and
its share of the machine ceiling `peak_gflops` (default: derived from the function's target, lanes x
FMA units x 2 x clock x cores, see codegen/ceiling.py; the line says which figure and how it was
obtained).
"""
import ctypes
import os

import numpy as np
from llvmlite import ir

from symcnn.tensor.basic import Shape, Shape_i

from . import irutil as U
from .runtime import NativeRunner

CLOCK_MONOTONIC = 1


# -- IR ----------------------------------------------------------------------------------------

class Profiler:
    """Emits the timers of one build. Kernel i is the i-th entry of build.kernel_list()."""

    def __init__(self, ctx, kernels, plan, updates):
        fgraph = plan.fgraph
        self.ctx, self.kernels = ctx, kernels
        self.index = {}                    # node, ("out", k) or ("upd", input index) -> kernel index
        self.layout = []                   # per kernel: [(dims offset, ndim, dtype)] of its operands
        n_dims = 0
        upd_iter = iter([(inp, outk) for inp, outk in updates
                         if fgraph.outputs[outk] not in plan.inplace_update])
        out_iter = iter(list(plan.output_copy))
        for i, k in enumerate(kernels):
            if k.node is not None:
                self.index[k.node] = i
                vars_ = list(k.node.inputs) + list(k.node.outputs)
            elif k.note.startswith("output"):
                key = ("out", next(out_iter))
                self.index[key] = i
                vars_ = [fgraph.outputs[key[1]]] * 2
            else:
                inp, outk = next(upd_iter)
                self.index[("upd", inp)] = i
                vars_ = [fgraph.outputs[outk], fgraph.inputs[inp]]
            lay = []
            for v in vars_:
                lay.append((n_dims, v.ndim, str(v.dtype)))
                n_dims += v.ndim
            self.layout.append(lay)
        self.n_dims = n_dims
        module = ctx.module
        self.counters = self._global("symcnn_prof", 2 * len(kernels))
        self.dims = self._global("symcnn_prof_dims", n_dims)
        fnty = ir.FunctionType(U.I32, [U.I32, U.PTR])
        self.clock = module.globals.get("clock_gettime") or ir.Function(module, fnty, name="clock_gettime")
        self.ts_type = ir.LiteralStructType([U.I64, U.I64])
        self.ts = ctx.local(self.ts_type)

    def _global(self, name, n):
        ty = ir.ArrayType(U.I64, max(n, 1))
        g = ir.GlobalVariable(self.ctx.module, ty, name=name)
        g.initializer = ir.Constant(ty, None)
        g.align = 64
        return g

    def _now(self):
        """i64 nanoseconds of CLOCK_MONOTONIC."""
        b = self.ctx.b
        b.call(self.clock, [ir.Constant(U.I32, CLOCK_MONOTONIC), self.ts])
        z = ir.Constant(U.I32, 0)
        sec = b.load(b.gep(self.ts, [z, z], source_etype=self.ts_type), typ=U.I64)
        nsec = b.load(b.gep(self.ts, [z, ir.Constant(U.I32, 1)], source_etype=self.ts_type), typ=U.I64)
        return b.add(b.mul(sec, U.i64(1_000_000_000)), nsec)

    def _at(self, g, j):
        b = self.ctx.b
        base = b.inttoptr(b.ptrtoint(g, U.I64), U.PTR)  # (llvmlite keeps globals typed)
        return b.gep(base, [U.i64(j)], source_etype=U.I64)

    def begin(self, key):
        """Start the timer of the kernel of `key` (a node, ("out", k), ("upd", i)); None if none."""
        index = self.index.get(key)
        return None if index is None else (index, self._now())

    def end(self, token, shapes):
        """Stop a timer from begin(); shapes: the run-time shapes of the kernel's operands."""
        if token is None:
            return
        index, t0 = token
        b = self.ctx.b
        dt = b.sub(self._now(), t0)
        for j, inc in ((2 * index, dt), (2 * index + 1, U.i64(1))):
            p = self._at(self.counters, j)
            b.store(b.add(b.load(p, typ=U.I64), inc), p)
        for (off, ndim, _), shape in zip(self.layout[index], shapes):
            assert len(shape) == ndim
            for d, v in enumerate(shape):
                b.store(U.as_value(b, v), self._at(self.dims, off + d))

    def spec(self):
        return {"n_kernels": len(self.kernels), "n_dims": self.n_dims, "layout": self.layout}


# -- the runner ----------------------------------------------------------------------------------

class ProfileRunner(NativeRunner):
    """mode='profile': the native code of mode='native' plus a clock read around every kernel."""

    build_options = {"profile": True}

    def __init__(self, fgraph, updates=(), compiled=None):
        super().__init__(fgraph, updates, compiled)
        p = self.spec.profile
        eng = self.module.engine
        self._prof_counts = _global_array(eng, "symcnn_prof", 2 * max(p["n_kernels"], 1))
        self._prof_dims = _global_array(eng, "symcnn_prof_dims", max(p["n_dims"], 1))

    def profile(self, reset=False, peak_gflops=None):
        """The ProfileReport of the calls so far; reset=True then clears the counters. peak_gflops:
        the ceiling to compare with (default: the target's, codegen.ceiling)."""
        report = make_report(self, peak_gflops)
        if reset:
            self.reset_profile()
        return report

    def reset_profile(self):
        self._prof_counts[:] = 0


def _global_array(engine, name, n):
    addr = engine.get_global_value_address(name)
    if not addr:
        raise RuntimeError(f"profile counters {name!r} not found in the compiled module")
    buf = (ctypes.c_int64 * n).from_address(addr)
    return np.frombuffer(buf, dtype=np.int64, count=n)


# -- FLOPs --------------------------------------------------------------------------------------

def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def kernel_flops(node, in_shapes, out_shapes):
    """FLOPs of one call of `node` at the given operand shapes (see the module docstring)."""
    if node is None:
        return 0
    return node.op.flops(in_shapes, out_shapes) or 0


# -- the report ---------------------------------------------------------------------------------

class ProfileRow:
    __slots__ = ("index", "name", "note", "where", "calls", "total_ms", "mean_ms", "share", "flops",
                 "gflops", "bytes", "gbps", "shapes")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return (f"ProfileRow({self.index}: {self.name}, calls={self.calls}, mean={self.mean_ms:.3f} ms, "
                f"flops={self.flops})")


class ProfileReport:
    """Per-kernel rows in execution order (a list: report.rows, iter(report), report[i]) and the
    whole step: step_ms (sum of the kernels' mean times), step_gflop, gflops, peak_gflops,
    peak_share. str(report) is a table."""

    def __init__(self, rows, peak_gflops, peak_method="given"):
        self.rows = rows
        self.peak_gflops = peak_gflops
        self.peak_method = peak_method      # how peak_gflops was obtained (printed with it)
        self.step_ms = sum(r.mean_ms for r in rows)
        self.total_ms = sum(r.total_ms for r in rows)
        self.step_gflop = sum(r.flops for r in rows) / 1e9
        self.step_bytes = sum(r.bytes for r in rows)
        self.gflops = self.step_gflop / (self.step_ms / 1e3) if self.step_ms > 0 else 0.0
        self.peak_share = self.gflops / peak_gflops if peak_gflops else 0.0
        self.calls = max((r.calls for r in rows), default=0)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def table(self, max_name=48):
        head = ["#", "kernel", "where", "calls", "total ms", "mean ms", "share", "MFLOP/call", "GFLOP/s",
                "MB/call", "GB/s"]
        lines = []
        for r in self.rows:
            name = r.name if len(r.name) <= max_name else r.name[:max_name - 3] + "..."
            where = os.path.relpath(r.where) if r.where and not r.where.startswith("<") else r.where
            lines.append([str(r.index), name, where or "-", str(r.calls), f"{r.total_ms:.3f}",
                          f"{r.mean_ms:.3f}", f"{100 * r.share:.1f}%",
                          f"{r.flops / 1e6:.4g}" if r.flops else "-",
                          f"{r.gflops:.1f}" if r.flops else "-",
                          f"{r.bytes / 1e6:.4g}", f"{r.gbps:.1f}"])
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
        left = {1, 2}

        def fmt(cells):
            return "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |"
        out = [fmt(head), "|" + "|".join(("-" * (w + 2)) for w in widths) + "|"]
        out += [fmt(l) for l in lines]
        out.append(f"step: {self.step_ms:.3f} ms per call ({self.calls} calls, {len(self.rows)} kernels), "
                   f"{self.step_gflop:.3f} GFLOP, {self.gflops:.1f} GFLOP/s = {100 * self.peak_share:.1f}% "
                   f"of the {self.peak_gflops:.0f} GFLOP/s ceiling, {self.step_bytes / 1e6:.1f} MB moved\n"
                   f"ceiling: {self.peak_method}")
        return "\n".join(out)

    __str__ = table

    def __repr__(self):
        return f"<ProfileReport: {len(self.rows)} kernels, {self.step_ms:.3f} ms/step>"


def make_report(runner, peak_gflops=None):
    p = runner.spec.profile
    counts, dims = runner._prof_counts, runner._prof_dims
    kernels = runner.spec.kernels
    rows = []
    for i, k in enumerate(kernels):
        ns, calls = int(counts[2 * i]), int(counts[2 * i + 1])
        shapes, nbytes = [], 0
        shape_only = k.node is not None and isinstance(k.node.op, (Shape, Shape_i))
        for j, (off, ndim, dtype) in enumerate(p["layout"][i]):
            shp = tuple(int(d) for d in dims[off:off + ndim])
            shapes.append(shp)
            if not (shape_only and j < len(k.node.inputs)):  # Shape reads no data of its input
                nbytes += _prod(shp) * np.dtype(dtype).itemsize
        if k.node is not None:
            nin = len(k.node.inputs)
            flops = kernel_flops(k.node, shapes[:nin], shapes[nin:]) if calls else 0
        else:
            flops = 0
        if not calls:
            nbytes = 0
        total_ms = ns / 1e6
        mean_ms = total_ms / calls if calls else 0.0
        mean_s = mean_ms / 1e3
        where = ""
        if k.node is not None and k.node.trace:
            where = k.node.trace.location()
        name = k.name if not k.note else f"{k.name} [{k.note}]"
        rows.append(ProfileRow(index=i, name=name, note=k.note, where=where, calls=calls, total_ms=total_ms,
                               mean_ms=mean_ms, share=0.0, flops=flops,
                               gflops=flops / mean_s / 1e9 if mean_s > 0 else 0.0, bytes=nbytes,
                               gbps=nbytes / mean_s / 1e9 if mean_s > 0 else 0.0, shapes=shapes))
    step = sum(r.mean_ms for r in rows)
    for r in rows:
        r.share = r.mean_ms / step if step > 0 else 0.0
    if peak_gflops is None:
        from .ceiling import ceiling
        c = ceiling(runner.module.target, runner.pool_threads)   # the cores its kernels may use
        return ProfileReport(rows, c.gflops, c.method)
    return ProfileReport(rows, peak_gflops)
