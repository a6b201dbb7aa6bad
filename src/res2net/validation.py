"""``validate.py`` / ``res2net validate``: a checkpoint's accuracy on a validation split.

MindCV's command (``-c recipe --data_dir DIR --ckpt_path FILE``) with every checkpoint
format the model package reads. Runs under torchrun with exact counting, and ends its
output with one JSON line (top1, top5, loss, num_samples, ...) for scripts to parse.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import nn

from .config import Config, amp_level_note, amp_plan, ignored_key_notes
from .distributed import DistContext, init_distributed, shutdown
from .errors import DataError, UserError
from .factory import create_model
from .inference.calibration import (
    CalibrationSet,
    Transform,
    describe_sample,
    image_files,
    load_calibration,
    sample_files,
)
from .inference.optimize import optimize_for_inference
from .metrics import EvalResult, evaluate
from .plots import PLOT_EXTRA, plot_confusion, plotting_available
from .train.data_setup import data_source, eval_data, without_empty_batches


def calibration_set(cfg: Config, transform: Transform) -> CalibrationSet:
    """int8 calibration images: ``calibration_dir`` if given, else a seeded sample of the train split.

    Never the validation images: calibrating on the images that are then scored would report
    an accuracy the quantised model does not have on new images.
    """
    count, seed = cfg.calibration_images, cfg.seed
    if cfg.calibration_dir:
        files = image_files(Path(cfg.calibration_dir), what="calibration_dir")
        chosen = sample_files(files, count, seed)
        return load_calibration(chosen, transform, source=describe_sample(len(chosen), len(files), seed,
                                                                          cfg.calibration_dir))
    source = data_source(cfg)
    try:
        total = source.count(cfg, cfg.train_split)
        images, origin = source.images(cfg, cfg.train_split, count, seed)
    except DataError as err:
        raise DataError(f"int8 calibration draws from the train split, which cannot be read ({err}); "
                        "pass --calibration_dir DIR") from None
    return load_calibration(images, transform, source=describe_sample(len(images), total, seed, origin))


def prepare_model(cfg: Config, num_classes: int, ctx: DistContext, transform: Transform) -> nn.Module:
    """The model to evaluate: eager on the device, or the optimised inference path."""
    model = create_model(
        cfg.model,
        pretrained=cfg.pretrained,
        checkpoint_path=cfg.ckpt_path or None,
        num_classes=num_classes,
        in_chans=cfg.in_channels,
        use_ema=cfg.use_ema,
    ).eval()
    if ctx.is_main and cfg.ckpt_path:
        origin = model.pretrained_cfg.provenance or f"source: {model.pretrained_cfg.source} (no record of its run)"
        print(f"checkpoint {cfg.ckpt_path}: {origin}")
    if cfg.precision == "eager":
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        return model.to(ctx.device, memory_format=memory_format)
    calibration = None
    if cfg.precision == "int8":
        drawn = calibration_set(cfg, transform)
        if ctx.is_main:
            print(f"int8 calibration: {drawn.source}")
        calibration = drawn.images
    size = (cfg.in_channels, cfg.image_resize, cfg.image_resize)
    optimized = optimize_for_inference(model, precision=cfg.precision, calibration_images=calibration,
                                       example_input_size=size)
    # Backends compile on a shape's first batch (OpenVINO ~0.3 s, torch.compile 15-45 s): do
    # that here for the loader's batch size, outside the timed loop, so img/s is throughput.
    optimized(torch.zeros(cfg.batch_size, *size))
    return optimized


def write_per_class_csv(path: Path, class_names: list[str], result: EvalResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class_index", "class_name", "correct", "total", "top1"])
        counts = zip(class_names, result.per_class_correct, result.per_class_total)
        for index, (name, correct, total) in enumerate(counts):
            writer.writerow([index, name, correct, total, f"{100.0 * correct / total:.4f}" if total else ""])


def validate(cfg: Config) -> EvalResult:
    """Evaluate ``cfg.model`` with ``cfg.ckpt_path`` (or its published weights) on ``cfg.val_split``."""
    ctx = init_distributed(cfg.distribute, cfg.device)
    try:
        dataset, loader = eval_data(cfg, ctx)
        num_classes = cfg.num_classes or len(dataset.classes)
        if ctx.is_main:
            eager_note = amp_level_note(cfg, ctx.device.type, validation=True) if cfg.precision == "eager" else None
            for note in [*ignored_key_notes(cfg), eager_note]:
                if note:
                    print(note)
        if cfg.confusion_matrix and not plotting_available():
            raise UserError(f"confusion_matrix draws with matplotlib: {PLOT_EXTRA}")
        model = prepare_model(cfg, num_classes, ctx, dataset.transform)
        amp = amp_plan(cfg, ctx.device.type, validation=True)
        result = evaluate(
            model,
            without_empty_batches(loader),
            num_classes=num_classes,
            ctx=ctx,
            amp_dtype=amp.dtype if cfg.precision == "eager" else None,
            channels_last=cfg.channels_last and cfg.precision == "eager",
            description=f"validate {cfg.model}",
            total=len(loader),
        )
        if ctx.is_main:
            if cfg.per_class_csv:
                write_per_class_csv(Path(cfg.per_class_csv), dataset.classes, result)
            if cfg.confusion_matrix:
                plot_confusion(result.confusion, dataset.classes, Path(cfg.confusion_matrix), title=cfg.model)
            print(
                f"{cfg.model}: top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%, loss {result.loss:.4f}, "
                f"{result.num_samples} images, {result.images_per_second:.1f} img/s"
            )
            print(json.dumps({"model": cfg.model, "checkpoint": cfg.ckpt_path or None, **result.summary()}))
        return result
    finally:
        shutdown(ctx)
