"""The compile cache only runs code that this user wrote for exactly this function:
ownership and permissions of the directory, the HMAC key, key binding, special files."""
import os
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen import cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fn(scale):
    x = T.vector("x")
    f = symcnn.function([x], x * scale + 1.0, mode="native")
    f.wait()   # the entry is written when the background compile ends
    return f


def _check(f, scale):
    xv = np.arange(5, dtype="float32")
    np.testing.assert_allclose(f(xv), xv * np.float32(scale) + 1, rtol=1e-6)


def _entry_of(d, build):
    before = {p for p in d.rglob("*.o")}
    f = build()
    new = {p for p in d.rglob("*.o")} - before
    assert len(new) == 1, new
    return f, new.pop()


# --------------------------------------------------------------------------- key binding

def test_an_entry_copied_over_another_is_not_loaded(cache_dir):
    fa, path_a = _entry_of(cache_dir, lambda: _fn(2.0))
    fb, path_b = _entry_of(cache_dir, lambda: _fn(3.0))
    path_a.write_bytes(path_b.read_bytes())       # B's valid entry under A's name
    again = _fn(2.0)
    assert again.runner.cache_hit is False
    _check(again, 2.0)                             # A still computes A
    assert _fn(2.0).runner.cache_hit is True       # and its entry was rewritten
    assert cache.read_entry(path_b.stem) is not None
    assert cache.read_entry(path_a.stem)[1] != cache.read_entry(path_b.stem)[1]


# --------------------------------------------------------------------------- ownership and permissions

def test_directories_are_created_private(tmp_path, monkeypatch):
    d = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(d))
    _check(_fn(2.0), 2.0)
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    sub, = [p for p in d.iterdir() if p.is_dir()]
    assert stat.S_IMODE(sub.stat().st_mode) == 0o700
    key = d / cache.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == cache.KEY_BYTES
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in d.rglob("*.o"))


@pytest.mark.parametrize("where", ["dir", "parent"])
def test_group_writable_directory_is_not_used(cache_dir, where):
    _fn(2.0)                                       # fills the cache while it is private
    assert list(cache_dir.rglob("*.o"))
    target = cache_dir if where == "dir" else cache_dir.parent
    target.chmod(0o770 if where == "dir" else 0o777)
    try:
        with pytest.warns(RuntimeWarning, match=f"not using the compile cache directory {cache_dir}.*writable"):
            f = _fn(2.0)
        assert f.runner.cache_hit is False         # the stored entry was not read
        _check(f, 2.0)
        n = len(list(cache_dir.rglob("*.o")))
        with warnings.catch_warnings():
            warnings.simplefilter("error")         # warned once per directory only
            f2 = _fn(5.0)
        _check(f2, 5.0)
        assert len(list(cache_dir.rglob("*.o"))) == n   # and nothing written to it
    finally:
        target.chmod(0o700)


def test_symlink_in_a_folder_others_can_write_is_not_used(tmp_path, monkeypatch):
    private = tmp_path / "private" / "cache"
    private.mkdir(parents=True, mode=0o700)
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o777)                            # anyone could replace the link
    try:
        (public / "cache").symlink_to(private)
        monkeypatch.setenv("SYMCNN_CACHE_DIR", str(public / "cache"))
        with pytest.warns(RuntimeWarning, match=f"its parent {public} is writable"):
            assert cache.cache_dir() is None
    finally:
        public.chmod(0o700)


def test_directory_of_another_user_is_not_used(cache_dir, monkeypatch):
    _fn(2.0)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)
    with pytest.warns(RuntimeWarning, match="belongs to uid"):
        assert cache.cache_dir() is None
    assert cache.read_entry("00" * 32) is None


# --------------------------------------------------------------------------- the HMAC key

def test_planted_entry_with_valid_checksum_but_no_valid_hmac_is_not_loaded(cache_dir):
    import hashlib
    import struct
    f, path = _entry_of(cache_dir, lambda: _fn(2.0))
    _, path_b = _entry_of(cache_dir, lambda: _fn(3.0))
    meta, obj_b = cache.read_entry(path_b.stem)
    import json
    key = path.stem.encode()
    m = json.dumps(meta).encode()
    body = struct.pack("<I", len(key)) + key + struct.pack("<I", len(m)) + m + obj_b
    # what an attacker can compute: a sha256 of the content (the old format's check), or an
    # HMAC under a key of their own
    for tag in (hashlib.sha256(body).digest(),
                __import__("hmac").new(b"x" * 32, cache.MAGIC + body, hashlib.sha256).digest()):
        path.write_bytes(cache.MAGIC + tag + body)
        assert cache.read_entry(path.stem) is None
        g = _fn(2.0)
        assert g.runner.cache_hit is False
        _check(g, 2.0)


@pytest.mark.parametrize("bad", ["mode", "symlink", "short", "directory"])
def test_key_file_that_is_not_a_private_regular_file_disables_the_cache(cache_dir, tmp_path, bad):
    _fn(2.0)
    key = cache_dir / cache.KEY_FILE
    if bad == "mode":
        key.chmod(0o644)
    elif bad == "symlink":
        other = tmp_path / "elsewhere"
        other.write_bytes(key.read_bytes())
        other.chmod(0o600)
        key.unlink()
        key.symlink_to(other)
    elif bad == "short":
        key.write_bytes(b"short")
    else:
        key.unlink()
        key.mkdir()
    with pytest.warns(RuntimeWarning, match="key file"):
        f = _fn(2.0)
    assert f.runner.cache_hit is False
    _check(f, 2.0)


def test_a_new_key_invalidates_old_entries(cache_dir):
    _fn(2.0)
    (cache_dir / cache.KEY_FILE).unlink()
    f = _fn(2.0)
    assert f.runner.cache_hit is False
    assert _fn(2.0).runner.cache_hit is True


# --------------------------------------------------------------------------- special files

_SPECIAL = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    import symcnn, symcnn.tensor as T
    def fn():
        x = T.vector("x")
        return symcnn.function([x], x * 2.0 + 1.0, mode="native")
    fn().wait()
    path, = [os.path.join(r, n) for r, _, ns in os.walk({d!r}) for n in ns if n.endswith(".o")]
    os.unlink(path)
    if {kind!r} == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    t = time.perf_counter()
    f = fn()
    out = f(np.arange(3, dtype="float32"))
    assert out.tolist() == [1.0, 3.0, 5.0], out
    print("OK", f.runner.cache_hit)
""")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero_symlink"])
def test_special_file_entries_are_ignored_without_hanging(tmp_path, kind):
    d = tmp_path / "cache"
    env = dict(os.environ, SYMCNN_CACHE_DIR=str(d))
    script = _SPECIAL.format(root=ROOT, d=str(d), kind=kind)
    # the timeout is the hang guard (a FIFO used to block forever, /dev/zero to read until
    # memory ran out), not a speed requirement
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK False"


def test_oversized_and_foreign_entries_are_not_read(cache_dir, monkeypatch):
    f, path = _entry_of(cache_dir, lambda: _fn(2.0))
    assert cache.read_entry(path.stem) is not None
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", path.stat().st_size - 1)
    assert cache.read_entry(path.stem) is None


# --------------------------------------------------------------------------- IR entries share the format

def test_ir_entries_are_authenticated_and_bound(cache_dir):
    from codegen import jit
    header = jit.module_header()

    def ir(c):
        return (f'target triple = "{header[0]}"\ntarget datalayout = "{header[1]}"\n'
                f"define double @f(double %x) {{\n  %y = fmul double %x, {c:e}\n  ret double %y\n}}\n")
    a, b = jit.CompiledModule(ir(2.0)), jit.CompiledModule(ir(3.0))
    assert not a.cache_hit and not b.cache_hit
    pa = cache_dir / cache.ir_key(ir(2.0))[:2] / (cache.ir_key(ir(2.0)) + ".o")
    pb = cache_dir / cache.ir_key(ir(3.0))[:2] / (cache.ir_key(ir(3.0)) + ".o")
    pa.write_bytes(pb.read_bytes())
    assert jit.CompiledModule(ir(2.0)).cache_hit is False
    assert jit.CompiledModule(ir(2.0)).cache_hit is True
