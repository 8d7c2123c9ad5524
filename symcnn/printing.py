"""Text and DOT views of graphs: debugprint (Theano's), a graphviz export and pydotprint."""
import os
import shutil
import subprocess
import sys

from .graph.basic import Constant, Variable, io_toposort
from .print_op import Print  # noqa: F401  (theano.printing.Print)


def _roots(obj):
    from .compile.function import Function
    from .graph.fg import FunctionGraph
    if isinstance(obj, Function):
        return obj.fgraph.outputs, obj.fgraph
    if isinstance(obj, FunctionGraph):
        return obj.outputs, obj
    if isinstance(obj, Variable):
        return [obj], None
    if isinstance(obj, (list, tuple)):
        return list(obj), None
    raise TypeError(f"debugprint: cannot print {type(obj).__name__}")


def debugprint(obj, file=None, print_type=False, depth=-1, ids="auto", print_trace=False):
    """Print a graph as an indented tree, Theano-style. Returns the text when
    file='str', else writes to `file` (stdout by default) and returns obj."""
    outputs, fgraph = _roots(obj)
    order = {n: i for i, n in enumerate(io_toposort(outputs))}
    names = {}
    lines = []
    done = set()

    def ident(v):
        if v not in names:
            names[v] = chr(65 + len(names) % 26) + (str(len(names) // 26) if len(names) >= 26 else "")
        return names[v]

    def show(v, indent, level):
        if depth != -1 and level > depth:
            return
        typ = f" <{v.type}>" if print_type else ""
        if v.owner is None:
            kind = "shared " if getattr(v, "is_shared", False) else ("" if not isinstance(v, Constant) else "")
            lines.append(f"{indent}{kind}{v}{typ}")
            return
        node = v.owner
        out = f".{v.index}" if len(node.outputs) > 1 else ""
        where = f"  # {node.trace.location()}" if print_trace and node.trace else ""
        tag = f"[id {ident(node)}]"
        if node in done:
            lines.append(f"{indent}{node.op}{out} {tag}{typ} ''")
            return
        done.add(node)
        label = f" '{v.name}'" if v.name else ""
        lines.append(f"{indent}{node.op}{out} {tag}{label}{typ}{where}   {order.get(node, '')}".rstrip())
        for inp in node.inputs:
            show(inp, indent + " |", level + 1)

    for o in outputs:
        show(o, "", 0)
    text = "\n".join(lines) + "\n"
    if file == "str":
        return text
    (file or sys.stdout).write(text)
    return obj


def to_networkx(obj):
    """The graph as a networkx DiGraph with labelled variable and apply nodes."""
    from .graph.fg import networkx_graph
    outputs, _ = _roots(obj)
    return networkx_graph(io_toposort(outputs), outputs)


def to_dot(obj):
    """Graphviz DOT text of a graph (ops as boxes, variables as ellipses)."""
    g = to_networkx(obj)
    lines = ["digraph symcnn {"]
    for n, data in g.nodes(data=True):
        shape = "box" if data["kind"] == "apply" else "ellipse"
        label = data["label"].replace('"', '\\"')
        lines.append(f'  n{n} [label="{label}", shape={shape}];')
    for a, b in g.edges():
        lines.append(f"  n{a} -> n{b};")
    lines.append("}")
    return "\n".join(lines) + "\n"


GRAPHVIZ_HINT = ("install graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
                 "conda: conda install graphviz)")


def pydotprint(obj, outfile="graph.png", format=None):
    """Draw a graph (a variable, a list of them, or a compiled function), like Theano's pydotprint.

    Writes the DOT text (to_dot) next to `outfile` with the suffix .dot, then, unless the
    format is 'dot', runs graphviz's `dot` to render `outfile`. format defaults to the
    suffix of outfile (png, svg, pdf, ...). Returns the path written. When `dot` is not on
    PATH, raises RuntimeError saying where the .dot file is and how to install graphviz.
    """
    outfile = os.fspath(outfile)
    stem, suffix = os.path.splitext(outfile)
    format = (format or suffix.lstrip(".") or "png").lower()
    dot_path = outfile if format == "dot" else stem + ".dot"
    with open(dot_path, "w") as f:
        f.write(to_dot(obj))
    if format == "dot":
        return dot_path
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(f"pydotprint: graphviz's `dot` program is not on PATH, so {outfile} was not drawn; "
                           f"the graph's DOT text was written to {dot_path}. To draw it, {GRAPHVIZ_HINT}, then "
                           f"run: dot -T{format} {dot_path} -o {outfile}")
    done = subprocess.run([dot, f"-T{format}", dot_path, "-o", outfile], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pydotprint: `dot -T{format} {dot_path} -o {outfile}` failed "
                           f"(exit {done.returncode}): {done.stderr.strip()}")
    return outfile
