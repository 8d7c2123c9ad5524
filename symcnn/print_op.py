"""theano.printing.Print: an identity op that prints its input's value each time it runs."""
import numpy as np

from .graph.basic import Apply
from .graph.op import Op
from .tensor.var import as_tensor_variable


def _print_fn(op, xin):
    for attr in op.attrs:
        temp = getattr(xin, attr)
        pmsg = temp() if callable(temp) else temp
        print(op.message, attr, "=", pmsg)


class Print(Op):
    """Print(message="", attrs=("__str__",), global_fn=_print_fn)(x) returns x and, whenever it
    is computed, calls global_fn(op, value): by default it prints `message attr = value.attr`
    for each attribute (Theano's output, e.g. `x __str__ = [1. 2.]`). The native code calls
    back into Python with the value (the native backend's Print lowering)."""

    __props__ = ("message", "attrs", "global_fn")

    def __init__(self, message="", attrs=("__str__",), global_fn=_print_fn):
        from .graph.trace import user_trace, with_trace
        bad = None
        if not isinstance(message, str):
            bad = f"Print: message must be a string, got {message!r}"
        elif isinstance(attrs, str) or not all(isinstance(a, str) for a in attrs):
            bad = f"Print: attrs must be a tuple of attribute names, got {attrs!r}"
        elif not callable(global_fn):
            bad = f"Print: global_fn must be callable, got {global_fn!r}"
        if bad:
            raise TypeError(with_trace(bad, user_trace()))
        self.message = message
        self.attrs = tuple(attrs)
        self.global_fn = global_fn

    def __str__(self):
        return f"Print{{{self.message}}}"

    def make_node(self, xin):
        xin = as_tensor_variable(xin)
        return Apply(self, [xin], [xin.type()])

    def perform(self, node, inputs, out):
        xin, = inputs
        self.global_fn(self, xin)
        out[0][0] = xin

    def infer_shape(self, node, shapes):
        return shapes

    def grad(self, inputs, grads):
        return list(grads)

    def connection_pattern(self, node):
        return [[True]]

    def __reduce__(self):
        return (Print, (self.message, self.attrs, self.global_fn))


def run_print(message, attrs, value):
    """What the native code calls: print `value` as Print(message, attrs) with the default
    global_fn (np arrays made from the native buffer)."""
    _print_fn(Print(message, attrs), np.asarray(value))
