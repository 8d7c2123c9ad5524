"""codegen.build: the two phases of compiling a graph (lower_graph, then LoweredGraph.finish)
and the named passes that emit a module."""
import gc

import numpy as np

import symcnn
import symcnn.tensor as T
from codegen import build
from codegen.runtime import NativeRunner


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
