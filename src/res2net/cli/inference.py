"""``res2net predict`` and ``res2net export``, and the model arguments they share."""

from __future__ import annotations

import argparse

from .handlers import lazy_handler

#: Inference precisions (res2net.inference.optimize.PRECISIONS).
PRECISIONS = ("fp32", "bf16", "int8")
#: Export formats (res2net.inference.export.FORMATS).
EXPORT_FORMATS = ("onnx", "torchscript", "triton", "kserve", "hf")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model, which weights, which labels."""
    parser.add_argument("--model", required=True, metavar="NAME", help="model name, e.g. res2net50 (res2net models)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="PATH", help="checkpoint in any supported format")
    weights.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="TAG",
                         help="the model's published weights (optionally a tag such as 'official' or 'mindcv')")
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line (overrides stored names)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: from the weights)")


def add_predict_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="top-k classes for images (and Grad-CAM overlays)",
        description="Classify image files and folders; an unreadable image is reported and skipped "
        "(exit status 1 at the end).",
    )
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    parser.add_argument("--topk", type=int, default=5, help="classes to print per image (default: 5)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="inference precision (default: fp32)")
    parser.add_argument("--cam", metavar="OUT_DIR", help="write a Grad-CAM overlay PNG per image into OUT_DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.set_defaults(handler=lazy_handler("res2net.inference.predict:run_predict"))
    return parser


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX or TorchScript (with a preprocessing JSON beside it), a Triton model "
        "repository, a KServe InferenceService, or a Hugging Face Hub folder (hf)",
        description="Export to ONNX (dynamic batch axis) or TorchScript; the export is run against "
        "PyTorch and the max relative error printed; <output>.json holds the preprocessing and labels. "
        "--format triton writes a Triton model repository (classifier, preprocessing, ensemble) into the "
        "--output folder; --format kserve writes that repository and an InferenceService manifest; --format hf "
        "writes timm's Hub layout (config.json, model.safetensors) and a model card (README.md) into --output.",
    )
    add_model_arguments(parser)
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="export format (default: onnx)")
    parser.add_argument("--output", required=True, metavar="PATH", help="file to write (triton/kserve: a folder)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    triton = parser.add_argument_group("triton / kserve")
    triton.add_argument("--name", default=None,
                        help="Triton model name (default: the model name); hf: the repository's name in the card")
    triton.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: TensorRT half precision (needs --gpu)")
    triton.add_argument("--max-batch-size", type=int, default=16, help="Triton max_batch_size (default 16)")
    triton.add_argument("--queue-delay-us", type=int, default=2000,
                        help="dynamic batcher's max queue delay in microseconds (default 2000)")
    triton.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    triton.add_argument("--gpu", action="store_true", help="GPU instances with the TensorRT accelerator")
    triton.add_argument("--runtime", choices=("onnxruntime", "python"), default="onnxruntime",
                        help="classifier on Triton's onnxruntime backend, or a Python-backend model running "
                        "onnxruntime (for servers without that backend)")
    triton.add_argument("--storage-uri", default="s3://YOUR-BUCKET/res2net/model_repository",
                        help="kserve: where the repository will be uploaded (placeholder by default)")
    parser.set_defaults(handler=lazy_handler("res2net.inference.export:run_export"))
    return parser


def add_push_to_hub_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "push-to-hub", help="upload a checkpoint to the Hugging Face Hub (timm's layout and a model card)",
        description="Export CHECKPOINT as `res2net export --format hf` does and upload the folder to ORG/REPO as one "
        "commit (huggingface_hub: its token from `hf auth login` or HF_TOKEN; the hub extra).")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint in any supported format")
    parser.add_argument("repo_id", metavar="ORG/REPO", help="the Hub repository (created if missing)")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="model name (default: the one our training checkpoints record)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", default=None, help="branch to push to (default: main)")
    parser.set_defaults(handler=lazy_handler("res2net.inference.export:run_push_to_hub"))
    return parser
