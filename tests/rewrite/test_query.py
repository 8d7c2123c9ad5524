"""Rewrite tags and queries: each rewrite is tagged with its name, its phase and 'fast_run';
a RewriteQuery selects by tag, and an unknown tag is an error."""
import pytest

import symcnn.tensor as T
from symcnn.graph.fg import FunctionGraph
from symcnn.rewrite import PHASES, RewriteQuery, registered, rewrite_graph


def test_every_rewrite_carries_its_name_phase_and_fast_run():
    rewrite_graph(_tiny())   # the rewrite modules register on first use
    for r in registered():
        assert {r.name, r.phase, "fast_run"} <= r.tags and r.phase in PHASES


def _tiny():
    x = T.vector("x")
    return FunctionGraph([x], [-(-x)])


def test_query_selects_by_tag():
    rewrite_graph(_tiny())
    every = RewriteQuery()
    no_fuse = every.excluding("fuse")
    fuse = [r for r in registered() if r.phase == "fuse"]
    assert fuse and all(every.selects(r) and not no_fuse.selects(r) for r in fuse)
    only = RewriteQuery(include=("double_negation",))
    assert [r.name for r in registered() if only.selects(r)] == ["double_negation"]
    assert no_fuse.excluding("fuse") == no_fuse   # excluding twice changes nothing


def test_rewrite_graph_follows_the_query():
    fg = _tiny()
    log = rewrite_graph(fg, query=RewriteQuery(exclude=("double_negation",)))
    assert "double_negation" not in [f.rewrite for f in log]
    fg = _tiny()
    log = rewrite_graph(fg, query=RewriteQuery(include=("double_negation",)))
    assert [f.rewrite for f in log] == ["double_negation"] and fg.outputs[0] is fg.inputs[0]


def test_an_unknown_tag_is_an_error():
    with pytest.raises(ValueError, match="cannot exclude unknown rewrite"):
        rewrite_graph(_tiny(), excluding=["no_such_rewrite"])
    with pytest.raises(ValueError, match="cannot include unknown rewrite"):
        rewrite_graph(_tiny(), query=RewriteQuery(include=("no_such_tag",)))


def test_theano_inplace_tag_is_accepted_and_keeps_results():
    """Theano code excludes 'inplace' to keep its inputs intact: accepted, and the results and the
    inputs are those of the default mode."""
    import numpy as np
    import symcnn
    import symcnn.tensor as T
    from symcnn.compile.mode import Mode

    x = T.vector("x")
    w = symcnn.shared(np.arange(3, dtype="float32"))
    fn = symcnn.function([x], (x * 2).sum(), updates=[(w, w + x)], mode=Mode(excluding=["inplace"]))
    xv = np.ones(3, dtype="float32")
    assert fn(xv) == 6.0
    np.testing.assert_array_equal(w.get_value(), [1, 2, 3])
    np.testing.assert_array_equal(xv, [1, 1, 1])
