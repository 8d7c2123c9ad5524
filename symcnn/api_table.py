"""The table of Theano's everyday API and what symcnn has of it, generated from the code.

`python -m symcnn.api_table` prints the table; `python -m symcnn.api_table --write README.md`
puts it between the README's `<!-- api-table -->` markers. tests/test_api_table.py checks that
the README holds exactly what this module generates, so the table cannot drift from the code.
A name counts as present when `import`/`getattr` finds it under `symcnn` (for `theano.X`) and,
where arguments are listed, its signature accepts them.
"""
import importlib
import inspect
import sys

# (Theano name, arguments that must be accepted); grouped as they are printed.
GROUPS = [
    ("theano", [
        ("theano.function", ("inputs", "outputs", "updates", "givens", "mode", "name", "allow_input_downcast",
                             "on_unused_input")),
        ("theano.shared", ("value", "name", "strict", "allow_downcast", "borrow")),
        ("theano.In", ("variable", "name", "value", "borrow", "strict", "allow_downcast", "mutable")),
        ("theano.Out", ("variable", "borrow")),
        ("theano.clone", ("replace", "strict", "share_inputs")),
        ("theano.grad", ()),
        ("theano.scan", ()),
        ("theano.Mode", ()),
        ("theano.change_flags", ()),
        ("theano.configparser.change_flags", ()),
        ("theano.config.floatX", ()),
        ("theano.config.mode", ()),
        ("theano.config.compute_test_value", ()),
        ("theano.config.warn", ()),
        ("theano.ifelse.ifelse", ("condition", "then_branch", "else_branch", "name")),
        ("theano.printing.Print", ("message", "attrs", "global_fn")),
        ("theano.printing.debugprint", ()),
        ("theano.printing.pydotprint", ()),
        ("theano.compile.function_module.Function.copy", ("share_memory", "swap", "delete_updates", "name")),
        ("theano.compile.function_module.Function.__reduce__", ()),
        ("theano.tensor.shared_randomstreams.RandomStreams", ()),
        ("theano.sandbox.rng_mrg.MRG_RandomStreams", ()),
    ]),
    ("theano.gradient", [
        ("theano.gradient.grad", ("cost", "wrt", "consider_constant", "disconnected_inputs", "known_grads")),
        ("theano.gradient.verify_grad", ()),
        ("theano.gradient.jacobian", ("expression", "wrt", "consider_constant", "disconnected_inputs")),
        ("theano.gradient.hessian", ("cost", "wrt", "consider_constant", "disconnected_inputs")),
        ("theano.gradient.Rop", ("f", "wrt", "eval_points")),
        ("theano.gradient.Lop", ("f", "wrt", "eval_points")),
        ("theano.gradient.zero_grad", ()),
        ("theano.gradient.disconnected_grad", ()),
        ("theano.gradient.grad_clip", ()),
        ("theano.gradient.grad_scale", ()),
        ("theano.gradient.consider_constant", ()),
        ("theano.gradient.grad_undefined", ()),
        ("theano.gradient.grad_not_implemented", ()),
        ("theano.gradient.subgraph_grad", ()),
    ]),
    ("theano.tensor: variables", [
        ("theano.tensor.scalar", ()), ("theano.tensor.vector", ()), ("theano.tensor.matrix", ()),
        ("theano.tensor.row", ()), ("theano.tensor.col", ()), ("theano.tensor.tensor3", ()),
        ("theano.tensor.tensor4", ()), ("theano.tensor.tensor", ()),
        ("theano.tensor.iscalar", ()), ("theano.tensor.lscalar", ()), ("theano.tensor.fmatrix", ()),
        ("theano.tensor.dtensor4", ()), ("theano.tensor.ivector", ()),
        ("theano.tensor.scalars", ()), ("theano.tensor.iscalars", ()), ("theano.tensor.fscalars", ()),
        ("theano.tensor.vectors", ()), ("theano.tensor.matrices", ()), ("theano.tensor.fmatrices", ()),
        ("theano.tensor.tensor3s", ()),
        ("theano.tensor.constant", ()), ("theano.tensor.as_tensor_variable", ()),
        ("theano.tensor.get_scalar_constant_value", ()), ("theano.tensor.NoneConst", ()),
        ("theano.tensor.TensorVariable.sum", ("axis", "dtype", "keepdims", "acc_dtype")),
        ("theano.tensor.TensorVariable.mean", ("axis", "dtype", "keepdims", "acc_dtype")),
        ("theano.tensor.TensorVariable.max", ("axis", "keepdims")),
        ("theano.tensor.TensorVariable.argmax", ("axis", "keepdims")),
        ("theano.tensor.TensorVariable.reshape", ("shape", "ndim")),
        ("theano.tensor.TensorVariable.flatten", ("ndim",)),
        ("theano.tensor.TensorVariable.dimshuffle", ()),
        ("theano.tensor.TensorVariable.dot", ()),
        ("theano.tensor.TensorVariable.astype", ()),
        ("theano.tensor.TensorVariable.eval", ()),
        ("theano.tensor.TensorVariable.T", ()),
        ("theano.tensor.TensorVariable.__bool__", ()),
    ]),
    ("theano.tensor: operations", [
        ("theano.tensor.dot", ()), ("theano.tensor.tensordot", ("a", "b", "axes")),
        ("theano.tensor.batched_dot", ()), ("theano.tensor.batched_tensordot", ()), ("theano.tensor.outer", ()),
        ("theano.tensor.sum", ("axis", "dtype", "keepdims", "acc_dtype")),
        ("theano.tensor.mean", ("axis", "dtype", "keepdims", "acc_dtype")),
        ("theano.tensor.prod", ("axis", "dtype", "keepdims", "acc_dtype", "no_zeros_in_input")),
        ("theano.tensor.var", ("axis", "ddof", "keepdims", "corrected")),
        ("theano.tensor.std", ("axis", "ddof", "keepdims", "corrected")),
        ("theano.tensor.max", ()), ("theano.tensor.min", ()), ("theano.tensor.argmax", ()),
        ("theano.tensor.argmin", ()), ("theano.tensor.max_and_argmax", ()),
        ("theano.tensor.sort", ("a", "axis", "kind", "order")),
        ("theano.tensor.argsort", ("a", "axis", "kind", "order")),
        ("theano.tensor.abs_", ()), ("theano.tensor.exp", ()), ("theano.tensor.log", ()),
        ("theano.tensor.log1p", ()), ("theano.tensor.sqrt", ()), ("theano.tensor.sqr", ()),
        ("theano.tensor.tanh", ()), ("theano.tensor.pow", ()), ("theano.tensor.power", ()),
        ("theano.tensor.divmod", ()), ("theano.tensor.maximum", ()), ("theano.tensor.minimum", ()),
        ("theano.tensor.clip", ()), ("theano.tensor.switch", ()), ("theano.tensor.eq", ()),
        ("theano.tensor.neq", ()), ("theano.tensor.lt", ()), ("theano.tensor.ge", ()),
        ("theano.tensor.isclose", ()), ("theano.tensor.allclose", ()),
        ("theano.tensor.floor", ()), ("theano.tensor.ceil", ()),
        ("theano.tensor.round", ("a", "mode")),
        ("theano.tensor.concatenate", ("tensor_list", "axis")), ("theano.tensor.stack", ()),
        ("theano.tensor.join", ()), ("theano.tensor.zeros", ("shape", "dtype")),
        ("theano.tensor.ones", ("shape", "dtype")), ("theano.tensor.alloc", ()),
        ("theano.tensor.zeros_like", ()), ("theano.tensor.ones_like", ()), ("theano.tensor.arange", ()),
        ("theano.tensor.reshape", ()), ("theano.tensor.flatten", ()), ("theano.tensor.shape", ()),
        ("theano.tensor.cast", ()), ("theano.tensor.transpose", ()),
        ("theano.tensor.set_subtensor", ()), ("theano.tensor.inc_subtensor", ()),
        ("theano.tensor.grad", ()), ("theano.tensor.Rop", ()), ("theano.tensor.Lop", ()),
        ("theano.tensor.xlogx.xlogx", ()), ("theano.tensor.xlogx.xlogy0", ()),
    ]),
    ("theano.tensor.nnet and signal", [
        ("theano.tensor.nnet.sigmoid", ()), ("theano.tensor.nnet.softmax", ()),
        ("theano.tensor.nnet.logsoftmax", ()), ("theano.tensor.nnet.relu", ("x", "alpha")),
        ("theano.tensor.nnet.softplus", ()), ("theano.tensor.nnet.binary_crossentropy", ("output", "target")),
        ("theano.tensor.nnet.categorical_crossentropy", ("coding_dist", "true_dist")),
        ("theano.tensor.nnet.conv2d", ("input", "filters", "input_shape", "filter_shape", "border_mode",
                                        "subsample", "filter_flip", "filter_dilation")),
        ("theano.tensor.nnet.conv.conv2d", ()),
        ("theano.tensor.nnet.abstract_conv.get_conv_output_shape", ()),
        ("theano.tensor.nnet.bn.batch_normalization_train", ("inputs", "gamma", "beta", "axes", "epsilon",
                                                            "running_average_factor", "running_mean",
                                                            "running_var")),
        ("theano.tensor.nnet.bn.batch_normalization_test", ("inputs", "gamma", "beta", "mean", "var", "axes",
                                                           "epsilon")),
        ("theano.tensor.nnet.bn.batch_normalization", ("inputs", "gamma", "beta", "mean", "std", "mode")),
        ("theano.tensor.signal.pool.pool_2d", ("input", "ws", "ignore_border", "stride", "pad", "mode")),
        ("theano.tensor.signal.pool.max_pool_2d_same_size", ()),
    ]),
]


def _resolve(theano_name):
    """The symcnn object for a `theano.` name, or None. Attributes are looked up from the
    package down (importing submodules on the way); a module is never a match for a name that
    Theano defines as a function or class."""
    parts = theano_name.split(".")[1:]
    if parts[:2] == ["compile", "function_module"]:  # Theano's Function class lives there
        parts = ["Function"] + parts[3:]
    obj = importlib.import_module("symcnn")
    for part in parts:
        nxt = inspect.getattr_static(obj, part, None) if isinstance(obj, type) else getattr(obj, part, None)
        if nxt is None and inspect.ismodule(obj):
            try:
                nxt = importlib.import_module(f"{obj.__name__}.{part}")
            except ImportError:
                nxt = None
            if nxt is not None and not _ours(nxt):
                nxt = None
        if nxt is None:
            return None
        obj = nxt
    return None if inspect.ismodule(obj) else obj


def _ours(module):
    """A module of this symcnn tree (an editable install elsewhere may answer imports of
    submodules this tree does not have)."""
    import os
    root = os.path.dirname(os.path.abspath(importlib.import_module("symcnn").__file__))
    return os.path.abspath(getattr(module, "__file__", "") or "").startswith(root + os.sep)


def _accepts(obj, args):
    if not args:
        return True
    target = obj.__init__ if isinstance(obj, type) else obj
    target = getattr(target, "__func__", target)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return True
    return all(a in params for a in args)


def rows():
    """(group, Theano name with its checked arguments, present) for every entry."""
    out = []
    for group, entries in GROUPS:
        for name, args in entries:
            obj = _resolve(name)
            present = obj is not None and _accepts(obj, args)
            label = f"{name}({', '.join(a + '=' for a in args)})" if args else name
            out.append((group, label, present))
    return out


def markdown():
    lines = []
    current = None
    table = rows()
    have = sum(1 for _, _, p in table if p)
    lines.append(f"{have} of {len(table)} names of Theano's everyday API are present "
                 f"(generated by `python -m symcnn.api_table`).")
    for group, label, present in table:
        if group != current:
            lines += ["", f"**{group}**", "", "| Theano | symcnn |", "| --- | --- |"]
            current = group
        lines.append(f"| `{label}` | {'yes' if present else 'no'} |")
    return "\n".join(lines) + "\n"


START, END = "<!-- api-table:start -->", "<!-- api-table:end -->"


def readme_section(text):
    """The text between the README's markers (None if they are missing)."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(path):
    with open(path) as f:
        text = f.read()
    if readme_section(text) is None:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write(head + START + "\n" + markdown() + END + tail)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(sys.argv[2])
    else:
        sys.stdout.write(markdown())
