"""theano.In and theano.Out: per-input and per-output options of `function`."""
from ..graph.basic import Variable
from ..graph.trace import user_trace, with_trace


class In:
    """An input of `function` with options (Theano's `theano.In`).

    value: a default used when the call does not pass this input (SdA's
      `theano.In(corruption_level, value=0.2)`); `fn[name] = v` changes it later.
    name: the keyword the input is passed by (default: the variable's name).
    strict: the argument must have exactly the variable's dtype (no conversion at all).
    allow_downcast: this input may be converted with loss of precision (None: function's setting).
    borrow, mutable: accepted as in Theano; a call never keeps or modifies the caller's array
      (native code reads inputs, and results never alias them), so both only relax guarantees
      symcnn gives anyway.
    update, implicit: internal state updated by each call is not supported; use a shared
      variable with `updates=` instead.
    """

    def __init__(self, variable, name=None, value=None, update=None, mutable=None, strict=False,
                 allow_downcast=None, autoname=True, implicit=None, borrow=None, shared=False):
        trace = user_trace()
        if not isinstance(variable, Variable):
            raise TypeError(with_trace(f"In: variable must be a symbolic variable, got {variable!r}", trace))
        if update is not None or implicit or shared:
            raise NotImplementedError(with_trace(
                f"In({variable.describe()}): update=/implicit=/shared= (a value kept and updated between "
                f"calls) is not supported; use a shared variable and function(..., updates=...)", trace))
        if name is not None and not isinstance(name, str):
            raise TypeError(with_trace(f"In: name must be a string, got {name!r}", trace))
        self.variable = variable
        self.name = name if name is not None else (variable.name if autoname else None)
        self.value = value
        self.has_default = value is not None
        self.strict = bool(strict)
        self.allow_downcast = allow_downcast
        self.mutable = bool(mutable)
        self.borrow = bool(borrow)
        self.trace = trace
        if self.has_default:
            try:  # a bad default is the user's line, not the first call
                self.value = variable.type.filter(value, name=self.name or str(variable),
                                                  allow_downcast=bool(allow_downcast))
            except (TypeError, ValueError) as e:
                raise type(e)(with_trace(f"In: default value of {variable.describe()}: {e}", trace)) from None


class Out:
    """An output of `function` with options (Theano's `theano.Out`). borrow=True allows the
    result to alias internal storage; symcnn always returns a fresh array, which that allows."""

    def __init__(self, variable, borrow=False):
        if not isinstance(variable, Variable):
            raise TypeError(with_trace(f"Out: variable must be a symbolic variable, got {variable!r}",
                                       user_trace()))
        self.variable = variable
        self.borrow = bool(borrow)
