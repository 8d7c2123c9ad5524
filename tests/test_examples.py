"""The examples end to end on a tiny slice of mnist10k: train, checkpoint, resume, save, predict, plot."""
import gzip
import importlib.util
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symcnn as theano
from symcnn.datasets import load_arrays
from symcnn.training import TrainingResult, Validation, load_model, plot_curves

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BEST = re.compile(r"^Best validation score of [0-9.]+ % obtained at iteration \d+, with test performance [0-9.]+ %$",
                  re.M)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A mnist.pkl.gz-style file: 60 train, 20 validation, 20 test digits."""
    (a, b), (c, d), (e, f) = load_arrays("mnist10k")
    path = tmp_path_factory.mktemp("data") / "tiny.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(((a[:60], b[:60]), (c[:20], d[:20]), (e[:20], f[:20])), fh)
    return path


def run(script, *args, cwd, check=True):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_lenet5_save_checkpoint_resume_and_predict(tiny, tmp_path):
    lenet = ["--epochs", 1, "--batch-size", 10, "--nkerns", 2, 3, "--dataset", tiny]
    plot = ["--plot", "curve.png"] if has_matplotlib() else []
    out = run("evaluate_lenet5.py", *lenet, "--save-model", "lenet.pkl", "--checkpoint", "run.ckpt", *plot,
              cwd=tmp_path).stdout
    assert out.splitlines()[:3] == ["... loading data", "... building the model", "... training"]
    assert "epoch 1, minibatch 6/6, validation error " in out
    assert re.search(r"^     \[epoch 1/1, iter 6/6, .* examples/s, ETA <= 0m00s; patience may stop it earlier\]$",
                     out, re.M)
    best = BEST.findall(out)
    assert len(best) == 1 and (tmp_path / "lenet.pkl").is_file() and (tmp_path / "run.ckpt").is_file()
    if plot:
        assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resuming a finished run: nothing left to train, the same result, only the final line with --quiet
    resumed = run("evaluate_lenet5.py", *lenet, "--resume", "run.ckpt", "--quiet", cwd=tmp_path).stdout
    assert resumed.splitlines() == best

    model, info = load_model(tmp_path / "lenet.pkl", with_info=True)
    assert info["batch_size"] == 10 and info["nkerns"] == [2, 3] and info["script"] == "evaluate_lenet5.py"
    pred = run("predict.py", "lenet.pkl", "--dataset", tiny, "--count", 13, cwd=tmp_path).stdout.splitlines()
    assert pred[0] == f"lenet.pkl: evaluate_lenet5.py, test set of {tiny}" and pred[1] == "image  predicted  true"
    rows = [list(map(int, line.split()[:3])) for line in pred[2:15]]
    x, y = load_arrays(str(tiny))[2]
    padded = np.zeros((20, 784), dtype=x.dtype)
    padded[:13] = x[:13]
    predict = theano.function([model.input], model.y_pred)
    expected = np.concatenate([predict(padded[:10]), predict(padded[10:])])[:13]
    assert rows == [[i, int(p), int(t)] for i, (p, t) in enumerate(zip(expected, y[:13]))]
    wrong = int(np.sum(expected != y[:13]))
    assert pred[15] == "error rate: %i of 13 = %f %%" % (wrong, 100. * wrong / 13) and len(pred) == 16


def test_logistic_sgd_save_model_and_predict(tiny, tmp_path):
    run("logistic_sgd.py", "--epochs", 2, "--batch-size", 10, "--dataset", tiny, "--save-model", "lr.pkl",
        cwd=tmp_path)
    out = run("predict.py", "lr.pkl", "--dataset", tiny, "--set", "valid", "--count", 0, cwd=tmp_path).stdout
    assert out.startswith(f"lr.pkl: logistic_sgd.py, valid set of {tiny}\n")
    assert re.search(r"^error rate: \d+ of 20 = [0-9.]+ %$", out, re.M)


def test_predict_errors_name_the_file(tiny, tmp_path, capsys):
    predict = _load_example("predict")
    for model, message in [(tmp_path / "missing.pkl", "missing.pkl: cannot read the symcnn model file"),
                           (tiny, f"{tiny}: not a symcnn model file")]:
        with pytest.raises(SystemExit) as e:
            predict.main([str(model)])
        err = capsys.readouterr().err
        assert e.value.code == 1 and err.startswith("predict.py: error: ") and message in err


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hide_matplotlib(monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, capsys, tmp_path):
    _hide_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"needs matplotlib, which is not installed: pip install 'symcnn\[plot\]'"):
        plot_curves(TrainingResult(0.1, 0, 0.1, 1, 1, 0.0), tmp_path / "c.png")
    with pytest.raises(SystemExit) as e:
        _load_example("evaluate_lenet5").main(["--plot", str(tmp_path / "c.png")])
    assert e.value.code == 2
    assert "--plot needs matplotlib, which is not installed: pip install 'symcnn[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_plot_curves_writes_a_png(tmp_path):
    if not has_matplotlib():
        pytest.skip("matplotlib is not installed (pip install 'symcnn[plot]')")
    history = [Validation(1, 10, 0.5, 0.52, 2.0), Validation(2, 20, 0.55, None, 1.5), Validation(3, 30, 0.3, 0.31, 1.0)]
    result = TrainingResult(0.3, 29, 0.31, 3, 30, 1.0, history=history, train_costs=list(np.linspace(2.3, 0.9, 30)))
    path = plot_curves(result, tmp_path / "curve.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD_ARGUMENTS = [
    ("evaluate_lenet5", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("evaluate_lenet5", ["--nkerns", "0", "5"], "--nkerns: must be at least 1, got 0"),
    ("evaluate_lenet5", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("evaluate_lenet5", ["--epochs", "-1"], "--epochs: must be at least 1, got -1"),
    ("evaluate_lenet5", ["--learning-rate", "nan"], "--learning-rate: must be a finite number above 0"),
    ("evaluate_lenet5", ["--checkpoint", "/nonexistent/dir/run.ckpt"],
     "--checkpoint: cannot write /nonexistent/dir/run.ckpt: the folder /nonexistent/dir does not exist"),
    ("evaluate_lenet5", ["--save-model", "/nonexistent/dir/m.pkl"], "--save-model: cannot write"),
    ("logistic_sgd", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("logistic_sgd", ["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    ("logistic_sgd", ["--save-model", "/nonexistent/dir/m.pkl"], "--save-model/--model: cannot write"),
    ("mlp", ["--epochs", "-1"], "--epochs: must be at least 1, got -1"),
    ("predict", ["m.pkl", "--count", "-1"], "--count: must be 0 or more, got -1"),
]


@pytest.mark.parametrize("name, argv, message", BAD_ARGUMENTS)
def test_bad_arguments_are_argparse_errors_before_any_work(name, argv, message, capsys, monkeypatch):
    module = _load_example(name)
    # any work (loading data) before the arguments are checked would be a bug: make it fail loudly
    for loader in ("load_data", "load_arrays", "load_model"):
        if hasattr(module, loader):
            monkeypatch.setattr(module, loader, lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_checkpoint_in_a_read_only_folder_is_refused_up_front(tmp_path, capsys):
    import os
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(SystemExit) as info:
            _load_example("evaluate_lenet5").main(["--checkpoint", str(folder / "run.ckpt")])
        assert info.value.code == 2 and "cannot write" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)
