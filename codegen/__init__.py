"""The native backend: lowers symcnn function graphs to LLVM IR and runs them as machine code
for the target CPU (the host by default, see target.py). It provides the 'native', 'debug',
'nanguard', 'boundscheck' and 'profile' modes (modes.py), which symcnn finds through the
`symcnn.backends` entry points declared in pyproject.toml."""
import os

from symcnn.graph.trace import hide_frames_in

# Errors raised in this package name the user's line, not ours (first, before any code runs).
hide_frames_in(os.path.dirname(os.path.abspath(__file__)))

from .debug import DebugModeError, DebugRunner  # noqa: F401,E402
from .guard import BoundsCheckRunner, NanGuardError, NanGuardRunner  # noqa: F401,E402
from .profile import ProfileRunner  # noqa: F401,E402
from .runtime import NativeRunner  # noqa: F401,E402
