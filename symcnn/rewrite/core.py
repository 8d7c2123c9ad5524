"""The rewrite engine: small named rewrites registered into ordered phases and
run to a fixpoint by one driver.

A node rewrite is `fn(fgraph, node) -> list of replacement outputs | None`,
registered for the op classes it looks at. A graph rewrite is `fn(fgraph) ->
number of changes`. Any rewrite can be excluded by name
(`symcnn.function(..., mode=Mode(excluding=['merge']))`); SYMCNN_TRACE_REWRITES=1
prints each one that fires, and `fn.rewrite_log` keeps them.
"""
import os
from dataclasses import dataclass

from ..graph.basic import io_toposort

PHASES = ("canonicalize", "stabilize", "specialize", "fuse", "inplace")


@dataclass
class Rewrite:
    name: str
    phase: str
    fn: object
    tracks: tuple = None    # op classes (node rewrites) or None (graph rewrite)
    graph_level: bool = False


_rewrites = []


def _register(phase, name, fn, tracks, graph_level):
    if phase not in PHASES:
        raise ValueError(f"unknown rewrite phase {phase!r}; phases are {PHASES}")
    if any(r.name == name for r in _rewrites):
        raise ValueError(f"a rewrite named {name!r} is already registered")
    _rewrites.append(Rewrite(name, phase, fn, tuple(tracks) if tracks else None, graph_level))
    return fn


def node_rewrite(phase, tracks, name=None):
    """Register fn(fgraph, node) for nodes whose op is an instance of `tracks`."""
    def deco(fn):
        return _register(phase, name or fn.__name__, fn, tracks, False)
    return deco


def graph_rewrite(phase, name=None):
    """Register fn(fgraph) -> number of changes, run once per pass of its phase."""
    def deco(fn):
        return _register(phase, name or fn.__name__, fn, None, True)
    return deco


def registered(phase=None):
    return [r for r in _rewrites if phase is None or r.phase == phase]


@dataclass
class Fired:
    phase: str
    rewrite: str
    op: str
    location: str

    def __str__(self):
        return f"[{self.phase}] {self.rewrite}: {self.op}" + (f" ({self.location})" if self.location else "")


def rewrite_graph(fgraph, excluding=(), max_passes=100):
    """Run every phase in order, each to a fixpoint. Returns the list of Fired records."""
    from . import canonicalize, stabilize, fusion, convpool  # noqa: F401  (register the rewrites)
    from ..scan_module import scan_rewrites  # noqa: F401
    excluding = set(excluding)
    unknown = excluding - {r.name for r in _rewrites} - set(PHASES)
    if unknown:
        raise ValueError(f"cannot exclude unknown rewrite(s) {sorted(unknown)}; "
                         f"known: {', '.join(sorted(r.name for r in _rewrites))}")
    verbose = os.environ.get("SYMCNN_TRACE_REWRITES", "") not in ("", "0")
    log = []
    for phase in PHASES:
        if phase in excluding:
            continue
        active = [r for r in _rewrites if r.phase == phase and r.name not in excluding]
        for _ in range(max_passes):
            changed = False
            for r in active:
                if r.graph_level:
                    n = r.fn(fgraph)
                    if n:
                        changed = True
                        _record(log, Fired(phase, r.name, f"{n} change(s)", ""), verbose)
            for node in list(fgraph.toposort()):
                if node not in fgraph.graph:
                    continue  # removed by an earlier rewrite in this pass
                for r in active:
                    if r.graph_level or not isinstance(node.op, r.tracks):
                        continue
                    new = r.fn(fgraph, node)
                    if not new:
                        continue
                    replace_node(fgraph, node, new, r.name)
                    loc = node.trace.location() if node.trace else ""
                    _record(log, Fired(phase, r.name, str(node.op), loc), verbose)
                    changed = True
                    break
            if not changed:
                break
    return log


def _record(log, fired, verbose):
    log.append(fired)
    if verbose:
        print(f"symcnn rewrite {fired}")


def replace_node(fgraph, node, new_outputs, reason):
    """Replace node's outputs; nodes the rewrite created inherit the user's line."""
    if len(new_outputs) != len(node.outputs):
        raise ValueError(f"rewrite {reason} returned {len(new_outputs)} outputs for {node}")
    known = set(fgraph.graph.nodes)
    for created in io_toposort(list(new_outputs), blockers=node.inputs):
        if created not in known:
            created.trace = node.trace
            for out in created.outputs:
                out.trace = node.trace
    fgraph.replace_all(list(zip(node.outputs, new_outputs)), reason=reason)
