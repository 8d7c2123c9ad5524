"""debugprint (of variables and compiled functions), the DOT / networkx exports and pydotprint."""
import io
import shutil
import sys

import networkx as nx
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.printing import debugprint, pydotprint, to_dot, to_networkx


def _graph():
    x = T.fmatrix("x")
    W = theano.shared(np.ones((3, 2), "float32"), name="W")
    y = T.tanh(T.dot(x, W))
    y.name = "hidden"
    return x, W, y


def test_debugprint_variable_to_string():
    x, W, y = _graph()
    text = debugprint(y, file="str")
    lines = text.splitlines()
    assert lines[0].startswith("tanh [id A] 'hidden'")
    assert lines[1].startswith(" |Dot [id B]")
    assert lines[2] == " | |x"
    assert lines[3] == " | |shared W"
    assert len(lines) == 4
    assert text.endswith("\n")


def test_debugprint_types_depth_and_trace():
    x, W, y = _graph()
    typed = debugprint(y, file="str", print_type=True)
    assert "<float32 matrix>" in typed.splitlines()[0]
    assert " | |x <float32 matrix>" in typed
    shallow = debugprint(y, file="str", depth=1)
    assert len(shallow.splitlines()) == 2
    traced = debugprint(y, file="str", print_trace=True)
    assert f"# {__file__}:" in traced.splitlines()[0]


def test_debugprint_shared_subgraph_printed_once():
    x = T.dvector("x")
    e = T.exp(x)
    out = e + e
    lines = debugprint(out, file="str").splitlines()
    assert lines[0].startswith("add [id A]")
    assert lines[1].startswith(" |exp [id B]") and lines[2] == " | |x"
    assert lines[3] == " |exp [id B] ''"
    assert len(lines) == 4


def test_debugprint_function_and_file_and_list():
    x, W, y = _graph()
    f = theano.function([x], [y, y.sum()], mode="reference")
    text = debugprint(f, file="str")
    assert "tanh [id" in text and "Sum{axis=(0, 1)" in text and "Dot" in text
    fused = debugprint(theano.function([x], [y, y.sum()]), file="str")  # native: rewritten, fused nodes
    assert "FusedDot{epilogue=composite{" in fused and "tanh" in fused
    assert text.count("\n") >= 5
    buf = io.StringIO()
    assert debugprint(f, file=buf) is f
    assert buf.getvalue() == text
    assert f.dprint(file="str") == text
    assert y.dprint(file="str") == debugprint(y, file="str")
    both = debugprint([y, x], file="str")
    assert both.splitlines()[-1] == "x"


def test_debugprint_multi_output_index_and_bad_argument():
    from tests.graph.test_op import Split2
    x = T.dvector("x")
    a, b = Split2()(x)
    assert debugprint(b, file="str").splitlines()[0].startswith("Split2.1 [id A]")
    try:
        debugprint(3, file="str")
    except TypeError as e:
        assert "cannot print" in str(e)
    else:
        raise AssertionError("debugprint(3) should raise")


def test_to_networkx_and_dot():
    x, W, y = _graph()
    g = to_networkx(y)
    kinds = nx.get_node_attributes(g, "kind")
    labels = nx.get_node_attributes(g, "label")
    assert sorted(labels[n] for n, k in kinds.items() if k == "apply") == ["Dot", "tanh"]
    assert {labels[n] for n, k in kinds.items() if k == "variable"} >= {"x", "W", "hidden"}
    assert nx.is_directed_acyclic_graph(g)
    dot = to_dot(y)
    assert dot.startswith("digraph symcnn {") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == 2
    assert dot.count("shape=ellipse") == 4  # x, W, Dot's output, hidden
    assert '[label="x", shape=ellipse]' in dot
    assert dot.count("->") == g.number_of_edges() == 5


def test_to_dot_escapes_quotes_and_accepts_functions():
    x = T.dvector('say "hi"')
    dot = to_dot(T.exp(x))
    assert 'label="say \\"hi\\""' in dot
    f = theano.function([x], T.exp(x))
    assert to_dot(f).count("shape=box") == 1


# ----------------------------------------------------------------------------- pydotprint

def test_pydotprint_without_graphviz_writes_dot_and_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    x, W, y = _graph()
    out = tmp_path / "graph.png"
    with pytest.raises(RuntimeError) as e:
        pydotprint(y, outfile=out)
    msg = str(e.value)
    assert "`dot` program is not on PATH" in msg and str(tmp_path / "graph.dot") in msg
    assert "apt-get install graphviz" in msg and f"dot -Tpng {tmp_path / 'graph.dot'} -o {out}" in msg
    assert (tmp_path / "graph.dot").read_text() == to_dot(y) and not out.exists()
    # format='dot' (or a .dot outfile) needs no graphviz
    assert pydotprint(theano.function([x], y), outfile=tmp_path / "f.svg", format="dot") == str(tmp_path / "f.svg")
    assert (tmp_path / "f.svg").read_text().startswith("digraph symcnn {")


def test_pydotprint_runs_dot(tmp_path, monkeypatch):
    fake = tmp_path / "dot"  # records its arguments and writes the -o file
    fake.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[1:]\n"
                    "open(args[args.index('-o') + 1], 'w').write(' '.join(args[:2]) + ' ' + open(args[1]).read())\n"
                    "sys.exit(3 if args[0] == '-Tbad' else 0)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "dot" else None)
    x, W, y = _graph()
    assert pydotprint(y, outfile=tmp_path / "g.svg") == str(tmp_path / "g.svg")
    drawn = (tmp_path / "g.svg").read_text()
    assert drawn.startswith(f"-Tsvg {tmp_path / 'g.dot'} digraph symcnn {{")
    pydotprint(y, outfile=tmp_path / "g.out", format="PDF")
    assert (tmp_path / "g.out").read_text().startswith("-Tpdf")
    with pytest.raises(RuntimeError, match="failed \\(exit 3\\)"):
        pydotprint(y, outfile=tmp_path / "g.bad")


def test_pydotprint_with_real_graphviz(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot is not installed")
    x, W, y = _graph()
    png = pydotprint(y, outfile=tmp_path / "g.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
