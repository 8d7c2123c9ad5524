"""What a native call hands back: outputs of every kind, and updates that change shape."""
import numpy as np

import symcnn
import symcnn.tensor as T

from tests.helpers import check_native_vs_reference


def test_outputs_that_are_inputs_and_0d_constants():
    x = T.dvector("x")
    a = np.array([1.0, 2.0])
    fn, (res,) = check_native_vs_reference([x], [x, T.constant(np.float64(3.0)), T.constant(np.arange(3))], [a])
    assert res[1].shape == () and res[1].dtype == np.float64
    assert not np.shares_memory(res[0], a)


def test_update_may_change_a_shared_variables_shape():
    w = symcnn.shared(np.zeros(3, "float32"), name="w")
    x = T.fvector("x")
    f = symcnn.function([x], w.sum(), updates=[(w, x * 2)], mode="native")
    f(np.ones(5, "float32"))
    np.testing.assert_array_equal(w.get_value(), np.full(5, 2, "float32"))
    f(np.ones(5, "float32"))
    assert f(np.arange(2, dtype="float32")) == 10
    np.testing.assert_array_equal(w.get_value(), [0, 2])
