"""Native Pool / MaxPoolGrad / AveragePoolGrad / MaxPoolGradGrad against the reference linker."""
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from symcnn.tensor.signal.pool import AveragePoolGrad, MaxPoolGrad, MaxPoolGradGrad, Pool, pool_2d

from tests.helpers import check_native_vs_reference, check_same_error
from tests.helpers import target  # noqa: F401,E402 (a fixture: one run per target)

RTOL, ATOL = 1e-4, 1e-5
MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]

# (ws, stride, pad, ignore_border)
GEOMETRIES = [
    ((2, 2), None, (0, 0), True),
    ((2, 2), None, (0, 0), False),
    ((3, 2), (1, 2), (0, 0), False),      # overlapping rows, partial windows
    ((3, 3), (2, 2), (1, 1), True),       # padding
    ((2, 3), (3, 1), (1, 2), True),       # stride > window in rows, padding
    ((3, 3), (2, 2), (0, 0), False),
    ((1, 1), (2, 2), (0, 0), False),
    ((4, 1), (1, 1), (0, 0), True),
]


def _values(shape, mode, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape)
    if mode == "max":
        v = np.round(v * 2)  # many ties inside windows
    return v.astype(dtype)


def _pool_and_grad(shape, ws, stride, pad, ignore_border, mode, static=False, dtype="float32", more_shapes=()):
    """pool_2d and its gradient natively vs reference; `more_shapes` are further calls of the
    same compiled functions (dynamic shapes only)."""
    x = T.TensorType(dtype, shape=shape if static else (None,) * len(shape))("x")
    y = pool_2d(x, ws=ws, stride=stride, pad=pad, ignore_border=ignore_border, mode=mode)
    r = T.TensorType(dtype, shape=(None,) * len(shape))("r")
    gx = T.grad((y * r).sum(), x)
    ref = symcnn.function([x], y, mode="reference")
    calls = []
    for k, shp in enumerate((shape,) + tuple(more_shapes)):
        xv = _values(shp, mode, seed=k, dtype=dtype)
        calls.append([xv, _values(ref(xv).shape, "sum", seed=k + 100, dtype=dtype)])
    check_native_vs_reference([x, r], [y, gx], None, rtol=RTOL, atol=ATOL, calls=calls)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: f"ws{g[0]}-st{g[1]}-pad{g[2]}-ib{g[3]}")
def test_modes_and_geometries(mode, geom):
    ws, stride, pad, ib = geom
    _pool_and_grad((2, 3, 7, 9), ws, stride, pad, ib, mode)


@pytest.mark.parametrize("mode", MODES)
def test_odd_widths_batch_one(mode, target):
    # widths that do not divide the vector width, batch 1; one compiled function, several shapes
    shapes = [(1, 1, 5, c) for c in (1, 3, 7, 13, 17)] + [(2, 3, 1, 1), (1, 2, 9, 33)]
    _pool_and_grad(shapes[0], (2, 2), None, (0, 0), False, mode, more_shapes=shapes[1:])
    _pool_and_grad(shapes[0], (2, 2), None, (0, 0), True, mode, more_shapes=shapes[1:])
    _pool_and_grad(shapes[0], (3, 2), (2, 1), (1, 1), True, mode, more_shapes=shapes[1:])


@pytest.mark.parametrize("mode", MODES)
def test_static_shapes(mode, target):
    _pool_and_grad((3, 4, 24, 24), (2, 2), None, (0, 0), True, mode, static=True)
    _pool_and_grad((2, 3, 11, 10), (3, 3), (2, 2), (1, 1), True, mode, static=True)
    _pool_and_grad((2, 3, 11, 10), (3, 2), (2, 1), (0, 0), False, mode, static=True)


def test_other_ranks_and_float64(target):
    _pool_and_grad((13, 17), (2, 3), None, (0, 0), False, "max")
    _pool_and_grad((2, 13, 17), (3, 3), (2, 2), (1, 1), True, "average_inc_pad", dtype="float64")
    _pool_and_grad((2, 1, 2, 6, 5), (2, 2), (1, 1), (0, 0), True, "max")


def test_window_larger_than_input():
    _pool_and_grad((2, 2, 3, 4), (5, 5), None, (0, 0), False, "max")          # one partial window
    _pool_and_grad((2, 2, 3, 4), (5, 5), None, (0, 0), True, "sum")           # no window at all
    _pool_and_grad((2, 2, 3, 4), (5, 5), (2, 2), (0, 0), False, "average_exc_pad")


def test_max_ties_all_receive_gradient():
    x = T.tensor4("x")
    y = pool_2d(x, ws=(2, 2), ignore_border=True)
    gx = T.grad(y.sum(), x)
    xv = np.array([[[[1, 1, 0, 2], [1, 1, 2, 2], [3, 0, -1, -1], [0, 3, -1, -1]]]], dtype="float32")
    _, (res,) = check_native_vs_reference([x], [gx], [xv])
    expected = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 1]], dtype="float32")
    np.testing.assert_array_equal(res[0][0, 0], expected)


def test_max_pool_with_nan_and_inf():
    x = T.matrix("x")
    y = pool_2d(x, ws=(2, 2), ignore_border=False)
    gx = T.grad(y.sum(), x)
    xv = np.array([[np.nan, 1, -np.inf, -np.inf, 2], [0, 1, -np.inf, -np.inf, 5], [1, 2, 3, np.inf, 7]],
                  dtype="float32")
    check_native_vs_reference([x], [y, gx], [xv])


def test_max_pool_grad_grad():
    x = T.tensor4("x")
    gz = T.tensor4("gz")
    for ws, st, pad, ib in GEOMETRIES[:5]:
        z = Pool(ws, ib, st, pad)(x)
        gx = MaxPoolGrad(ws, ib, st, pad)(x, z, gz)
        ggx = T.tensor4("ggx")
        ggz = MaxPoolGradGrad(ws, ib, st, pad)(x, z, ggx)
        xv = _values((2, 2, 7, 6), "max")
        zshape = symcnn.function([x], z, mode="reference")(xv).shape
        check_native_vs_reference([x, gz, ggx], [gx, ggz],
                                  [xv, _values(zshape, "sum", 1), _values(xv.shape, "sum", 2)],
                                  rtol=RTOL, atol=ATOL)


def test_integer_pooling():
    x = T.imatrix("x")
    rng = np.random.default_rng(3)
    xv = rng.integers(-50, 50, size=(7, 9)).astype("int32")
    for mode in MODES:
        y = pool_2d(x, ws=(2, 3), ignore_border=False, mode=mode)
        check_native_vs_reference([x], y, [xv])


def test_shape_errors():
    x = T.tensor4("x")
    gz = T.tensor4("gz")
    xv = _values((2, 2, 6, 6), "max")
    g = AveragePoolGrad((2, 2), True, None, (0, 0), "average_inc_pad")(x, gz)
    check_same_error([x, gz], g, [xv, _values((2, 2, 3, 4), "sum")], ValueError)
    z = T.tensor4("z")
    m = MaxPoolGrad((2, 2), True)(x, z, gz)
    check_same_error([x, z, gz], m, [xv, _values((2, 2, 3, 3), "max"), _values((2, 2, 2, 3), "sum")],
                     ValueError)


def test_static_type_mismatch_at_call():
    x = T.tensor4("x", shape=(2, 3, 8, 8))
    y = pool_2d(x, ws=(2, 2), ignore_border=True)
    check_same_error([x], y, [_values((2, 3, 8, 9), "max")], ValueError)
