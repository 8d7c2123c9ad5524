from .basic import Apply, Constant, Variable, ancestors, clone_replace, graph_inputs, io_toposort
from .fg import FunctionGraph
from .op import Op
from .trace import Trace, user_trace
from .type import Type
