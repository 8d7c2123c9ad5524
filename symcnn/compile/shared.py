"""Shared variables: symbolic names for values that live between calls (parameters, datasets)."""
import numpy as np

from ..graph.basic import Variable
from ..tensor.type import TensorType
from ..tensor.var import TensorOps as _TensorOps


class SharedVariable(Variable):
    """A variable with a persistent value; compiled functions read it and updates write it."""

    is_shared = True

    def __init__(self, type, value, name=None, borrow=False):
        super().__init__(type, name=name)
        self.container = [self._filter(value, borrow)]

    def _filter(self, value, borrow):
        # As Theano's set_value (TensorType.filter with allow_downcast=None): a lossy cast of an
        # array is refused; the fix is on the caller's side, allow_input_downcast does not apply.
        name = self.name or "shared_variable"
        fix = (f"Cast the value yourself if the loss is acceptable: "
               f"{name}.set_value(numpy.asarray(value, dtype='{self.type.dtype}'))")
        arr = self.type.filter(value, name=self.name, fix=fix)
        return arr if (borrow or arr is not value) else arr.copy()

    def get_value(self, borrow=False, return_internal_type=False):
        v = self.container[0]
        return v if borrow else v.copy()

    def set_value(self, value, borrow=False):
        self.container[0] = self._filter(value, borrow)

    def __str__(self):
        return self.name if self.name is not None else f"<{self.type}>"

    def clone(self):
        return self

    @property
    def value(self):
        return self.container[0]


class TensorSharedVariable(_TensorOps, SharedVariable):
    pass


def shared(value, name=None, strict=False, allow_downcast=None, borrow=False, broadcastable=None, shape=None):
    """Theano's `shared`: value is copied unless borrow=True. Its type fixes dtype and
    ndim; the shape may change later through set_value (so it is not static)."""
    if isinstance(value, SharedVariable):
        raise TypeError("shared() was given a shared variable; pass its value (get_value())")
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"shared() needs numeric data, got {type(value).__name__}")
    if broadcastable is None and shape is None:
        broadcastable = (False,) * arr.ndim
    ttype = TensorType(str(arr.dtype), broadcastable=broadcastable, shape=shape)
    if not isinstance(value, np.ndarray):
        borrow = True  # a fresh array was already made
    return TensorSharedVariable(ttype, arr, name=name, borrow=borrow)
