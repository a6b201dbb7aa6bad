"""How one recipe key is described: type, default, help, allowed values, range, origin.

The schema (:mod:`res2net.config.schema`) declares every key as a dataclass field whose
``metadata`` holds a :class:`KeySpec`. Keeping the whole description of a key in one
place means the YAML reader, the command-line parser, ``--help`` and the checks can
never disagree about what a key accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Groups, in the order MindCV's config.py lists them (ours appended where they belong).
SYSTEM = "system"
DATASET = "dataset"
AUGMENTATION = "augmentation"
MODEL = "model"
OPTIMIZER = "optimizer"
SCHEDULER = "scheduler"
LOSS = "loss"
AMP = "mixed precision"
VALIDATION = "validation"


@dataclass(frozen=True)
class KeySpec:
    """Everything the parser needs to know about one key besides its Python type.

    ``choices`` makes a string key an enumeration (matched case-insensitively, stored in
    the canonical spelling); ``aliases`` maps other accepted spellings to a choice;
    ``check`` parses a value with a grammar of its own (auto_augment policy strings) and
    raises ValueError with the reason when it does not fit. ``minimum``/``maximum`` bound
    numbers (inclusive unless ``exclusive_minimum``). ``ignored`` is the note printed when
    a key is set that has no effect here (MindSpore-only keys, auxiliary-head losses);
    ``refused`` is the reason any value but the default is an error (a MindCV feature this
    package does not implement). ``ours`` marks keys that MindCV does not have.
    """

    help: str
    group: str
    choices: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    check: Callable[[Any], object] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    ignored: str = ""
    refused: str = ""
    ours: bool = False


def key(default: Any, help: str, group: str, **spec: Any) -> Any:
    """Declare a schema field: its default plus a :class:`KeySpec` in the field metadata."""
    return dataclasses.field(default=default, metadata={"spec": KeySpec(help=help, group=group, **spec)})
