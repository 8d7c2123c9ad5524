"""One compiled function called from many Python threads at once gives every caller its own,
correct result: calls of one function are serialised (its buffers and its pool of native
workers serve one call at a time), while the GIL is released during the native run.
Each case runs in a child process with a timeout, so a crash or a deadlock fails the test."""
import textwrap

import pytest

from tests.helpers import run_child

_PRELUDE = """
import os, sys, threading
import numpy as np
import symcnn, symcnn.tensor as T
from symcnn.config import config
config.num_threads = {threads}


def hammer(n_threads, calls, work):
    '''work(rng) in n_threads threads, `calls` times each; exit 3 on a hang.'''
    errors = []

    def run(t):
        rng = np.random.RandomState(t)
        try:
            for _ in range(calls):
                work(rng)
        except BaseException as e:  # reported by the main thread
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        if t.is_alive():
            print("hang", flush=True)
            os._exit(3)
    assert not errors, errors[:3]
"""


def _run(body, threads=2):
    code = _PRELUDE.format(threads=threads) + textwrap.dedent(body) + "\nprint('ok')\n"
    out = run_child(code, timeout=300)
    assert out.stdout.split()[-1] == "ok"


@pytest.mark.parametrize("threads", [1, 2])
def test_one_function_from_eight_threads_with_varying_shapes(threads):
    _run("""
    x, W = T.matrix('x'), T.matrix('W')
    outs = [T.tanh(T.dot(x, W)) * 2 + x.sum(), (x * 3).reshape((-1,)), T.arange(x.shape[0])]
    f = symcnn.function([x, W], outs)
    ref = symcnn.function([x, W], outs, mode='reference')

    def work(rng):
        n, k, m = rng.randint(1, 300), rng.randint(1, 300), rng.randint(1, 300)
        xv = rng.standard_normal((n, k)).astype('float32')
        Wv = (rng.standard_normal((k, m)) * 0.1).astype('float32')
        got, want = f(xv, Wv), ref(xv, Wv)
        for g, w in zip(got, want):
            assert g.shape == w.shape, (g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)

    hammer(8, 12, work)
    """, threads=threads)


def test_one_conv_pool_function_from_eight_threads():
    # the conv-pool kernels split the batch over the function's native worker pool
    _run("""
    from tests.codegen.test_threads import CASES, _graph
    ins, outs, vals = _graph(CASES[0], 33, False)
    f = symcnn.function(ins, outs)
    want = symcnn.function(ins, outs, mode='reference')(*vals)
    small = [v[:9] if k in (0, 3) else v for k, v in enumerate(vals)]
    want_small = symcnn.function(ins, outs, mode='reference')(*small)

    def work(rng):
        args, ref = (vals, want) if rng.randint(2) else (small, want_small)
        for g, w in zip(f(*args), ref):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)

    hammer(8, 6, work)
    """)


def test_two_functions_and_their_pools_from_many_threads():
    # different functions have different pools and run at the same time; updates of one
    # function's shared variable still come out as the serial calls give them
    _run("""
    from tests.codegen.test_threads import CASES, _graph
    ins, outs, vals = _graph(CASES[1], 33, False)
    f1, f2 = symcnn.function(ins, outs), symcnn.function(ins, outs[:2], on_unused_input='ignore')
    want = symcnn.function(ins, outs, mode='reference')(*vals)
    acc = symcnn.shared(np.zeros(5, 'float32'), 'acc')
    inc = symcnn.function([], [], updates=[(acc, acc + 1)])

    def work(rng):
        for g, w in zip(f1(*vals) if rng.randint(2) else f2(*vals), want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
        inc()

    hammer(8, 6, work)
    assert acc.get_value().tolist() == [48.0] * 5, acc.get_value()
    """)
