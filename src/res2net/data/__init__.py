"""Input pipeline: ImageNet-style folders, torchvision v2 transforms, mixup/cutmix, samplers, demo data.

Functions take plain keyword arguments; the training engine maps recipe keys onto them, so this
package does not depend on :mod:`res2net.config`.
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "AutoAugmentPolicy": "autoaugment",
    "parse_auto_augment": "autoaugment",
    "parse_policy": "autoaugment",
    "EncodedImage": "decode",
    "ImageDecodeError": "decode",
    "add_demo_data_parser": "demo",
    "run_demo_data": "demo",
    "write_digits_dataset": "demo",
    "CorruptImageWarning": "folder",
    "ImageFolderDataset": "folder",
    "SkipCounter": "folder",
    "check_same_classes": "folder",
    "collate_skipping": "folder",
    "add_prepare_imagenet_parser": "imagenet",
    "prepare_imagenet_val": "imagenet",
    "run_prepare_imagenet": "imagenet",
    "build_eval_loader": "loader",
    "build_loader": "loader",
    "set_epoch": "loader",
    "MixupCutmix": "mixing",
    "DataConfig": "preprocess",
    "create_transform": "preprocess",
    "resolve_data_config": "preprocess",
    "EvalShardSampler": "sampler",
    "TrainSampler": "sampler",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
    "normalize_stats": "transforms",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
