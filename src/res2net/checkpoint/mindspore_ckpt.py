"""Read MindSpore ``.ckpt`` files (MindCV's weights) without MindSpore.

A MindSpore checkpoint is a stream of serialised ``Checkpoint`` protobuf messages, each
holding one ``Value`` (a tag plus a ``TensorProto``). Concatenated protobuf messages
parse as one message whose repeated field holds every value, so one parse reads the
file. Tensors bigger than MindSpore's slice size are written as several consecutive
values with the same tag; their contents are joined here. A file saved with
``crc_check=True`` ends with ``b"crc_num"`` and a 10-byte big-endian CRC-32, checked here.

The message classes are built at run time from a ``FileDescriptorProto`` that mirrors
MindSpore 2.x's ``checkpoint.proto`` (proto2, same field numbers and labels), in a private
descriptor pool. That avoids a protoc-generated module (and its protobuf-runtime version
pin) and cannot clash with MindSpore's own classes if both are imported in one process.
"""

from __future__ import annotations

import binascii
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from res2net.errors import CheckpointError

_PACKAGE = "res2net.mindspore"

# MindSpore's ``str(dtype)`` names -> torch dtypes. "str" entries (text metadata saved
# through ``append_dict``) are not tensors and are skipped by the reader.
_DTYPES: dict[str, torch.dtype] = {
    "Bool": torch.bool,
    "Int8": torch.int8,
    "UInt8": torch.uint8,
    "Int16": torch.int16,
    "UInt16": torch.uint16,
    "Int32": torch.int32,
    "UInt32": torch.uint32,
    "Int64": torch.int64,
    "UInt64": torch.uint64,
    "Float16": torch.float16,
    "BFloat16": torch.bfloat16,
    "Float32": torch.float32,
    "Float64": torch.float64,
}
_TEXT_TYPE = "str"
_CRC_MARKER = b"crc_num"
_CRC_TRAILER = len(_CRC_MARKER) + 10


def _field(
    name: str, number: int, label: int, ftype: int, type_name: str | None = None, oneof: int | None = None
) -> descriptor_pb2.FieldDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto(name=name, number=number, label=label, type=ftype)
    if type_name is not None:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``checkpoint.proto`` of MindSpore 2.x, re-declared field by field."""
    fdp = descriptor_pb2.FieldDescriptorProto
    req, opt, rep = fdp.LABEL_REQUIRED, fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED
    tensor_type = f".{_PACKAGE}.TensorProto"
    value = descriptor_pb2.DescriptorProto(
        name="Value",
        field=[
            _field("tag", 1, req, fdp.TYPE_STRING),
            _field("tensor", 2, opt, fdp.TYPE_MESSAGE, tensor_type, oneof=0),
            _field("maptensor", 3, opt, fdp.TYPE_MESSAGE, f".{_PACKAGE}.MapTensorProto", oneof=0),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="value")],
    )
    checkpoint = descriptor_pb2.DescriptorProto(
        name="Checkpoint",
        field=[_field("value", 1, rep, fdp.TYPE_MESSAGE, f".{_PACKAGE}.Checkpoint.Value")],
        nested_type=[value],
    )
    tensor = descriptor_pb2.DescriptorProto(
        name="TensorProto",
        field=[
            _field("dims", 1, rep, fdp.TYPE_INT64),
            _field("tensor_type", 2, req, fdp.TYPE_STRING),
            _field("tensor_content", 3, req, fdp.TYPE_BYTES),
        ],
    )
    map_tensor = descriptor_pb2.DescriptorProto(
        name="MapTensorProto", field=[_field("tensor", 1, rep, fdp.TYPE_MESSAGE, tensor_type)]
    )
    return descriptor_pb2.FileDescriptorProto(
        name="res2net_mindspore_checkpoint.proto",
        package=_PACKAGE,
        syntax="proto2",
        message_type=[checkpoint, tensor, map_tensor],
    )


@lru_cache(maxsize=1)
def checkpoint_message_class() -> type[message.Message]:
    """The ``Checkpoint`` message class (built once per process)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Checkpoint"))


def _strip_crc(data: bytes, path: Path) -> bytes:
    if len(data) < _CRC_TRAILER or data[-_CRC_TRAILER:-10] != _CRC_MARKER:
        return data
    body, expected = data[:-_CRC_TRAILER], int.from_bytes(data[-10:], byteorder="big")
    if binascii.crc32(body) != expected:
        raise CheckpointError(f"{path}: MindSpore checkpoint CRC mismatch; the file is corrupted or truncated")
    return body


def _to_tensor(tag: str, tensor_type: str, dims: list[int], content: bytes, path: Path) -> torch.Tensor:
    dtype = _DTYPES.get(tensor_type)
    if dtype is None:
        raise CheckpointError(f"{path}: entry {tag!r} has MindSpore type {tensor_type!r}, which cannot be read")
    shape = tuple(dims)
    numel = 1
    for d in shape:
        numel *= d
    itemsize = torch.empty((), dtype=dtype).element_size()
    if numel * itemsize != len(content):
        raise CheckpointError(
            f"{path}: entry {tag!r} holds {len(content)} bytes but shape {list(shape)} of {tensor_type} "
            f"needs {numel * itemsize}; the file is corrupted or truncated"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(content), dtype=dtype).reshape(shape)


def parse_mindspore_checkpoint(raw: bytes, path: Path) -> dict[str, torch.Tensor]:
    """Every numeric entry of a MindSpore ``.ckpt`` (its bytes ``raw``) as a CPU tensor, keyed by
    its tag. Text entries (``append_dict`` strings) are skipped: they are metadata, not weights.
    ``path`` names the file in errors.
    """
    data = _strip_crc(raw, path)
    try:
        ckpt: Any = checkpoint_message_class().FromString(data)
    except message.DecodeError as exc:
        raise CheckpointError(f"{path}: not a readable MindSpore checkpoint ({exc})") from exc

    parts: dict[str, list[bytes]] = {}
    meta: dict[str, tuple[str, list[int]]] = {}
    previous: str | None = None
    for value in ckpt.value:
        if value.WhichOneof("value") != "tensor":
            raise CheckpointError(f"{path}: entry {value.tag!r} is a MindSpore MapTensor, which cannot be loaded")
        tensor = value.tensor
        if tensor.tensor_type == _TEXT_TYPE:
            continue
        if value.tag in parts and value.tag != previous:
            raise CheckpointError(f"{path}: entry {value.tag!r} appears twice; the file is corrupted")
        parts.setdefault(value.tag, []).append(tensor.tensor_content)
        meta[value.tag] = (tensor.tensor_type, list(tensor.dims))
        previous = value.tag
    if not parts:
        raise CheckpointError(f"{path}: MindSpore checkpoint holds no tensors")
    return {
        tag: _to_tensor(tag, meta[tag][0], meta[tag][1], b"".join(chunks), path) for tag, chunks in parts.items()
    }
