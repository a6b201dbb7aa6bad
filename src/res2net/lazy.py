"""Package namespaces whose names are imported on first use (PEP 562).

``res2net --help`` and every subcommand's ``--help`` must answer without importing torch
(which alone takes seconds), yet ``from res2net.data import ImageFolderDataset`` must keep
working. A package ``__init__`` therefore names where each public name lives and imports that
submodule only when the name is first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose name ``n`` lives in submodule
    ``exports[n]`` (relative, e.g. ``"folder"``); a name, once imported, is cached in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
