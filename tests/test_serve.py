"""The server, driven over real HTTP: uvicorn on 127.0.0.1, httpx and tritonclient as clients.

One server (a 10-class res2net50 at 32x32) runs in a background thread for the whole
module; every answer is compared with the PyTorch model run directly. Tests that need a
server process of their own (the CLI, SIGTERM, the load test) are in test_serve_process.py.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from torch import nn

from res2net.errors import CheckpointError
from res2net.inference.export import export_onnx
from res2net.inference.session import PreprocessInfo, preprocess_images
from res2net.models import build_model
from res2net.serve.app import create_app
from res2net.serve.onnx_runner import load_onnx_runner
from res2net.serve.runner import TorchRunner
from res2net.serve.server import bind_socket, make_server

MODEL = "tiny"
NUM_CLASSES = 10
SIZE = 32
LIMIT = 256 * 1024
CLASS_NAMES = [f"class_{i}" for i in range(NUM_CLASSES)]


def _preprocess_info(size: int) -> PreprocessInfo:
    return PreprocessInfo(
        input_size=(3, size, size), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875,
        interpolation="bilinear", class_names=CLASS_NAMES,
    )


def _model(size: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("res2net50", num_classes=NUM_CLASSES).eval()
    return model


class RecordingRunner(TorchRunner):
    """Remembers the size of every batch the server runs (the batching hook)."""

    def __init__(self, model: nn.Module, size: int) -> None:
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()
        super().__init__(model, _preprocess_info(size), preprocess_images)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        return super().preprocess(images)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(batch.shape[0])
        self.threads.add(threading.current_thread().name)
        return super().__call__(batch)


class ServerThread:
    """uvicorn in a daemon thread on an ephemeral port."""

    def __init__(self, app: Any) -> None:
        self._server = make_server(app, graceful_timeout_s=5)
        self._sock = bind_socket("127.0.0.1", 0)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _model(SIZE)


@pytest.fixture(scope="module")
def runner(model: nn.Module) -> RecordingRunner:
    return RecordingRunner(model, SIZE)


@pytest.fixture(scope="module")
def server(runner: RecordingRunner) -> Iterator[ServerThread]:
    app = create_app(
        runner, served_name=MODEL, max_batch_size=8, max_latency_ms=30, max_body_bytes=LIMIT,
        body_timeout_s=1.0, max_image_pixels=1_000_000,
    )
    with ServerThread(app) as running:
        yield running


@pytest.fixture()
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _expected(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch)


def _infer_json(pixels: torch.Tensor, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels.flatten().tolist()}
    return {"inputs": [tensor], **extra}


def _image_file(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _metric(server_url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{server_url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _assert_still_serving(client: httpx.Client, model: nn.Module) -> None:
    pixels = torch.randn(1, 3, SIZE, SIZE)
    response = client.post(f"/v2/models/{MODEL}/infer", json=_infer_json(pixels))
    assert response.status_code == 200
    logits = torch.tensor(response.json()["outputs"][0]["data"]).reshape(1, NUM_CLASSES)
    torch.testing.assert_close(logits, _expected(model, pixels), rtol=1e-4, atol=1e-4)


# --- health and metadata -----------------------------------------------------------------


def test_health_and_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    server_meta = client.get("/v2").json()
    assert server_meta["name"] == "res2net" and "binary_tensor_data" in server_meta["extensions"]
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["platform"] == "pytorch"
    assert {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in meta["inputs"]} == {
        "input": ("FP32", [-1, 3, SIZE, SIZE]), "image": ("BYTES", [-1]),
    }
    assert {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in meta["outputs"]} == {
        "logits": ("FP32", [-1, NUM_CLASSES]), "probabilities": ("FP32", [-1, NUM_CLASSES]),
    }
    for path in ("/v2/models/other", "/v2/models/other/ready"):
        response = client.get(path)
        assert response.status_code == 404 and "unknown model" in response.json()["error"]


# --- inference ---------------------------------------------------------------------------


def test_tensor_inference_matches_the_model(client: httpx.Client, model: nn.Module) -> None:
    pixels = torch.randn(3, 3, SIZE, SIZE)
    expected = _expected(model, pixels)
    flat = client.post(f"/v2/models/{MODEL}/infer", json=_infer_json(pixels, id="req-7"))
    assert flat.status_code == 200
    body = flat.json()
    assert body["model_name"] == MODEL and body["id"] == "req-7"
    (logits,) = body["outputs"]
    assert logits["name"] == "logits" and logits["datatype"] == "FP32" and logits["shape"] == [3, NUM_CLASSES]
    torch.testing.assert_close(torch.tensor(logits["data"]).reshape(3, NUM_CLASSES), expected, rtol=1e-4, atol=1e-4)

    nested = {"inputs": [{"name": "input", "shape": [3, 3, SIZE, SIZE], "datatype": "FP32", "data": pixels.tolist()}]}
    response = client.post(f"/v2/models/{MODEL}/infer", json=nested)
    assert response.json()["outputs"][0]["data"] == logits["data"]


def test_probabilities_and_top_k(client: httpx.Client, model: nn.Module) -> None:
    pixels = torch.randn(2, 3, SIZE, SIZE)
    expected = _expected(model, pixels)
    request = _infer_json(
        pixels,
        outputs=[{"name": "probabilities"}, {"name": "logits", "parameters": {"classification": 3}}],
    )
    probs, top = client.post(f"/v2/models/{MODEL}/infer", json=request).json()["outputs"]
    torch.testing.assert_close(
        torch.tensor(probs["data"]).reshape(2, NUM_CLASSES), expected.softmax(1), rtol=1e-4, atol=1e-5
    )
    assert top["datatype"] == "BYTES" and top["shape"] == [2, 3]
    values, indices = expected.topk(3, dim=1)
    for row, (row_values, row_indices) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        entries = [entry.split(":") for entry in top["data"][row * 3 : row * 3 + 3]]
        assert [int(index) for _, index, _ in entries] == row_indices
        assert [label for _, _, label in entries] == [CLASS_NAMES[i] for i in row_indices]
        np.testing.assert_allclose([float(value) for value, _, _ in entries], row_values, atol=1e-4)


def test_image_inference_matches_model_on_preprocessed_images(
    client: httpx.Client, model: nn.Module, runner: RecordingRunner
) -> None:
    files = [_image_file(48, 40, "PNG", seed=1), _image_file(37, 61, "JPEG", seed=2)]
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in files]
    expected = _expected(model, preprocess_images(decoded, _preprocess_info(SIZE)))
    request = {
        "inputs": [
            {"name": "image", "shape": [2], "datatype": "BYTES", "data": [base64.b64encode(f).decode() for f in files]}
        ],
        "outputs": [{"name": "logits"}],
    }
    response = client.post(f"/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 200, response.text
    logits = torch.tensor(response.json()["outputs"][0]["data"]).reshape(2, NUM_CLASSES)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    # Only the batcher's thread runs torch's parallel kernels (OpenMP; see res2net.serve.batcher).
    assert runner.threads - {"MainThread"} == {"res2net-batcher"}


def test_the_runner_warms_up_single_and_batched_shapes(model: nn.Module) -> None:
    """A compiled (bf16) model builds both graphs before the server reports ready."""
    assert RecordingRunner(model, SIZE).batch_sizes == [1, 2]


def test_tritonclient_binary_and_json_modes(server: ServerThread, model: nn.Module, runner: RecordingRunner) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL)["inputs"][0]["name"] == "input"
        pixels = np.random.default_rng(3).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
        expected = _expected(model, torch.from_numpy(pixels))
        for binary in (True, False):
            tensor = triton.InferInput("input", list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(pixels, binary_data=binary)
            outputs = [
                triton.InferRequestedOutput("logits", binary_data=binary),
                triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=2),
            ]
            result = client.infer(MODEL, [tensor], outputs=outputs, request_id="t1")
            assert result.get_response()["id"] == "t1"
            logits = torch.from_numpy(result.as_numpy("logits").copy())
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
            top = result.as_numpy("probabilities")
            assert top.shape == (2, 2)
            best = [entry.decode() if isinstance(entry, bytes) else entry for entry in top[:, 0]]
            assert [int(entry.split(":")[1]) for entry in best] == expected.argmax(1).tolist()
        files = [_image_file(40, 40, "PNG", seed=4)]
        images = triton.InferInput("image", [1], "BYTES")
        images.set_data_from_numpy(np.array(files, dtype=np.object_))
        gz = client.infer(MODEL, [images], request_compression_algorithm="gzip")  # default: all outputs binary
        decoded = [Image.open(io.BytesIO(files[0])).convert("RGB")]
        torch.testing.assert_close(
            torch.from_numpy(gz.as_numpy("logits").copy()),
            _expected(model, preprocess_images(decoded, _preprocess_info(SIZE))),
            rtol=1e-4, atol=1e-4,
        )
        with pytest.raises(triton.InferenceServerException, match="unknown model"):
            client.infer("other", [tensor])
    finally:
        client.close()


def test_concurrent_requests_are_batched(server: ServerThread, model: nn.Module, runner: RecordingRunner) -> None:
    pixels = [torch.randn(1, 3, SIZE, SIZE) for _ in range(8)]
    batches_before = _metric(server.url, "res2net_batch_size_count")
    images_before = _metric(server.url, "res2net_batch_size_sum")
    recorded_before = len(runner.batch_sizes)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            return await asyncio.gather(
                *(http.post(f"/v2/models/{MODEL}/infer", json=_infer_json(p)) for p in pixels)
            )

    responses = asyncio.run(send_all())
    for batch, response in zip(pixels, responses, strict=True):
        assert response.status_code == 200
        logits = torch.tensor(response.json()["outputs"][0]["data"]).reshape(1, NUM_CLASSES)
        torch.testing.assert_close(logits, _expected(model, batch), rtol=1e-4, atol=1e-4)
    sizes = runner.batch_sizes[recorded_before:]
    assert sum(sizes) == 8 and max(sizes) > 1, f"no batching happened: {sizes}"
    assert _metric(server.url, "res2net_batch_size_sum") - images_before == 8
    assert _metric(server.url, "res2net_batch_size_count") - batches_before == len(sizes) < 8


# --- bad requests ------------------------------------------------------------------------

VALID_PIXELS = [0.0] * (3 * SIZE * SIZE)


def _tensor_request(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32", "data": VALID_PIXELS, **changes}
    return {"inputs": [tensor]}


def _image_request(data: bytes) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(data).decode()]}]}


BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {"name": "input", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
        ]
    }
).encode()
EXTRA_INPUT = {"name": "extra", "shape": [1], "datatype": "FP32", "data": [1]}
BAD_JSON_REQUESTS: dict[str, tuple[str, bytes, dict[str, str], int]] = {
    "malformed JSON": (MODEL, b'{"inputs": [', {}, 400),
    "unknown model": ("nope", json.dumps(_tensor_request()).encode(), {}, 404),
    "missing inputs": (MODEL, b'{"inputs": []}', {}, 400),
    "extra input": (MODEL, json.dumps({"inputs": [*_tensor_request()["inputs"], EXTRA_INPUT]}).encode(), {}, 400),
    "wrong datatype": (MODEL, json.dumps(_tensor_request(datatype="FP16")).encode(), {}, 400),
    "wrong shape": (MODEL, json.dumps(_tensor_request(shape=[1, 3, SIZE, SIZE + 1])).encode(), {}, 400),
    "data length": (MODEL, json.dumps(_tensor_request(data=VALID_PIXELS[:-1])).encode(), {}, 400),
    "binary size": (MODEL, BINARY_HEADER + bytes(8), {"Inference-Header-Content-Length": str(len(BINARY_HEADER))}, 400),
    "bad header length": (MODEL, b"{}", {"Inference-Header-Content-Length": "x"}, 400),
    "undecodable image": (MODEL, json.dumps(_image_request(b"not an image")).encode(), {}, 400),
    "truncated image": (MODEL, json.dumps(_image_request(_image_file(64, 64, "JPEG")[:300])).encode(), {}, 400),
    "image too thin": (MODEL, json.dumps(_image_request(_image_file(650, 10, "PNG"))).encode(), {}, 400),
    "gzip bomb": (MODEL, gzip.compress(b" " * (4 * LIMIT)), {"Content-Encoding": "gzip"}, 413),
    "bad gzip": (MODEL, b"not gzip", {"Content-Encoding": "gzip"}, 400),
    "unknown encoding": (MODEL, b"{}", {"Content-Encoding": "br"}, 415),
    "body too large": (MODEL, b" " * (LIMIT + 1), {}, 413),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON_REQUESTS))
def test_bad_requests_get_a_4xx_json_error(
    case: str, client: httpx.Client, server: ServerThread, model: nn.Module
) -> None:
    name, body, headers, status = BAD_JSON_REQUESTS[case]
    errors_before = _metric(server.url, "res2net_requests_total", status=str(status))
    response = client.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert _metric(server.url, "res2net_requests_total", status=str(status)) == errors_before + 1
    _assert_still_serving(client, model)


def test_image_over_the_pixel_limit_is_refused(client: httpx.Client, model: nn.Module) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1100, 1000)).save(buffer, format="PNG")  # compresses to a few kB
    request = _image_request(buffer.getvalue())
    response = client.post(f"/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 413 and "pixels" in response.json()["error"]
    _assert_still_serving(client, model)


def _raw_http(port: int, payload: bytes, *, read_timeout_s: float = 10) -> tuple[int, dict[str, Any]]:
    """Send raw bytes and parse the one response (for requests httpx will not make)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    return int(lines[0].split()[1]), json.loads(body)


def test_declared_oversize_body_is_refused_before_it_is_sent(
    server: ServerThread, client: httpx.Client, model: nn.Module
) -> None:
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    ).encode()
    status, body = _raw_http(server.port, head)  # not a byte of the body is ever sent
    assert status == 413 and "exceeds the limit" in body["error"]
    _assert_still_serving(client, model)


def test_chunked_oversize_body_is_refused_while_streaming(
    server: ServerThread, client: httpx.Client, model: nn.Module
) -> None:
    chunk = b" " * (LIMIT // 4)
    head = f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    framed = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(5))
    status, body = _raw_http(server.port, head + framed)  # no terminating chunk: the limit decides
    assert status == 413 and "exceeds the limit" in body["error"]
    _assert_still_serving(client, model)


def test_slow_clients_time_out_without_blocking_others(
    server: ServerThread, client: httpx.Client, model: nn.Module
) -> None:
    stalled_headers = socket.create_connection(("127.0.0.1", server.port))
    try:
        stalled_headers.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n".encode())
        head = f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        started = time.monotonic()
        status, body = _raw_http(server.port, head + b'{"inputs": ')  # then nothing more
        assert status == 408 and "not received within" in body["error"]
        assert time.monotonic() - started < 5
        _assert_still_serving(client, model)
    finally:
        stalled_headers.close()


def test_metrics_report_requests_latency_and_queue(client: httpx.Client, server: ServerThread) -> None:
    client.post(f"/v2/models/{MODEL}/infer", json=_tensor_request())
    text = client.get("/metrics").text
    route = "/v2/models/{name}/infer"
    assert _metric(server.url, "res2net_requests_total", route=route, status="200") >= 1
    assert _metric(server.url, "res2net_request_latency_seconds_count", route=route) >= 1
    assert "res2net_queue_depth 0.0" in text
    assert _metric(server.url, "res2net_requests_total", status="500") == 0


# --- ONNX exports ------------------------------------------------------------------------


def test_onnx_export_is_served_with_its_sidecar(tmp_path: Path, model: nn.Module) -> None:
    info = _preprocess_info(SIZE)
    onnx_path = export_onnx(model, tmp_path / "tiny.onnx", input_size=info.input_size, preprocess=info)
    runner = load_onnx_runner(onnx_path)
    assert runner.info.platform == "onnxruntime_onnx" and runner.info.class_names == tuple(CLASS_NAMES)
    with ServerThread(create_app(runner, served_name=MODEL)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get(f"/v2/models/{MODEL}").json()["platform"] == "onnxruntime_onnx"
        files = [_image_file(50, 44, "JPEG", seed=5)]
        request = _image_request(files[0])
        logits = http.post(f"/v2/models/{MODEL}/infer", json=request).json()["outputs"][0]["data"]
    decoded = [Image.open(io.BytesIO(files[0])).convert("RGB")]
    expected = _expected(model, preprocess_images(decoded, info))
    torch.testing.assert_close(torch.tensor(logits).reshape(1, NUM_CLASSES), expected, rtol=1e-4, atol=1e-4)


def test_onnx_files_that_cannot_be_served(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_onnx_runner(tmp_path / "missing.onnx")
    graph = tmp_path / "garbage.onnx"
    graph.write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match="needs the JSON"):
        load_onnx_runner(graph)
    sidecar = tmp_path / "garbage.onnx.json"
    sidecar.write_text(json.dumps({"input_size": [3, 8], "mean": [0, 0, 0], "std": [1, 1, 1]}))
    with pytest.raises(CheckpointError, match="malformed"):
        load_onnx_runner(graph)
    sidecar.write_text(json.dumps(_preprocess_info(SIZE).to_dict()))
    with pytest.raises(CheckpointError, match="cannot be served with onnxruntime") as err:
        load_onnx_runner(graph)
    assert "\n" not in str(err.value)
