"""The demo page: drop a picture on the served model, see its top-5 classes and where it looked.

People judge a vision model by giving it a picture of their own. ``res2net serve --ui`` mounts a Gradio page at
``/ui`` on the same FastAPI app, so one process and one port serve the KServe v2 API and the page, and the page
goes through the same path as the API: the server's own runner (its precision, fp32/bf16/int8), its
preprocessing, its decoding limits, and its batcher. The Grad-CAM overlay needs gradients, which the optimised
runner does not have, so it is computed on the eager model the runner was made from (when the server has one: an
``--onnx`` export has none, and the page says so). Gradio is the ``ui`` extra.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image
from starlette.concurrency import run_in_threadpool
from torch import nn

from .batcher import Deferred, DynamicBatcher
from .errors import RequestError
from .runner import ModelRunner, decode_images

T = TypeVar("T")

UI_PATH = "/ui"
TOP_K = 5
#: Largest file the page accepts; Gradio refuses bigger uploads before they reach the handler.
MAX_UPLOAD = "20mb"
#: Display height of the input and the overlay; ``FILL`` scales a small image (a 32-pixel digit) up to it.
IMAGE_HEIGHT = 320
FILL = "#image img, #cam img, #drawing img { width: 100%; height: 100%; object-fit: contain; }"


@dataclass(frozen=True)
class CamSource:
    """The eager model and preprocessing Grad-CAM runs on."""

    model: nn.Module
    preprocess: Callable[[list[Image.Image]], torch.Tensor]
    crop_pct: float


@dataclass(frozen=True)
class Answer:
    """What the page shows for one image."""

    top: dict[str, float]
    cam: Image.Image | None
    summary: str


def classifier(runner: ModelRunner, batcher: DynamicBatcher, cam: CamSource | None,
               max_image_pixels: int) -> Callable[[bytes], Awaitable[Answer]]:
    """The page's handler: encoded image -> top-5 (through the batcher), a CAM overlay, and the time taken."""
    names = runner.info.class_names

    async def classify(data: bytes) -> Answer:
        started = time.perf_counter()
        images = await run_in_threadpool(decode_images, [data], max_pixels=max_image_pixels)
        with batcher.expect() as expected:
            logits = await expected.submit([Deferred(1, partial(runner.preprocess, images))])
        served = time.perf_counter() - started
        probabilities = torch.softmax(logits[0], dim=0)
        values, indices = probabilities.topk(min(TOP_K, probabilities.numel()))
        top = {(names[i] if names else str(i)): float(v) for v, i in zip(values.tolist(), indices.tolist())}
        overlay = None
        if cam is not None:
            overlay = await run_in_threadpool(_cam_overlay, cam, images[0], int(indices[0]))
        total = time.perf_counter() - started
        summary = f"**{total * 1000:.0f} ms** from upload to result: classified in {served * 1000:.0f} ms"
        summary += (f", Grad-CAM {(total - served) * 1000:.0f} ms" if cam is not None
                    else " (no Grad-CAM: an ONNX export has no eager model)")
        return Answer(top, overlay, summary)

    return classify


def _cam_overlay(cam: CamSource, image: Image.Image, class_index: int) -> Image.Image:
    from ..inference.cam import grad_cam, overlay

    heat = grad_cam(cam.model, cam.preprocess([image]), torch.tensor([class_index]))
    return overlay(image, heat[0], cam.crop_pct)


def image_input(**kwargs: Any) -> Any:
    """Gradio's image input, except that the upload reaches the handler as the file it is.

    ``gr.Image`` opens the upload with PIL before any handler runs, so a file that is not an image fails inside
    Gradio with its own message about preprocessing. Here the server's decoder reads it, under the server's pixel
    limit, and the page says in one line what is wrong. Only this component's ``preprocess`` is replaced: Gradio
    still checks that the file is one it received before calling it, and the browser side is ``gr.Image``'s.
    (A subclass would do the same, but Gradio writes a ``.pyi`` stub beside the module of every component class.)
    """
    import gradio as gr

    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    component.preprocess = _uploaded_path
    return component


def _uploaded_path(payload: Any) -> str | None:
    return None if payload is None else payload.path


async def answer_upload(path: str | None, ask: Callable[[bytes], Awaitable[T]]) -> T:
    """``ask`` on the uploaded file's bytes, for both pages; no image, or input the server refuses (not an image,
    too many pixels), is a message on the page, and the server stays ready."""
    import gradio as gr

    if not path:
        raise gr.Error("Choose an image first: upload, paste or drop one.")
    try:
        return await ask(Path(path).read_bytes())
    except RequestError as err:
        raise gr.Error(str(err)) from None


def build_page(classify: Callable[[bytes], Awaitable[Answer]], *, title: str, examples: Sequence[Path],
               precision: str) -> Any:
    """The Gradio Blocks of the page."""
    import gradio as gr

    async def on_image(path: str | None) -> tuple[dict[str, float], Image.Image | None, str]:
        answer = await answer_upload(path, classify)
        return answer.top, answer.cam, answer.summary

    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nDrop an image: the model's top-{TOP_K} classes, and where it looked for the "
                    f"first (Grad-CAM). Served at {precision}, through the same batcher as `/v2/models/.../infer`.")
        with gr.Row(equal_height=True):
            image = image_input(label="Image", sources=["upload", "clipboard"], elem_id="image", height=IMAGE_HEIGHT)
            heat = gr.Image(type="pil", label="Grad-CAM", elem_id="cam", interactive=False, height=IMAGE_HEIGHT)
            with gr.Column():
                top = gr.Label(num_top_classes=TOP_K, label=f"Top-{TOP_K} classes", elem_id="top")
                timing = gr.Markdown(elem_id="timing")
        run = gr.Button("Classify", variant="primary", elem_id="classify")
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=image, label="Examples from the validation split")
        run.click(on_image, inputs=image, outputs=[top, heat, timing], api_name="classify")
        image.upload(on_image, inputs=image, outputs=[top, heat, timing], api_name=False)
    return page


def mount(app: Any, page: Any) -> Any:
    """``page`` at ``/ui`` on the FastAPI ``app``."""
    import gradio as gr

    return gr.mount_gradio_app(app, page, path=UI_PATH, max_file_size=MAX_UPLOAD, ssr_mode=False,
                                css=FILL)


def validation_examples(data_dir: Path, split: str, count: int = 6) -> list[Path]:
    """A few images of the split the model was validated on: one from each of the first ``count`` classes of an
    ImageNet-style folder, or the first ``count`` images of a detection split's flat folder."""
    from ..data.folder import IMG_EXTENSIONS

    folder = data_dir / split
    if not folder.is_dir():
        return []
    entries = sorted(folder.iterdir())
    classes = [p for p in entries if p.is_dir()]
    if not classes:
        return [p for p in entries if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS][:count]
    chosen = []
    for class_dir in classes[:count]:
        first = next(iter(sorted(p for p in class_dir.iterdir() if p.is_file())), None)
        if first is not None:
            chosen.append(first)
    return chosen
