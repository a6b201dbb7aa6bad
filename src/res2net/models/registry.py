"""The model tables: architectures, the names users type, and the weights published for each.

Three tables, because they change for different reasons:

* **architectures** — the 13 networks of the family and their constructor arguments;
* **names** — the paper's (``res2net50_26w_4s``), MindCV's (``res2net50``, ``res2net50_v1b``)
  and timm's (``res2net50d``) spellings, each pointing at one architecture;
* **weights** — per architecture, one :class:`PretrainedCfg` per tag (``official``,
  ``mindcv``, and whatever users register), so every name of a network shares its weights:
  ``create_model("res2net50", pretrained="official")`` is the authors' file for that network.

Names may carry a tag, timm-style: ``res2net50_26w_4s.official``. A :class:`PretrainedCfg`
holds everything needed to use a weight file correctly (where it comes from, how to check it,
its license, how to preprocess for it, what its rows mean and what it scores), and a copy of
it travels with every model as ``model.pretrained_cfg``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError
from .labels import MINDCV_IMAGENET_ROWS, imagenet_label_names

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OFFICIAL_BASE_URL = "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/"
MINDCV_BASE_URL = "https://download.mindspore.cn/toolkits/mindcv/res2net/"
OFFICIAL_LICENSE = "unknown: no license is stated for the released weights (https://github.com/gasvn/Res2Net)"
MINDCV_LICENSE = "Apache-2.0 (MindCV)"

Family = Literal["res2net", "res2net_dla"]


@dataclass(frozen=True)
class Architecture:
    """One network: which implementation (``family``) and its constructor arguments, and two facts
    about it with 1000 classes: trainable parameters, and multiply-accumulates per 224x224 image
    (convolutions and the classifier, as torch's ``FlopCounterMode`` counts them, halved); 0 means
    not recorded (a user's registration). ``tests/test_models.py`` checks both against the built
    network."""

    name: str
    family: Family
    kwargs: Mapping[str, Any]
    description: str
    num_params: int = 0
    macs: int = 0


@dataclass(frozen=True)
class ModelName:
    """A name users type, the architecture it builds, where the name comes from, and the
    weight tag ``pretrained=True`` loads (None: the architecture's first)."""

    name: str
    architecture: str
    origin: str
    default_tag: str | None = None


@dataclass(frozen=True)
class PretrainedCfg:
    """What a model's weights are and how to use them.

    ``num_classes`` is the classifier's rows and ``label_names`` names them in order (fewer
    names than rows: the extra rows are unused, as MindCV's 1001st; None: unknown names).
    ``mean``/``std`` are on the 0-1 scale; eval images are resized so the shorter side is
    ``input_size[-1] / crop_pct`` and centre-cropped. ``sha256`` is the full digest or the
    publisher's prefix; ``source`` says which project made the weights (``official``,
    ``mindcv``, ``res2net`` for our training runs, ``checkpoint`` for any other local file,
    ``none`` for random initialisation).
    """

    architecture: str
    tag: str | None = None
    source: str = "none"
    url: str = ""
    #: A Hugging Face Hub repository holding the same weights (``ORG/REPO[@REVISION]``), tried before ``url``.
    hf_hub_id: str = ""
    sha256: str = ""
    license: str = ""
    top1: float | None = None
    top5: float | None = None
    num_classes: int = 1000
    label_names: tuple[str, ...] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    #: Where the weights came from, for our training runs: date, command, commit, machine, versions.
    provenance: str = ""

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def has_weights(self) -> bool:
        return self.source != "none"

    def replace(self, **changes: Any) -> PretrainedCfg:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe values (lists for tuples), e.g. to store inside a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainedCfg:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (a newer writer's extras)."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields: dict[str, Any] = {k: v for k, v in values.items() if k in known}
        for name in ("mean", "std", "input_size", "label_names"):
            if fields.get(name) is not None:
                fields[name] = tuple(fields[name])
        return cls(**fields)


@dataclass
class Registry:
    """The three tables, with the lookups and registrations the package and its users need.

    Registering an entry identical to an existing one is a no-op (so registration code can run
    twice); a different entry under a taken name is an error unless ``replace=True``.
    """

    architectures: dict[str, Architecture] = field(default_factory=dict)
    names: dict[str, ModelName] = field(default_factory=dict)
    weights: dict[str, dict[str, PretrainedCfg]] = field(default_factory=dict)

    def add_architecture(self, arch: Architecture, *, replace: bool = False) -> None:
        _put(self.architectures, arch.name, arch, "architecture", replace)
        self.weights.setdefault(arch.name, {})

    def add_name(self, entry: ModelName, *, replace: bool = False) -> None:
        if entry.architecture not in self.architectures:
            raise UserError(f"name {entry.name!r} points at unknown architecture {entry.architecture!r}")
        _put(self.names, entry.name, entry, "model name", replace)

    def add_weights(self, cfg: PretrainedCfg, *, replace: bool = False) -> None:
        if cfg.tag is None or not cfg.tag.isidentifier():
            raise UserError(f"weights need a tag made of letters, digits and underscores, got {cfg.tag!r}")
        if cfg.architecture not in self.architectures:
            raise UserError(f"weights {cfg.tag!r} are for unknown architecture {cfg.architecture!r}")
        _put(self.weights[cfg.architecture], cfg.tag, cfg, f"weight tag of {cfg.architecture}", replace)

    def model_name(self, name: str) -> ModelName:
        """The entry for ``name``; an unknown name is a UserError suggesting close ones."""
        try:
            return self.names[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names, n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise UserError(f"unknown model {name!r}{hint}; see res2net.list_models()") from None

    def split(self, name: str) -> tuple[ModelName, str | None]:
        """``"res2net50_26w_4s.official"`` -> (its name entry, ``"official"``); no tag -> None."""
        base, dot, tag = name.partition(".")
        entry = self.model_name(base)
        if dot and tag not in self.weights[entry.architecture]:
            raise self._unknown_tag(entry, tag)
        return entry, tag if dot else None

    def architecture_of(self, name: str) -> Architecture:
        return self.architectures[self.split(name)[0].architecture]

    def tags(self, name: str) -> dict[str, PretrainedCfg]:
        return dict(self.weights[self.split(name)[0].architecture])

    def pretrained_cfg(self, name: str, tag: str | None = None) -> PretrainedCfg:
        """The weights ``tag`` of ``name``'s architecture; ``None``: the name's default tag."""
        entry, named_tag = self.split(name)
        available = self.weights[entry.architecture]
        chosen = tag or named_tag or entry.default_tag or next(iter(available), None)
        if chosen is None:
            raise UserError(f"model {entry.name} has no published weights; pass a local file with checkpoint_path")
        if chosen not in available:
            raise self._unknown_tag(entry, chosen)
        return available[chosen]

    def default_cfg(self, name: str) -> PretrainedCfg:
        """What a model built without weights carries: the architecture's ImageNet defaults."""
        arch = self.architecture_of(name)
        return PretrainedCfg(architecture=arch.name, label_names=imagenet_label_names())

    def _unknown_tag(self, entry: ModelName, tag: str) -> UserError:
        available = ", ".join(self.weights[entry.architecture]) or "none"
        return UserError(f"model {entry.name} has no weights tagged {tag!r} (available: {available})")


def _put(table: dict[str, Any], key: str, value: Any, what: str, replace: bool) -> None:
    if key in table and table[key] != value and not replace:
        raise UserError(f"{what} {key!r} is already registered differently (pass replace=True to override)")
    table[key] = value


# --- the built-in tables -------------------------------------------------------------------

LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
V1B = {"stem_type": "deep", "shortcut_type": "avgpool"}


def _res2net(depth: int, base_width: int = 26, scale: int = 4, **extra: Any) -> dict[str, Any]:
    return {"layers": LAYERS[depth], "base_width": base_width, "scale": scale, **extra}


ARCHITECTURES = [
    Architecture("res2net50_26w_4s", "res2net", _res2net(50), "Res2Net-50, 26w x 4s", 25_699_120, 4_255_166_464),
    Architecture("res2net50_48w_2s", "res2net", _res2net(50, 48, 2), "Res2Net-50, 48w x 2s", 25_287_304,
                 4_159_832_064),
    Architecture("res2net50_14w_8s", "res2net", _res2net(50, 14, 8), "Res2Net-50, 14w x 8s", 25_059_816,
                 4_178_898_944),
    Architecture("res2net50_26w_6s", "res2net", _res2net(50, 26, 6), "Res2Net-50, 26w x 6s", 37_051_448,
                 6_295_523_328),
    Architecture("res2net50_26w_8s", "res2net", _res2net(50, 26, 8), "Res2Net-50, 26w x 8s", 48_403_776,
                 8_335_880_192),
    Architecture("res2net101_26w_4s", "res2net", _res2net(101), "Res2Net-101, 26w x 4s", 45_206_688,
                 8_066_974_464),
    Architecture("res2net152_26w_4s", "res2net", _res2net(152), "Res2Net-152, 26w x 4s", 61_275_248,
                 11_878_782_464),
    Architecture("res2net50_v1b_26w_4s", "res2net", _res2net(50, **V1B),
                 "Res2Net-50 v1b (deep stem, avg-pool shortcut)", 25_718_352, 4_494_807_040),
    Architecture("res2net101_v1b_26w_4s", "res2net", _res2net(101, **V1B), "Res2Net-101 v1b", 45_225_920,
                 8_306_615_040),
    Architecture("res2net152_v1b_26w_4s", "res2net", _res2net(152, **V1B), "Res2Net-152 v1b", 61_294_480,
                 12_118_423_040),
    Architecture("res2next50", "res2net", _res2net(50, 4, 4, cardinality=8), "Res2NeXt-50, 4w x 8c x 4s",
                 24_671_464, 4_172_677_120),
    Architecture("res2net_dla60", "res2net_dla", {"base_width": 28, "cardinality": 1}, "Res2Net-DLA-60",
                 20_848_072, 4_122_681_344),
    Architecture("res2next_dla60", "res2net_dla", {"base_width": 4, "cardinality": 8}, "Res2NeXt-DLA-60",
                 17_032_984, 3_458_752_512),
]

# Every architecture answers to its own (the paper's) name; these are the other spellings.
ALIASES = [
    ModelName("res2net50", "res2net50_26w_4s", "MindCV", default_tag="mindcv"),
    ModelName("res2net101", "res2net101_26w_4s", "MindCV", default_tag="mindcv"),
    ModelName("res2net152", "res2net152_26w_4s", "MindCV"),
    ModelName("res2net50_v1b", "res2net50_v1b_26w_4s", "MindCV", default_tag="mindcv"),
    ModelName("res2net101_v1b", "res2net101_v1b_26w_4s", "MindCV", default_tag="mindcv"),
    ModelName("res2net152_v1b", "res2net152_v1b_26w_4s", "MindCV"),
    ModelName("res2net50d", "res2net50_v1b_26w_4s", "timm"),
    ModelName("res2net101d", "res2net101_v1b_26w_4s", "timm"),
]


def _published(architecture: str, source: str, base_url: str, license_text: str, file_name: str,
               **fields: Any) -> PretrainedCfg:
    """One released file; its name ends in ``-<sha256 prefix>.<ext>``, as both projects name them."""
    sha = file_name.rsplit("-", 1)[-1].split(".")[0]
    return PretrainedCfg(architecture=architecture, tag=source, source=source, url=base_url + file_name, sha256=sha,
                         license=license_text, label_names=imagenet_label_names(), **fields)


def _official(architecture: str, file_name: str, top1: float, timm_name: str) -> PretrainedCfg:
    """The paper authors' files (top-1 as timm re-evaluated them, or the paper's 100 - error); timm
    republishes them on the Hugging Face Hub as ``timm/<its name>.in1k``, where they are fetched first
    (their revision and sha256 are not pinned here: no machine this registry was written on reaches the Hub)."""
    return _published(architecture, "official", OFFICIAL_BASE_URL, OFFICIAL_LICENSE, file_name, top1=top1,
                      hf_hub_id=f"timm/{timm_name}.in1k")


def _mindcv(architecture: str, file_name: str, top1: float, top5: float) -> PretrainedCfg:
    """MindCV's ImageNet weights (the seed's table): a 1001-row head (see :mod:`.labels`) and
    0-255 inputs normalised with ImageNet statistics, which equals ours after scaling."""
    return _published(architecture, "mindcv", MINDCV_BASE_URL, MINDCV_LICENSE, file_name, top1=top1, top5=top5,
                      num_classes=MINDCV_IMAGENET_ROWS)


WEIGHTS = [
    _official("res2net50_26w_4s", "res2net50_26w_4s-06e79181.pth", 77.99, "res2net50_26w_4s"),
    _mindcv("res2net50_26w_4s", "res2net50-f42cf71b.ckpt", 79.35, 94.64),
    _official("res2net50_48w_2s", "res2net50_48w_2s-afed724a.pth", 77.32, "res2net50_48w_2s"),
    _official("res2net50_14w_8s", "res2net50_14w_8s-6527dddc.pth", 78.14, "res2net50_14w_8s"),
    _official("res2net50_26w_6s", "res2net50_26w_6s-19041792.pth", 78.58, "res2net50_26w_6s"),
    _official("res2net50_26w_8s", "res2net50_26w_8s-2c7c9f12.pth", 79.20, "res2net50_26w_8s"),
    _official("res2net101_26w_4s", "res2net101_26w_4s-02a759a1.pth", 79.19, "res2net101_26w_4s"),
    _mindcv("res2net101_26w_4s", "res2net101-8ae60132.ckpt", 79.56, 94.70),
    _official("res2net50_v1b_26w_4s", "res2net50_v1b_26w_4s-3cf99910.pth", 80.28, "res2net50d"),
    _mindcv("res2net50_v1b_26w_4s", "res2net50_v1b-99304e92.ckpt", 80.32, 95.09),
    _official("res2net101_v1b_26w_4s", "res2net101_v1b_26w_4s-0812c246.pth", 81.24, "res2net101d"),
    _mindcv("res2net101_v1b_26w_4s", "res2net101_v1b-7e6db001.ckpt", 81.26, 95.41),
    _official("res2next50", "res2next50_4s-6ef7e7bf.pth", 78.24, "res2next50"),
    _official("res2net_dla60", "res2net_dla60_4s-d88db7f9.pth", 78.47, "dla60_res2net"),
    _official("res2next_dla60", "res2next_dla60_4s-d327927b.pth", 78.45, "dla60_res2next"),
]


def shipped_registry() -> Registry:
    """A new registry holding what this package ships, without anything registered since."""
    registry = Registry()
    for arch in ARCHITECTURES:
        registry.add_architecture(arch)
        registry.add_name(ModelName(arch.name, arch.name, "paper"))
    for alias in ALIASES:
        registry.add_name(alias)
    for cfg in WEIGHTS:
        registry.add_weights(cfg)
    return registry


REGISTRY = shipped_registry()
#: The names this package ships (users' registrations come on top).
SHIPPED_NAMES: tuple[str, ...] = tuple(sorted(REGISTRY.names))


# --- the public functions ------------------------------------------------------------------


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted model names (every spelling), optionally filtered by a shell-style pattern."""
    names = sorted(REGISTRY.names)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def list_pretrained(pattern: str | None = None) -> list[str]:
    """``name.tag`` for every name and each weight tag of its architecture, sorted, filtered by
    a shell-style pattern matched against the name or the whole ``name.tag``."""
    found = [
        f"{name}.{tag}"
        for name, entry in REGISTRY.names.items()
        for tag in REGISTRY.weights[entry.architecture]
        if pattern is None or fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(f"{name}.{tag}", pattern)
    ]
    return sorted(found)


def register_model(
    name: str, family: Family, kwargs: Mapping[str, Any], description: str = "", *, replace: bool = False
) -> None:
    """Add an architecture under ``name`` (a user's own variant of the family)."""
    REGISTRY.add_architecture(Architecture(name, family, dict(kwargs), description or name), replace=replace)
    REGISTRY.add_name(ModelName(name, name, "user"), replace=replace)


def register_weights(name: str, tag: str, *, url: str, replace: bool = False, **fields: Any) -> PretrainedCfg:
    """Publish weights ``tag`` for the architecture behind ``name``; returns the stored cfg.

    ``url`` is where :func:`res2net.create_model` downloads them from (``https://``,
    ``http://`` or ``file://``); the other fields are :class:`PretrainedCfg`'s (``sha256``,
    ``num_classes``, ``label_names``, ``mean``, ``std``, ``top1``, ``license``...). ImageNet
    label names are assumed for 1000-row heads unless given.
    """
    arch = REGISTRY.architecture_of(name).name
    fields.setdefault("source", tag)
    if "label_names" not in fields and fields.get("num_classes", 1000) in (1000, MINDCV_IMAGENET_ROWS):
        fields["label_names"] = imagenet_label_names()
    cfg = PretrainedCfg(architecture=arch, tag=tag, url=url, **fields)
    REGISTRY.add_weights(cfg, replace=replace)
    return cfg


def get_architecture(name: str) -> Architecture:
    """The architecture ``name`` builds (any spelling, with or without a ``.tag``)."""
    return REGISTRY.architecture_of(name)
