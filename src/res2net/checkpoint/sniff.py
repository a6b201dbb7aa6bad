"""What kind of checkpoint a file is, judged from its leading bytes, never from its name.

Users name files arbitrarily (MindCV's ``.ckpt``, PyTorch's ``.pth``/``.pt``/``.bin``,
``.safetensors``, or nothing at all), and torch itself dispatches on some suffixes, so the
bytes decide.
"""

from __future__ import annotations

import enum
import struct
from pathlib import Path

from res2net.errors import CheckpointError

_HEAD_BYTES = 32
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces


class CheckpointFormat(enum.Enum):
    TORCH_ZIP = "torch-zip"
    TORCH_PICKLE = "torch-pickle"
    SAFETENSORS = "safetensors"
    MINDSPORE = "mindspore"


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """Decode a protobuf varint at ``pos``; ``None`` when the bytes end first."""
    value, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def _looks_like_mindspore(head: bytes) -> bool:
    # Checkpoint.value (field 1, length-delimited) whose first field is Value.tag (field 1, string).
    if not head.startswith(b"\x0a"):
        return False
    decoded = _varint(head, 1)
    return decoded is not None and decoded[1] < len(head) and head[decoded[1]] == 0x0A


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object. The length is not checked
    # against the file size so that a truncated file is reported as a truncated safetensors.
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= _SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def format_of(data: bytes, path: Path) -> CheckpointFormat:
    """The format of a file whose contents (or first bytes) are ``data``; CheckpointError if none."""
    head = data[:_HEAD_BYTES]
    if not head:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if head.startswith(b"PK\x03\x04"):
        return CheckpointFormat.TORCH_ZIP
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return CheckpointFormat.TORCH_PICKLE
    if _looks_like_safetensors(head):
        return CheckpointFormat.SAFETENSORS
    if _looks_like_mindspore(head):
        return CheckpointFormat.MINDSPORE
    raise CheckpointError(
        f"{path}: not a checkpoint this package can read "
        "(expected a PyTorch file, safetensors or a MindSpore .ckpt)"
    )


def detect_format(path: Path) -> CheckpointFormat:
    """The format of the file at ``path`` from its first bytes (only those are read)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with path.open("rb") as f:
        return format_of(f.read(_HEAD_BYTES), path)
