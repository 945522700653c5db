"""Small statistics helpers."""

from stats.core import mean, median, mode

__all__ = ["mean", "median", "mode"]
