"""mode='debug' compares ConvPoolAct's tie mask by what it means: bits may differ from the
reference's at positions within float tolerance of the window maximum (near-ties, whose order
depends on rounding), never elsewhere. The LeNet tutorial runs in debug mode."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen.debug import DebugModeError
from tests.helpers import conv_act_ops


def _debug_fn(x_value, tamper):
    """A debug-mode ConvPoolAct whose native mask is changed by tamper(mask) before the check."""
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    out, mask = conv_act_ops("tanh", ws=(2, 2))[0](x, W, b)
    f = symcnn.function([x, W, b], [out, mask], mode="debug")
    runner = f.runner
    k = runner.n_out + runner.inner.index(runner.order[-1].outputs[1])   # the mask among the native results
    native = runner.native

    def tampered(values):
        results = list(native(values))
        results[k] = tamper(np.array(results[k]))
        return results
    runner.native = tampered
    Wv = np.full((2, 1, 2, 2), 0.25, "float32")
    return lambda: f(x_value, Wv, np.zeros(2, "float32"))


def _clear_first_bit(mask):
    mask[0, 0, 0, 0] &= ~np.uint8(1)
    return mask


def test_a_tie_bit_the_rounding_dropped_is_accepted():
    # a constant image: every window's four conv values tie exactly, all four bits are set;
    # native code that found one of them a rounding error smaller drops its bit
    fn = _debug_fn(np.ones((1, 1, 5, 5), "float32"), _clear_first_bit)
    fn()


def test_a_near_tie_within_tolerance_is_accepted():
    x = np.ones((1, 1, 5, 5), "float32")
    x[0, 0, 0, 0] += 1e-6    # position 0 of window (0, 0) is larger by a rounding error
    fn = _debug_fn(x, lambda m: (m.__setitem__((0, 0, 0, 0), np.uint8(0b1110)), m)[1])
    fn()


def test_a_bit_away_from_the_maximum_is_still_a_mismatch():
    x = np.random.RandomState(0).standard_normal((2, 1, 6, 6)).astype("float32")

    def set_all_bits(mask):
        mask[1, 1, 0, 1] = 0b1111
        return mask
    with pytest.raises(DebugModeError, match=r"tie masks of 1 window differ .* \(first at index \(1, 1, 0, 1\)\)"):
        _debug_fn(x, set_all_bits)()


def test_a_window_without_any_bit_is_a_mismatch():
    fn = _debug_fn(np.ones((1, 1, 5, 5), "float32"), lambda m: (m.__setitem__((0, 1, 1, 1), 0), m)[1])
    with pytest.raises(DebugModeError, match="ConvPoolAct"):
        fn()


def test_other_outputs_are_compared_as_before():
    x, W, b = T.tensor4("x"), T.tensor4("W"), T.vector("b")
    out, mask = conv_act_ops("tanh", ws=(2, 2))[0](x, W, b)
    op = out.owner.op
    o = np.zeros((1, 1, 2, 2), "float32")
    assert op.debug_mismatch(out.owner, [], 0, o, o + 1, 1e-4, 1e-5) is NotImplemented


def test_tutorial_lenet_trains_in_debug_mode():
    from symcnn.datasets import load_data
    from symcnn.layers import build_lenet5
    bs = 12
    (trx, try_), _, _ = load_data()
    x, y, index = T.matrix("x"), T.ivector("y"), T.lscalar()
    model = build_lenet5(np.random.RandomState(23455), x, bs)
    cost = model.negative_log_likelihood(y)
    grads = T.grad(cost, model.params)
    kw = dict(updates=[(p, p - 0.1 * g) for p, g in zip(model.params, grads)],
              givens={x: trx[index * bs:(index + 1) * bs], y: try_[index * bs:(index + 1) * bs]})
    train = symcnn.function([index], cost, mode="debug", **kw)
    costs = [float(train(i)) for i in range(3)]
    assert all(np.isfinite(costs)) and costs[-1] < 2.4
