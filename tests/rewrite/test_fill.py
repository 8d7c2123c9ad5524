"""T.grad's fills (second(s, v)): useless_fill and fill_sink drop them only where the shape is
certain, and move them towards the consumers otherwise."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcnn
import symcnn.tensor as T
from symcnn.tensor.type import TensorType

from tests.fuzz.strategies import examples
from tests.helpers import check_native_vs_reference, check_same_error

SIZES = (3, 4)


@st.composite
def fill_cases(draw):
    """(inputs' static shapes, concrete shapes, expression index, cost index): 1-3 dimensions;
    each input's dimension static, dynamic (None) or broadcast (1)."""
    ndim = draw(st.integers(1, 3))
    shape = [SIZES[d % 2] + d for d in range(ndim)]
    statics, concrete = [], []
    for _ in range(3):
        kinds = draw(st.lists(st.sampled_from(["static", "dynamic", "one"]), min_size=ndim, max_size=ndim))
        statics.append(tuple(None if k == "dynamic" else 1 if k == "one" else n for k, n in zip(kinds, shape)))
        concrete.append(tuple(1 if k == "one" else n for k, n in zip(kinds, shape)))
    return statics, concrete, draw(st.integers(0, 3)), draw(st.integers(0, 2)), draw(st.sampled_from(["float32",
                                                                                                     "float64"]))


EXPRESSIONS = [
    lambda a, b, c: a * b,
    lambda a, b, c: T.tanh(a) * b + c,
    lambda a, b, c: (a + b) * (c - 1.5),
    lambda a, b, c: T.maximum(a * 2, b) * c,
]
COSTS = [
    lambda e, c: T.sum(e),
    lambda e, c: T.sum(e ** 2),
    lambda e, c: T.sum(e * c),
]


@settings(max_examples=examples(25))
@given(fill_cases())
def test_gradients_through_fills_match_reference(case):
    """Random elementwise costs over inputs with static, dynamic and broadcast dimensions: every
    gradient equals the reference's and has its input's shape."""
    statics, concrete, k, j, dtype = case
    ins = [TensorType(dtype, shape=s)(name) for s, name in zip(statics, "abc")]
    cost = COSTS[j](EXPRESSIONS[k](*ins), ins[2])
    grads = T.grad(cost, ins, disconnected_inputs="ignore")
    rng = np.random.RandomState(k * 3 + j)
    vals = [rng.uniform(-2, 2, c).astype(dtype) for c in concrete]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    fn, _ = check_native_vs_reference(ins, [cost] + grads, vals, **tol)
    out = fn(*vals)
    assert [np.shape(g) for g in out[1:]] == [v.shape for v in vals]


def test_a_fill_of_a_run_time_shape_is_kept():
    """x * y with sizes known only at run time: the fill keeps the product's shape check, so
    mismatched arguments raise (a shape error, not a gradient of y's shape)."""
    x, y = T.matrix("x"), T.matrix("y")
    gx = T.grad(T.sum(x * y), x)
    vals = [np.ones((3, 5), "float32"), np.ones((3, 6), "float32")]
    check_same_error([x, y], [gx], vals)
    fn = symcnn.function([x, y], gx)
    assert "fill_sink" in {r.rewrite for r in fn.rewrite_log}


@pytest.mark.parametrize("static", [True, False])
def test_the_seed_fill_goes(static):
    """T.grad's seed second(cost, 1.0) is the constant: the cost is not computed for a gradient
    alone; with static shapes the sum's fill goes too and nothing but the product remains."""
    shape = (3, 5) if static else (None, None)
    x, y = TensorType("float64", shape=shape)("x"), TensorType("float64", shape=shape)("y")
    fn = symcnn.function([x, y], T.grad(T.sum(x * y), x))
    names = [str(n.op) for n in fn.fgraph.toposort()]
    assert not any(n.startswith("Sum") for n in names), names
    assert (not any("second" in n for n in names)) == static, names
    rng = np.random.RandomState(0)
    vals = [rng.standard_normal((3, 5)), rng.standard_normal((3, 5))]
    np.testing.assert_allclose(fn(*vals), vals[1])
