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
``'mnist.pkl.gz'`` (the tutorial's file).
"""
import gzip
import os
import pickle
import zlib
from pathlib import Path

import numpy

from .config import config

__all__ = ["DatasetError", "load_data", "load_arrays", "EMBEDDED_DIR", "MNIST_URL"]

EMBEDDED_NAME = "mnist10k"
EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / EMBEDDED_NAME
MNIST_URL = "http://www.iro.umontreal.ca/~lisa/deep/data/mnist/mnist.pkl.gz"
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
    if path.name == "mnist.pkl.gz" and download:
        target = path if path.parent != Path(".") else DOWNLOAD_DIR / path.name
        _download(MNIST_URL, target)
        return target
    looked = ", ".join(str(c) for c in candidates)
    hint = ("; pass download=True to fetch it from " + MNIST_URL) if path.name == "mnist.pkl.gz" else ""
    raise DatasetError(f"dataset {name!r} not found (looked for: {looked}). {_FORMATS_HELP}. Nothing is "
                       f"downloaded unless download=True, which only fetches 'mnist.pkl.gz'{hint}")


def _download(origin, target):
    import urllib.request
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    print("Downloading data from %s" % origin)
    tmp = target.with_name(target.name + ".part")
    try:
        urllib.request.urlretrieve(origin, tmp)
        os.replace(tmp, target)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise DatasetError(f"downloading {origin} to {target} failed: {e}") from e


# --------------------------------------------------------------------------- pickles

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
            obj = pickle.load(stream, encoding="latin1")
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
    n = int(numpy.prod(dims))
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
