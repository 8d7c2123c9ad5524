"""codegen.split and jit.compile_module: a function's module compiled as parts, on several cores,
each part once, with the machine code of the whole module."""
import re
import threading

import llvmlite.binding as llvm
import numpy as np
import pytest

import symcnn
import symcnn.tensor as T
from codegen import build, jit, split
from codegen.options import options
from symcnn.layers import HiddenLayer, LeNetConvPoolLayer, LogisticRegression

_DEFINE = re.compile(r'^define[^@]*@"([^"]+)"', re.M)


def _lenet(batch=4, nkerns=(2, 3)):
    """The tutorial's LeNet, small: (train, validate) functions and their data."""
    rng = np.random.RandomState(23455)
    x, y, index = T.matrix("x"), T.ivector("y"), T.lscalar()
    layer0 = LeNetConvPoolLayer(rng, input=x.reshape((batch, 1, 28, 28)), image_shape=(batch, 1, 28, 28),
                                filter_shape=(nkerns[0], 1, 5, 5), poolsize=(2, 2))
    layer1 = LeNetConvPoolLayer(rng, input=layer0.output, image_shape=(batch, nkerns[0], 12, 12),
                                filter_shape=(nkerns[1], nkerns[0], 5, 5), poolsize=(2, 2))
    layer2 = HiddenLayer(rng, input=layer1.output.flatten(2), n_in=nkerns[1] * 16, n_out=20, activation=T.tanh)
    layer3 = LogisticRegression(input=layer2.output, n_in=20, n_out=10)
    cost = layer3.negative_log_likelihood(y)
    params = layer3.params + layer2.params + layer1.params + layer0.params
    updates = [(p, p - 0.1 * g) for p, g in zip(params, T.grad(cost, params))]
    data = np.random.RandomState(0)
    sx = symcnn.shared(data.rand(3 * batch, 784).astype("float32"))
    sy = symcnn.shared(data.randint(0, 10, 3 * batch).astype("int32"))
    givens = {x: sx[index * batch:(index + 1) * batch], y: sy[index * batch:(index + 1) * batch]}
    train = symcnn.function([index], cost, updates=updates, givens=givens, mode="native")
    validate = symcnn.function([index], layer3.errors(y), givens=givens, mode="native")
    return train, validate, params


def _optimised_bodies(ir_text):
    """{function name: its optimised body} (metadata numbers left out: each module numbers its own)."""
    mod = llvm.parse_assembly(ir_text)
    jit.optimize(mod)
    out = {}
    for f in mod.functions:
        if not f.is_declaration:
            text = str(f)
            out[f.name] = re.sub(r"!\d+", "!N", text[text.index("{"):])
    return out


@pytest.fixture(scope="module")
def lenet_ir():
    """Modules of a batch the thread pool splits (enough images of work: parallel.min_items)."""
    train, validate, _ = _lenet(batch=128)
    return train.dump_llvm(), validate.dump_llvm()


@pytest.fixture(scope="module")
def small_lenet_ir():
    """Modules of a batch run on the calling thread: LLVM removes the pool's dispatch and may
    specialise the kernels for their one direct call."""
    train, validate, _ = _lenet(batch=4)
    return train.dump_llvm(), validate.dump_llvm()


def _exported(parts):
    """Names of the functions the parts define without internal linkage."""
    return {m.group(1) for p in parts for m in re.finditer(r'^define (?!internal |private )[^@]*@"([^"]+)"', p, re.M)}


def _with_external(ir_text, names):
    """The module with the functions `names` defined with external linkage."""
    def relink(m):
        return m.group(0).replace("define internal ", "define ", 1) if m.group(1) in names else m.group(0)
    return re.sub(r'^define internal [^@]*@"([^"]+)"', relink, ir_text, flags=re.M)


def _declared_only(ir_text, names):
    """The module with the functions `names` declared, their bodies left out."""
    header, functions, declarations, globals_, metadata = split.parse(ir_text)
    out, skip = [], False
    for line in ir_text.split("\n"):
        if line.startswith("define ") and split._defined_name(line) in names:
            out.append(next(f for f in functions if f.name == split._defined_name(line)).declaration())
            skip = True
        elif skip:
            skip = line != "}"
        else:
            out.append(line)
    return "\n".join(out)


def _root_libraries(ir_text, parts):
    """The functions the root calls that are cut from its part (split.ROOT_LIBRARY_LINES)."""
    root_part = next(p for p in parts if split.defines(p, "symcnn_entry"))
    _, functions, _, _, _ = split.parse(ir_text)
    root = next(f for f in functions if f.name == "symcnn_entry")
    return {n for n in root.refs if any(f.name == n for f in functions) and not split.defines(root_part, n)}


_CALL = re.compile(r'(call (?:fastcc )?void @(\S+)\()(.*)\)$')


def _without_callsite_attributes(body, callees):
    """The body with the parameter attributes of its calls to `callees` left out (what LLVM infers
    at a call site from the callee's body when it sees it)."""
    def bare(line):
        m = _CALL.search(line)
        if m is None or m.group(2).strip('"') not in callees:
            return line
        args = [a.split()[0] + " " + a.split()[-1] for a in m.group(3).split(", ")]
        return line[:m.start()] + m.group(1) + ", ".join(args) + ")"
    return "\n".join(bare(line) for line in body.split("\n"))


@pytest.mark.parametrize("libraries", [True, False], ids=["libraries", "no_libraries"])
@pytest.mark.parametrize("which", ["lenet_ir", "small_lenet_ir"])
def test_every_function_has_the_code_of_the_whole_module(which, libraries, request, monkeypatch):
    """Each function of a part is optimised as in the whole module. A library part (functions
    several jobs call, options.split_libraries) is compiled once for all its callers: as the
    whole module compiles it when it is exported (not specialised to its callers), and its
    callers see its declaration only (no parameter attributes inferred from its body)."""
    monkeypatch.setattr(options, "split_libraries", libraries)
    libraries_cut = set()
    for ir_text in request.getfixturevalue(which):
        parts = split.split(ir_text)
        if which == "lenet_ir":
            assert parts is not None and len(parts) >= 3
        if parts is None:
            continue   # the jobs are all called directly: nothing to cut, the module compiles whole
        internal = set(re.findall(r'^define internal [^@]*@"([^"]+)"', ir_text, re.M))
        library = _exported(parts) & internal if libraries else set()
        libraries_cut |= {n for n in library if "gemm_macro" in n}
        whole = _optimised_bodies(_with_external(ir_text, library))
        # the root sees the functions cut from its part as declarations: so in the whole module too
        root_cut = _root_libraries(ir_text, parts) & library
        if root_cut:
            whole["symcnn_entry"] = _optimised_bodies(_declared_only(_with_external(ir_text, library), root_cut))[
                "symcnn_entry"]
        cut = {}
        for p in parts:
            for name, body in _optimised_bodies(p).items():
                assert name not in cut, f"{name} defined in two parts"
                cut[name] = body
        # a pool job that the root also runs in place (parallel.run_parallel's inline_serial) is gone
        # from the whole module where LLVM proves its dispatch dead (a shape check elsewhere fixes
        # the size its condition reads, past what the split folds): its part's copy is never called
        jobs = split._address_taken(split.parse(ir_text)[1], "symcnn_entry")
        assert set(whole) <= set(cut) and set(cut) - set(whole) <= jobs, set(cut) ^ set(whole)
        for name in whole:
            assert _same_code(cut[name], whole[name], library), f"{name} is optimised differently in its part"
            if not library:
                assert cut[name] == whole[name]
    if which == "lenet_ir":   # the validation's products and its convolution share the GEMM kernels
        assert bool(libraries_cut) == libraries


def _same_code(cut, whole, library):
    """The bodies alike but for what a call to a library function (whose body the cut caller does
    not see) may not know: the parameter attributes LLVM infers from the callee, and the arguments
    the callee never reads (poison in the whole module, the value itself in the part)."""
    a = _without_callsite_attributes(cut, library).split("\n")
    b = _without_callsite_attributes(whole, library).split("\n")
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        mx, my = _CALL.search(x), _CALL.search(y)
        if not (mx and my and mx.group(2) == my.group(2) and mx.group(2).strip('"') in library
                and x[:mx.start()] == y[:my.start()]):
            return False
        ax, ay = mx.group(3).split(", "), my.group(3).split(", ")
        if len(ax) != len(ay) or any(u != v and not (v.endswith(" poison") and u.split()[0] == v.split()[0])
                                     for u, v in zip(ax, ay)):
            return False
    return True


def test_large_kernels_compile_in_parts_of_their_own(lenet_ir):
    """With options.split_libraries, a noinline function that one job calls is a part of its own,
    apart from its caller, when it has split.BIG_LINES lines or more with all it calls (the first
    layer's pooled few-tap kernel, called by its forward job); smaller ones that only one job
    reaches stay with it."""
    from codegen.options import options
    assert options.split_libraries
    parts = split.split(lenet_ir[0])
    where = {name: k for k, p in enumerate(parts) for name in _DEFINE.findall(p)}
    _, functions, _, _, _ = split.parse(lenet_ir[0])
    by_name = {f.name: f for f in functions}
    kernel = next(n for n in where if n.startswith("symcnn_fewtaps_pool_float32_"))
    assert split._closure_lines(kernel, by_name) >= split.BIG_LINES
    assert where[kernel] != where["symcnn_fewtaps_pool_fwd0"]
    taken = split._address_taken(functions, "symcnn_entry") & set(by_name)
    reached = {}
    for job in taken:
        for r in split.callees(job, by_name):
            reached.setdefault(r, set()).add(job)
    small = [(n, next(iter(jobs))) for n, jobs in reached.items() if len(jobs) == 1 and n not in taken
             and split._closure_lines(n, by_name) < split.BIG_LINES]
    assert small
    for name, job in small:
        assert where[name] == where[job], name


def test_a_training_step_and_its_validation_share_the_forward_kernels(lenet_ir):
    train_parts, validate_parts = (split.split(t) for t in lenet_ir)
    shared = [p for p in validate_parts if p in train_parts]
    assert shared, "no part of the validation module is one of the training module's"
    assert all("symcnn_entry" not in _DEFINE.findall(p) for p in shared)


def _module(functions, globals_=""):
    header = jit.module_header()
    return (f'; ModuleID = "t"\ntarget triple = "{header[0]}"\ntarget datalayout = "{header[1]}"\n\n'
            + globals_ + "\n" + "\n".join(functions))


def _fn(name, body, linkage="internal ", attrs=" noinline"):
    return f'define {linkage}i64 @"{name}"(i64 %".1"){attrs}\n{{\nentry:\n{body}\n}}\n'


def test_functions_sharing_state_stay_together_and_jobs_are_cut_from_the_entry():
    counter = '@"count" = internal global i64 0\n@"table" = internal constant [2 x i64] [i64 1, i64 2]\n'
    ir_text = _module([
        _fn("symcnn_entry", '  %".2" = call i64 @"job"(i64 %".1")\n  %".3" = call i64 @"run"(ptr @"job", i64 %".2")\n'
                            '  ret i64 %".3"', linkage="", attrs=""),
        'define internal i64 @"run"(ptr %".1", i64 %".2") noinline\n{\nentry:\n'
        '  %".3" = load i64, ptr @"count"\n  %".4" = call i64 %".1"(i64 %".2")\n  ret i64 %".4"\n}\n',
        _fn("bump", '  %".2" = load i64, ptr @"count"\n  store i64 %".1", ptr @"count"\n  ret i64 %".2"'),
        _fn("job", '  %".2" = call i64 @"helper"(i64 %".1")\n  %".3" = load i64, ptr @"table"\n'
                   '  %".4" = add i64 %".2", %".3"\n  ret i64 %".4"'),
        _fn("helper", '  %".2" = mul i64 %".1", 3\n  ret i64 %".2"', attrs=""),
    ], counter)
    parts = split.split(ir_text)
    assert parts is not None
    by_fn = {tuple(sorted(_DEFINE.findall(p))): p for p in parts}
    # run and bump share the mutable @count: one part, where @count stays internal; the entry
    # calls run directly (kept with it), and hands the job to the pool (cut there)
    assert set(by_fn) == {("bump", "run", "symcnn_entry"), ("helper", "job")}
    entry_part, job_part = by_fn[("bump", "run", "symcnn_entry")], by_fn[("helper", "job")]
    assert '@"count" = internal global' in entry_part and "count" not in job_part
    assert '@"table" = internal constant' in job_part          # the constant the job reads
    assert 'define i64 @"job"' in job_part                      # called from another part: not internal
    assert 'declare i64 @"job"' in entry_part
    objs = [jit.compile_object(p) for p in parts]
    engine = jit._load(objs, jit._targets.current())             # the parts link in one engine
    assert engine.get_function_address("symcnn_entry")


def test_functions_two_jobs_call_make_a_part_of_their_own(monkeypatch):
    ukr = 'define internal i64 @"ukr"(i64 %".1") noinline\n{\nentry:\n  %".2" = mul i64 %".1", 3\n  ret i64 %".2"\n}\n'
    inl = 'define internal i64 @"helper"(i64 %".1")\n{\nentry:\n  %".2" = add i64 %".1", 1\n  ret i64 %".2"\n}\n'
    ir_text = _module([
        _fn("symcnn_entry", '  %".2" = call i64 @"run"(ptr @"job1", i64 %".1")\n'
                            '  %".3" = call i64 @"run"(ptr @"job2", i64 %".2")\n  ret i64 %".3"', linkage="", attrs=""),
        'define internal i64 @"run"(ptr %".1", i64 %".2") noinline\n{\nentry:\n'
        '  %".3" = call i64 %".1"(i64 %".2")\n  ret i64 %".3"\n}\n',
        _fn("job1", '  %".2" = call i64 @"ukr"(i64 %".1")\n  %".3" = call i64 @"helper"(i64 %".2")\n  ret i64 %".3"'),
        _fn("job2", '  %".2" = call i64 @"ukr"(i64 %".1")\n  %".3" = call i64 @"helper"(i64 %".2")\n  ret i64 %".3"'),
        ukr, inl])
    monkeypatch.setattr(options, "split_libraries", True)
    parts = [sorted(_DEFINE.findall(p)) for p in split.split(ir_text)]
    # "ukr" (noinline) is cut from both jobs; "helper" may be inlined into them: it stays with them
    assert sorted(parts) == [["helper", "job1", "job2"], ["run", "symcnn_entry"], ["ukr"]]
    # a function the cut one calls that a job calls too, and could inline: no cut
    leaky = ir_text.replace('%".2" = mul i64 %".1", 3', '%".2" = call i64 @"helper"(i64 %".1")')
    parts = [sorted(_DEFINE.findall(p)) for p in split.split(leaky)]
    assert sorted(parts) == [["helper", "job1", "job2", "ukr"], ["run", "symcnn_entry"]]
    monkeypatch.setattr(options, "split_libraries", False)
    parts = [sorted(_DEFINE.findall(p)) for p in split.split(ir_text)]
    assert sorted(parts) == [["helper", "job1", "job2", "ukr"], ["run", "symcnn_entry"]]


def test_text_it_cannot_read_or_small_modules_stay_whole():
    assert split.split("this is not LLVM IR") is None
    assert split.split(_module([_fn("symcnn_entry", '  ret i64 %".1"', linkage="", attrs="")])) is None
    named = _module([_fn(f"f{k}", '  ret i64 %".1"') for k in range(5)]
                    + [_fn("symcnn_entry", '  ret i64 %".1"', linkage="", attrs="")]) + '!named = !{}\n'
    assert split.split(named) is None
    table = _module([_fn(f"f{k}", '  ret i64 %".1"') for k in range(5)]
                    + [_fn("symcnn_entry", '  ret i64 %".1"', linkage="", attrs="")],
                    '@"jobs" = internal constant [1 x ptr] [ptr @"f0"]\n')
    assert split.split(table) is None


def test_parts_compile_at_the_same_time_and_identical_parts_once(lenet_ir, monkeypatch):
    """Two modules compiled at once by two threads (a training step and its validation
    function): every part is compiled once, and parts are compiled concurrently."""
    compiled, active, most = [], [0], [0]
    lock = threading.Lock()
    two_at_once = threading.Event()

    def counting(ir_text, target=None, pipeline=None):
        with lock:
            compiled.append(ir_text)
            active[0] += 1
            most[0] = max(most[0], active[0])
            if active[0] >= 2:
                two_at_once.set()
        two_at_once.wait(timeout=5)   # hold the slot a moment so that the other thread shows up
        try:
            return jit._compile_here(ir_text, target, pipeline)
        finally:
            with lock:
                active[0] -= 1
    monkeypatch.setattr(jit, "compile_object", counting)
    monkeypatch.setattr(jit, "_parts_done", {})
    monkeypatch.setattr(jit, "_parts_inflight", {})
    monkeypatch.setattr(jit, "_worker", lambda required=False: object())   # as if a second core were free
    results = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, jit.compile_module(lenet_ir[k])))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parts = [split.split(t) for t in lenet_ir]
    assert sorted(compiled) == sorted(set(parts[0]) | set(parts[1]))     # each distinct part once
    assert most[0] >= 2
    assert [len(results[k]) for k in range(2)] == [len(p) for p in parts]


def test_a_cache_entry_holds_every_part(cache_dir, monkeypatch):
    sizes = []
    real = jit.compile_module
    monkeypatch.setattr(jit, "compile_module", lambda ir, target=None, parts=None:
                        sizes.append(len(real(ir, target, parts))) or real(ir, target, parts))
    train, _, params = _lenet(batch=128)    # batch 128: images go to the pool at every target
    train.wait()
    assert max(sizes) > 1
    before = [p.get_value() for p in params]
    cold = [float(train(i)) for i in range(3)]
    for p, v in zip(params, before):
        p.set_value(v)
    again, _, params2 = _lenet(batch=128)
    assert again.runner.module.cache_hit
    for p, v in zip(params2, before):
        p.set_value(v)
    assert [float(again(i)) for i in range(3)] == cold


def test_entry_sizes_that_do_not_add_up_are_a_miss():
    assert build._objects({"object_sizes": [2, 3]}, b"abcde") == [b"ab", b"cde"]
    assert build._objects({}, b"abc") == [b"abc"]
    assert build._objects({"object_sizes": [2, 2]}, b"abcde") is None
    assert build._objects({"object_sizes": [0, 5]}, b"abcde") is None
    assert build._objects({"object_sizes": "5"}, b"abcde") is None


def test_split_off_compiles_the_module_whole(lenet_ir, monkeypatch):
    monkeypatch.setattr(options, "split_modules", False)
    compiled = []
    real = jit.compile_object
    monkeypatch.setattr(jit, "compile_object", lambda ir, target=None: compiled.append(ir) or real(ir, target))
    assert len(jit.compile_module(lenet_ir[1])) == 1 and compiled == [lenet_ir[1]]


def test_the_entry_part_compiles_with_its_own_pipeline(lenet_ir, monkeypatch):
    seen = []
    real = jit.compile_object
    monkeypatch.setattr(jit, "_parts_done", {})
    monkeypatch.setattr(jit, "compile_object", lambda ir, target=None, pipeline=None:
                        seen.append((split.defines(ir, "symcnn_entry"), pipeline)) or real(ir, target, pipeline))
    monkeypatch.setattr(options, "entry_speed_level", 1)
    monkeypatch.setattr(options, "entry_slp_vectorization", False)
    jit.compile_module(lenet_ir[1])
    entry = [p for is_entry, p in seen if is_entry]
    assert entry == [jit.entry_pipeline_settings()]
    assert entry[0]["speed_level"] == 1 and entry[0]["slp_vectorization"] is False
    assert len(seen) > 1 and all(p == jit.pipeline_settings() for is_entry, p in seen if not is_entry)


def test_the_helper_process_compiles_with_the_pipeline_it_is_given(lenet_ir):
    part = next(p for p in split.split(lenet_ir[1]) if split.defines(p, "symcnn_entry"))
    objs = []
    for pipeline in (jit.pipeline_settings(), dict(jit.entry_pipeline_settings(), speed_level=1,
                                                    slp_vectorization=False, codegen_level=0)):
        objs.append(jit._compile_here(part, None, pipeline))
        # (the helper in use now: one retires after WORKER_COMPILES_PER_PROCESS modules)
        assert jit._worker(required=True).compile(part, None, pipeline) == objs[-1]
    assert objs[0] != objs[1]
