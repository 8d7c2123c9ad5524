"""The Op contract: one class per operation, with type inference, reference
implementation, symbolic gradient and shape inference side by side."""
from .trace import reraise_with_trace, user_trace


class Op:
    """Base class of all operations.

    Subclasses define
      make_node(*inputs) -> Apply          type and static-shape inference, with clear errors
      perform(node, inputs, out_storage)    numpy reference; writes out_storage[i][0]
      grad(inputs, output_grads) -> list   symbolic gradient (graphs); None = not differentiable
      infer_shape(node, input_shapes)       list of output shapes (tuples of ints / int64 scalars)
    may define
      flops(input_shapes, output_shapes)    floating-point operations of one call at these concrete
                                            shapes (tuples of ints), for mode='profile'
    and list in `__props__` the attributes that make two ops equal.
    """

    __props__ = ()

    def _props(self):
        return tuple(getattr(self, p) for p in self.__props__)

    def __eq__(self, other):
        return type(self) is type(other) and self._props() == other._props()

    def __hash__(self):
        return hash((type(self), self._props()))

    def __str__(self):
        if self.__props__:
            args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.__props__)
            return f"{type(self).__name__}{{{args}}}"
        return type(self).__name__

    __repr__ = __str__

    def make_node(self, *inputs):
        raise NotImplementedError

    def __call__(self, *inputs, **kwargs):
        try:
            node = self.make_node(*inputs, **kwargs)
        except (TypeError, ValueError, IndexError) as e:
            if getattr(e, "_symcnn_traced", False):
                raise
            try:
                reraise_with_trace(e, user_trace(), str(self))
            except (TypeError, ValueError, IndexError, RuntimeError) as new:
                new._symcnn_traced = True
                raise new from e
        from ..config import config
        if config.compute_test_value != "off":
            from .test_value import compute_test_value
            compute_test_value(node, config.compute_test_value)
        outs = node.outputs
        return outs[0] if len(outs) == 1 else outs

    def perform(self, node, inputs, output_storage):
        raise NotImplementedError(f"{self} has no reference implementation")

    def grad(self, inputs, output_grads):
        raise NotImplementedError(f"{self} has no gradient")

    def infer_shape(self, node, input_shapes):
        raise NotImplementedError(f"{self} has no shape inference")

    def connection_pattern(self, node):
        """[input][output] booleans: does output depend differentiably on input."""
        return [[True] * len(node.outputs) for _ in node.inputs]

    def flops(self, input_shapes, output_shapes=None):
        """Floating-point operations of one call with operands of these shapes (tuples of ints),
        as PyTensor's profiler asks its ops; None: not counted (the profiler reads it as 0). The
        profiler also passes the output shapes, which an op may use where its inputs' shapes do not
        determine them.
        Ops count the arithmetic of their main computation: a multiply-add is 2."""
        return None


def perform_nodes(nodes, storage, describe):
    """Run each node's numpy `perform` in order, reading its inputs from and writing its outputs
    to `storage` (variable -> value; constants must be in it). An error is raised again at the
    node's user trace, with describe(node, args) saying what was being computed."""
    for node in nodes:
        args = [storage[v] for v in node.inputs]
        cells = [[None] for _ in node.outputs]
        try:
            node.op.perform(node, args, cells)
        except Exception as e:
            reraise_with_trace(e, node.trace, describe(node, args))
        for var, cell in zip(node.outputs, cells):
            storage[var] = cell[0]
    return storage
