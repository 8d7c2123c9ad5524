"""Composite: several ScalarOps fused into one, so a chain of elementwise ops is one loop."""
import numpy as np

from ..scalar import ScalarOp


class Composite(ScalarOp):
    """A little program over scalars. `steps` is a tuple of
    (scalar_op, argument indices, argument dtypes, output dtype); argument index k
    names input k when k < nin, else the result of step k - nin. The last step is
    the output."""

    def __init__(self, nin, steps):
        self.nin = nin
        self.steps = tuple(steps)
        self.name = "composite{" + ",".join(str(s[0]) for s in self.steps) + "}"

    @classmethod
    def of(cls, sop, in_dtypes, out_dtype):
        if isinstance(sop, Composite):
            return sop
        n = len(in_dtypes)
        return cls(n, [(sop, tuple(range(n)), tuple(in_dtypes), out_dtype)])

    def inline(self, position, inner):
        """This program with input `position` replaced by `inner`'s output. The new
        inputs are: ours before `position`, inner's inputs, ours after `position`."""
        k = inner.nin
        nin = self.nin - 1 + k
        inner_out = nin + len(inner.steps) - 1

        def outer_ref(a):
            if a < position:
                return a
            if a == position:
                return inner_out
            if a < self.nin:
                return a + k - 1
            return nin + len(inner.steps) + (a - self.nin)

        def inner_ref(a):
            return position + a if a < k else nin + (a - k)

        steps = [(s, tuple(inner_ref(a) for a in args), d, o) for s, args, d, o in inner.steps]
        steps += [(s, tuple(outer_ref(a) for a in args), d, o) for s, args, d, o in self.steps]
        return Composite(nin, steps)

    def dedupe(self, inputs):
        """Merge repeated inputs: returns (new composite, unique inputs)."""
        unique, where = [], {}
        remap = []
        for v in inputs:
            if id(v) not in where:
                where[id(v)] = len(unique)
                unique.append(v)
            remap.append(where[id(v)])
        if len(unique) == len(inputs):
            return self, list(inputs)
        n = len(unique)

        def ref(a):
            return remap[a] if a < self.nin else a - self.nin + n
        steps = [(s, tuple(ref(a) for a in args), d, o) for s, args, d, o in self.steps]
        return Composite(n, steps), unique

    def out_dtype(self, *dtypes):
        return self.steps[-1][3]

    def compute_dtype(self, *dtypes):
        return None  # each step converts its own arguments

    def impl(self, *inputs):
        values = list(inputs)
        for sop, args, dts, out in self.steps:
            xs = [values[a] for a in args]
            cdt = sop.compute_dtype(*dts)
            if cdt is not None:
                xs = [np.asarray(x, dtype=cdt) for x in xs]
            with np.errstate(all="ignore"):
                values.append(np.asarray(sop.impl(*xs), dtype=out))
        return values[-1]

    def expand(self, inputs):
        """The same computation as a graph of ordinary Elemwise ops on `inputs`."""
        from .basic import cast
        from .elemwise import Elemwise
        values = list(inputs)
        for sop, args, dts, out in self.steps:
            res = Elemwise(sop)(*[values[a] for a in args])
            values.append(cast(res, out))
        return values[-1]

    def grad(self, inputs, output, g):
        from ..gradient import grad_of_expansion
        return grad_of_expansion(self.expand, inputs, [g])
