"""codegen.early_parts: the parts of a module compiled while it is still being emitted."""
import re
import threading

import numpy as np
import pytest
from llvmlite import ir

import symcnn
import symcnn.tensor as T
from codegen import early_parts, jit, split
from codegen.options import options
from symcnn.layers import HiddenLayer, LeNetConvPoolLayer, LogisticRegression
from symcnn.tensor.nnet import conv2d

_DEFINE = re.compile(r'^define[^@]*@"([^"]+)"', re.M)


def _lenet(batch, mode="native"):
    rng = np.random.RandomState(23455)
    x, y, index = T.matrix("x"), T.ivector("y"), T.lscalar()
    layer0 = LeNetConvPoolLayer(rng, input=x.reshape((batch, 1, 28, 28)), image_shape=(batch, 1, 28, 28),
                                filter_shape=(4, 1, 5, 5), poolsize=(2, 2))
    layer1 = LeNetConvPoolLayer(rng, input=layer0.output, image_shape=(batch, 4, 12, 12),
                                filter_shape=(6, 4, 5, 5), poolsize=(2, 2))
    layer2 = HiddenLayer(rng, input=layer1.output.flatten(2), n_in=6 * 16, n_out=20, activation=T.tanh)
    layer3 = LogisticRegression(input=layer2.output, n_in=20, n_out=10)
    params = layer3.params + layer2.params + layer1.params + layer0.params
    cost = layer3.negative_log_likelihood(y)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, T.grad(cost, params))]
    data = np.random.RandomState(0)
    sx = symcnn.shared(data.rand(2 * batch, 784).astype("float32"))
    sy = symcnn.shared(data.randint(0, 10, 2 * batch).astype("int32"))
    givens = {x: sx[index * batch:(index + 1) * batch], y: sy[index * batch:(index + 1) * batch]}
    return symcnn.function([index], cost, updates=updates, givens=givens, mode=mode), params


def _strided(batch, mode="native"):
    """Strided and padded convolutions with ReLU (phase and vector-over-filter kernels)."""
    rng = np.random.RandomState(5)
    x = T.tensor4("x")
    W1 = symcnn.shared(rng.uniform(-0.3, 0.3, (8, 3, 3, 3)).astype("float32"))
    W2 = symcnn.shared(rng.uniform(-0.3, 0.3, (16, 8, 3, 3)).astype("float32"))
    h = T.maximum(conv2d(x, W1, input_shape=(batch, 3, 16, 16), filter_shape=(8, 3, 3, 3), border_mode="half"), 0)
    h = T.maximum(conv2d(h, W2, input_shape=(batch, 8, 16, 16), filter_shape=(16, 8, 3, 3), border_mode="half",
                         subsample=(2, 2)), 0)
    cost = T.sqr(h).mean()
    updates = [(p, p - 0.01 * g) for p, g in zip([W1, W2], T.grad(cost, [W1, W2]))]
    return symcnn.function([x], cost, updates=updates, mode=mode), [W1, W2]


@pytest.fixture
def drained(monkeypatch):
    """The parts sent early all compile before the module's own compile starts (as on an idle
    machine), so what a test sees does not depend on timing; VERIFY on. Yields the EarlyParts."""
    made = []
    real_close = early_parts.EarlyParts.close

    def close(self):
        real_close(self)
        self.thread.join()
        made.append(self)
    monkeypatch.setattr(early_parts.EarlyParts, "close", close)
    monkeypatch.setattr(early_parts, "VERIFY", True)
    return made


def _helper_or_skip():
    if not jit.helper_available():
        pytest.skip("no compile helper process here (one core)")


def test_parts_compile_while_the_module_is_emitted(cache_dir, drained, monkeypatch):
    """Parts of a training step's module compile in the helper while the module is emitted; the
    module's own compile takes them from the store instead of compiling them again."""
    _helper_or_skip()
    monkeypatch.setattr(jit, "_parts_done", {})
    compiled = []   # (thread, part) of every compile, early or not
    lock = threading.Lock()
    real_worker, real_here = jit._Worker.compile, jit._compile_here

    def worker(self, text, *a):
        with lock:
            compiled.append((threading.current_thread().name, text))
        return real_worker(self, text, *a)

    def here(text, *a):
        with lock:
            compiled.append((threading.current_thread().name, text))
        return real_here(text, *a)
    monkeypatch.setattr(jit._Worker, "compile", worker)
    monkeypatch.setattr(jit, "_compile_here", here)
    modules = []
    real_module = jit.compile_module
    monkeypatch.setattr(jit, "compile_module",
                        lambda text, target=None, parts=None: modules.append(parts) or real_module(text, target, parts))
    train, _ = _lenet(batch=128)
    train.wait()
    early = [t for name, t in compiled if name == "symcnn-early-parts"]
    final = set(modules[0])
    used = [t for t in early if t in final]
    assert used, "no part compiled early is one of the module's"
    again = [t for name, t in compiled if name != "symcnn-early-parts" and t in set(used)]
    assert not again, "a part compiled early was compiled again"
    assert drained and drained[0].error is None


def test_results_are_those_of_the_module_compiled_after_it_was_emitted(tmp_path, drained, monkeypatch):
    """The same steps, bit for bit, with and without the early compiles."""
    _helper_or_skip()
    results = []
    for early in (True, False):
        monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / str(early)))
        monkeypatch.setattr(options, "early_parts", early)
        monkeypatch.setattr(jit, "_parts_done", {})
        train, params = _strided(batch=6)
        xv = np.random.RandomState(1).standard_normal((6, 3, 16, 16)).astype("float32")
        results.append([float(train(xv)) for _ in range(3)] + [p.get_value() for p in params])
    assert len(drained) == 1
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_no_function_changes_after_its_node(cache_dir, drained):
    """VERIFY: every function's text taken after its node equals its text at the end, for LeNet,
    strided convolutions with ReLU and a recurrence (scan)."""
    _helper_or_skip()
    train, _ = _lenet(batch=64)
    train.wait()
    train2, _ = _strided(batch=4)
    train2.wait()
    x = T.matrix("x")
    Wr = symcnn.shared(np.eye(5, dtype="float32") * 0.5)
    h, _ = symcnn.scan(lambda xt, hp: T.tanh(T.dot(hp, Wr) + xt), sequences=x,
                       outputs_info=T.zeros((5,), dtype="float32"))
    g = T.grad(h[-1].sum(), Wr)
    f = symcnn.function([x], g, mode="native")
    f.wait()
    assert len(drained) == 3 and all(e.error is None for e in drained)
    assert any(e.sent for e in drained)


def test_jobs_run_on_the_calling_thread_stay_with_the_root(cache_dir, drained, monkeypatch):
    """A batch too small for the thread pool: the convolutions' jobs are called directly (the split
    keeps them in the root's part), so no part holding one is compiled early."""
    _helper_or_skip()
    jobs = []
    real_job = early_parts.EarlyParts.job
    monkeypatch.setattr(early_parts.EarlyParts, "job", lambda self, fn, d: jobs.append((fn.name, d)) or
                        real_job(self, fn, d))
    train, _ = _lenet(batch=2)
    text = train.dump_llvm()
    root_part = next(p for p in split.split(text) if split.defines(p, "symcnn_entry"))
    direct = {n for n, d in jobs if d is False}
    assert direct and all(split.defines(root_part, n) for n in direct)
    sent = {n for e in drained for names in e.sent for n in names}
    assert not sent & set(_DEFINE.findall(root_part))


def test_split_takes_functions_parsed_before():
    """split.split with the functions parsed early gives the parts it gives without them."""
    train, _ = _lenet(batch=128)
    text = train.dump_llvm()
    _, functions, _, _, _ = split.parse(text)
    known = {"\n".join(f.lines): f for f in functions}
    assert split.split(text, known=known) == split.split(text)
    assert split.parse(text, known)[1][3] is functions[3]


def test_a_function_changed_after_its_text_was_taken_shows_as_it_is():
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.IntType(64), [ir.IntType(64)]), name="f")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    x = b.add(fn.args[0], ir.Constant(ir.IntType(64), 1))
    shapes = {fn: early_parts._shape(fn)}
    before = str(fn)
    assert not early_parts.check_unchanged(shapes)
    b.ret(b.mul(x, x))
    assert early_parts.check_unchanged(shapes)
    assert "mul" in str(fn) and str(fn) != before


def test_a_module_that_fails_to_emit_stops_its_early_compiles(cache_dir, monkeypatch):
    """An error (or Ctrl-C) while a module is emitted: the early compiles stop, none is left
    waiting, and the error reaches the caller."""
    _helper_or_skip()
    from codegen import build
    made = []
    real_init = early_parts.EarlyParts.__init__

    def init(self, *a):
        real_init(self, *a)
        made.append(self)
    monkeypatch.setattr(early_parts.EarlyParts, "__init__", init)
    real_node_done = early_parts.EarlyParts.node_done
    calls = [0]

    def node_done(self):
        real_node_done(self)
        calls[0] += 1
        if calls[0] == 12:
            raise KeyboardInterrupt
    monkeypatch.setattr(early_parts.EarlyParts, "node_done", node_done)
    with pytest.raises(KeyboardInterrupt):
        _lenet(batch=128)
    assert made and made[0].abandoned
    made[0].thread.join(timeout=30)
    assert not made[0].thread.is_alive()
    assert not build._inflight


def test_functions_compiled_from_several_threads_at_once(cache_dir, drained):
    """Two training steps emitted and compiled at the same time from two threads (each with its
    own early parts, one helper): each gives the reference's results."""
    _helper_or_skip()
    out, errors = {}, []

    def build(k):
        try:
            train, params = _lenet(batch=64) if k == 0 else _strided(batch=4)
            train.wait()
            out[k] = train
        except BaseException as e:   # reported below, on the test's thread
            errors.append(e)
    threads = [threading.Thread(target=build, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(drained) == 2 and all(e.error is None for e in drained)
    xv = np.random.RandomState(2).standard_normal((4, 3, 16, 16)).astype("float32")
    for k, steps in ((0, lambda f: [float(f(i % 2)) for i in range(3)]), (1, lambda f: [float(f(xv)) for _ in range(3)])):
        ref, _ = _lenet(batch=64, mode="reference") if k == 0 else _strided(batch=4, mode="reference")
        np.testing.assert_allclose(steps(out[k]), steps(ref), rtol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_random_layers_keep_their_texts(cache_dir, drained, seed):
    """VERIFY over random convolutional steps (border modes, strides, filter sizes, activations,
    pooling): no function changes after its node, the early parts compile without error and the
    step matches the reference."""
    _helper_or_skip()
    from tests.helpers import CONV_ACTIVATIONS
    from symcnn.tensor.signal import pool as P
    rng = np.random.RandomState(seed)
    act = CONV_ACTIVATIONS[["tanh", "relu", "maximum", "sigmoid", "leaky_relu", "identity"][rng.randint(6)]]
    B, C, H = int(rng.randint(1, 9)), int(rng.choice([1, 3, 8])), int(rng.randint(12, 20))
    x = T.tensor4("x")
    h, c, params = x, C, []
    for layer in range(2):
        k = int(rng.choice([1, 3, 5]))
        border = ["valid", "half", "full", (1, 1)][rng.randint(4)] if k > 1 else "valid"
        stride = int(rng.choice([1, 2]))
        K = int(rng.choice([4, 8, 16]))
        W = symcnn.shared(rng.uniform(-0.3, 0.3, (K, c, k, k)).astype("float32"))
        params.append(W)
        h = act(conv2d(h, W, filter_shape=(K, c, k, k), border_mode=border, subsample=(stride, stride)))
        if layer == 0 and rng.rand() < 0.5:
            h = P.pool_2d(h, ws=(2, 2), ignore_border=True, mode=["max", "average_exc_pad"][rng.randint(2)])
        c = K
    cost = T.sqr(h).mean()
    grads = T.grad(cost, params)
    xv = rng.standard_normal((B, C, H, H)).astype("float32")
    native = symcnn.function([x], [cost] + grads, mode="native")(xv)
    reference = symcnn.function([x], [cost] + grads, mode="reference")(xv)
    for a, r in zip(native, reference):
        np.testing.assert_allclose(a, r, rtol=2e-3, atol=2e-4)
    assert drained and all(e.error is None for e in drained)
