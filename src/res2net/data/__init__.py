"""Input pipeline: ImageNet-style folders, torchvision v2 transforms, mixup/cutmix, samplers, demo data.

Functions take plain keyword arguments; the training engine maps recipe keys onto them, so this
package does not depend on :mod:`res2net.config`.
"""

from res2net.data.autoaugment import AutoAugmentPolicy, parse_auto_augment, parse_policy
from res2net.data.decode import EncodedImage, ImageDecodeError
from res2net.data.demo import add_demo_data_parser, run_demo_data, write_digits_dataset
from res2net.data.folder import (
    CorruptImageWarning,
    ImageFolderDataset,
    SkipCounter,
    check_same_classes,
    collate_skipping,
)
from res2net.data.imagenet import add_prepare_imagenet_parser, prepare_imagenet_val, run_prepare_imagenet
from res2net.data.loader import build_eval_loader, build_loader, set_epoch
from res2net.data.mixing import MixupCutmix
from res2net.data.preprocess import DataConfig, create_transform, resolve_data_config
from res2net.data.sampler import EvalShardSampler, TrainSampler
from res2net.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_train_transform,
    normalize_stats,
)

__all__ = [
    "IMAGENET_MEAN",
    "AutoAugmentPolicy",
    "IMAGENET_STD",
    "CorruptImageWarning",
    "DataConfig",
    "EncodedImage",
    "EvalShardSampler",
    "ImageDecodeError",
    "ImageFolderDataset",
    "MixupCutmix",
    "SkipCounter",
    "TrainSampler",
    "add_demo_data_parser",
    "add_prepare_imagenet_parser",
    "build_eval_loader",
    "build_eval_transform",
    "build_loader",
    "build_train_transform",
    "check_same_classes",
    "collate_skipping",
    "create_transform",
    "normalize_stats",
    "parse_auto_augment",
    "parse_policy",
    "prepare_imagenet_val",
    "resolve_data_config",
    "run_demo_data",
    "run_prepare_imagenet",
    "set_epoch",
    "write_digits_dataset",
]
