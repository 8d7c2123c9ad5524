"""Theano's get_scalar_constant_value (and NotScalarConstantError) and NoneConst."""
import numpy as np

from ..graph.basic import Constant
from ..graph.type import Type
from .basic import Shape_i
from .elemwise import DimShuffle, Elemwise


class NotScalarConstantError(Exception):
    """The variable is not known to be a scalar constant when the graph is built."""


class EmptyConstantError(NotScalarConstantError):
    """The constant has no element."""


def get_scalar_constant_value(orig_v, elemwise=True, only_process_constants=False, max_recur=10):
    """The numpy scalar `orig_v` always equals, found without running the graph: a one-element
    constant, a static dimension (x.shape[i]), and (if elemwise) elementwise ops, casts and
    dimshuffles of those. Raises NotScalarConstantError otherwise."""
    v = orig_v
    while True:
        if v is None:
            raise NotScalarConstantError("None is not a scalar constant")
        if isinstance(v, (np.integer, int, float, np.floating, bool, np.bool_)):
            return np.asarray(v)
        if isinstance(v, np.ndarray):
            return _single(v, orig_v)
        if isinstance(v, Constant):
            return _single(np.asarray(v.data), orig_v)
        if only_process_constants or v.owner is None or max_recur <= 0:
            raise NotScalarConstantError(f"{v} is not a constant")
        max_recur -= 1
        op = v.owner.op
        if isinstance(op, Shape_i):
            dim = v.owner.inputs[0].type.shape[op.i]
            if dim is None:
                raise NotScalarConstantError(f"dimension {op.i} of {v.owner.inputs[0]} is not known when building")
            return np.asarray(dim, dtype="int64")
        if isinstance(op, DimShuffle):
            v = v.owner.inputs[0]
            continue
        if elemwise and isinstance(op, Elemwise):
            if op.scalar_op.name == "second":
                v = v.owner.inputs[1]
                continue
            values = [get_scalar_constant_value(i, elemwise, only_process_constants, max_recur)
                      for i in v.owner.inputs]
            cdt = op.scalar_op.compute_dtype(*[i.dtype for i in v.owner.inputs])
            if cdt is not None:
                values = [np.asarray(x, dtype=cdt) for x in values]
            with np.errstate(all="ignore"):
                return np.asarray(op.scalar_op.impl(*values), dtype=v.dtype)
        if not isinstance(op, Elemwise) and all(isinstance(i, Constant) for i in v.owner.inputs):
            # e.g. an element of a constant vector: run the op on its constant inputs
            cells = [[None] for _ in v.owner.outputs]
            op.perform(v.owner, [i.data for i in v.owner.inputs], cells)
            return _single(np.asarray(cells[v.index][0], dtype=v.dtype), orig_v)
        raise NotScalarConstantError(f"{v} is computed by {op}, not known to be constant")


def _single(data, orig_v):
    if data.size == 0:
        raise EmptyConstantError(f"{orig_v} is an empty constant")
    flat = data.reshape(-1)
    if data.ndim > 0 and not (flat == flat[0]).all() and not np.isnan(flat).all():
        raise NotScalarConstantError(f"{orig_v} holds several different values")
    return np.asarray(flat[0]).copy()


class NoneTypeT(Type):
    """The type of NoneConst: its only value is None."""

    def filter(self, value, name=None, allow_downcast=False):
        if value is None:
            return value
        raise TypeError(f"expected None, got {value!r}")

    def make_variable(self, name=None):
        from ..graph.basic import Variable
        return Variable(self, name=name)

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))

    def __str__(self):
        return "none_type_t"


none_type_t = NoneTypeT()
NoneConst = Constant(none_type_t, None, name="NoneConst")
