"""The native backend: lowers symcnn function graphs to LLVM IR and runs them as machine code
for the target CPU (the host by default, see target.py). Importing it registers the 'native',
'debug', 'nanguard', 'boundscheck' and 'profile' modes."""
from symcnn.compile.mode import register_linker

from .debug import DebugModeError, DebugRunner  # noqa: F401
from .guard import BoundsCheckRunner, NanGuardError, NanGuardRunner  # noqa: F401
from .profile import ProfileRunner
from .runtime import NativeRunner

register_linker("native", NativeRunner)
register_linker("debug", DebugRunner)
register_linker("nanguard", NanGuardRunner)
register_linker("boundscheck", BoundsCheckRunner)
register_linker("profile", ProfileRunner)
