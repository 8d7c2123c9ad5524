"""MNIST loading, as the Theano tutorial's `load_data` (logistic_sgd.py), without surprises.

`load_data(dataset)` accepts:

* ``'mnist10k'`` -- 10,000 real MNIST digits shipped inside symcnn (IDX files in
  ``symcnn/data/mnist10k``), split 8000 train / 1000 validation / 1000 test;
* a path to a ``mnist.pkl.gz``-style gzip'd pickle holding
  ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``;
* a folder holding LeCun's four IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each gzip'd (``.gz``) or raw). The validation set is carved from the end of the
  training file: 10000 digits for the official 60000, else 1/9 of it.

It returns the tutorial's ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]``
with x a floatX shared matrix in [0, 1] and y ``T.cast(shared_y, 'int32')``.

Nothing is fetched from the network unless ``download=True`` and the dataset is named
``'mnist.pkl.gz'`` (the tutorial's file). A download goes over https only, to a temporary
file, and is moved into place only if its SHA-256 equals the one pinned in
``KNOWN_DOWNLOADS``; a name without a pinned hash is never downloaded. Pickles are read
with a restricted unpickler (``SafeArrayUnpickler``) that builds only numpy arrays, dtypes
and Python containers, so a planted pickle cannot run code.
"""
import collections
import gzip
import hashlib
import math
import os
import pickle
import tempfile
import zlib
from pathlib import Path

import numpy

from .config import config

__all__ = ["DatasetError", "load_data", "load_arrays", "EMBEDDED_DIR", "MNIST_URL", "KNOWN_DOWNLOADS",
           "SafeArrayUnpickler"]

EMBEDDED_NAME = "mnist10k"
EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / EMBEDDED_NAME
MNIST_URL = "https://www.iro.umontreal.ca/~lisa/deep/data/mnist/mnist.pkl.gz"

Download = collections.namedtuple("Download", "url sha256 note")

# The files load_data(download=True) may fetch, each with the SHA-256 it must have. A file
# whose sha256 is None is refused: nothing unverified is ever written where load_data reads.
# The tutorial's mnist.pkl.gz (16,168,813 bytes) is published with the MD5
# a02cd19f81d51c426d7ca14024243ce9, but no SHA-256 of it could be confirmed from a source we
# trust, and MD5 is not a pin we accept; until one is recorded here, download it yourself,
# check it, and pass its path.
KNOWN_DOWNLOADS = {
    "mnist.pkl.gz": Download(MNIST_URL, None, "published MD5: a02cd19f81d51c426d7ca14024243ce9"),
}
DOWNLOAD_DIR = Path(os.path.expanduser("~")) / ".cache" / "symcnn" / "datasets"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: numpy.uint8, 0x09: numpy.int8, 0x0B: numpy.dtype(">i2"), 0x0C: numpy.dtype(">i4"),
               0x0D: numpy.dtype(">f4"), 0x0E: numpy.dtype(">f8")}
_FORMATS_HELP = ("load_data reads 'mnist10k' (the digits shipped with symcnn), a mnist.pkl.gz-style gzip'd "
                 "pickle ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), or a folder holding "
                 + ", ".join(f"{n}[.gz]" for n in IDX_FILES.values()))


class DatasetError(ValueError):
    """A dataset file is missing, truncated or not in the expected format."""


# --------------------------------------------------------------------------- public API

def load_data(dataset=EMBEDDED_NAME, borrow=True, validation_size=None, download=False):
    """Load MNIST into shared variables, as the Theano tutorial's `load_data`.

    Returns ``[(train_set_x, train_set_y), (valid_set_x, valid_set_y), (test_set_x, test_set_y)]``:
    x is ``theano.shared(numpy.asarray(x, dtype=floatX), borrow=borrow)`` and y is
    ``T.cast(theano.shared(numpy.asarray(y, dtype=floatX), borrow=borrow), 'int32')`` (labels
    are stored as floats and cast symbolically, exactly as the tutorial's shared_dataset does).
    """
    arrays = load_arrays(dataset, validation_size=validation_size, download=download)
    return [_shared_dataset(xy, borrow=borrow) for xy in arrays]


def load_arrays(dataset=EMBEDDED_NAME, validation_size=None, download=False):
    """Load MNIST as numpy arrays: ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``.

    x is a floatX ``[N, rows*cols]`` array in [0, 1]; y an int64 ``[N]`` array of labels 0-9.
    See the module docstring for the accepted `dataset` values. `validation_size` sets how
    many digits are carved from the end of the IDX training file (default: 10000 for the
    official 60000, else round(n/9)); a pickle's split is fixed, so it must then be None.
    """
    path = _resolve(dataset, download)
    if path.is_dir():
        sets = _load_idx_folder(path, validation_size)
    else:
        if validation_size is not None:
            raise ValueError(f"validation_size={validation_size!r}: the pickle {path} already holds a fixed "
                             f"train/valid/test split; validation_size only applies to IDX folders")
        sets = _load_pickle(path)
    return tuple(sets)


# --------------------------------------------------------------------------- resolving names

def _resolve(dataset, download):
    if isinstance(dataset, (list, tuple)):
        raise TypeError("load_data(dataset): pass a name or a path, not a sequence")
    name = os.fspath(dataset)
    if name == EMBEDDED_NAME:
        if not EMBEDDED_DIR.is_dir():
            raise DatasetError(f"the embedded dataset folder {EMBEDDED_DIR} is missing; symcnn was installed "
                               f"without its package data (symcnn/data/mnist10k/*)")
        return EMBEDDED_DIR
    path = Path(os.path.expanduser(name))
    candidates = [path]
    if path.parent == Path(".") and not path.exists():
        # The tutorial also looks next to the code, in ../data/; we look in symcnn's data
        # folder and in the download cache.
        candidates += [EMBEDDED_DIR.parent / name, DOWNLOAD_DIR / name]
    for c in candidates:
        if c.exists():
            return c
    if path.name in KNOWN_DOWNLOADS and download:
        target = path if path.parent != Path(".") else DOWNLOAD_DIR / path.name
        known = KNOWN_DOWNLOADS[path.name]
        _download(known.url, target, known.sha256, note=known.note)
        return target
    looked = ", ".join(str(c) for c in candidates)
    hint = ("; pass download=True to fetch it from " + MNIST_URL) if path.name == "mnist.pkl.gz" else ""
    raise DatasetError(f"dataset {name!r} not found (looked for: {looked}). {_FORMATS_HELP}. Nothing is "
                       f"downloaded unless download=True, which only fetches 'mnist.pkl.gz'{hint}")


def _download(origin, target, sha256, note="", opener=None):
    """Fetch `origin` (https only) into `target`, moved into place only if its SHA-256 is `sha256`.

    The bytes go to a temporary file next to the target; a short read, a length other than the
    Content-Length, or a hash mismatch deletes it and raises DatasetError, so nothing
    unverified or cut short ever stays where load_data looks."""
    from urllib.parse import urlsplit
    if urlsplit(origin).scheme != "https":
        raise DatasetError(f"refusing to download {origin}: only https URLs are fetched")
    if not sha256:
        raise DatasetError(f"refusing to download {origin}: symcnn has no pinned SHA-256 for {Path(target).name}, "
                           f"so it could not verify what it receives ({note}). Download it yourself, verify it, "
                           f"and pass its path to load_data")
    if opener is None:
        import urllib.request
        opener = urllib.request.urlopen
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    print("Downloading data from %s" % origin)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        h, got = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, opener(origin) as response:
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
        if length is not None and got != int(length):
            raise DatasetError(f"downloading {origin}: the transfer was cut short ({got} of {length} bytes); "
                               f"nothing was kept")
        if h.hexdigest() != sha256.lower():
            raise DatasetError(f"downloading {origin}: SHA-256 {h.hexdigest()} of the {got} bytes received is not "
                               f"the pinned {sha256} (cut short, or not the expected file); nothing was kept")
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise DatasetError(f"downloading {origin} to {target} failed: {e}") from e
        raise


# --------------------------------------------------------------------------- pickles

def _numpy_global(*names):
    import importlib
    for name in names:
        mod, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    return None


def _safe_dtype(*args, **kwargs):
    dt = numpy.dtype(*args, **kwargs)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"dtype {dt} holds Python objects; only plain numeric arrays are read")
    return dt


def _safe_reconstruct(cls, *args):
    if cls is not numpy.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild an array of class {cls!r}")
    return _numpy_global("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")(cls, *args)


def _safe_frombuffer(buf, dtype, shape, order):
    return _numpy_global("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer")(
        buf, _safe_dtype(dtype), shape, order)


def _safe_scalar(dtype, *args):
    if not isinstance(dtype, numpy.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing a numpy scalar of dtype {dtype!r}")
    return _numpy_global("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")(dtype, *args)


def _latin1_bytes(text, encoding):
    # how protocol-2 pickles written by Python 3 store bytes (an array's raw data)
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed to turn latin1 text into bytes")
    return text.encode("latin1")


class SafeArrayUnpickler(pickle.Unpickler):
    """Builds only numpy arrays and dtypes (through numpy's own reconstruct functions, never with
    Python objects inside) besides tuples, lists, dicts, numbers and strings: every other global a
    pickle names is refused, so loading a dataset pickle cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
        ("numpy.core.multiarray", "scalar"): _safe_scalar,
        ("numpy._core.multiarray", "scalar"): _safe_scalar,
        ("numpy", "ndarray"): numpy.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("builtins", "bytearray"): bytearray,
        ("__builtin__", "bytearray"): bytearray,
    }

    def find_class(self, module, name):
        f = self._ALLOWED.get((module, name))
        if f is None:
            raise pickle.UnpicklingError(f"the pickle names {module}.{name}; a dataset pickle may only hold "
                                         f"numpy arrays (refused, so that loading it cannot run code)")
        return f


def _read_bytes(path):
    """The file's bytes, gunzipped if it is gzip'd; DatasetError if truncated or corrupt."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e}") from e
    if raw[:2] != b"\x1f\x8b":
        if str(path).endswith(".gz"):
            raise DatasetError(f"{path}: expected a gzip file (name ends in .gz) but it does not start "
                               f"with the gzip magic bytes 1f 8b")
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise DatasetError(f"{path}: the gzip stream is truncated ({len(raw)} bytes on disk; "
                           f"the file was probably cut short while copying or downloading)") from e
    except (OSError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt gzip data: {e}") from e


def _not_a_pickle(path, e):
    hint = (f"; for IDX files pass the folder holding all four ({path.parent})"
            if "idx" in path.name.lower() else "")
    return DatasetError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); expected a "
                        f"mnist.pkl.gz-style gzip'd pickle of ((train_x, train_y), (valid_x, valid_y), "
                        f"(test_x, test_y)){hint}")


def _load_pickle(path):
    # Unpickled straight from the (decompressing) file: holding the whole decompressed pickle in
    # memory as well would double the peak for the full MNIST (about 220 MB of it).
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e}") from e
    with f:
        magic = f.read(2)
        f.seek(0)
        if magic != b"\x1f\x8b" and str(path).endswith(".gz"):
            raise DatasetError(f"{path}: expected a gzip file (name ends in .gz) but it does not start "
                               f"with the gzip magic bytes 1f 8b")
        stream = gzip.GzipFile(fileobj=f, mode="rb") if magic == b"\x1f\x8b" else f
        try:
            obj = SafeArrayUnpickler(stream, encoding="latin1").load()
        except EOFError as e:
            if stream is not f and "end-of-stream" in str(e):
                raise DatasetError(f"{path}: the gzip stream is truncated ({os.path.getsize(path)} bytes on "
                                   f"disk; the file was probably cut short while copying or downloading)") from e
            raise _not_a_pickle(path, e) from e
        except (zlib.error, gzip.BadGzipFile) as e:
            raise DatasetError(f"{path}: corrupt gzip data: {e}") from e
        except Exception as e:  # noqa: BLE001 -- any unpickling failure means "not our format"
            raise _not_a_pickle(path, e) from e
    layout = ("((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with x a float array [N, 784] "
              "in [0, 1] and y integer labels [N] in 0-9")
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        what = f"a {type(obj).__name__}" + (f" of length {len(obj)}" if hasattr(obj, "__len__") else "")
        raise DatasetError(f"{path}: the pickle holds {what}; expected {layout}")
    sets = []
    for part, xy in zip(("train", "valid", "test"), obj):
        if not isinstance(xy, (tuple, list)) or len(xy) != 2:
            raise DatasetError(f"{path}: the {part} set is a {type(xy).__name__}, not an (x, y) pair; "
                               f"expected {layout}")
        try:
            x, y = numpy.asarray(xy[0]), numpy.asarray(xy[1])
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"{path}: the {part} set's x / y are not arrays ({e}); expected {layout}") from e
        sets.append(_check_xy(path, part, x, y, layout))
    return sets


def _check_xy(path, part, x, y, layout):
    if x.ndim != 2:
        raise DatasetError(f"{path}: {part}_x has shape {x.shape}; expected a 2-d [N, pixels] array "
                           f"(images flattened row-major), i.e. {layout}")
    if y.ndim != 1:
        raise DatasetError(f"{path}: {part}_y has shape {y.shape}; expected a 1-d array of labels")
    if len(x) != len(y):
        raise DatasetError(f"{path}: {part} set has {len(x)} images but {len(y)} labels")
    if x.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: {part}_x has dtype {x.dtype}; expected floats in [0, 1]")
    if x.size:
        lo, hi = x.min(), x.max()
        if x.dtype.kind == "f" and not (numpy.isfinite(lo) and numpy.isfinite(hi)):
            raise DatasetError(f"{path}: {part}_x contains NaN or infinite pixels")
        if lo < 0 or hi > 1:
            hint = " (raw 0-255 bytes? divide by 255)" if hi <= 255 and lo >= 0 else ""
            raise DatasetError(f"{path}: {part}_x pixels range over [{lo}, {hi}]; expected values in "
                               f"[0, 1]{hint}")
    x = numpy.asarray(x, dtype=config.floatX)
    return x, _check_labels(path, part, y)


def _check_labels(path, part, y):
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or (y.size and not numpy.all(numpy.floor(y) == y)):
            raise DatasetError(f"{path}: {part}_y has dtype {y.dtype} with non-integer values; "
                               f"expected integer labels 0-9")
    if y.size and (y.min() < 0 or y.max() > 9):
        bad = y[(y < 0) | (y > 9)]
        raise DatasetError(f"{path}: {part}_y has labels out of range 0-9 (e.g. {bad[0]!r}; "
                           f"{bad.size} of {y.size} bad)")
    return y.astype(numpy.int64)


# --------------------------------------------------------------------------- IDX

def _find_idx(folder, stem):
    names = [stem, stem + ".gz"]
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte, as some mirrors name them
    names += [dotted, dotted + ".gz"]
    for n in names:
        p = folder / n
        if p.is_file():
            return p
    return None


def _read_idx(path, expect_ndim):
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: only {len(data)} bytes; an IDX file starts with a 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    expected = 0x0800 + expect_ndim
    kind = "images (idx3)" if expect_ndim == 3 else "labels (idx1)"
    if magic != expected:
        raise DatasetError(f"{path}: wrong IDX magic number 0x{magic:08x}; expected 0x{expected:08x} for "
                           f"{kind} (unsigned bytes, {expect_ndim} dimension{'s' * (expect_ndim > 1)})"
                           + (" -- is this a gzip file without the .gz ending, or the wrong file?"
                              if data[:2] == b"\x1f\x8b" else ""))
    header = 4 + 4 * expect_ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(expect_ndim))
    n = math.prod(dims)   # Python ints: a header of huge dimensions cannot wrap around
    if len(data) - header != n:
        state = "truncated" if len(data) - header < n else "longer than its header says"
        raise DatasetError(f"{path}: IDX file is {state}: the header gives shape {dims} = {n} bytes of data, "
                           f"but {len(data) - header} follow")
    return numpy.frombuffer(data, dtype=numpy.uint8, count=n, offset=header).reshape(dims)


def _load_idx_folder(folder, validation_size):
    paths = {k: _find_idx(folder, stem) for k, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DatasetError(f"{folder}: missing IDX file{'s' * (len(missing) > 1)} "
                           + ", ".join(f"{m}[.gz]" for m in missing)
                           + ". An IDX dataset folder needs all four of: "
                           + ", ".join(f"{n}[.gz]" for n in IDX_FILES.values())
                           + " (gzip'd or raw). Nothing is downloaded unless download=True, which only "
                             "fetches 'mnist.pkl.gz'")
    arrays = {}
    for key, p in paths.items():
        arrays[key] = _read_idx(p, 3 if key.endswith("images") else 1)
    out = {}
    for part in ("train", "test"):
        imgs, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if len(imgs) != len(labels):
            raise DatasetError(f"{paths[part + '_images']} holds {len(imgs)} images but "
                               f"{paths[part + '_labels']} holds {len(labels)} labels; they must match")
        y = _check_labels(paths[part + "_labels"], part, labels)
        x = imgs.reshape(len(imgs), -1).astype(config.floatX)
        x /= numpy.asarray(255, dtype=config.floatX)
        out[part] = (x, y)
    train_x, train_y = out["train"]
    n = len(train_x)
    if validation_size is None:
        validation_size = 10000 if n == 60000 else int(round(n / 9.0))
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, numpy.integer)):
        raise TypeError(f"validation_size must be an int, got {validation_size!r}")
    if not 0 < validation_size < n:
        raise ValueError(f"validation_size={validation_size} must be between 1 and {n - 1} "
                         f"({paths['train_images']} holds {n} digits)")
    cut = n - validation_size
    # Views, not copies: the tutorial's full 60000x784 set then costs memory once.
    return [(train_x[:cut], train_y[:cut]), (train_x[cut:], train_y[cut:]), out["test"]]


# --------------------------------------------------------------------------- shared variables

def _shared_dataset(data_xy, borrow=True):
    """The tutorial's shared_dataset: both x and y are stored as floatX; y is cast to int32."""
    from .compile.shared import shared
    from .tensor import cast
    data_x, data_y = data_xy
    shared_x = shared(numpy.asarray(data_x, dtype=config.floatX), borrow=borrow)
    shared_y = shared(numpy.asarray(data_y, dtype=config.floatX), borrow=borrow)
    return shared_x, cast(shared_y, "int32")
