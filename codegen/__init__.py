"""The native backend: lowers symcnn function graphs to LLVM IR and runs them as machine code
for the target CPU (the host by default, see target.py). It provides the 'native', 'debug',
'nanguard', 'boundscheck' and 'profile' modes (modes.py), which symcnn finds through the
`symcnn.backends` entry points declared in pyproject.toml."""
import os

from symcnn.graph.trace import hide_frames_in

# Errors raised in this package name the user's line, not ours (first, before any code runs).
hide_frames_in(os.path.dirname(os.path.abspath(__file__)))

# The compile helper process (jit.py) starts now, on the other core, while the rest of the backend
# is imported and the first graph is rewritten and lowered: a cold compile's first parts then find
# it ready instead of waiting ~0.15 s for its interpreter and LLVM to load.
from . import jit as _jit  # noqa: E402
_jit.start_helper()

from .debug import DebugModeError, DebugRunner  # noqa: F401,E402
from .guard import BoundsCheckRunner, NanGuardError, NanGuardRunner  # noqa: F401,E402
from .profile import ProfileRunner  # noqa: F401,E402
from .runtime import NativeRunner  # noqa: F401,E402
