"""``create_model``: build a registered network and put weights in it.

Building, loading and wrapping happen in that order so that every checkpoint format
loads into the full classifier (whose key names it was saved with) before a
features-only wrapper drops the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .common import ClassifierBackbone
from .dla import Res2NetDLA
from .features import FeatureExtractor
from .registry import get_model_spec
from .res2net import Res2Net

ARCHITECTURES: dict[str, type[ClassifierBackbone]] = {"res2net": Res2Net, "res2net_dla": Res2NetDLA}


def build_model(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    output_stride: int = 32,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> ClassifierBackbone:
    """The randomly initialised network ``name`` (no weights, no wrapping)."""
    spec = get_model_spec(name)
    architecture = ARCHITECTURES[spec.architecture]
    return architecture(
        **spec.kwargs,
        num_classes=num_classes,
        in_chans=in_chans,
        output_stride=output_stride,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


def create_model(
    name: str,
    pretrained: bool | str = False,
    checkpoint_path: str | Path | None = None,
    num_classes: int = 1000,
    in_chans: int = 3,
    features_only: bool = False,
    out_indices: Sequence[int] = (1, 2, 3, 4),
    output_stride: int = 32,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    use_ema: bool = False,
) -> nn.Module:
    """Create a Res2Net family model by name.

    Args:
        name: a name from :func:`list_models`.
        pretrained: ``True`` for the default published weights, or a tag such as
            ``"official"`` / ``"mindcv"``; downloaded once into ``$RES2NET_HOME``.
        checkpoint_path: a local checkpoint in any supported format (ours, the
            official ``.pth``, timm ``.pth``/``.safetensors``, MindCV ``.ckpt``).
        num_classes: classifier size; a checkpoint with another size keeps its
            trunk and gets a freshly initialised classifier (fine-tuning).
        features_only: return a module producing the stage maps at ``out_indices``
            (0: stride 2, 1: stride 4, ... 4: stride 32) instead of logits.
        output_stride: 32, or 16/8 for dilated (denser) late stages.
        use_ema: load the EMA weights from one of our training checkpoints.
    """
    if pretrained and checkpoint_path is not None:
        raise ValueError("pass either pretrained or checkpoint_path, not both")
    model = build_model(
        name,
        num_classes=num_classes,
        in_chans=in_chans,
        output_stride=output_stride,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )
    # Imported here: the checkpoint package reads the model table, so a module-level
    # import would be circular.
    from ..checkpoint import load_checkpoint_into
    from ..checkpoint.hub import fetch_pretrained

    if pretrained:
        tag = pretrained if isinstance(pretrained, str) else None
        checkpoint_path = fetch_pretrained(name, tag)
    if checkpoint_path is not None:
        load_checkpoint_into(model, checkpoint_path, model_name=name, use_ema=use_ema)
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model
