"""Run logging: a progress bar (or plain lines off a terminal), metric files and TensorBoard.

Only rank 0 logs. Every epoch's metrics go to ``metrics.jsonl`` and ``metrics.csv`` in
the run folder (easy to plot or diff between runs) and, when the ``tensorboard``
package is installed, to TensorBoard event files beside them.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class RunLogger:
    """Writes metrics for the main process; every method is a no-op on other ranks."""

    def __init__(self, directory: Path, *, enabled: bool, log_interval: int) -> None:
        self.directory = directory
        self.enabled = enabled
        self.log_interval = log_interval
        self._tensorboard: Any = None
        self._csv_fields: list[str] | None = None
        if enabled:
            directory.mkdir(parents=True, exist_ok=True)
            self._tensorboard = _open_tensorboard(directory)

    def info(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message, file=sys.stdout)

    def progress(
        self, iterable: Iterable[T], *, total: int, description: str, status: Callable[[], str] | None = None
    ) -> Iterator[T]:
        """A tqdm bar on a terminal; elsewhere (CI, log files) a line every ``log_interval`` steps.

        ``status`` (running loss, lr, img/s) is asked for every ``log_interval`` steps only,
        because reading the loss off the device waits for the step to finish.
        """
        if not self.enabled:
            yield from iterable
            return
        bar = None
        if sys.stdout.isatty():
            bar = tqdm(iterable, total=total, desc=description, dynamic_ncols=True, leave=False)
        started = time.perf_counter()
        for index, item in enumerate(bar if bar is not None else iterable, start=1):
            yield item
            if index % self.log_interval != 0 and index != total:
                continue
            text = status() if status is not None else ""
            if bar is not None:
                bar.set_postfix_str(text, refresh=False)
            else:
                elapsed = time.perf_counter() - started
                print(f"{description}: step {index}/{total} ({elapsed:.0f}s) {text}".rstrip(), flush=True)

    def log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one row to metrics.jsonl / metrics.csv and TensorBoard."""
        if not self.enabled:
            return
        with (self.directory / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        self._append_csv(metrics)
        if self._tensorboard is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and name not in ("epoch", "step"):
                    self._tensorboard.add_scalar(name, value, step)
            self._tensorboard.flush()

    def _append_csv(self, metrics: dict[str, Any]) -> None:
        path = self.directory / "metrics.csv"
        if self._csv_fields is None:
            self._csv_fields = list(metrics)
            if path.exists() and path.stat().st_size > 0:
                with path.open(newline="") as handle:
                    self._csv_fields = next(csv.reader(handle), self._csv_fields)
            else:
                with path.open("w", newline="") as handle:
                    csv.writer(handle).writerow(self._csv_fields)
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self._csv_fields, extrasaction="ignore").writerow(metrics)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def _open_tensorboard(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional `train` extra is not installed
        return None
    return SummaryWriter(log_dir=str(directory / "tensorboard"))
