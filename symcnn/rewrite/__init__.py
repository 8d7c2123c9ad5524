"""Graph rewrites: canonicalize -> stabilize -> specialize -> fuse. (In-place work is the native
memory plan's, by the rule of inplace.py.)"""
from .core import PHASES, RewriteQuery, graph_rewrite, node_rewrite, registered, rewrite_graph  # noqa: F401
