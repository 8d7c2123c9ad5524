"""symcnn.training.early_stopping: the tutorial's loop on fake, deterministic models."""
import re

import numpy
import pytest

from symcnn.training import TrainingResult, early_stopping


class Fake:
    """train_model counts calls; validate/test return scripted errors per validation round."""

    def __init__(self, valid_errors, test_errors=None):
        self.valid_errors = list(valid_errors)
        self.test_errors = list(test_errors or [e + 0.01 for e in valid_errors])
        self.train_calls = []
        self.valid_calls = 0
        self.test_calls = 0
        self.round = -1

    def train(self, i):
        self.train_calls.append(i)
        return 1.0

    def validate(self, i):
        if i == 0:
            self.round += 1
        self.valid_calls += 1
        return self.valid_errors[min(self.round, len(self.valid_errors) - 1)]

    def test(self, i):
        self.test_calls += 1
        return self.test_errors[min(self.round, len(self.test_errors) - 1)]


def run(fake, lines=None, **kw):
    out = [] if lines is None else lines
    args = dict(n_train_batches=10, n_valid_batches=2, n_test_batches=3, print_fn=out.append)
    args.update(kw)
    return early_stopping(fake.train, fake.validate, fake.test, **args), out


def test_runs_all_epochs_and_prints_tutorial_lines():
    fake = Fake([0.5, 0.4, 0.45, 0.3])
    res, lines = run(fake, n_epochs=4, progress=False)
    assert isinstance(res, TrainingResult)
    assert fake.train_calls == list(range(10)) * 4
    assert fake.valid_calls == 4 * 2
    assert fake.test_calls == 3 * 3  # only when validation improves (not in epoch 3)
    assert lines == [
        'training @ iter = 0',
        'epoch 1, minibatch 10/10, validation error 50.000000 %',
        '     epoch 1, minibatch 10/10, test error of best model 51.000000 %',
        'epoch 2, minibatch 10/10, validation error 40.000000 %',
        '     epoch 2, minibatch 10/10, test error of best model 41.000000 %',
        'epoch 3, minibatch 10/10, validation error 45.000000 %',
        'epoch 4, minibatch 10/10, validation error 30.000000 %',
        '     epoch 4, minibatch 10/10, test error of best model 31.000000 %',
        'Optimization complete.',
        'Best validation score of 30.000000 % obtained at iteration 40, with test performance 31.000000 %',
    ]
    assert res.best_validation_loss == pytest.approx(0.3)
    assert res.best_iter == 39
    assert res.test_score == pytest.approx(0.31)
    assert res.epochs_run == 4 and res.iterations == 40
    assert res.history == [(1, 10, 0.5, pytest.approx(0.51), 1.0), (2, 20, 0.4, pytest.approx(0.41), 1.0),
                           (3, 30, 0.45, None, 1.0), (4, 40, 0.3, pytest.approx(0.31), 1.0)]
    assert res.history[1].validation_error == 0.4 and res.history[2].test_error is None
    assert res.train_costs == [1.0] * 40
    assert res.validation_errors == [0.5, 0.4, 0.45, 0.3]
    assert res.elapsed >= 0 and res.train_step_seconds >= 0


def test_training_at_iter_every_100_iterations():
    fake = Fake([0.5])
    _, lines = run(fake, n_train_batches=70, n_epochs=3)
    assert [l for l in lines if l.startswith('training @')] == \
        ['training @ iter = 0', 'training @ iter = 100', 'training @ iter = 200']


def test_patience_stops_early():
    # no improvement after the first validation: patience (25) runs out at iter 25
    fake = Fake([0.5, 0.6])
    res, lines = run(fake, n_epochs=100, patience=25)
    assert res.iterations == 26 and res.epochs_run == 3
    assert fake.train_calls[-1] == 5
    assert res.best_iter == 9
    assert lines[-1] == 'Best validation score of 50.000000 % obtained at iteration 10, with test performance 51.000000 %'


def test_patience_extends_on_significant_improvement():
    # steady significant improvement: patience = max(patience, iter * 2) keeps growing
    errs = [0.5 * 0.9 ** k for k in range(30)]
    fake = Fake(errs)
    res, _ = run(fake, n_epochs=30, patience=25)
    assert res.epochs_run == 30 and res.iterations == 300


def test_insignificant_improvement_updates_best_but_not_patience():
    # 0.5 -> 0.499 is better (so it is the best and the test set is run) but not by 0.5 %,
    # so patience is not extended: validation at iter 9, 19; patience 25 -> stop at iter 25
    fake = Fake([0.5, 0.499, 0.499])
    res, _ = run(fake, n_epochs=100, patience=25)
    assert res.best_validation_loss == pytest.approx(0.499)
    assert res.best_iter == 19
    assert res.iterations == 26
    assert fake.test_calls == 2 * 3
    # whereas a significant one at iter 19 gives patience max(25, 38) -> stop at iter 38
    fake = Fake([0.5, 0.4, 0.4])
    res, _ = run(fake, n_epochs=100, patience=25)
    assert res.iterations == 39


def test_validation_frequency_default_and_explicit():
    fake = Fake([0.5])
    res, _ = run(fake, n_train_batches=10, n_epochs=2, patience=6)  # min(10, 6 // 2) = 3
    assert [h[1] for h in res.history] == [3, 6]
    assert res.iterations == 7  # patience 6 <= iter 6
    fake = Fake([0.5])
    res, _ = run(fake, n_epochs=2, validation_frequency=4)
    assert [h[1] for h in res.history] == [4, 8, 12, 16, 20]


def test_verbose_false_prints_nothing(capsys):
    fake = Fake([0.5, 0.4])
    res = early_stopping(fake.train, fake.validate, fake.test, 10, 2, 3, n_epochs=2, verbose=False)
    assert capsys.readouterr().out == ''
    assert res.best_validation_loss == pytest.approx(0.4)


def test_default_print_goes_to_stdout(capsys):
    fake = Fake([0.25])
    early_stopping(fake.train, fake.validate, fake.test, 4, 1, 1, n_epochs=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'training @ iter = 0'
    assert out[1] == 'epoch 1, minibatch 4/4, validation error 25.000000 %'
    assert out[-2] == 'Optimization complete.'


def test_mean_over_minibatches():
    class Uneven(Fake):
        def validate(self, i):
            return [0.1, 0.3][i]

        def test(self, i):
            return [0.0, 0.2, 0.4][i]

    fake = Uneven([0])
    res, _ = run(fake, n_epochs=1)
    assert res.best_validation_loss == pytest.approx(0.2) and res.test_score == pytest.approx(0.2)


def test_progress_line_after_each_validation():
    fake = Fake([0.5, 0.4, 0.45])
    res, lines = run(fake, n_epochs=3, batch_size=20)
    progress = [l for l in lines if l.startswith('     [')]
    assert len(progress) == 3
    # the tutorial's lines are all still there, in order, each validation followed by its progress line
    assert [l for l in lines if not l.startswith('     [')] == run(Fake([0.5, 0.4, 0.45]), n_epochs=3,
                                                                       progress=False)[1]
    assert lines.index(progress[0]) == 3  # training @, validation, test, progress
    assert re.fullmatch(r'     \[epoch 1/3, iter 10/30, validation 50\.00 %, best test 51\.00 %, '
                        r'[0-9.]+ examples/s, ETA <= 0m00s; patience may stop it earlier\]', progress[0])
    assert 'validation 45.00 %, best test 41.00 %' in progress[2]
    _, lines = run(Fake([0.5]), n_epochs=1)
    assert 'minibatches/s' in lines[3]  # no batch_size: minibatches per second


def test_train_costs_recorded_per_iteration_and_per_validation():
    costs = iter(range(1, 100))
    fake = Fake([0.5])
    fake.train = lambda i: numpy.float32(next(costs))
    res, _ = run(fake, n_epochs=2, validation_frequency=5, verbose=False)
    assert res.train_costs == list(range(1, 21))
    assert [h.train_cost for h in res.history] == [3.0, 8.0, 13.0, 18.0]
    fake.train = lambda i: None
    res, _ = run(fake, n_epochs=1, verbose=False)
    assert all(c != c for c in res.train_costs)  # None is recorded as nan


def test_checkpoint_options_need_params(tmp_path):
    with pytest.raises(ValueError, match='need params='):
        run(Fake([0.5]), checkpoint_path=tmp_path / 'c.ckpt')
    with pytest.raises(ValueError, match='checkpoint_every=0'):
        run(Fake([0.5]), checkpoint_path=tmp_path / 'c.ckpt', checkpoint_every=0, params=[object()])


def test_bad_batch_counts():
    fake = Fake([0.5])
    with pytest.raises(ValueError, match='n_train_batches=0'):
        run(fake, n_train_batches=0)
    with pytest.raises(ValueError, match='n_valid_batches=0'):
        run(fake, n_valid_batches=0)
