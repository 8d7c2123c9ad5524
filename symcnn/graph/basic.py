"""The graph: variables, constants and the Apply nodes that connect them."""
import itertools

from .trace import user_trace

_ids = itertools.count()


class Variable:
    """A symbolic value: the output `index` of `owner` (an Apply), or a graph input."""

    def __init__(self, type, owner=None, index=None, name=None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name
        self.trace = user_trace()
        self.auto_name = f"_{next(_ids)}"
        self.tag = Tag(type)

    def __str__(self):
        if self.name is not None:
            return self.name
        if self.owner is not None:
            op = self.owner.op
            if len(self.owner.outputs) == 1:
                return f"{op}.0"
            return f"{op}.{self.index}"
        return f"<{self.type}>"

    def __repr__(self):
        return str(self)

    def clone(self):
        cp = self.__class__.__new__(self.__class__)
        cp.__dict__.update(self.__dict__)
        cp.owner = None
        cp.index = None
        cp.auto_name = f"_{next(_ids)}"
        return cp

    def describe(self):
        """'x (float32 matrix, created at file.py:12)' for error messages."""
        loc = f", created at {self.trace.location()}" if self.trace else ""
        return f"'{self}' ({self.type}{loc})"

    # Variables are compared by identity; operators like == build graphs in subclasses.
    __hash__ = object.__hash__


class Tag:
    """Theano's `variable.tag`: free annotations. `tag.test_value` (see
    config.compute_test_value) is checked against the variable's type when assigned."""

    def __init__(self, type=None):
        object.__setattr__(self, "_type", type)

    def __setattr__(self, key, value):
        if key == "test_value" and self._type is not None and hasattr(self._type, "filter"):
            value = self._type.filter(value, name="test_value", allow_downcast=True)
        object.__setattr__(self, key, value)

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)


class Constant(Variable):
    """A variable whose value is fixed when the graph is built."""

    def __init__(self, type, data, name=None):
        super().__init__(type, None, None, name)
        self.data = type.filter(data)

    def __str__(self):
        if self.name is not None:
            return self.name
        d = self.data
        if getattr(d, "size", 2) == 1:
            return repr(d.item()) if hasattr(d, "item") else repr(d)
        return f"Constant{{{getattr(d, 'shape', '')}}}"

    def signature(self):
        return (self.type, _data_key(self.data))

    def clone(self):
        return self


def _data_key(data):
    tobytes = getattr(data, "tobytes", None)
    return (getattr(data, "shape", None), str(getattr(data, "dtype", "")), tobytes() if tobytes else data)


class Apply:
    """One application of an op to input variables, producing output variables."""

    def __init__(self, op, inputs, outputs):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.trace = user_trace()
        for i, out in enumerate(self.outputs):
            out.owner = self
            out.index = i
            if out.trace is None:
                out.trace = self.trace

    @property
    def out(self):
        return self.outputs[0]

    @property
    def nin(self):
        return len(self.inputs)

    def __str__(self):
        return f"{self.op}({', '.join(map(str, self.inputs))})"

    __repr__ = __str__

    def clone_with_new_inputs(self, inputs):
        """Rebuild this node on new inputs (type inference runs again)."""
        node = self.op.make_node(*inputs)
        node.trace = self.trace
        for new, old in zip(node.outputs, self.outputs):
            new.name = old.name
            new.trace = old.trace
        return node


def ancestors(outputs, blockers=()):
    """Every variable the outputs depend on (including themselves)."""
    seen, stack, blockers = set(), list(outputs), set(blockers)
    order = []
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        order.append(v)
        if v.owner is not None and v not in blockers:
            stack.extend(v.owner.inputs)
    return order


def graph_inputs(outputs, blockers=()):
    """The owner-less variables (inputs, shared variables, constants) the outputs need."""
    return [v for v in ancestors(outputs, blockers) if v.owner is None or v in blockers]


def io_toposort(outputs, blockers=()):
    """Apply nodes needed for `outputs`, each after the nodes that produce its inputs."""
    order, done = [], set()
    blockers = set(blockers)
    for root in outputs:
        stack = [(root, False)]
        while stack:
            v, expanded = stack.pop()
            node = v.owner
            if node is None or v in blockers or node in done:
                continue
            if expanded:
                done.add(node)
                order.append(node)
                continue
            stack.append((v, True))
            for inp in reversed(node.inputs):
                if inp.owner is not None and inp.owner not in done:
                    stack.append((inp, False))
    return order


def clone_graph(outputs, keep=()):
    """A structural copy of every Apply node between the roots and `outputs`.

    Root variables (inputs, constants, shared variables) are kept, so the copy
    can be edited without touching the user's graph. Returns (new outputs, memo).
    """
    memo = {}
    for node in io_toposort(outputs):
        new = Apply.__new__(Apply)
        new.op = node.op
        new.trace = node.trace
        new.inputs = [memo.get(i, i) for i in node.inputs]
        new.outputs = []
        for o in node.outputs:
            c = o.__class__.__new__(o.__class__)
            c.__dict__.update(o.__dict__)
            c.owner = new
            c.auto_name = f"_{next(_ids)}"
            new.outputs.append(c)
            memo[o] = c
    return [memo.get(o, o) for o in outputs], memo


def clone_replace(outputs, replace=None):
    """Copies of `outputs` where each key of `replace` is replaced by its value.

    Nodes not depending on a replaced variable are kept as they are (shared).
    """
    replace = dict(replace or {})
    memo = dict(replace)

    for node in io_toposort(outputs, blockers=replace.keys()):
        new_inputs = [memo.get(i, i) for i in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            for o in node.outputs:
                memo.setdefault(o, o)
            continue
        new_node = node.clone_with_new_inputs(new_inputs)
        for o, n in zip(node.outputs, new_node.outputs):
            memo[o] = n
    return [memo.get(o, o) for o in outputs]
