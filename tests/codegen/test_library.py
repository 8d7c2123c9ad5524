"""Helper functions recorded from one module and copied as text into later ones (codegen/library.py)."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcnn as theano
import symcnn.tensor as T
from codegen import library
from codegen.build import build_module
from tests.helpers import check_native_vs_reference, rewritten

_GLOBAL = re.compile(r"^(define|declare|@)", re.M)


def _globals(ir_text):
    """The module's global definitions and declarations, each as its text, sorted."""
    starts = [m.start() for m in _GLOBAL.finditer(ir_text)]
    chunks = [ir_text[a:b] for a, b in zip(starts, starts[1:] + [len(ir_text)])]
    # the last one runs into the module's metadata
    chunks = [c.split("\n!")[0].rstrip("\n") for c in chunks]
    return sorted(chunks)


def _conv_net(channels, filt, border, stride, batch=3, size=12):
    """The cost and gradients of conv -> relu -> dense."""
    rng = np.random.RandomState(0)
    x, y = T.tensor4("x"), T.ivector("y")
    W = theano.shared(rng.uniform(-.3, .3, (channels[1], channels[0], filt, filt)).astype("float32"), name="W")
    h = T.maximum(T.nnet.conv2d(x, W, input_shape=(batch, channels[0], size, size),
                                filter_shape=W.get_value().shape, border_mode=border, subsample=(stride, stride)), 0)
    out = (size + 2 * (filt // 2 if border == "half" else 0) - filt) // stride + 1
    V = theano.shared(rng.uniform(-.1, .1, (channels[1] * out * out, 10)).astype("float32"), name="V")
    p = T.nnet.softmax(T.dot(h.flatten(2), V))
    cost = T.nnet.categorical_crossentropy(p, y).mean()
    values = [rng.uniform(-1, 1, (batch, channels[0], size, size)).astype("float32"),
              rng.randint(0, 10, batch).astype("int32")]
    return [x, y], [cost] + T.grad(cost, [W, V]), values


# few-tap, Winograd weight-gradient, filter-vector (strided) and direct kernels; the last shares the
# second's convolution helpers (another batch)
NETS = [((4, 8), 3, "valid", 1), ((16, 32), 3, "half", 1), ((8, 8), 3, "half", 2), ((20, 24), 5, "valid", 1),
        ((16, 16), 3, "valid", 1), ((16, 32), 3, "half", 1, 5)]


@pytest.fixture
def restores(monkeypatch):
    """The names of the helpers copied as text, in order."""
    names = []
    real = library.existing

    def existing(module, name):
        had = name in module.globals
        g = real(module, name)
        if g is not None and not had:
            names.append(name)
        return g
    monkeypatch.setattr(library, "existing", existing)
    library.clear()
    yield names
    library.clear()


def _graphs_and_their_globals_alone():
    """The graphs of NETS, and the globals of each one's module built with nothing recorded."""
    graphs = [rewritten(*_conv_net(*n)[:2]).fgraph for n in NETS]
    alone = []
    for fg in graphs:
        library.clear()
        alone.append(_globals(build_module(fg, []).ir_text))
    library.clear()
    return graphs, alone


def test_modules_with_copied_helpers_hold_the_same_globals(restores):
    graphs, alone = _graphs_and_their_globals_alone()
    assert not restores
    in_turn = [_globals(build_module(fg, []).ir_text) for fg in graphs]
    assert restores, "no helper was copied from an earlier module"
    assert any(n.startswith("symcnn_gemm_") for n in restores)
    assert any(n.startswith("symcnn_wgw_") for n in restores)
    assert in_turn == alone
    # the text-only copies print what the emitters print: the first module, rebuilt, is unchanged
    assert _globals(build_module(graphs[0], []).ir_text) == alone[0]


def test_functions_built_with_copied_helpers_match_the_reference(restores, monkeypatch, tmp_path):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "off")   # every module is emitted, none loaded
    for n in NETS:
        inputs, outputs, values = _conv_net(*n)
        check_native_vs_reference(inputs, outputs, values, rtol=1e-4, atol=1e-5)
    assert any(n.startswith("symcnn_gemm_") for n in restores)


def test_other_targets_and_instrumentation_emit_their_own(restores, monkeypatch):
    fg = rewritten(*_conv_net(*NETS[0])[:2]).fgraph
    build_module(fg, [])
    monkeypatch.setattr(theano.config, "target_cpu", "x86-64")
    library.clear()
    generic = build_module(fg, []).ir_text
    monkeypatch.setattr(theano.config, "target_cpu", "host")
    library.clear()
    build_module(fg, [])
    n = len(restores)
    monkeypatch.setattr(theano.config, "target_cpu", "x86-64")
    assert _globals(build_module(fg, []).ir_text) == _globals(generic)
    assert len(restores) == n, "a helper of another target was copied"
    build_module(fg, [], profile=True)
    build_module(fg, [], bounds_check=True)
    assert len(restores) == n, "a helper of an uninstrumented module was copied into an instrumented one"


def test_what_might_differ_between_modules_is_not_recorded():
    from llvmlite import ir
    library.clear()
    try:
        m = ir.Module()
        library.begin(m, ())
        t = ir.FunctionType(ir.VoidType(), [])
        for name, body in (("with_metadata", True), ("reads_mutable", True), ("plain", True)):
            assert library.existing(m, name) is None
            f = ir.Function(m, t, name=name)
            b = ir.IRBuilder(f.append_basic_block())
            if name == "with_metadata":
                b.ret_void().set_metadata("prof", m.add_metadata(["x"]))
                continue
            if name == "reads_mutable":
                g = ir.GlobalVariable(m, ir.IntType(64), name="counter")
                b.load(g)
            b.ret_void()
        library.record(m)
        m2 = ir.Module()
        library.begin(m2, ())
        assert library.existing(m2, "with_metadata") is None
        assert library.existing(m2, "reads_mutable") is None
        plain = library.existing(m2, "plain")
        assert plain is not None and str(plain).startswith('define void @"plain"()')
        m3 = ir.Module()
        library.begin(m3, ("profile",))
        assert library.existing(m3, "plain") is None, "recorded under another instrumentation"
    finally:
        library.clear()


def test_modules_built_on_two_threads_at_once_hold_the_same_globals(restores):
    import threading
    graphs, alone = _graphs_and_their_globals_alone()
    got, errors = {}, []

    def build(order):
        try:
            for i in order:
                got.setdefault(i, []).append(_globals(build_module(graphs[i], []).ir_text))
        except BaseException as e:   # noqa: BLE001 (reported below)
            errors.append(e)
    n = len(graphs)
    threads = [threading.Thread(target=build, args=(order,)) for order in (range(n), range(n - 1, -1, -1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert restores
    for i in range(n):
        assert got[i] == [alone[i], alone[i]]


def test_winograd_panels_of_a_split_image_take_their_own_helpers(restores, monkeypatch):
    """A batch below the threads splits each image's Winograd panels into smaller ones
    (conv_winograd.image_slices): their transforms lay the tiles out by the panel's width, so they
    are other helpers than those of the same layer on a larger batch built before them."""
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(theano.config, "num_threads", 2)
    monkeypatch.setenv("SYMCNN_CACHE_DIR", "off")   # every module is emitted, none loaded
    rng = np.random.RandomState(0)
    for batch in (4, 1):
        xs, ws = (batch, 32, 32, 32), (32, 32, 3, 3)
        x, w, r = T.tensor4("x"), T.tensor4("w"), T.tensor4("r")
        y = T.nnet.conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode="half")
        outputs = [y] + T.grad((y * r).sum(), [x, w])
        values = [rng.standard_normal(s).astype("float32") for s in (xs, ws, (batch, 32, 32, 32))]
        fn, _ = check_native_vs_reference([x, w, r], outputs, values, rtol=1e-4, atol=2e-3)
        assert "symcnn_wino_in_" in fn.dump_llvm()


def _conv_layer_graph(dtype, xs, ws, border, stride, act, pool=None):
    """The forward and both gradients of one conv -> activation (-> pool) layer, rewritten (the
    fused kernels)."""
    from symcnn.tensor.signal.pool import pool_2d
    x = T.TensorType(dtype, (None,) * 4)("x")
    w = T.TensorType(dtype, (None,) * 4)("w")
    y = act(T.nnet.conv2d(x, w, input_shape=xs, filter_shape=ws, border_mode=border, subsample=(stride, stride)))
    if pool is not None:
        y = pool_2d(y, ws=(2, 2), ignore_border=True, mode=pool)
    return rewritten([x, w], [y] + T.grad(y.sum(), [x, w])).fgraph


def _build_verified(fg, threads):
    num_threads = theano.config.num_threads
    theano.config.num_threads = threads
    try:
        with library.verifying():
            build_module(fg, [])
    finally:
        theano.config.num_threads = num_threads


LAYER_ACTS = {"relu": lambda h: T.maximum(h, 0), "tanh": T.tanh, "identity": lambda h: h}


@st.composite
def _layers(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    border = draw(st.sampled_from(["valid", "half", "full"]))
    C, K = draw(st.sampled_from([1, 3, 8, 16, 32, 64])), draw(st.sampled_from([4, 16, 20, 32, 64, 96]))
    H = draw(st.integers(k + 1, 20))
    batch, threads = draw(st.sampled_from([1, 2, 3, 5, 8])), draw(st.sampled_from([1, 2, 3]))
    act = draw(st.sampled_from(sorted(LAYER_ACTS)))
    pool = draw(st.sampled_from([None, None, "max", "average_exc_pad"]))
    return dtype, (batch, C, H, H), (K, C, k, k), border, stride, act, pool, threads


@settings(max_examples=16, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_layers(), min_size=2, max_size=3))
def test_helper_names_say_everything_their_code_depends_on(layers):
    """Layers drawn from the space of convolutions (sizes, strides, borders, dtypes, activations,
    pooling, batches below and above the threads), built one after the other in one process: no helper is emitted with
    other code than the code an earlier module recorded under its name (library.verifying); so the
    copies a later module takes are the code it would have emitted."""
    from tests.helpers import allow_more_threads_than_cores
    from _pytest.monkeypatch import MonkeyPatch
    with MonkeyPatch.context() as mp:
        allow_more_threads_than_cores(mp)
        for dtype, xs, ws, border, stride, act, pool, threads in layers:
            # the same layer at other batches too (other splits of the images over the threads)
            for batch in {xs[0], 1, 4}:
                fg = _conv_layer_graph(dtype, (batch,) + xs[1:], ws, border, stride, LAYER_ACTS[act], pool)
                _build_verified(fg, threads)


def test_verifying_finds_a_name_that_misses_what_the_code_depends_on(monkeypatch):
    """A Winograd plan named without its panel's width (as it once was): a batch below the threads
    emits other transforms under the name a larger batch's layer recorded, and verifying says so."""
    from codegen.kernels.conv_winograd import image_slices, winograd_images
    from codegen.microkernels import winograd as WG
    from tests.helpers import allow_more_threads_than_cores
    allow_more_threads_than_cores(monkeypatch)
    monkeypatch.setattr(theano.config, "num_threads", 2)
    # channels whose one-image split takes narrower panels than a batch of four on this target
    for C in (32, 16, 64):
        wi = winograd_images("float32", C, 32, 32, C, 3, 3, 32, 32, (1, 1), True, batch=1)
        if wi is not None and image_slices(wi, 1)[0].p.NR != wi.p.NR:
            break
    else:   # (AVX2: 16-tile panels, which a split image keeps)
        pytest.skip("a split image keeps its panels' width on this target: no two layouts share a name")
    named = WG.Plan.name.fget
    monkeypatch.setattr(WG.Plan, "name", property(lambda p: named(p).rsplit("_N", 1)[0]))
    library.clear()
    plain = LAYER_ACTS["identity"]
    _build_verified(_conv_layer_graph("float32", (4, C, 32, 32), (C, C, 3, 3), "half", 1, plain), 2)
    with pytest.raises(library.HelperNameError, match="symcnn_wino_"):
        _build_verified(_conv_layer_graph("float32", (1, C, 32, 32), (C, C, 3, 3), "half", 1, plain), 2)
    library.clear()
