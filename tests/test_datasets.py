"""symcnn.datasets: the embedded mnist10k digits, pickles, IDX folders and their errors."""
import functools
import gzip
import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import symcnn as theano
from symcnn import datasets
from symcnn.datasets import EMBEDDED_DIR, DatasetError, load_arrays, load_data

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'mnist10k'
SHARED_PKL = SHARED / 'mnist10k.pkl.gz'
STEMS = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']
SHA256 = {
    't10k-images-idx3-ubyte.gz': '476e133389f46f889f4b3a7ffe2e94cf01eecd0e15afa87ee2bbff8f374d651f',
    't10k-labels-idx1-ubyte.gz': 'b4b0a7428e79c3fb0f9efdc13829683aa0a69562778210493d52321cd5718363',
    'train-images-idx3-ubyte.gz': 'd6f194ab80b07e321782cd3c21880bfc3e928d551f939552ccc15e0e6bffc7a6',
    'train-labels-idx1-ubyte.gz': 'bd8cb9fcf7183b5d7498130a0bf2220ea1cba6b56bc40b2558186cf926865b0a',
}


# ----------------------------------------------------------------------------- helpers

def idx_bytes(arr, magic_ndim=None):
    arr = np.asarray(arr, dtype=np.uint8)
    ndim = arr.ndim if magic_ndim is None else magic_ndim
    header = bytes([0, 0, 0x08, ndim]) + b''.join(int(d).to_bytes(4, 'big') for d in arr.shape)
    return header + arr.tobytes()


def make_digits(n, seed, rows=28, cols=28):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, size=(n, rows, cols)).astype(np.uint8), rng.randint(0, 10, size=n).astype(np.uint8)


def write_idx_folder(folder, n_train=18, n_test=5, gz=True, rows=28, cols=28):
    folder.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y = make_digits(n_train, 1, rows, cols)
    te_x, te_y = make_digits(n_test, 2, rows, cols)
    for stem, arr in zip(STEMS, [tr_x, tr_y, te_x, te_y]):
        data = idx_bytes(arr)
        if gz:
            (folder / (stem + '.gz')).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return (tr_x, tr_y), (te_x, te_y)


def write_pickle(path, obj, protocol=2):
    with gzip.open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def small_sets(seed=0, sizes=(12, 4, 4)):
    rng = np.random.RandomState(seed)
    return tuple((rng.rand(n, 784).astype(np.float32), rng.randint(0, 10, size=n).astype(np.int64)) for n in sizes)


# ----------------------------------------------------------------------------- the embedded set

def test_embedded_files_and_checksums():
    for name, digest in SHA256.items():
        path = EMBEDDED_DIR / name
        assert path.is_file(), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    readme = (EMBEDDED_DIR / 'README.md').read_text()
    assert 'CC BY-SA 3.0' in readme and 'LeCun' in readme and 'mnist' in readme
    assert not list(EMBEDDED_DIR.glob('*.pkl*'))


def test_embedded_load_data_shapes_dtypes_values():
    floatX = theano.config.floatX
    datasets = load_data('mnist10k')
    assert isinstance(datasets, list) and len(datasets) == 3
    sizes = [8000, 1000, 1000]
    fn_inputs = []
    for (x, y), n in zip(datasets, sizes):
        xv = x.get_value(borrow=True)
        assert isinstance(x, theano.SharedVariable)
        assert xv.shape == (n, 784) and xv.dtype == floatX
        assert xv.min() == 0.0 and xv.max() == 1.0
        # y is the tutorial's T.cast(shared_y, 'int32'): symbolic, over a floatX shared vector
        assert not isinstance(y, theano.SharedVariable)
        assert y.dtype == 'int32' and y.ndim == 1
        (shared_y,) = y.owner.inputs
        assert isinstance(shared_y, theano.SharedVariable) and shared_y.dtype == floatX
        yv = shared_y.get_value(borrow=True)
        assert yv.shape == (n,) and set(np.unique(yv)) == set(range(10))
        fn_inputs.append(y)
    # evaluating the cast gives int32 labels
    f = theano.function([], fn_inputs[2])
    labels = f()
    assert labels.dtype == np.int32 and labels.shape == (1000,)
    assert np.array_equal(labels, datasets[2][1].owner.inputs[0].get_value().astype(np.int32))


def test_embedded_default_and_borrow():
    arrays = load_arrays()
    datasets = load_data(borrow=True)
    assert np.array_equal(datasets[0][0].get_value(borrow=True), arrays[0][0])
    (tx, ty), (vx, vy), (sx, sy) = arrays
    assert tx.shape == (8000, 784) and vx.shape == (1000, 784) and sx.shape == (1000, 784)
    assert ty.dtype == np.int64 and ty.min() == 0 and ty.max() == 9
    # pixels are exactly k/255
    k = tx[:50] * 255
    assert np.allclose(k, np.round(k), atol=1e-4)


def test_embedded_validation_size_override():
    (tx, ty), (vx, vy), (sx, sy) = load_arrays('mnist10k', validation_size=3000)
    assert tx.shape[0] == 6000 and vx.shape[0] == 3000 and sx.shape[0] == 1000
    base = load_arrays('mnist10k')
    assert np.array_equal(vx[-1000:], base[1][0]) and np.array_equal(tx, base[0][0][:6000])


def test_embedded_split_equals_shared_pickle():
    if not SHARED_PKL.is_file():
        pytest.skip(f'{SHARED_PKL} not present (shared data folder is outside the repo)')
    with gzip.open(SHARED_PKL, 'rb') as f:
        ref = pickle.load(f, encoding='latin1')
    ours = load_arrays('mnist10k')
    from_pkl = load_arrays(str(SHARED_PKL))
    for (x, y), (rx, ry), (px, py) in zip(ours, ref, from_pkl):
        # the pickle stores float32 k/255; under floatX=float64 ours is the float64 k/255
        assert rx.dtype == np.float32
        assert np.array_equal(x.astype(np.float32), rx)
        assert np.array_equal(y, ry)
        assert np.array_equal(px, np.asarray(rx, dtype=px.dtype)) and np.array_equal(py, ry)


def test_shared_idx_folder_equals_embedded():
    if not (SHARED / 'train-images-idx3-ubyte.gz').is_file():
        pytest.skip(f'{SHARED} not present (shared data folder is outside the repo)')
    a = load_arrays(str(SHARED))
    b = load_arrays('mnist10k')
    for (x1, y1), (x2, y2) in zip(a, b):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


# ----------------------------------------------------------------------------- IDX folders

@pytest.mark.parametrize('gz', [True, False])
def test_idx_folder(tmp_path, gz):
    (tr_x, tr_y), (te_x, te_y) = write_idx_folder(tmp_path / 'd', n_train=18, n_test=5, gz=gz)
    (tx, ty), (vx, vy), (sx, sy) = load_arrays(tmp_path / 'd')
    # default validation: 1/9 of train, from the end
    assert tx.shape == (16, 784) and vx.shape == (2, 784) and sx.shape == (5, 784)
    assert tx.dtype == theano.config.floatX
    expected = tr_x.reshape(18, -1).astype(np.float64) / 255
    assert np.allclose(np.concatenate([tx, vx]), expected, atol=1e-7)
    assert np.array_equal(np.concatenate([ty, vy]), tr_y) and np.array_equal(sy, te_y)
    assert np.allclose(sx, te_x.reshape(5, -1) / 255.0, atol=1e-7)
    (tx, ty), (vx, vy), _ = load_arrays(tmp_path / 'd', validation_size=5)
    assert len(tx) == 13 and len(vx) == 5
    datasets = load_data(str(tmp_path / 'd'), validation_size=5)
    assert datasets[1][0].get_value().shape == (5, 784)


def test_idx_default_validation_size_for_60000_is_10000(tmp_path):
    # 60000 tiny 1x1 "images" keep the file small while exercising the standard 50000/10000 split
    write_idx_folder(tmp_path, n_train=60000, n_test=3, gz=False, rows=1, cols=1)
    (tx, _), (vx, _), (sx, _) = load_arrays(tmp_path)
    assert len(tx) == 50000 and len(vx) == 10000 and len(sx) == 3


def test_idx_bad_validation_size(tmp_path):
    write_idx_folder(tmp_path, n_train=9, n_test=2)
    with pytest.raises(ValueError, match='validation_size'):
        load_arrays(tmp_path, validation_size=9)
    with pytest.raises(ValueError, match='validation_size'):
        load_arrays(tmp_path, validation_size=0)


def test_idx_missing_file(tmp_path):
    write_idx_folder(tmp_path, gz=True)
    (tmp_path / 't10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(DatasetError) as e:
        load_arrays(tmp_path)
    msg = str(e.value)
    assert 't10k-labels-idx1-ubyte' in msg and str(tmp_path) in msg
    assert 'train-images-idx3-ubyte' in msg  # says which files are looked for
    assert 'download=True' in msg


def test_idx_truncated_gzip(tmp_path):
    write_idx_folder(tmp_path, gz=True)
    p = tmp_path / 'train-images-idx3-ubyte.gz'
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DatasetError, match='truncated') as e:
        load_arrays(tmp_path)
    assert str(p) in str(e.value)


def test_idx_truncated_raw(tmp_path):
    write_idx_folder(tmp_path, gz=False)
    p = tmp_path / 't10k-images-idx3-ubyte'
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match='truncated') as e:
        load_arrays(tmp_path)
    assert str(p) in str(e.value)


def test_idx_wrong_magic(tmp_path):
    write_idx_folder(tmp_path, gz=False)
    # swap: a labels file where the images file should be
    p = tmp_path / 'train-images-idx3-ubyte'
    p.write_bytes((tmp_path / 'train-labels-idx1-ubyte').read_bytes())
    with pytest.raises(DatasetError, match='magic') as e:
        load_arrays(tmp_path)
    assert str(p) in str(e.value) and '0x00000803' in str(e.value) and '0x00000801' in str(e.value)


def test_idx_count_mismatch(tmp_path):
    write_idx_folder(tmp_path, n_train=18, gz=True)
    p = tmp_path / 'train-labels-idx1-ubyte.gz'
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(17, dtype=np.uint8))))
    with pytest.raises(DatasetError, match='18 images but') as e:
        load_arrays(tmp_path)
    assert 'train-labels-idx1-ubyte.gz' in str(e.value) and '17 labels' in str(e.value)


def test_idx_labels_out_of_range(tmp_path):
    write_idx_folder(tmp_path, n_test=5, gz=True)
    p = tmp_path / 't10k-labels-idx1-ubyte.gz'
    p.write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 10, 3, 4], dtype=np.uint8))))
    with pytest.raises(DatasetError, match='out of range 0-9') as e:
        load_arrays(tmp_path)
    assert str(p) in str(e.value)


def test_idx_gz_name_but_not_gzip(tmp_path):
    write_idx_folder(tmp_path, gz=True)
    p = tmp_path / 'train-labels-idx1-ubyte.gz'
    p.write_bytes(gzip.decompress(p.read_bytes()))
    with pytest.raises(DatasetError, match='gzip') as e:
        load_arrays(tmp_path)
    assert str(p) in str(e.value)


# ----------------------------------------------------------------------------- pickles

@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_layout(tmp_path, protocol):
    sets = small_sets()
    p = write_pickle(tmp_path / 'mnist.pkl.gz', sets, protocol)
    arrays = load_arrays(str(p))
    for (x, y), (ex, ey) in zip(arrays, sets):
        assert np.array_equal(x, ex.astype(theano.config.floatX)) and np.array_equal(y, ey)
    datasets = load_data(p)
    assert [d[0].get_value().shape[0] for d in datasets] == [12, 4, 4]
    assert datasets[0][1].dtype == 'int32'


def test_pickle_lists_and_float64_are_accepted(tmp_path):
    sets = small_sets()
    as_lists = [[x.astype(np.float64), list(y)] for x, y in sets]
    p = write_pickle(tmp_path / 'm.pkl.gz', as_lists)
    arrays = load_arrays(p)
    assert arrays[0][0].dtype == theano.config.floatX and arrays[0][1].dtype == np.int64


def test_pickle_validation_size_is_rejected(tmp_path):
    p = write_pickle(tmp_path / 'm.pkl.gz', small_sets())
    with pytest.raises(ValueError, match='fixed'):
        load_arrays(p, validation_size=2)


@pytest.mark.parametrize('obj, pattern', [
    ({'train': 1}, 'holds a dict'),
    (((1, 2), (3, 4)), 'length 2'),
    ('layout', 'holds a str'),
])
def test_pickle_wrong_layout(tmp_path, obj, pattern):
    p = write_pickle(tmp_path / 'bad.pkl.gz', obj)
    with pytest.raises(DatasetError, match=pattern) as e:
        load_arrays(p)
    assert str(p) in str(e.value) and '(train_x, train_y)' in str(e.value)


def test_pickle_set_not_a_pair(tmp_path):
    sets = list(small_sets())
    sets[1] = (sets[1][0], sets[1][1], None)
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match='valid set') as e:
        load_arrays(p)
    assert str(p) in str(e.value)


def test_pickle_x_not_2d(tmp_path):
    sets = list(small_sets())
    sets[0] = (sets[0][0].reshape(12, 28, 28), sets[0][1])
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match=r'train_x has shape \(12, 28, 28\)'):
        load_arrays(p)


def test_pickle_count_mismatch(tmp_path):
    sets = list(small_sets())
    sets[2] = (sets[2][0], sets[2][1][:3])
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match='test set has 4 images but 3 labels') as e:
        load_arrays(p)
    assert str(p) in str(e.value)


def test_pickle_labels_out_of_range(tmp_path):
    sets = list(small_sets())
    y = sets[0][1].copy()
    y[3] = -1
    sets[0] = (sets[0][0], y)
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match='train_y has labels out of range 0-9') as e:
        load_arrays(p)
    assert str(p) in str(e.value)


def test_pickle_non_integer_labels(tmp_path):
    sets = list(small_sets())
    sets[1] = (sets[1][0], sets[1][1] + 0.5)
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match='non-integer'):
        load_arrays(p)


def test_pickle_pixels_out_of_range(tmp_path):
    sets = list(small_sets())
    sets[0] = (sets[0][0] * 255, sets[0][1])
    p = write_pickle(tmp_path / 'bad.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match=r'pixels range over .*expected values in \[0, 1\].*255') as e:
        load_arrays(p)
    assert str(p) in str(e.value)
    sets = list(small_sets())
    x = sets[2][0].copy()
    x[0, 0] = np.nan
    sets[2] = (x, sets[2][1])
    p = write_pickle(tmp_path / 'nan.pkl.gz', tuple(sets))
    with pytest.raises(DatasetError, match='NaN'):
        load_arrays(p)


def test_pickle_truncated(tmp_path):
    p = write_pickle(tmp_path / 'mnist.pkl.gz', small_sets())
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DatasetError, match='truncated') as e:
        load_arrays(p)
    assert str(p) in str(e.value)


def test_not_a_pickle(tmp_path):
    p = tmp_path / 'junk.pkl.gz'
    p.write_bytes(gzip.compress(b'this is not a pickle'))
    with pytest.raises(DatasetError, match='not a readable pickle') as e:
        load_arrays(p)
    assert str(p) in str(e.value)


def test_plain_uncompressed_pickle(tmp_path):
    p = tmp_path / 'mnist.pkl'
    with open(p, 'wb') as f:
        pickle.dump(small_sets(), f, protocol=2)
    assert load_arrays(p)[0][0].shape == (12, 784)


# ----------------------------------------------------------------------------- missing / download

def test_missing_file_no_network(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError('load_data touched the network')

    monkeypatch.setattr(urllib.request, 'urlretrieve', no_network)
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    missing = tmp_path / 'nothere' / 'mnist.pkl.gz'
    with pytest.raises(DatasetError) as e:
        load_data(str(missing))
    msg = str(e.value)
    assert str(missing) in msg and 'download=True' in msg and 'train-images-idx3-ubyte' in msg
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match='download=True'):
        load_data('mnist.pkl.gz')
    with pytest.raises(DatasetError, match='not found'):
        load_data('other.pkl.gz', download=True)  # only mnist.pkl.gz is ever downloaded
    assert issubclass(DatasetError, ValueError)


class FakeResponse(io.BytesIO):
    """What urlopen returns: read() in chunks, headers (with or without Content-Length)."""

    def __init__(self, data, length="auto"):
        super().__init__(data)
        self.headers = {} if length is None else {"Content-Length": str(len(data) if length == "auto" else length)}


def _fake_opener(payload, calls, length="auto"):
    def opener(url):
        calls.append(url)
        return FakeResponse(payload, length)
    return opener


def _pin(monkeypatch, payload):
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(datasets.KNOWN_DOWNLOADS, "mnist.pkl.gz",
                        datasets.Download(datasets.MNIST_URL, sha, "test pin"))
    return sha


def _pickle_bytes(tmp_path, sets):
    return write_pickle(tmp_path / "src.pkl.gz", sets).read_bytes()


def test_download_is_https_verified_and_kept(tmp_path, monkeypatch, capsys):
    payload = _pickle_bytes(tmp_path, small_sets())
    _pin(monkeypatch, payload)
    calls = []
    monkeypatch.setattr(datasets, "_download", functools.partial(datasets._download,
                                                                 opener=_fake_opener(payload, calls)))
    target = tmp_path / 'data' / 'mnist.pkl.gz'
    arrays = load_arrays(str(target), download=True)
    assert calls == ['https://www.iro.umontreal.ca/~lisa/deep/data/mnist/mnist.pkl.gz']
    assert 'Downloading data from https://' in capsys.readouterr().out
    assert target.is_file() and arrays[0][0].shape == (12, 784)
    load_arrays(str(target), download=True)  # now present: no second download
    assert len(calls) == 1
    assert [p.name for p in target.parent.iterdir()] == ['mnist.pkl.gz']


@pytest.mark.parametrize("damage", ["other_file", "cut_short_no_length", "cut_short_with_length"])
def test_download_that_does_not_verify_is_deleted(tmp_path, monkeypatch, damage):
    good = _pickle_bytes(tmp_path, small_sets())
    _pin(monkeypatch, good)
    if damage == "other_file":
        got, length = _pickle_bytes(tmp_path, small_sets(seed=1)), "auto"
    elif damage == "cut_short_no_length":
        got, length = good[: len(good) // 2], None
    else:
        got, length = good[: len(good) // 2], len(good)
    target = tmp_path / 'data' / 'mnist.pkl.gz'
    with pytest.raises(DatasetError, match="nothing was kept"):
        datasets._download(datasets.MNIST_URL, target, datasets.KNOWN_DOWNLOADS["mnist.pkl.gz"].sha256,
                           opener=_fake_opener(got, []), note="")
    assert list(target.parent.iterdir()) == []      # neither the target nor a temporary file


def test_download_without_pinned_hash_or_over_http_is_refused(tmp_path):
    calls = []
    target = tmp_path / 'mnist.pkl.gz'
    assert datasets.KNOWN_DOWNLOADS["mnist.pkl.gz"].url.startswith("https://")
    with pytest.raises(DatasetError, match="no pinned SHA-256"):
        datasets._download(datasets.MNIST_URL, target, None, opener=_fake_opener(b"x", calls))
    with pytest.raises(DatasetError, match="only https"):
        datasets._download("http://example.org/mnist.pkl.gz", target, "0" * 64, opener=_fake_opener(b"x", calls))
    assert calls == [] and not target.exists()


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo planted",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    sets = small_sets()
    planted = ((sets[0][0], _Boom()), sets[1], sets[2])
    p = write_pickle(tmp_path / 'mnist.pkl.gz', planted)
    with pytest.raises(DatasetError, match="posix.system|os.system"):
        load_arrays(p)


def test_pickle_of_object_arrays_is_refused(tmp_path):
    sets = small_sets()
    objs = np.empty(3, dtype=object)
    p = write_pickle(tmp_path / 'mnist.pkl.gz', ((sets[0][0], objs), sets[1], sets[2]))
    with pytest.raises(DatasetError, match="Python objects"):
        load_arrays(p)


def test_idx_header_whose_dimensions_overflow(tmp_path):
    # 2**31 * 2**31 * 4 = 2**64 wraps to 0 in int64 arithmetic: a header-only file then looked complete
    dims = (2 ** 31, 2 ** 31, 4)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes((0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims))
    with pytest.raises(DatasetError, match="truncated"):
        datasets._read_idx(p, 3)
