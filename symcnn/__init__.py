"""symcnn: a Theano-style symbolic graph compiler for training CNNs on the CPU.

Port Theano code by changing imports: `import symcnn as theano`,
`import symcnn.tensor as T`.
"""
from .config import config  # noqa: F401
from .configparser import change_flags  # noqa: F401
from .compile.function import Function, function  # noqa: F401
from .compile.mode import Mode  # noqa: F401
from .compile.shared import SharedVariable, shared  # noqa: F401
from .compile.io import In, Out  # noqa: F401
from .graph.clone import clone  # noqa: F401
from .gradient import grad, verify_grad  # noqa: F401
from .graph import Apply, Constant, FunctionGraph, Op, Variable  # noqa: F401
from . import tensor  # noqa: F401
from . import printing  # noqa: F401
from . import gradient  # noqa: F401
from . import ifelse  # noqa: F401,E402  (theano.ifelse.ifelse)
from . import scan_module  # noqa: F401
from .scan_module import foldl, foldr, map, reduce, scan  # noqa: F401

__version__ = "0.1.0"
