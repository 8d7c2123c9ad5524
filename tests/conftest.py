"""Settings of the whole suite: every rewrite is followed by a check of the graph's bookkeeping
(config.check_graph, SYMCNN_FLAGS=check_graph=1), so a rewrite that corrupts it fails by name.
A graph that leaves sizes open runs the general kernels it declares, not a second compile for its
arguments' sizes (config.specialize_shapes, compile/specialize.py): the tests of kernels then test
those kernels, and the suite compiles each function once; tests/compile/test_specialize.py turns
it on."""
from symcnn.config import config

config.check_graph = True
config.specialize_shapes = False
