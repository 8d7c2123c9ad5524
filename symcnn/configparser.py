"""Theano's theano.configparser.change_flags: set config flags for a block or a function."""
import functools

from .config import config


class change_flags:
    """`with change_flags(floatX='float64'):` or `@change_flags(floatX='float64')`: the flags take
    the given values inside and get their previous values back afterwards (also on error)."""

    def __init__(self, args=(), **kwargs):
        values = dict(args)
        values.update(kwargs)
        for name in values:
            if not hasattr(config, name):
                raise AssertionError(f"change_flags: unknown config flag {name!r}")
        self.new_vals = values

    def __call__(self, f):
        @functools.wraps(f)
        def wrapped(*args, **kwargs):
            with self:
                return f(*args, **kwargs)
        return wrapped

    def __enter__(self):
        self.old_vals = {name: getattr(config, name) for name in self.new_vals}
        try:
            for name, value in self.new_vals.items():
                setattr(config, name, value)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for name, value in self.old_vals.items():
            object.__setattr__(config, name, value)
