"""Progress bars for every job that can run for more than a few seconds (tqdm: rate and time left).

On a terminal only, and on the main process only: logs and CI output stay clean, and ranks other than 0
do not draw over each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], *, description: str, total: int | None = None, main: bool = True,
             unit: str = "it") -> Iterator[T]:
    """``iterable`` with a bar on stderr when it is a terminal and this is the main process."""
    yield from tqdm(iterable, total=total, desc=description, unit=unit, disable=None if main else True,
                    dynamic_ncols=True, leave=False)
