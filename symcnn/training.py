"""The Theano tutorial's early-stopping training loop (convolutional_mlp.py), as a function."""
import statistics
import timeit
from dataclasses import dataclass, field

import numpy

__all__ = ["TrainingResult", "early_stopping"]


@dataclass
class TrainingResult:
    """What early_stopping did.

    best_validation_loss, test_score: fractions (0.0091 is 0.91 %); test_score is the test
      error of the model with the best validation error (0.0 if validation never improved).
    best_iter: 0-based iteration of the best validation (the tutorial prints best_iter + 1).
    epochs_run, iterations: how far training went (iterations = train_model calls).
    elapsed: wall-clock seconds of the whole loop.
    history: one (epoch, iteration, validation error, test error or None) per validation;
      iteration is 1-based like the printed count (iter + 1); the test error is only
      computed when validation improved.
    train_step_seconds: median seconds of one train_model call.
    """
    best_validation_loss: float
    best_iter: int
    test_score: float
    epochs_run: int
    iterations: int
    elapsed: float
    history: list = field(default_factory=list)
    train_step_seconds: float = 0.0

    @property
    def validation_errors(self):
        """The validation errors in order, one per validation."""
        return [h[2] for h in self.history]


def early_stopping(train_model, validate_model, test_model, n_train_batches, n_valid_batches, n_test_batches,
                   n_epochs=200, patience=10000, patience_increase=2, improvement_threshold=0.995,
                   validation_frequency=None, verbose=True, print_fn=print):
    """Minibatch SGD with early stopping, exactly the tutorial's loop.

    train_model(i) runs one update on minibatch i; validate_model(i) / test_model(i) return
    the error of minibatch i. Validation runs every `validation_frequency` iterations
    (default min(n_train_batches, patience // 2), i.e. once per epoch); the test set is
    evaluated only when validation improves. An improvement of more than
    (1 - improvement_threshold) extends patience to iter * patience_increase. Training
    stops after n_epochs or when patience <= iter. Messages go through print_fn (one
    string per call) unless verbose=False.
    """
    say = print_fn if verbose else (lambda *a, **k: None)
    if n_train_batches < 1:
        raise ValueError(f"n_train_batches={n_train_batches}: need at least one training minibatch "
                         f"(is the batch size larger than the training set?)")
    if n_valid_batches < 1 or n_test_batches < 1:
        raise ValueError(f"n_valid_batches={n_valid_batches}, n_test_batches={n_test_batches}: need at least "
                         f"one minibatch each (is the batch size larger than the validation or test set?)")
    if validation_frequency is None:
        validation_frequency = min(n_train_batches, patience // 2)
    if validation_frequency < 1:
        raise ValueError(f"validation_frequency={validation_frequency} must be at least 1")

    best_validation_loss = numpy.inf
    best_iter = 0
    test_score = 0.
    history = []
    step_times = []
    start_time = timeit.default_timer()

    epoch = 0
    iterations = 0
    done_looping = False

    while (epoch < n_epochs) and (not done_looping):
        epoch = epoch + 1
        for minibatch_index in range(n_train_batches):

            iter = (epoch - 1) * n_train_batches + minibatch_index

            if iter % 100 == 0:
                say('training @ iter = %i' % iter)
            t0 = timeit.default_timer()
            train_model(minibatch_index)
            step_times.append(timeit.default_timer() - t0)
            iterations += 1

            if (iter + 1) % validation_frequency == 0:

                # compute zero-one loss on validation set
                validation_losses = [validate_model(i) for i in range(n_valid_batches)]
                this_validation_loss = float(numpy.mean(validation_losses))
                say('epoch %i, minibatch %i/%i, validation error %f %%' %
                    (epoch, minibatch_index + 1, n_train_batches, this_validation_loss * 100.))
                this_test = None

                # if we got the best validation score until now
                if this_validation_loss < best_validation_loss:

                    # improve patience if loss improvement is good enough
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, iter * patience_increase)

                    # save best validation score and iteration number
                    best_validation_loss = this_validation_loss
                    best_iter = iter

                    # test it on the test set
                    test_losses = [test_model(i) for i in range(n_test_batches)]
                    test_score = float(numpy.mean(test_losses))
                    this_test = test_score
                    say(('     epoch %i, minibatch %i/%i, test error of '
                         'best model %f %%') %
                        (epoch, minibatch_index + 1, n_train_batches, test_score * 100.))
                history.append((epoch, iter + 1, this_validation_loss, this_test))

            if patience <= iter:
                done_looping = True
                break

    end_time = timeit.default_timer()
    say('Optimization complete.')
    say('Best validation score of %f %% obtained at iteration %i, '
        'with test performance %f %%' %
        (best_validation_loss * 100., best_iter + 1, test_score * 100.))
    return TrainingResult(
        best_validation_loss=float(best_validation_loss),
        best_iter=best_iter,
        test_score=test_score,
        epochs_run=epoch,
        iterations=iterations,
        elapsed=end_time - start_time,
        history=history,
        train_step_seconds=statistics.median(step_times) if step_times else 0.0,
    )
