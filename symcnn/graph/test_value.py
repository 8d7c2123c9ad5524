"""config.compute_test_value: run each new node on its inputs' test values while the graph is
built, so a shape or dtype error shows at the line that builds the faulty expression."""
import warnings

from .basic import Constant
from .trace import reraise_with_trace, user_trace, with_trace


def test_value(var):
    """The test value of a variable: a constant's data, a shared variable's value, or
    `var.tag.test_value`; raises AttributeError when it has none."""
    if isinstance(var, Constant):
        return var.data
    if getattr(var, "is_shared", False):
        return var.container[0]
    return var.tag.test_value


def compute_test_value(node, mode):
    """Set node.outputs[k].tag.test_value from the inputs' test values. mode 'raise'/'pdb': an
    input without one is an error ('pdb' opens the debugger there); 'warn': a warning and no
    value; 'ignore': no value."""
    values = []
    for i, var in enumerate(node.inputs):
        try:
            values.append(test_value(var))
        except AttributeError:
            msg = with_trace(f"Cannot compute test value: input {i} ({var.describe()}) of {node.op} has no "
                             f"test value; set {var}.tag.test_value, or config.compute_test_value = 'off'",
                             user_trace())
            if mode == "warn":
                warnings.warn(msg, stacklevel=4)
                return
            if mode == "ignore":
                return
            if mode == "pdb":  # pragma: no cover (interactive)
                import pdb
                import sys
                pdb.post_mortem(sys.exc_info()[2])
            raise ValueError(msg) from None
    cells = [[None] for _ in node.outputs]
    try:
        node.op.perform(node, values, cells)
    except Exception as e:
        from ..compile.linker import describe_inputs
        reraise_with_trace(e, user_trace(), f"{node.op} with test values ({describe_inputs(values)})")
    for var, cell in zip(node.outputs, cells):
        var.tag.test_value = cell[0]
