"""config.check_graph (SYMCNN_FLAGS=check_graph=1): FunctionGraph.check_integrity after every rewrite."""
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.config import Config, config
from symcnn.graph.fg import FunctionGraph, GraphIntegrityError
from symcnn.rewrite import core
from symcnn.tensor.elemwise import Elemwise


def test_the_suite_runs_with_the_check():
    assert config.check_graph is True


@pytest.mark.parametrize("text,value", [("1", True), ("0", False), ("true", True), ("False", False)])
def test_flag_from_the_environment(monkeypatch, text, value):
    monkeypatch.setenv("SYMCNN_FLAGS", f"floatX=float64,check_graph={text}")
    assert Config().check_graph is value


def test_bad_flag_value(monkeypatch):
    monkeypatch.setenv("SYMCNN_FLAGS", "check_graph=maybe")
    with pytest.raises(ValueError, match="check_graph must be 0 or 1"):
        Config()


def _corrupting(fgraph, node):
    """exp(x) -> log(x), forgetting every other reader of x (a broken rewrite)."""
    if "exp" not in str(node.op):
        return None
    x = node.inputs[0]
    fgraph.clients[x] = []
    return [T.log(x)]


@pytest.fixture
def broken_rewrite(monkeypatch):
    core.register_all()   # before the registry is replaced: registrations made inside the test would be lost
    bad = core.Rewrite("corrupt_clients", "canonicalize", _corrupting, (Elemwise,))
    monkeypatch.setattr(core, "_rewrites", core._rewrites + [bad])


def test_a_corrupting_rewrite_is_named(broken_rewrite):
    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x) + x])
    with pytest.raises(GraphIntegrityError, match="rewrite 'corrupt_clients' \\(phase canonicalize\\) left an "
                                                  "inconsistent graph: .* does not list client"):
        core.rewrite_graph(fg)


@pytest.mark.parametrize("flag", [True, False])
def test_checked_after_every_rewrite_only_with_the_flag(monkeypatch, flag):
    monkeypatch.setattr(config, "check_graph", flag)
    calls = []
    real = FunctionGraph.check_integrity
    monkeypatch.setattr(FunctionGraph, "check_integrity", lambda fg: calls.append(1) or real(fg))
    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x) * 1 + 0])
    fired = core.rewrite_graph(fg)
    assert fired
    assert (len(calls) >= len(fired)) if flag else not calls


def test_functions_compile_under_the_check():
    x = T.dvector("x")
    f = symcnn.function([x], T.exp(x).sum() * 1, mode=Mode("reference"))
    assert f([0.0, 0.0]) == 2.0
