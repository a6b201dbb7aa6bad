"""The completion markers of the demo datasets: written last, so that a folder whose marker
records the same arguments was written completely and need not be written again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def recorded_counts(marker: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The counts ``marker`` recorded when it was made with ``params``; None if it is missing,
    unreadable or from other arguments."""
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("params") != params:
        return None
    counts = saved.get("counts", {})
    return dict(counts) if isinstance(counts, dict) else None


def write_marker(marker: Path, params: dict[str, Any], counts: dict[str, Any]) -> None:
    marker.write_text(json.dumps({"params": params, "counts": counts}, indent=1))
