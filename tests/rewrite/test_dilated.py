"""dilated_conv_by_phases (symcnn/rewrite/dilated.py): where it fires (the forward and both gradients
of a static unit-stride dilated convolution become undilated ones between PhaseSplit and PhaseMerge),
where it does not, and that it preserves results (against the reference; the configuration space is
drawn in tests/codegen/test_conv_space.py)."""
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.compile.mode import Mode
from symcnn.tensor.nnet import conv2d
from tests.helpers import check_native_vs_reference, make_rng


def _step(xs, ws, border="half", subsample=(1, 1), dilation=(2, 2), batch_open=True):
    x = T.TensorType("float64", shape=((None,) if batch_open else xs[:1]) + xs[1:])("x")
    w = T.TensorType("float64", shape=ws)("w")
    r = T.tensor4("r", dtype="float64")
    y = conv2d(x, w, border_mode=border, subsample=subsample, filter_dilation=dilation)
    return [x, w, r], [y] + T.grad((y * r).sum(), [x, w])


def _values(ins, outs, xs, ws):
    rng = make_rng(sum(xs))
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    yv = symcnn.function(ins[:2], outs[0], mode="reference")(xv, wv)
    return [xv, wv, rng.standard_normal(yv.shape)]


def test_fires_for_the_forward_and_both_gradients_and_preserves_results():
    xs, ws = (3, 32, 20, 18), (32, 32, 3, 3)
    ins, outs = _step(xs, ws)
    fn, _ = check_native_vs_reference(ins, outs, _values(ins, outs, xs, ws), rtol=1e-9, atol=1e-9)
    fired = [f for f in fn.rewrite_log if f.rewrite == "dilated_conv_by_phases"]
    assert sorted(f.op.split("{")[0] for f in fired) == ["Conv2d", "Conv2dGradInputs", "Conv2dGradWeights"], fired


@pytest.mark.parametrize("xs,ws,kw,why", [
    ((3, 32, 20, 18), (32, 32, 3, 3), dict(subsample=(2, 2)), "strided"),
    ((3, 16, 20, 18), (32, 16, 3, 3), {}, "few channels"),
    ((3, 32, 20, 18), (24, 32, 3, 3), {}, "few filters"),
    ((3, 32, 12, 18), (32, 32, 3, 3), dict(border="valid"), "phases of fewer than 8 output rows"),
    ((3, 32, 20, 18), (32, 32, 3, 3), dict(dilation=(1, 1)), "undilated"),
])
def test_does_not_fire(xs, ws, kw, why):
    ins, outs = _step(xs, ws, **kw)
    fn, _ = check_native_vs_reference(ins, outs, _values(ins, outs, xs, ws), rtol=1e-9, atol=1e-9)
    assert not [f for f in fn.rewrite_log if f.rewrite == "dilated_conv_by_phases"], why


def test_can_be_excluded_by_name():
    xs, ws = (2, 32, 20, 18), (32, 32, 3, 3)
    ins, outs = _step(xs, ws)
    fn = symcnn.function(ins, outs, mode=Mode(excluding=["dilated_conv_by_phases"]))
    fn(*_values(ins, outs, xs, ws))
    assert not [f for f in fn.rewrite_log if f.rewrite == "dilated_conv_by_phases"]
