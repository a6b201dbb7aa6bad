"""Encoding the model's logits as a v2 ``infer`` response.

Outputs are returned as the request asked: ``logits`` and/or ``probabilities`` as FP32
``[N, C]`` tensors, or, with ``parameters.classification = K``, Triton's classification
extension (a BYTES ``[N, K]`` tensor of ``"value:index[:label]"`` strings, best first).
Each output goes inline in JSON or, when ``binary_data`` is set (``tritonclient``'s
default), as raw bytes after the JSON header with ``Inference-Header-Content-Length``.

The arithmetic here (softmax, top-k) is numpy, not torch: this runs on the event loop, and
only the batcher's thread may run PyTorch's parallel kernels (see ``batcher``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import RequestError
from .protocol import PROBABILITIES_OUTPUT, InferRequest, RequestedOutput

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    headers: dict[str, str]
    media_type: str


def encode_response(
    logits: torch.Tensor,
    request: InferRequest,
    *,
    model_name: str,
    class_names: Sequence[str] | None,
) -> EncodedResponse:
    """The response body for ``request`` given the model's ``[N, C]`` float32 logits."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    scores = logits.detach().to(torch.float32).numpy()
    probabilities: np.ndarray | None = None
    for requested in request.outputs:
        values = scores
        if requested.name == PROBABILITIES_OUTPUT:
            if probabilities is None:
                probabilities = _softmax(scores)
            values = probabilities
        entry, blob = _encode_output(requested, values, class_names)
        outputs.append(entry)
        if blob is not None:
            blobs.append(blob)
    document: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request.id is not None:
        document["id"] = request.id
    header = json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    if not blobs:
        return EncodedResponse(header, {}, JSON_CONTENT_TYPE)
    return EncodedResponse(header + b"".join(blobs), {HEADER_LENGTH: str(len(header))}, BINARY_CONTENT_TYPE)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _encode_output(
    requested: RequestedOutput, values: np.ndarray, class_names: Sequence[str] | None
) -> tuple[dict[str, Any], bytes | None]:
    if requested.classification:
        labels = _classification(values, requested.classification, class_names)
        shape = [len(labels), len(labels[0])]
        flat = [item for row in labels for item in row]
        if requested.binary:
            blob = _bytes_tensor(flat)
            return _binary_entry(requested.name, shape, "BYTES", blob), blob
        return {"name": requested.name, "shape": shape, "datatype": "BYTES", "data": flat}, None
    shape = list(values.shape)
    if requested.binary:
        blob = np.ascontiguousarray(values, dtype="<f4").tobytes()
        return _binary_entry(requested.name, shape, "FP32", blob), blob
    if not bool(np.isfinite(values).all()):
        raise RequestError(
            f"output {requested.name!r} holds non-finite values, which JSON cannot carry; "
            "request it with parameters.binary_data = true"
        )
    return {"name": requested.name, "shape": shape, "datatype": "FP32", "data": values.flatten().tolist()}, None


def _bytes_tensor(items: list[str]) -> bytes:
    """Triton's binary BYTES layout: each element as a uint32 LE length, then its UTF-8 bytes."""
    encoded = [item.encode() for item in items]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)


def _binary_entry(name: str, shape: list[int], datatype: str, blob: bytes) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(blob)}}


def _classification(
    values: np.ndarray, count: int, class_names: Sequence[str] | None
) -> list[list[str]]:
    """Top-``count`` entries per row as Triton formats them: ``"value:index"`` plus ``":label"``."""
    top_indices = np.argsort(-values, axis=1, kind="stable")[:, :count]
    top_values = np.take_along_axis(values, top_indices, axis=1)
    rows: list[list[str]] = []
    for row_values, row_indices in zip(top_values.tolist(), top_indices.tolist(), strict=True):
        row = []
        for value, index in zip(row_values, row_indices, strict=True):
            label = f":{class_names[index]}" if class_names is not None else ""
            row.append(f"{value:f}:{index}{label}")
        rows.append(row)
    return rows
