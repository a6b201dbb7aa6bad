"""``$RES2NET_HOME``: the one folder for everything this package caches on a machine.

Downloaded weights, OpenVINO's compiled models and the CPU-training kernels' build live in
sub-folders of it (default ``~/.cache/res2net``), so one variable moves or isolates them all
(the tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.cache/res2net"


def home_dir() -> Path:
    """``$RES2NET_HOME``, or ``~/.cache/res2net``."""
    return Path(os.environ.get("RES2NET_HOME") or DEFAULT_HOME).expanduser()
