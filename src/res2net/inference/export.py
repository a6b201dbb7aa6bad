"""Exporting a model for other runtimes: ONNX (dynamic batch) and TorchScript, with the
preprocessing written beside the file as JSON so a deployment cannot guess it wrong.

Both exports start from the BatchNorm-folded model: the graph is smaller and any
runtime gets the folding even if it would not do it itself. The ONNX export is checked
against PyTorch in onnxruntime before the command reports success.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .fold import fold_batchnorm
from .onnx_runtime import INPUT_NAME, OUTPUT_NAME, make_session, onnx_bytes
from .session import PreprocessInfo, load_model

FORMATS = ("onnx", "torchscript", "triton", "kserve", "hf")
DEFAULT_INPUT_SIZE = (3, 224, 224)


def sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(path: str | Path, info: PreprocessInfo, *, export_format: str) -> Path:
    """Write the preprocessing and class names beside an exported model."""
    target = sidecar_path(path)
    payload = {"format": export_format, "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, **info.to_dict()}
    target.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return target


def _prepare_output(path: str | Path) -> Path:
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist")
    return path


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE,
    opset: int = 17,
    preprocess: PreprocessInfo | None = None,
) -> Path:
    """Write ``model`` as ONNX (input ``input`` NCHW float32 with dynamic batch, height and
    width; output ``logits``), plus ``<path>.json`` when ``preprocess`` is given."""
    path = _prepare_output(path)
    path.write_bytes(onnx_bytes(fold_batchnorm(model), input_size, opset))
    if preprocess is not None:
        write_sidecar(path, preprocess, export_format="onnx")
    return path


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE,
    preprocess: PreprocessInfo | None = None,
) -> Path:
    """Write ``model`` as a traced, frozen TorchScript module (loadable with
    ``torch.jit.load`` without this package), plus ``<path>.json`` when ``preprocess``
    is given. Tracing is exact here: the networks have no data-dependent control flow."""
    path = _prepare_output(path)
    folded = fold_batchnorm(model).requires_grad_(False)
    # TorchScript is deprecated upstream but is what the issue asks for and what many
    # C++ deployments still load; its FutureWarnings are expected here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(folded, torch.zeros(1, *input_size))
        frozen = torch.jit.freeze(traced)
        torch.jit.save(frozen, str(path))
    if preprocess is not None:
        write_sidecar(path, preprocess, export_format="torchscript")
    return path


def _relative_error(ours: np.ndarray, reference: torch.Tensor) -> float:
    ref = reference.detach().numpy()
    return float(np.abs(ours - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def _inputs(batch_sizes: tuple[int, ...], input_size: tuple[int, int, int]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(n, *input_size, generator=generator) for n in batch_sizes]


def _input_size_for(path: Path, input_size: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if input_size is not None:
        return input_size
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        size = json.loads(sidecar.read_text(encoding="utf-8"))["input_size"]
        return (int(size[0]), int(size[1]), int(size[2]))
    return DEFAULT_INPUT_SIZE


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    batch_sizes: tuple[int, ...] = (1, 3),
    *,
    input_size: tuple[int, int, int] | None = None,
) -> float:
    """Run the ONNX file in onnxruntime and ``model`` in PyTorch on the same random
    inputs at each batch size; the largest ``max|diff| / max|reference|`` over them.
    ``input_size`` defaults to the sidecar's, else 224x224."""
    path = Path(path)
    session = make_session(path)
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for x in _inputs(batch_sizes, _input_size_for(path, input_size)):
            (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            worst = max(worst, _relative_error(logits, model(x)))
    return worst


def verify_torchscript(
    path: str | Path,
    model: nn.Module,
    batch_sizes: tuple[int, ...] = (1, 3),
    *,
    input_size: tuple[int, int, int] | None = None,
) -> float:
    """As :func:`verify_onnx`, for a TorchScript file loaded back with ``torch.jit.load``."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for x in _inputs(batch_sizes, _input_size_for(path, input_size)):
            worst = max(worst, _relative_error(loaded(x).numpy(), model(x)))
    return worst


def run_export(args: argparse.Namespace) -> int:
    model, info = load_model(
        args.model,
        checkpoint_path=args.checkpoint,
        pretrained=args.pretrained,
        num_classes=args.num_classes,
        labels_file=args.labels,
    )
    if args.format in ("triton", "kserve"):
        return _run_triton_export(args, model, info)
    if args.format == "hf":
        return _run_hf_export(args, model)
    if args.format == "onnx":
        path = export_onnx(model, args.output, input_size=info.input_size, opset=args.opset, preprocess=info)
        error = verify_onnx(path, model)
        check = "onnxruntime vs PyTorch"
    else:
        path = export_torchscript(model, args.output, input_size=info.input_size, preprocess=info)
        error = verify_torchscript(path, model)
        check = "TorchScript vs PyTorch"
    print(f"wrote {path} and {sidecar_path(path)}")
    print(f"max relative error ({check}, batch sizes 1 and 3): {error:.2e}")
    return 0


def hf_folder(model: nn.Module, output: Path, *, repo_name: str, checkpoint: str | Path | None) -> list[Path]:
    """The Hub folder (timm's layout and a model card) for ``model``; a training checkpoint of ours adds its
    recipe and validation scores to the card."""
    from ..checkpoint.hf import write_folder
    from ..checkpoint.model_card import model_card
    from ..checkpoint.training import read_training_checkpoint
    from ..errors import CheckpointError

    run = None
    if checkpoint is not None:
        try:
            run = read_training_checkpoint(Path(checkpoint))
        except CheckpointError:  # any other format: the card says what pretrained_cfg knows
            run = None
    card = model_card(model.pretrained_cfg, repo_name=repo_name, num_classes=model.num_classes,
                      recipe=run.config if run else None, metrics=run.metrics if run else None)
    return write_folder(model, output, card)


def _run_hf_export(args: argparse.Namespace, model: nn.Module) -> int:
    output = Path(args.output)
    for path in hf_folder(model, output, repo_name=args.name or output.name, checkpoint=args.checkpoint):
        print(f"wrote {path}")
    return 0


def _run_triton_export(args: argparse.Namespace, model: nn.Module, info: PreprocessInfo) -> int:
    from .triton_repo import TritonOptions, export_model_repository

    options = TritonOptions(max_batch_size=args.max_batch_size, instances=args.instances, gpu=args.gpu,
                            precision=args.precision, runtime=args.runtime, queue_delay_us=args.queue_delay_us)
    name = args.name or args.model.replace(".", "_")
    output = Path(args.output)
    written = export_model_repository(model, info, output, name, options, opset=args.opset,
                                      kserve_storage_uri=args.storage_uri if args.format == "kserve" else None)
    onnx_path = written[0].parent / "1" / "model.onnx"
    error = verify_onnx(onnx_path, model, input_size=info.input_size)
    for path in written:
        print(f"wrote {path}")
    print(f"max relative error (onnxruntime vs PyTorch, batch sizes 1 and 3): {error:.2e}")
    return 0


def run_push_to_hub(args: argparse.Namespace) -> int:
    """``res2net push-to-hub CHECKPOINT ORG/REPO``: export, then one commit that says what was pushed."""
    import tempfile

    from ..checkpoint.hf import push_folder
    from ..checkpoint.training import read_training_checkpoint
    from ..errors import CheckpointError

    name = args.model
    if name is None:
        try:
            name = read_training_checkpoint(Path(args.checkpoint)).model_name
        except CheckpointError:
            raise UserError("--model NAME is needed for checkpoints that are not our training runs") from None
    model, _ = load_model(name, checkpoint_path=args.checkpoint)
    cfg = model.pretrained_cfg
    score = f", val top-1 {cfg.top1:.2f}%" if cfg.top1 is not None else ""
    message = (f"{cfg.architecture} ({model.num_classes} classes{score}) from {Path(args.checkpoint).name}, "
               f"exported by res2net")
    with tempfile.TemporaryDirectory(prefix="res2net-hub-") as folder:
        hf_folder(model, Path(folder), repo_name=args.repo_id.split("/")[-1], checkpoint=args.checkpoint)
        url = push_folder(Path(folder), args.repo_id, private=args.private, revision=args.revision, message=message)
    print(f"pushed {args.repo_id}: {message}\n{url}")
    return 0
