"""Theano's plural variable constructors (T.iscalars, T.fvectors, T.matrices, ...)."""

_PLURAL = {"scalar": "scalars", "vector": "vectors", "matrix": "matrices", "row": "rows", "col": "cols",
           "tensor3": "tensor3s", "tensor4": "tensor4s", "tensor5": "tensor5s"}
PREFIXES = ("", "f", "d", "i", "l")  # the ones Theano defines plurals for


def plural(make):
    """Theano's _multi: f(3) makes three unnamed variables; f('a', 'b') a list of named ones;
    f('x') one variable; a single longer string is split into one-letter names ('xy' -> x, y)."""
    def many(*names):
        if names and isinstance(names[0], int):
            return [make() for _ in range(names[0])]  # a list even for 1, as Theano
        if len(names) == 1:
            names = names[0]
        if len(names) == 1:
            return make(names)
        return [make(n) for n in names]

    many.__name__ = _PLURAL.get(make.__name__.lstrip("fdil"), make.__name__ + "s")
    many.__doc__ = f"Several {make.__name__} variables at once (Theano's T.{make.__name__}s)."
    return many


def plural_names():
    """(plural name, singular name) for every plural constructor."""
    return [(p + plural_kind, p + kind) for kind, plural_kind in _PLURAL.items() for p in PREFIXES]
