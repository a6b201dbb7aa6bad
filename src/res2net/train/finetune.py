"""``res2net finetune``: published (or your own) weights trained on a folder of your own images.

Most people who pick a Res2Net start from trained weights and adapt them to a few hundred images of their
own. This is the trainer with what that needs decided for them: a folder of class sub-folders is enough
(a seeded, stratified validation split is made when it has no ``val/``), the new head gets the folder's
class names, the input size and normalisation default to the starting weights' own, the recipe
(``recipes/finetune.yaml``, also ``configs/finetune/finetune.yaml`` for ``train.py``) holds the schedule
that ``benchmarks/bench_transfer.py`` measured to work, and the run ends with the best checkpoint and a
one-screen summary.
"""

from __future__ import annotations

import argparse
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import read_checkpoint
from ..checkpoint.hub import fetch_pretrained
from ..config import Config, load_config
from ..data.folder import IMG_EXTENSIONS, find_classes
from ..errors import DataError, UserError
from ..factory import cfg_of_file
from ..models import REGISTRY, PretrainedCfg
from .checkpoints import CheckpointManager
from .engine import TrainResult, train

RECIPE = Path(__file__).with_name("recipes") / "finetune.yaml"
SPLIT_FOLDER = "split"


@dataclass(frozen=True)
class Split:
    """The folder the trainer reads (``train/`` and ``val/`` inside) and how it was made."""

    root: Path
    description: str


def prepare_split(data_dir: Path, run_dir: Path, *, val_fraction: float, seed: int) -> Split:
    """``data_dir`` as it is when it has ``train/`` and ``val/``; otherwise a split of its class folders (or of
    its ``train/``) linked into ``run_dir/split``: per class, a seeded share ``val_fraction`` (at least one image)
    for validation. Each class draws with its own seed, so adding a class does not move the others' images."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} is not a folder (expected class sub-folders of images)")
    if (data_dir / "train").is_dir() and (data_dir / "val").is_dir():
        return Split(data_dir, f"{data_dir}/train and {data_dir}/val")
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    source = data_dir / "train" if (data_dir / "train").is_dir() else data_dir
    root = run_dir / SPLIT_FOLDER
    shutil.rmtree(root, ignore_errors=True)
    for name in find_classes(source):
        files = sorted(f for f in (source / name).iterdir() if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
        if len(files) < 2:
            raise DataError(f"class {name!r} has {len(files)} image(s) in {source / name}: it needs at least 2 "
                            "(one to train on, one to validate)")
        random.Random(f"{seed}:{name}").shuffle(files)
        held_out = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
        for subset, chosen in (("val", files[:held_out]), ("train", files[held_out:])):
            target = root / subset / name
            target.mkdir(parents=True)
            for file in chosen:
                _link(file, target / file.name)
    return Split(root, f"a seeded (seed {seed}), stratified {val_fraction:.0%} validation split of {source}, "
                       f"linked into {root}")


def _link(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:  # file systems (and Windows users) without symlinks get copies
        shutil.copyfile(source, target)


@dataclass(frozen=True)
class Weights:
    """What training starts from: a local file (or None for random weights), its cfg, and how to name it."""

    path: str | None
    cfg: PretrainedCfg
    description: str


def resolve_weights(model: str, weights: str) -> Weights:
    """``none``, a local file, or a weight tag of ``model`` (downloaded once into ``$RES2NET_HOME``)."""
    if weights == "none":
        return Weights(None, REGISTRY.default_cfg(model), "random initialisation (--weights none)")
    tags = REGISTRY.tags(model)
    if Path(weights).is_file():
        return Weights(weights, cfg_of_file(model, read_checkpoint(weights)), weights)
    if weights in tags:
        return Weights(str(fetch_pretrained(tags[weights])), tags[weights], f"the {weights} weights of {model}")
    raise UserError(f"--weights {weights!r} is neither a file, a weight tag of {model} "
                    f"({', '.join(tags) or 'none published'}), nor none")


def finetune_config(args: argparse.Namespace, weights: Weights, split: Split, recipe_flags: list[str]) -> Config:
    """The recipe, the split and the starting weights' own preprocessing, then the user's recipe flags."""
    cfg = weights.cfg
    size = args.image_size or cfg.input_size[-1]
    argv = ["-c", str(args.recipe or RECIPE), "--model", args.model, "--data_dir", str(split.root),
            "--ckpt_save_dir", str(args.output), "--image_resize", str(size), "--mean", *map(str, cfg.mean),
            "--std", *map(str, cfg.std), "--crop_pct", str(cfg.crop_pct), "--interpolation", cfg.interpolation,
            "--seed", str(args.seed)]
    if args.epochs is not None:
        argv += ["--epoch_size", str(args.epochs), "--decay_epochs", str(max(1, args.epochs - 1))]
    if weights.path is not None:
        argv += ["--ckpt_path", weights.path]
    return load_config([*argv, *recipe_flags], purpose="train")


def summary(cfg: Config, result: TrainResult, weights: Weights, split: Split, class_names: list[str]) -> str:
    """What the run did and where everything is, on one screen."""
    kept = CheckpointManager(result.run_dir, cfg.model, None, 1).epoch_files()
    best = kept[-1] if kept else result.checkpoint
    score = f"val top-1 {result.best_top1:.2f}%" if result.best_top1 is not None else "no validation score"
    shown = ", ".join(class_names[:12]) + (f" ... ({len(class_names)} in all)" if len(class_names) > 12 else "")
    return "\n".join([
        f"fine-tuned {cfg.model} for {result.epochs} epochs on {len(class_names)} classes: {shown}",
        f"  started from {weights.description}",
        f"  data: {split.description}",
        f"  best: {score} -> {best}",
        f"  its pretrained_cfg holds the class names and the eval transform ({cfg.image_resize} px, crop "
        f"{cfg.crop_pct}); use it with: res2net predict --model {cfg.model} --checkpoint {best} IMAGES",
        f"  run folder: {result.run_dir} (last.pth, curves.png, metrics.jsonl, env.json, config.yaml)",
    ])


def run_finetune(args: argparse.Namespace, recipe_flags: list[str]) -> int:
    """``res2net finetune DATA_DIR --model NAME --weights TAG|FILE|none [...]``."""
    output = Path(args.output or f"runs/finetune_{args.model}")
    args.output = output
    weights = resolve_weights(args.model, args.weights)
    split = prepare_split(Path(args.data_dir), output, val_fraction=args.val_fraction, seed=args.seed)
    cfg = finetune_config(args, weights, split, recipe_flags)
    result = train(cfg)
    print(summary(cfg, result, weights, split, find_classes(split.root / cfg.train_split)))
    return 0
