"""Modes choose how a compiled function runs.

'reference' runs each node's numpy `perform`. Other modes are provided by
backends that register a linker factory here (the native LLVM backend lives in
the `codegen` package, which symcnn loads only when such a mode is asked for).
"""
import threading
from contextlib import contextmanager

from ..config import config

_linkers = {}
_aliases = {"FAST_COMPILE": "reference", "py": "reference"}


def register_linker(name, factory):
    """factory(fgraph, updates) -> callable(list of input values) -> list of output values.

    updates lists (input index, output index) pairs: the output is the new value of
    that (shared) input. A backend may write it into the input's storage itself and
    return the input array as that output."""
    _linkers[name] = factory


class Mode:
    """A mode name plus options (e.g. rewrites to exclude, for backends that rewrite)."""

    def __init__(self, linker=None, excluding=(), rewrite=None):
        self.linker = linker or config.mode
        # The NaN guard checks each kernel: without fusion, each kernel is one op of your graph.
        implied = ("fuse",) if self.linker == "nanguard" else ()
        self.excluding = tuple(excluding) + tuple(p for p in implied if p not in excluding)
        # The reference mode runs the graph as written (it is the oracle); others rewrite it.
        self.rewrite = (_aliases.get(self.linker, self.linker) != "reference") if rewrite is None else rewrite

    def __repr__(self):
        return f"Mode(linker={self.linker!r}, excluding={self.excluding}, rewrite={self.rewrite})"


def get_mode(mode):
    if mode is None:
        mode = config.mode
    if isinstance(mode, str):
        mode = Mode(linker=mode)
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a name or a Mode, got {type(mode).__name__}")
    return mode


def linker_for(mode):
    name = _aliases.get(mode.linker, mode.linker)
    if name not in _linkers and name != "reference":
        try:
            import codegen  # noqa: F401  (registers its modes)
        except ImportError as e:
            raise ValueError(f"mode {mode.linker!r} needs the native backend, which failed to load: {e}") from e
    if name not in _linkers:
        raise ValueError(f"unknown mode {mode.linker!r}; known modes: {', '.join(sorted(_linkers))}")
    return _linkers[name]


_lowering = threading.local()


@contextmanager
def on_lowered(callback):
    """Call `callback()` when a backend building a runner in this thread has turned the graph
    into code (the step that can reject a graph); what follows (machine-code generation) may
    then finish in the background."""
    prev = getattr(_lowering, "callback", None)
    _lowering.callback = callback
    try:
        yield
    finally:
        _lowering.callback = prev


def lowered():
    """Backends call this once the graph is lowered (see on_lowered)."""
    cb = getattr(_lowering, "callback", None)
    if cb is not None:
        cb()
