"""pool_2d with ws / stride / pad known only at run time (RuntimePool and its gradient ops):
the same values as pooling with the geometry known when building, shape inference,
gradients (ties go to every maximum), and the run-time checks of the geometry."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.signal.pool import Pool, pool_2d
from symcnn.tensor.signal.pool_runtime import (RuntimeAveragePoolGrad, RuntimeMaxPoolGrad,
                                               RuntimeMaxPoolGradGrad, RuntimePool)
from tests.helpers import assert_op_contract, assert_starts_with_location, check_grad, here

MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]
# ws, stride, pad, ignore_border
GEOMETRIES = [
    ((2, 2), (2, 2), (0, 0), True),
    ((2, 2), (2, 2), (0, 0), False),
    ((3, 2), (1, 2), (0, 0), False),
    ((3, 3), (2, 2), (1, 1), True),
    ((2, 3), (3, 1), (1, 2), True),
    ((3, 3), (2, 1), (0, 0), False),
    ((8, 2), (1, 1), (0, 0), True),   # taller than the image: no output rows
]


def distinct(shape, seed=0):
    """Values 0.1 apart in random order: no ties, so max pooling is differentiable there."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1 - n * 0.05


def symbolic_geometry():
    return T.lvector("ws"), T.lvector("stride"), T.lvector("pad")


def test_pool_2d_builds_the_runtime_op_only_for_run_time_values():
    x = T.dtensor4("x")
    ws, st, pad = symbolic_geometry()
    assert isinstance(pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=True).owner.op, RuntimePool)
    a = T.iscalar("a")
    out = pool_2d(x, ws=(a, 2), ignore_border=False, mode="sum")
    assert out.owner.op == RuntimePool(False, "sum")
    assert out.type.shape == (None, None, None, None)
    # values known when building keep the static-geometry op (and its specialised kernels)
    assert isinstance(pool_2d(x, ws=T.constant(np.array([2, 2])), ignore_border=True).owner.op, Pool)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_same_values_as_the_static_geometry(mode, geom):
    ws_v, st_v, pad_v, ib = geom
    x = T.dtensor4("x")
    ws, st, pad = symbolic_geometry()
    dyn = pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=ib, mode=mode)
    static = pool_2d(x, ws=ws_v, stride=st_v, pad=pad_v, ignore_border=ib, mode=mode)
    r = T.dtensor4("r")
    grads = T.grad((dyn * r).sum(), x), T.grad((static * r).sum(), x)
    fn = symcnn.function([x, r, ws, st, pad], [dyn, static] + list(grads), mode="reference",
                         on_unused_input="ignore")
    xv = np.round(np.random.default_rng(3).standard_normal((2, 3, 7, 6)) * 2)  # ties for max
    rv = np.random.default_rng(4).standard_normal(symcnn.function([x], static, mode="reference")(xv).shape)
    got = fn(xv, rv, ws_v, st_v, pad_v)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[2], got[3])


@pytest.mark.parametrize("mode", MODES)
def test_op_contract_and_infer_shape(mode):
    for ws_v, st_v, pad_v, ib in GEOMETRIES:
        for shape in [(2, 3, 7, 6), (1, 5, 1), (4, 0)]:
            if pad_v != (0, 0) and 0 in shape:
                continue
            assert_op_contract(lambda x, w, s, p, ib=ib: RuntimePool(ib, mode)(x, w, s, p),
                               [np.ones(shape), np.array(ws_v), np.array(st_v), np.array(pad_v)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMETRIES[:6])
def test_verify_grad(mode, geom):
    ws_v, st_v, pad_v, ib = geom
    w, s, p = (T.constant(np.array(v)) for v in (ws_v, st_v, pad_v))
    # constants would make pool_2d pick the static op: build the runtime op directly
    check_grad(lambda x: RuntimePool(ib, mode)(x, w, s, p), [(2, 2, 7, 6)],
               values=[distinct((2, 2, 7, 6), seed=1)])


def test_max_grad_ties_go_to_every_maximum():
    x = T.dmatrix("x")
    ws, st, pad = symbolic_geometry()
    g = T.grad(pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=True).sum(), x)
    xv = np.array([[1., 1., 0.], [0., 1., 2.], [2., 0., 2.]])
    got = symcnn.function([x, ws, st, pad], g, mode="reference")(xv, [2, 2], [1, 1], [0, 0])
    # 2x2 windows, stride 1: top-left max 1 at three places; top-right max 2 at (1,2);
    # bottom-left max 2 at (2,0); bottom-right max 2 tied at (1,2) and (2,2)
    np.testing.assert_array_equal(got, [[1., 1., 0.], [0., 1., 2.], [1., 0., 1.]])


def test_gradient_ops_and_their_gradients():
    w, s, p = (T.constant(np.array(v)) for v in ((3, 2), (2, 1), (1, 0)))
    x0 = distinct((2, 7, 5), seed=2)
    z = RuntimePool(True, "max")(T.constant(x0), w, s, p)
    zv = z.eval()
    # MaxPoolGrad is linear in gz; MaxPoolGradGrad in ggx: their gradients check numerically
    check_grad(lambda gz: RuntimeMaxPoolGrad(True)(T.constant(x0), zv, gz, w, s, p), [zv.shape])
    check_grad(lambda ggx: RuntimeMaxPoolGradGrad(True)(T.constant(x0), zv, ggx, w, s, p), [x0.shape])
    for mode in MODES[1:]:
        pooled = RuntimePool(True, mode)(T.constant(x0), w, s, p).eval().shape
        check_grad(lambda gz, mode=mode: RuntimeAveragePoolGrad(True, mode)(T.constant(x0), gz, w, s, p),
                   [pooled])


def test_second_order_through_runtime_max_pooling():
    w, s, p = (T.constant(np.array(v)) for v in ((2, 3), (1, 2), (0, 1)))

    def cost_grad(x):
        return T.grad((RuntimePool(True, "max")(x, w, s, p) ** 2).sum(), x)

    check_grad(cost_grad, [(1, 6, 7)], values=[distinct((1, 6, 7), seed=5)])


def test_geometry_is_disconnected_from_the_cost():
    x = T.dtensor4("x")
    ws, st, pad = symbolic_geometry()
    c = pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=True).sum()
    with pytest.raises(Exception, match="[Dd]isconnected"):
        T.grad(c, ws)
    assert T.grad(c, ws, disconnected_inputs="ignore").eval({ws: np.array([1, 1])}).tolist() == [0, 0]


BAD = [
    ((0, 2), (1, 1), (0, 0), True, "ws .* between 1"),
    ((2, 2), (0, 1), (0, 0), True, "stride .* between 1"),
    ((2, 2), (1, 1), (-1, 0), True, "pad .* between 0"),
    ((2, 2), (1, 1), (2, 0), True, "pad .* smaller than the window"),
    ((2, 2), (1, 1), (1, 0), False, "padding works only with ignore_border=True"),
    ((2 ** 31, 2), (1, 1), (0, 0), True, "ws .* 2147483647"),
    ((2, 2, 2), (1, 1), (0, 0), True, "ws .* 2 values"),
]


@pytest.mark.parametrize("ws_v,st_v,pad_v,ib,msg", BAD)
def test_bad_geometry_at_run_time_names_the_line(ws_v, st_v, pad_v, ib, msg):
    x = T.dtensor4("x")
    ws, st, pad = symbolic_geometry()
    out = pool_2d(x, ws=ws, stride=st, pad=pad, ignore_border=ib); loc = here()  # noqa: E702
    fn = symcnn.function([x, ws, st, pad], out, mode="reference")
    with pytest.raises(ValueError, match=msg) as ei:
        fn(np.zeros((1, 1, 4, 4)), ws_v, st_v, pad_v)
    assert_starts_with_location(ei, loc)


def test_bad_geometry_types_when_building():
    x = T.dtensor4("x")
    with pytest.raises(TypeError, match="int vector"):
        pool_2d(x, ws=T.dvector("w"), ignore_border=True)
    with pytest.raises(TypeError, match="int scalars"):
        pool_2d(x, ws=(T.dscalar("a"), 2), ignore_border=True)
    with pytest.raises(TypeError, match="pair of ints"):
        pool_2d(x, ws=T.lmatrix("w"), ignore_border=True)
    with pytest.raises(TypeError, match="at least 2 dimensions"):
        RuntimePool(True)(T.dvector("v"), T.lvector("w"))
    with pytest.raises(ValueError, match="mode"):
        RuntimePool(True, "median")


def test_props():
    assert RuntimePool(True, "max") == RuntimePool(True, "max")
    assert RuntimePool(True, "max") != RuntimePool(False, "max")
    assert RuntimePool(True, "sum") != RuntimePool(True, "max")
    assert hash(RuntimeMaxPoolGrad(True)) == hash(RuntimeMaxPoolGrad(True))
