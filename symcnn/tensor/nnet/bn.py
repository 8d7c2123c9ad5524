"""Batch normalisation: Theano's theano.tensor.nnet.bn (batch_normalization_train,
batch_normalization_test, batch_normalization), with its arguments, defaults, results and checks.

They build the graph that Theano's CPU rewrite builds from its batch-norm ops: the mean and
variance over `axes` (T.mean, T.var), the normalised, scaled and shifted values, and the running
averages. T.grad differentiates that graph; the native backend runs its sums over the normalised
axes in vector partials (codegen/kernels/row_sum.py) and its broadcasting elementwise ops on the
threads (codegen/kernels/broadcast_loops.py).
"""
import numpy as np

from ...config import config
from .. import math as M
from ..basic import cast
from ..moments import var as _var
from ..prod import prod
from ..var import as_tensor_variable


def _axes(axes, ndim):
    """(normalised axes, the others) for 'per-activation' (axis 0), 'spatial' (0 and 2 on) or a
    tuple or list of ints."""
    if axes == "per-activation":
        axes = (0,)
    elif axes == "spatial":
        axes = (0,) + tuple(range(2, ndim))
    elif isinstance(axes, (tuple, list, np.ndarray)):
        axes = tuple(int(a) for a in axes)
    else:
        raise ValueError(f"invalid axes: {axes!r} (use 'per-activation', 'spatial' or a tuple of ints)")
    axes = tuple(sorted(a % ndim if -ndim <= a < ndim else _bad_axis(a, ndim) for a in axes))
    if len(set(axes)) != len(axes):
        raise ValueError(f"invalid axes: {axes} repeats an axis")
    return axes, tuple(a for a in range(ndim) if a not in axes)


def _bad_axis(a, ndim):
    raise ValueError(f"invalid axes: axis {a} is out of range for inputs of {ndim} dimensions")


def _check_epsilon(epsilon):
    # compared in floatX, as Theano does: float32(1e-5) is below 1e-5
    eps = np.asarray(epsilon, dtype=config.floatX)
    if eps < 1e-5:
        raise ValueError(f"epsilon must be at least 1e-5, got {epsilon}")
    return eps


def _params(inputs, axes, kept, names, values):
    """The parameters broadcast to the inputs' dimensions: given with only the kept axes
    (gamma of shape (C,) for 'spatial'), or with all of them and size 1 on `axes`."""
    ndim = inputs.ndim
    full = values[0].ndim == ndim
    out = []
    for name, v in zip(names, values):
        want = ndim if full else len(kept)
        if v.ndim != want:
            raise ValueError(f"{name} must have {want} dimensions, as {names[0]} has ({'all' if full else 'the'} "
                             f"{'dimensions of inputs' if full else 'non-normalised axes ' + str(kept)}), "
                             f"got {v.ndim}: {v.describe()}")
        if full:
            v = v.reshape([1 if a in axes else v.shape[a] for a in range(ndim)], ndim=ndim)
        else:
            pattern = ["x"] * ndim
            for i, a in enumerate(kept):
                pattern[a] = i
            v = v.dimshuffle(*pattern)
        out.append(v)
    return out, full


def batch_normalization_train(inputs, gamma, beta, axes="per-activation", epsilon=1e-4,
                              running_average_factor=0.1, running_mean=None, running_var=None):
    """Normalise `inputs` by the mean and variance over `axes` of this batch, then scale by `gamma`
    and shift by `beta`. Returns (out, mean, invstd), and with running_mean and running_var
    (out, mean, invstd, new_running_mean, new_running_var):
        mean = inputs.mean(axes),  var = inputs.var(axes),  invstd = 1 / sqrt(var + epsilon)
        out = (inputs - mean) * gamma * invstd + beta
        new_running_mean = running_mean * (1 - factor) + mean * factor
        new_running_var = running_var * (1 - factor) + (m / (m - 1)) * var * factor
    with m the number of values each mean is taken over. axes: 'per-activation' (axis 0),
    'spatial' (0 and 2 on: per channel of a 4-d batch) or a tuple of ints. The parameters have
    either the inputs' dimensions (size 1 along `axes`) or only the other axes' (then so have
    mean, invstd and the running averages returned)."""
    inputs, gamma, beta = (as_tensor_variable(v) for v in (inputs, gamma, beta))
    axes, kept = _axes(axes, inputs.ndim)
    eps = _check_epsilon(epsilon)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together, or neither")
    names, values = ["gamma", "beta"], [gamma, beta]
    if running_mean is not None:
        names += ["running_mean", "running_var"]
        values += [as_tensor_variable(running_mean), as_tensor_variable(running_var)]
    params, full = _params(inputs, axes, kept, names, values)
    scale, bias = params[:2]
    mean = M.mean(inputs, axis=axes, keepdims=True)
    var = _var(inputs, axis=axes, keepdims=True)
    invstd = M.true_div(np.asarray(1, dtype=var.dtype), M.sqrt(var + eps))
    out = (inputs - mean) * (scale * invstd) + bias
    results = [out, mean, invstd]
    if running_mean is not None:
        factor = np.asarray(running_average_factor, dtype=config.floatX)
        m = cast(prod(inputs.shape) / prod(mean.shape), config.floatX)
        results.append(params[2] * (1 - factor) + mean * factor)
        results.append(params[3] * (1 - factor) + (m / (m - 1)) * var * factor)
    if not full:   # the statistics in the parameters' own dimensions (the output keeps the inputs')
        results = [results[0]] + [r.dimshuffle(*kept) for r in results[1:]]
    return tuple(results)


def batch_normalization_test(inputs, gamma, beta, mean, var, axes="per-activation", epsilon=1e-4):
    """Normalise `inputs` by given statistics (the running averages of batch_normalization_train):
    (inputs - mean) * gamma / sqrt(var + epsilon) + beta. Parameters and statistics as in
    batch_normalization_train: the inputs' dimensions (size 1 along `axes`) or only the others'."""
    inputs, gamma, beta, mean, var = (as_tensor_variable(v) for v in (inputs, gamma, beta, mean, var))
    axes, kept = _axes(axes, inputs.ndim)
    eps = _check_epsilon(epsilon)
    (scale, bias, mean, var), _ = _params(inputs, axes, kept, ["gamma", "beta", "mean", "var"],
                                          [gamma, beta, mean, var])
    return (inputs - mean) * (scale / M.sqrt(var + eps)) + bias


def batch_normalization(inputs, gamma, beta, mean, std, mode="low_mem"):
    """(inputs - mean) * (gamma / std) + beta, broadcasting as elementwise ops do (Theano's
    original batch normalisation: the caller computes mean and std). mode 'low_mem' or
    'high_mem' chose how Theano's own op kept intermediate values; both give the same result here."""
    if mode not in ("low_mem", "high_mem"):
        raise ValueError(f'mode must be "low_mem" or "high_mem", got {mode!r}')
    inputs, gamma, beta, mean, std = (as_tensor_variable(v) for v in (inputs, gamma, beta, mean, std))
    return (inputs - mean) * (gamma / std) + beta
