"""Modes choose how a compiled function runs.

'reference' runs each node's numpy `perform`. Other modes are provided by backends, found
through entry points when such a mode is asked for (see backend.py).
"""
from ..config import config
from .backend import backend_named

_aliases = {"FAST_COMPILE": "reference", "py": "reference"}


class Mode:
    """A mode name plus options (e.g. rewrites to exclude, for backends that rewrite)."""

    def __init__(self, linker=None, excluding=(), rewrite=None):
        self.linker = linker or config.mode
        self.excluding = tuple(excluding)
        # None: as the backend says (the reference mode runs the graph as written: it is the oracle).
        self.rewrite = rewrite

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


def backend_for(mode):
    """The Backend compiling functions in `mode` (a Mode); ValueError for an unknown mode or one
    whose backend is not installed or fails to load."""
    return backend_named(_aliases.get(mode.linker, mode.linker))


def rewrites_for(mode, backend):
    """The RewriteQuery for a function compiled in `mode` by `backend`, or None to run the graph
    as written."""
    rewrite = backend.rewrite if mode.rewrite is None else mode.rewrite
    return backend.rewrites.excluding(*mode.excluding) if rewrite else None
