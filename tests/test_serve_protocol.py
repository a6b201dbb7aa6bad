"""The v2 request decoder and response encoder, without a server.

The property tests are the point: whatever bytes arrive, ``decode_request`` either returns
tensors of the advertised shape or raises a ``RequestError`` carrying a 4xx status; any
other exception would become a 500 in the server.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from res2net.serve.errors import RequestError
from res2net.serve.protocol import InferRequest, RequestedOutput, decode_request
from res2net.serve.response import HEADER_LENGTH, encode_response

SHAPE = (3, 4, 4)
COUNT = 3 * 4 * 4


def _request(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _tensor(data: object, shape: list[int] | None = None, datatype: str = "FP32") -> dict:
    return {"name": "input", "shape": shape or [1, *SHAPE], "datatype": datatype, "data": data}


def _check(body: bytes, header_length: int | None = None) -> InferRequest | RequestError:
    """Decode; the property every test here relies on: success or a 4xx RequestError."""
    try:
        request = decode_request(body, header_length, input_shape=SHAPE)
    except RequestError as err:
        assert 400 <= err.status < 500
        assert str(err)
        return err
    if request.pixels is not None:
        assert request.images is None
        assert request.pixels.dtype == np.float32
        assert request.pixels.shape[1:] == SHAPE and request.pixels.shape[0] >= 1
        assert np.isfinite(request.pixels).all()
    else:
        assert request.images is not None and len(request.images) >= 1
    assert request.outputs
    return request


def _error(body: bytes, header_length: int | None = None) -> str:
    result = _check(body, header_length)
    assert isinstance(result, RequestError), "expected the request to be refused"
    return str(result)


# --- decoding valid requests -------------------------------------------------------------


def test_flat_and_nested_data_decode_identically() -> None:
    values = np.arange(2 * COUNT, dtype=np.float32).reshape(2, *SHAPE)
    flat = _check(_request([_tensor(values.flatten().tolist(), [2, *SHAPE])], id="r1"))
    nested = _check(_request([_tensor(values.tolist(), [2, *SHAPE])]))
    assert isinstance(flat, InferRequest) and isinstance(nested, InferRequest)
    np.testing.assert_array_equal(flat.pixels, values)
    np.testing.assert_array_equal(nested.pixels, values)
    assert flat.id == "r1" and nested.id is None
    assert flat.outputs == (RequestedOutput("logits", 0, False),)


def test_binary_extension_fp32_and_bytes() -> None:
    values = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    raw = values.tobytes()
    header = _request(
        [{"name": "input", "shape": [2, *SHAPE], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        parameters={"binary_data_output": True},
    )
    decoded = _check(header + raw, len(header))
    assert isinstance(decoded, InferRequest)
    np.testing.assert_array_equal(decoded.pixels, values)
    assert decoded.outputs == (RequestedOutput("logits", 0, True),)

    files = [b"\x89PNG one", b"", b"jpeg two"]
    blob = b"".join(struct.pack("<I", len(item)) + item for item in files)
    header = _request(
        [{"name": "image", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}]
    )
    decoded = _check(header + blob, len(header))
    assert isinstance(decoded, InferRequest) and decoded.images == tuple(files)


def test_base64_images_and_requested_outputs() -> None:
    body = _request(
        [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [base64.b64encode(b"abc").decode(), ""]}],
        outputs=[
            {"name": "probabilities", "parameters": {"classification": 5, "binary_data": True}},
            {"name": "logits"},
        ],
    )
    decoded = _check(body)
    assert isinstance(decoded, InferRequest)
    assert decoded.images == (b"abc", b"")
    assert decoded.outputs == (RequestedOutput("probabilities", 5, True), RequestedOutput("logits", 0, False))


def test_images_in_tritons_n_by_1_shape_decode_the_same() -> None:
    encoded = [base64.b64encode(b"abc").decode(), base64.b64encode(b"de").decode()]
    flat = _check(_request([{"name": "image", "shape": [2], "datatype": "BYTES", "data": encoded}]))
    nested = _check(_request([{"name": "image", "shape": [2, 1], "datatype": "BYTES",
                               "data": [[item] for item in encoded]}]))
    assert isinstance(flat, InferRequest) and isinstance(nested, InferRequest)
    assert flat.images == nested.images == (b"abc", b"de")


# --- refusing bad requests ---------------------------------------------------------------

BAD_REQUESTS = {
    "malformed JSON": (b'{"inputs": [', None, "malformed JSON"),
    "not an object": (b"[1, 2]", None, "JSON object"),
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, None, "malformed JSON"),
    "invalid UTF-8": (b'{"inputs": "\xff"}', None, "malformed JSON"),
    "no inputs": (_request([]), None, "non-empty"),
    "unknown input": (_request([{**_tensor([0] * COUNT), "name": "pixels"}]), None, "unknown input"),
    "both inputs": (
        _request([_tensor([0] * COUNT), {"name": "image", "shape": [1], "datatype": "BYTES", "data": [""]}]),
        None,
        "not both",
    ),
    "duplicate input": (_request([_tensor([0] * COUNT), _tensor([0] * COUNT)]), None, "twice"),
    "wrong datatype": (_request([_tensor([0] * COUNT, datatype="INT32")]), None, "must be FP32"),
    "wrong shape": (_request([_tensor([0] * COUNT, [1, 3, 4, 5])]), None, "shape"),
    "zero batch": (_request([_tensor([], [0, *SHAPE])]), None, "N >= 1"),
    "bool in shape": (_request([_tensor([0] * COUNT, [True, *SHAPE])]), None, "non-negative integers"),
    "too few values": (_request([_tensor([0] * (COUNT - 1))]), None, "expected"),
    "ragged nested data": (_request([_tensor([[0] * 3, [0] * 2])]), None, "ragged"),
    "strings as numbers": (_request([_tensor(["1.0"] * COUNT)]), None, "only numbers"),
    "non-finite input": (_request([_tensor([1e39] * COUNT)]), None, "infinite"),
    "no data": (_request([{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32"}]), None, "no 'data'"),
    "image not BYTES": (_request([{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]), None, "BYTES"),
    "bad base64": (_request([{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["**"]}]), None, "base64"),
    "image shape [N, 2]": (
        _request([{"name": "image", "shape": [1, 2], "datatype": "BYTES", "data": ["AA==", "AA=="]}]),
        None,
        "[N, 1]",
    ),
    "image count": (
        _request([{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}]),
        None,
        "elements",
    ),
    "unknown output": (_request([_tensor([0] * COUNT)], outputs=[{"name": "features"}]), None, "unknown output"),
    "negative top-k": (
        _request([_tensor([0] * COUNT)], outputs=[{"name": "logits", "parameters": {"classification": -1}}]),
        None,
        "classification",
    ),
    "header length past body": (b"{}", 10, "does not fit"),
    "id not a string": (_request([_tensor([0] * COUNT)], id=7), None, "'id'"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_are_4xx_with_a_message(case: str) -> None:
    body, header_length, fragment = BAD_REQUESTS[case]
    assert fragment in _error(body, header_length)


def test_binary_data_must_be_claimed_exactly() -> None:
    header = _request(
        [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32", "parameters": {"binary_data_size": COUNT * 4}}]
    )
    raw = np.zeros(COUNT, np.float32).tobytes()
    assert "expected" not in _error(header + raw[:-4], len(header))  # runs past the end
    assert "no input claims" in _error(header + raw + b"xx", len(header))
    short = _request(
        [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]
    )
    assert "expected" in _error(short + raw[:8], len(short))
    truncated = struct.pack("<I", 100) + b"abc"
    bytes_header = _request(
        [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(truncated)}}]
    )
    assert "runs past" in _error(bytes_header + truncated, len(bytes_header))


# --- properties --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=40,
)
dims = st.integers(min_value=-1, max_value=5) | st.sampled_from(SHAPE) | st.just(2**62)
shapes = st.lists(dims, max_size=5) | st.just([1, *SHAPE]) | st.just([2, *SHAPE]) | json_values
numbers = st.lists(st.floats(width=32) | st.integers(-(2**70), 2**70) | st.booleans(), max_size=2 * COUNT + 2)
nested_floats = st.lists(st.lists(st.floats(width=32), max_size=4), max_size=4)
tensor_data = numbers | st.just([0.5] * COUNT) | nested_floats | json_values
base64_text = st.binary(max_size=9).map(lambda b: base64.b64encode(b).decode())
image_data = st.lists(st.text(max_size=12) | base64_text, max_size=3)
inputs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "image", "other"]) | json_values,
        "shape": shapes,
        "datatype": st.sampled_from(["FP32", "BYTES", "INT8"]) | json_values,
    },
    optional={
        "data": tensor_data | image_data,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 40) | json_values}),
    },
)
outputs = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["logits", "probabilities", "x"])},
        optional={"parameters": st.dictionaries(st.sampled_from(["classification", "binary_data"]), json_values)},
    ),
    max_size=3,
)
requests = st.fixed_dictionaries(
    {"inputs": st.lists(inputs, min_size=0, max_size=3) | json_values},
    optional={
        "id": json_values,
        "outputs": outputs | json_values,
        "parameters": st.dictionaries(st.just("binary_data_output"), json_values),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values)
def test_any_json_value_decodes_or_is_a_4xx(document: object) -> None:
    _check(json.dumps(document).encode())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=requests, tail=st.binary(max_size=48), use_header_length=st.booleans())
def test_request_shaped_bodies_decode_or_are_a_4xx(document: dict, tail: bytes, use_header_length: bool) -> None:
    header = json.dumps(document).encode()
    if use_header_length:
        _check(header + tail, len(header))
    else:
        _check(header)


@st.composite
def near_valid_requests(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A valid request (JSON or binary, tensor or images), then maybe one thing corrupted."""
    count = draw(st.integers(1, 3))
    if draw(st.booleans()):
        values = np.asarray(
            draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=count * COUNT, max_size=count * COUNT)),
            dtype=np.float32,
        )
        tensor: dict[str, Any] = {"name": "input", "shape": [count, *SHAPE], "datatype": "FP32"}
        data: object = values.reshape(count, *SHAPE).tolist() if draw(st.booleans()) else values.tolist()
        raw = values.tobytes()
    else:
        files = draw(st.lists(st.binary(max_size=16), min_size=count, max_size=count))
        tensor = {"name": "image", "shape": [count], "datatype": "BYTES"}
        data = [base64.b64encode(item).decode() for item in files]
        raw = b"".join(struct.pack("<I", len(item)) + item for item in files)
    binary = draw(st.booleans())
    if binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = data
    document: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        document["outputs"] = draw(outputs)
    if draw(st.booleans()):
        document["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):  # corrupt a whole field, or one element of a list-valued field
        target = draw(st.sampled_from([document, tensor]))
        key = draw(st.sampled_from(sorted(target)))
        value = target[key]
        if isinstance(value, list) and value and draw(st.booleans()):
            value[draw(st.integers(0, len(value) - 1))] = draw(json_values)
        else:
            target[key] = draw(json_values)
    header = json.dumps(document).encode()
    if binary:
        cut = draw(st.integers(0, 3)) if draw(st.booleans()) else 0
        return header + raw[: len(raw) - cut], len(header)
    return header, None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=near_valid_requests())
def test_near_valid_requests_decode_or_are_a_4xx(case: tuple[bytes, int | None]) -> None:
    _check(*case)


def test_near_valid_strategy_reaches_both_outcomes() -> None:
    """Guards the property above against a strategy that only ever produces refusals."""
    outcomes: set[bool] = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(case=near_valid_requests())
    def collect(case: tuple[bytes, int | None]) -> None:
        outcomes.add(isinstance(_check(*case), InferRequest))

    collect()
    assert outcomes == {True, False}


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64), header_length=st.none() | st.integers(0, 80))
def test_arbitrary_bytes_decode_or_are_a_4xx(body: bytes, header_length: int | None) -> None:
    _check(body, header_length)


# --- responses ---------------------------------------------------------------------------


def test_response_json_binary_and_classification() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, -1.0, 0.5]])
    request = InferRequest(
        id="abc",
        pixels=np.zeros((2, *SHAPE), np.float32),
        images=None,
        outputs=(
            RequestedOutput("logits", 0, False),
            RequestedOutput("probabilities", 0, True),
            RequestedOutput("logits", 2, False),
        ),
    )
    encoded = encode_response(logits, request, model_name="m", class_names=("a", "b", "c"))
    header_length = int(encoded.headers[HEADER_LENGTH])
    document = json.loads(encoded.body[:header_length])
    assert document["model_name"] == "m" and document["id"] == "abc"
    plain, probs, top = document["outputs"]
    assert plain == {"name": "logits", "shape": [2, 3], "datatype": "FP32", "data": logits.flatten().tolist()}
    assert probs["parameters"]["binary_data_size"] == 2 * 3 * 4
    binary = np.frombuffer(encoded.body[header_length:], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(binary, torch.softmax(logits, 1).numpy(), rtol=1e-6)
    assert top["datatype"] == "BYTES" and top["shape"] == [2, 2]
    assert top["data"] == ["2.000000:1:b", "1.000000:2:c", "3.000000:0:a", "0.500000:2:c"]


def test_non_finite_outputs_need_binary() -> None:
    request = InferRequest(None, np.zeros((1, *SHAPE), np.float32), None, (RequestedOutput("logits", 0, False),))
    with pytest.raises(RequestError, match="binary_data"):
        encode_response(torch.tensor([[float("inf"), 0.0]]), request, model_name="m", class_names=None)
