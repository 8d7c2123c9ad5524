"""Keeping LLVM and the compile machinery usable in a child made by os.fork().

A fork copies only the forking thread. If another thread was inside LLVM at that moment (the
background compile that function() starts), the child inherits LLVM's state half-updated and
locks that no thread will ever release. So every LLVM call of the backend runs inside
`llvm_section()`, and a fork first waits until no thread is in one (a compile in progress
finishes first) and keeps new ones from starting until the fork is done. Locks and in-flight
compile jobs of the parent's threads are then replaced in the child by the `after_fork_in_child`
callbacks of the modules that own them.
"""
import functools
import os
import threading
from contextlib import contextmanager


class _Gate:
    """Counts the threads inside LLVM sections; a fork waits for the count to be zero."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._busy = 0
        self._forking = False
        self._depth = threading.local()   # sections of this thread (they nest)

    def _mine(self):
        return getattr(self._depth, "n", 0)

    @contextmanager
    def section(self):
        mine = self._mine()
        with self._cond:
            while self._forking and mine == 0:
                self._cond.wait()
            self._busy += 1
        self._depth.n = mine + 1
        try:
            yield
        finally:
            self._depth.n = mine
            with self._cond:
                self._busy -= 1
                if self._busy == 0 or self._forking:
                    self._cond.notify_all()

    def before_fork(self):
        # keeps the lock until the fork is done: no thread enters or leaves a section meanwhile
        self._cond.acquire()
        self._forking = True
        mine = self._mine()   # a fork from inside a section cannot wait for itself
        while self._busy > mine:
            self._cond.wait()

    def after_fork_in_parent(self):
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self):
        mine = self._mine()
        self.__init__()        # the parent's other threads do not exist here
        self._busy = mine
        self._depth.n = mine


_gate = _Gate()
_child_callbacks = []


def llvm_section():
    """Context manager around calls into LLVM (parsing, optimising, emitting, loading code)."""
    return _gate.section()


def in_llvm_section(fn):
    """Decorator: fn runs inside llvm_section()."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _gate.section():
            return fn(*args, **kwargs)
    return wrapper


def after_fork_in_child(callback):
    """Register callback() to run in a forked child (after the gate is reset): for resetting
    locks and job tables that threads of the parent may have held."""
    _child_callbacks.append(callback)
    return callback


def _in_child():
    _gate.after_fork_in_child()
    for cb in _child_callbacks:
        cb()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_gate.before_fork, after_in_parent=_gate.after_fork_in_parent,
                        after_in_child=_in_child)
