"""codegen.options: the backend's settings in one object, hashed into the compile cache's key."""
import pytest

from codegen import cache
from codegen.options import Options, options
from symcnn.config import config


def _key():
    return cache.entry_hasher().hexdigest()


def test_lists_target_threads_o_level_and_switches():
    s = options.settings()
    assert s["target"] == (config.target_cpu, config.target_features)
    assert s["threads"] == config.num_threads
    for name in ("speed_level", "loop_unrolling", "loop_interleaving", "entry_unroll", "full_width_loops",
                 "packed_gemm", "gemm_min_parallel", "gemm_shared_driver", "min_parallel", "random_min_parallel_blocks"):
        assert name in s and repr(s[name]) in repr(options)


@pytest.mark.parametrize("name", [k for k, v in Options().settings().items() if k not in ("target", "threads")])
def test_every_switch_changes_the_key(monkeypatch, name):
    before = _key()
    value = getattr(options, name)
    monkeypatch.setattr(options, name, (not value) if isinstance(value, bool) else value + 1)
    assert _key() != before
    monkeypatch.undo()
    assert _key() == before


def test_the_target_changes_the_key(monkeypatch):
    before = _key()
    monkeypatch.setattr(config, "target_features", "-avx512f")
    assert _key() != before
    monkeypatch.undo()
    assert _key() == before


@pytest.mark.parametrize("flag", ["check_graph", "specialize_shapes"])
def test_graph_choosing_flags_do_not_change_the_key(monkeypatch, flag):
    before = _key()
    monkeypatch.setattr(config, flag, not getattr(config, flag))
    assert _key() == before
