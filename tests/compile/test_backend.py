"""The backend contract: modes found through the symcnn.backends entry points, lower() in the
caller's thread (a rejected graph raises in function()), Lowered.finish() in the background,
a clear error for a mode whose backend is not installed."""
import importlib.metadata
import os
import threading
import tomllib

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile import backend as B
from symcnn.compile.linker import ReferenceRunner
from symcnn.compile.mode import Mode

NATIVE_MODES = {"native", "debug", "nanguard", "boundscheck", "profile"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_entry_points_are_declared_and_resolve_to_backends():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["entry-points"][B.ENTRY_POINT_GROUP]
    assert set(declared) == NATIVE_MODES
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group=B.ENTRY_POINT_GROUP)}
    assert {name: installed[name].value for name in declared} == declared, \
        "installed metadata is stale: reinstall the package (pip install -e .)"
    for name in declared:
        backend = installed[name].load()
        assert isinstance(backend, B.Backend) and backend.name == name
        assert B.backend_named(name) is backend


def test_a_mode_whose_backend_is_not_installed_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(B, "_backends", {"reference": B._backends["reference"]})
    monkeypatch.setattr(B, "_entry_points", dict)
    x = T.vector("x")
    with pytest.raises(ValueError, match="unknown mode 'native'; known modes: reference; no backend is installed"):
        symcnn.function([x], x * 2, mode="native")


def test_a_backend_that_fails_to_load_is_named(monkeypatch):
    ep = importlib.metadata.EntryPoint("native", "no_such_backend_package:native", B.ENTRY_POINT_GROUP)
    monkeypatch.setattr(B, "_backends", {"reference": B._backends["reference"]})
    monkeypatch.setattr(B, "_entry_points", lambda: {"native": ep})
    x = T.vector("x")
    with pytest.raises(ValueError, match="mode 'native' needs the backend 'no_such_backend_package:native'.*"
                                         "failed to load"):
        symcnn.function([x], x * 2, mode="native")


class _Gated(B.Lowered):
    """finish() waits for the test to open the gate, recording its thread."""

    def __init__(self, fgraph, updates, log):
        self.runner = ReferenceRunner(fgraph, updates)
        self.gate, self.log = threading.Event(), log

    def finish(self):
        self.log.append(("finish", threading.current_thread().name))
        assert self.gate.wait(30)
        return self.runner


def _toy_backend(monkeypatch, lower):
    backend = B.Backend("toy", lower, rewrite=False)
    monkeypatch.setitem(B._backends, "toy", backend)
    return backend


def test_lower_runs_in_the_caller_and_finish_in_the_background(monkeypatch):
    log, made = [], []

    def lower(fgraph, updates):
        log.append(("lower", threading.current_thread().name))
        made.append(_Gated(fgraph, updates, log))
        return made[-1]

    _toy_backend(monkeypatch, lower)
    x = T.vector("x")
    f = symcnn.function([x], x * 2, mode="toy")   # returns with finish() still waiting at the gate
    assert log[0] == ("lower", threading.current_thread().name)
    made[0].gate.set()
    np.testing.assert_allclose(f(np.ones(2, dtype="float32")), [2.0, 2.0])
    assert log[1] == ("finish", "symcnn-compile")
    assert f.runner is made[0].runner


def test_a_graph_the_backend_rejects_raises_in_function(monkeypatch):
    def lower(fgraph, updates):
        raise NotImplementedError("toy backend: no lowering for this graph")

    _toy_backend(monkeypatch, lower)
    x = T.vector("x")
    with pytest.raises(NotImplementedError, match="no lowering"):
        symcnn.function([x], x * 2, mode="toy")


def test_a_ready_runner_is_finished_before_function_returns(monkeypatch):
    threads = []

    class Now(B.Ready):
        def finish(self):
            threads.append(threading.current_thread().name)
            return super().finish()

    _toy_backend(monkeypatch, lambda fg, upd: Now(ReferenceRunner(fg, upd)))
    x = T.vector("x")
    f = symcnn.function([x], x + 1, mode="toy")
    assert threads == [threading.current_thread().name] and f._build is None


def test_each_backend_carries_its_rewrite_query(monkeypatch):
    from symcnn.rewrite import RewriteQuery
    _toy_backend(monkeypatch, ReferenceRunner.lower).rewrite = True
    B._backends["toy"].rewrites = RewriteQuery(exclude=("fuse",))
    x = T.vector("x")
    y = T.exp(x) * 2 + 1
    fused = symcnn.function([x], y, mode=Mode("toy", rewrite=True, excluding=()))
    assert fused.rewrite_log and not [r for r in fused.rewrite_log if r.phase == "fuse"]
    plain = symcnn.function([x], y, mode=Mode("native"))
    assert [r for r in plain.rewrite_log if r.phase == "fuse"]
    guarded = symcnn.function([x], y, mode="nanguard")
    assert not [r for r in guarded.rewrite_log if r.phase == "fuse"]
    assert Mode("nanguard").excluding == ()   # the exclusion is the backend's, not the Mode's
