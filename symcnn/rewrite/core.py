"""The rewrite engine: small named rewrites registered into ordered phases and
run to a fixpoint by one driver.

A node rewrite is `fn(fgraph, node) -> list of replacement outputs | None`,
registered for the op classes it looks at. A graph rewrite is `fn(fgraph) ->
number of changes`. Every rewrite carries tags: its name, its phase, 'fast_run' and any
given when it is registered. A RewriteQuery picks rewrites by tag, as PyTensor's modes do
(each backend carries one: see symcnn.compile.backend); any tag can be excluded
(`symcnn.function(..., mode=Mode(excluding=['merge']))`); SYMCNN_TRACE_REWRITES=1
prints each one that fires, and `fn.rewrite_log` keeps them.
"""
import os
from dataclasses import dataclass, field

from ..graph.basic import io_toposort

PHASES = ("canonicalize", "stabilize", "specialize", "fuse")


@dataclass
class Rewrite:
    name: str
    phase: str
    fn: object
    tracks: tuple = None    # op classes (node rewrites) or None (graph rewrite)
    graph_level: bool = False
    tags: frozenset = field(default_factory=frozenset)   # name, phase, 'fast_run' and extra tags

    def __post_init__(self):
        # every rewrite carries its name, its phase and 'fast_run', however it was made
        self.tags = frozenset(self.tags) | {self.name, self.phase, "fast_run"}


_rewrites = []


def _register(phase, name, fn, tracks, graph_level, tags=()):
    if phase not in PHASES:
        raise ValueError(f"unknown rewrite phase {phase!r}; phases are {PHASES}")
    if any(r.name == name for r in _rewrites):
        raise ValueError(f"a rewrite named {name!r} is already registered")
    _rewrites.append(Rewrite(name, phase, fn, tuple(tracks) if tracks else None, graph_level, frozenset(tags)))
    return fn


def node_rewrite(phase, tracks, name=None, tags=()):
    """Register fn(fgraph, node) for nodes whose op is an instance of `tracks`."""
    def deco(fn):
        return _register(phase, name or fn.__name__, fn, tracks, False, tags)
    return deco


def graph_rewrite(phase, name=None, tags=()):
    """Register fn(fgraph) -> number of changes, run once per pass of its phase."""
    def deco(fn):
        return _register(phase, name or fn.__name__, fn, None, True, tags)
    return deco


def register_all():
    """Import every module that registers rewrites (the registry is filled on first use, so that
    importing the IR does not import every op)."""
    from . import canonicalize, stabilize, fusion, convpool, convpool_chain, convpool_outputs, slice_sums, dilated, full_conv  # noqa: F401,E501
    from ..scan_module import scan_rewrites  # noqa: F401


def registered(phase=None):
    register_all()
    return [r for r in _rewrites if phase is None or r.phase == phase]


@dataclass(frozen=True)
class RewriteQuery:
    """Which registered rewrites run: those with a tag in `include` and none in `exclude`
    (PyTensor's RewriteDatabaseQuery). A backend carries one; Mode(excluding=...) adds to it."""
    include: tuple = ("fast_run",)
    exclude: tuple = ()

    def excluding(self, *tags):
        return RewriteQuery(self.include, self.exclude + tuple(t for t in tags if t not in self.exclude))

    def including(self, *tags):
        return RewriteQuery(self.include + tuple(t for t in tags if t not in self.include), self.exclude)

    def selects(self, rewrite):
        return not rewrite.tags.isdisjoint(self.include) and rewrite.tags.isdisjoint(self.exclude)

    def check(self):
        """Raise ValueError for a tag no registered rewrite carries (a misspelt name)."""
        # 'inplace' is Theano's tag for its destructive rewrites, which Theano code excludes to keep
        # inputs intact: here nothing destroys an input (the memory plan writes only updated shared
        # variables in place), so the tag is known and selects no rewrite.
        known = set().union(*(r.tags for r in _rewrites)) | set(PHASES) | {"inplace"}
        for verb, tags in (("include", self.include), ("exclude", self.exclude)):
            unknown = set(tags) - known
            if unknown:
                raise ValueError(f"cannot {verb} unknown rewrite(s) {sorted(unknown)}; "
                                 f"known: {', '.join(sorted(r.name for r in _rewrites))}")


@dataclass
class Fired:
    phase: str
    rewrite: str
    op: str
    location: str

    def __str__(self):
        return f"[{self.phase}] {self.rewrite}: {self.op}" + (f" ({self.location})" if self.location else "")


def rewrite_graph(fgraph, excluding=(), max_passes=100, query=None):
    """Run every phase in order, each to a fixpoint, with the rewrites `query` selects (default:
    RewriteQuery()) less those tagged with a name in `excluding`. Returns the list of Fired records."""
    register_all()
    query = (query or RewriteQuery()).excluding(*excluding)
    query.check()
    verbose = os.environ.get("SYMCNN_TRACE_REWRITES", "") not in ("", "0")
    from ..config import config
    check = _check_after if config.check_graph else None
    log = []
    for phase in PHASES:
        active = [r for r in _rewrites if r.phase == phase and query.selects(r)]
        if not active:
            continue
        for _ in range(max_passes):
            changed = False
            for r in active:
                if r.graph_level:
                    n = r.fn(fgraph)
                    if check:
                        check(fgraph, phase, r.name)
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
                    if check:
                        check(fgraph, phase, r.name)
                    loc = node.trace.location() if node.trace else ""
                    _record(log, Fired(phase, r.name, str(node.op), loc), verbose)
                    changed = True
                    break
            if not changed:
                break
    return log


def _check_after(fgraph, phase, name):
    """config.check_graph: the graph must be consistent after every rewrite that changed it."""
    from ..graph.fg import GraphIntegrityError
    try:
        fgraph.check_integrity()
    except GraphIntegrityError as e:
        raise GraphIntegrityError(f"rewrite {name!r} (phase {phase}) left an inconsistent graph: {e}") from e


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
