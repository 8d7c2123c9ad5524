"""Settings of the whole suite: every rewrite is followed by a check of the graph's bookkeeping
(config.check_graph, SYMCNN_FLAGS=check_graph=1), so a rewrite that corrupts it fails by name."""
from symcnn.config import config

config.check_graph = True
