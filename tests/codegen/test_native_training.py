"""A LeNet trained natively (rewritten and fused) ends where the same LeNet trained with
the numpy reference ends: same seed, same data, same validation error within noise."""
import numpy as np

import symcnn
import symcnn.tensor as T
from symcnn.datasets import load_data
from symcnn.layers import build_lenet5

BATCH, STEPS = 100, 8


def _train(mode, datasets):
    (train_x, train_y), (valid_x, valid_y), _ = datasets
    index = T.lscalar()
    x, y = T.matrix("x"), T.ivector("y")
    model = build_lenet5(np.random.RandomState(23455), x, BATCH, nkerns=(6, 12))
    cost = model.negative_log_likelihood(y)
    grads = T.grad(cost, model.params)
    updates = [(p, p - 0.1 * g) for p, g in zip(model.params, grads)]

    def batch(data_x, data_y):
        return {x: data_x[index * BATCH:(index + 1) * BATCH], y: data_y[index * BATCH:(index + 1) * BATCH]}

    train = symcnn.function([index], cost, updates=updates, givens=batch(train_x, train_y), mode=mode)
    validate = symcnn.function([index], model.errors(y), givens=batch(valid_x, valid_y), mode=mode)
    costs = [float(train(i % 20)) for i in range(STEPS)]
    error = np.mean([validate(i) for i in range(5)])
    return costs, error, [p.get_value() for p in model.params], train


def test_native_training_matches_reference():
    datasets = load_data("mnist10k")
    costs_n, err_n, params_n, train_n = _train("native", datasets)
    costs_r, err_r, params_r, _ = _train("reference", datasets)
    np.testing.assert_allclose(costs_n, costs_r, rtol=1e-3)
    assert costs_n[-1] < costs_n[0]  # it learns
    assert abs(err_n - err_r) <= 0.01, (err_n, err_r)
    assert err_n < 0.85  # below chance (0.9) after a few steps
    for pn, pr in zip(params_n, params_r):
        np.testing.assert_allclose(pn, pr, rtol=1e-2, atol=1e-4)
    # and natively it ran as fused kernels, writing the SGD updates in place
    names = [k.name for k in train_n.kernels]
    assert sum(n.startswith("ConvPoolAct{") and "act=composite{tanh}" in n for n in names) == 2
    assert sum(n.startswith("ConvPoolActGrad") for n in names) == 2
    assert sum("in place" in k.note for k in train_n.kernels) == len(params_n)
