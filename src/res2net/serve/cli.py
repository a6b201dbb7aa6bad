"""``res2net serve``: build a model runner from the command line and serve it over HTTP.

This module imports nothing beyond the standard library at import time, so the ``res2net``
console script keeps working when the ``serve`` extra (FastAPI, uvicorn, prometheus-client,
onnxruntime) is not installed; ``run_serve`` says what to install instead.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch

    from ..detection.checkpoint import DenseCheckpoint
    from ..inference.session import PreprocessInfo
    from .app import UiOptions
    from .runner import ModelRunner

PRECISIONS = ("fp32", "bf16", "int8")
#: int8 scales come from activation ranges; a few dozen typical images are enough.
MAX_CALIBRATION_IMAGES = 64
CALIBRATION_SEED = 0


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``res2net`` command's subparsers and return its parser."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (KServe v2 / Open Inference Protocol)",
        description="Serve a model with the KServe v2 REST API, dynamic batching and Prometheus /metrics.",
    )
    parser.add_argument("--model", help="model name (see `res2net models`); required unless --onnx is given")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="checkpoint in any supported format")
    source.add_argument("--pretrained", action="store_true", help="the model's published weights")
    source.add_argument("--onnx", type=Path, help="an ONNX file from `res2net export`, with its JSON sidecar")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="PyTorch inference precision")
    parser.add_argument(
        "--calibration-dir", type=Path,
        help=f"int8 only: folder of typical images; a seeded sample of {MAX_CALIBRATION_IMAGES} of them calibrates"
    )
    parser.add_argument("--num-classes", type=int, help="classifier size, when the checkpoint's differs from 1000")
    parser.add_argument("--served-name", help="model name in URLs (default: --model, or the ONNX file's stem)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one")
    parser.add_argument("--max-batch-size", type=int, default=16, help="images per batched forward pass")
    parser.add_argument(
        "--max-latency-ms", type=float, default=10.0,
        help="longest a batch waits for requests still being received (default 10)",
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=64.0, help="largest request body accepted, in MiB (default 64)"
    )
    parser.add_argument("--max-images-per-request", type=int, default=256,
                        help="fastapi engine: images (or tensor rows) one request may hold; more is a 413 (default "
                        "256); requests larger than --max-batch-size run in chunks of that size (Triton refuses "
                        "requests larger than --max-batch-size)")
    parser.add_argument("--max-request-megapixels", type=float, default=64.0,
                        help="decoded pixels of one request's images together, in millions, read from their headers "
                        "before decoding; more is a 413 (default 64)")
    parser.add_argument("--ui", action="store_true",
                        help="fastapi engine: also serve a demo page at /ui (Gradio: the ui extra): upload an image, "
                        "see the top-5 classes and the Grad-CAM overlay")
    parser.add_argument("--engine", choices=("fastapi", "triton"), default="fastapi",
                        help="fastapi: this package's KServe v2 server (default); triton: NVIDIA Triton Inference "
                        "Server on an exported repository (HTTP on --port, gRPC, metrics; the 'triton' extra)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="triton engine: gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="triton engine: metrics port (default 8002)")
    parser.add_argument("--supervisor-port", type=int, default=8003,
                        help="triton engine: port of the supervisor's /metrics, which counts tritonserver restarts "
                        "(default 8003)")
    parser.set_defaults(handler=run_serve)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain. User mistakes raise :class:`UserError`."""
    dense = _dense_checkpoint(args.checkpoint) if args.checkpoint is not None and not args.model else None
    if dense is not None:
        return run_dense_page(args, dense)
    _check_args(args)
    if args.engine == "triton":
        return run_triton_engine(args)
    try:
        from .app import create_app
        from .server import serve
    except ImportError as err:
        raise UserError(f"serving needs the 'serve' extra (pip install 'res2net[serve]'): {err}") from None
    runner = build_runner(args)
    served_name = args.served_name or (args.onnx.stem if args.onnx is not None else args.model)
    app = create_app(
        runner,
        served_name=served_name,
        max_batch_size=args.max_batch_size,
        max_latency_ms=args.max_latency_ms,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_images_per_request=args.max_images_per_request,
        max_request_pixels=int(args.max_request_megapixels * 1_000_000),
        ui=_ui_options(args, runner) if args.ui else None,
    )
    try:
        started = serve(app, host=args.host, port=args.port)
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    return 0 if started else 1


def _ui_options(args: argparse.Namespace, runner: ModelRunner) -> UiOptions:
    """The demo page's settings: Grad-CAM on the runner's eager model, examples from the validation split the
    checkpoint was trained with (when it is one of our training checkpoints and that folder is here)."""
    from ..checkpoint.training import read_training_checkpoint
    from ..errors import CheckpointError
    from ..inference.session import preprocess_images
    from .app import UiOptions
    from .ui import CamSource, validation_examples

    _require_gradio()
    eager = getattr(runner, "eager_model", None)
    info = getattr(runner, "preprocess_info", None)
    cam = None if eager is None or info is None else CamSource(eager, partial(preprocess_images, info=info),
                                                                info.crop_pct)
    examples: list[Path] = []
    if args.checkpoint is not None:
        try:
            config = read_training_checkpoint(args.checkpoint).config
            examples = validation_examples(Path(config["data_dir"]), str(config["val_split"]))
        except (CheckpointError, KeyError):
            pass
    return UiOptions(cam=cam, examples=examples, precision=args.precision if args.onnx is None else "onnx")


def _require_gradio() -> None:
    """--ui's one check for the 'ui' extra, before anything is loaded; the page imports Gradio where it is built."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("--ui needs Gradio: pip install 'res2net[ui]'") from None


def _dense_checkpoint(path: Path) -> DenseCheckpoint | None:
    """``path`` as a checkpoint of ``train-detection``, or None for anything else (whose errors, an unreadable
    file included, are the classifier path's to report)."""
    from ..checkpoint.torchfile import load_torch_bytes, read_file
    from ..detection.checkpoint import dense_checkpoint_from, is_dense_checkpoint
    from ..errors import CheckpointError

    try:
        saved = load_torch_bytes(read_file(path), path)
    except CheckpointError:
        return None
    return dense_checkpoint_from(saved, path) if is_dense_checkpoint(saved) else None


def run_dense_page(args: argparse.Namespace, checkpoint: DenseCheckpoint) -> int:
    """A detection or segmentation checkpoint: the demo page (see serve.dense), which --ui must ask for."""
    if not args.ui:
        raise UserError(f"{args.checkpoint} is a detection/segmentation checkpoint: the v2 infer API serves "
                        "classifiers, so such a checkpoint is served as the demo page; add --ui")
    if args.engine != "fastapi" or args.precision == "int8":
        raise UserError("a detection/segmentation page runs on --engine fastapi at --precision fp32 or bf16")
    _require_gradio()
    from ..detection.checkpoint import model_from_dense_checkpoint
    from ..detection.config import TASKS
    from .dense import create_dense_app
    from .server import serve
    from .ui import validation_examples

    model = model_from_dense_checkpoint(checkpoint, args.checkpoint)
    data_dir, split = checkpoint.config.get("data_dir"), checkpoint.config.get("val_split")
    examples = validation_examples(Path(data_dir), str(split)) if data_dir and split else []
    app = create_dense_app(model, TASKS[checkpoint.builder], checkpoint.class_names,
                           served_name=args.served_name or checkpoint.builder, precision=args.precision,
                           examples=examples)
    try:
        started = serve(app, host=args.host, port=args.port)
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    return 0 if started else 1


def run_triton_engine(args: argparse.Namespace) -> int:
    """Export the model as a Triton repository (Python-backend classifier running onnxruntime, the
    preprocessing model and the ensemble) into a temporary folder and serve it with tritonserver
    until SIGTERM/SIGINT, which Triton answers by draining in-flight requests. tritonserver is
    supervised: after a crash it is restarted on the same ports, and the restarts are counted on
    ``--supervisor-port``'s ``/metrics`` (``res2net_triton_restarts_total``, ``res2net_triton_up``)."""
    import signal
    import tempfile
    import threading

    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    from ..inference.session import load_model
    from ..inference.triton_repo import TritonOptions, export_model_repository
    from .tritonserver import bytes_inputs_supported, find_tritonserver, supervise_tritonserver

    find_tritonserver()  # a missing binary is reported before the model is loaded
    if not bytes_inputs_supported():
        print("note: encoded images (the ensemble's 'image' input) need NumPy < 2 in the models' environment "
              "(Triton's Python-backend stub is built against NumPy 1): install the 'triton' extra or set "
              "RES2NET_TRITON_PYTHONPATH; tensor inputs work as they are", file=sys.stderr)
    model, info = load_model(args.model, checkpoint_path=args.checkpoint, pretrained=args.pretrained,
                             num_classes=args.num_classes)
    name = args.served_name or args.model.replace(".", "_")
    options = TritonOptions(max_batch_size=args.max_batch_size, runtime="python",
                            queue_delay_us=int(args.max_latency_ms * 1000),
                            max_request_pixels=int(args.max_request_megapixels * 1_000_000))
    registry = CollectorRegistry()
    restarts = Counter("res2net_triton_restarts", "tritonserver restarts after it stopped unexpectedly",
                       registry=registry)
    up = Gauge("res2net_triton_up", "1 while tritonserver is ready", registry=registry)
    try:
        start_http_server(args.supervisor_port, addr=args.host, registry=registry)
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.supervisor_port} (--supervisor-port): "
                        f"{err.strerror or err}") from None
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    def on_ready(restarted: int) -> None:
        up.set(1)
        if restarted == 0:
            print(f"Triton serving {name!r} (tensors or encoded images; also {name}_ensemble): "
                  f"HTTP {args.host}:{args.port}, gRPC {args.host}:{args.grpc_port}, "
                  f"metrics {args.host}:{args.metrics_port}, restarts {args.host}:{args.supervisor_port}", flush=True)
        else:
            print(f"Triton serving {name!r} again after restart {restarted}", flush=True)

    def report(line: str) -> None:
        up.set(0)
        restarts.inc()
        print(f"warning: {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="res2net-triton-repo-") as folder:
        repository = Path(folder)
        export_model_repository(model, info, repository, name, options)
        supervise_tritonserver(repository, http_port=args.port, grpc_port=args.grpc_port,
                               metrics_port=args.metrics_port, host=args.host, log=repository / "tritonserver.log",
                               stopping=stopping.wait, on_ready=on_ready, report=report)
    print("Triton stopped", flush=True)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if args.engine == "triton":
        if args.onnx is not None or not args.model:
            raise UserError("--engine triton exports the model itself: give --model NAME (and its weights)")
        if args.precision != "fp32":
            raise UserError("--engine triton serves the fp32 ONNX export; bf16 and int8 run with --engine fastapi")
        if args.port == 0 or len({args.port, args.grpc_port, args.metrics_port, args.supervisor_port}) != 4:
            raise UserError("--engine triton needs four distinct fixed ports (--port, --grpc-port, --metrics-port, "
                            "--supervisor-port)")
    if args.onnx is None and not args.model:
        raise UserError("serve needs --model NAME (or --onnx FILE)")
    if args.onnx is not None and args.precision != "fp32":
        raise UserError("--precision applies to PyTorch models; an ONNX export runs as exported")
    if args.precision == "int8" and args.calibration_dir is None:
        raise UserError("--precision int8 needs --calibration-dir DIR: a few dozen images like those to be served")
    if args.calibration_dir is not None and args.precision != "int8":
        raise UserError("--calibration-dir is only used with --precision int8")
    if args.max_batch_size < 1:
        raise UserError(f"--max-batch-size must be at least 1, got {args.max_batch_size}")
    if args.max_latency_ms < 0:
        raise UserError(f"--max-latency-ms must be >= 0, got {args.max_latency_ms:g}")
    if args.max_body_mb <= 0:
        raise UserError(f"--max-body-mb must be positive, got {args.max_body_mb:g}")
    if args.max_images_per_request < 1:
        raise UserError(f"--max-images-per-request must be at least 1, got {args.max_images_per_request}")
    if args.max_request_megapixels <= 0:
        raise UserError(f"--max-request-megapixels must be positive, got {args.max_request_megapixels:g}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")


def build_runner(args: argparse.Namespace) -> ModelRunner:
    """The model runner ``args`` describe, built on a thread that exits when it is done.

    Loading, optimising and warming up a model runs PyTorch's parallel kernels, which gives
    the calling thread an OpenMP team for as long as that thread lives. Left on the main
    thread, that team would make every forward pass on the batcher's thread ~1.5x slower
    (libgomp stops spinning once teams outnumber cores; see ``batcher``).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="res2net-load") as pool:
        return pool.submit(_build_runner, args).result()


def _build_runner(args: argparse.Namespace) -> ModelRunner:
    if args.onnx is not None:
        from .onnx_runner import load_onnx_runner

        return load_onnx_runner(args.onnx)
    from ..inference.optimize import optimize_for_inference
    from ..inference.session import load_model, preprocess_images
    from .runner import TorchRunner

    model, info = load_model(
        args.model, checkpoint_path=args.checkpoint, pretrained=args.pretrained, num_classes=args.num_classes
    )
    calibration = calibration_images(args.calibration_dir, info) if args.calibration_dir is not None else None
    fast = optimize_for_inference(
        model, args.precision, calibration_images=calibration, example_input_size=info.input_size
    )
    return TorchRunner(fast, info, preprocess_images, eager=model)


def calibration_images(directory: Path, info: PreprocessInfo) -> torch.Tensor:
    """A seeded sample of up to ``MAX_CALIBRATION_IMAGES`` images of ``directory``, preprocessed as
    served images are."""
    from ..inference.calibration import describe_sample, image_files, load_calibration, sample_files
    from ..inference.session import eval_transform

    files = image_files(directory, what="--calibration-dir")
    chosen = sample_files(files, MAX_CALIBRATION_IMAGES, CALIBRATION_SEED)
    source = describe_sample(len(chosen), len(files), CALIBRATION_SEED, str(directory))
    drawn = load_calibration(chosen, eval_transform(info), source=source)
    print(f"int8 calibration: {drawn.source}", file=sys.stderr, flush=True)
    return drawn.images
