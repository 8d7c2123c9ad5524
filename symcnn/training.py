"""The Theano tutorial's early-stopping training loop (convolutional_mlp.py), as a function,
with checkpoints and resume, progress lines, saved models and training-curve plots."""
import signal
import statistics
import threading
import timeit
from collections import namedtuple
from dataclasses import dataclass, field

import numpy

from . import distributed
from .checkpoint import read_file, write_file

__all__ = ["TrainingResult", "Validation", "early_stopping", "save_model", "load_model", "plot_curves"]

Validation = namedtuple("Validation", ["epoch", "iteration", "validation_error", "test_error", "train_cost"])
Validation.__doc__ = """One validation: epoch, 1-based iteration, validation error, test error (None unless
validation improved), and the mean training cost over the iterations since the previous validation."""


@dataclass
class TrainingResult:
    """What early_stopping did.

    best_validation_loss, test_score: fractions (0.0091 is 0.91 %); test_score is the test
      error of the model with the best validation error (0.0 if validation never improved).
    best_iter: 0-based iteration of the best validation (the tutorial prints best_iter + 1).
    epochs_run, iterations: how far training went (iterations = train_model calls).
    elapsed: wall-clock seconds of the whole loop (summed over resumed runs).
    history: one Validation(epoch, iteration, validation_error, test_error, train_cost) per
      validation; iteration is 1-based like the printed count (iter + 1).
    train_costs: what train_model returned, as a float, one per iteration (nan for None).
    train_step_seconds: median seconds of one train_model call (in this run).
    """
    best_validation_loss: float
    best_iter: int
    test_score: float
    epochs_run: int
    iterations: int
    elapsed: float
    history: list = field(default_factory=list)
    train_step_seconds: float = 0.0
    train_costs: list = field(default_factory=list)

    @property
    def validation_errors(self):
        """The validation errors in order, one per validation."""
        return [h[2] for h in self.history]


class _DeferCtrlC:
    """Hold a Ctrl-C (SIGINT) until the end of the block, so the parameters and the loop's
    counters always agree; a second Ctrl-C raises at once. Only in the main thread, and only
    when SIGINT has Python's default handler (it raises KeyboardInterrupt)."""

    def __enter__(self):
        self.hit, self.old = False, None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, exc_type, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.hit and exc_type is None:
            raise KeyboardInterrupt


def _as_float(out):
    if isinstance(out, (list, tuple)):
        out = out[0] if out else None
    return float("nan") if out is None else float(numpy.mean(out))


def _duration(seconds):
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _rng_state(rng):
    return None if rng is None else (rng.get_state() if hasattr(rng, "get_state") else rng.bit_generator.state)


def _set_rng_state(rng, state):
    if hasattr(rng, "set_state"):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def early_stopping(train_model, validate_model, test_model, n_train_batches, n_valid_batches, n_test_batches,
                   n_epochs=200, patience=10000, patience_increase=2, improvement_threshold=0.995,
                   validation_frequency=None, verbose=True, print_fn=print, progress=True, batch_size=None,
                   params=None, restore_best=True, checkpoint_path=None, checkpoint_every=1, resume=None,
                   rng=None):
    """Minibatch SGD with early stopping, exactly the tutorial's loop.

    train_model(i) runs one update on minibatch i; validate_model(i) / test_model(i) return
    the error of minibatch i. Validation runs every `validation_frequency` iterations
    (default min(n_train_batches, patience // 2), i.e. once per epoch); the test set is
    evaluated only when validation improves. An improvement of more than
    (1 - improvement_threshold) extends patience to iter * patience_increase. Training
    stops after n_epochs or when patience <= iter.

    Output: the tutorial's lines go through print_fn (one string per call) unless
    verbose=False. With progress=True (the default) each validation adds one line
    "     [epoch E/N, iter I/T, validation V %, best test T %, R examples/s, ETA <= D]": R
    is measured since the previous validation (minibatches/s when batch_size is not given),
    D is the time the remaining epochs would take at that rate, an upper bound since
    patience may stop the loop earlier.

    params: the shared variables train_model updates (e.g. the model's params). With them,
    the best parameter values are kept in memory and, when restore_best=True (the default),
    copied back into the shared variables at the end, so the model then is the one that
    scored best_validation_loss. Without params nothing is restored.

    Checkpoints (need params): with checkpoint_path, the loop state (current and best
    parameter values, epoch, iteration, patience, best validation loss and iteration, test
    score, history, training costs, rng's state when an rng -- numpy RandomState or
    Generator -- is given, and a format version) is written atomically every
    `checkpoint_every` validations, at the end, and on Ctrl-C (KeyboardInterrupt), which is
    then re-raised. A Ctrl-C during a train_model call takes effect after it returns.
    resume=PATH restores all of it (the shared variables' values too) and continues, so
    an interrupted and resumed run ends exactly as an uninterrupted one would.

    Under mpirun (symcnn.distributed.size() > 1) every rank runs this loop on its shard:
    train_model / validate_model / test_model combine the ranks' work themselves (psum in
    their graphs), rank 0's validation error and patience decisions are broadcast so every
    rank stops at the same iteration, and only rank 0 prints and writes checkpoints; resume
    reads the checkpoint on rank 0 and sends it to the others.
    """
    lead = distributed.rank() == 0
    say = print_fn if verbose and lead else (lambda *a, **k: None)
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
    params = list(params or [])
    if (checkpoint_path is not None or resume is not None) and not params:
        raise ValueError("checkpoint_path= and resume= need params=[the shared variables train_model updates]")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every={checkpoint_every} must be at least 1 (validations)")

    s = dict(n_train_batches=n_train_batches, iterations=0, processed=0, done=False, patience=patience,
             best_validation_loss=numpy.inf, best_iter=0, test_score=0., history=[], train_costs=[],
             best_params=None, elapsed=0.)
    if resume is not None:
        s = _resume(resume, s, params, rng, lead)
    step_times = []
    start_time = timeit.default_timer()
    total = n_epochs * n_train_batches
    rate_since = [start_time, s["iterations"]]

    def save():
        if not lead:
            return
        write_file(checkpoint_path, "checkpoint", dict(
            s, params=[p.get_value() for p in params], rng_state=_rng_state(rng),
            epoch=-(-s["iterations"] // n_train_batches),
            elapsed=s["elapsed"] + timeit.default_timer() - start_time))

    def validate(iter):
        epoch, minibatch_index = iter // n_train_batches + 1, iter % n_train_batches
        where = (epoch, minibatch_index + 1, n_train_batches)
        # compute zero-one loss on validation set
        this_validation_loss = float(numpy.mean([validate_model(i) for i in range(n_valid_batches)]))
        this_validation_loss = distributed.broadcast_object(this_validation_loss)  # rank 0 decides
        say('epoch %i, minibatch %i/%i, validation error %f %%' % (where + (this_validation_loss * 100.,)))
        improved = this_validation_loss < s["best_validation_loss"]
        this_test = best = None
        if improved:  # test it on the test set
            this_test = float(numpy.mean([test_model(i) for i in range(n_test_batches)]))
            say(('     epoch %i, minibatch %i/%i, test error of best model %f %%') % (where + (this_test * 100.,)))
            best = [p.get_value() for p in params]
        last = s["history"][-1].iteration if s["history"] else 0
        cost = float(numpy.mean(s["train_costs"][last:iter + 1]))
        with _DeferCtrlC():  # commit the validation's outcome all at once
            if improved:
                # improve patience if loss improvement is good enough
                if this_validation_loss < s["best_validation_loss"] * improvement_threshold:
                    s["patience"] = max(s["patience"], iter * patience_increase)
                s.update(best_validation_loss=this_validation_loss, best_iter=iter, test_score=this_test,
                         best_params=best)
            s["history"].append(Validation(epoch, iter + 1, this_validation_loss, this_test, cost))
            s["processed"] = iter + 1
            s["done"] = s["patience"] <= iter
            s["patience"], s["done"] = distributed.broadcast_object((s["patience"], s["done"]))
        if progress:
            now = timeit.default_timer()
            per_iter = (now - rate_since[0]) / max(iter + 1 - rate_since[1], 1)
            rate = f"{batch_size / per_iter:.1f} examples/s" if batch_size else f"{1 / per_iter:.2f} minibatches/s"
            say(f"     [epoch {epoch}/{n_epochs}, iter {iter + 1}/{total}, validation "
                f"{this_validation_loss * 100.:.2f} %, best test {s['test_score'] * 100.:.2f} %, {rate}, "
                f"ETA <= {_duration(per_iter * (total - iter - 1))}; patience may stop it earlier]")
            rate_since[:] = [now, iter + 1]
        if checkpoint_path is not None and len(s["history"]) % checkpoint_every == 0:
            save()

    try:
        while not s["done"]:
            iter = s["iterations"] - 1  # the last iteration trained
            if s["processed"] < s["iterations"]:
                if (iter + 1) % validation_frequency == 0:
                    validate(iter)
                else:
                    s.update(processed=iter + 1, done=s["patience"] <= iter)
                continue
            if s["iterations"] >= total:
                break
            iter += 1
            if iter % 100 == 0:
                say('training @ iter = %i' % iter)
            with _DeferCtrlC():
                t0 = timeit.default_timer()
                cost = train_model(iter % n_train_batches)
                step_times.append(timeit.default_timer() - t0)
                s["train_costs"].append(_as_float(cost))
                s["iterations"] = iter + 1
    except KeyboardInterrupt:
        if checkpoint_path is not None:
            save()
            say(f"Interrupted at iteration {s['iterations']}; checkpoint written to {checkpoint_path} "
                f"(resume from it to continue)")
        raise
    if checkpoint_path is not None:
        save()
    if restore_best and s["best_params"] is not None:
        for p, v in zip(params, s["best_params"]):
            p.set_value(v)

    elapsed = s["elapsed"] + timeit.default_timer() - start_time
    say('Optimization complete.')
    say('Best validation score of %f %% obtained at iteration %i, '
        'with test performance %f %%' %
        (s["best_validation_loss"] * 100., s["best_iter"] + 1, s["test_score"] * 100.))
    return TrainingResult(
        best_validation_loss=float(s["best_validation_loss"]),
        best_iter=s["best_iter"],
        test_score=s["test_score"],
        epochs_run=-(-s["iterations"] // n_train_batches),
        iterations=s["iterations"],
        elapsed=elapsed,
        history=list(s["history"]),
        train_step_seconds=statistics.median(step_times) if step_times else 0.0,
        train_costs=list(s["train_costs"]),
    )


def _resume(resume, s, params, rng, lead=True):
    """The loop state in the checkpoint file `resume`; sets the params' values and rng's state.
    Distributed, rank 0 reads the file and every rank gets its content."""
    path = resume
    ck = distributed.broadcast_object(read_file(resume, "checkpoint") if lead else None)
    if ck["n_train_batches"] != s["n_train_batches"]:
        raise ValueError(f"{path} was written with n_train_batches={ck['n_train_batches']}, this run has "
                         f"{s['n_train_batches']}: resume with the same dataset and batch size")
    values = ck["params"]
    shapes = [numpy.shape(v) for v in values]
    if shapes != [p.get_value(borrow=True).shape for p in params]:
        raise ValueError(f"{path} holds {len(values)} parameters of shapes {shapes}; params= has "
                         f"{[p.get_value(borrow=True).shape for p in params]}: is it the same model?")
    for p, v in zip(params, values):
        p.set_value(v)
    if rng is not None and ck.get("rng_state") is not None:
        _set_rng_state(rng, ck["rng_state"])
    return {k: ck[k] for k in s}


# --------------------------------------------------------------------------- saved models

def save_model(obj, path, info=None):
    """Pickle a model (layer objects, LeNet5, ..., with their shared variables) to `path`, atomically.

    `info` is an optional dict stored beside it (e.g. {'batch_size': 500} for a model whose
    graph is built for a fixed batch size); read it back with load_model(path, with_info=True).
    """
    return write_file(path, "model", {"model": obj, "info": dict(info or {})})


def load_model(path, with_info=False):
    """The model saved by save_model at `path` (and its info dict if with_info=True).

    Raises symcnn.checkpoint.SymcnnFileError, naming the file, if it is missing, truncated
    or not a symcnn model. Like any pickle, only load files you trust.
    """
    payload = read_file(path, "model")
    return (payload["model"], payload["info"]) if with_info else payload["model"]


# --------------------------------------------------------------------------- plots

PLOT_INSTALL_HINT = "pip install 'symcnn[plot]' (or: pip install matplotlib)"


def plot_curves(result, path):
    """Write a PNG (or any format matplotlib knows from the suffix) of the training cost per
    iteration and the validation / test errors per validation. Needs matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"plotting training curves needs matplotlib, which is not installed: "
                          f"{PLOT_INSTALL_HINT}") from e
    fig = Figure(figsize=(8, 6))
    FigureCanvasAgg(fig)
    cost_ax, err_ax = fig.subplots(2, 1, sharex=True)
    cost_ax.plot(range(1, len(result.train_costs) + 1), result.train_costs, lw=0.6, label="per iteration")
    cost_ax.plot([h.iteration for h in result.history], [h.train_cost for h in result.history], "o-",
                 label="mean since last validation")
    cost_ax.set_ylabel("training cost")
    cost_ax.legend()
    err_ax.plot([h.iteration for h in result.history], [100 * h.validation_error for h in result.history],
                "o-", label="validation")
    tests = [h for h in result.history if h.test_error is not None]
    err_ax.plot([h.iteration for h in tests], [100 * h.test_error for h in tests], "s", label="test (new best)")
    err_ax.set_xlabel("iteration")
    err_ax.set_ylabel("error (%)")
    err_ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
