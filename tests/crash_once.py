"""``train.py`` with one injected SIGKILL, for the fault tests in ``test_reliability.py``.

The product has no test hooks; this wrapper patches the running process instead and then
calls the real entry point (``res2net.cli.train_main``) with its arguments. The crash
happens only while the file named by ``CRASH_MARKER`` does not exist (it is created just
before the kill), so a process restarted by torchrun or by the test runs clean.

Environment:
    CRASH_MARKER: path of the once-only marker file (required).
    CRASH_AT_STEP: SIGKILL when this process starts its N-th optimizer step (1-based).
    CRASH_IN_SAVE: SIGKILL half-way through writing the first checkpoint of epoch E
        (after half of its bytes reached the temporary file).
    CRASH_RANK: only the process with this ``RANK`` crashes (default: any process).

Usage: ``python tests/crash_once.py TRAIN_ARGS...`` (also as torchrun's script).
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import torch

from res2net.cli import script_main, train_main
from res2net.train.step import StepRunner


def crash(marker: Path) -> None:
    """Create the marker, then die as an OOM killer or a preempted node would: no clean-up at all."""
    marker.write_text(f"killed pid {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def arm(marker: Path) -> None:
    """Install the crash the environment asks for."""
    if "CRASH_AT_STEP" in os.environ:
        crash_step = int(os.environ["CRASH_AT_STEP"])
        optimizer_step = StepRunner.optimizer_step
        steps = 0

        def counting_step(self: StepRunner) -> bool:
            nonlocal steps
            steps += 1
            if steps == crash_step:
                crash(marker)
            return optimizer_step(self)

        StepRunner.optimizer_step = counting_step  # type: ignore[method-assign]
    if "CRASH_IN_SAVE" in os.environ:
        crash_epoch = int(os.environ["CRASH_IN_SAVE"])
        save = torch.save

        def half_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(obj, dict) and obj.get("epoch") == crash_epoch and hasattr(f, "write"):
                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: buffer.tell() // 2])
                f.flush()
                crash(marker)
            save(obj, f, *args, **kwargs)

        torch.save = half_save  # type: ignore[assignment]


if __name__ == "__main__":
    marker_path = Path(os.environ["CRASH_MARKER"])
    rank = os.environ.get("RANK", "0")
    if not marker_path.exists() and os.environ.get("CRASH_RANK", rank) == rank:
        arm(marker_path)
    script_main(train_main)
