"""``create_model``: build a registered network, put weights in it, and attach what they are.

Building, loading and wrapping happen in that order so that every checkpoint format loads
into the full classifier (whose key names it was saved with) before a features-only wrapper
drops the head. The weights' :class:`~res2net.models.PretrainedCfg` is assembled here, once,
from the registry (published weights), the file itself (our checkpoints and converted files
store theirs) and the architecture's defaults, and set as ``model.pretrained_cfg``; every
later consumer (predict, export, serve, validate) reads it instead of the file again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import CheckpointFormat, HeadFit, RawCheckpoint, load_state_into, read_checkpoint
from .checkpoint.hf import resolve as resolve_hub_folder
from .checkpoint.hf import split_source
from .checkpoint.hub import fetch_pretrained
from .checkpoint.mmdet import is_mmdet_layout
from .checkpoint.remap import head_rows
from .models import REGISTRY, PretrainedCfg, build_model
from .models.common import ClassifierBackbone
from .models.features import FeatureExtractor
from .models.labels import fit_label_names, imagenet_classes_for

__all__ = ["cfg_of_file", "create_model", "model_from_checkpoint"]


def create_model(
    name: str,
    pretrained: bool | str = False,
    checkpoint_path: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int = 3,
    features_only: bool = False,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    output_stride: int = 32,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    use_ema: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Create a Res2Net family model by name.

    Args:
        name: a name from :func:`res2net.list_models`, optionally with a weight tag
            (``"res2net50_26w_4s.official"``, see :func:`res2net.list_pretrained`); or a model folder in
            timm's Hub layout: ``"hf-hub:ORG/REPO[@REVISION]"`` (downloaded with huggingface_hub) or
            ``"local-dir:PATH"``, whose ``config.json`` names the architecture, classes and preprocessing.
        pretrained: ``True`` for the name's default published weights, or a tag such as
            ``"official"`` / ``"mindcv"``; downloaded once into ``$RES2NET_HOME``.
        checkpoint_path: a local checkpoint in any supported format (ours, the official
            ``.pth``, timm ``.pth``/``.safetensors``, MindCV ``.ckpt``).
        num_classes: classifier size. ``None``: the weights' own (MindCV's 1001-row ImageNet
            heads give 1000), else 1000. A checkpoint with another size keeps its trunk and
            gets a freshly initialised classifier (fine-tuning).
        features_only: return a module producing the stage maps at ``out_indices``
            (0: stride 2, 1: stride 4, ... 4: stride 32) instead of logits.
        output_stride: 32, or 16/8 for dilated (denser) late stages.
        use_ema: load the EMA weights from a training checkpoint (ours, timm's or MindCV's).
        model_kwargs: further options of the network (``norm_layer``, ``act_layer``,
            ``dcn_stages``, ``pool_unstrided``), see :func:`res2net.models.build_model`.

    The result carries ``pretrained_cfg``: source, URL and sha256, license, reported accuracy,
    class names, and the preprocessing the weights expect.
    """
    if pretrained and checkpoint_path is not None:
        raise ValueError("pass either pretrained or checkpoint_path, not both")
    build = {"in_chans": in_chans, "output_stride": output_stride, "drop_rate": drop_rate,
             "drop_path_rate": drop_path_rate, **model_kwargs}
    if split_source(name)[0] is not None:  # hf-hub:ORG/REPO[@REV] or local-dir:PATH, in timm's layout
        folder = resolve_hub_folder(name)
        raw = read_checkpoint(folder.weights, use_ema=use_ema)
        model = model_from_checkpoint(folder.architecture, raw, folder.cfg, num_classes=num_classes, **build)
        return FeatureExtractor(model, out_indices) if features_only else model
    _, named_tag = REGISTRY.split(name)
    if isinstance(pretrained, str) and named_tag is not None and pretrained != named_tag:
        raise ValueError(f"{name!r} names weights {named_tag!r} but pretrained asks for {pretrained!r}")
    if pretrained:
        base = REGISTRY.pretrained_cfg(name, pretrained if isinstance(pretrained, str) else None)
        raw = read_checkpoint(fetch_pretrained(base), use_ema=use_ema)
        model = model_from_checkpoint(name, raw, base, num_classes=num_classes, **build)
    elif checkpoint_path is not None:
        raw = read_checkpoint(checkpoint_path, use_ema=use_ema)
        model = model_from_checkpoint(name, raw, cfg_of_file(name, raw), num_classes=num_classes, **build)
    else:
        # timm's convention: "name.tag" without pretrained=True describes (not loads) those weights.
        base = REGISTRY.pretrained_cfg(name) if named_tag else REGISTRY.default_cfg(name)
        classes = num_classes if num_classes is not None else imagenet_classes_for(base.num_classes, base.label_names)
        model = build_model(name, num_classes=classes, **build)
        model.pretrained_cfg = base.replace(
            num_classes=classes, label_names=fit_label_names(base.label_names, classes)
        )
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model


def model_from_checkpoint(
    name: str, raw: RawCheckpoint, base: PretrainedCfg, *, num_classes: int | None = None, **build: Any
) -> ClassifierBackbone:
    """``name`` built for ``raw``'s weights (already read) and loaded with them; its
    ``pretrained_cfg`` is ``base`` fitted to the classifier it ended up with. mmdetection's
    weights get its first-block pooling (``pool_unstrided=False``), with which they were
    trained, unless the caller chooses."""
    if raw.format is not CheckpointFormat.MINDSPORE and is_mmdet_layout(raw.state) and "stage_first_pool" not in build:
        build.setdefault("pool_unstrided", False)
    rows = head_rows(raw.state, raw.format)
    classes = num_classes if num_classes is not None else imagenet_classes_for(rows, base.label_names)
    model = build_model(name, num_classes=classes, **build)
    fit = load_state_into(model, raw.state, origin=str(raw.path), model_name=name, fmt=raw.format)
    names = None if fit is HeadFit.REINITIALISED else fit_label_names(base.label_names, model.num_classes)
    model.pretrained_cfg = base.replace(num_classes=model.num_classes, label_names=names, sha256=raw.sha256)
    return model


def cfg_of_file(name: str, raw: RawCheckpoint) -> PretrainedCfg:
    """A local file's cfg: what it stores about itself, else the architecture's defaults."""
    default = REGISTRY.default_cfg(name)
    base = PretrainedCfg.from_dict(raw.pretrained_cfg) if raw.pretrained_cfg else default.replace(source="checkpoint")
    return base.replace(architecture=default.architecture, url=raw.path.resolve().as_uri())
