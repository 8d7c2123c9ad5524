"""Helper functions recorded from one module and copied as text into later ones (codegen/library.py)."""
import re

import numpy as np
import pytest

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
