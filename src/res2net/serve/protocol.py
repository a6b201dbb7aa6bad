"""Decoding a KServe v2 / Open Inference Protocol ``infer`` request body.

The decoder is a pure function from bytes to an :class:`InferRequest` so that it can be
property-tested without a server: any body either decodes into tensors the model can take
or raises :class:`RequestError` with a 4xx status; nothing else escapes. It understands
both encodings clients use:

* plain JSON, tensor data inline (flat row-major, or nested to match ``shape``), BYTES
  elements as base64 strings;
* Triton's binary tensor extension, which ``tritonclient.http`` uses by default: the
  ``Inference-Header-Content-Length`` header gives the JSON header's length, and each input
  whose ``parameters.binary_data_size`` is set takes that many raw bytes from what follows
  (little-endian FP32, or BYTES elements each prefixed with a 4-byte little-endian length).

The model takes exactly one of two inputs: ``input``, an FP32 ``[N, C, H, W]`` batch that
is already preprocessed, or ``image``, a BYTES ``[N]`` (or Triton's ``[N, 1]``) batch of encoded image files.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RequestError

TENSOR_INPUT = "input"
IMAGE_INPUT = "image"
LOGITS_OUTPUT = "logits"
PROBABILITIES_OUTPUT = "probabilities"
OUTPUT_NAMES = (LOGITS_OUTPUT, PROBABILITIES_OUTPUT)

_FP32_SIZE = 4
_LENGTH_PREFIX = struct.Struct("<I")


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's ``outputs``: a tensor, or its top-``classification`` labels."""

    name: str
    classification: int
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A validated request: exactly one of ``pixels`` / ``images`` is set."""

    id: str | None
    pixels: np.ndarray | None
    images: tuple[bytes, ...] | None
    outputs: tuple[RequestedOutput, ...]

    @property
    def batch_size(self) -> int:
        if self.pixels is not None:
            return int(self.pixels.shape[0])
        assert self.images is not None
        return len(self.images)


def decode_request(
    body: bytes, header_length: int | None, *, input_shape: tuple[int, int, int]
) -> InferRequest:
    """Parse and validate an infer request body.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (``None`` when the
    whole body is JSON); ``input_shape`` is the ``(C, H, W)`` the model takes, which tensor
    inputs must match exactly (the metadata advertises it, and it lets requests be batched).
    """
    header, binary = _split_body(body, header_length)
    try:
        document = json.loads(header)
    except (ValueError, RecursionError) as err:
        raise RequestError(f"malformed JSON in request body: {_short(err)}") from None
    if not isinstance(document, dict):
        raise RequestError("request body must be a JSON object with an 'inputs' list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("'id' must be a string")
    parameters = _optional_dict(document, "parameters", "request")
    binary_default = _optional_bool(parameters, "binary_data_output", "request parameter")
    tensors = _decode_inputs(document.get("inputs"), binary)
    pixels, images = _model_input(tensors, input_shape)
    outputs = _decode_outputs(document.get("outputs"), binary_default)
    return InferRequest(id=request_id, pixels=pixels, images=images, outputs=outputs)


@dataclass(frozen=True)
class _RawTensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: Any
    raw: bytes | None


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not 0 < header_length <= len(body):
        raise RequestError(
            f"Inference-Header-Content-Length {header_length} does not fit a body of {len(body)} bytes"
        )
    return body[:header_length], body[header_length:]


def _decode_inputs(inputs: object, binary: bytes) -> dict[str, _RawTensor]:
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, _RawTensor] = {}
    offset = 0
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise RequestError(f"inputs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise RequestError(f"inputs[{index}] needs a string 'name'")
        if name not in (TENSOR_INPUT, IMAGE_INPUT):
            raise RequestError(
                f"unknown input {name!r}: this model takes {TENSOR_INPUT!r} (FP32 [N,C,H,W]) "
                f"or {IMAGE_INPUT!r} (BYTES [N], encoded JPEG/PNG files)"
            )
        if name in tensors:
            raise RequestError(f"input {name!r} is given twice")
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise RequestError(f"input {name!r} needs a string 'datatype'")
        shape = _shape(item.get("shape"), name)
        parameters = _optional_dict(item, "parameters", f"input {name!r}")
        if any(key.startswith("shared_memory") for key in parameters):
            raise RequestError("shared-memory inputs are not supported by this server")
        size = parameters.get("binary_data_size")
        raw: bytes | None = None
        if size is not None:
            if not _is_int(size) or size < 0:
                raise RequestError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if "data" in item:
                raise RequestError(f"input {name!r} has both inline 'data' and binary_data_size")
            if offset + size > len(binary):
                raise RequestError(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body"
                )
            raw = binary[offset : offset + size]
            offset += size
        elif "data" not in item:
            raise RequestError(f"input {name!r} has no 'data' and no binary_data_size")
        tensors[name] = _RawTensor(name, shape, datatype, item.get("data"), raw)
    if offset != len(binary):
        raise RequestError(
            f"{len(binary) - offset} bytes of binary data follow the JSON header but no input claims them"
        )
    return tensors


def _model_input(
    tensors: dict[str, _RawTensor], input_shape: tuple[int, int, int]
) -> tuple[np.ndarray | None, tuple[bytes, ...] | None]:
    if len(tensors) != 1:
        raise RequestError(f"give either {TENSOR_INPUT!r} or {IMAGE_INPUT!r}, not both")
    if TENSOR_INPUT in tensors:
        return _pixels(tensors[TENSOR_INPUT], input_shape), None
    return None, _images(tensors[IMAGE_INPUT])


def _pixels(tensor: _RawTensor, input_shape: tuple[int, int, int]) -> np.ndarray:
    expected = "[N," + ",".join(str(dim) for dim in input_shape) + "]"
    if tensor.datatype != "FP32":
        raise RequestError(f"input {TENSOR_INPUT!r} must be FP32, got {tensor.datatype}")
    shape = tensor.shape
    if len(shape) != 4 or shape[1:] != input_shape or shape[0] < 1:
        raise RequestError(
            f"input {TENSOR_INPUT!r} must have shape {expected} with N >= 1, got {list(shape)}"
        )
    count = math.prod(shape)
    if tensor.raw is not None:
        if len(tensor.raw) != count * _FP32_SIZE:
            raise RequestError(
                f"input {TENSOR_INPUT!r}: {len(tensor.raw)} bytes of binary data for shape "
                f"{list(shape)}, expected {count * _FP32_SIZE}"
            )
        array = np.frombuffer(tensor.raw, dtype="<f4").astype(np.float32).reshape(shape)
    else:
        array = _json_floats(tensor.data, shape)
    if not np.isfinite(array).all():
        raise RequestError(f"input {TENSOR_INPUT!r} contains NaN or infinite values")
    return array


def _json_floats(data: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, list):
        raise RequestError(f"input {TENSOR_INPUT!r}: 'data' must be a list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        raise RequestError(
            f"input {TENSOR_INPUT!r}: nested 'data' is ragged; give it flat or shaped like {list(shape)}"
        ) from None
    if array.dtype.kind not in "iuf":
        raise RequestError(f"input {TENSOR_INPUT!r}: 'data' must hold only numbers")
    if array.ndim != 1 and array.shape != shape:
        raise RequestError(
            f"input {TENSOR_INPUT!r}: nested 'data' has shape {list(array.shape)}, but 'shape' says {list(shape)}"
        )
    if array.size != math.prod(shape):
        raise RequestError(
            f"input {TENSOR_INPUT!r}: {array.size} values for shape {list(shape)}, expected {math.prod(shape)}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(np.float32).reshape(shape)


def _images(tensor: _RawTensor) -> tuple[bytes, ...]:
    if tensor.datatype != "BYTES":
        raise RequestError(f"input {IMAGE_INPUT!r} must be BYTES, got {tensor.datatype}")
    # [N], or Triton's [N, 1] for the same batch (a BYTES input of dims [1] there), so one
    # client works against both engines.
    if len(tensor.shape) not in (1, 2) or tensor.shape[0] < 1 or tensor.shape[1:] not in ((), (1,)):
        raise RequestError(f"input {IMAGE_INPUT!r} must have shape [N] or [N, 1] with N >= 1, "
                           f"got {list(tensor.shape)}")
    count = tensor.shape[0]
    if tensor.raw is not None:
        images = _split_bytes_elements(tensor.raw)
    else:
        images = _base64_elements(tensor.data)
    if len(images) != count:
        raise RequestError(f"input {IMAGE_INPUT!r}: {len(images)} elements for shape [{count}]")
    return images


def _split_bytes_elements(raw: bytes) -> tuple[bytes, ...]:
    """Triton's binary BYTES layout: each element is a uint32 LE length, then that many bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH_PREFIX.size > len(raw):
            raise RequestError(f"input {IMAGE_INPUT!r}: truncated element length in binary data")
        (length,) = _LENGTH_PREFIX.unpack_from(raw, offset)
        offset += _LENGTH_PREFIX.size
        if offset + length > len(raw):
            raise RequestError(f"input {IMAGE_INPUT!r}: element of {length} bytes runs past its binary data")
        elements.append(raw[offset : offset + length])
        offset += length
    return tuple(elements)


def _base64_elements(data: object) -> tuple[bytes, ...]:
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]
    if isinstance(data, list) and data and all(isinstance(item, list) and len(item) == 1 for item in data):
        data = [item[0] for item in data]  # nested like shape [N, 1]
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise RequestError(f"input {IMAGE_INPUT!r}: 'data' must be a list of base64 strings")
    try:
        return tuple(base64.b64decode(item, validate=True) for item in data)
    except (binascii.Error, ValueError):
        raise RequestError(f"input {IMAGE_INPUT!r}: an element is not valid base64") from None


def _decode_outputs(outputs: object, binary_default: bool) -> tuple[RequestedOutput, ...]:
    if outputs is None or outputs == []:
        return (RequestedOutput(LOGITS_OUTPUT, 0, binary_default),)
    if not isinstance(outputs, list):
        raise RequestError("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for index, item in enumerate(outputs):
        if not isinstance(item, dict):
            raise RequestError(f"outputs[{index}] must be an object")
        name = item.get("name")
        if name not in OUTPUT_NAMES:
            raise RequestError(f"unknown output {name!r}: this model produces {', '.join(map(repr, OUTPUT_NAMES))}")
        if any(output.name == name for output in requested):
            raise RequestError(f"output {name!r} is requested twice")
        parameters = _optional_dict(item, "parameters", f"output {name!r}")
        if any(key.startswith("shared_memory") for key in parameters):
            raise RequestError("shared-memory outputs are not supported by this server")
        classification = parameters.get("classification", 0)
        if not _is_int(classification) or classification < 0:
            raise RequestError(f"output {name!r}: 'classification' must be a non-negative integer")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise RequestError(f"output {name!r}: 'binary_data' must be true or false")
        requested.append(RequestedOutput(name, classification, binary))
    return tuple(requested)


def _shape(value: object, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(dim) and dim >= 0 for dim in value):
        raise RequestError(f"input {name!r} needs 'shape', a list of non-negative integers")
    return tuple(value)


def _optional_dict(container: dict[str, Any], key: str, owner: str) -> dict[str, Any]:
    value = container.get(key, {})
    if not isinstance(value, dict):
        raise RequestError(f"{owner} '{key}' must be an object")
    return value


def _optional_bool(container: dict[str, Any], key: str, owner: str) -> bool:
    value = container.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(f"{owner} {key!r} must be true or false")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__
