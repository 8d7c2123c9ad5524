"""symcnn.config: defaults and environment flags."""
import os
import subprocess
import sys

import pytest

import symcnn as theano
from symcnn.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_defaults():
    assert theano.config.floatX == "float32"
    assert theano.config.mode == "native"
    assert theano.config.allow_input_downcast is False


def test_environment_flags(monkeypatch):
    monkeypatch.setenv("SYMCNN_FLAGS", "floatX=float64, mode=native")
    monkeypatch.delenv("SYMCNN_FLOATX", raising=False)
    monkeypatch.delenv("SYMCNN_MODE", raising=False)
    c = Config()
    assert c.floatX == "float64" and c.mode == "native"
    monkeypatch.setenv("SYMCNN_FLOATX", "float32")
    assert Config().floatX == "float32"  # the dedicated variable wins
    monkeypatch.setenv("SYMCNN_FLOATX", "int32")
    with pytest.raises(ValueError, match="floatX"):
        Config()


def test_float_x_from_environment_in_a_new_process():
    env = dict(os.environ, SYMCNN_FLOATX="float64", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", "import symcnn.tensor as T; print(T.matrix().dtype, "
                          "T.constant(0.1).dtype)"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["float64", "float64"]


def test_warn_flags_are_accepted_and_ignored():
    from symcnn.config import config, Config
    before = repr(config.warn)
    config.warn.subtensor_merge_bug = False
    config.warn.sum_div_dimshuffle_bug = False
    assert config.warn.subtensor_merge_bug is False and config.warn.never_set_anywhere is False
    assert repr(config.warn) == before  # they change no code: the compile cache key is unchanged
    del config.warn.subtensor_merge_bug, config.warn.sum_div_dimshuffle_bug
    import os
    os.environ["SYMCNN_FLAGS"] = "warn.round=False"
    try:
        assert Config().warn.round == "False"
    finally:
        del os.environ["SYMCNN_FLAGS"]
    with pytest.raises(TypeError):
        config.warn = False


def test_compute_test_value_setting_is_checked():
    from symcnn.config import config
    with pytest.raises(ValueError, match="compute_test_value"):
        config.compute_test_value = "maybe"
    assert config.compute_test_value == "off"
def test_thread_count_beyond_the_cores_is_capped_with_a_warning(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SYMCNN_NUM_THREADS", "2000")
    with pytest.warns(RuntimeWarning, match=f"num_threads=2000 is more than the {cores} cores"):
        c = Config()
    assert c.num_threads == cores
    with pytest.warns(RuntimeWarning, match="more than"):
        c.num_threads = cores + 1
    assert c.num_threads == cores
    monkeypatch.setenv("SYMCNN_NUM_THREADS", "1")
    assert Config().num_threads == 1


def test_thread_count_of_a_process_follows_its_cpu_affinity():
    # a process allowed one core gets one thread, however many the environment asks for
    code = ("import os, warnings; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "warnings.simplefilter('error')\n"
            "try:\n    import symcnn\nexcept RuntimeWarning as e:\n    print('warned', e)\n"
            "import warnings; warnings.simplefilter('ignore'); import symcnn; print(symcnn.config.num_threads)")
    env = dict(os.environ, SYMCNN_NUM_THREADS="4", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "warned" in out.stdout and out.stdout.split()[-1] == "1"
