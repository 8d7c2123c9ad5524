"""Backends: what runs a compiled function, the contract symcnn keeps with them, and how they
are found.

A backend provides one mode (`function(..., mode=name)`) and compiles in two phases:

  lower(fgraph, updates, lazy=False) -> Lowered
      runs in the thread that called function(); it may reject the graph by raising, so such
      an error surfaces at function() time. updates lists (input index, output index) pairs:
      the output is the new value of that (shared) input; a backend may write it into the
      input's storage itself and return the input array as that output. lazy=True: finish()
      may never be called (a function whose calls run code compiled for their arguments'
      sizes, compile/specialize.py, needs its general code only for sizes it has no code for),
      so no work towards machine code is started before finish().
  Lowered.finish() -> runner
      generates the machine code; function() runs it in a background thread when
      `Lowered.background` is true (its first call, or fn.wait(), waits for it), and at once
      otherwise (nothing slow is left, e.g. a compile-cache hit); when lowered lazily, in a
      background thread started by the first call that needs it. A runner is
      callable(list of input values) -> list of output values.

function() gives the caller outputs that alias nothing it keeps: it copies a result that is an
input, shared storage, another result or a view (an array with a base), except a view whose base
is an OwnedBuffer: memory the runner hands over, which it no longer refers to.

Besides 'reference' (numpy's perform, built in), backends are found through the entry points
of installed packages in the group ENTRY_POINT_GROUP: the entry's name is the mode's, its
object a Backend. symcnn names no backend itself.
"""
import importlib.metadata
import threading

from ..rewrite.core import RewriteQuery

ENTRY_POINT_GROUP = "symcnn.backends"


class Lowered:
    """A graph a backend accepted, turned into code that still has to become a runner."""

    background = True   # finish() does slow work worth overlapping with the caller's

    def finish(self):
        raise NotImplementedError


class Ready(Lowered):
    """A runner with nothing left to do."""

    background = False

    def __init__(self, runner):
        self.runner = runner

    def finish(self):
        return self.runner


class OwnedBuffer:
    """The base of an output array whose memory a runner hands to the caller (see the module
    docstring): nothing of the runner refers to it after the call, so function() returns the
    array without copying it. A subclass owns the memory and frees it when it is collected."""


class Backend:
    """A mode's compiler. lower: (fgraph, updates) -> Lowered (see the module docstring).
    rewrites: the RewriteQuery of the rewrites run before lowering (Mode(excluding=...) adds
    to its exclusions); rewrite=False runs the graph as written (the reference mode)."""

    def __init__(self, name, lower, rewrites=None, rewrite=True):
        self.name = name
        self.lower = lower
        self.rewrites = rewrites if rewrites is not None else RewriteQuery()
        self.rewrite = rewrite

    def __repr__(self):
        return f"Backend({self.name!r}, rewrites={self.rewrites})"


_backends = {}     # mode name -> Backend, registered or loaded from an entry point
_load_lock = threading.Lock()


def register_backend(backend):
    """Make `backend` the mode named backend.name (entry points are the usual way in)."""
    _backends[backend.name] = backend


def _entry_points():
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_modes():
    """Names of the modes registered or installed (without loading their backends)."""
    return sorted(set(_backends) | set(_entry_points()))


def backend_named(name):
    """The Backend of the mode `name`, loading its entry point the first time."""
    backend = _backends.get(name)
    if backend is not None:
        return backend
    with _load_lock:
        if name in _backends:
            return _backends[name]
        eps = _entry_points()
        ep = eps.get(name)
        if ep is None:
            known = ", ".join(sorted(set(_backends) | set(eps)))
            hint = ("" if eps else
                    f"; no backend is installed (backends are found through the {ENTRY_POINT_GROUP!r} "
                    f"entry points of installed packages: install symcnn, e.g. `pip install -e .` in its "
                    f"source tree, to get the native modes)")
            raise ValueError(f"unknown mode {name!r}; known modes: {known}{hint}")
        try:
            backend = ep.load()
        except Exception as e:
            raise ValueError(f"mode {name!r} needs the backend {ep.value!r} (entry point {name!r} of "
                             f"{ENTRY_POINT_GROUP!r}), which failed to load: {e}") from e
        if not isinstance(backend, Backend) or backend.name != name:
            raise TypeError(f"entry point {name!r} of {ENTRY_POINT_GROUP!r} gave {backend!r}, "
                            f"not a Backend named {name!r}")
        _backends[name] = backend
        return backend
