"""Compiling the parts of a module while it is still being emitted.

Emitting a training step's module takes a third of its cold compile, on one core, before any part
of it can compile (codegen.split cuts the finished text). Yet most parts are finished long before:
a node's kernels (its thread-pool jobs and what they call) do not change once the node is lowered.
So after each node, the functions it added are turned into text (llvmlite keeps each instruction's
text, so the module's text later costs little more), and the parts they would make are found as
codegen.split finds them, with a stand-in root that takes the jobs' addresses and calls the other
functions. A part found the same after two nodes in a row (so a later node is unlikely to join it
to another) goes to the compile helper process, when it is idle, through codegen.jit's store of
parts keyed by their text; the parts sent go on compiling after the last node, until the module's
own compile starts.

The module is then compiled exactly as before: codegen.jit.compile_module takes each part's object
from the store when a part compiled early has the same text (and target and pipeline); a part
compiled early that no longer appears is wasted work of a core that was idle. A function changed
after its text was taken (none is: tests check it with VERIFY) has that text dropped before the
module's text is made (check_unchanged).
"""
import queue
import threading

from . import jit
from . import split as S

ROOT = "symcnn_entry"
# Tests set this: close() then formats every function again from scratch and raises if any text
# taken early differs (no emitter changes a function once its node is lowered).
VERIFY = False


def enabled():
    from .options import options
    return options.split_modules and options.early_parts and jit.helper_available()


class EarlyParts:
    """The early compiles of one module being emitted (module: its llvmlite Module)."""

    def __init__(self, module, target):
        self.module, self.target = module, target
        self.pipeline = jit.pipeline_settings()
        self.functions = []      # the parsed finished functions (split.Function), in module order
        self.by_name = {}
        self.parsed = {}         # their texts -> those (split.split need not parse them again)
        self.shapes = {}         # function -> _shape when its text was taken
        self.texts = {}          # function -> its text, with VERIFY
        self.globals_ = {}       # split.parse's views of the module's other globals
        self.declarations = []
        self.metadata = {}
        self.header = None
        self.n_globals = 0
        self.n_metadata = 0
        self.jobs = {}           # job name -> whether the root can hand it to the thread pool
        self.previous = set()
        self.sent = set()
        self.queue = queue.Queue()
        self.closed = False
        self.compiles_at_close = 0
        self.abandoned = False
        self.error = None        # what stopped the early compiles, if anything did
        self.thread = threading.Thread(target=self._run, name="symcnn-early-parts", daemon=True)
        self.thread.start()

    def job(self, fn, dispatched):
        """fn is a thread-pool job of the root; dispatched: whether a run can hand it to the pool
        (False: its range always runs on the calling thread, so the root calls it directly; None:
        either, by a run-time condition that LLVM may fold where codegen.split cannot tell: it is
        planned with the root, so not compiled early)."""
        self.jobs[fn.name] = self.jobs.get(fn.name, False) or dispatched

    def node_done(self):
        """Called after each node is lowered: take the new functions' text, and send the parts
        found the same as after the previous node."""
        gv = self.module.globals
        if len(gv) == self.n_globals:
            return
        new = list(gv.values())[self.n_globals:]
        self.n_globals = len(gv)
        self._read(new)
        self._read_metadata()
        parts = self._parts()
        for key in parts.keys() & self.previous:
            if key not in self.sent:
                self.sent.add(key)
                self.queue.put(parts[key])
        self.previous = set(parts)

    def _read(self, new):
        lines = []
        for g in new:
            if getattr(g, "name", None) == ROOT:
                continue
            text = str(g)
            if text.startswith("define "):
                text = text.rstrip("\n")
                body = text.split("\n")
                f = S.Function(g.name, body[0], body)
                self.functions.append(f)
                self.by_name[f.name] = f
                self.parsed[text] = f
                self.shapes[g] = _shape(g)
                if VERIFY:
                    self.texts[g] = text
            else:
                lines.append(text)
        if lines:   # globals and declarations, read as codegen.split reads them
            parsed = S.parse("\n".join(lines))
            if parsed is not None:
                _, _, declarations, globals_, _ = parsed
                self.declarations.extend(declarations)
                self.globals_.update(globals_)
        if self.header is None:
            m = self.module
            self.header = ['; ModuleID = "%s"' % m.name, 'target triple = "%s"' % m.triple,
                           'target datalayout = "%s"' % m.data_layout]

    def _read_metadata(self):
        md = self.module.metadata
        for node in md[self.n_metadata:]:
            num, _, body = str(node).partition(" = ")
            self.metadata[num.lstrip("!")] = body
        self.n_metadata = len(md)

    def _parts(self):
        """{(function names): part text, or None if not wanted now} of the parts other than the
        root's, as codegen.split would cut the module if it ended here."""
        if not self.functions:
            return {}
        # the root hands the dispatched jobs to the pool and calls the others, and the functions
        # no job reaches, directly
        jobs = {n for n in self.jobs if n in self.by_name}
        taken = {n for n in jobs if self.jobs[n]}
        reached = set()
        for j in jobs:
            reached |= S.callees(j, self.by_name)
        refs = jobs | {f.name for f in self.functions if f.name not in reached}
        body = [f'  call void @"{n}"()' for n in sorted(refs)]
        root = S.Function(ROOT, f"define i32 @{ROOT}()", [f"define i32 @{ROOT}()", "{"] + body + ["}"])
        functions = [root] + self.functions
        by_name = dict(self.by_name, **{ROOT: root})
        planned = S.plan(functions, by_name, self.globals_, ROOT, taken, jobs)
        if planned is None:
            return {}
        members, exported = planned
        out = {}
        for own in members.values():
            names = tuple(f.name for f in own)
            if ROOT in names:
                continue
            if names not in self.sent and names in self.previous:
                out[names] = S.part_text(self.header, own, exported, by_name, self.declarations, self.globals_,
                                         self.metadata)
            else:
                out[names] = None
        return out

    def close(self):
        """No more nodes: the parts sent so far go on compiling until the module's own compile
        starts (the next jit.compile_module); drop the text of any function changed since it was
        taken."""
        self.compiles_at_close = jit.compiles_started()
        self.closed = True
        self.queue.put(None)
        if check_unchanged(self.shapes):
            self.parsed = {}
        for fn, text in self.texts.items():
            for blk in fn.blocks:
                for ins in blk.instructions:
                    ins._clear_string_cache()
            if str(fn).rstrip("\n") != text:
                raise AssertionError(f"{fn.name} changed after its node was lowered")
        # the module is freed by reference counting once emitted (build.release_ir): keep none of it
        self.module = self.shapes = self.texts = self.functions = self.by_name = None

    def abandon(self):
        """The module failed to emit (or was interrupted): no part of it is compiled any more."""
        self.abandoned = self.closed = True
        self.queue.put(None)
        self.module = self.shapes = self.texts = self.functions = self.by_name = None

    def _stopped(self):
        return self.abandoned or (self.closed and jit.compiles_started() > self.compiles_at_close)

    def _run(self):
        while True:
            part = self.queue.get()
            if part is None or self._stopped():
                return
            try:
                jit.compile_part_early(part, self.target, self.pipeline, self._stopped)
            except Exception as e:   # only ahead of time: the module's own compile does the part again
                self.error = e
                return


def _shape(fn):
    return len(fn.blocks), sum(len(b.instructions) for b in fn.blocks), str(fn.attributes), fn.linkage


def check_unchanged(shapes):
    """Forget the instruction texts llvmlite keeps for a function whose blocks, instructions,
    attributes or linkage changed after its text was taken, so the module's text shows it as it is.
    Returns whether any had changed."""
    changed = False
    for fn, shape in shapes.items():
        if _shape(fn) != shape:
            changed = True
            for blk in fn.blocks:
                blk._clear_string_cache()
                for ins in blk.instructions:
                    ins._clear_string_cache()
    return changed
