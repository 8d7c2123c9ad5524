"""Graph rewrites: canonicalize -> stabilize -> specialize -> fuse -> inplace."""
from .core import PHASES, RewriteQuery, graph_rewrite, node_rewrite, registered, rewrite_graph  # noqa: F401
