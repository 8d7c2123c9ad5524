"""Reverse-mode differentiation over graphs, and a finite-difference checker.

grad() walks the nodes between `wrt` and `cost` in reverse topological order;
each op's `grad` builds the graph of its inputs' gradients, and contributions
from several clients of a variable are summed.
"""
import warnings

import numpy as np

from .graph.basic import Variable, io_toposort
from .graph.trace import with_trace
from .config import config
from .tensor.type import is_float
from .tensor.var import as_tensor_variable


class DisconnectedInputError(ValueError):
    pass


class NullTypeGradError(TypeError):
    """A gradient on the way to `wrt` is undefined (grad_undefined / grad_not_implemented)."""


# A contribution that is connected to the cost but known to be zero: it came through an
# integer-valued output, whose gradient Theano defines as 0. Kept symbolic-free so that
# integer side paths (switch conditions, argmax, comparisons) add no nodes to the graph.
_ZERO = "zero"


def _float_ones_like(x):
    from .tensor.basic import ones_like
    return ones_like(x, dtype=x.dtype if is_float(x.dtype) else config.floatX)


def _float_zeros_like(x):
    from .tensor.basic import zeros_like
    return zeros_like(x, dtype=x.dtype if is_float(x.dtype) else config.floatX)


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", add_names=True,
         known_grads=None, return_disconnected="zero", null_gradients="raise"):
    """d cost / d wrt as symbolic graphs (a list if wrt is a list, else a single variable),
    with Theano 1.0's semantics:

    - known_grads {var: g}: var's gradient IS g (the cost's paths through var are not added);
      cost may then be None.
    - consider_constant: gradients stop at these variables, which still receive theirs
      (so a wrt listed there gets its gradient).
    - integer-valued outputs pass a zero gradient; the gradient with respect to an integer
      variable is computed as if it were float (grad(x, x) == 1 for an int x); an integer
      cost gives zeros.
    - a gradient is named '(dcost/dx)' when both have names (add_names).
    """
    from .gradient_types import DisconnectedType, NullType
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    for w in wrt_list:
        if not isinstance(w, Variable):
            raise TypeError(f"grad: wrt must be symbolic variables, got {type(w).__name__}")
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError("disconnected_inputs must be 'raise', 'warn' or 'ignore'")
    if return_disconnected not in ("zero", "None", "Disconnected"):
        raise ValueError("return_disconnected must be 'zero', 'None' or 'Disconnected'")
    if null_gradients not in ("raise", "return"):
        raise ValueError("null_gradients must be 'raise' or 'return'")
    if consider_constant is None:
        consider_constant = []
    try:
        constants = list(consider_constant)
    except TypeError:
        raise TypeError(f"consider_constant must be an iterable collection, got {type(consider_constant)}") from None
    for c in constants:
        if not isinstance(c, Variable):
            raise TypeError(f"Elements of consider_constant must be variables, but got {type(c)}")
    blockers = set(constants)

    known = dict(known_grads or {})
    seeds = {}
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(f"grad: cost must be a scalar, got {cost.describe()}; sum or mean it first")
        g_cost = as_tensor_variable(known.pop(cost)) if cost in known else _float_ones_like(cost)
        if is_float(cost.dtype) and g_cost.dtype != cost.dtype:
            from .tensor.basic import cast
            g_cost = cast(g_cost, cost.dtype)
        seeds[cost] = g_cost
    for v, g in known.items():
        if not isinstance(g, Variable):
            g = as_tensor_variable(g)
        if not isinstance(g.type, (NullType, DisconnectedType)) and not is_float(g.dtype):
            raise TypeError(f"grad: gradients must be float, NullType or DisconnectedType, but known_grads "
                            f"gives {g.describe()} for {v.describe()}")
        if isinstance(g.type, DisconnectedType):
            continue
        seeds[v] = g
    if cost is None and not known:
        raise ValueError("grad: give a cost or known_grads")

    outputs = list(seeds)
    # Only nodes on a path from some wrt to the cost matter.
    depends = _depends_on(outputs, set(wrt_list), blockers)
    fixed = set(seeds)  # their gradient is given; their clients add nothing to it

    contributions = {v: [g] for v, g in seeds.items()}
    for node in reversed(io_toposort(outputs, blockers=blockers)):
        wanted = [k for k, i in enumerate(node.inputs) if i in depends and i not in fixed]
        if not wanted:
            continue
        out_grads = [_total(contributions[o]) if o in contributions else None for o in node.outputs]
        if all(g is None for g in out_grads):
            continue
        pattern = _connection_pattern(node)
        reaching = [j for j, g in enumerate(out_grads) if g is not None]
        nulls = [g for g in out_grads if _is_null(g)]
        live = [j for j in reaching if out_grads[j] is not _ZERO and is_float(node.outputs[j].dtype)]
        if nulls or not live:
            # Only integer-valued outputs (or zero gradients) lead to the cost: each connected
            # input gets zero; an undefined output gradient makes its inputs' undefined too.
            for k in wanted:
                if any(pattern[k][j] for j in reaching):
                    contributions.setdefault(node.inputs[k], []).append(nulls[0] if nulls else _ZERO)
            continue
        full = []
        for o, g in zip(node.outputs, out_grads):
            if g is None or g is _ZERO:
                g = _float_zeros_like(o)
            elif is_float(o.dtype) and g.dtype != o.dtype:
                from .tensor.basic import cast
                g = cast(g, o.dtype)
            full.append(g)
        if hasattr(node.op, "L_op"):  # ops whose gradient reuses their forward outputs (Theano's L_op)
            in_grads = node.op.L_op(node.inputs, node.outputs, full)
        else:
            in_grads = node.op.grad(node.inputs, full)
        if len(in_grads) != len(node.inputs):
            raise ValueError(f"{node.op}.grad returned {len(in_grads)} gradients for {len(node.inputs)} inputs")
        for k in wanted:
            inp, g = node.inputs[k], in_grads[k]
            if isinstance(g, Variable) and isinstance(g.type, DisconnectedType):
                continue  # the op says this input does not reach the cost through it
            if g is None:
                # our ops' None for an input the op does connect: a zero gradient (integer inputs)
                if any(pattern[k][j] for j in live):
                    contributions.setdefault(inp, []).append(_ZERO)
                continue
            if _is_null(g):
                contributions.setdefault(inp, []).append(g)
                continue
            g = as_tensor_variable(g)
            if g.ndim != inp.ndim:
                raise ValueError(with_trace(f"{node.op}.grad gave a {g.ndim}-d gradient for the {inp.ndim}-d "
                                            f"input {inp.describe()}", node.trace))
            if not is_float(g.dtype):
                raise TypeError(with_trace(f"{node.op}.grad returned the integer-valued gradient {g.describe()} "
                                           f"for input {k} ({inp.describe()}); gradients are float", node.trace))
            contributions.setdefault(inp, []).append(g)

    cost_name = cost.name if add_names and cost is not None else None
    results = []
    for w in wrt_list:
        gs = contributions.get(w)
        if gs:
            g = _total(gs)
            if _is_null(g):
                if null_gradients == "raise":
                    raise NullTypeGradError(f"tensor.grad encountered a NaN. {g.type.why_null}")
                results.append(g)
                continue
            if g is _ZERO:
                g = _float_zeros_like(w)
            elif is_float(w.dtype) and g.dtype != w.dtype:
                from .tensor.basic import cast
                g = cast(g, w.dtype)
            g = _keep_broadcastable(g, w)
            if cost_name is not None and w.name is not None and g.owner is not None:
                g.name = f"(d{cost_name}/d{w.name})"
            results.append(g)
            continue
        msg = (f"grad: the cost does not depend on {w.describe()} (it is a disconnected input). "
               f"Pass disconnected_inputs='ignore' or 'warn' to get zeros.")
        if disconnected_inputs == "raise":
            raise DisconnectedInputError(with_trace(msg, w.trace))
        if disconnected_inputs == "warn":
            warnings.warn(msg, stacklevel=2)
        if return_disconnected == "None":
            results.append(None)
        elif return_disconnected == "Disconnected":
            results.append(DisconnectedType()())
        else:
            results.append(_float_zeros_like(w))
    return results[0] if single else results


def _is_null(g):
    from .gradient_types import NullType
    return isinstance(g, Variable) and isinstance(g.type, NullType)


def _connection_pattern(node):
    """pattern[input][output]: whether that output depends on that input (all, unless the op says)."""
    cp = getattr(node.op, "connection_pattern", None)
    if cp is None:
        return [[True] * len(node.outputs) for _ in node.inputs]
    return cp(node)


def _keep_broadcastable(g, w):
    """Dimensions of length 1 in w's type stay so in its gradient's type (Theano's broadcastable flag)."""
    if not hasattr(w.type, "shape") or not hasattr(g.type, "shape") or g.ndim != w.ndim:
        return g
    axes = [d for d in range(w.ndim) if w.type.shape[d] == 1 and g.type.shape[d] != 1]
    if not axes:
        return g
    # The gradient has w's shape, so summing over a length-1 dimension changes no value and
    # gives it the static length 1 again.
    from .tensor.math import sum as tensor_sum
    return tensor_sum(g, axis=axes, keepdims=True)


def grad_of_expansion(build, inputs, output_grads):
    """Gradients w.r.t. `inputs` of the graph `build(inputs)` stands for, given the gradients
    of its outputs: how a fused op differentiates the unfused graph it replaces.

    The graph is built on stand-ins for the inputs, so an input computed from another one
    (b and b[:3]) only gets its own paths (the outer grad() adds the rest); an input listed
    twice gets its whole gradient once."""
    from .graph.basic import clone_replace
    unique = list(dict.fromkeys(inputs))
    stand_in = {i: i.type() for i in unique}
    outs = build([stand_in[i] for i in inputs])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    known = {o: g for o, g in zip(outs, output_grads) if g is not None}
    floats = [i for i in unique if is_float(i.dtype)]
    if not floats or not known:
        return [None] * len(inputs)
    gs = grad(None, [stand_in[i] for i in floats], known_grads=known, disconnected_inputs="ignore",
              return_disconnected="None")
    wanted = [g for g in gs if g is not None]
    back = dict(zip(map(id, wanted), clone_replace(wanted, {stand_in[i]: i for i in unique})))
    by_input = {i: back[id(g)] for i, g in zip(floats, gs) if g is not None}
    result, seen = [], set()
    for i in inputs:
        result.append(by_input.get(i) if i not in seen else None)
        seen.add(i)
    return result


def _total(gs):
    """Sum of the contributions: an undefined one wins, zeros are dropped (or _ZERO if all are)."""
    nulls = [g for g in gs if _is_null(g)]
    if nulls:
        return nulls[0]
    real = [g for g in gs if g is not _ZERO]
    if not real:
        return _ZERO
    total = real[0]
    for g in real[1:]:
        total = total + g
    return total


def _depends_on(outputs, wrt, blockers):
    """Variables between wrt and outputs (those whose gradient must be computed)."""
    memo = {}
    for v in wrt:
        memo[v] = True
    for node in io_toposort(outputs, blockers=blockers):
        reach = any(memo.get(i, False) for i in node.inputs)
        for o in node.outputs:
            memo[o] = memo.get(o, False) or reach
    return {v for v, r in memo.items() if r}


class GradientError(AssertionError):
    def __init__(self, arg, abs_err, rel_err, abs_tol, rel_tol, analytic, numeric, err_pos=None):
        self.arg, self.err_pos, self.abs_err, self.rel_err = arg, err_pos, abs_err, rel_err
        self.abs_tol, self.rel_tol = abs_tol, rel_tol
        super().__init__(f"gradient of input {arg} disagrees with finite differences at element {err_pos}: "
                         f"abs error {abs_err:.3g} (tol {abs_tol}), rel error {rel_err:.3g} (tol {rel_tol})\n"
                         f"analytic: {np.ravel(analytic)[:8]}\nnumeric:  {np.ravel(numeric)[:8]}")


class numeric_grad:
    """Theano's one-sided finite differences: grad_i = (f(x + eps e_i) - f(x)) / eps, all inputs
    packed into one vector of the most precise dtype among them (its `working dtype`)."""

    type_eps = {"float64": 1e-7, "float32": 3e-4, "float16": 1e-1}

    def __init__(self, f, pt, eps=None, out_type=None):
        packed = not isinstance(pt, (list, tuple))
        apt = [np.array(p) for p in ([pt] if packed else pt)]
        dtypes = [str(p.dtype) for p in apt]
        working = min((self.type_eps[d], d) for d in dtypes)[1]
        if eps is None:
            eps = max(self.type_eps[d] for d in dtypes)
        total = int(sum(p.size for p in apt))
        x = np.empty(total, dtype=working)
        gx = np.empty(total, dtype=working)
        self.gf, views, pos = [], [], 0
        for p in apt:
            views.append(x[pos:pos + p.size].reshape(p.shape))
            self.gf.append(gx[pos:pos + p.size].reshape(p.shape))
            views[-1][...] = p
            pos += p.size

        def call():
            return f(*[v.astype(d) for v, d in zip(views, dtypes)])

        f_x = call()
        x_copy = x.copy()
        for i in range(total):
            x[:] = x_copy
            x[i] += eps
            gx[i] = (call() - f_x) / eps
        if packed:
            self.gf = self.gf[0]

    @staticmethod
    def abs_rel_err(a, b):
        abs_err = np.asarray(abs(a - b))
        rel_err = np.asarray(abs_err / np.maximum(abs(a) + abs(b), 1e-8))
        return abs_err, rel_err

    def abs_rel_errors(self, g_pt):
        if len(g_pt) != len(self.gf):
            raise ValueError(f"argument has wrong number of elements: {len(g_pt)}")
        errs = []
        for i, (a, b) in enumerate(zip(g_pt, self.gf)):
            if np.shape(a) != b.shape:
                raise ValueError(f"argument element {i} has wrong shape {(np.shape(a), b.shape)}")
            errs.append(self.abs_rel_err(np.asarray(a), b))
        return errs

    def max_err(self, g_pt, abs_tol, rel_tol):
        """(input index, flat position, abs error, rel error) of the worst element, judged by
        min(abs_err / abs_tol, rel_err / rel_tol)."""
        pos, errs, abs_errs, rel_errs = [], [], [], []
        for abs_err, rel_err in self.abs_rel_errors(g_pt):
            if not np.all(np.isfinite(abs_err)):
                raise ValueError("abs_err not finite", repr(abs_err))
            if not np.all(np.isfinite(rel_err)):
                raise ValueError("rel_err not finite", repr(rel_err))
            scaled = np.minimum(abs_err / abs_tol, rel_err / rel_tol)
            k = int(scaled.argmax()) if scaled.size else 0
            pos.append(k)
            errs.append(scaled.flatten()[k] if scaled.size else 0.0)
            abs_errs.append(abs_err.flatten()[k] if scaled.size else 0.0)
            rel_errs.append(rel_err.flatten()[k] if scaled.size else 0.0)
        arg = int(np.argmax(errs))
        return arg, pos[arg], abs_errs[arg], rel_errs[arg]


# Theano's verify_grad tolerances (absolute and relative) per input dtype.
_type_tol = {"float16": 5e-2, "float32": 1e-2, "float64": 1e-4}


def verify_grad(fun, pt, n_tests=2, rng=None, eps=None, out_type=None, abs_tol=None, rel_tol=None,
                mode=None, cast_to_output_type=False, no_debug_ref=True):
    """Check `fun`'s symbolic gradient against finite differences, as Theano's verify_grad:
    the cost is sum(r * fun(*pt)) for a random float64 projection r in [0.5, 1.5); the
    numeric gradient is numeric_grad's (eps 3e-4 for float32, 1e-7 for float64), and the
    check fails where both the absolute and the relative error exceed the dtype's tolerance
    (1e-2 for float32, 1e-4 for float64). The output may be integer-valued (argmax): its
    gradient is zero.

    fun: a Python function of symbolic variables returning one symbolic output.
    pt: list of numpy arrays, the point at which to check.
    """
    from .compile.function import function
    from .compile.shared import shared
    from .tensor.type import TensorType
    if rng is None:
        rng = np.random.RandomState(0)
    pt = [np.array(p) for p in pt]
    for i, p in enumerate(pt):
        if str(p.dtype) not in ("float16", "float32", "float64"):
            raise TypeError(f"verify_grad can work only with floating point inputs, but input {i} "
                            f"has dtype \"{p.dtype}\".")
    if abs_tol is None:
        abs_tol = max(_type_tol[str(p.dtype)] for p in pt)
    if rel_tol is None:
        rel_tol = max(_type_tol[str(p.dtype)] for p in pt)

    tensors = [TensorType(str(p.dtype), shape=(None,) * p.ndim)(f"input_{i}") for i, p in enumerate(pt)]
    out = fun(*tensors)
    if isinstance(out, list):
        raise NotImplementedError("cant (yet) autotest gradient of fun with multiple outputs")
    out = as_tensor_variable(out)
    f_out = function(tensors, out, mode=mode, on_unused_input="ignore")
    out_shape = np.shape(f_out(*[p.copy() for p in pt]))

    def random_projection():
        plain = _rand(rng, out_shape) + 0.5
        if cast_to_output_type and out.dtype == "float32":
            return np.array(plain, out.dtype)
        return plain

    proj = shared(random_projection(), borrow=True, name="random_projection")
    from .tensor import math as T
    cost = T.sum(proj * out)
    f_cost = function(tensors, cost, mode=mode, on_unused_input="ignore")
    grads = grad(cost, tensors, disconnected_inputs="ignore")
    f_grad = function(tensors, grads, mode=mode, on_unused_input="ignore")

    for test in range(n_tests):
        num = numeric_grad(lambda *a: float(f_cost(*a)), [p.copy() for p in pt], eps, out_type)
        analytic = f_grad(*[p.copy() for p in pt])
        arg, pos, abs_err, rel_err = num.max_err(analytic, abs_tol, rel_tol)
        if abs_err > abs_tol and rel_err > rel_tol:
            raise GradientError(arg, abs_err, rel_err, abs_tol, rel_tol, analytic[arg], num.gf[arg], pos)
        if test < n_tests - 1:
            proj.set_value(random_projection(), borrow=True)


def _rand(rng, shape):
    if isinstance(rng, np.random.RandomState):
        return rng.rand(*shape)
    return rng.random(shape)


from .gradient_ops import (ConsiderConstant, DisconnectedGrad, GradClip, GradScale, ZeroGrad,  # noqa: E402,F401
                           consider_constant, disconnected_grad, grad_clip, grad_not_implemented, grad_scale,
                           grad_undefined, zero_grad)
from .gradient_types import DisconnectedType, NullType, disconnected_type  # noqa: E402,F401


def subgraph_grad(wrt, end, start=None, cost=None, details=False):
    """Theano's subgraph_grad: gradients of `cost` and/or of the known gradients `start`
    ({variable: gradient}) with respect to `wrt` and `end`, stopping at `end` (treated as
    constant), so a long graph can be differentiated piece by piece. Disconnected inputs get
    zeros. Returns (wrt grads, end grads), plus (start grads, cost grads) if details."""
    if cost is None and start is None:
        raise ValueError("subgraph_grad: give a cost or start gradients")
    if not isinstance(end, list) or not isinstance(wrt, list):
        raise TypeError("subgraph_grad: wrt and end must be lists")
    if start is not None and not isinstance(start, dict):
        raise TypeError("subgraph_grad: start must be a dict {variable: gradient}")
    params = list(dict.fromkeys(wrt + end))
    start_grads = cost_grads = None
    if start is not None:
        start_grads = list(grad(None, params, known_grads=start, consider_constant=end,
                                disconnected_inputs="ignore"))
    if cost is not None:
        cost_grads = list(grad(cost, params, consider_constant=end, disconnected_inputs="ignore"))
    if start is None:
        grads = cost_grads
    else:
        grads = list(start_grads)
        if cost_grads is not None:
            grads = [g + c for g, c in zip(grads, cost_grads)]
    by_param = dict(zip(params, grads))
    wrt_grads = [by_param[k] for k in wrt]
    end_grads = [by_param[k] for k in end]
    if details:
        return wrt_grads, end_grads, start_grads, cost_grads
    return wrt_grads, end_grads


# -- Lop, Rop, jacobian, hessian (Theano's theano.gradient API) -------------------------------

def _as_list(x):
    return (list(x), True) if isinstance(x, (list, tuple)) else ([x], False)


def _operator_args(name, f, wrt, eval_points, pair_with_f):
    """The user's line, (f as a list, was a list), (wrt as a list, was a list) and eval_points as a
    list, for Lop / Rop, whose eval_points pair with f (Lop) or with wrt (Rop)."""
    from .graph.trace import user_trace
    trace = user_trace()
    fs, wrts, vs = _as_list(f), _as_list(wrt), _as_list(eval_points)[0]
    paired, what = (fs[0], "expressions") if pair_with_f else (wrts[0], "variables in wrt")
    if len(paired) != len(vs):
        raise ValueError(with_trace(f"{name}: {len(paired)} {what} but {len(vs)} eval_points", trace))
    return trace, fs, wrts, vs


def Lop(f, wrt, eval_points, consider_constant=None, disconnected_inputs="raise"):
    """Theano's Lop: the vector-Jacobian product sum_j eval_points[j] . d f[j] / d wrt (the
    gradient of f with eval_points as the gradients of its outputs). Lists in, lists out."""
    trace, (fs, _), (wrts, as_list), vs = _operator_args("Lop", f, wrt, eval_points, pair_with_f=True)
    known = {}
    for fe, v in zip(fs, vs):
        fe, v = as_tensor_variable(fe), as_tensor_variable(v)
        if v.ndim != fe.ndim:
            raise TypeError(with_trace(f"Lop: eval_point {v.describe()} must have the ndim of {fe.describe()}", trace))
        known[fe] = v
    res = grad(None, wrts, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs,
               known_grads=known)
    return res if as_list else res[0]


def Rop(f, wrt, eval_points, disconnected_outputs="raise", return_disconnected="zero"):
    """Theano's Rop: the Jacobian-vector product sum_i d f / d wrt[i] . eval_points[i], for every
    differentiable op. It is the transpose of a Lop: with u a stand-in for the gradient of f,
    Lop(f, wrt, u) is linear in u, and its gradient with respect to u, dotted with
    eval_points, is the Rop. The result does not depend on u's value; u is then replaced by f."""
    from .graph.basic import clone_replace
    from .tensor import math as M
    trace, (fs, f_list), (wrts, _), vs = _operator_args("Rop", f, wrt, eval_points, pair_with_f=False)
    vs = [as_tensor_variable(v) for v in vs]
    for w, v in zip(wrts, vs):
        if v.ndim != w.ndim:
            raise TypeError(with_trace(f"Rop: eval_point {v.describe()} must have the ndim of {w.describe()}", trace))
    results = []
    for fe in fs:
        fe = as_tensor_variable(fe)
        if not is_float(fe.dtype):
            raise TypeError(with_trace(f"Rop: {fe.describe()} is not a float expression", trace))
        u = fe.type()
        lops = grad(None, wrts, disconnected_inputs="ignore", known_grads={fe: u}, return_disconnected="None")
        terms = [M.sum(lo * v) for lo, v in zip(lops, vs) if lo is not None]
        if not terms:
            msg = f"Rop: {fe.describe()} does not depend on any of wrt"
            if disconnected_outputs == "raise":
                raise DisconnectedInputError(with_trace(msg, trace))
            if disconnected_outputs == "warn":
                warnings.warn(msg, stacklevel=2)
            if return_disconnected == "None":
                results.append(None)
            else:
                from .tensor.basic import zeros_like
                results.append(zeros_like(fe))
            continue
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        r = grad(total, u, disconnected_inputs="ignore")
        r = clone_replace([r], {u: fe})[0]
        results.append(r if r.dtype == fe.dtype else _cast(r, fe.dtype))
    return results if f_list else results[0]


def _cast(x, dtype):
    from .tensor.basic import cast
    return cast(x, dtype)


def jacobian(expression, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Theano's jacobian: d expression / d wrt, one row per element of the vector `expression`
    (shape expression.shape + wrt.shape); a scalar expression gives its gradient. With a static
    length the rows are unrolled into the graph (which stays differentiable); otherwise an
    IndexMap computes them at run time."""
    from .graph.trace import user_trace
    from .tensor.join import stack
    trace = user_trace()
    expression = as_tensor_variable(expression)
    wrts, as_list = _as_list(wrt)
    if expression.ndim == 0:
        res = grad(expression, wrts, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs)
        return res if as_list else res[0]
    if expression.ndim != 1:
        raise TypeError(with_trace(f"jacobian expects a vector expression, got {expression.describe()}; "
                                   f"flatten it first", trace))
    if not is_float(expression.dtype):
        raise TypeError(with_trace(f"jacobian: {expression.describe()} is not a float expression", trace))
    n = expression.type.shape[0]
    if n is None:
        res = _rows_at_run_time(expression, wrts, consider_constant, disconnected_inputs)
        return res if as_list else res[0]
    rows = [grad(expression[i], wrts, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs)
            for i in range(n)]
    res = [stack([r[k] for r in rows]) if n else _empty_rows(w) for k, w in enumerate(wrts)]
    return res if as_list else res[0]


def _rows_at_run_time(expression, wrts, consider_constant, disconnected_inputs):
    """d expression[i] / d wrt for i < len(expression), a length known only at run time: one
    inner graph for row i, run for every i (symcnn.index_map.IndexMap; Theano uses scan)."""
    from .index_map import index_map
    from .tensor.basic import shape
    grad(expression.sum(), wrts, consider_constant=consider_constant,
         disconnected_inputs=disconnected_inputs)  # raises now for a disconnected wrt, as the rows would
    return index_map(shape(expression)[0],
                     lambda i: grad(expression[i], wrts, consider_constant=consider_constant,
                                    disconnected_inputs="ignore"),
                     [[shape(w)[d] for d in range(w.ndim)] for w in wrts])


def _empty_rows(w):
    from .tensor.join import alloc
    from .tensor.basic import shape
    return alloc(np.zeros((), dtype=w.dtype), 0, *[shape(w)[d] for d in range(w.ndim)])


def hessian(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Theano's hessian: for each vector in wrt, the matrix of second derivatives of the scalar cost."""
    from .graph.trace import user_trace
    trace = user_trace()
    cost = as_tensor_variable(cost)
    if cost.ndim != 0:
        raise TypeError(with_trace(f"hessian: the cost must be a scalar, got {cost.describe()}", trace))
    wrts, as_list = _as_list(wrt)
    res = []
    for w in wrts:
        if w.ndim != 1:
            raise TypeError(with_trace(f"hessian: wrt must be vectors, got {w.describe()}", trace))
        g = grad(cost, w, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs)
        if g.type.shape[0] is None and w.type.shape[0] is not None:
            from .tensor.basic import reshape
            g = reshape(g, (w.type.shape[0],), ndim=1)
        n = w.type.shape[0]
        if n is None:
            res.append(_rows_at_run_time(g, [w], consider_constant, "ignore")[0])
            continue
        rows = [grad(g[i], w, consider_constant=consider_constant, disconnected_inputs="ignore") for i in range(n)]
        from .tensor.join import stack
        res.append(stack(rows) if n else _empty_rows(w))
    return res if as_list else res[0]
