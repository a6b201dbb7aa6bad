"""The one reader of PyTorch files (``torch.save`` output), with one error policy.

Every PyTorch file the package opens — published weights, timm's, our training checkpoints —
goes through :func:`load_torch_bytes`: ``weights_only=True`` (a file from the internet must not
be able to run code), and every failure becomes one :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from res2net.errors import CheckpointError

_MAX_REASON = 160


def reason(exc: BaseException) -> str:
    """The first line of a library's error, shortened: our messages stay one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def read_file(path: Path) -> bytes:
    """A checkpoint's bytes, read once; CheckpointError for a missing or unreadable file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None


def load_torch_bytes(data: bytes, path: Path) -> object:
    """``torch.load`` of a file's bytes, tensors and plain containers only."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: PyTorch file holds objects other than tensors and plain containers, "
            f"refused for safety ({reason(exc)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{path}: unreadable PyTorch file, truncated or corrupted ({reason(exc)})") from None
