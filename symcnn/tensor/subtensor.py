"""Indexing: basic (ints and slices, bounds may be symbolic) returns views;
advanced (integer tensors) gathers, and its gradient scatter-adds."""
import numpy as np

from ..graph.basic import Apply, Constant, Variable
from ..graph.op import Op
from .type import TensorType, is_float, is_int
from .var import as_tensor_variable, constant


def _scalar_index(v, what):
    v = as_tensor_variable(v) if not isinstance(v, (int, np.integer)) else constant(np.asarray(v, dtype="int64"))
    if v.ndim != 0 or not is_int(v.dtype) or v.dtype == "bool":
        raise TypeError(f"{what} must be an integer scalar, got {v.describe()}")
    return v


def _const(v):
    return int(v.data) if isinstance(v, Constant) else None


class _IndexedOp(Op):
    """Shared by Subtensor and IncSubtensor: `idx_list` describes each index entry as
    "int" or ("slice", has_start, has_stop, has_step); the scalars are inputs."""

    def _index(self, scalars):
        return self._symbolic_index([int(np.asarray(s)) for s in scalars])

    def _symbolic_index(self, scalars):
        """The index tuple (ints or slices) built from the index scalars (values or variables)."""
        it = iter(scalars)
        out = []
        for e in self.idx_list:
            if e == "int":
                out.append(next(it))
            else:
                _, a, b, c = e
                out.append(slice(next(it) if a else None, next(it) if b else None, next(it) if c else None))
        return tuple(out)

    def _check(self, x, scalars):
        if len(self.idx_list) > x.ndim:
            raise IndexError(f"too many indices ({len(self.idx_list)}) for {x.describe()}")
        n = sum(1 if e == "int" else e[1] + e[2] + e[3] for e in self.idx_list)
        if n != len(scalars):
            raise TypeError(f"{self} expects {n} index scalars, got {len(scalars)}")

    def _out_shape(self, x, scalars):
        shape = []
        it = iter(scalars)
        for d, e in enumerate(self.idx_list):
            n = x.type.shape[d]
            if e == "int":
                i = _const(next(it))
                if i is not None and n is not None and not -n <= i < n:
                    raise IndexError(f"index {i} is out of bounds for dimension {d} of {x.describe()} "
                                     f"(length {n})")
                continue
            _, a, b, c = e
            bounds = [(_const(next(it)) if flag else None, flag) for flag in (a, b, c)]
            if n is not None and all(v is not None or not flag for v, flag in bounds):
                if bounds[2][0] == 0:
                    raise ValueError(f"slice step cannot be zero (indexing {x.describe()})")
                shape.append(len(range(*slice(*[v for v, _ in bounds]).indices(n))))
            else:
                shape.append(None)
        return tuple(shape) + x.type.shape[len(self.idx_list):]


class _Selection(Op):
    """Subtensor and AdvancedSubtensor: x[idx] with the index inputs after x. The gradient
    adds the output gradient into zeros at idx (`increment_op`, set below)."""

    __props__ = ("idx_list",)

    def __init__(self, idx_list):
        self.idx_list = tuple(idx_list)

    def grad(self, inputs, grads):
        x, index = inputs[0], inputs[1:]
        if not is_float(x.dtype):
            return [None] * len(inputs)
        from .basic import zeros_like
        gx = self.increment_op(self.idx_list)(zeros_like(x), grads[0], *index)
        return [gx] + [None] * len(index)

    def connection_pattern(self, node):
        return [[True]] + [[False]] * (len(node.inputs) - 1)


class _Increment(Op):
    """IncSubtensor and AdvancedIncSubtensor: a copy of x with y added to (or written into)
    x[idx], the index inputs after x and y. The gradient selects idx (`selection_op`, set below)."""

    __props__ = ("idx_list", "set_instead_of_inc")

    def __init__(self, idx_list, set_instead_of_inc=False):
        self.idx_list = tuple(idx_list)
        self.set_instead_of_inc = bool(set_instead_of_inc)

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def grad(self, inputs, grads):
        from .basic import second
        x, y, index = inputs[0], inputs[1], inputs[2:]
        g, = grads
        sub = self.selection_op(self.idx_list)(g, *index)
        if self.set_instead_of_inc:
            gx = type(self)(self.idx_list, True)(g, second(sub, np.zeros((), dtype=g.dtype)), *index)
        else:
            gx = g
        gy = sum_to(sub, y)
        return [gx if is_float(x.dtype) else None, gy if is_float(y.dtype) else None] + [None] * len(index)

    def connection_pattern(self, node):
        return [[True], [True]] + [[False]] * (len(node.inputs) - 2)


class Subtensor(_Selection, _IndexedOp):
    """x[ints and slices]; the result is a view of x (no copy)."""

    def make_node(self, x, *scalars):
        x = as_tensor_variable(x)
        scalars = [_scalar_index(s, "index") for s in scalars]
        self._check(x, scalars)
        return Apply(self, [x] + scalars, [TensorType(x.dtype, shape=self._out_shape(x, scalars))()])

    def perform(self, node, inputs, out):
        x = inputs[0]
        idx = self._index(inputs[1:])
        for d, i in enumerate(idx):
            if isinstance(i, int) and not -x.shape[d] <= i < x.shape[d]:
                raise IndexError(f"index {i} is out of bounds for dimension {d} of "
                                 f"{node.inputs[0].describe()} (length {x.shape[d]})")
            if isinstance(i, slice) and i.step == 0:
                raise ValueError("slice step cannot be zero")
        out[0][0] = np.asarray(x[idx])

    def infer_shape(self, node, shapes):
        from . import math as T
        idx = self._symbolic_index(node.inputs[1:])
        res = []
        for d, i in enumerate(idx):
            if isinstance(i, slice):
                n = shapes[0][d]
                res.append(_slice_length(i, n, T))
        return [tuple(res) + tuple(shapes[0][len(idx):])]


def _slice_length(s, n, T):
    """Symbolic len(range(*s.indices(n))) for step 1 or a positive constant step."""
    step = 1 if s.step is None else s.step
    if not (isinstance(step, int) or isinstance(step, Constant)):
        raise NotImplementedError("shape inference of a slice with a symbolic step")
    step = int(step.data) if isinstance(step, Constant) else step
    if step < 0:
        raise NotImplementedError("shape inference of a slice with a negative step")

    def clamp(v, default):
        if v is None:
            return default
        v = T.switch(T.lt(v, 0), v + n, v)
        return T.minimum(T.maximum(v, 0), n)

    start, stop = clamp(s.start, 0), clamp(s.stop, n)
    return T.maximum(T.int_div(stop - start + (step - 1), step), 0)


class IncSubtensor(_Increment, _IndexedOp):
    """A copy of x with y added to (or written into) x[idx]: the gradient of Subtensor."""

    def make_node(self, x, y, *scalars):
        x, y = as_tensor_variable(x), as_tensor_variable(y)
        scalars = [_scalar_index(s, "index") for s in scalars]
        self._check(x, scalars)
        sub_ndim = len(self._out_shape(x, scalars))
        if y.ndim > sub_ndim:
            raise ValueError(f"cannot write {y.describe()} into a {sub_ndim}-d part of {x.describe()}")
        return Apply(self, [x, y] + scalars, [x.type()])

    def perform(self, node, inputs, out):
        x, y = inputs[:2]
        res = x.copy()
        idx = self._index(inputs[2:])
        if self.set_instead_of_inc:
            res[idx] = y
        else:
            res[idx] += y
        out[0][0] = res


def sum_to(g, y):
    """Reduce g to y's ndim and broadcastable dimensions."""
    from . import math as T
    extra = g.ndim - y.ndim
    if extra:
        g = T.sum(g, axis=list(range(extra)))
    axes = [d for d in range(y.ndim) if y.type.shape[d] == 1 and g.type.shape[d] != 1]
    if axes:
        g = T.sum(g, axis=axes, keepdims=True)
    return T.cast(g, y.dtype)


def _adv_layout(idx_list, index_shapes):
    """(broadcast index shape, position it takes in the result) with numpy's rule."""
    arrays = [i for i, e in enumerate(idx_list) if e == "array"]
    bshape = _broadcast_static(index_shapes)
    consecutive = arrays == list(range(arrays[0], arrays[-1] + 1))
    return bshape, (arrays[0] if consecutive else 0)


def _broadcast_static(shapes):
    nd = max(len(s) for s in shapes)
    shapes = [(1,) * (nd - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise IndexError(f"index arrays do not broadcast together: shapes {shapes}")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


class AdvancedSubtensor(_Selection):
    """x[i, j, ...] with integer tensors (and full slices ':'), numpy semantics."""

    def make_node(self, x, *indices):
        x = as_tensor_variable(x)
        indices = [as_tensor_variable(i) for i in indices]
        if len(self.idx_list) > x.ndim:
            raise IndexError(f"too many indices ({len(self.idx_list)}) for {x.describe()}")
        for i in indices:
            if not is_int(i.dtype) or i.dtype == "bool":
                raise TypeError(f"advanced index must be an integer tensor, got {i.describe()}")
        bshape, pos = _adv_layout(self.idx_list, [i.type.shape for i in indices])
        rest = [x.type.shape[d] for d, e in enumerate(self.idx_list) if e == "slice"]
        rest += list(x.type.shape[len(self.idx_list):])
        shape = tuple(rest[:pos]) + bshape + tuple(rest[pos:])
        return Apply(self, [x] + indices, [TensorType(x.dtype, shape=shape)()])

    def _index(self, indices):
        it = iter(indices)
        return tuple(next(it) if e == "array" else slice(None) for e in self.idx_list)

    def perform(self, node, inputs, out):
        x = inputs[0]
        try:
            out[0][0] = np.asarray(x[self._index(inputs[1:])])
        except IndexError as e:
            raise IndexError(f"{e} (indexing {node.inputs[0].describe()} of shape {x.shape})") from None

    def infer_shape(self, node, shapes):
        raise NotImplementedError("AdvancedSubtensor shape inference")


class AdvancedIncSubtensor(_Increment):
    """A copy of x with y scatter-added (repeated indices accumulate) or written at x[idx]."""

    def make_node(self, x, y, *indices):
        x, y = as_tensor_variable(x), as_tensor_variable(y)
        indices = [as_tensor_variable(i) for i in indices]
        sub = AdvancedSubtensor(self.idx_list).make_node(x, *indices).outputs[0]
        if y.ndim > sub.ndim:
            raise ValueError(f"cannot write {y.describe()} into a {sub.ndim}-d selection of {x.describe()}")
        return Apply(self, [x, y] + indices, [x.type()])

    def perform(self, node, inputs, out):
        x, y, indices = inputs[0], inputs[1], inputs[2:]
        res = x.copy()
        it = iter(indices)
        idx = tuple(next(it) if e == "array" else slice(None) for e in self.idx_list)
        try:
            if self.set_instead_of_inc:
                res[idx] = y
            else:
                np.add.at(res, idx, y)
        except IndexError as e:
            raise IndexError(f"{e} (indexing {node.inputs[0].describe()} of shape {x.shape})") from None
        out[0][0] = res


# a selection's gradient increments, an increment's gradient selects
Subtensor.increment_op, AdvancedSubtensor.increment_op = IncSubtensor, AdvancedIncSubtensor
IncSubtensor.selection_op, AdvancedIncSubtensor.selection_op = Subtensor, AdvancedSubtensor


def _is_advanced(e):
    if isinstance(e, Variable):
        return e.ndim > 0
    return isinstance(e, (list, np.ndarray)) and np.ndim(e) > 0


def getitem(x, idx):
    from .basic import Shape, Shape_i, dimshuffle
    if not isinstance(idx, tuple):
        idx = (idx,)
    if any(e is Ellipsis for e in idx):
        k = idx.index(Ellipsis)
        fill = x.ndim - (len(idx) - 1 - sum(e is None for e in idx))
        idx = idx[:k] + (slice(None),) * fill + idx[k + 1:]
    if any(e is None for e in idx):
        # np.newaxis: index without them, then insert broadcastable dimensions.
        plain = tuple(e for e in idx if e is not None)
        res = getitem(x, plain) if plain else x
        order, k = [], 0
        for e in idx:
            if e is None:
                order.append("x")
            elif isinstance(e, slice):
                order.append(k)
                k += 1
        order += list(range(k, res.ndim))
        return dimshuffle(res, *order)
    if x.owner is not None and isinstance(x.owner.op, Shape) and len(idx) == 1 and \
            isinstance(idx[0], (int, np.integer)):
        return Shape_i(int(idx[0]))(x.owner.inputs[0])
    if any(_is_advanced(e) for e in idx):
        entries, indices = [], []
        for e in idx:
            if isinstance(e, slice):
                if (e.start, e.stop, e.step) != (None, None, None):
                    raise NotImplementedError("advanced indexing mixed with bounded slices; slice first, then index")
                entries.append("slice")
            else:
                v = as_tensor_variable(e)
                if v.dtype == "bool":
                    raise TypeError("boolean mask indexing is not supported; use T.nonzero-free arithmetic instead")
                entries.append("array")
                indices.append(v)
        return AdvancedSubtensor(entries)(x, *indices)
    entries, scalars = [], []
    for e in idx:
        if isinstance(e, slice):
            parts = (e.start, e.stop, e.step)
            entries.append(("slice",) + tuple(p is not None for p in parts))
            scalars += [p for p in parts if p is not None]
        else:
            entries.append("int")
            scalars.append(e)
    return Subtensor(entries)(x, *scalars)


def inc_subtensor(x_sub, y, set_instead_of_inc=False):
    """T.inc_subtensor(x[idx], y): x with y added at idx (set_subtensor writes instead)."""
    node = x_sub.owner
    if node is None or not isinstance(node.op, (Subtensor, AdvancedSubtensor)):
        raise TypeError("inc_subtensor expects an indexed variable such as x[2:5]")
    cls = IncSubtensor if isinstance(node.op, Subtensor) else AdvancedIncSubtensor
    return cls(node.op.idx_list, set_instead_of_inc)(node.inputs[0], y, *node.inputs[1:])


def set_subtensor(x_sub, y):
    return inc_subtensor(x_sub, y, set_instead_of_inc=True)
