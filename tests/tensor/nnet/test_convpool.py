"""ConvPoolAct / ConvPoolActGrad (symcnn/tensor/nnet/convpool.py) and their programs
(symcnn/tensor/nnet/conv_epilogue.py): FLOPs, roles of inputs and outputs, programs taken from graphs
(values and gradients are checked in tests/codegen/test_convpool.py and tests/rewrite/test_convpool.py)."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.conv_epilogue import (ScalarConstant, is_identity, passed_input, program_from_graph,
                                              program_of)
from symcnn.tensor.nnet.convpool import ConvPoolAct

from tests.helpers import conv_act_ops


@pytest.mark.parametrize("conv", [{}, dict(border_mode="half", subsample=(2, 1)), dict(border_mode=(1, 0))])
def test_flops_are_the_convolutions(conv):
    """2 * N*K*C*kh*kw*OH*OW of the convolution (the size taken from running conv2d); the
    gradient counts the filters' gradient and, with need_gx, the input's."""
    xs, ws = (2, 3, 9, 8), (4, 3, 3, 2)
    x, w = T.dtensor4(), T.dtensor4()
    rng = np.random.default_rng(0)
    top = symcnn.function([x, w], conv2d(x, w, **conv))(rng.standard_normal(xs), rng.standard_normal(ws)).shape
    want = 2 * int(np.prod(top)) * 3 * 3 * 2
    pooled = (2, 4, 2, 2)   # any: the pooled operands do not change the count
    fwd, bwd_gx, bwd = conv_act_ops("tanh", ws=(2, 2), **conv)
    assert fwd.flops([xs, ws, (4,)]) == want
    grad_shapes = [xs, ws, pooled, pooled, pooled]
    assert bwd_gx.flops(grad_shapes) == 2 * want
    assert bwd.flops(grad_shapes) == want


def test_roles_follow_what_the_programs_read():
    fwd, bwd, _ = conv_act_ops("maximum", pool=None)
    assert fwd.output_roles() == ["out", "z"] and bwd.input_roles() == ["x", "W", "z", "g0"]
    fwd, bwd, nogx = conv_act_ops("sigmoid", ws=(3, 3), has_bias=False)
    assert fwd.output_roles() == ["out", "mask"] and bwd.input_roles() == ["x", "W", "mask", "out", "g0"]
    assert bwd.output_roles() == ["gW", "gx"] and nogx.output_roles() == ["gW"]
    assert fwd.mask_dtype == "uint16"


def test_programs_from_graphs():
    z = T.ftensor4()
    prog = program_from_graph([z], T.nnet.relu(z, 0.2))
    assert any(isinstance(s, ScalarConstant) for s, _, _, _ in prog.steps)
    v = np.linspace(-2, 2, 9).astype("float32")
    np.testing.assert_allclose(prog.impl(v), np.where(v > 0, v, 0.2 * v), rtol=1e-6)
    assert is_identity(program_from_graph([z], z)) and is_identity(None)
    zs = [T.ftensor4() for _ in range(3)]
    assert passed_input(program_from_graph(zs, zs[2]), 2) == 2
    assert passed_input(program_from_graph(zs, zs[0]), 2) is None                # returns z, not g
    assert passed_input(program_from_graph(zs, zs[2] * (zs[0] > 0)), 2) is None  # ReLU's derivative
    assert passed_input(None, 2) is None
    assert program_from_graph([z], T.tanh(z).sum()) is None          # not elementwise
    assert program_from_graph([z], z + T.ftensor4()) is None          # another non-constant leaf
    y = T.ftensor4()
    two = program_from_graph([z, y], y * T.exp(z) + z)               # a value read twice
    np.testing.assert_allclose(two.impl(v, v + 1), (v + 1) * np.exp(v) + v, rtol=1e-6)
    with pytest.raises(ValueError, match="not an elementwise function"):
        program_of(lambda a: a.sum(), "float32")
    assert ConvPoolAct(act=program_of(lambda a: a, "float32")).act is None   # the identity is no program
