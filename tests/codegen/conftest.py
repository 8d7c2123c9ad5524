import pytest


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A compile cache of the test's own (SYMCNN_CACHE_DIR), empty at the start."""
    d = tmp_path / "symcnn-cache"
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(d))
    return d
