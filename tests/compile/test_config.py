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
