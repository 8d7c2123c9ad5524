"""theano.gradient's gradient-shaping ops and helpers: zero_grad, consider_constant,
disconnected_grad, grad_clip, grad_scale, grad_undefined / grad_not_implemented (NullType),
DisconnectedType, subgraph_grad."""
import numpy as np
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn import gradient
from symcnn.compile.mode import Mode
from symcnn.gradient import DisconnectedInputError, NullTypeGradError
from symcnn.graph.basic import Apply
from symcnn.graph.op import Op
from tests.helpers import check_native_vs_reference, compile_and_run, make_rng, rand

OPS = [gradient.zero_grad, gradient.consider_constant, gradient.disconnected_grad,
       lambda v: gradient.grad_clip(v, -0.5, 0.5), lambda v: gradient.grad_scale(v, 3.0)]


@pytest.mark.parametrize("k", range(len(OPS)))
def test_forward_is_the_identity_natively_and_in_reference(k):
    rng = make_rng(k)
    for _ in range(3):
        shape = tuple(rng.integers(1, 5, size=rng.integers(0, 4)))
        x = T.TensorType("float32", shape=(None,) * len(shape))("x")
        xv = rand(shape, "float32", rng)
        out = OPS[k](x) * 2
        check_native_vs_reference([x], out, [xv], rtol=0, atol=0)
        # the native lowering itself (the canonicalizer removes the op otherwise)
        got = theano.function([x], out, mode=Mode("native", rewrite=False))(xv)
        np.testing.assert_array_equal(got, xv * 2)
        y = OPS[k](x)
        assert y.owner.op.infer_shape(y.owner, [tuple(range(len(shape)))]) == [tuple(range(len(shape)))]


@pytest.mark.parametrize("mode", ["reference", "native"])
def test_how_each_passes_the_gradient(mode):
    x = T.dvector("x")
    xv = np.array([1.0, -2.0, 3.0])
    cost = lambda y: (y * y).sum() / 2 + x.sum()  # noqa: E731  d/dy = y, plus 1 directly on x
    g = lambda y, **kw: compile_and_run([x], T.grad(cost(y), x, **kw), [xv], mode=mode,  # noqa: E731
                                        on_unused_input="ignore")
    np.testing.assert_allclose(g(gradient.zero_grad(x)), 1.0)
    np.testing.assert_allclose(g(gradient.consider_constant(x)), 1.0)
    np.testing.assert_allclose(g(gradient.disconnected_grad(x)), 1.0)
    np.testing.assert_allclose(g(gradient.grad_clip(x, -1.5, 2.5)), 1.0 + np.clip(xv, -1.5, 2.5))
    np.testing.assert_allclose(g(gradient.grad_scale(x, 3.0)), 1.0 + 3 * xv)


def test_zero_grad_is_connected_and_disconnected_grad_is_not():
    x = T.dvector("x")
    assert compile_and_run([x], T.grad(gradient.zero_grad(x).sum(), x), [np.ones(2)],
                           on_unused_input="ignore").tolist() == [0.0, 0.0]
    with pytest.raises(DisconnectedInputError):
        T.grad(gradient.disconnected_grad(x).sum(), x)
    assert T.grad(gradient.disconnected_grad(x).sum(), x, disconnected_inputs="ignore",
                  return_disconnected="None") is None
    d = T.grad(gradient.disconnected_grad(x).sum(), x, disconnected_inputs="ignore",
               return_disconnected="Disconnected")
    assert isinstance(d.type, gradient.DisconnectedType)


def test_grad_clip_and_grad_scale_verify():
    gradient.verify_grad(lambda a: gradient.grad_scale(a, 1.0) * 2, [np.array([0.3, 0.7])])
    with pytest.raises(gradient.GradientError):
        gradient.verify_grad(lambda a: gradient.grad_scale(a, 2.0), [np.array([0.3, 0.7])])
    with pytest.raises(ValueError, match="upper bound"):
        gradient.grad_clip(T.dvector(), 1.0, -1.0)


class _Floor(Op):
    """A test op whose gradient is undefined (or not implemented) for its input."""

    def __init__(self, helper):
        self.helper = helper

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, out):
        out[0][0] = np.floor(inputs[0])

    def grad(self, inputs, grads):
        return [self.helper(self, 0, inputs[0], "test op")]


@pytest.mark.parametrize("helper,word", [(gradient.grad_undefined, "undefined"),
                                         (gradient.grad_not_implemented, "not implemented")])
def test_null_gradients_raise_or_are_returned(helper, word):
    x = T.dvector("x")
    cost = _Floor(helper)(x).sum()
    with pytest.raises(NullTypeGradError, match=word):
        T.grad(cost, x)
    null = T.grad(cost, x, null_gradients="return")
    assert isinstance(null.type, gradient.NullType) and word in null.type.why_null
    # a path that avoids the op is fine; the null one must still not be used
    y = T.dvector("y")
    assert T.grad(y.sum() + cost, y) is not None
    with pytest.raises(NullTypeGradError):
        T.grad(cost + x.sum(), x)


def test_subgraph_grad_chains_to_the_full_gradient():
    x, w1, w2 = T.dvector("x"), T.dvector("w1"), T.dvector("w2")
    h = T.tanh(x * w1)
    cost = T.sum((h * w2) ** 2)
    full = T.grad(cost, [w1, w2])
    (g_w2,), (g_h,) = gradient.subgraph_grad(wrt=[w2], end=[h], cost=cost)
    (g_w1,), _ = gradient.subgraph_grad(wrt=[w1], end=[x], start={h: g_h})
    vals = [rand((4,), rng=make_rng(s)) for s in range(3)]
    got = compile_and_run([x, w1, w2], [g_w1, g_w2], vals)
    want = compile_and_run([x, w1, w2], full, vals)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError):
        gradient.subgraph_grad(wrt=[w2], end=[h])
