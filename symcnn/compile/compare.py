"""Whether a result matches the reference result: the one comparison policy of mode='debug'
(every node's native outputs against its numpy `perform`) and of the tests (a compiled function
against the reference linker).

A result matches when
- its dtype and shape are the reference's;
- integers are equal, and bools are equal byte for byte (a bool byte that is neither 0 nor 1
  breaks later numpy arithmetic);
- floats have NaN, +inf and -inf at the same positions, and elsewhere
  |result - reference| <= atol + rtol * |reference| (numpy's allclose rule, in float64).

The tolerances are the caller's: `tolerance(dtype)` is the usual pair for a whole graph, and
`magnitude(reference)` scales atol where sums may be reordered (reductions, convolutions)."""
import numpy as np

# (rtol, atol) per float dtype for a graph of several ops compared output by output
TOLERANCE = {"float32": (2e-5, 1e-5), "float64": (1e-9, 1e-10)}


def tolerance(dtype):
    """(rtol, atol) for results of `dtype` (float64's for anything but float32)."""
    return TOLERANCE["float32" if str(dtype) == "float32" else "float64"]


def magnitude(reference):
    """max(1, largest finite |value|) of a float reference (1 for other dtypes): multiplied into
    atol where the order of a sum may differ, since its rounding error grows with the values."""
    reference = np.asarray(reference)
    if reference.dtype.kind != "f":
        return 1.0
    finite = np.abs(reference[np.isfinite(reference)])
    return max(1.0, float(finite.max(initial=0.0)))


def _index(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


def mismatch(result, reference, rtol, atol):
    """None when `result` matches `reference` (see the module's docstring), else a sentence
    saying how it differs."""
    result, reference = np.asarray(result), np.asarray(reference)
    if result.dtype != reference.dtype:
        return f"dtype {result.dtype} (native) vs {reference.dtype} (reference)"
    if result.shape != reference.shape:
        return f"shape {result.shape} (native) vs {reference.shape} (reference)"
    if result.size == 0:
        return None
    if result.dtype.kind != "f":
        if result.dtype == np.bool_:
            bad = result.view(np.uint8) != reference.view(np.uint8)
        else:
            bad = result != reference
        if not bad.any():
            return None
        i = _index(bad)
        return (f"{int(bad.sum())} elements differ (first at index {i}: {result[i]!r} (native) vs "
                f"{reference[i]!r} (reference))")
    for what, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        bad = test(result) != test(reference)
        if bad.any():
            i = _index(bad)
            return (f"{what} in one result and not the other (first at index {i}: {result[i]!r} (native) vs "
                    f"{reference[i]!r} (reference))")
    finite = np.isfinite(reference)  # NaN and inf stand at the same positions in both by now
    got = np.where(finite, result, 0).astype("float64")
    want = np.where(finite, reference, 0).astype("float64")
    with np.errstate(over="ignore"):
        diff = np.abs(got - want)
    bad = diff > atol + rtol * np.abs(want)
    if not bad.any():
        return None
    i = _index(bad)
    return (f"max abs difference {diff.max():.3g} (tolerance {atol:.3g} + {rtol} * |ref|), beyond tolerance at "
            f"{int(bad.sum())} of {result.size} elements (first at index {i}: {result[i]!r} (native) vs "
            f"{reference[i]!r} (reference))")
