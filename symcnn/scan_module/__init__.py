"""Loops in a graph: Theano's scan, map, reduce, foldl, foldr and until.

DESIGN_PLACEHOLDER
"""
from .scan import scan  # noqa: F401
from .scan_op import Scan, ScanInfo  # noqa: F401
from .scan_utils import until  # noqa: F401
from .scan_views import foldl, foldr, map, reduce  # noqa: F401
