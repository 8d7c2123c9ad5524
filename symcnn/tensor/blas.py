"""FusedDot: a matrix/vector product with elementwise work fused into its loads and stores.

    FusedDot(prologue_a, na, prologue_b, nb, epilogue)(A_1..A_na, B_1..B_nb, E_1..E_ne)
      = epilogue(dot(prologue_a(A_1..A_na), prologue_b(B_1..B_nb)), E_1, .., E_ne)

Each prologue is an elementwise Composite evaluated on an operand's elements as they are
loaded (its inputs broadcast to the operand's shape, as Elemwise broadcasts), or None: the
operand is then the single input A_1 (B_1). The epilogue is an elementwise Composite of the
product (its input 0) and the extra operands E_k (its inputs 1..ne), each broadcast to the
product's shape and never beyond it, applied to each output element once its whole k-sum is
accumulated; or None (ne == 0). So `tanh(dot(x, W) + b)` is FusedDot(epilogue=add,tanh)(x, W,
b_row) and the backward's `dot(g * (1 - h*h), W.T)` can take the tanh derivative as a
prologue of its first operand. The fuse-phase rewrites in symcnn/rewrite/fusion.py build these
nodes; `expand()` rebuilds the plain Dot + Elemwise graph, which is what `grad` differentiates.
"""
import math

import numpy as np

from ..graph.basic import Apply
from ..graph.op import Op
from .composite import Composite
from .elemwise import DimShuffle, Elemwise, broadcast_shape
from .math import Dot, dot
from .type import TensorType, upcast
from .var import as_tensor_variable


def move_input_first(comp, pos):
    """`comp` with its input `pos` moved to position 0 (the others keep their order)."""
    if pos == 0:
        return comp

    def ref(a):
        if a == pos:
            return 0
        if a < pos:
            return a + 1
        return a
    return Composite(comp.nin, [(s, tuple(ref(a) for a in args), d, o) for s, args, d, o in comp.steps])


def _pad(v, ndim):
    """v with leading broadcastable dimensions up to ndim (as Elemwise does)."""
    if v.ndim == ndim:
        return v
    return DimShuffle(v.ndim, ["x"] * (ndim - v.ndim) + list(range(v.ndim)))(v)


def eval_elementwise(comp, variables, values, out_dtype, who):
    """Composite.impl on broadcast values, with Elemwise's declared-broadcast check."""
    out_shape = np.broadcast_shapes(*[np.shape(x) for x in values])
    for var, x in zip(variables, values):
        for d, (s, want) in enumerate(zip(np.shape(x), out_shape)):
            if s != want and var.type.shape[d] != 1:
                raise ValueError(f"{who}: input {var.describe()} has length {s} in dimension {d} where the "
                                 f"result has {want}; only dimensions declared broadcastable "
                                 f"(static length 1) broadcast")
    with np.errstate(all="ignore"):
        res = comp.impl(*values)
    return np.asarray(res, dtype=out_dtype).reshape(out_shape)


class FusedDot(Op):
    """epilogue(dot(prologue_a(A...), prologue_b(B...)), E...): see the module docstring."""

    __props__ = ("prologue_a", "na", "prologue_b", "nb", "epilogue")

    def __init__(self, prologue_a=None, na=1, prologue_b=None, nb=1, epilogue=None):
        for what, comp, n in (("prologue_a", prologue_a, na), ("prologue_b", prologue_b, nb)):
            if comp is None and n != 1:
                raise ValueError(f"FusedDot: without {what} its operand is one input, got n={n}")
            if comp is not None and (not isinstance(comp, Composite) or comp.nin != n):
                raise ValueError(f"FusedDot: {what} must be a Composite of {n} inputs, got {comp!r}")
        if epilogue is not None and (not isinstance(epilogue, Composite) or epilogue.nin < 1):
            raise ValueError(f"FusedDot: epilogue must be a Composite whose input 0 is the product, "
                             f"got {epilogue!r}")
        self.prologue_a, self.na = prologue_a, int(na)
        self.prologue_b, self.nb = prologue_b, int(nb)
        self.epilogue = epilogue

    @property
    def ne(self):
        return 0 if self.epilogue is None else self.epilogue.nin - 1

    def __str__(self):
        parts = [f"{k}={getattr(self, k).name}" for k in ("prologue_a", "prologue_b", "epilogue")
                 if getattr(self, k) is not None]
        return "FusedDot{" + ", ".join(parts) + "}"

    __repr__ = __str__

    # -- structure ------------------------------------------------------------------
    def split(self, inputs):
        """(A inputs, B inputs, extra inputs) of a node's input list."""
        na, nb = self.na, self.nb
        return list(inputs[:na]), list(inputs[na:na + nb]), list(inputs[na + nb:])

    def _operand_type(self, comp, ins, which):
        if comp is None:
            return ins[0].type
        ndim = max(i.ndim for i in ins)
        if ndim not in (1, 2):
            raise TypeError(f"{self}: operand {which} must be 1-d or 2-d, its prologue inputs are "
                            + ", ".join(i.describe() for i in ins))
        padded = [_pad(i, ndim) for i in ins]
        return TensorType(comp.out_dtype(*[i.dtype for i in padded]),
                          shape=broadcast_shape(padded, f"{self} (operand {which})"))

    def make_node(self, *inputs):
        n_expected = self.na + self.nb + self.ne
        if len(inputs) != n_expected:
            raise TypeError(f"{self} takes {n_expected} inputs ({self.na} for A, {self.nb} for B, "
                            f"{self.ne} extra), got {len(inputs)}")
        inputs = [as_tensor_variable(i) for i in inputs]
        a_ins, b_ins, extras = self.split(inputs)
        ta = self._operand_type(self.prologue_a, a_ins, "A")
        tb = self._operand_type(self.prologue_b, b_ins, "B")
        if self.prologue_a is not None:
            a_ins = [_pad(i, ta.ndim) for i in a_ins]
        if self.prologue_b is not None:
            b_ins = [_pad(i, tb.ndim) for i in b_ins]
        # The product's type, by Dot's own rules (and its errors).
        prod = Dot().make_node(ta(), tb()).outputs[0]
        if self.epilogue is None:
            return Apply(self, a_ins + b_ins, [prod.type()])
        ndim = prod.ndim
        if any(e.ndim > ndim for e in extras):
            raise TypeError(f"{self}: extra operands must have at most the product's {ndim} dimensions, got "
                            + ", ".join(e.describe() for e in extras))
        extras = [_pad(e, ndim) for e in extras]
        shape = list(prod.type.shape)
        for e in extras:
            for d, (pe, ee) in enumerate(zip(prod.type.shape, e.type.shape)):
                if ee == 1:
                    continue
                if pe == 1 or (pe is not None and ee is not None and pe != ee):
                    raise ValueError(f"{self}: extra operand {e.describe()} does not broadcast to the product "
                                     f"(static shape {prod.type.shape}) in dimension {d}")
                if shape[d] is None:
                    shape[d] = ee
        dtype = self.epilogue.out_dtype(prod.dtype, *[e.dtype for e in extras])
        return Apply(self, a_ins + b_ins + extras, [TensorType(dtype, shape=tuple(shape))()])

    def product_dtype(self, node):
        """The dtype the product is accumulated in (Dot's rule on the operand dtypes)."""
        a_ins, b_ins, _ = self.split(node.inputs)
        da = a_ins[0].dtype if self.prologue_a is None else self.prologue_a.out_dtype()
        db = b_ins[0].dtype if self.prologue_b is None else self.prologue_b.out_dtype()
        return upcast(da, db)

    # -- the plain graph -------------------------------------------------------------
    def expand(self, inputs):
        """The same computation as Elemwise + Dot + Elemwise nodes (what the rewrites fused)."""
        a_ins, b_ins, extras = self.split(inputs)
        a = a_ins[0] if self.prologue_a is None else Elemwise(self.prologue_a)(*a_ins)
        b = b_ins[0] if self.prologue_b is None else Elemwise(self.prologue_b)(*b_ins)
        out = dot(a, b)
        if self.epilogue is not None:
            out = Elemwise(self.epilogue)(out, *extras)
        return out

    # -- reference ----------------------------------------------------------------------
    def perform(self, node, inputs, out):
        a_vars, b_vars, e_vars = self.split(node.inputs)
        a_vals, b_vals, e_vals = self.split(inputs)
        a = a_vals[0] if self.prologue_a is None else eval_elementwise(
            self.prologue_a, a_vars, a_vals, self.prologue_a.out_dtype(), f"{self} (operand A)")
        b = b_vals[0] if self.prologue_b is None else eval_elementwise(
            self.prologue_b, b_vars, b_vals, self.prologue_b.out_dtype(), f"{self} (operand B)")
        if np.ndim(a) < 1 or np.ndim(b) < 1 or a.shape[-1] != b.shape[0]:
            raise ValueError(f"dot: shapes {np.shape(a)} (operand A) and {np.shape(b)} (operand B) "
                             f"of {self} are not aligned")
        prod = np.asarray(np.dot(a, b), dtype=self.product_dtype(node))
        if self.epilogue is None:
            out[0][0] = prod
            return
        res = eval_elementwise(self.epilogue, [_ProductVar(prod.ndim)] + e_vars, [prod] + e_vals,
                                node.outputs[0].dtype, f"{self} (epilogue)")
        if res.shape != prod.shape:
            raise ValueError(f"{self}: the extra operands broadcast the product of shape {prod.shape} "
                             f"to {res.shape}")
        out[0][0] = res

    def infer_shape(self, node, shapes):
        from .basic import broadcast_dim
        a_vars, b_vars, _ = self.split(node.inputs)
        a_sh, b_sh, _ = self.split(shapes)

        def operand(vars_, shs):
            if len(vars_) == 1:
                return tuple(shs[0])
            return tuple(broadcast_dim([s[d] for s in shs], [v.type.shape[d] for v in vars_])
                         for d in range(vars_[0].ndim))
        sa, sb = operand(a_vars, a_sh), operand(b_vars, b_sh)
        return [tuple(sa[:-1]) + tuple(sb[1:])]

    def flops(self, input_shapes, output_shapes=None):
        """The product's 2*m*n*k (prologues and epilogue not counted). The output shape is needed
        (the prologues' operands do not give it)."""
        if not output_shapes:
            raise ValueError("FusedDot.flops needs output_shapes (the product's shape)")
        k = max(int(s[-1]) for s in input_shapes[:self.na])
        return 2 * math.prod(int(d) for d in output_shapes[0]) * k

    def grad(self, inputs, grads):
        from ..gradient import grad_of_expansion
        return grad_of_expansion(self.expand, inputs, grads)


class _ProductVar:
    """Stands for the (never broadcast) product in the epilogue's broadcast check."""

    def __init__(self, ndim):
        self.type = TensorType("float64", shape=(None,) * ndim)

    def describe(self):
        return "the product"
