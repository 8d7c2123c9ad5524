"""The one in-place rule (symcnn/rewrite/inplace.py) that fusion and the native memory plan share."""
import numpy as np

import symcnn
import symcnn.tensor as T
from symcnn.graph.fg import FunctionGraph
from symcnn.rewrite import PHASES
from symcnn.rewrite.inplace import may_update_in_place
from symcnn.tensor.blas import FusedDot


def _graph(outputs, W, x):
    return FunctionGraph([x, W], outputs, clone=False)


def test_an_sgd_update_may_be_written_in_place():
    W = symcnn.shared(np.zeros((3, 4), "float32"), name="W")
    x = T.matrix("x")
    new = W - 0.1 * T.dot(x.T, x)[:3]
    fg = _graph([new], W, x)
    assert may_update_in_place(fg, new.owner, W)
    assert not may_update_in_place(fg, new.owner, x)            # does not read x itself


def test_not_in_place():
    W = symcnn.shared(np.zeros((1, 4), "float32"), name="W", broadcastable=(True, False))
    x = T.matrix("x")
    wider = W + x                                                  # broadcasts W: another layout
    assert not may_update_in_place(_graph([wider], W, x), wider.owner, W)
    narrow = W * 2
    assert may_update_in_place(_graph([narrow], W, x), narrow.owner, W)
    read_again = W * 2
    assert not may_update_in_place(_graph([read_again, read_again.sum()], W, x), read_again.owner, W)
    twice = W * 3
    assert not may_update_in_place(_graph([twice, twice], W, x), twice.owner, W)
    dot = T.dot(W.T, W)                                           # not elementwise
    assert not may_update_in_place(_graph([dot], W, x), dot.owner, W)


def test_fusion_leaves_an_update_the_plan_writes_in_place():
    rng = np.random.RandomState(0)
    W = symcnn.shared(rng.rand(4, 3).astype("float32"), name="W")
    x, g = T.matrix("x"), T.matrix("g")
    f = symcnn.function([x, g], [], updates=[(W, W - 0.1 * T.dot(x.T, g))], mode="native")
    assert not any(isinstance(n.op, FusedDot) for n in f.fgraph.apply_nodes)
    assert "in place into W" in [k.note for k in f.kernels]


def test_no_inplace_phase():
    assert "inplace" not in PHASES
