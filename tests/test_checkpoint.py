"""Checkpoints, resume and saved models (symcnn.training, symcnn.checkpoint) on a real, small MLP."""
import os
import pickle
import signal

import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.checkpoint import SymcnnFileError, read_file, write_file
from symcnn.datasets import load_data
from symcnn.layers import MLP, LogisticRegression, build_lenet5
from symcnn.training import early_stopping, load_model, save_model

BATCH = 100
N_TRAIN, N_VALID, N_TEST = 10, 2, 2  # minibatches: a 1000/200/200 slice of mnist10k


@pytest.fixture(scope="module")
def data():
    return load_data("mnist10k")


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handling (KeyboardInterrupt), whatever the test process inherited: a
    shell's background job starts with SIGINT ignored, and that setting passes to its children."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


class Run:
    """A small MLP and its compiled functions; train(i) trains on a minibatch drawn from rng."""

    def __init__(self, data, seed=1234, rng_seed=5, interrupt_at=None, fail_validate_at=None, sigint_at=None):
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = data
        index, x, y = T.lscalar(), T.matrix("x"), T.ivector("y")
        self.model = MLP(np.random.RandomState(seed), x, 28 * 28, 20, 10)
        cost = self.model.negative_log_likelihood(y)
        sl = slice(index * BATCH, (index + 1) * BATCH)

        def fn(out, sx, sy, **kw):
            return theano.function([index], out, givens={x: sx[sl], y: sy[sl]}, **kw)

        params = self.model.params
        self.train_model = fn(cost, train_x, train_y,
                              updates=[(p, p - 0.5 * g) for p, g in zip(params, T.grad(cost, params))])
        self.validate_model = fn(self.model.errors(y), valid_x, valid_y)
        self.test_model = fn(self.model.errors(y), test_x, test_y)
        self.rng = np.random.RandomState(rng_seed)
        self.calls = self.valid_calls = 0
        self.interrupt_at, self.fail_validate_at, self.sigint_at = interrupt_at, fail_validate_at, sigint_at

    def train(self, i):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # the call failed before updating anything
        if self.calls == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: held until this step is done
        return self.train_model(self.rng.randint(N_TRAIN))  # the rng's state matters for resuming

    def validate(self, i):
        self.valid_calls += 1
        if self.valid_calls == self.fail_validate_at:
            raise KeyboardInterrupt
        return self.validate_model(i)

    def fit(self, **kw):
        kw.setdefault("n_epochs", 4)
        return early_stopping(self.train, self.validate, self.test_model, N_TRAIN, N_VALID, N_TEST,
                              params=self.model.params, rng=self.rng, verbose=False, **kw)

    def values(self):
        return [p.get_value() for p in self.model.params]


def assert_same(a, b, run_a, run_b):
    assert (a.best_validation_loss, a.best_iter, a.test_score) == (b.best_validation_loss, b.best_iter, b.test_score)
    assert (a.iterations, a.epochs_run, a.history, a.train_costs) == (b.iterations, b.epochs_run, b.history,
                                                                      b.train_costs)
    for u, v in zip(run_a.values(), run_b.values()):
        assert np.array_equal(u, v)


@pytest.mark.parametrize("interrupt, done", [(dict(interrupt_at=23), 22), (dict(sigint_at=23), 23),
                                             (dict(fail_validate_at=4), 20)],
                         ids=["raised-in-train_model", "sigint-in-train_model", "raised-in-validate_model"])
def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(data, tmp_path, interrupt, done, ctrl_c_raises):
    ref_run = Run(data)
    ref = ref_run.fit()
    assert 0 < ref.best_validation_loss < 0.9 and ref.iterations == 40

    ckpt = tmp_path / "run.ckpt"
    stopped = Run(data, **interrupt)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(checkpoint_path=ckpt)
    state = read_file(ckpt, "checkpoint")
    assert state["iterations"] == done and state["params"] and state["rng_state"] is not None

    # a fresh process would build the model anew: other initial values and rng, which resume overwrites
    resumed_run = Run(data, seed=99, rng_seed=77)
    resumed = resumed_run.fit(checkpoint_path=ckpt, resume=ckpt)
    assert_same(ref, resumed, ref_run, resumed_run)
    assert read_file(ckpt, "checkpoint")["iterations"] == 40  # the final state is written at the end


def test_periodic_checkpoints_and_extending_a_finished_run(data, tmp_path):
    ref_run = Run(data)
    ref = ref_run.fit(n_epochs=4, restore_best=False)
    ckpt = tmp_path / "run.ckpt"
    first = Run(data)
    first.fit(n_epochs=2, checkpoint_path=ckpt, checkpoint_every=2)
    assert read_file(ckpt, "checkpoint")["iterations"] == 20
    more_run = Run(data)
    more = more_run.fit(n_epochs=4, resume=ckpt, restore_best=False)
    assert_same(ref, more, ref_run, more_run)


def test_checkpoint_contents(data, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    run = Run(data)
    res = run.fit(n_epochs=3, checkpoint_path=ckpt, checkpoint_every=2)
    state = read_file(ckpt, "checkpoint")
    assert state["iterations"] == 30 and state["best_iter"] == res.best_iter
    assert state["history"] == res.history and state["train_costs"] == res.train_costs
    assert state["best_validation_loss"] == res.best_validation_loss and state["test_score"] == res.test_score
    assert state["patience"] == 10000 and state["elapsed"] > 0
    assert len(state["params"]) == len(state["best_params"]) == 4
    assert pickle.loads(open(ckpt, "rb").read())["version"] == 2
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was moved into place


def test_restore_best(data):
    kept, restored = Run(data), Run(data)
    a = kept.fit(n_epochs=6, restore_best=False)
    b = restored.fit(n_epochs=6)  # restore_best=True is the default
    assert a.best_iter < a.iterations - 1  # the last validation was not the best

    def error(run):
        return float(np.mean([run.validate_model(i) for i in range(N_VALID)]))

    assert error(restored) == b.best_validation_loss
    assert error(kept) == a.validation_errors[-1] != a.best_validation_loss


def test_resume_errors(data, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    Run(data).fit(n_epochs=1, checkpoint_path=ckpt)
    x = T.matrix("x")
    other = LogisticRegression(x, 28 * 28, 10)
    with pytest.raises(ValueError, match="same model"):
        early_stopping(None, None, None, N_TRAIN, N_VALID, N_TEST, params=other.params, resume=ckpt)
    with pytest.raises(ValueError, match="n_train_batches=10"):
        early_stopping(None, None, None, 5, N_VALID, N_TEST, params=Run(data).model.params, resume=ckpt)
    with pytest.raises(SymcnnFileError, match="missing.ckpt"):
        Run(data).fit(resume=tmp_path / "missing.ckpt")


# ----------------------------------------------------------------------------- save_model / load_model

def test_saved_model_predicts_exactly_the_same(data, tmp_path):
    run = Run(data)
    run.fit(n_epochs=1)
    model = run.model
    X = data[2][0].get_value()[:50]
    predict = theano.function([model.input], [model.logRegressionLayer.p_y_given_x, model.logRegressionLayer.y_pred])
    p, pred = predict(X)
    path = save_model(model, tmp_path / "mlp.pkl")
    loaded = load_model(path)
    assert loaded is not model
    p2, pred2 = theano.function([loaded.input], [loaded.logRegressionLayer.p_y_given_x,
                                                 loaded.logRegressionLayer.y_pred])(X)
    assert np.array_equal(p, p2) and np.array_equal(pred, pred2)


def test_saved_lenet5_with_info(tmp_path):
    x = T.matrix("x")
    model = build_lenet5(np.random.RandomState(3), x, batch_size=4, nkerns=(2, 3))
    model.layers[3].W.set_value(np.random.RandomState(4).randn(500, 10).astype(theano.config.floatX))
    X = np.random.RandomState(5).rand(4, 784).astype(theano.config.floatX)
    expected = theano.function([model.input], model.layers[3].p_y_given_x)(X)
    save_model(model, tmp_path / "lenet.pkl", info={"batch_size": 4})
    loaded, info = load_model(tmp_path / "lenet.pkl", with_info=True)
    assert info == {"batch_size": 4} and type(loaded).__name__ == "LeNet5"
    assert np.array_equal(theano.function([loaded.input], loaded.layers[3].p_y_given_x)(X), expected)


def test_load_model_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(SymcnnFileError, match=r"nope\.pkl: cannot read"):
        load_model(missing)
    good = save_model(LogisticRegression(T.matrix("x"), 3, 2), tmp_path / "good.pkl")
    raw = open(good, "rb").read()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SymcnnFileError, match=r"cut\.pkl: truncated"):
        load_model(cut)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SymcnnFileError, match=r"notes\.txt: not a symcnn model file \(not a pickle\)"):
        load_model(text)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"W": 1}))
    with pytest.raises(SymcnnFileError, match=r"plain\.pkl: not a symcnn model file \(it unpickles to a dict"):
        load_model(plain)
    ckpt = write_file(tmp_path / "c.ckpt", "checkpoint", {})
    with pytest.raises(SymcnnFileError, match=r"c\.ckpt: is a symcnn checkpoint file, not a model file"):
        load_model(ckpt)
    assert isinstance(SymcnnFileError("x"), ValueError)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = save_model({"a": 1}, tmp_path / "m.pkl")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_model(Unpicklable(), path)
    assert load_model(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pkl"]


def _flip_weight_bytes(path, weights):
    """Flip one byte inside the stored bytes of `weights` (found in the file by their content)."""
    raw = bytearray(open(path, "rb").read())
    needle = np.ascontiguousarray(weights).tobytes()[:64]
    at = raw.find(needle)
    assert at >= 0, "weights not found in the file"
    raw[at + 5] ^= 0x40
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_flipped_weight_bytes_are_reported_naming_the_file(tmp_path, kind):
    rng = np.random.RandomState(3)
    layer = LogisticRegression(T.matrix("x"), 40, 10)
    layer.W.set_value(rng.randn(40, 10).astype(theano.config.floatX))
    path = tmp_path / f"damaged.{kind}"
    if kind == "model":
        save_model(layer, path)
        load_model(path)                                     # intact: loads
    else:
        write_file(path, "checkpoint", {"params": [layer.W.get_value()]})
        read_file(path, "checkpoint")
    _flip_weight_bytes(path, layer.W.get_value())
    with pytest.raises(SymcnnFileError, match=rf"damaged\.{kind}: the {kind} file is damaged: the SHA-256"):
        load_model(path) if kind == "model" else read_file(path, "checkpoint")


def test_version_1_files_without_checksum_still_load(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"symcnn": "model", "version": 1, "payload": {"model": [1, 2], "info": {}}}))
    assert load_model(path) == [1, 2]
