"""Compiling a graph again for the sizes of its arguments.

A native backend chooses a convolution's kernels (Winograd, direct, strided, few-tap) by the sizes
its operands' types fix; where the graph leaves them open (a `T.tensor4()` input, a shared
variable's filters, no `input_shape=` / `filter_shape=`), it takes general kernels that read every
size at run time (a small CIFAR network: 2.1x slower). A function whose graph holds such a node
(an op with `kernels_by_static_shapes`) and some input of unknown size is compiled again at a
call, from the graph before rewriting, with every argument's sizes fixed in its type: an explicit
input's sizes past the first (the batch stays open, so a smaller last minibatch reuses the
code), a shared variable's all of them. Sizes of 1 stay open: a static 1 would make the dimension
broadcastable, and a graph Theano rejects for mismatched sizes must still be rejected. Calls whose
arguments have those sizes run that code; others run the general code, or their own
specialisation (at most MAX_SPECIALISATIONS per function). Values never choose the code, only
sizes, so a call's results do not depend on earlier calls. A graph the specialisation cannot be
built for (a type an op refuses) keeps the general code.
"""
import numpy as np

from ..graph.basic import Constant, clone_replace, io_toposort
from ..graph.fg import FunctionGraph
from ..rewrite import rewrite_graph
from ..tensor.type import TensorType
from .mode import backend_for, rewrites_for
from .shared import SharedVariable

MAX_SPECIALISATIONS = 4


def applies(graph_outputs, backend):
    """Whether fixing the arguments' sizes could change the kernels of the graph computing
    graph_outputs (before rewriting): a backend that rewrites (a native one), and a node choosing
    kernels by sizes that neither its declared shapes nor its operands' types fix."""
    if not backend.rewrite:
        return False
    return any(_open(sizes) for sizes in _kernel_types(graph_outputs))


def _open(sizes):
    """Whether a _kernel_types entry (sizes, or an operand type) leaves a size open."""
    if isinstance(sizes, TensorType):
        return None in sizes.shape
    if isinstance(sizes, (tuple, list)):
        return any(_open(s) for s in sizes)
    return sizes is None


def _fixed(ttype, shape, keep_first):
    """ttype with the sizes of `shape` fixed (not the first with keep_first, never a 1)."""
    fixed = tuple(s if s is not None else (None if (d == 0 and keep_first) or n == 1 else int(n))
                  for d, (s, n) in enumerate(zip(ttype.shape, shape)))
    return ttype.clone(shape=fixed)


class Specializer:
    """The specialised runners of one function, by the sizes of its arguments."""

    def __init__(self, inputs, shared_inputs, graph_outputs, update_pairs, mode):
        self.inputs, self.shared_inputs = list(inputs), list(shared_inputs)
        self.graph_outputs = graph_outputs
        self.update_pairs = update_pairs
        self.mode = mode
        self.runners = {}   # key -> (runner, fgraph) or None (the general code)

    def key(self, values):
        """The sizes that choose the code, of the runner's values (explicit inputs, then shared)."""
        n = len(self.inputs)
        return tuple(np.shape(v)[1:] if i < n else np.shape(v) for i, v in enumerate(values))

    def runner_for(self, values):
        """(runner, fgraph) for these values, or None: the general code."""
        key = self.key(values)
        if key in self.runners:
            entry = self.runners[key]
            if isinstance(entry, _Pending):   # prepared: its machine code may still be in the making
                try:
                    entry = (entry.build.result(), entry.fgraph)
                except (TypeError, ValueError, NotImplementedError):
                    entry = None   # as _build: an op refusing the fixed types leaves the general code
                self.runners[key] = entry
            return entry
        if len(self.runners) >= MAX_SPECIALISATIONS:
            return None
        self.runners[key] = self._build(values)
        return self.runners[key]

    def prepare(self, start):
        """Lower now the code for the sizes every call will have where the explicit inputs' types fix
        theirs past the batch (an index into shared data, labels, given images): the shared
        variables' values give the rest. start(lowered, fgraph) starts generating its machine code
        (in the background) and returns an object whose result() is the runner. Returns whether
        that code was lowered (False: the sizes are not known yet, or they choose the general
        code's kernels, or an op refuses them)."""
        values = []
        for var in self.inputs:
            if not isinstance(var.type, TensorType) or None in var.type.shape[1:]:
                return False
            values.append(_Sized((2,) + tuple(var.type.shape[1:]) if var.ndim else ()))
        values += [sv.container[0] for sv in self.shared_inputs]
        lowered = self._lower(values)
        if lowered is None:
            return False
        self.runners[self.key(values)] = _Pending(start(*lowered), lowered[1])
        return True

    def wait(self):
        """Wait for the machine code of the prepared specialisations (raises what it raised)."""
        for entry in list(self.runners.values()):
            if isinstance(entry, _Pending):
                entry.build.result()

    def _build(self, values):
        lowered = self._lower(values)
        if lowered is None:
            return None
        try:
            return lowered[0].finish(), lowered[1]
        except (TypeError, ValueError, NotImplementedError):
            return None   # an op refuses the fixed types: the general code serves these sizes

    def _lower(self, values):
        """(the backend's Lowered, its graph) of the code for these values' sizes, or None."""
        n = len(self.inputs)
        replace = {}
        for i, (var, val) in enumerate(zip(self.inputs + self.shared_inputs, values)):
            if not isinstance(var.type, TensorType):
                continue
            ttype = _fixed(var.type, np.shape(val), keep_first=i < n)
            if ttype == var.type:
                continue
            if isinstance(var, SharedVariable):
                # the same storage under a type with its sizes: reads and updates go to the variable
                new = type(var)(ttype, var.container[0], name=var.name, borrow=True)
                new.container = var.container
            else:
                new = ttype(name=var.name)
            replace[var] = new
        if not replace:
            return None
        try:
            outputs = clone_replace(self.graph_outputs, replace)
            if _kernel_types(outputs) == _kernel_types(self.graph_outputs):
                return None   # no convolution learns a size that chooses its kernels: same code
            fgraph = FunctionGraph([replace.get(v, v) for v in self.inputs + self.shared_inputs], outputs)
            backend = backend_for(self.mode)
            query = rewrites_for(self.mode, backend)
            if query is not None:
                rewrite_graph(fgraph, query=query)
            return backend.lower(fgraph, self.update_pairs), fgraph
        except (TypeError, ValueError, NotImplementedError):
            return None   # an op refuses the fixed types: the general code serves these sizes


class _Sized:
    """Stands for an argument of known sizes (np.shape reads .shape)."""

    def __init__(self, shape):
        self.shape = shape


class _Pending:
    """A prepared specialisation: build.result() is its runner, fgraph its graph."""

    def __init__(self, build, fgraph):
        self.build, self.fgraph = build, fgraph


def _kernel_types(outputs):
    """The sizes that choose the kernels of the nodes whose kernels sizes choose, in graph order:
    the op's kernel_sizes(node) (its declared shapes merged with its operands' types), or the
    operands' types."""
    return [node.op.kernel_sizes(node) if hasattr(node.op, "kernel_sizes") else
            tuple(v.type for v in node.inputs) for node in io_toposort(outputs)
            if getattr(node.op, "kernels_by_static_shapes", False)]


def constant_outputs(fgraph):
    """The data of the fgraph's outputs that are constants (a caller must not receive them as is)."""
    return [v.data for v in fgraph.outputs if isinstance(v, Constant)]
