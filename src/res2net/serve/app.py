"""The FastAPI app: KServe v2 / Open Inference Protocol REST endpoints over a model runner.

Request handling is arranged so the event loop only moves bytes: body decoding (JSON of a
224x224 tensor is megabytes) and image decoding run in the thread pool, image preprocessing
and the forward pass run on the batcher's thread (the one thread that runs PyTorch's
parallel kernels; see ``batcher``), and the loop is free to accept and batch other requests
meanwhile. A request's memory is bounded before anything is decoded: at most
``max_images_per_request`` images (or tensor rows) and ``max_request_pixels`` decoded pixels
(read from the image headers), and it reaches the model in chunks of at most
``max_batch_size``, so its preprocessed tensors and activations never exceed one batch's.
Every client mistake is a :class:`RequestError` turned into
``{"error": "..."}`` with its 4xx status; only faults of the server itself give a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..version import __version__
from .batcher import Batch, BatcherClosed, Deferred, DynamicBatcher
from .body import read_body
from .errors import RequestError
from .metrics import ServeMetrics
from .protocol import IMAGE_INPUT, LOGITS_OUTPUT, PROBABILITIES_OUTPUT, TENSOR_INPUT, InferRequest, decode_request
from .response import HEADER_LENGTH, encode_response
from .runner import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, ModelRunner, decode_images

if TYPE_CHECKING:
    from .ui import CamSource

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: Images (or tensor rows) one request may hold; each is decoded and kept until the request is answered.
DEFAULT_MAX_IMAGES_PER_REQUEST = 256
SERVER_NAME = "res2net"
EXTENSIONS = ["binary_tensor_data", "classification"]


def create_app(
    model_runner: ModelRunner,
    *,
    served_name: str,
    max_batch_size: int = 16,
    max_latency_ms: float = 10.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = 30.0,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_images_per_request: int = DEFAULT_MAX_IMAGES_PER_REQUEST,
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
    ui: UiOptions | None = None,
) -> FastAPI:
    """An app serving ``model_runner`` as model ``served_name`` (and, with ``ui``, the demo page at ``/ui``).

    The batcher starts with the app's lifespan and, on shutdown, finishes every queued
    request before the process exits.
    """
    info = model_runner.info
    metrics = ServeMetrics()
    batcher = DynamicBatcher(
        model_runner, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, metrics=metrics
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    # No /docs or /openapi.json: the protocol is the API, and fewer routes is less surface.
    app = FastAPI(
        title=f"{SERVER_NAME} inference server", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app)

    def check_model(name: str) -> None:
        if name != served_name:
            raise RequestError(f"unknown model {name!r}; this server serves {served_name!r}", status=404)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": batcher.running}, status_code=200 if batcher.running else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        check_model(name)
        channels, height, width = info.input_size
        return {
            "name": served_name,
            "versions": ["1"],
            "platform": info.platform,
            "inputs": [
                {"name": TENSOR_INPUT, "datatype": "FP32", "shape": [-1, channels, height, width]},
                {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [
                {"name": LOGITS_OUTPUT, "datatype": "FP32", "shape": [-1, info.num_classes]},
                {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, info.num_classes]},
            ],
        }

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        check_model(name)
        return JSONResponse(
            {"name": served_name, "ready": batcher.running}, status_code=200 if batcher.running else 503
        )

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        check_model(name)
        # Announced before its body is read, so a batch being formed waits for it.
        with batcher.expect() as expected:
            body = await read_body(request, limit=max_body_bytes, timeout_s=body_timeout_s)
            parsed = await run_in_threadpool(
                decode_request, body, _header_length(request), input_shape=info.input_size
            )
            if parsed.batch_size > max_images_per_request:
                raise RequestError(f"the request holds {parsed.batch_size} images; this server takes at most "
                                   f"{max_images_per_request} per request (--max-images-per-request)", status=413)
            chunks = await run_in_threadpool(_model_chunks, model_runner, parsed, max_batch_size, max_image_pixels,
                                             max_request_pixels)
            try:
                logits = await expected.submit(chunks)
            except BatcherClosed:
                return JSONResponse({"error": "the server is shutting down"}, status_code=503)
        encoded = encode_response(logits, parsed, model_name=served_name, class_names=info.class_names)
        return Response(encoded.body, media_type=encoded.media_type, headers=encoded.headers)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    if ui is not None:
        from .ui import build_page, classifier, mount

        classify = classifier(model_runner, batcher, ui.cam, max_image_pixels)
        page = build_page(classify, title=f"{served_name} ({SERVER_NAME} {__version__})", examples=ui.examples,
                          precision=ui.precision)
        app = mount(app, page)
    return app


@dataclass(frozen=True)
class UiOptions:
    """The demo page: Grad-CAM's model (None: no overlay), example images, the precision it says it runs."""

    cam: CamSource | None
    examples: list[Path]
    precision: str


def _model_chunks(runner: ModelRunner, request: InferRequest, max_batch_size: int, max_image_pixels: int,
                  max_request_pixels: int) -> list[Batch]:
    """The request's model input in chunks of at most ``max_batch_size`` rows. Images are decoded
    here (PIL, in the thread pool, where a bad file becomes a 400), each chunk turned into a
    tensor on the batcher's thread when its pass runs (see batcher)."""
    if request.pixels is not None:
        pixels = torch.from_numpy(request.pixels)
        return [pixels[i : i + max_batch_size] for i in range(0, pixels.shape[0], max_batch_size)]
    assert request.images is not None
    images = decode_images(request.images, max_pixels=max_image_pixels, max_total_pixels=max_request_pixels)
    return [Deferred(len(chunk), partial(runner.preprocess, chunk))
            for chunk in (images[i : i + max_batch_size] for i in range(0, len(images), max_batch_size))]


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise RequestError(f"{HEADER_LENGTH} must be a non-negative integer, got {value!r}")
    return int(value)


def _add_error_handlers(app: FastAPI) -> None:
    """All errors in the v2 protocol's shape, ``{"error": "..."}``."""

    async def request_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestError)
        return JSONResponse({"error": str(err)}, status_code=err.status)

    async def http_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    async def internal_error(_: Request, err: Exception) -> JSONResponse:
        log.error("internal error while serving a request", exc_info=err)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


class _MetricsMiddleware:
    """Counts every response by route template (not raw path: unknown URLs would add series)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self._metrics.requests.labels(route=label, status=str(status)).inc()
            self._metrics.latency_seconds.labels(route=label).observe(time.perf_counter() - started)
