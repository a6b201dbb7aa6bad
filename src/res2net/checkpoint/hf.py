"""The Hugging Face Hub, both ways, in timm's layout.

Most PyTorch users now look for weights on the Hub, where timm publishes eleven of this family
(``timm/res2net50_26w_4s.in1k`` ...). A Hub model folder, timm's layout, is ``config.json``
(``architecture``, ``num_classes``, ``num_features``, ``label_names``, ``pretrained_cfg`` with the
preprocessing) beside ``model.safetensors`` (or ``pytorch_model.bin``). This module reads such a folder
(``local-dir:PATH``), downloads one with ``huggingface_hub`` (``hf-hub:ORG/REPO[@REVISION]``: its cache,
``HF_HUB_OFFLINE``, revisions and tokens work as its users expect), and writes one from any of our
models, with a model card, so that ``timm.create_model("local-dir:PATH")`` and the Hub's widgets load it.
``huggingface_hub`` is the ``hub`` extra, imported only here and only when used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError, UserError
from ..models import REGISTRY, PretrainedCfg

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
CONFIG = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: config.json's key for what only this package reads (accuracy, provenance); timm ignores it.
RES2NET_KEY = "res2net"
HUB_EXTRA = "pip install 'res2net[hub]'"
#: Our architecture -> timm's name for the same network (the eleven timm implements).
TIMM_NAMES = {
    "res2net50_26w_4s": "res2net50_26w_4s", "res2net50_48w_2s": "res2net50_48w_2s",
    "res2net50_14w_8s": "res2net50_14w_8s", "res2net50_26w_6s": "res2net50_26w_6s",
    "res2net50_26w_8s": "res2net50_26w_8s", "res2net101_26w_4s": "res2net101_26w_4s", "res2next50": "res2next50",
    "res2net50_v1b_26w_4s": "res2net50d", "res2net101_v1b_26w_4s": "res2net101d",
    "res2net_dla60": "dla60_res2net", "res2next_dla60": "dla60_res2next",
}
_FROM_TIMM = {timm: ours for ours, timm in TIMM_NAMES.items()}


def split_source(name: str) -> tuple[str | None, str]:
    """``("hf-hub", "ORG/REPO@REV")``, ``("local-dir", "PATH")`` or ``(None, name)``."""
    for prefix in (HF_PREFIX, LOCAL_PREFIX):
        if name.startswith(prefix):
            return prefix[:-1], name[len(prefix):]
    return None, name


@dataclass(frozen=True)
class HubFolder:
    """A model folder in timm's layout, read: our architecture, the weights file, the cfg it describes."""

    architecture: str
    weights: Path
    cfg: PretrainedCfg


def read_folder(folder: Path, *, source: str) -> HubFolder:
    """``config.json`` and the weights of a timm-layout folder; ``source`` names it in ``pretrained_cfg``."""
    config_path = folder / CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {CONFIG}: not a Hub model folder (timm's layout)") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_path} cannot be read as JSON: {err}") from None
    name = str(config.get("architecture", ""))
    stored, ours = config.get("pretrained_cfg", {}), config.get(RES2NET_KEY, {})
    architecture = str(ours.get("architecture") or _FROM_TIMM.get(name, name))
    if architecture not in REGISTRY.names:
        raise CheckpointError(f"{config_path}: architecture {name!r} is not a Res2Net of this package")
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder} has neither {' nor '.join(WEIGHT_FILES)}")
    labels = config.get("label_names", stored.get("label_names"))
    num_classes = int(config.get("num_classes", stored.get("num_classes", 1000)))
    base = REGISTRY.default_cfg(architecture)
    cfg = base.replace(
        source=source, url=str(folder), num_classes=num_classes,
        label_names=tuple(labels) if isinstance(labels, (list, tuple)) and len(labels) == num_classes else None,
        mean=tuple(stored.get("mean", base.mean)), std=tuple(stored.get("std", base.std)),
        input_size=tuple(stored.get("input_size", base.input_size)),
        crop_pct=float(stored.get("crop_pct", base.crop_pct)),
        interpolation=str(stored.get("interpolation", base.interpolation)),
        license=str(stored.get("license", "")), top1=ours.get("top1"), top5=ours.get("top5"),
        provenance=str(ours.get("provenance") or ""),
    )
    return HubFolder(REGISTRY.model_name(architecture).architecture, weights, cfg)


def _hub() -> Any:
    """huggingface_hub with the submodules we read (its package imports them lazily, on attribute use)."""
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.utils.logging  # noqa: F401 - imported for the attribute
    except ImportError:
        raise UserError(f"hf-hub: names need huggingface_hub: {HUB_EXTRA}") from None
    return huggingface_hub


def download(repo: str, *, cache_dir: str | None = None, token: str | bool | None = None) -> Path:
    """``ORG/REPO[@REVISION]`` from the Hub (or ``HF_ENDPOINT``) into huggingface_hub's cache; the local
    snapshot folder. A failed or corrupted download is one CheckpointError, and leaves no partial file."""
    hub = _hub()
    repo_id, _, revision = repo.partition("@")
    try:
        with _quiet_retries(hub):
            fetched = _fetch(hub, repo, repo_id, revision, cache_dir, token)
    except CheckpointError:
        raise
    except Exception as err:  # huggingface_hub's errors, network errors, its consistency checks
        _remove_partial_downloads(hub, repo_id, cache_dir)
        kind = "offline (HF_HUB_OFFLINE) and not in the cache" if _offline(hub) else type(err).__name__
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"cannot download hf-hub:{repo} ({kind}: {message})") from None
    return Path(fetched[CONFIG]).parent


@contextmanager
def _quiet_retries(hub: Any) -> Iterator[None]:
    """huggingface_hub logs a warning for each retry of a dropped download; a download that still fails is one
    error line (ours), and one that recovers needs no words. Its own verbosity API, because importing its
    logging module (lazily, on first use) resets the level that a plain ``logging.getLogger`` would set."""
    hub_logging = hub.utils.logging
    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(verbosity)


def _fetch(hub: Any, repo: str, repo_id: str, revision: str, cache_dir: str | None,
           token: str | bool | None) -> dict[str, str]:
    """config.json, then the first of WEIGHT_FILES the repository has: file name -> local path."""
    fetched = {}
    fetched[CONFIG] = hub.hf_hub_download(repo_id, CONFIG, revision=revision or None, cache_dir=cache_dir,
                                          token=token)
    for name in WEIGHT_FILES:
        try:
            fetched[name] = hub.hf_hub_download(repo_id, name, revision=revision or None, cache_dir=cache_dir,
                                                token=token)
            return fetched
        except hub.errors.EntryNotFoundError:
            continue
    raise CheckpointError(f"hf-hub:{repo} has neither {' nor '.join(WEIGHT_FILES)}")


def _offline(hub: Any) -> bool:
    return bool(getattr(hub.constants, "HF_HUB_OFFLINE", False))


def _remove_partial_downloads(hub: Any, repo_id: str, cache_dir: str | None) -> None:
    """huggingface_hub keeps ``*.incomplete`` blobs to resume later; a failed load must not leave them."""
    root = Path(cache_dir or hub.constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "blobs"
    for partial in root.glob("*.incomplete") if root.is_dir() else ():
        partial.unlink(missing_ok=True)


def resolve(name: str) -> HubFolder:
    """The folder behind ``hf-hub:ORG/REPO[@REV]`` or ``local-dir:PATH``, read."""
    kind, value = split_source(name)
    if kind == "hf-hub":
        return read_folder(download(value), source=f"hf-hub:{value}")
    if kind == "local-dir":
        return read_folder(Path(value).expanduser(), source="local-dir")
    raise ValueError(f"{name!r} is neither hf-hub: nor local-dir:")


def timm_state_dict(architecture: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict as timm's network of the same name holds it: its DLA classifier is a 1x1 convolution."""
    out = dict(state)
    if REGISTRY.architectures[architecture].family == "res2net_dla" and out.get("fc.weight") is not None:
        out["fc.weight"] = out["fc.weight"][:, :, None, None]
    return out


def hub_config(model: torch.nn.Module, cfg: PretrainedCfg) -> dict[str, Any]:
    """``config.json`` in timm's layout for ``model`` and the weights it carries."""
    architecture = cfg.architecture
    pretrained_cfg: dict[str, Any] = {
        "tag": cfg.tag or cfg.source, "custom_load": False, "input_size": list(cfg.input_size),
        "fixed_input_size": False, "interpolation": cfg.interpolation, "crop_pct": cfg.crop_pct,
        "crop_mode": "center", "mean": list(cfg.mean), "std": list(cfg.std), "num_classes": model.num_classes,
        "pool_size": [max(1, cfg.input_size[1] // 32), max(1, cfg.input_size[2] // 32)],
        "first_conv": "base_layer.0" if REGISTRY.architectures[architecture].family == "res2net_dla" else
        ("conv1.0" if REGISTRY.architectures[architecture].kwargs.get("stem_type") == "deep" else "conv1"),
        "classifier": "fc", "license": cfg.license,
    }
    # timm builds its PretrainedCfg from every key of "pretrained_cfg" and refuses unknown ones; top-level keys it
    # does not know it ignores, so what only this package reads goes under RES2NET_KEY.
    ours = {"architecture": architecture, "top1": cfg.top1, "top5": cfg.top5, "provenance": cfg.provenance}
    config: dict[str, Any] = {"architecture": TIMM_NAMES.get(architecture, architecture),
                              "num_classes": model.num_classes, "num_features": model.num_features,
                              "global_pool": "avg", "pretrained_cfg": pretrained_cfg, RES2NET_KEY: ours}
    if cfg.label_names is not None and len(cfg.label_names) == model.num_classes:
        config["label_names"] = list(cfg.label_names)
    return config


def write_folder(model: torch.nn.Module, output: Path, card: str) -> list[Path]:
    """``config.json``, ``model.safetensors`` and ``README.md`` (``card``) for ``model`` into ``output``."""
    cfg: PretrainedCfg = model.pretrained_cfg  # type: ignore[assignment]
    output.mkdir(parents=True, exist_ok=True)
    written = [output / CONFIG, output / WEIGHT_FILES[0], output / "README.md"]
    written[0].write_text(json.dumps(hub_config(model, cfg), indent=2) + "\n", encoding="utf-8")
    state = {k: v.contiguous() for k, v in timm_state_dict(cfg.architecture, model.state_dict()).items()}
    save_file(state, str(written[1]), metadata={"format": "pt"})
    written[2].write_text(card, encoding="utf-8")
    return written


def push_folder(folder: Path, repo_id: str, *, private: bool, revision: str | None, message: str,
                token: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns the commit's URL."""
    hub = _hub()
    api = hub.HfApi(token=token, library_name="res2net")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message, revision=revision)
    except Exception as err:  # authentication, network, permissions: huggingface_hub says which
        raise UserError(f"cannot push to {repo_id} ({type(err).__name__}: {str(err).strip().splitlines()[0]})"
                        ) from None
    return str(getattr(info, "commit_url", info))


