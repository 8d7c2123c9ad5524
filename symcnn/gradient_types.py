"""Theano's gradient types: NullType (an undefined gradient) and DisconnectedType (no
gradient at all), the variables an op's grad returns to say so."""
from .graph.basic import Apply, Variable
from .graph.op import Op
from .graph.type import Type


class NullType(Type):
    """The type of an undefined gradient; `why_null` says why. Any graph using it is an error."""

    def __init__(self, why_null="(no explanation given)"):
        self.why_null = why_null

    def filter(self, data, strict=False, allow_downcast=None):
        raise ValueError("No values may be assigned to a NullType")

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))

    def __str__(self):
        return "NullType"

    def __call__(self, name=None):
        return Variable(self, name=name)


class DisconnectedType(Type):
    """The type of the gradient of a variable the cost does not depend on."""

    def filter(self, data, strict=False, allow_downcast=None):
        raise AssertionError("If you're assigning to a DisconnectedType you're doing something wrong. "
                             "It should only be used as a symbolic placeholder.")

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))

    def __str__(self):
        return "DisconnectedType"

    def __call__(self, name=None):
        return Variable(self, name=name)


disconnected_type = DisconnectedType()
