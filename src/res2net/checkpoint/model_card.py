"""A model card (the Hub's ``README.md``) for weights this package exports: what they are, how they scored, how
they were trained, how to load them, under which terms, and what to cite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..models import REGISTRY, PretrainedCfg
from .hf import TIMM_NAMES
from .training import TRAINING_SOURCE

CITATION = """@article{gao2021res2net,
  title={Res2Net: A New Multi-scale Backbone Architecture},
  author={Gao, Shang-Hua and Cheng, Ming-Ming and Zhao, Kai and Zhang, Xin-Yu and Yang, Ming-Hsuan and Torr, Philip},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume={43}, number={2}, pages={652--662}, year={2021},
  doi={10.1109/TPAMI.2019.2938758}
}"""
#: The recipe keys a reader looks for first; the whole recipe follows in the card.
RECIPE_SUMMARY = ("model", "epoch_size", "batch_size", "image_resize", "opt", "lr", "scheduler", "warmup_epochs",
                  "weight_decay", "label_smoothing", "mixup", "cutmix", "auto_augment", "amp_level")


def model_card(cfg: PretrainedCfg, *, repo_name: str, num_classes: int, recipe: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None) -> str:
    """The card for weights described by ``cfg`` (a training run's ``recipe`` and ``metrics`` when known)."""
    arch = REGISTRY.architectures[cfg.architecture]
    timm_name = TIMM_NAMES.get(cfg.architecture)
    front = {"tags": ["image-classification", "res2net", *(["timm"] if timm_name else [])],
             "library_name": "timm" if timm_name else "res2net", "license": _license_id(cfg),
             "pipeline_tag": "image-classification"}
    names = list(cfg.label_names or [])
    shown = ", ".join(names[:20]) + (f" ... ({len(names)} in all)" if len(names) > 20 else "")
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {repo_name}", "",
        f"{arch.description} ({cfg.architecture}) for image classification, {num_classes} classes"
        + (f": {shown}." if names else "."), "",
        "## Model details", "",
        f"- Architecture: `{cfg.architecture}`" + (f" (timm: `{timm_name}`)" if timm_name else
                                                   " (not in timm: load it with the res2net package)"),
        f"- Parameters: {arch.num_params / 1e6:.2f}M with 1,000 classes; {arch.macs / 1e9:.2f} GMACs per 224x224 image",
        f"- Input: {cfg.input_size[1]}x{cfg.input_size[2]}, resized to {cfg.input_size[1] / cfg.crop_pct:.0f} on the "
        f"short side ({cfg.interpolation}) and centre-cropped; mean {list(cfg.mean)}, std {list(cfg.std)} (0-1 scale)",
        "- Weights: " + ("trained with the res2net package (see Training)" if cfg.source == TRAINING_SOURCE
                         else cfg.source + (f" ({cfg.tag})" if cfg.tag and cfg.tag != cfg.source else "")), "",
        "## Results", "",
    ]
    if cfg.top1 is not None:
        count = f" on {metrics['num_samples']} validation images" if metrics and "num_samples" in metrics else ""
        top5 = f", top-5 {cfg.top5:.2f}%" if cfg.top5 is not None else ""
        lines += [f"Top-1 {cfg.top1:.2f}%{top5}{count}" + (f" ({recipe['data_dir']})" if recipe else "") + ".", ""]
    else:
        lines += ["No validation result is recorded with these weights.", ""]
    if recipe:
        summary = "\n".join(f"| `{key}` | `{recipe[key]}` |" for key in RECIPE_SUMMARY if recipe.get(key) is not None)
        lines += ["## Training", "", "| recipe key | value |", "|---|---|", summary, "",
                  f"Where these weights came from: {cfg.provenance or 'not recorded'}.", "",
                  "<details><summary>The whole recipe (train.py -c this.yaml)</summary>", "", "```yaml",
                  yaml.safe_dump(dict(recipe), sort_keys=False).strip(), "```", "", "</details>", ""]
    lines += ["## How to use", "", "```python", "import res2net", "",
              f'model = res2net.create_model("hf-hub:ORG/{repo_name}").eval()',
              "transform = res2net.create_transform(res2net.resolve_data_config(model))", "```", ""]
    if timm_name:
        lines += ["With timm:", "", "```python", "import timm", "",
                  f'model = timm.create_model("hf-hub:ORG/{repo_name}", pretrained=True).eval()', "```", ""]
    lines += ["## License", "", _license_text(cfg), "", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _license_id(cfg: PretrainedCfg) -> str:
    return "apache-2.0" if cfg.license.lower().startswith("apache-2.0") else "other"


def _license_text(cfg: PretrainedCfg) -> str:
    if cfg.license:
        return f"The weights: {cfg.license}. The res2net code: Apache-2.0."
    return ("The weights were trained with the res2net package by whoever published this repository, who sets their "
            "terms (and those of the data they were trained on); the res2net code is Apache-2.0.")
