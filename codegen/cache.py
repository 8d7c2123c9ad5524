"""The on-disk compile cache: where it lives, whom it trusts, how entries are keyed and stored.

Trust model. An entry holds native code that this process will run, so the cache is only
used when no one but the current user can have written it:
  - the directory (default ~/.cache/symcnn, or SYMCNN_CACHE_DIR) must belong to the effective
    user and be writable by no one else, and each of its parents must belong to that user or
    to root and be writable by no one else (a root-owned sticky directory such as /tmp is
    accepted: others cannot rename or delete what is in it). Directories the cache creates
    are made 0700. Otherwise a warning names the directory, once, and functions are compiled
    without the cache;
  - every entry is authenticated with HMAC-SHA256 under a per-user secret key, the file
    `hmac-key` (32 random bytes, mode 0600) in the cache directory, created atomically on
    first use. A key file that is not a regular 0600 file of the user disables the cache;
  - every entry carries its own key, which the loader compares with the key it asked for: an
    entry copied over another one is not loaded;
  - entries are opened with O_NOFOLLOW and O_NONBLOCK and read only if they are regular
    files of the user no larger than MAX_ENTRY_BYTES (a symlink to /dev/zero or a FIFO is
    skipped at once).
An entry that fails any check is treated as absent: compiled again and overwritten.

Entry file: MAGIC | HMAC (32 bytes) | u32 key length | key | u32 metadata length |
metadata (JSON) | object file. The HMAC covers everything after it, and the magic.

Keys: a sha256 over KEY_MAGIC, the target description (codegen.jit.target_description), the
llvmlite / LLVM / symcnn versions (key_prefix_parts) and then either the IR text (IR entries,
`ir_key`) or, for function entries (`entry_hasher`), the source of the backend (its version),
the settings (codegen.options and the config, `settings_key`) and a description of the rewritten
graph and of the instrumentation fed by codegen.build.graph_key.
"""
import hashlib
import hmac
import json
import os
import stat
import struct
import tempfile
import threading
import warnings

MAGIC = b"SYMCNN-ENTRY3\n"
KEY_MAGIC_IR = b"SYMCNN-OBJ1\n"
KEY_MAGIC_FUNCTION = b"SYMCNN-FN2\n"
KEY_FILE = "hmac-key"
KEY_BYTES = 32
MAX_ENTRY_BYTES = 256 << 20     # far above any real entry (LeNet's train step: about 100 KiB)

_state = {}
_warned = set()
_lock = threading.Lock()


class UntrustedCacheError(Exception):
    """Why a cache directory is not used (the text goes into the warning)."""


# --------------------------------------------------------------------------- keys

def key_prefix_parts():
    """What every key covers besides the code itself: the target and the versions. The target
    description comes from codegen.jit (triple, CPU name and features)."""
    import llvmlite
    import llvmlite.binding as llvm

    import symcnn
    from . import jit
    return [jit.target_description().encode(), llvmlite.__version__.encode(),
            str(llvm.llvm_version_info).encode(), symcnn.__version__.encode()]


def ir_key(ir_text):
    """Key of an IR entry: the object file of exactly this IR text, compiled with LLVM's pipeline
    settings of now (codegen.options: O-level, unrolling, interleaving)."""
    from . import jit
    pipeline = repr(sorted(jit.pipeline_settings().items())).encode()
    h = hashlib.sha256()
    for part in [KEY_MAGIC_IR] + key_prefix_parts() + [pipeline, ir_text.encode()]:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def entry_hasher():
    """A sha256 already fed with what every function entry key shares; feed it the graph."""
    prefix = key_prefix_parts()   # the target compiled for now comes first: one base per target
    base = _state.get(("entry_base", prefix[0]))
    if base is None:
        base = hashlib.sha256()
        for part in [KEY_MAGIC_FUNCTION] + prefix + [_source_digest()]:
            base.update(part)
            base.update(b"\0")
        _state[("entry_base", prefix[0])] = base
    h = base.copy()
    h.update(settings_key())
    h.update(b"\0")
    return h


def _source_digest():
    """Hash of the Python source of the backend and of symcnn (lowerings call op methods):
    editing either invalidates function entries."""
    d = _state.get("source")
    if d is None:
        import symcnn
        h = hashlib.sha256()
        for pkg in (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(symcnn.__file__))):
            for root, dirs, files in os.walk(pkg):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                for name in sorted(files):
                    if name.endswith(".py"):
                        path = os.path.join(root, name)
                        h.update(os.path.relpath(path, os.path.dirname(pkg)).encode() + b"\0")
                        with open(path, "rb") as f:
                            h.update(f.read())
                        h.update(b"\0")
        d = _state["source"] = h.digest()
    return d


def settings_key():
    """Everything besides the graph and the instrumentation that may change the emitted code:
    codegen.options (target, threads, O-level, the backend's switches), the config and SYMCNN_*
    variables, and any lowering replaced at run time (the source hash cannot see those)."""
    from symcnn.config import config
    from .options import options
    # check_graph and specialize_shapes choose which graph is compiled (the graph is in the key), not
    # how one is
    conf = sorted((k, repr(v)) for k, v in vars(config).items()
                  if k not in ("compiledir", "check_graph", "specialize_shapes"))
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith("SYMCNN_") and k not in ("SYMCNN_CACHE_DIR", "SYMCNN_TRACE_REWRITES"))
    return repr((options.key(), conf, env, _replaced_lowerings())).encode()


def _replaced_lowerings():
    """The lowerings, error-message hooks and scalar lowerings (lower.lower, kernels.elemwise.SCALAR)
    that are functions from outside the backend: a lowering replaced at run time."""
    import types

    from .kernels.elemwise import SCALAR
    from .lower import lower
    out = []
    for name, table in (("lower", lower.table), ("error_message", lower.error_messages), ("scalar", SCALAR)):
        for cls, entry in list(table.items()):
            for f in (entry if isinstance(entry, tuple) else (entry,)):
                if isinstance(f, types.FunctionType) and not f.__module__.startswith("codegen"):
                    out.append((name, cls.__module__, cls.__qualname__, f.__module__, f.__qualname__))
    return sorted(out)


# --------------------------------------------------------------------------- where, and whether to trust it

def configured_dir():
    """The cache directory the settings name (SYMCNN_CACHE_DIR, else config.compiledir), or None
    if the cache is switched off ('none', 'off' or empty)."""
    from symcnn.config import config
    d = os.environ.get("SYMCNN_CACHE_DIR") or config.compiledir
    return None if d in ("", "none", "off") else os.path.abspath(os.path.expanduser(d))


def cache_dir():
    """The cache directory if it is configured and trusted (created 0700 if missing), else None."""
    store = _store()
    return store[0] if store else None


def _store():
    """(directory, secret key) of the usable cache, or None (switched off, or not trusted: then
    warn once per directory)."""
    d = configured_dir()
    if d is None:
        return None
    try:
        _make_private_dirs(d)
        _check_trusted(d)
        return d, _secret_key(d)
    except UntrustedCacheError as e:
        reason = str(e)
    except OSError as e:
        reason = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    with _lock:
        if d not in _warned:
            _warned.add(d)
            warnings.warn(f"symcnn: not using the compile cache directory {d}: {reason}; compiling without "
                          f"the cache (set SYMCNN_CACHE_DIR to a directory of your own, or to 'none')",
                          RuntimeWarning, stacklevel=3)
    return None


def _make_private_dirs(d):
    """Create the missing components of `d`, each 0700 (os.makedirs gives parents the umask's mode)."""
    missing = []
    p = d
    while not os.path.lexists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass


def _check_trusted(d):
    """Raise UntrustedCacheError unless `d` and its parents are safe to load native code from."""
    euid = os.geteuid()
    st = os.lstat(d)
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(d)
        if st.st_uid != euid:
            raise UntrustedCacheError(f"it is a symbolic link to a directory owned by uid {st.st_uid}")
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedCacheError("it is not a directory")
    if st.st_uid != euid:
        raise UntrustedCacheError(f"it belongs to uid {st.st_uid}, not to you (uid {euid})")
    if st.st_mode & 0o022:
        raise UntrustedCacheError(f"it is writable by its group or by others (mode {stat.S_IMODE(st.st_mode):04o})")
    # the parents of the path as given (whoever can write them can swap a symlink in it) and
    # of the directory it resolves to
    parents = set()
    for p in (os.path.abspath(d), os.path.realpath(d)):
        while os.path.dirname(p) != p:
            p = os.path.dirname(p)
            parents.add(p)
    for p in sorted(parents):
        st = os.stat(p)
        if st.st_uid not in (euid, 0):
            raise UntrustedCacheError(f"its parent {p} belongs to uid {st.st_uid}, neither you nor root")
        sticky_root = st.st_uid == 0 and st.st_mode & stat.S_ISVTX
        if st.st_mode & 0o022 and not sticky_root:
            raise UntrustedCacheError(f"its parent {p} is writable by its group or by others "
                                      f"(mode {stat.S_IMODE(st.st_mode):04o})")


def _secret_key(d):
    """The per-user HMAC key in `d`, created (atomically, 0600) if absent."""
    path = os.path.join(d, KEY_FILE)
    for _ in range(2):
        try:
            return _read_key(path)
        except FileNotFoundError:
            pass
        # Written under a private temporary name (mkstemp: O_EXCL, 0600), then published with
        # link(), which, like O_EXCL, fails if the name exists: readers never see a half-written
        # key, and of two processes creating it at once, both end up with the first one's.
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-key-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return _read_key(path)


def _read_key(path):
    data = _read_private_file(path, KEY_BYTES)
    if data is None or len(data) != KEY_BYTES:
        raise UntrustedCacheError(f"its key file {path} is not a regular file of {KEY_BYTES} bytes")
    return data


def _read_private_file(path, limit, dir_fd=None):
    """The bytes of `path` if it is a regular file of ours, not a symlink, readable by no one else
    when it is the key, and at most `limit` bytes; None if it is not such a file.

    FileNotFoundError if it does not exist; UntrustedCacheError for a key file of the wrong mode."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError:
        return None  # a symlink (ELOOP), a FIFO without writer on some systems, no permission
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > limit:
            if os.path.basename(path) == KEY_FILE:
                raise UntrustedCacheError(f"its key file {path} is not a regular file of yours")
            return None
        if os.path.basename(path) == KEY_FILE and stat.S_IMODE(st.st_mode) != 0o600:
            raise UntrustedCacheError(f"its key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, not 0600")
        chunks, left = [], st.st_size + 1   # one byte more: a file that grew is rejected
        while left > 0:
            c = os.read(fd, min(left, 1 << 20))
            if not c:
                break
            chunks.append(c)
            left -= len(c)
        data = b"".join(chunks)
        return data if len(data) <= min(st.st_size, limit) else None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- entries

def _entry_location(d, key):
    return os.path.join(d, key[:2]), key + ".o"


def _mac(secret, body):
    return hmac.new(secret, MAGIC + body, hashlib.sha256).digest()


def read_entry(key):
    """(metadata dict, object bytes) of the entry stored under `key`, or None: absent, cache off
    or untrusted, not a regular file of ours, too large, corrupt, not authenticated by our key,
    or stored for another key."""
    store = _store()
    if store is None:
        return None
    d, secret = store
    sub, name = _entry_location(d, key)
    try:
        dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        data = _read_private_file(name, MAX_ENTRY_BYTES, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    head = len(MAGIC) + 32
    if data is None or not data.startswith(MAGIC) or len(data) < head + 8:
        return None
    body = data[head:]
    if not hmac.compare_digest(_mac(secret, body), data[len(MAGIC):head]):
        return None  # corrupt, or not written with this user's key
    try:
        (n,) = struct.unpack_from("<I", body, 0)
        stored_key = body[4:4 + n].decode("ascii")
        (m,) = struct.unpack_from("<I", body, 4 + n)
        meta = json.loads(body[8 + n:8 + n + m].decode())
    except (struct.error, ValueError):
        return None
    if stored_key != key:
        return None  # another function's entry under this name
    obj = body[8 + n + m:]
    return (meta, obj) if isinstance(meta, dict) and obj else None


def write_entry(key, meta, obj):
    """Store `obj` (and `meta`, a JSON-able dict) under `key`, atomically; nothing if the cache is
    off or untrusted, or the metadata does not serialise (the function is then compiled each time)."""
    store = _store()
    if store is None:
        return
    d, secret = store
    try:
        m = json.dumps(meta, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return
    k = key.encode("ascii")
    body = struct.pack("<I", len(k)) + k + struct.pack("<I", len(m)) + m + obj
    sub, name = _entry_location(d, key)
    _write_atomic(sub, name, MAGIC + _mac(secret, body) + body)


def read_object(key):
    """The object file of an IR entry (see ir_key), or None."""
    entry = read_entry(key)
    return entry[1] if entry is not None and entry[0].get("kind") == "ir" else None


def write_object(key, obj):
    write_entry(key, {"kind": "ir"}, obj)


def _write_atomic(sub, name, data):
    tmp = None
    try:
        try:
            os.mkdir(sub, 0o700)
        except FileExistsError:
            pass
        fd, tmp = tempfile.mkstemp(dir=sub, prefix=".tmp-")   # 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(sub, name))
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        # an unwritable cache only costs compile time
