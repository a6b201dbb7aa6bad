"""Deprecated spelling of :mod:`res2net.metrics` (renamed in 0.2.0: beside ``validation.py`` the old name
read as a second validation entry point). Importing it warns once and gives the same objects."""

from __future__ import annotations

import warnings

from .metrics import EvalResult, autocast_context, evaluate

__all__ = ["EvalResult", "autocast_context", "evaluate"]

warnings.warn("res2net.evaluate is deprecated: import from res2net.metrics", DeprecationWarning, stacklevel=2)
