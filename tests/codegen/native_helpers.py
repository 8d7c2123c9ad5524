"""Shared helpers for the native-backend tests: compile a graph in 'native' and
'reference' mode and check that both agree (values, dtypes, shapes, errors)."""
import numpy as np
import pytest

import symcnn


def _compare(native, ref, rtol, atol, what):
    native = np.asarray(native)
    ref = np.asarray(ref)
    assert native.dtype == ref.dtype, f"{what}: dtype {native.dtype} (native) vs {ref.dtype} (reference)"
    assert native.shape == ref.shape, f"{what}: shape {native.shape} (native) vs {ref.shape} (reference)"
    if native.dtype.kind == "f":
        np.testing.assert_allclose(native, ref, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
        # assert_allclose treats NaN == NaN only when both are NaN; also check inf signs and NaN positions.
        np.testing.assert_array_equal(np.isnan(native), np.isnan(ref), err_msg=what + " (NaN positions)")
        np.testing.assert_array_equal(np.isposinf(native), np.isposinf(ref), err_msg=what + " (+inf)")
        np.testing.assert_array_equal(np.isneginf(native), np.isneginf(ref), err_msg=what + " (-inf)")
    elif native.dtype == np.bool_:
        # compare the bytes: a native bool that is neither 0 nor 1 breaks later numpy arithmetic
        np.testing.assert_array_equal(native.view(np.uint8), ref.view(np.uint8), err_msg=what)
    else:
        np.testing.assert_array_equal(native, ref, err_msg=what)


def compile_both(inputs, outputs, updates=None, mode="native", **kwargs):
    """(native function, reference function) for the same graph; `mode` may be a
    Mode (e.g. native with some rewrites excluded)."""
    fn_native = symcnn.function(inputs, outputs, updates=updates, mode=mode, **kwargs)
    fn_ref = symcnn.function(inputs, outputs, updates=updates, mode="reference", **kwargs)
    return fn_native, fn_ref


def check_native_vs_reference(inputs, outputs, values, rtol=1e-5, atol=1e-6, calls=None, **kwargs):
    """Compile `outputs` from `inputs` natively and with the reference linker, call
    both with `values` (one list of input values; or `calls`, a list of such lists
    for several calls on the same compiled functions) and assert equal dtypes,
    shapes and values (NaN positions and infinities included).

    Returns (native function, list of native results per call)."""
    fn_native, fn_ref = compile_both(inputs, outputs, **kwargs)
    calls = [values] if calls is None else calls
    single = not isinstance(outputs, (list, tuple))
    results = []
    for c, vals in enumerate(calls):
        got = fn_native(*[np.copy(v) if isinstance(v, np.ndarray) else v for v in vals])
        want = fn_ref(*[np.copy(v) if isinstance(v, np.ndarray) else v for v in vals])
        got_l, want_l = ([got], [want]) if single else (got, want)
        assert len(got_l) == len(want_l)
        for k, (g, w) in enumerate(zip(got_l, want_l)):
            _compare(g, w, rtol, atol, f"call {c}, output {k} ({outputs if single else outputs[k]})")
        results.append(got)
    return fn_native, results


def check_same_error(inputs, outputs, values, exc=ValueError, **kwargs):
    """Both modes raise `exc` for these values; returns (native message, reference message)."""
    fn_native, fn_ref = compile_both(inputs, outputs, **kwargs)
    with pytest.raises(exc) as ref_info:
        fn_ref(*values)
    with pytest.raises(exc) as nat_info:
        fn_native(*values)
    return str(nat_info.value), str(ref_info.value)
