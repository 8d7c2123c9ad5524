"""static_shape and static_shape_slice (symcnn/rewrite/canonicalize.py): sizes a type fixes become
constants, sizes it leaves open stay shape reads, and results are preserved."""
import numpy as np

import symcnn
import symcnn.tensor as T
from symcnn.graph.basic import Constant
from symcnn.tensor.basic import Shape, Shape_i
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.nnet.conv import Conv2dGradInputs
from symcnn.tensor.subtensor import Subtensor
from tests.helpers import assert_close, check_native_vs_reference, make_rng, rewritten


def _kinds(fn):
    return [type(n.op) for n in fn.fgraph.toposort()]


def test_a_specialised_input_gradient_reads_its_image_size_as_a_constant(monkeypatch):
    """T.grad of a convolution of a T.tensor4 gives its input gradient the image size as
    x.shape[2:]; compiled again for the arguments' sizes (compile/specialize.py, which fixes all but
    the batch in x's type), that is a constant, so the kernels are chosen for it."""
    monkeypatch.setattr(symcnn.config, "specialize_shapes", True)   # the suite turns it off (tests/conftest.py)
    rng = make_rng(3)
    x = T.tensor4("x", dtype="float64")
    w = symcnn.shared(rng.standard_normal((4, 3, 3, 3)), name="w")
    y = conv2d(x, w, border_mode="half")
    g = T.grad((y * y).sum(), x)
    fn, ref = symcnn.function([x], g), symcnn.function([x], g, mode="reference")
    for batch in (2, 1):
        xv = rng.standard_normal((batch, 3, 9, 7))
        assert_close(fn(xv), ref(xv), rtol=1e-9, atol=1e-9)
    (runner, fgraph), = [r for r in fn._specializer.runners.values() if r is not None]
    node = next(n for n in fgraph.toposort() if isinstance(n.op, Conv2dGradInputs))
    assert isinstance(node.inputs[2], Constant) and list(node.inputs[2].data) == [9, 7]


def test_open_sizes_stay_shape_reads():
    x = T.TensorType("float32", shape=(None, 5))("x")
    outs = [T.cast(x.shape, "float32").sum(), T.cast(x.shape[0], "float32"), T.cast(x.shape[:1], "float32").sum(),
            T.cast(x.shape[1], "float32"), T.cast(x.shape[-1:], "float32").sum()]
    fn, results = check_native_vs_reference([x], outs, [np.ones((4, 5), "float32")])
    kinds = _kinds(fn)
    assert Shape in kinds and Shape_i in kinds and Subtensor in kinds   # x.shape, x.shape[0], x.shape[:1]
    assert [float(r) for r in results[0]] == [9.0, 4.0, 4.0, 5.0, 5.0]
    folded = rewritten([x], outs[3:]).rewrite_log
    assert {f.rewrite for f in folded} >= {"static_shape", "static_shape_slice"}
