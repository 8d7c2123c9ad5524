"""symcnn.function: compile inputs -> outputs (with updates and givens) into a callable."""
import inspect
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np

from ..config import config
from ..graph.basic import Constant, Variable, clone_replace
from ..graph.fg import FunctionGraph
from ..graph.trace import user_trace, with_trace
from ..tensor.var import as_tensor_variable
from . import linker as _reference  # noqa: F401  (registers the reference mode)
from .backend import OwnedBuffer
from .mode import backend_for, get_mode, rewrites_for
from ..rewrite import rewrite_graph
from .io import In, Out
from .shared import SharedVariable
from . import specialize


class UnusedInputError(ValueError):
    pass


class MissingInputError(ValueError):
    pass


def _pairs(arg, what):
    if arg is None:
        return []
    if isinstance(arg, dict):
        if type(arg) is dict or isinstance(arg, OrderedDict):
            return list(arg.items())
    if isinstance(arg, (list, tuple)):
        pairs = list(arg)
        if len(pairs) == 2 and isinstance(pairs[0], Variable) and not isinstance(pairs[1], (list, tuple)) \
                and not isinstance(pairs[0], (list, tuple)):
            pairs = [tuple(pairs)]
        for p in pairs:
            if not (isinstance(p, (list, tuple)) and len(p) == 2):
                raise TypeError(f"{what} must be a dict or a list of (variable, expression) pairs, got {p!r}")
        return [tuple(p) for p in pairs]
    raise TypeError(f"{what} must be a dict or a list of pairs, got {type(arg).__name__}")


def function(inputs, outputs=None, updates=None, givens=None, mode=None, name=None,
             allow_input_downcast=None, on_unused_input="raise", no_default_updates=False,
             accept_inplace=False):
    """Compile a callable computing `outputs` from `inputs`, Theano's way.

    updates: (shared variable, expression) pairs, all computed from the old values
      and then assigned together after the outputs are computed.
    givens: (variable, expression) pairs substituted into the graph before compiling;
      slicing a shared dataset there gives a view, not a copy.
    accept_inplace: accepted for Theano compatibility; graphs a user builds hold no inplace
      ops (they are introduced only by the compiler), so there is nothing to accept.
    """
    spec = dict(inputs=inputs, outputs=outputs, updates=updates, givens=givens, mode=mode, name=name,
                allow_input_downcast=allow_input_downcast, on_unused_input=on_unused_input,
                no_default_updates=no_default_updates)
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"function: inputs must be a list of variables, got {type(inputs).__name__}")
    in_options = [v if isinstance(v, In) else None for v in inputs]
    inputs = [v.variable if isinstance(v, In) else v for v in inputs]
    for i, v in enumerate(inputs):
        if not isinstance(v, Variable):
            raise TypeError(f"function: input {i} is not a symbolic variable: {v!r}")
        if isinstance(v, SharedVariable):
            raise TypeError(f"function: input {i} {v.describe()} is a shared variable; shared variables "
                            f"are implicit inputs and cannot be listed in inputs")
        if isinstance(v, Constant):
            raise TypeError(f"function: input {i} {v} is a constant and cannot be an input")
        if v.owner is not None:
            raise TypeError(f"function: input {i} {v.describe()} is computed from other variables; "
                            f"inputs must be variables made with T.matrix(), T.lscalar(), ...")
    if len(set(inputs)) != len(inputs):
        raise ValueError("function: the same variable is listed twice in inputs")

    output_keys = None
    if isinstance(outputs, dict):
        # Theano: a dict of outputs gives a dict of results, with the same (string) keys.
        bad = [k for k in outputs if not isinstance(k, str)]
        if bad:
            raise TypeError(with_trace(f"function: the keys of a dict of outputs must be strings, got {bad[0]!r}",
                                       user_trace()))
        output_keys = sorted(outputs)
        outputs = [outputs[k] for k in output_keys]
    single = outputs is not None and not isinstance(outputs, (list, tuple))
    out_list = [] if outputs is None else ([outputs] if single else list(outputs))
    out_list = [as_tensor_variable(o.variable if isinstance(o, Out) else o) for o in out_list]

    upd = _pairs(updates, "updates")
    for sv, expr in upd:
        if not isinstance(sv, SharedVariable):
            raise TypeError(f"updates: {sv!r} is not a shared variable; only shared variables can be updated")
    upd = [(sv, as_tensor_variable(expr)) for sv, expr in upd]
    upd += _default_updates(out_list, upd, no_default_updates)
    if len({id(sv) for sv, _ in upd}) != len(upd):
        raise ValueError("updates: a shared variable is updated twice")
    for sv, expr in upd:
        if expr.dtype != sv.dtype or expr.ndim != sv.ndim:
            raise TypeError(with_trace(
                f"updates: the new value of shared variable {sv.describe()} has type {expr.type}, but the "
                f"variable is {sv.type}; cast the expression (T.cast(expr, '{sv.dtype}'))", expr.trace))

    giv = _pairs(givens, "givens")
    replace = {}
    for var, expr in giv:
        if not isinstance(var, Variable):
            raise TypeError(f"givens: keys must be symbolic variables, got {var!r}")
        expr = as_tensor_variable(expr)
        if var.dtype != expr.dtype or var.ndim != expr.ndim:
            raise TypeError(with_trace(f"givens: {var.describe()} is {var.type} but its replacement "
                                       f"{expr.describe()} is {expr.type}", expr.trace))
        replace[var] = expr

    graph_outputs = out_list + [expr for _, expr in upd]
    if replace:
        graph_outputs = clone_replace(graph_outputs, replace)

    fg_tmp = FunctionGraph(inputs, graph_outputs, clone=False)
    shared_inputs = [v for v in _ordered_roots(graph_outputs) if isinstance(v, SharedVariable)]
    for sv, _ in upd:
        if sv not in shared_inputs:
            shared_inputs.append(sv)
    missing = [v for v in fg_tmp.free_inputs if v not in replace]
    if missing:
        v = missing[0]
        raise MissingInputError(with_trace(
            f"function: the graph needs {v.describe()}, which is neither in inputs nor given a value in givens",
            v.trace))
    used = set(_ordered_roots(graph_outputs))
    for i, v in enumerate(inputs):
        if v not in used:
            msg = (f"function: input {i} {v.describe()} is not used in the outputs or updates "
                   f"(on_unused_input='{on_unused_input}')")
            if v in replace:
                msg += "; it is replaced through givens, so it should not also be an input"
            if on_unused_input == "raise":
                raise UnusedInputError(msg)
            if on_unused_input == "warn":
                warnings.warn(msg, stacklevel=2)

    fgraph = FunctionGraph(inputs + shared_inputs, graph_outputs)
    mode = get_mode(mode)
    query = rewrites_for(mode, backend_for(mode))
    rewrite_log = rewrite_graph(fgraph, query=query) if query is not None else []
    # calls run code for their arguments' sizes: the general code is compiled when a call needs it
    special = config.specialize_shapes and specialize.applies(graph_outputs, backend_for(mode))
    fn = Function(fgraph, inputs, shared_inputs, len(out_list), single, [sv for sv, _ in upd],
                  mode, name, allow_input_downcast, rewrite_log, lazy=special, lower=not special)
    fn.original_outputs = graph_outputs  # the graph before rewriting (for printing/DOT export)
    if special:
        fn._specializer = specialize.Specializer(inputs, shared_inputs, graph_outputs, fn._update_pairs, mode)
        # where the sizes are known now, their code is compiled now (and the general graph is
        # lowered when a call first needs it); else the general graph is lowered here, so that a
        # graph the backend cannot run is rejected here
        if not fn._specializer.prepare(fn._start_build):
            fn._lower_general()
    fn._set_input_options(in_options, output_keys, spec)
    return fn


def _rebuild_function(spec, defaults):
    fn = function(**spec)
    for i, value in enumerate(defaults):
        if value is not None:
            fn._defaults[i] = value
    return fn


def _default_updates(outputs, updates, no_default_updates):
    """Theano's default updates: (v, v.default_update) for every shared variable v the graph
    reads that has one and no explicit update (a random stream's state and its next state).
    no_default_updates: True skips them all, a list skips those variables."""
    if no_default_updates is True:
        return []
    skip = set(no_default_updates or ())
    done = {sv for sv, _ in updates}
    added = []
    exprs = list(outputs) + [e for _, e in updates]
    while True:  # an update expression may read more shared variables with default updates
        new = [v for v in _ordered_roots(exprs) if isinstance(v, SharedVariable) and v not in done
               and v not in skip and getattr(v, "default_update", None) is not None]
        if not new:
            return added
        for v in new:
            done.add(v)
            added.append((v, as_tensor_variable(v.default_update)))
            exprs.append(added[-1][1])


def _ordered_roots(outputs):
    from ..graph.basic import io_toposort
    seen, roots = set(), []
    for node in io_toposort(outputs):
        for v in node.inputs:
            if v.owner is None and v not in seen:
                seen.add(v)
                roots.append(v)
    for v in outputs:
        if v.owner is None and v not in seen:
            seen.add(v)
            roots.append(v)
    return roots


class Function:
    """A compiled function. Call it with one value per input (positional or by name)."""

    def __init__(self, fgraph, inputs, shared_inputs, n_outputs, single, update_targets, mode, name,
                 allow_input_downcast, rewrite_log=(), lazy=False, lower=True):
        """lazy: the general code's machine code is generated when a call (or fn.runner) first
        needs it, not at once (calls whose sizes have their own code never do); lower=False (with
        lazy): the general graph is not even lowered until then, or until _lower_general()."""
        self.fgraph = fgraph
        self.rewrite_log = list(rewrite_log)
        self.inputs = inputs
        self.shared_inputs = shared_inputs
        self.n_outputs = n_outputs
        self.single = single
        self.update_targets = update_targets
        self.mode = mode
        self.name = name
        self.trace = user_trace()  # where function() was called: named by argument-count errors
        self.allow_input_downcast = config.allow_input_downcast if allow_input_downcast is None \
            else allow_input_downcast
        # (graph input index, graph output index) of each update, for backends that commit in place.
        update_pairs = [(fgraph.inputs.index(sv), n_outputs + k) for k, sv in enumerate(update_targets)]
        self._update_pairs = update_pairs
        self._specializer = None   # compile/specialize.py: code for the arguments' sizes
        self._used = None          # the specialised runner of the last call (None: the general one)
        backend = backend_for(mode)
        self._runner = self._build = self._lazy = None
        self._call_lock = threading.RLock()   # reentrant: a callback inside a call may call again
        self._build_lock = threading.Lock()
        self._lazy_lowering = lazy and _takes_lazy(backend.lower)
        if lower or not self._lazy_lowering:
            self._lower_general()
        self._by_name = {v.name: i for i, v in enumerate(inputs) if v.name}
        self._in_options, self._defaults, self.output_keys, self._spec = [None] * len(inputs), [None] * len(inputs), \
            None, None

    @property
    def runner(self):
        """The backend's callable (for a native mode, waits until its machine code is loaded): the
        one the last call ran (a specialisation for its arguments' sizes, compile/specialize.py)."""
        return self._used if self._used is not None else self._general_runner()

    def _lower_general(self):
        """Lower the general graph (raises for a graph the backend rejects); its machine code is
        generated now, or when first needed if this function is lazy."""
        backend, lazy = backend_for(self.mode), self._lazy_lowering
        lowered = backend.lower(self.fgraph, self._update_pairs, lazy=True) if lazy else \
            backend.lower(self.fgraph, self._update_pairs)
        if lowered.background and lazy:
            self._lazy = (lowered, backend, self.fgraph, self._update_pairs)
        elif lowered.background:
            self._build = _BackgroundBuild(lowered, backend, self.fgraph, self._update_pairs)
        else:
            self._runner = lowered.finish()

    def _start_build(self, lowered, fgraph):
        """The machine code of another graph of this function's (a specialisation), started."""
        return _BackgroundBuild(lowered, backend_for(self.mode), fgraph, self._update_pairs)

    def _general_runner(self):
        if self._runner is None:
            with self._build_lock:
                if self._build is None and self._lazy is None:   # not lowered yet
                    self._lower_general()
                if self._build is None and self._lazy is not None:
                    self._build, self._lazy = _BackgroundBuild(*self._lazy), None
                build = self._build
            if build is not None:
                runner = build.result()
                with self._build_lock:
                    self._runner, self._build = runner, None
        return self._runner

    def wait(self):
        """Block until the function is ready to run. When its machine code is not in the cache,
        function() returns once the graph is lowered and generates the code in the background
        (the first call waits for it anyway). Raises what the compilation raised. Returns the
        function. A function whose calls run code compiled for their arguments' sizes
        (compile/specialize.py) waits for the code of the sizes known when it was compiled, if
        any: its calls compile what else they need."""
        if self._specializer is not None and self._lazy_lowering:
            self._specializer.wait()
        else:
            self.runner
        return self

    def _bind(self, args, kwargs):
        n = len(self.inputs)
        if len(args) > n:
            raise TypeError(with_trace(f"{self._what()} takes {n} argument{'s' * (n != 1)} "
                                       f"({self._signature()}), got {len(args)}", self.trace))
        values = list(args) + [None] * (n - len(args))
        given = [True] * len(args) + [False] * (n - len(args))
        for key, val in kwargs.items():
            if key not in self._by_name:
                raise TypeError(with_trace(f"{self._what()} has no input named {key!r} "
                                           f"(inputs: {self._signature()})", self.trace))
            i = self._by_name[key]
            if given[i]:
                raise TypeError(with_trace(f"{self._what()} got input {key!r} twice", self.inputs[i].trace))
            values[i], given[i] = val, True
        for i, opt in enumerate(self._in_options):
            if not given[i] and opt is not None and opt.has_default:
                values[i], given[i] = self._defaults[i], True
        if not all(given):
            missing = [i for i, g in enumerate(given) if not g]
            raise TypeError(with_trace(
                f"{self._what()} takes {n} argument{'s' * (n != 1)} ({self._signature()}), "
                f"missing: {', '.join(str(self.inputs[i]) for i in missing)}", self.inputs[missing[0]].trace))
        checked = []
        names = self.__dict__.get("_input_names")
        if names is None:   # (what an error names each input by: formatted once, not at every call)
            names = self._input_names = [var.name or str(var) for var in self.inputs]
        for var, val, opt, name in zip(self.inputs, values, self._in_options, names):
            downcast = self.allow_input_downcast
            try:
                if opt is not None:
                    if opt.allow_downcast is not None:
                        downcast = opt.allow_downcast
                    if opt.strict and not (isinstance(val, np.ndarray) and str(val.dtype) == var.dtype):
                        raise TypeError(f"'{opt.name or var}': In(strict=True) takes a {var.dtype} ndarray "
                                        f"as it is, got {type(val).__name__}"
                                        f"{' of dtype ' + str(val.dtype) if hasattr(val, 'dtype') else ''}")
                checked.append(var.type.filter(val, name=name, allow_downcast=downcast))
            except (TypeError, ValueError) as e:
                raise type(e)(with_trace(f"{self._what()}: bad argument: {e}", var.trace)) from None
        return checked

    def _what(self):
        return f"function {self.name!r}" if self.name else "compiled function"

    def _signature(self):
        return ", ".join(f"{v} ({v.type})" for v in self.inputs)

    def __call__(self, *args, **kwargs):
        # One call at a time per function: a native function owns one set of buffers (and a
        # pool of workers), and its updates must be assigned as a whole. Native code runs with
        # the GIL released, so other functions and other Python threads keep running.
        with self._call_lock:
            return self._call(args, kwargs)

    def _call(self, args, kwargs):
        values = self._bind(args, kwargs) + [sv.container[0] for sv in self.shared_inputs]
        special = self._specializer.runner_for(values) if self._specializer is not None else None
        runner, fgraph = special if special is not None else (self._general_runner(), self.fgraph)
        self._used = special[0] if special is not None else None
        results = runner(values)
        # Arrays the caller must not receive as they are: inputs, shared storage, constants.
        owned = values + specialize.constant_outputs(fgraph)
        outs, new_values = results[:self.n_outputs], results[self.n_outputs:]
        # Updates were all computed from the old values; assign them together now.
        assigned = []
        for sv, val in zip(self.update_targets, new_values):
            if val is sv.container[0]:  # the backend already wrote the new value in place
                assigned.append(val)
                continue
            val = np.asarray(val)
            if val.dtype != sv.dtype:
                val = val.astype(sv.dtype)
            sv.container[0] = val if val.base is None and not _aliases_any(val, list(outs) + owned + assigned) \
                else val.copy()
            assigned.append(sv.container[0])
        # Outputs never alias inputs, shared storage or each other.
        seen = {id(v) for v in owned}
        fresh = []
        for o in outs:
            if not isinstance(o, np.ndarray) or id(o) in seen or (
                    o.base is not None and not isinstance(o.base, OwnedBuffer)):
                o = np.array(o)
            seen.add(id(o))
            fresh.append(o)
        outs = fresh
        if self.single:
            return outs[0]
        if self.output_keys is not None:
            return dict(zip(self.output_keys, outs))
        return outs

    # -- options of the inputs (theano.In), defaults ---------------------------------------------
    def _set_input_options(self, in_options, output_keys, spec):
        self._in_options = list(in_options)
        self._defaults = [opt.value if opt is not None and opt.has_default else None for opt in in_options]
        self.output_keys = output_keys
        self._spec = spec
        for i, opt in enumerate(in_options):
            if opt is not None and opt.name:
                self._by_name[opt.name] = i

    def _input_index(self, key):
        if isinstance(key, str) and key in self._by_name:
            return self._by_name[key]
        for i, v in enumerate(self.inputs):
            if v is key:
                return i
        raise KeyError(f"{self._what()} has no input {key!r} (inputs: {self._signature()})")

    def __getitem__(self, key):
        """fn['name']: the default value of an input (Theano's fn[name] / fn.value[name])."""
        return self._defaults[self._input_index(key)]

    # -- copying and pickling ------------------------------------------------------------------
    def __reduce__(self):
        """A compiled function pickles as the arguments of its function() call (the graphs, with
        their shared variables and current values) and is compiled again when loaded; the
        native code then comes from the compile cache (keyed by the rewritten graph), so a load
        does not generate code again. copy.deepcopy goes the same way, so it copies the shared
        variables (together with the rest of whatever object is being deep-copied)."""
        if self._spec is None:
            raise TypeError(f"{self._what()} was not made by symcnn.function() and cannot be pickled")
        return (_rebuild_function, (self._spec, self._defaults))

    def __copy__(self):
        return self.copy()

    def copy(self, share_memory=False, swap=None, delete_updates=False, name=None, profile=None):
        """Theano's Function.copy: a separately compiled function on the same graph, reading and
        updating the same shared variables. swap: {shared variable of this function: shared
        variable of the same type} used instead in the copy; delete_updates: the copy has no
        updates; name: its name (default: this name + ' copy'). share_memory: in Theano, whether
        the two share intermediate buffers; each compiled function here owns its buffers (a call
        may run while another is in progress), so both settings give separate buffers."""
        import copy as _copy
        if self._spec is None:
            raise TypeError(f"{self._what()} was not made by symcnn.function() and cannot be copied")
        trace = user_trace()
        swap = dict(swap or {})
        for old, new in swap.items():
            if old not in self.shared_inputs:
                raise ValueError(with_trace(f"copy(swap=...): {old!r} is not a shared variable of "
                                            f"{self._what()}", trace))
            if not isinstance(new, SharedVariable) or new.type != old.type:
                what = new.type if isinstance(new, SharedVariable) else type(new).__name__
                raise TypeError(with_trace(f"copy(swap=...): {old.describe()} can only be swapped for a shared "
                                           f"variable of type {old.type}, got {what}", trace))
        # Copy the graphs (so the copy owns its own variables and nodes) but not the shared
        # variables: they stay the same objects, or become their swap.
        memo = {}
        for sv in self.shared_inputs:
            memo[id(sv)] = swap.get(sv, sv)
        spec = dict(self._spec)
        if delete_updates:
            spec["updates"] = None
            spec["on_unused_input"] = "ignore"  # inputs only the updates read stay in the signature
        spec = _copy.deepcopy(spec, memo)
        spec["name"] = name if name is not None else (self.name + " copy" if self.name else None)
        return _rebuild_function(spec, _copy.deepcopy(self._defaults))

    def __setitem__(self, key, value):
        """fn['name'] = v: a new default value for an input."""
        i = self._input_index(key)
        var = self.inputs[i]
        if self._in_options[i] is None:
            self._in_options[i] = In(var)
        self._in_options[i].has_default = True
        self._defaults[i] = var.type.filter(value, name=var.name or str(var),
                                            allow_downcast=bool(self.allow_input_downcast))

    @property
    def maker(self):
        return self  # Theano code reads fn.maker.fgraph

    # -- what only some runners offer: forwarded to fn.runner ----------------------------------
    @property
    def kernels(self):
        """The native kernels one call runs, in order (fused nodes named for what they fused)."""
        return self._native("kernels").kernels

    def memory_report(self):
        """Intermediate buffers of a native function: count and bytes (grown by the calls so far)."""
        return self._native("memory_report").memory_report()

    def profile(self, reset=False, peak_gflops=None):
        """Per-kernel times, FLOPs and bytes of the calls so far (a ProfileReport of the runner:
        print it for a table, iterate it for rows). Needs mode='profile'. reset=True clears the
        counters after reading them. peak_gflops: the machine ceiling of the whole-step line
        (default: derived from the target the function was compiled for and this machine's clock
        and cores; the report says how)."""
        if not hasattr(self.runner, "profile"):
            raise ValueError(f"{self._what()} was compiled in mode {self.mode.linker!r}; profile() needs a "
                             f"function compiled with mode='profile'")
        return self.runner.profile(reset=reset, peak_gflops=peak_gflops)

    def _native(self, what):
        if not hasattr(self.runner, what):
            raise ValueError(f"{self._what()} was compiled in mode {self.mode.linker!r}; {what} needs mode='native'")
        return self.runner

    def dump_llvm(self):
        """The LLVM IR module of a natively compiled function (text)."""
        if not hasattr(self.runner, "dump_llvm"):
            raise ValueError(f"{self._what()} was compiled in mode {self.mode.linker!r}, which emits no LLVM IR; "
                             f"compile it with mode='native'")
        return self.runner.dump_llvm()

    def dprint(self, **kwargs):
        from ..printing import debugprint
        return debugprint(self, **kwargs)


class _BackgroundBuild:
    """Finishes a lowered graph (the backend's machine-code generation) in its own thread, so LLVM's
    optimisation and code generation overlap whatever the caller does next, e.g. building and
    lowering the next function, which the backend may compile at the same time in a helper process.

    Waiting survives interruptions: a KeyboardInterrupt while waiting leaves the build going,
    and the next wait picks it up (an interrupted Thread.join may mark a live thread as finished).
    In a child made by os.fork() before the build finished, the building thread does not exist:
    the child lowers and builds the runner itself."""

    def __init__(self, lowered, backend, fgraph, update_pairs):
        self._args = (backend, fgraph, update_pairs)
        self._pid = os.getpid()
        self._done = threading.Event()
        self._runner = self._error = None
        self._thread = threading.Thread(target=self._run, args=(lowered,), name="symcnn-compile", daemon=False)
        try:
            self._thread.start()
        except RuntimeError:  # no thread to be had: finish here (a lowered graph must be finished)
            self._thread = None
            self._run(lowered)

    def _run(self, lowered):
        try:
            self._runner = lowered.finish()
        except BaseException as e:  # re-raised in the caller's thread
            self._error = e
        finally:
            self._done.set()

    def result(self):
        if self._pid != os.getpid() and not self._done.is_set():
            self._build_here()
        self._done.wait()
        t = self._thread
        if t is not None:
            t.join()
            _reaped(t.native_id)
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._runner

    def _build_here(self):
        """In a forked child: the thread building the runner stayed in the parent."""
        backend, fgraph, update_pairs = self._args
        try:
            runner, error = backend.lower(fgraph, update_pairs).finish(), None
        except Exception as e:
            runner, error = None, e
        self._runner, self._error, self._thread = runner, error, None
        self._done = threading.Event()
        self._done.set()
        self._pid = os.getpid()


def _takes_lazy(lower):
    """Whether a backend's lower() takes lazy= (symcnn.compile.backend; older backends do not)."""
    try:
        return "lazy" in inspect.signature(lower).parameters
    except (TypeError, ValueError):
        return False


def _reaped(tid, timeout=0.2):
    """join() returns a moment before the OS thread is gone; on Linux wait for that moment too,
    so a function that is ready has no compile thread left (threads are counted by tools)."""
    import time
    path = f"/proc/self/task/{tid}"
    end = time.monotonic() + timeout
    while tid is not None and os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.0005)


def _aliases_any(val, arrays):
    return any(val is a for a in arrays)
