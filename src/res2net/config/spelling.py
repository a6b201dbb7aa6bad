"""One flag spelling shown, both accepted: ``--max-batch-size`` and ``--max_batch_size``.

MindCV's recipe flags are underscored (``--num_classes``) and ``train.py`` / ``validate.py``
keep them; the ``res2net`` subcommands show dashed flags, as most command-line tools do. A
user who types the other spelling should not get "unrecognized arguments", so every long
option of every parser answers to both, while ``--help`` shows the parser's preferred one.
"""

from __future__ import annotations

import argparse
from typing import Literal

Preferred = Literal["dash", "underscore"]


def _respelled(option: str, preferred: Preferred) -> tuple[str, str] | None:
    """(preferred, other) spellings of a long option with a word separator, else None."""
    if not option.startswith("--"):
        return None
    body = option[2:]
    dashed, underscored = "--" + body.replace("_", "-"), "--" + body.replace("-", "_")
    if dashed == underscored:
        return None
    return (dashed, underscored) if preferred == "dash" else (underscored, dashed)


class OneSpellingFormatter(argparse.HelpFormatter):
    """Lists an option under its preferred spelling only (the other is an accepted alias)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "alternate_spellings", ())
        if not hidden:
            return super()._format_action_invocation(action)
        shown = argparse.Action([s for s in action.option_strings if s not in hidden], action.dest,
                                nargs=action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(shown)


def accept_both_spellings(parser: argparse.ArgumentParser, preferred: Preferred) -> argparse.ArgumentParser:
    """Give every long option of ``parser`` (and of its subcommands) its other spelling as an alias,
    list the ``preferred`` spelling first (usage lines show it) and only it in ``--help``."""
    parser.formatter_class = OneSpellingFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                accept_both_spellings(sub, preferred)
            continue
        aliases: list[str] = []
        for option in list(action.option_strings):
            pair = _respelled(option, preferred)
            if pair is None:
                continue
            first, other = pair
            for spelling in pair:
                if spelling not in parser._option_string_actions:
                    parser._option_string_actions[spelling] = action
                    action.option_strings.append(spelling)
            if parser._option_string_actions[first] is action and parser._option_string_actions[other] is action:
                aliases.append(other)
                action.option_strings.remove(first)
                action.option_strings.insert(0, first)
        if aliases:
            action.alternate_spellings = tuple(aliases)  # type: ignore[attr-defined]
    return parser
