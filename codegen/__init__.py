"""The native backend: lowers symcnn function graphs to LLVM IR and runs them
as machine code for the host CPU. Importing it registers the 'native' mode."""
from symcnn.compile.mode import register_linker

from .runtime import NativeRunner

register_linker("native", NativeRunner)
