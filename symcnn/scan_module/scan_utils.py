"""`until`: the condition that ends a while loop written with scan."""
from ..tensor.var import as_tensor_variable


class until:
    """Return `until(cond)` from a scan step (beside its outputs and updates) to stop the loop
    after the first step whose `cond` is true (Theano's theano.scan_module.until)."""

    def __init__(self, condition):
        c = as_tensor_variable(condition)
        if c.ndim != 0:
            raise TypeError(f"until: the condition must be a scalar, got {c.describe()}")
        self.condition = c
