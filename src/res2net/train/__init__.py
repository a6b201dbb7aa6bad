"""Training: the run loop, optimizers, schedules, checkpoints and distributed set-up."""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "Trainer": "engine",
    "TrainResult": "engine",
    "train": "engine",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
