"""Library functions emitted once per process, and copied as text into later modules.

The kernels call shared helper functions (the GEMM packers and micro-kernels, the Winograd tile
transforms, the few-tap and direct convolution micro-kernels, the failure and buffer-growing
helpers), each named by everything its code depends on besides the target and the backend's
settings: a module holds one function per name. Emitting one through llvmlite and turning it into
text costs the same Python time in every module that calls it, though its text is the same: in a
test file of convolution kernels, two lines in five of the modules' text were functions an earlier
module of the process already had.

So a module being built (`begin`) notes the helpers it emits, and when it is
finished (`record`) their text and the text of every global they reach: a helper is a function
looked up with `existing`, then emitted by its caller. A later module of the
same target, settings and instrumentation asking for one of them (`existing`) gets those globals
it lacks as text-only values, which print their recorded text in the module's text. Not recorded:
a function whose text reaches metadata (numbered per module), a global whose name llvmlite made
unique (another module may give it to another value), or any function of a module built with
bounds checks.

A copy is right only if the name says everything the code depends on; `verifying()` emits every
helper anew and checks it against the text recorded under its name (the tests build layers drawn
from the convolution space that way).
"""
import re
import threading
from collections import OrderedDict

from llvmlite import ir

from .forksafe import after_fork_in_child
from .split import global_names

# Recorded texts kept per process, at most (the least recently used are dropped).
MAX_CHARS = 64 << 20

_METADATA = re.compile(r'![0-9a-zA-Z_."{]')
_UNIQUED = re.compile(r"\.\d+$")

_lock = threading.Lock()
_units = OrderedDict()     # (module key, name) -> _Unit
_chars = [0]
_verifying = [0]


class HelperNameError(AssertionError):
    """Two modules emitted different code under one helper name: the name misses something the
    code depends on, and a module copying the first would run the wrong code."""


class verifying:
    """`with verifying():` every helper is emitted anew (none copied), and `record` checks that its
    text is the one recorded under its name (raising HelperNameError), so that a test can show
    that the names say everything their code depends on."""

    def __enter__(self):
        with _lock:
            _verifying[0] += 1
        return self

    def __exit__(self, *exc):
        with _lock:
            _verifying[0] -= 1


class _TextFunction(ir.Function):
    """A function of a module given by its recorded text (a definition or a declaration)."""

    def __init__(self, module, ftype, name, text):
        super().__init__(module, ftype, name=name)
        self.text = text

    def descr(self, buf):
        buf.append(self.text)

    def __str__(self):
        return self.text


class _TextGlobal(ir.GlobalVariable):
    """A global variable of a module given by its recorded text (its name included)."""

    def __init__(self, module, typ, name, text):
        super().__init__(module, typ, name=name)
        self.text = text

    def __str__(self):
        return self.text


class _Unit:
    """A function and the globals it reaches: (name, kind, type, text) in the order of the module
    that emitted them."""

    def __init__(self, members):
        self.members = members
        self.chars = sum(len(m[3]) for m in members)

    def restore(self, module):
        have = module.globals
        for name, kind, typ, text in self.members:
            if name not in have:
                (_TextFunction if kind == "function" else _TextGlobal)(module, typ, name, text)


def begin(module, variant):
    """Mark `module` as one whose helpers are recorded and reused: variant holds what else changes
    their code in it (instrumentation flags). Off while a bounds checker is active."""
    from .cache import settings_key
    from .lower import bounds_checker
    from .target import current
    if bounds_checker() is not None:
        return
    module.symcnn_library_key = (current().describe(), settings_key(), variant)
    module.symcnn_library_asked = set()


def existing(module, name):
    """The module's global `name`, copied from a recorded earlier module's if it has none yet and
    one was recorded for the same key; else None: the caller emits it, and `record` takes it."""
    g = module.globals.get(name)
    if g is not None:
        return g
    key = getattr(module, "symcnn_library_key", None)
    if key is None:
        return None
    module.symcnn_library_asked.add(name)
    if _verifying[0]:
        return None
    with _lock:
        unit = _units.get((key, name))
        if unit is not None:
            _units.move_to_end((key, name))
    if unit is None:
        return None
    unit.restore(module)
    return module.globals[name]


def record(module):
    """Record the text of the helpers emitted into the finished `module`, with all they reach."""
    key = getattr(module, "symcnn_library_key", None)
    if key is None:
        return
    order = {name: i for i, name in enumerate(module.globals)}
    library = module.symcnn_library_asked
    for name in sorted(library):
        fn = module.globals.get(name)
        if _verifying[0] and isinstance(fn, ir.Function) and fn.blocks and (key, name) in _units:
            _check_same(_units[(key, name)], fn)
        if (key, name) in _units or not isinstance(fn, ir.Function) or isinstance(fn, _TextFunction):
            continue
        members = _closure(module, fn, library)
        if members is None:
            continue
        members.sort(key=lambda m: order[m[0]])
        unit = _Unit(members)
        with _lock:
            _units[(key, fn.name)] = unit
            _chars[0] += unit.chars
            while _chars[0] > MAX_CHARS and _units:
                _, old = _units.popitem(last=False)
                _chars[0] -= old.chars
    module.symcnn_library_asked = set()


def _check_same(unit, fn):
    recorded = next(text for name, kind, _, text in unit.members if name == fn.name)
    if recorded != str(fn):
        raise HelperNameError(f"helper {fn.name} was emitted with other code than the code recorded under "
                              f"that name: its name misses something its code depends on")


def _closure(module, fn, library):
    """[(name, kind, type, text)] of fn and every global its text reaches, or None where one may
    differ in another module: metadata, a uniqued name, a mutable global, a function defined
    other than as a helper (looked up with `existing`), a helper still empty."""
    members, todo, seen = [], [fn.name], {fn.name}
    while todo:
        name = todo.pop()
        g = module.globals.get(name)
        if g is None or _UNIQUED.search(name):
            return None
        text = str(g)
        if _METADATA.search(text):
            return None
        if isinstance(g, _TextFunction) or (isinstance(g, ir.Function) and (
                (g.blocks and name in library) or (not g.blocks and name not in library))):
            members.append((name, "function", g.ftype, text))
        elif isinstance(g, _TextGlobal) or (isinstance(g, ir.GlobalVariable) and g.global_constant):
            members.append((name, "global", g.value_type, text))
        else:
            return None
        for ref in global_names(text) - seen:
            seen.add(ref)
            todo.append(ref)
    return members


@after_fork_in_child
def _new_lock_after_fork():
    """A forked child: another thread of the parent may have held the lock."""
    global _lock
    _lock = threading.Lock()


def clear():
    """Forget every recorded text (tests)."""
    with _lock:
        _units.clear()
        _chars[0] = 0
