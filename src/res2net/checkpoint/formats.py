"""Read any supported checkpoint once into a :class:`RawCheckpoint`: weights plus what the file
says about itself.

The file's bytes are read once; its format (:mod:`.sniff`), its sha256, its weights and its
metadata all come from those bytes, so loading a model never opens a checkpoint twice.
Wrappers that training scripts put around a state dict (ours: a :class:`TrainingCheckpoint`;
others: ``"state_dict"``, ``"model"``, ``"module"``) and the ``module.`` / ``_orig_mod.``
prefixes of DataParallel and torch.compile are removed here, so later stages only see
parameter names. Metadata: our training checkpoints and our converted safetensors files carry
a :class:`~res2net.models.PretrainedCfg`; other files carry none.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from res2net.checkpoint import training
from res2net.checkpoint.mindspore_ckpt import parse_mindspore_checkpoint
from res2net.checkpoint.sniff import CheckpointFormat, detect_format, format_of
from res2net.checkpoint.torchfile import load_torch_bytes, read_file, reason
from res2net.errors import CheckpointError

__all__ = ["CheckpointFormat", "RawCheckpoint", "detect_format", "read_checkpoint", "read_state_dict"]

# Keys under which training scripts store the weights, most specific first.
_EMA_KEYS = ("model_ema", "state_dict_ema")
_WRAPPER_KEYS = ("model", "state_dict", "module")
_MINDSPORE_EMA_PREFIX = "ema."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: safetensors metadata key under which ``res2net convert`` stores the weights' PretrainedCfg (JSON).
SAFETENSORS_CFG_KEY = "res2net.pretrained_cfg"


@dataclass(frozen=True)
class RawCheckpoint:
    """One checkpoint file, read once: its weights under the source's own names, its format,
    the sha256 of its bytes, and the PretrainedCfg fields it stores (None if it stores none)."""

    path: Path
    format: CheckpointFormat
    state: dict[str, torch.Tensor]
    sha256: str
    pretrained_cfg: Mapping[str, Any] | None = None


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


def _safetensors(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], Mapping[str, Any] | None]:
    try:
        state = load_safetensors(data)
        (header_len,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, json.JSONDecodeError, struct.error, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file, truncated or corrupted ({reason(exc)})") from None
    stored = metadata.get(SAFETENSORS_CFG_KEY)
    try:
        cfg = json.loads(stored) if stored else None
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its {SAFETENSORS_CFG_KEY} metadata is not valid JSON") from None
    return state, cfg


def _torch(data: bytes, path: Path, use_ema: bool) -> tuple[Mapping[str, torch.Tensor], Mapping[str, Any] | None]:
    obj = load_torch_bytes(data, path)
    if training.is_training_checkpoint(obj):
        saved = training.parse(obj, path)
        return saved.weights(use_ema, path), saved.pretrained_cfg
    return _unwrap(obj, use_ema, path), None


def read_checkpoint(path: str | Path, *, use_ema: bool = False) -> RawCheckpoint:
    """Read any supported checkpoint (format from its bytes) with one read of the file.

    ``use_ema`` picks the exponential-moving-average weights (our ``model_ema``, timm's
    ``state_dict_ema``, MindCV's ``ema.*``) and fails when the file has none.
    """
    path = Path(path)
    data = read_file(path)
    fmt = format_of(data, path)
    cfg: Mapping[str, Any] | None = None
    if fmt is CheckpointFormat.MINDSPORE:
        state: Mapping[str, torch.Tensor] = _select_mindspore_ema(parse_mindspore_checkpoint(data, path), use_ema, path)
    elif fmt is CheckpointFormat.SAFETENSORS:
        if use_ema:
            raise CheckpointError(f"{path}: EMA weights were requested but a safetensors file holds one state dict")
        state, cfg = _safetensors(data, path)
    else:
        state, cfg = _torch(data, path, use_ema)
    return RawCheckpoint(path, fmt, _strip_wrapper_prefixes(state), hashlib.sha256(data).hexdigest(), cfg)


def read_state_dict(path: str | Path, *, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Just the weights of :func:`read_checkpoint`, under the source's own names."""
    return read_checkpoint(path, use_ema=use_ema).state
