"""Where in the user's code a variable or node was created.

Each node remembers the first stack frame outside the symcnn package (and the packages of
backends, which register themselves with hide_frames_in), so that errors raised while
building or running a graph can name the user's line first.
"""
import linecache
import os
import sys

_SYMCNN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PKG_DIRS = (_SYMCNN_DIR + os.sep,)


def hide_frames_in(directory):
    """Treat frames of the files under `directory` as symcnn's own: a backend's package calls this
    when it is imported, so errors name the user's line rather than the backend's."""
    global _PKG_DIRS
    d = os.path.abspath(directory) + os.sep
    if d not in _PKG_DIRS:
        _PKG_DIRS = _PKG_DIRS + (d,)


class Trace(tuple):
    """(filename, lineno, source text) of the user's line."""

    __slots__ = ()

    def __new__(cls, filename, lineno, text=""):
        return super().__new__(cls, (filename, lineno, text))

    def __getnewargs__(self):  # pickle calls __new__ with these
        return tuple(self)

    filename = property(lambda self: self[0])
    lineno = property(lambda self: self[1])
    text = property(lambda self: self[2])

    def __str__(self):
        s = f"{self[0]}:{self[1]}"
        return f"{s}: {self[2]}" if self[2] else s

    def location(self):
        return f"{self[0]}:{self[1]}"


def _internal(filename):
    return filename.startswith(_PKG_DIRS) or filename.startswith("<frozen")


def user_trace():
    """The innermost frame that is not symcnn's own code (None if there is none)."""
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        if not _internal(os.path.abspath(fn) if not fn.startswith("<") else fn):
            line = linecache.getline(fn, frame.f_lineno).strip()
            return Trace(fn, frame.f_lineno, line)
        frame = frame.f_back
    return None


def with_trace(message, trace):
    """Prefix a message with the user's file:line so it is the first thing read."""
    if trace is None:
        return message
    return f"{trace.location()}: {message}\n    (created at: {trace.text})" if trace.text else f"{trace.location()}: {message}"


def reraise_with_trace(exc, trace, context):
    """Raise `exc` again, same type, with the user's line and `context` in front."""
    msg = with_trace(f"{context}: {exc}", trace)
    try:
        new = type(exc)(msg)
    except Exception:  # exception types with unusual constructors
        new = RuntimeError(msg)
    new.__traceback__ = exc.__traceback__
    raise new from exc
