"""ConvPoolTanh / ConvPoolTanhGrad (symcnn/tensor/nnet/convpool.py): FLOPs (values and gradients
are checked in tests/codegen/test_convpool.py and tests/rewrite/test_convpool.py)."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.convpool import ConvPoolTanh, ConvPoolTanhGrad


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
    assert ConvPoolTanh(ws=(2, 2), **conv).flops([xs, ws, (4,)]) == want
    grad_shapes = [xs, ws, pooled, pooled, pooled]
    assert ConvPoolTanhGrad(ws=(2, 2), need_gx=True, **conv).flops(grad_shapes) == 2 * want
    assert ConvPoolTanhGrad(ws=(2, 2), need_gx=False, **conv).flops(grad_shapes) == want
