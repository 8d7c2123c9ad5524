import pytest

from symcnn.config import config


@pytest.fixture(autouse=True)
def general_kernels_for_open_sizes(monkeypatch):
    """The backend's tests run the kernels their graphs' declared sizes choose: a graph that leaves
    sizes open tests the general kernels, not a second compile for its arguments' sizes
    (compile/specialize.py, tested in tests/compile/test_specialize.py)."""
    monkeypatch.setattr(config, "specialize_shapes", False)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A compile cache of the test's own (SYMCNN_CACHE_DIR), empty at the start."""
    d = tmp_path / "symcnn-cache"
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(d))
    return d
