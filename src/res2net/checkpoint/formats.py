"""Detect a checkpoint's format from its bytes and read it into a flat ``{name: tensor}``.

Users name files arbitrarily (MindCV's ``.ckpt``, PyTorch's ``.pth``/``.pt``/``.bin``,
``.safetensors``, or nothing at all), so the file's leading bytes decide how to read it,
never its suffix. Wrappers that training scripts put around a state dict (ours:
``{"model", "model_ema", "optimizer", ...}``; others: ``"state_dict"``, ``"model"``,
``"module"``) and the ``module.`` / ``_orig_mod.`` prefixes of DataParallel and
torch.compile are removed here, so later stages only see parameter names.
"""

from __future__ import annotations

import enum
import json
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from res2net.checkpoint.mindspore_ckpt import read_mindspore_checkpoint
from res2net.errors import CheckpointError


class CheckpointFormat(enum.Enum):
    TORCH_ZIP = "torch-zip"
    TORCH_PICKLE = "torch-pickle"
    SAFETENSORS = "safetensors"
    MINDSPORE = "mindspore"


# Keys under which training scripts store the weights, most specific first.
_EMA_KEYS = ("model_ema", "state_dict_ema")
_WRAPPER_KEYS = ("model", "state_dict", "module")
_MINDSPORE_EMA_PREFIX = "ema."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_HEAD_BYTES = 32
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
_MAX_REASON = 160


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


def detect_format(path: Path) -> CheckpointFormat:
    """The format of ``path`` judged from its leading bytes.

    Raises CheckpointError for missing, empty or unrecognised files.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
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


def _reason(exc: BaseException) -> str:
    """The first line of a library's error, shortened: our messages stay one line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _torch_load(path: Path) -> object:
    # weights_only: a checkpoint from the internet must not be able to run code. A file
    # object, not the path: torch.load dispatches on some suffixes (".safetensors").
    try:
        with path.open("rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: PyTorch file holds objects other than tensors and plain containers, "
            f"refused for safety ({_reason(exc)})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable PyTorch file, truncated or corrupted ({_reason(exc)})") from exc


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(str(path), device="cpu")
    except (SafetensorError, json.JSONDecodeError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file, truncated or corrupted ({_reason(exc)})") from exc


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _select_mindspore_ema(state: dict[str, torch.Tensor], use_ema: bool, path: Path) -> dict[str, torch.Tensor]:
    """MindCV's EMA training keeps averaged weights as ``ema.<name>`` beside the live ones."""
    ema = {k[len(_MINDSPORE_EMA_PREFIX) :]: v for k, v in state.items() if k.startswith(_MINDSPORE_EMA_PREFIX)}
    if use_ema:
        if not ema:
            raise CheckpointError(f"{path}: EMA weights were requested but the checkpoint has no 'ema.*' entries")
        return ema
    return {k: v for k, v in state.items() if not k.startswith(_MINDSPORE_EMA_PREFIX)}


def _unwrap(obj: object, use_ema: bool, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        if use_ema:
            for key in _EMA_KEYS:
                if _is_state_dict(obj.get(key)):
                    return obj[key]
            raise CheckpointError(
                f"{path}: EMA weights were requested but the checkpoint has none "
                f"(looked for {', '.join(repr(k) for k in _EMA_KEYS)})"
            )
        for key in _WRAPPER_KEYS:
            if key in obj:
                return _unwrap(obj[key], use_ema, path)
    if _is_state_dict(obj):
        if use_ema:
            raise CheckpointError(f"{path}: EMA weights were requested but the file is a plain state dict")
        return obj  # type: ignore[return-value]
    raise CheckpointError(
        f"{path}: no state dict of tensors found (top-level type {type(obj).__name__}"
        + (f", keys {sorted(map(str, obj))[:10]}" if isinstance(obj, Mapping) else "")
        + ")"
    )


def _strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove (DistributedData)Parallel's ``module.`` and torch.compile's ``_orig_mod.``,
    in whatever nesting, when every key carries them."""
    out = dict(state)
    while prefix := next((p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in out)), None):
        out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def read_state_dict(path: str | Path, *, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read any supported checkpoint into a flat ``{name: tensor}`` with the source's own names.

    ``use_ema`` picks the exponential-moving-average weights (our ``model_ema``, timm's
    ``state_dict_ema``, MindCV's ``ema.*``) and fails when the file has none.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt is CheckpointFormat.MINDSPORE:
        return _select_mindspore_ema(read_mindspore_checkpoint(path), use_ema, path)
    raw = _safetensors_load(path) if fmt is CheckpointFormat.SAFETENSORS else _torch_load(path)
    return _strip_wrapper_prefixes(_unwrap(raw, use_ema, path))
