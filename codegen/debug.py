"""mode='debug': run natively, then re-run every node's numpy reference on the
native inputs of that node, and raise at the first node whose native outputs
differ beyond float32 tolerance (naming the node, the user's line and the error). What
"differ" means is symcnn.compile.compare's policy, the tests' too."""
import numpy as np

from symcnn.compile.compare import magnitude, mismatch
from symcnn.graph.fg import FunctionGraph
from symcnn.graph.trace import with_trace

from .runtime import NativeLowered, NativeRunner


class DebugModeError(AssertionError):
    pass


def _extended(fgraph):
    """The graph with the outputs of every node (in toposort order) after its own outputs."""
    inner = [o for node in fgraph.toposort() for o in node.outputs]
    return FunctionGraph(fgraph.inputs, list(fgraph.outputs) + inner, clone=False)


class DebugRunner:
    @classmethod
    def lower(cls, fgraph, updates=(), lazy=False):
        """Lower the graph with every intermediate result as an output (see NativeRunner.lower)."""
        native = NativeRunner.lower(_extended(fgraph), [], lazy=lazy)
        return NativeLowered(native, lambda runner: cls(fgraph, updates, native=runner))

    def __init__(self, fgraph, updates=(), rtol=1e-4, atol=1e-5, native=None):
        """native: the NativeRunner of _extended(fgraph) (None: compile it now)."""
        self.fgraph = fgraph
        self.order = fgraph.toposort()
        # Updates are not committed natively here: the caller assigns the returned values.
        self.native = native if native is not None else NativeRunner(_extended(fgraph), [])
        self.rtol, self.atol = rtol, atol
        self.n_out = len(fgraph.outputs)
        self.inner = list(self.native.fgraph.outputs[self.n_out:])

    @property
    def ir(self):
        return self.native.ir

    def dump_llvm(self):
        return self.native.dump_llvm()

    def __call__(self, values):
        results = self.native(values)
        got = dict(zip(self.inner, results[self.n_out:]))
        got.update(zip(self.fgraph.inputs, values))
        for node in self.order:
            args = [got[v] if v in got else v.data for v in node.inputs]
            cells = [[None] for _ in node.outputs]
            node.op.perform(node, args, cells)
            # an op may know better what "equal" means for an output (e.g. a tie mask)
            custom = getattr(node.op, "debug_mismatch", None)
            for k, (out, cell) in enumerate(zip(node.outputs, cells)):
                problem = NotImplemented
                if custom is not None:
                    problem = custom(node, args, k, np.asarray(got[out]), np.asarray(cell[0]), self.rtol, self.atol)
                if problem is NotImplemented:
                    problem = mismatch(got[out], cell[0], self.rtol, self.atol * magnitude(cell[0]))
                if problem:
                    raise DebugModeError(with_trace(
                        f"native and reference results of {node.op} differ: {problem} "
                        f"(output {out.describe()})", node.trace))
        return results[:self.n_out]
