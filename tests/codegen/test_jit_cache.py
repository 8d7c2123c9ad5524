"""The on-disk object cache of the native backend."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _graph(scale=1.5):
    x = T.matrix("x")
    y = T.vector("y")
    return [x, y], [T.tanh(x * scale + y).sum(axis=1), T.dot(x, y)]


def _check(fn, scale=1.5):
    rng = np.random.RandomState(0)
    xv, yv = rng.randn(4, 3).astype("float32"), rng.randn(3).astype("float32")
    got = fn(xv, yv)
    np.testing.assert_allclose(got[0], np.tanh(xv * np.float32(scale) + yv).sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], xv @ yv, rtol=1e-5, atol=1e-5)


def _entries(d):
    return sorted(p for p in d.rglob("*.o"))


def test_second_compile_hits_the_cache(cache_dir):
    ins, outs = _graph()
    f1 = symcnn.function(ins, outs, mode="native")
    assert f1.runner.cache_hit is False
    assert len(_entries(cache_dir)) == 1
    ins, outs = _graph()              # a new but identical graph
    f2 = symcnn.function(ins, outs, mode="native")
    assert f2.runner.cache_hit is True
    _check(f1)
    _check(f2)
    # a different graph is a different entry
    ins, outs = _graph(scale=2.5)
    f3 = symcnn.function(ins, outs, mode="native")
    assert f3.runner.cache_hit is False
    _check(f3, scale=2.5)
    assert len(_entries(cache_dir)) == 2


def test_cache_disabled(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "off")
    ins, outs = _graph()
    f1 = symcnn.function(ins, outs, mode="native")
    f2 = symcnn.function(*_graph(), mode="native")
    assert f1.runner.cache_hit is False and f2.runner.cache_hit is False
    _check(f2)


@pytest.mark.parametrize("damage", ["truncate", "truncate_header", "flip", "flip_last", "empty", "garbage"])
def test_corrupted_entry_is_recompiled(cache_dir, damage):
    f1 = symcnn.function(*_graph(), mode="native")
    assert f1.runner.cache_hit is False
    path, = _entries(cache_dir)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "truncate_header":
        data = data[:20]
    elif damage == "flip":
        for k in range(len(data) // 2, len(data) // 2 + 16):
            data[k] ^= 0xFF
    elif damage == "flip_last":
        data[-1] ^= 0x01
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(os.urandom(len(data)))
    path.write_bytes(bytes(data))

    f2 = symcnn.function(*_graph(), mode="native")
    assert f2.runner.cache_hit is False
    _check(f2)
    # the entry was rewritten and is good again
    f3 = symcnn.function(*_graph(), mode="native")
    assert f3.runner.cache_hit is True
    _check(f3)


def test_unwritable_cache_dir_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="not using the compile cache directory"):
        f = symcnn.function(*_graph(), mode="native")
    assert f.runner.cache_hit is False
    _check(f)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    import symcnn, symcnn.tensor as T
    x = T.matrix("x"); y = T.vector("y")
    outs = [T.tanh(x * 3.25 + y).sum(axis=1), T.dot(x, y), T.max(x * y, axis=0)]
    fn = symcnn.function([x, y], outs, mode="native")
    rng = np.random.RandomState(0)
    xv, yv = rng.randn(5, 4).astype("float32"), rng.randn(4).astype("float32")
    got = fn(xv, yv)
    want = [np.tanh(xv * np.float32(3.25) + yv).sum(axis=1), xv @ yv, (xv * yv).max(axis=0)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    print("OK", fn.runner.cache_hit)
""")


def test_concurrent_compiles_in_two_processes(cache_dir):
    script = _CHILD.format(root=ROOT)
    env = dict(os.environ, SYMCNN_CACHE_DIR=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.startswith("OK"), (out, err)
    assert len(_entries(cache_dir)) == 1
    assert not [p for p in cache_dir.rglob(".tmp-*")]     # no temporary files left behind
    # and the entry they wrote is valid
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK True"
