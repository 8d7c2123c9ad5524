"""Property-based tests of what native code does with memory and threads: updates over
read-only or aliased shared storage, arguments that alias updated shared variables, calls from
several threads, and sizes beyond 64 bits. Native results and shared values must equal the
reference's; a size that does not fit must raise (ValueError / MemoryError), never crash."""
import os
import threading

import numpy as np
import pytest
from hypothesis import assume, given, note, settings

import symcnn
import symcnn.tensor as T
from tests.fuzz.strategies import examples, huge_sizes, storage_cases, threaded_calls
from tests.helpers import run_child


@settings(max_examples=examples(25))
@given(storage_cases())
def test_updates_over_aliased_and_read_only_storage_match_reference(case):
    note(repr(case))
    runs = {}
    for mode in ("native", "reference"):
        fn, shared, values = case.build(symcnn, T, mode)
        frozen = [bytes(v.tobytes()) for v in values if not v.flags.writeable]
        outs = []
        for c in range(case.calls):
            outs.append([np.array(o) for o in fn(case.argument_value(shared, c))])
            outs.append([s.get_value() for s in shared])
        # memory numpy says is read-only was not written
        assert [bytes(v.tobytes()) for v in values if not v.flags.writeable] == frozen
        runs[mode] = outs
    for k, (got, want) in enumerate(zip(runs["native"], runs["reference"])):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=f"step {k}")


_x, _W = T.matrix("x"), T.matrix("W")
_OUTS = [T.tanh(T.dot(_x, _x.T)).sum(axis=1), (_x * 2).reshape((-1,)), T.arange(_x.shape[0]) * 2]
_NATIVE = symcnn.function([_x], _OUTS)
_REFERENCE = symcnn.function([_x], _OUTS, mode="reference")


@settings(max_examples=examples(10))
@given(threaded_calls())
def test_calls_from_many_threads_match_reference(plan):
    n, shapes = plan
    note(f"{n} threads, shapes {shapes}")
    errors = []

    def work(t):
        rng = np.random.RandomState(t)
        try:
            for shape in shapes[t]:
                xv = rng.standard_normal(shape).astype("float32")
                for g, w in zip(_NATIVE(xv), _REFERENCE(xv)):
                    assert g.shape == w.shape
                    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


_v, _a, _b, _c = T.vector("v"), T.lscalar("a"), T.lscalar("b"), T.lscalar("c")
_fa, _fb, _fc = T.dscalar("fa"), T.dscalar("fb"), T.dscalar("fc")
_PROGRAMS = {
    "reshape2": ([_v, _a, _b], _v.reshape((_a, _b)) * 2),
    "reshape3": ([_v, _a, _b], _v.reshape((_a, -1, _b)) + 1),
    "arange": ([_a, _b, _c], T.arange(_a, _b, _c) * 3),
    "farange": ([_fa, _fb, _fc], T.arange(_fa, _fb, _fc) + 0.5),
}
_COMPILED = {}


def _functions(program):
    if program not in _COMPILED:
        ins, out = _PROGRAMS[program]
        _COMPILED[program] = tuple(symcnn.function(ins, out, mode=m) for m in ("native", "reference"))
    return _COMPILED[program]


def _arange_length(program, args):
    """The length numpy's arange would give (0 for the reshape programs; inf if undefined)."""
    if program == "arange":
        start, stop, step = args
        return max(0, -((start - stop) // step)) if step else 0
    if program == "farange":
        start, stop, step = args
        with np.errstate(all="ignore"):
            n = np.ceil((stop - start) / step) if step else 0.0
        return float(n) if np.isfinite(n) else float("inf")
    return 0


# A wrong size may crash the process: the sizes are fuzzed in a child pytest (see below).
_IN_CHILD = os.environ.get("SYMCNN_FUZZ_SIZES_CHILD") == "1"


def test_huge_sizes_in_a_child_process():
    # an address-space limit turns any allocation this machine could not back into a MemoryError
    out = run_child("import resource, sys, pytest; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
                    "sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', "
                    f"{__file__ + '::test_huge_sizes_raise_or_match_reference'!r}]))",
                    env={"SYMCNN_FUZZ_SIZES_CHILD": "1"}, check=False, timeout=600)
    assert out.returncode == 0, f"status {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    assert " passed" in out.stdout


@pytest.mark.skipif(not _IN_CHILD, reason="run in a child process by test_huge_sizes_in_a_child_process")
@settings(max_examples=examples(60))
@given(huge_sizes())
def test_huge_sizes_raise_or_match_reference(case):
    program, args = case
    note(f"{program}{tuple(args)}")
    # a valid range of millions of elements would only measure the machine's memory
    assume(not 10 ** 6 < _arange_length(program, args) < 2 ** 60)
    # numpy computes an integer range's length in float64 (inexact beyond 2**53); native code
    # computes it exactly. Spans beyond int64 raise in both and stay in.
    assume(program != "arange" or not 2 ** 53 < abs(args[1] - args[0]) < 2 ** 63)
    native, reference = _functions(program)
    if program == "arange" and not -2 ** 63 <= args[1] - args[0] < 2 ** 63:
        # numpy wraps such a span (e.g. arange(-1, 2**63 - 1) is empty); native code refuses it
        with pytest.raises(ValueError, match="fits in int64"):
            native(*args)
        return
    if program.startswith("reshape"):
        args = [np.arange(args[0], dtype="float32")] + args[1:]
    try:
        want = reference(*args)
    except (ValueError, MemoryError, IndexError):
        with pytest.raises((ValueError, MemoryError)):
            native(*args)
        return
    np.testing.assert_array_equal(native(*args), want)
