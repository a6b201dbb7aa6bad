"""Exceptions for mistakes a user can fix.

Anything raised as a :class:`UserError` is reported by the command-line tools as one
line (no traceback) with a non-zero exit status; the HTTP server maps it to a 4xx.
Keeping one base class lets every layer (config, data, checkpoints) signal "your
input is wrong" without knowing how the message will finally be shown.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: config, data, checkpoint or request.

    ``exit_code`` is what a CLI exits with; 2 follows argparse's convention for
    usage errors (bad flags and config keys), 1 is used for everything else.
    """

    exit_code: int = 1


class ConfigError(UserError):
    """An unknown key, a wrong value type or an inconsistent combination in a recipe."""

    exit_code = 2


class DataError(UserError):
    """Missing or malformed dataset folders, splits or class lists."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the requested model."""
