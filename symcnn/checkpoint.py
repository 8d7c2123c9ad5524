"""symcnn's own pickled files (training checkpoints and saved models), written atomically.

A file holds ``{"symcnn": kind, "version": FORMAT_VERSION, "sha256": digest, "payload": bytes}``
pickled, where ``payload`` is the pickled content (parameters, state, ...) and ``digest`` its
SHA-256: a flipped bit in a weight is reported, naming the file, before anything is
unpickled from it (version-1 files, without the checksum, are still read). It is written to a
temporary file in the target's folder and moved over the target with ``os.replace``, so a
crash or Ctrl-C mid-write never leaves a half-written file behind. Reading checks the wrapper
and names the file in every error. The checksum detects damage, not tampering: like any
pickle, only load files you trust.
"""
import hashlib
import os
import pickle
import tempfile

__all__ = ["FORMAT_VERSION", "SymcnnFileError", "write_file", "read_file"]

FORMAT_VERSION = 2


class SymcnnFileError(ValueError):
    """A checkpoint or model file is missing, truncated, or not the expected symcnn file."""


def write_file(path, kind, payload):
    """Pickle `payload` as a symcnn `kind` file ('checkpoint' or 'model') at `path`, atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump({"symcnn": kind, "version": FORMAT_VERSION, "sha256": hashlib.sha256(data).hexdigest(),
                         "payload": data}, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_file(path, kind):
    """The payload of the symcnn `kind` file at `path`; SymcnnFileError naming the file if it is not one."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SymcnnFileError(f"{path}: cannot read the symcnn {kind} file: {e.strerror or e}") from e
    try:
        obj = pickle.loads(data)
    except Exception as e:  # noqa: BLE001 -- any unpickling failure means "not a good file"
        if data[:1] != b"\x80":
            what = f"not a symcnn {kind} file (not a pickle)"
        elif isinstance(e, EOFError) or "truncated" in str(e):
            what = f"truncated ({len(data)} bytes; was it cut short while being written or copied?)"
        else:
            what = "cannot be unpickled"
        raise SymcnnFileError(f"{path}: {what}: {type(e).__name__}: {e}") from e
    if not (isinstance(obj, dict) and "symcnn" in obj and "payload" in obj):
        raise SymcnnFileError(f"{path}: not a symcnn {kind} file (it unpickles to a {type(obj).__name__}; "
                              f"save it with symcnn.training.save_model / a checkpoint_path=)")
    if obj["symcnn"] != kind:
        raise SymcnnFileError(f"{path}: is a symcnn {obj['symcnn']} file, not a {kind} file")
    if obj.get("version") == 1:
        return obj["payload"]   # written before files carried a checksum
    if obj.get("version") != FORMAT_VERSION:
        raise SymcnnFileError(f"{path}: symcnn {kind} format version {obj.get('version')!r}; this symcnn reads "
                              f"versions 1 and {FORMAT_VERSION}")
    data = obj["payload"]
    if not isinstance(data, bytes) or hashlib.sha256(data).hexdigest() != obj.get("sha256"):
        raise SymcnnFileError(f"{path}: the {kind} file is damaged: the SHA-256 of its contents (the saved "
                              f"parameters and state) does not match the one stored when it was written")
    try:
        return pickle.loads(data)
    except Exception as e:  # noqa: BLE001
        raise SymcnnFileError(f"{path}: the {kind} file's contents cannot be unpickled: {type(e).__name__}: {e}") from e
