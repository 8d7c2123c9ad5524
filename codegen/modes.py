"""The modes of the native backend, as the Backend objects the `symcnn.backends` entry points
of pyproject.toml name. Each lowers a graph in the caller's thread (a graph the backend cannot
run is rejected there) and generates its machine code in Lowered.finish()."""
from symcnn.compile.backend import Backend
from symcnn.rewrite import RewriteQuery

from .debug import DebugRunner
from .guard import BoundsCheckRunner, NanGuardRunner
from .profile import ProfileRunner
from .runtime import NativeRunner

native = Backend("native", NativeRunner.lower)
debug = Backend("debug", DebugRunner.lower)
# The NaN guard checks each kernel: without fusion, each kernel is one op of your graph.
nanguard = Backend("nanguard", NanGuardRunner.lower, rewrites=RewriteQuery(exclude=("fuse",)))
boundscheck = Backend("boundscheck", BoundsCheckRunner.lower)
profile = Backend("profile", ProfileRunner.lower)
