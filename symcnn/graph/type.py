"""The base of all types: what values a variable may hold."""


class Type:
    """A type knows how to check and convert a runtime value (`filter`)."""

    def filter(self, value, name=None, allow_downcast=False):
        raise NotImplementedError

    def is_valid_value(self, value):
        try:
            self.filter(value)
            return True
        except (TypeError, ValueError):
            return False

    def make_variable(self, name=None):
        raise NotImplementedError

    def __call__(self, name=None):
        """`T.TensorType('float32', (False,))('x')` makes a variable, as in Theano."""
        return self.make_variable(name)
