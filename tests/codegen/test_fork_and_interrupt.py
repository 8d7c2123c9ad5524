"""A compiled function survives what can happen to a process while LLVM still works in the
background: an os.fork() (the child gets working functions and never waits for a compile job
of the parent's threads) and a KeyboardInterrupt while the first call waits (the next call
works, and the process exits cleanly). Each case runs in a child process with a timeout."""
import textwrap

import pytest

from tests.helpers import run_child

# The background compile is made slow on purpose, so the fork / the interrupt surely
# happens while it runs (whatever the machine's speed).
_PRELUDE = """
import os, signal, sys, threading, time
import numpy as np
import symcnn, symcnn.tensor as T
from codegen import jit

# Python's own Ctrl-C handling, whatever this process inherited (a shell's background job starts
# with SIGINT ignored, and its children inherit that)
signal.signal(signal.SIGINT, signal.default_int_handler)

_compile = jit._compile_here
def slow_compile(ir_text, target=None, pipeline=None):
    time.sleep(0.8)
    obj = _compile(ir_text, target, pipeline)
    os.write(2, b"compiled\\n")
    return obj
jit._compile_here = slow_compile

x = T.matrix("x")
ins, outs = [x], [T.tanh(T.dot(x, x.T)).sum(axis=0), x.reshape((-1,)) * 2]
vals = [np.random.RandomState(0).standard_normal((7, 5)).astype("float32")]
want = symcnn.function(ins, outs, mode="reference")(*vals)

def same(got):
    return all(np.allclose(g, w, rtol=1e-4, atol=1e-4) for g, w in zip(got, want))
"""


def _run(body, cache, tmp_path, timeout=240):
    env = {"SYMCNN_CACHE_DIR": "none" if cache == "off" else str(tmp_path / "cache")}
    out = run_child(_PRELUDE + textwrap.dedent(body), env=env, timeout=timeout)
    assert out.stdout.split()[-1] == "ok", out.stdout
    return out


_FORK = """
f = symcnn.function(ins, outs)          # returns while LLVM works in the background
pid = os.fork()
if pid == 0:
    try:
        ok = same(f(*vals))
        if {rebuild}:                    # the same graph again: its compile job was the parent's
            ok = ok and same(symcnn.function(ins, outs)(*vals))
    except BaseException as e:
        print("child failed:", repr(e), flush=True)
        ok = False
    os._exit(0 if ok else 3)
deadline = time.monotonic() + 120
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        print("child hung", flush=True)
        sys.exit(5)
    time.sleep(0.05)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
assert same(f(*vals))
print("ok")
"""


@pytest.mark.parametrize("cache,rebuild", [("off", False), ("on", True)])
def test_fork_while_compiling_gives_the_child_working_functions(tmp_path, cache, rebuild):
    _run(_FORK.format(rebuild=rebuild), cache, tmp_path)


_INTERRUPT = """
f = symcnn.function(ins, outs)
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    f(*vals)
    print("not interrupted")
    sys.exit(4)
except KeyboardInterrupt:
    pass
if {retry}:
    assert same(f(*vals))
    assert same(f(*vals))
print("ok", flush=True)
"""


@pytest.mark.parametrize("cache,retry", [("off", True), ("on", True), ("on", False)])
def test_keyboard_interrupt_while_the_first_call_waits(tmp_path, cache, retry):
    # retry: the next call works; not retrying: the process still exits cleanly (status 0,
    # no LLVM assertion): it waits for the compile thread instead of tearing the interpreter
    # down under it
    out = _run(_INTERRUPT.format(retry=retry), cache, tmp_path)
    assert "Assertion" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "compiled" in out.stderr


_GATE = """
import os, threading, time
from codegen.forksafe import llvm_section
inside, release, order = threading.Event(), threading.Event(), []

def busy():
    with llvm_section():
        inside.set()
        release.wait()
        order.append("section left")

t = threading.Thread(target=busy)
t.start()
inside.wait()
threading.Timer(0.2, release.set).start()
pid = os.fork()            # waits for the thread to leave its LLVM section
if pid == 0:
    with llvm_section():   # the child's gate is free (no thread of the parent holds it)
        pass
    os._exit(0 if order == ["section left"] else 3)
order.append("forked")
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
t.join()
assert order == ["section left", "forked"], order
with llvm_section():
    print("ok")
"""


def test_fork_waits_for_threads_inside_llvm():
    out = run_child(_GATE, timeout=60)
    assert out.stdout.split()[-1] == "ok"
