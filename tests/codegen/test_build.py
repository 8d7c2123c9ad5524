"""codegen.build: the two phases of compiling a graph (lower_graph, then LoweredGraph.finish)
and the named passes that emit a module."""
import gc

import numpy as np

import symcnn
import symcnn.tensor as T
from codegen import build
from codegen.runtime import NativeRunner

from ..helpers import check_native_vs_reference, entry_function_ir


def _graph():
    x = T.vector("x")
    return symcnn.function([x], T.exp(x) * 3, mode="reference").fgraph


def test_a_lowered_graph_dropped_unfinished_does_not_leave_identical_graphs_waiting(cache_dir):
    fg = _graph()
    owner = build.lower_graph(fg, [])        # a cache miss: this one compiles the key
    waiter = build.lower_graph(fg, [])       # an identical graph waits for it
    assert owner.background and waiter.background and len(build._inflight) == 1
    del owner                                # e.g. an interrupt before function() handed it over
    gc.collect()
    assert not build._inflight
    runner = NativeRunner(fg, [], waiter.finish())   # compiles on its own instead of hanging
    np.testing.assert_allclose(runner([np.ones(2, dtype="float32")])[0], 3 * np.e, rtol=1e-6)


def test_a_cache_hit_has_nothing_left_for_the_background(cache_dir):
    fg = _graph()
    first = build.lower_graph(fg, [])
    first.finish()
    again = build.lower_graph(fg, [])
    assert first.background and not again.background
    assert again.finish()[1].cache_hit


def test_module_emission_is_the_list_of_named_passes(monkeypatch):
    ran = []
    passes = tuple((name, (lambda emit, name: lambda em: (ran.append(name), emit(em)))(emit, name))
                   for name, emit in build.PASSES)
    monkeypatch.setattr(build, "PASSES", passes)
    spec = build.build_module(_graph(), [])
    assert ran == [name for name, _ in passes]
    assert "nodes" in ran and ran[-1] == "loop_metadata" and "symcnn_entry" in spec.ir_text


def test_the_collector_is_paused_while_a_module_is_emitted_and_restored_after(monkeypatch):
    import gc
    seen = []
    passes = build.PASSES + (("probe", lambda em: seen.append(gc.isenabled())),)
    monkeypatch.setattr(build, "PASSES", passes)
    assert gc.isenabled()
    build.build_module(_graph(), [])
    assert seen == [False] and gc.isenabled()
    gc.disable()                        # a program that turned it off keeps it off
    try:
        build.build_module(_graph(), [])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_emitted_module_is_freed_without_the_cyclic_collector(monkeypatch):
    from llvmlite import ir
    kept = []
    passes = build.PASSES + (("keep", lambda em: kept.append(em.module)),)
    monkeypatch.setattr(build, "PASSES", passes)
    x = T.matrix("x")
    fg = symcnn.function([x], T.tanh(x).sum(axis=0) * 2, mode="reference").fgraph
    gc.collect()
    gc.disable()
    try:
        spec = build.build_module(fg, [])
        module, = kept
        del kept[:]
        left = [o for o in gc.get_objects() if isinstance(o, (ir.Instruction, ir.Block, ir.Function))]
    finally:
        gc.enable()
    assert "symcnn_entry" in spec.ir_text and 'br label' in spec.ir_text   # a module with loops was emitted
    assert not left, f"{len(left)} IR objects wait for the cyclic collector"
    assert not vars(module)


def test_nested_and_concurrent_pauses_end_together():
    import gc
    import threading
    inside, leave = threading.Event(), threading.Event()

    def other():
        with build.collector_paused():
            inside.set()
            leave.wait(10)
    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    with build.collector_paused():
        with build.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()           # the other thread's pause still runs
    leave.set()
    t.join()
    assert gc.isenabled()


def _entry_loops(ir_text):
    """[(latch line, the names of the loop's hints)] of every tagged loop of the entry function."""
    import re
    entry = entry_function_ir(ir_text)
    md = dict(re.findall(r"^!(\d+) = (.*)$", ir_text, re.M))
    loops = []
    for line in entry.split("\n"):
        m = re.search(r"!llvm.loop !(\d+)", line)
        if m:
            hints = [md.get(r, "") for r in re.findall(r"!(\d+)", md[m.group(1)]) if r != m.group(1)]
            loops.append((line, [re.search(r'"([^"]+)"', h).group(1) for h in hints]))
    return loops


def _store_heavy_loop_function():
    """A function with a loop storing 9 values per iteration (a weight layout unrolled over 3x3
    taps) and one storing 1 (an elementwise loop)."""
    from llvmlite import ir
    from codegen import irutil as U
    module = ir.Module(name="loops")
    fn = ir.Function(module, ir.FunctionType(U.I32, [U.PTR, U.PTR]), name="symcnn_entry")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    src, dst = fn.args
    with U.for_range(b, 16, name="taps") as i:
        for t in range(9):
            v = b.load(b.gep(src, [b.add(b.mul(i, U.i64(9)), U.i64(t))], source_etype=U.F32), typ=U.F32)
            b.store(v, b.gep(dst, [b.add(b.mul(U.i64(t), U.i64(16)), i)], source_etype=U.F32))
    with U.for_range(b, 144, name="elem") as i:
        v = b.load(b.gep(src, [i], source_etype=U.F32), typ=U.F32)
        b.store(b.fmul(v, ir.Constant(U.F32, 2.0)), b.gep(dst, [i], source_etype=U.F32))
    b.ret(ir.Constant(U.I32, 0))
    return module, fn


def test_entry_loops_storing_to_many_places_are_not_vectorised():
    for limit, expect in ((8, {"taps": True, "elem": False}), (9, {"taps": False, "elem": False}),
                          (None, {"taps": False, "elem": False})):
        module, fn = _store_heavy_loop_function()
        build._tag_scalar_loops(module, fn, unroll=False, vectorize_max_stores=limit)
        loops = _entry_loops(str(module))
        assert len(loops) == 2
        for line, hints in loops:
            name = "taps" if "taps" in line else "elem"
            assert "llvm.loop.unroll.disable" in hints
            assert ("llvm.loop.vectorize.enable" in hints) == expect[name], (limit, name, hints)
    module, fn = _store_heavy_loop_function()
    build._tag_scalar_loops(module, fn, unroll=True, vectorize_max_stores=None)
    assert _entry_loops(str(module)) == []          # nothing to say: no loop ID at all


def test_entry_loops_of_few_iterations_known_when_compiling_are_not_vectorised():
    from llvmlite import ir
    from codegen import irutil as U

    def function():
        module = ir.Module(name="loops")
        fn = ir.Function(module, ir.FunctionType(U.I32, [U.PTR, U.I64]), name="symcnn_entry")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        p, n = fn.args
        for name, stop in (("short", 64), ("long", 4096), ("dynamic", n)):
            with U.for_range(b, stop, name=name) as i:
                q = b.gep(p, [i], source_etype=U.F32)
                b.store(b.fmul(b.load(q, typ=U.F32), ir.Constant(U.F32, 2.0)), q)
        b.ret(ir.Constant(U.I32, 0))
        return module, fn
    for min_trip, expect in ((256, {"short"}), (8192, {"short", "long"}), (None, set())):
        module, fn = function()
        build._tag_scalar_loops(module, fn, unroll=False, vectorize_max_stores=None, vectorize_min_trip=min_trip)
        loops = _entry_loops(str(module))
        assert len(loops) == 3
        tagged = {name for name in ("short", "long", "dynamic") for line, hints in loops
                  if f'"{name}.' in line and "llvm.loop.vectorize.enable" in hints}
        assert tagged == expect, (min_trip, tagged)


def test_a_convolution_keeps_its_results_with_its_weight_layout_loop_outlined(cache_dir, monkeypatch):
    """The 3x3 convolution's per-call weight layout work (in the entry function) is one outlined
    call per filter or a table copy, so no loop of the entry stores to many places and the limit tags
    none; the elementwise loop stays vectorisable, and the results are the reference's with and
    without the limit."""
    from codegen.options import options
    from tests.helpers import check_native_vs_reference, make_rng
    x, w = T.tensor4("x"), T.tensor4("w")
    y = T.tanh(T.nnet.conv2d(x, w, input_shape=(8, 8, 12, 12), filter_shape=(8, 8, 3, 3), border_mode="half"))
    rng = make_rng(3)
    values = [rng.uniform(-1, 1, (8, 8, 12, 12)).astype("float32"), rng.uniform(-1, 1, (8, 8, 3, 3)).astype("float32")]
    monkeypatch.setattr(options, "entry_vectorize_min_trip", None)   # (the rule on trip counts: below)
    for limit in (8, None):
        monkeypatch.setattr(options, "entry_vectorize_max_stores", limit)
        f = symcnn.function([x, w], y * 2 + 1, mode="native")
        hints = [h for _, h in _entry_loops(f.dump_llvm())]
        tagged = sum("llvm.loop.vectorize.enable" in h for h in hints)
        assert tagged == 0
        assert len(hints) >= 2                      # the weight layout loop and the elementwise one
        check_native_vs_reference([x, w], y * 2 + 1, values, rtol=1e-4, atol=1e-5)


def _entry_text(spec):
    return entry_function_ir(spec.ir_text)


def test_buffers_of_static_sizes_grow_in_one_call_at_the_start():
    x = T.matrix("x", shape=(30, 40))
    y = T.tanh(x * 2).sum(axis=0) + T.exp(x).max(axis=0)
    fg = symcnn.function([x], [y, T.grad(y.sum(), x)], mode="reference").fgraph
    entry = _entry_text(build.build_module(fg, []))
    assert entry.count('call i32 @"symcnn_grow_all"') == 1
    assert 'call i64 @"symcnn_grow"' not in entry   # every size is static
    check_native_vs_reference([x], [y, T.grad(y.sum(), x)], [np.linspace(-1, 1, 1200, dtype="float32").reshape(30, 40)])


def test_buffers_of_run_time_sizes_still_grow_where_they_are_taken():
    x = T.matrix("x")
    fg = symcnn.function([x], T.tanh(x * 2).sum(axis=0), mode="reference").fgraph
    assert 'call i64 @"symcnn_grow"' in _entry_text(build.build_module(fg, []))


def test_an_ifelse_branch_takes_its_buffers_only_when_it_runs():
    from symcnn.ifelse import ifelse
    c = T.scalar("c")
    x = T.vector("x", shape=(1000,))
    y = ifelse(T.gt(c, 0), T.exp(x) * 2, x)
    fg = symcnn.function([c, x], y, mode="reference").fgraph
    entry = _entry_text(build.build_module(fg, []))
    # the branch's static buffers are not in the table grown at the start: they grow in the branch
    assert 'call i64 @"symcnn_grow"' in entry
    check_native_vs_reference([c, x], y, [np.float32(1), np.linspace(-1, 1, 1000, dtype="float32")])
    check_native_vs_reference([c, x], y, [np.float32(-1), np.linspace(-1, 1, 1000, dtype="float32")])


def test_a_static_buffer_too_large_names_the_node_that_takes_it():
    import pytest
    x = T.vector("x")
    y = T.alloc(x.sum(), 2 ** 22, 2 ** 22)     # 64 TiB of float32
    f = symcnn.function([x], y[0, :3] + 1)
    with pytest.raises(MemoryError, match="Alloc: out of memory allocating 70368744177664 bytes"):
        f(np.ones(3, dtype="float32"))


def test_a_scan_body_takes_its_static_buffers_from_the_table_grown_at_the_start():
    """Buffers of static sizes inside a scan step (run once per step) are grown once, before the loop."""
    import symcnn as theano
    x = T.matrix("x", shape=(6, 40))
    h0 = T.vector("h0", shape=(40,))
    hs, _ = theano.scan(lambda row, h: T.tanh(row * 2 + h) * T.exp(-h * h), sequences=x, outputs_info=h0)
    out = hs.sum(axis=0)
    fg = symcnn.function([x, h0], out, mode="reference").fgraph
    entry = _entry_text(build.build_module(fg, []))
    # grown where taken: only the states' buffer, sized by the run-time number of steps; the step's
    # static buffers are in the table (taken where they are used, three more grows, in the loop)
    assert entry.count('call i32 @"symcnn_grow_all"') == 1 and entry.count('call i64 @"symcnn_grow"') == 1
    rng = np.random.default_rng(4)
    check_native_vs_reference([x, h0], out, [rng.uniform(-1, 1, (6, 40)).astype("float32"),
                                             rng.uniform(-1, 1, 40).astype("float32")], rtol=1e-5, atol=1e-6)
