"""Hypothesis strategies for the fuzz tests: random well-typed symcnn graphs.

A drawn `GraphCase` is a small program: some inputs (dtype, static shape, concrete shape,
value kind) and a list of steps, each applying one op to earlier entries. Every step is
kept as a closure so the program can be replayed on other input variables (verify_grad
makes its own); `repr(case)` prints the program, so a failing example reads as code.

While drawing, every step is also applied to a "shadow" graph whose inputs have fully
static shapes: its static types give the concrete shape of every entry, which the
generator uses to pick only valid follow-up ops (in-range indices, matching dot sizes,
kernels that fit, ...).

Budget: `examples(n)` is the number of examples of a test in CI (the 'ci' profile,
derandomized); SYMCNN_FUZZ_EXAMPLES=N runs N per test instead, with random seeds
(SYMCNN_FUZZ_DERANDOMIZE=1 keeps them fixed).
"""
import os

import numpy as np
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st

import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.signal import pool
from symcnn.tensor.type import TensorType

# -- budget ---------------------------------------------------------------------------------------
_COMMON = dict(deadline=None, print_blob=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("ci", derandomize=True, **_COMMON)
_ENV_N = os.environ.get("SYMCNN_FUZZ_EXAMPLES")
settings.register_profile("long", derandomize=os.environ.get("SYMCNN_FUZZ_DERANDOMIZE", "0") == "1", **_COMMON)
settings.load_profile("long" if _ENV_N else "ci")


def examples(n):
    """max_examples for a test whose CI budget is n (SYMCNN_FUZZ_EXAMPLES overrides it)."""
    return int(_ENV_N) if _ENV_N else n


FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
NUMERIC = FLOATS + INTS
ALL = NUMERIC + ("bool",)

# -- values ---------------------------------------------------------------------------------------
SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0)


def make_value(rng, dtype, shape, kind="any", special=False, float_range=(-3, 3)):
    """A random array. kind: 'any', 'positive' (floats in [0.5, 2)), 'nonneg' (ints 0..3),
    ('index', n) (ints in [-n, n)), ('fixed', value)."""
    shape = tuple(shape)
    if isinstance(kind, tuple) and kind[0] == "fixed":
        return np.asarray(kind[1], dtype=dtype)
    if isinstance(kind, tuple) and kind[0] == "index":
        n = kind[1]
        return rng.integers(-n, n, size=shape).astype(dtype) if n > 0 else np.zeros(shape, dtype)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt.kind in "iu":
        lo, hi = (0, 4) if kind == "nonneg" else (-4, 6)
        return rng.integers(lo, hi, size=shape).astype(dt)
    if kind == "positive":
        return rng.uniform(0.5, 2.0, size=shape).astype(dt)
    v = rng.uniform(*float_range, size=shape).astype(dt)
    if special and v.size:
        mask = rng.random(shape) < 0.25
        v[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    return v


class InputSpec:
    def __init__(self, name, dtype, static, shape, kind="any"):
        self.name, self.dtype, self.static, self.shape, self.kind = name, dtype, tuple(static), tuple(shape), kind

    def variable(self, static=None):
        return TensorType(self.dtype, shape=self.static if static is None else static)(self.name)

    def __repr__(self):
        st_ = "(" + ", ".join("?" if s is None else str(s) for s in self.static) + (",)" if len(self.static) == 1 else ")")
        k = "" if self.kind == "any" else f", kind={self.kind!r}"
        return f"{self.name} = TensorType({self.dtype!r}, shape={st_})  # value shape {self.shape}{k}"


class GraphCase:
    """inputs (InputSpec), steps (key, description, fn(env) -> variable), outputs (keys)."""

    def __init__(self, special=False):
        self.inputs, self.steps, self.outputs = [], [], []
        self.special = special
        self.float32 = False
        self.float_range = (-3, 3)   # gradient cases use (-1, 1): exp(exp(3)) defeats finite differences
        self.seed = 0

    # replay
    def build(self, variables=None, reshape_inputs=False):
        """Input variables (made from the specs unless given) and the output variables.
        reshape_inputs: first reshape each given input to its concrete shape (for verify_grad's
        inputs, which have no static shape)."""
        if variables is None:
            variables = [s.variable() for s in self.inputs]
        env = {}
        for spec, v in zip(self.inputs, variables):
            env[spec.name] = v.reshape(spec.shape, ndim=len(spec.shape)) if reshape_inputs else v
        for key, _, fn in self.steps:
            env[key] = fn(env)
        return variables, [env[k] for k in self.outputs]

    def values(self, seed=None):
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return [make_value(rng, s.dtype, s.shape, s.kind, self.special, self.float_range) for s in self.inputs]

    def __repr__(self):
        lines = ["GraphCase(special=%s, seed=%d):" % (self.special, self.seed)]
        lines += ["    " + repr(s) for s in self.inputs]
        lines += [f"    {k} = {d}" for k, d, _ in self.steps]
        lines.append(f"    outputs = [{', '.join(self.outputs)}]")
        return "\n".join(lines)


class Gen:
    """Draws a GraphCase step by step (see the module docstring)."""

    def __init__(self, draw, special=False, grad=False):
        self.draw = draw
        self.case = GraphCase(special)
        self.grad = grad          # only differentiable float64 ops, constant indices
        if grad:
            self.case.float_range = (-1, 1)
        self.real, self.shadow = {}, {}
        self.used = set()
        self.n = 0

    # -- bookkeeping ------------------------------------------------------------------------
    def shape(self, key):
        return self.shadow[key].type.shape

    def static(self, key):
        return self.real[key].type.shape

    def dtype(self, key):
        return self.real[key].dtype

    def keys(self, pred=lambda k: True):
        """Entries satisfying pred; usually only the computed ones (so steps chain)."""
        ks = [k for k in self.real if pred(k)]
        computed = [k for k in ks if k.startswith("v")]
        if computed and self.draw(st.integers(0, 3)) > 0:
            return computed
        return ks

    def add_input(self, dtype, shape, kind="any", static=None, scalar_bounds=False):
        name = f"in{len(self.case.inputs)}"
        if static is None:
            # length-1 dimensions are declared broadcastable (Theano's rule); others known or not
            static = tuple(1 if n == 1 and (self.draw(st.integers(0, 3)) > 0 or scalar_bounds)
                           else (n if self.draw(st.booleans()) else None) for n in shape)
            # a runtime 1 without a static 1 must not be broadcast: only partners broadcast
        spec = InputSpec(name, dtype, static, shape, kind)
        self.case.inputs.append(spec)
        self.real[name] = spec.variable()
        if isinstance(kind, tuple) and kind[0] == "fixed":
            # the shadow graph knows the value of a scalar bound, so its shapes stay static
            self.shadow[name] = T.constant(np.asarray(kind[1], dtype=dtype))
        else:
            self.shadow[name] = spec.variable(static=shape)
        return name

    def apply(self, desc, fn, *keys):
        """Add step `fn(*entries)` applied to the entries `keys` (in both graphs)."""
        key = f"v{self.n}"
        self.n += 1

        def step(env, fn=fn, keys=keys):
            return fn(*[env[k] for k in keys])
        self.real[key] = step(self.real)
        self.shadow[key] = step(self.shadow)
        assert None not in self.shadow[key].type.shape, f"shadow shape unknown after {desc}"
        self.case.steps.append((key, desc.format(*keys), step))
        self.used.update(keys)
        return key

    # -- choosing -----------------------------------------------------------------------------
    def pick(self, options):
        options = list(options)
        if not options:
            reject()  # nothing fits: hypothesis draws another example
        return self.draw(st.sampled_from(options))

    def any_dtype(self, options=ALL):
        return "float64" if self.grad else self.pick(options)

    def fresh(self, ndim=None, dtype=None, shape=None, kind="any", dims=(1, 2, 3, 5)):
        if shape is None:
            ndim = self.draw(st.integers(0, 4)) if ndim is None else ndim
            shape = tuple(self.pick(dims) for _ in range(ndim))
        return self.add_input(dtype or self.any_dtype(), shape, kind)

    def partner_shape(self, shape):
        """A shape broadcasting against `shape`: some dimensions 1, maybe fewer leading dims."""
        drop = self.draw(st.integers(0, len(shape)))
        rest = shape[drop:]
        return tuple(1 if self.draw(st.booleans()) else n for n in rest)

    def operand(self, a, dtypes=ALL, kind="any"):
        """A second operand for a binary op with entry a: an entry of the same concrete shape,
        a fresh broadcasting input, a Python scalar or a numpy constant."""
        shape = self.shape(a)
        same = [k for k in self.keys() if self.shape(k) == shape and self.dtype(k) in dtypes and k != a]
        choice = self.draw(st.integers(0, 3))
        if choice == 0 and same and kind == "any":
            return self.pick(same)
        if choice == 1 and not self.grad and kind == "any":
            return self.pick([2, -1, 0.5, 3.0, 0, True]) if "bool" in dtypes else self.pick([2, -1, 0.5, 3.0, 0])
        if choice == 2 and not self.grad and kind == "any":
            pshape = self.partner_shape(shape)
            dt = self.pick(dtypes)
            val = make_value(np.random.default_rng(self.draw(st.integers(0, 1000))), dt, pshape)
            return ("const", val)
        # a broadcast "fresh" partner of maximum/minimum would copy one value into several places
        # (a tie for a later max): give it the full shape
        pshape = shape if kind == "fresh" else self.partner_shape(shape)
        b = self.add_input(self.any_dtype(dtypes), pshape, kind,
                           static=tuple(1 if n == 1 else None for n in pshape))
        return b


# -- op families ----------------------------------------------------------------------------------
UNARY = {"neg": T.neg, "abs": T.abs_, "sgn": T.sgn, "sqr": T.sqr, "exp": T.exp, "log": T.log,
         "sqrt": T.sqrt, "tanh": T.tanh, "sigmoid": T.nnet.sigmoid, "log1p": T.log1p, "expm1": T.expm1,
         "floor": T.floor, "ceil": T.ceil, "trunc": T.trunc, "softplus": T.nnet.softplus}
BINARY = {"add": T.add, "sub": T.sub, "mul": T.mul, "true_div": T.true_div, "int_div": T.int_div,
          "mod": T.mod, "pow": T.pow, "maximum": T.maximum, "minimum": T.minimum,
          "eq": T.eq, "neq": T.neq, "lt": T.lt, "le": T.le, "gt": T.gt, "ge": T.ge}
BOOL_OK_BINARY = ("add", "mul", "maximum", "minimum", "eq", "neq", "lt", "le", "gt", "ge", "true_div")
GRAD_UNARY = ("neg", "sqr", "exp", "tanh", "sigmoid", "log_sqr1", "sqrt_sqr1", "softplus", "expm1")
GRAD_BINARY = ("add", "sub", "mul", "true_div", "maximum", "minimum")


def _const_or_key(g, b):
    """(description, getter) for an operand chosen by Gen.operand."""
    if isinstance(b, tuple) and b[0] == "const":
        val = b[1]
        return f"const({val.dtype} {val.shape})", [], (lambda: T.constant(val))
    if isinstance(b, str):
        return "{%d}", [b], None
    return repr(b), [], (lambda: b)


def op_unary(g):
    a = g.pick(g.keys())
    dt = g.dtype(a)
    if g.grad:
        name = g.pick(GRAD_UNARY)
        if name == "log_sqr1":
            return g.apply("T.log(T.sqr({0}) + 0.5)", lambda x: T.log(T.sqr(x) + 0.5), a)
        if name == "sqrt_sqr1":
            return g.apply("T.sqrt(T.sqr({0}) + 0.5)", lambda x: T.sqrt(T.sqr(x) + 0.5), a)
        if name == "softplus":
            return g.apply("T.nnet.softplus({0})", UNARY[name], a)
        return g.apply(f"T.{name}({{0}})", UNARY[name], a)
    names = list(UNARY) + ["cast"]
    if dt == "bool":
        names = ["exp", "log", "sqrt", "tanh", "sigmoid", "log1p", "expm1", "floor", "softplus", "cast"]
    name = g.pick(names)
    if name == "cast":
        target = g.pick([d for d in ALL if d != dt])
        if dt in FLOATS and target in INTS:
            if g.case.special:
                target = g.pick(FLOATS + ("bool",))
            else:  # float -> int of out-of-range values is undefined in C and in numpy
                return g.apply(f"T.cast(T.clip({{0}}, -100, 100), {target!r})",
                               lambda x: T.cast(T.clip(x, -100, 100), target), a)
        return g.apply(f"T.cast({{0}}, {target!r})", lambda x: T.cast(x, target), a)
    prefix = "T.nnet." if name == "softplus" else "T."
    return g.apply(f"{prefix}{name}({{0}})", UNARY[name], a)


def op_binary(g):
    a = g.pick(g.keys())
    dt = g.dtype(a)
    if g.grad:
        name = g.pick(GRAD_BINARY)
        # maximum/minimum of an entry with itself (or something equal to it) is an exact tie, where
        # finite differences and the tie rule (both inputs get the gradient) disagree: use a fresh input
        b = g.operand(a, ("float64",), kind={"true_div": "positive", "maximum": "fresh",
                                             "minimum": "fresh"}.get(name, "any"))
    else:
        names = list(BINARY)
        if dt == "bool":
            names = list(BOOL_OK_BINARY)
        name = g.pick(names)
        if name == "pow" and dt in INTS:
            b = g.operand(a, INTS, kind="nonneg")   # numpy refuses negative integer powers
        elif name == "pow":
            b = g.operand(a, FLOATS)
        elif dt == "bool" and name not in ("eq", "neq", "lt", "le", "gt", "ge", "maximum", "minimum", "add", "mul"):
            b = g.operand(a, NUMERIC)
        elif dt == "bool" or name in ("int_div", "mod", "sub"):
            b = g.operand(a, NUMERIC if name != "add" else ALL)
        else:
            b = g.operand(a, ALL)
    fn = BINARY[name]
    desc, keys, getter = _const_or_key(g, b)
    swap = g.draw(st.booleans()) and not (name == "pow" and dt in INTS)
    if getter is None:
        if swap and name != "true_div" and name != "pow":
            return g.apply(f"T.{name}({{1}}, {{0}})", lambda x, y: fn(y, x), a, b)
        return g.apply(f"T.{name}({{0}}, {{1}})", fn, a, b)
    if swap and name not in ("pow",):
        return g.apply(f"T.{name}({desc}, {{0}})", lambda x: fn(getter(), x), a)
    return g.apply(f"T.{name}({{0}}, {desc})", lambda x: fn(x, getter()), a)


def op_switch(g):
    a = g.pick(g.keys())
    c = g.operand(a, ALL)
    b = g.operand(a, ALL)
    descs = [_const_or_key(g, v) for v in (c, b)]
    keys = [a] + [k for d in descs for k in d[1]]
    idx = {}
    pos = 1
    parts = []
    getters = []
    for d, k, getter in descs:
        if getter is None:
            parts.append("{%d}" % pos)
            getters.append(("key", pos))
            pos += 1
        else:
            parts.append(d)
            getters.append(("const", getter))
    del idx

    def fn(*xs):
        vals = []
        for kind, v in getters:
            vals.append(xs[v] if kind == "key" else v())
        return T.switch(vals[0], xs[0], vals[1])
    return g.apply(f"T.switch({parts[0]}, {{0}}, {parts[1]})", fn, *keys)


def op_dimshuffle(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim <= 4))
    nd = g.real[a].ndim
    static = g.static(a)
    kept = [d for d in range(nd) if static[d] != 1 or g.draw(st.booleans())]
    perm = list(g.draw(st.permutations(kept)))
    n_x = g.draw(st.integers(0, max(0, min(2, 4 - len(perm)))))
    for _ in range(n_x):
        perm.insert(g.draw(st.integers(0, len(perm))), "x")
    if g.draw(st.integers(0, 4)) == 0:
        return g.apply("{0}.T", lambda x: x.T, a)
    return g.apply(f"{{0}}.dimshuffle({tuple(perm)!r})", lambda x: x.dimshuffle(*perm), a)


def _factor(g, size, ndim):
    """ndim dimensions whose product is size."""
    if size == 0:
        dims = [g.pick([0, 1, 2, 3]) for _ in range(ndim)]
        dims[g.draw(st.integers(0, ndim - 1))] = 0
        return dims
    dims, rest = [], size
    for _ in range(ndim - 1):
        d = g.pick([d for d in range(1, rest + 1) if rest % d == 0])
        dims.append(d)
        rest //= d
    return list(g.draw(st.permutations(dims + [rest])))


def op_reshape(g):
    a = g.pick(g.keys())
    shape = g.shape(a)
    size = int(np.prod(shape))
    if g.real[a].ndim >= 1 and g.draw(st.booleans()):
        nd = g.draw(st.integers(1, g.real[a].ndim))
        return g.apply(f"{{0}}.flatten({nd})", lambda x: x.flatten(nd), a)
    nd = g.draw(st.integers(0 if size == 1 else 1, 4))
    if nd == 0:
        return g.apply("{0}.reshape(())", lambda x: x.reshape((), ndim=0), a)
    target = _factor(g, size, nd)
    if size and g.draw(st.booleans()):
        target[g.draw(st.integers(0, nd - 1))] = -1
    target = tuple(target)
    return g.apply(f"{{0}}.reshape({target!r})", lambda x: x.reshape(target), a)


def _slice_bound(g, n):
    return g.pick([None, g.draw(st.integers(-n - 2, n + 2))])


def op_subtensor(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim >= 1))
    shape = g.shape(a)
    k = g.draw(st.integers(1, len(shape)))
    entries, desc, symbolic = [], [], []
    for d in range(k):
        n = shape[d]
        if n > 0 and g.draw(st.integers(0, 3)) == 0:
            i = g.draw(st.integers(-n, n - 1))
            if not g.grad and g.draw(st.booleans()):
                s = g.add_input(g.pick(("int32", "int64")), (), ("fixed", i), static=())
                entries.append(("sym", s))
                desc.append("{%d}" % (len(symbolic) + 1))
                symbolic.append(s)
            else:
                entries.append(i)
                desc.append(str(i))
            continue
        parts = [_slice_bound(g, n), _slice_bound(g, n),
                 g.pick([None, 1, 2, 3, -1, -2]) if not g.grad else g.pick([None, 1, 2, -1])]
        sparts = []
        for j, p in enumerate(parts):
            if p is not None and not g.grad and g.draw(st.integers(0, 2)) == 0:
                s = g.add_input(g.pick(("int32", "int64")), (), ("fixed", p), static=())
                sparts.append(("sym", s))
                symbolic.append(s)
            else:
                sparts.append(p)
        entries.append(("slice", sparts))
        txt, q = [], len(symbolic) - sum(1 for p in sparts if isinstance(p, tuple))
        for p in sparts:
            if isinstance(p, tuple):
                q += 1
                txt.append("{%d}" % q)
            else:
                txt.append("" if p is None else str(p))
        desc.append(":".join(txt))

    def fn(x, *syms):
        it = iter(syms)
        idx = []
        for e in entries:
            if isinstance(e, tuple) and e[0] == "sym":
                idx.append(next(it))
            elif isinstance(e, tuple):
                idx.append(slice(*[next(it) if isinstance(p, tuple) else p for p in e[1]]))
            else:
                idx.append(e)
        return x[tuple(idx)]
    return g.apply("{0}[" + ", ".join(desc) + "]", fn, a, *symbolic)


def op_advanced(g):
    a = g.pick(g.keys(lambda k: 1 <= g.real[k].ndim and 0 not in g.shape(k)))
    shape = g.shape(a)
    nd = len(shape)
    pattern = g.pick([("array",), ("array", "array"), ("slice", "array")] if nd >= 2 else [("array",)])
    length = g.draw(st.integers(0 if not g.grad else 1, 4))
    if g.grad:
        length = min([length] + [shape[d] for d, e in enumerate(pattern) if e == "array"])
    idx_shape = (length,) if g.grad or g.draw(st.integers(0, 3)) else (2, length)
    arrays = []
    desc = []
    for d, e in enumerate(pattern):
        if e == "slice":
            desc.append(":")
            continue
        n = shape[d]
        if g.grad:
            # no repeated indices: a max over repeated elements is a tie (see op_binary)
            rng = np.random.default_rng(g.draw(st.integers(0, 10 ** 6)))
            perm = rng.permutation(n)[:length]
            val = np.where(rng.random(perm.shape) < 0.5, perm, perm - n).astype(g.pick(("int32", "int64")))
            arrays.append(("const", val))
            desc.append(f"{val.tolist()!r}")
        elif g.draw(st.booleans()):
            val = make_value(np.random.default_rng(g.draw(st.integers(0, 10 ** 6))),
                             g.pick(("int32", "int64")), idx_shape, ("index", n))
            arrays.append(("const", val))
            desc.append(f"{val.tolist()!r}")
        else:
            s = g.fresh(dtype=g.pick(("int32", "int64")), shape=idx_shape, kind=("index", n))
            arrays.append(s)
            desc.append("{%d}" % (len([x for x in arrays if isinstance(x, str)])))
    keys = [x for x in arrays if isinstance(x, str)]

    def idx_of(xs):
        it = iter(xs)
        out, ai = [], iter(arrays)
        for e in pattern:
            if e == "slice":
                out.append(slice(None))
            else:
                v = next(ai)
                out.append(T.constant(v[1]) if isinstance(v, tuple) else next(it))
        return tuple(out)

    mode = g.draw(st.integers(0, 3)) if is_float_key(g, a) else 0
    if mode <= 1:
        return g.apply("{0}[" + ", ".join(desc) + "]", lambda x, *xs: x[idx_of(xs)], a, *keys)
    # inc_subtensor / set_subtensor with a value of the selection's shape (repeated indices accumulate)
    sub_shape = g.shadow[a][idx_of([g.shadow[k] for k in keys])].type.shape
    y = g.fresh(dtype=g.dtype(a), shape=sub_shape)
    which = "inc_subtensor" if mode == 2 or g.grad else "set_subtensor"
    f = getattr(T, which)
    return g.apply(f"T.{which}({{0}}[" + ", ".join(desc) + f"], {{{len(keys) + 1}}})",
                   lambda x, *xs: f(x[idx_of(xs[:-1])], xs[-1]), a, *keys, y)


def is_float_key(g, k):
    return g.dtype(k) in FLOATS


def op_reduce(g):
    name = g.pick(["sum", "mean", "max", "min", "argmax", "prod", "var", "std"] if not g.grad
                  else ["sum", "mean", "max", "prod", "var"])
    ok = (lambda k: True)
    if name in ("max", "min", "argmax"):
        # an empty max is an error (both modes must raise it): only sometimes, never for gradients
        ok = lambda k: 0 not in g.shape(k) or (not g.grad and g.draw(st.integers(0, 5)) == 0)  # noqa: E731
    if name == "min":
        ok2 = ok
        ok = lambda k: g.dtype(k) != "bool" and ok2(k)  # noqa: E731
    cands = g.keys(ok)
    if not cands:
        return None
    a = g.pick(cands)
    nd = g.real[a].ndim
    form = g.draw(st.integers(0, 2))
    if form == 0 or nd == 0:
        axis = None
    elif form == 1:
        axis = g.draw(st.integers(-nd, nd - 1))
    else:
        axis = tuple(g.draw(st.lists(st.integers(0, nd - 1), unique=True, min_size=1, max_size=nd)))
    keepdims = g.draw(st.booleans())
    fn = getattr(T, name)
    return g.apply(f"T.{name}({{0}}, axis={axis!r}, keepdims={keepdims})",
                   lambda x: fn(x, axis=axis, keepdims=keepdims), a)


def op_dot(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim in (1, 2) and g.dtype(k) != "bool"))
    k = g.shape(a)[-1]
    yshape = (k,) if g.draw(st.booleans()) else (k, g.pick([1, 2, 3, 5]))
    y = g.fresh(dtype=g.any_dtype(NUMERIC), shape=yshape)
    if g.real[a].ndim == 1 and g.draw(st.booleans()) and len(yshape) == 2:
        # vector . matrix through the other operand order
        x2 = g.fresh(dtype=g.any_dtype(NUMERIC), shape=(g.pick([1, 2, 3]), g.shape(a)[0]))
        return g.apply("T.dot({1}, {0})", lambda x, z: T.dot(z, x), a, x2)
    return g.apply("T.dot({0}, {1})", T.dot, a, y)


def op_softmax(g):
    cands = g.keys(lambda k: g.real[k].ndim in (1, 2) and g.dtype(k) in FLOATS and 0 not in g.shape(k))
    if not cands:
        a = g.fresh(dtype=g.any_dtype(FLOATS), ndim=g.pick([1, 2]))
    else:
        a = g.pick(cands)
    return g.apply("T.nnet.softmax({0})", T.nnet.softmax, a)


def op_conv(g):
    cands = g.keys(lambda k: g.real[k].ndim == 4 and g.dtype(k) in FLOATS and 0 not in g.shape(k)
                   and max(g.shape(k)) <= 6)
    if cands and g.draw(st.booleans()):
        a = g.pick(cands)
    else:
        a = g.fresh(dtype=g.any_dtype(FLOATS), shape=(g.pick([1, 2]), g.pick([1, 2, 3]), g.pick([1, 2, 3, 5, 6]),
                                                      g.pick([1, 2, 4, 5])))
    b, c, h, w = g.shape(a)
    border = g.pick(["valid", "full", "half", "pad"])
    if border == "pad":
        border = (g.draw(st.integers(0, 2)), g.draw(st.integers(0, 2)))
        if g.draw(st.booleans()):
            border = border[0]
    pad = {"valid": (0, 0), "full": None, "half": None}.get(border, None) if isinstance(border, str) else \
        ((border, border) if isinstance(border, int) else border)
    kh = g.draw(st.integers(1, max(1, min(3, h + 2 * pad[0])) if pad else 3))
    kw = g.draw(st.integers(1, max(1, min(3, w + 2 * pad[1])) if pad else 3))
    if border == "valid":
        kh, kw = min(kh, h), min(kw, w)
    nk = g.pick([1, 2, 3])
    f = g.fresh(dtype=g.any_dtype(FLOATS), shape=(nk, c, kh, kw))
    sub = (g.draw(st.integers(1, 2)), g.draw(st.integers(1, 3)))
    flip = g.draw(st.booleans())
    ishape = (b, c, h, w) if g.draw(st.booleans()) else None
    fshape = (nk, c, kh, kw) if g.draw(st.booleans()) else None
    if g.draw(st.booleans()) and ishape:
        ishape = tuple(s if g.draw(st.booleans()) else None for s in ishape)
    kw_ = dict(border_mode=border, subsample=sub, filter_flip=flip, input_shape=ishape, filter_shape=fshape)
    args = ", ".join(f"{k}={v!r}" for k, v in kw_.items())
    return g.apply(f"conv2d({{0}}, {{1}}, {args})", lambda x, y: conv2d(x, y, **kw_), a, f)


def op_pool(g):
    cands = g.keys(lambda k: g.real[k].ndim >= 2 and g.dtype(k) in (FLOATS if g.grad else NUMERIC)
                   and max(g.shape(k)[-2:]) <= 8)
    if cands and g.draw(st.booleans()):
        a = g.pick(cands)
    else:
        a = g.fresh(dtype=g.any_dtype(FLOATS), shape=tuple(g.pick([1, 2, 3]) for _ in range(g.pick([0, 1, 2])))
                    + (g.pick([1, 2, 3, 4, 5, 7]), g.pick([1, 2, 3, 4, 6])))
    mode = g.pick(pool.MODES)
    if g.dtype(a) not in FLOATS:
        mode = g.pick(["max", "sum"])
    ws = (g.draw(st.integers(1, 3)), g.draw(st.integers(1, 3)))
    stride = None if g.draw(st.booleans()) else (g.draw(st.integers(1, 3)), g.draw(st.integers(1, 3)))
    ignore_border = g.draw(st.booleans())
    pad = (0, 0)
    if ignore_border and g.draw(st.booleans()):
        pad = (g.draw(st.integers(0, ws[0] - 1)), g.draw(st.integers(0, ws[1] - 1)))
    kw_ = dict(ws=ws, stride=stride, ignore_border=ignore_border, pad=pad, mode=mode)
    args = ", ".join(f"{k}={v!r}" for k, v in kw_.items())
    return g.apply(f"pool.pool_2d({{0}}, {args})", lambda x: pool.pool_2d(x, **kw_), a)



# -- Theano's everyday API: join/stack, alloc, round, xlogx, N-d products, relu, ifelse --------------
def op_join(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim >= 1))
    shape = g.shape(a)
    dt = g.dtype(a) if g.grad else g.pick([g.dtype(a), g.any_dtype(NUMERIC)])
    if g.draw(st.booleans()):
        axis = g.draw(st.integers(-len(shape), len(shape) - 1))
        pshape = list(shape)
        pshape[axis] = g.pick([0, 1, 2, 3]) if not g.grad else g.pick([1, 2])
        b = g.fresh(dtype=dt, shape=tuple(pshape))
        return g.apply(f"T.concatenate([{{0}}, {{1}}], axis={axis})", lambda x, y: T.concatenate([x, y], axis=axis),
                       a, b)
    axis = g.draw(st.integers(0, len(shape)))
    b = g.fresh(dtype=dt, shape=shape)
    return g.apply(f"T.stack([{{0}}, {{1}}], axis={axis})", lambda x, y: T.stack([x, y], axis=axis), a, b)


def op_alloc(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim <= 2))
    lead = g.pick([1, 2, 3])
    nd = g.real[a].ndim
    return g.apply(f"T.alloc({{0}}, {lead}, *{{0}}.shape)",
                   lambda x: T.alloc(x, lead, *[x.shape[d] for d in range(nd)]), a)


def op_round(g):
    a = g.pick(g.keys(lambda k: g.dtype(k) in FLOATS) or [g.fresh(dtype=g.any_dtype(FLOATS))])
    mode = g.pick(["half_away_from_zero", "half_to_even"])
    return g.apply(f"T.round({{0}} * 2, {mode!r})", lambda x: T.round(x * 2, mode), a)


def op_xlogx(g):
    a = g.pick(g.keys(lambda k: g.dtype(k) in FLOATS) or [g.fresh(dtype=g.any_dtype(FLOATS))])
    if g.draw(st.booleans()):
        return g.apply("T.xlogx.xlogx(T.sqr({0}))", lambda x: T.xlogx.xlogx(T.sqr(x)), a)
    b = g.operand(a, FLOATS, kind="positive" if g.grad else "any")
    desc, keys, getter = _const_or_key(g, b)
    if getter is None:
        return g.apply("T.xlogx.xlogy0({0}, T.sqr({1}) + 0.5)",
                       lambda x, y: T.xlogx.xlogy0(x, T.sqr(y) + 0.5), a, b)
    return g.apply(f"T.xlogx.xlogy0({{0}}, T.sqr({desc}) + 0.5)", lambda x: T.xlogx.xlogy0(x, T.sqr(getter()) + 0.5), a)


def op_nd_dot(g):
    a = g.pick(g.keys(lambda k: g.real[k].ndim >= 1 and g.dtype(k) in FLOATS)
               or [g.fresh(dtype=g.any_dtype(FLOATS), ndim=g.pick([1, 2, 3]))])
    shape = g.shape(a)
    dt = g.dtype(a)
    kind = g.pick(["dot", "tensordot", "batched"] if len(shape) >= 2 else ["dot", "tensordot"])
    if kind == "dot":
        y = g.fresh(dtype=dt, shape=(g.pick([1, 2]), shape[-1], g.pick([1, 3])))
        return g.apply("T.dot({0}, {1})", T.dot, a, y)
    if kind == "tensordot":
        y = g.fresh(dtype=dt, shape=(shape[0], g.pick([1, 2, 3])))
        return g.apply("T.tensordot({0}, {1}, [[0], [0]])", lambda x, z: T.tensordot(x, z, [[0], [0]]), a, y)
    y = g.fresh(dtype=dt, shape=(shape[0], shape[-1], g.pick([1, 2, 3])))
    return g.apply("T.batched_dot({0}, {1})", T.batched_dot, a, y)


def op_relu(g):
    a = g.pick(g.keys(lambda k: g.dtype(k) in FLOATS) or [g.fresh(dtype=g.any_dtype(FLOATS))])
    alpha = g.pick([0, 0.1])
    if g.grad:  # relu has a kink at 0: keep the values away from it
        return g.apply(f"T.nnet.relu(T.sqr({{0}}) + 0.5, {alpha})", lambda x: T.nnet.relu(T.sqr(x) + 0.5, alpha), a)
    return g.apply(f"T.nnet.relu({{0}}, {alpha})", lambda x: T.nnet.relu(x, alpha), a)


def op_ifelse(g):
    from symcnn.ifelse import ifelse
    a = g.pick(g.keys())
    b = g.fresh(dtype=g.dtype(a), shape=g.shape(a))
    if g.grad:  # (verify_grad perturbs every input: the condition is a constant here)
        cv = g.pick([0, 1])
        return g.apply(f"ifelse({cv}, {{0}} * 2, {{1}})", lambda x, y: ifelse(T.constant(np.int8(cv)), x * 2, y), a, b)
    c = g.add_input("int8", (), ("fixed", g.pick([0, 1])), static=())
    if g.dtype(a) in FLOATS:
        return g.apply("ifelse({2}, {0} * 2, {1})", lambda x, y, z: ifelse(z, x * 2, y), a, b, c)
    return g.apply("ifelse({2}, {0}, {1})", lambda x, y, z: ifelse(z, x, y), a, b, c)


def op_jacobian(g):
    from symcnn.gradient import jacobian
    a = g.pick(g.keys(lambda k: g.real[k].ndim == 1 and g.dtype(k) == "float64")
               or [g.fresh(dtype="float64", ndim=1)])
    # (the real graph's lengths are not static: its rows come from an IndexMap)
    return g.apply("jacobian(T.tanh({0} * 2), {0})", lambda x: jacobian(T.tanh(x * 2), x), a)


OPS = {"unary": op_unary, "binary": op_binary, "switch": op_switch, "dimshuffle": op_dimshuffle,
       "reshape": op_reshape, "subtensor": op_subtensor, "advanced": op_advanced, "reduce": op_reduce,
       "dot": op_dot, "softmax": op_softmax, "conv": op_conv, "pool": op_pool,
       "join": op_join, "alloc": op_alloc, "round": op_round, "xlogx": op_xlogx, "nd_dot": op_nd_dot,
       "relu": op_relu, "ifelse": op_ifelse, "jacobian": op_jacobian}
API_OPS = ("join", "alloc", "round", "xlogx", "nd_dot", "relu", "ifelse", "jacobian", "unary", "binary", "reduce")
API_GRAD_OPS = ("join", "alloc", "xlogx", "nd_dot", "relu", "ifelse", "unary", "binary", "reduce")
ELEMWISE_OPS = ("unary", "binary", "switch")
STRUCTURE_OPS = ("dimshuffle", "reshape", "subtensor", "advanced", "reduce", "dot", "softmax", "unary", "binary")
CONV_POOL_OPS = ("conv", "pool", "unary", "binary", "reduce", "dimshuffle", "subtensor")
GRAD_OPS = ("unary", "binary", "dimshuffle", "reshape", "subtensor", "advanced", "reduce", "dot", "softmax",
            "conv", "pool")


@st.composite
def graphs(draw, ops=STRUCTURE_OPS, min_steps=1, max_steps=6, special=None, grad=False, n_outputs=(1, 4),
           first_ndim=None):
    """A GraphCase drawn from the op families `ops`."""
    special = draw(st.booleans()) if special is None else special
    g = Gen(draw, special=special, grad=grad)
    g.fresh(ndim=first_ndim)
    for _ in range(draw(st.integers(0, 1))):
        g.fresh()
    n_steps = draw(st.integers(min_steps, max_steps))
    for _ in range(n_steps):
        name = draw(st.sampled_from(ops))
        op = OPS[name]
        if name in ("dot",) and not g.keys(lambda k: g.real[k].ndim in (1, 2) and g.dtype(k) != "bool"):
            g.fresh(ndim=draw(st.integers(1, 2)), dtype=g.any_dtype(NUMERIC))
        if name in ("subtensor", "advanced") and not g.keys(lambda k: 1 <= g.real[k].ndim and 0 not in g.shape(k)):
            g.fresh(ndim=draw(st.integers(1, 3)))
        op(g)
    computed = [k for k, _, _ in g.case.steps]
    if not computed:
        reject()
    # float32 anywhere: results (even float64 ones) carry float32 rounding
    g.case.float32 = any(v.dtype == "float32" for v in g.real.values())
    if grad:
        # one float64 output that depends on every step: the last entry plus the sums of the others
        floats = [k for k in computed if g.dtype(k) == "float64"]
        last, others = floats[-1], floats[:-1]
        if others:
            def combine(x, *rest):
                total = x
                for k, r in enumerate(rest):
                    total = total + T.sum(r) * (0.5 + 0.25 * k)
                return total
            last = g.apply("{0} + " + " + ".join("T.sum({%d}) * %s" % (k + 1, 0.5 + 0.25 * k)
                                                  for k in range(len(others))), combine, last, *others)
        g.case.outputs = [last]
    else:
        # every entry no later step consumed, plus a few intermediate ones (views, inputs of later ops)
        leaves = [k for k in computed if k not in g.used]
        extra = draw(st.lists(st.sampled_from(computed), unique=True, max_size=2))
        g.case.outputs = list(dict.fromkeys(leaves[::-1] + extra))[:n_outputs[1] + 2]
    g.case.seed = draw(st.integers(0, 2 ** 32 - 1))
    return g.case


# -- storage, threads and sizes -------------------------------------------------------------------
# Programs around what native code does with memory it does not own: updates written into shared
# storage (read-only, aliased by another shared variable or by an argument), calls from several
# threads, and shapes whose sizes do not fit in 64 bits.

SHARED_LAYOUTS = ("own", "same_as_0", "overlaps_0", "readonly", "frombuffer")
ARGUMENTS = ("fresh", "storage_0", "view_of_0", "storage_1")
UPDATE_KINDS = ("sgd", "scale_plus_other", "tanh_plus_arg", "other_plus_one", "none")


class StorageCase:
    """n shared float32 vectors of length n_elems laid over memory as `layouts` says, updates
    of kind `updates[i]` for shared i, one vector argument given as `argument` says, `calls` calls."""

    def __init__(self, n_elems, layouts, updates, argument, calls):
        self.n_elems, self.layouts, self.updates = n_elems, layouts, updates
        self.argument, self.calls = argument, calls

    def __repr__(self):
        return (f"StorageCase(n_elems={self.n_elems}, layouts={self.layouts}, updates={self.updates}, "
                f"argument={self.argument!r}, calls={self.calls})")

    def shared_values(self):
        """Fresh arrays for the shared variables (the same numbers on every call of this method)."""
        n = self.n_elems
        base = np.arange(2 * n, dtype="float32") * 0.25 - 1
        out = []
        for i, lay in enumerate(self.layouts):
            if i == 0 or lay == "own":
                v = base[:n] if i == 0 else np.linspace(-1, 1, n).astype("float32") + i
            elif lay == "same_as_0":
                v = out[0]
            elif lay == "overlaps_0":
                v = base[n // 2:n // 2 + n]
            elif lay == "readonly":
                v = np.linspace(0, 1, n).astype("float32") + i
                v.flags.writeable = False
            else:  # frombuffer: numpy over an immutable bytes object
                v = np.frombuffer(bytes((np.linspace(0, 2, n).astype("float32") + i).tobytes()), dtype="float32")
            out.append(v)
        return out

    def argument_value(self, shared, call):
        if self.argument == "storage_0":
            return shared[0].get_value(borrow=True)
        if self.argument == "storage_1" and len(shared) > 1:
            return shared[1].get_value(borrow=True)
        if self.argument == "view_of_0":
            v = shared[0].get_value(borrow=True)
            return v[::-1]          # a reversed view: same memory, other order
        return np.linspace(-0.5, 0.5, self.n_elems).astype("float32") * (call + 1)

    def build(self, symcnn, T, mode):
        """(function, shared variables, values) of the case in `mode`, over fresh memory."""
        values = self.shared_values()
        shared = [symcnn.shared(v, f"s{i}", borrow=True) for i, v in enumerate(values)]
        x = T.vector("x")
        updates = []
        for i, kind in enumerate(self.updates):
            s, other = shared[i], shared[(i + 1) % len(shared)]
            expr = {"sgd": lambda: s - 0.5 * x, "scale_plus_other": lambda: s * 2 + other,
                    "tanh_plus_arg": lambda: T.tanh(s) + x, "other_plus_one": lambda: other + 1,
                    "none": lambda: None}[kind]()
            if expr is not None:
                updates.append((s, expr))
        outputs = [x * 1, shared[0] + 0, T.sum(shared[-1] * x)]
        return symcnn.function([x], outputs, updates=updates, mode=mode), shared, values


@st.composite
def storage_cases(draw):
    n_shared = draw(st.integers(1, 3))
    layouts = ["own"] + [draw(st.sampled_from(SHARED_LAYOUTS)) for _ in range(n_shared - 1)]
    if draw(st.booleans()):
        layouts[0] = draw(st.sampled_from(("readonly", "frombuffer")))
    updates = [draw(st.sampled_from(UPDATE_KINDS)) for _ in range(n_shared)]
    return StorageCase(draw(st.integers(1, 9)), layouts, updates, draw(st.sampled_from(ARGUMENTS)),
                       draw(st.integers(1, 3)))


@st.composite
def threaded_calls(draw):
    """(threads, per thread a list of (rows, cols) argument shapes)."""
    n = draw(st.integers(2, 8))
    dims = st.tuples(st.integers(0, 70), st.integers(1, 70))
    return n, [draw(st.lists(dims, min_size=1, max_size=4)) for _ in range(n)]


HUGE = (2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 61 + 1, 2 ** 62 + 1, 2 ** 63 - 1)


@st.composite
def huge_sizes(draw):
    """(program, arguments): an op whose result size comes from values that may be huge, with
    small valid values mixed in. program: 'reshape2' (v.reshape((a, b))), 'reshape3'
    (v.reshape((a, -1, b))), 'arange' (T.arange(a, b, c)), 'farange' (float bounds)."""
    dim = st.one_of(st.integers(-1, 6), st.sampled_from(HUGE), st.sampled_from([-h for h in HUGE]))
    program = draw(st.sampled_from(("reshape2", "reshape3", "arange", "farange")))
    if program == "farange":
        f = st.one_of(st.floats(-10, 10), st.sampled_from([1e19, -1e19, 9.3e18, 1e300, np.inf, -np.inf, np.nan]))
        step = st.one_of(st.sampled_from([1.0, -1.0, 0.5, 1e-300, 3.0]), f)
        return program, [draw(f), draw(f), draw(step)]
    if program == "arange":
        step = st.one_of(st.sampled_from([1, -1, 2, -3]), st.sampled_from(HUGE),
                         st.sampled_from([-h for h in HUGE]), st.just(-2 ** 63))
        return program, [draw(dim), draw(dim), draw(step)]
    n = draw(st.sampled_from([0, 1, 4, 6, 12]))
    return program, [n, draw(dim), draw(dim)]
