"""Serving an ONNX file written by ``res2net export``.

The graph alone does not say how images must be preprocessed or what the classes are
called, so the exporter writes that beside it as JSON (``input_size``, ``mean``, ``std``,
``crop_pct``, ``interpolation``, ``class_names``); serving without it would silently
mis-normalise inputs. The graph runs in ``res2net.inference``'s onnxruntime module, the
same one the fp32 PyTorch path uses, so both give the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .runner import TorchRunner

PLATFORM = "onnxruntime_onnx"


def load_onnx_runner(onnx_path: Path) -> TorchRunner:
    """A runner for an exported graph and its sidecar; unusable files raise CheckpointError."""
    from ..inference.export import sidecar_path
    from ..inference.onnx_runtime import OnnxRuntimeModule
    from ..inference.session import preprocess_images

    if not onnx_path.is_file():
        raise CheckpointError(f"ONNX file not found: {onnx_path}")
    info = read_sidecar(sidecar_path(onnx_path))
    # onnxruntime reports unreadable or invalid graphs with its own exception types (and
    # shape mismatches at the first run, in the probe below); any of them means this file
    # cannot be served, which is the user's to fix.
    try:
        module = OnnxRuntimeModule(onnx_path.read_bytes(), precision="fp32")
        return TorchRunner(module, info, preprocess_images, platform=PLATFORM)
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{onnx_path} cannot be served with onnxruntime: {message}") from None


def read_sidecar(path: Path) -> Any:
    """The export's ``PreprocessInfo``, validated field by field."""
    from ..inference.session import PreprocessInfo

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found: --onnx needs the JSON that `res2net export` writes beside the .onnx"
        ) from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    try:
        return PreprocessInfo(
            input_size=_numbers(document["input_size"], int),
            mean=_numbers(document["mean"], float),
            std=_numbers(document["std"], float),
            crop_pct=float(document["crop_pct"]),
            interpolation=str(document["interpolation"]),
            class_names=[str(name) for name in document["class_names"]],
        )
    except KeyError as err:
        raise CheckpointError(f"{path} lacks {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has a malformed field: {err}") from None


def _numbers(value: object, kind: type[int] | type[float]) -> Any:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"expected a list of 3 numbers, got {value!r}")
    return tuple(kind(item) for item in value)
