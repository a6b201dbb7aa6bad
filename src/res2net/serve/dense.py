"""A detection or segmentation checkpoint on the demo page: drop an image, see its boxes, masks or saliency map.

``res2net serve --checkpoint RUN/last.pth --ui`` with a checkpoint of ``train-detection`` serves this page at
``/ui`` beside the health endpoints. The KServe v2 ``infer`` endpoint stays the classifiers' (its outputs are
fixed-shape class scores; a detector's answer is a variable-length list per image), so a dense checkpoint is served
as a page or not at all. The page draws exactly what ``res2net predict-detection`` draws (the same
:func:`~res2net.detection.predict.draw_prediction`), decodes uploads with the server's limits, and runs one forward
pass at a time on one thread, as the classifier's batcher does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI
from PIL import Image
from starlette.concurrency import run_in_threadpool
from torch import nn
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from ..detection.config import Task
from ..detection.predict import draw_prediction
from ..version import __version__
from .runner import DEFAULT_MAX_IMAGE_PIXELS, decode_images
from .ui import IMAGE_HEIGHT, answer_upload, image_input, mount

#: The score a box needs to be drawn when the page opens; the page has a slider for it.
DEFAULT_SCORE_THRESHOLD = 0.5
WHAT_IS_DRAWN = {"detection": "boxes", "instance": "boxes and masks", "semantic": "class masks",
                 "saliency": "the saliency map"}


@dataclass(frozen=True)
class DenseAnswer:
    """What the page shows for one image."""

    drawing: Image.Image
    record: dict[str, Any]
    summary: str


def dense_predictor(model: nn.Module, task: Task, class_names: Sequence[str], *, precision: str,
                    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                    ) -> tuple[Callable[[bytes, float], Awaitable[DenseAnswer]], ThreadPoolExecutor]:
    """The page's handler (encoded image, score threshold -> drawing) and the one thread its passes run on."""
    model.eval()
    forward_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dense-forward")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext

    def forward(image: Image.Image, threshold: float) -> tuple[torch.Tensor, dict[str, Any]]:
        with torch.inference_mode(), autocast():
            return draw_prediction(model, task, class_names, pil_to_tensor(image), score_threshold=threshold,
                                   device=torch.device("cpu"))

    async def predict(data: bytes, threshold: float) -> DenseAnswer:
        started = time.perf_counter()
        images = await run_in_threadpool(decode_images, [data], max_pixels=max_image_pixels)
        drawing, record = await asyncio.get_running_loop().run_in_executor(forward_thread, forward, images[0],
                                                                            threshold)
        summary = f"**{(time.perf_counter() - started) * 1000:.0f} ms** from upload to result: {record['summary']}"
        return DenseAnswer(to_pil_image(drawing), record, summary)

    return predict, forward_thread


def build_dense_page(predict: Callable[[bytes, float], Awaitable[DenseAnswer]], *, title: str, task: Task,
                     examples: Sequence[Path], precision: str) -> Any:
    """The Gradio Blocks of the page."""
    import gradio as gr

    async def on_image(path: str | None, threshold: float) -> tuple[Image.Image, dict[str, Any], str]:
        answer = await answer_upload(path, lambda data: predict(data, threshold))
        return answer.drawing, answer.record, answer.summary

    boxes = task in ("detection", "instance")
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nDrop an image: the model draws {WHAT_IS_DRAWN[task]} on it. Served at "
                    f"{precision}, drawn as `res2net predict-detection` draws.")
        with gr.Row(equal_height=True):
            image = image_input(label="Image", sources=["upload", "clipboard"], elem_id="image", height=IMAGE_HEIGHT)
            drawing = gr.Image(type="pil", label="Prediction", elem_id="drawing", interactive=False,
                               height=IMAGE_HEIGHT)
        threshold = gr.Slider(0.0, 1.0, value=DEFAULT_SCORE_THRESHOLD, step=0.05, label="Score threshold",
                              visible=boxes, elem_id="threshold")
        run = gr.Button("Predict", variant="primary", elem_id="predict")
        timing = gr.Markdown(elem_id="timing")
        details = gr.JSON(label="Prediction record", elem_id="record")
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=image, label="Examples from the validation split")
        run.click(on_image, inputs=[image, threshold], outputs=[drawing, details, timing], api_name="predict")
        image.upload(on_image, inputs=[image, threshold], outputs=[drawing, details, timing], api_name=False)
    return page


def create_dense_app(model: nn.Module, task: Task, class_names: Sequence[str], *, served_name: str,
                     precision: str, examples: Sequence[Path] = (),
                     max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> FastAPI:
    """The page at ``/ui`` and the v2 health endpoints, for a detection or segmentation model."""
    predict, forward_thread = dense_predictor(model, task, class_names, precision=precision,
                                              max_image_pixels=max_image_pixels)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            forward_thread.shutdown(wait=True)

    app = FastAPI(title=f"{served_name} demo page", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    page = build_dense_page(predict, title=f"{served_name} (res2net {__version__})", task=task,
                            examples=examples, precision=precision)
    return mount(app, page)
