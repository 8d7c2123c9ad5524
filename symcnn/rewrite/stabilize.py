"""Numerical stability rewrites."""
