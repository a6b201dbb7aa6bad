"""Genuine MindCV checkpoints (made by tests/fixtures/make_mindcv_fixtures.py with MindSpore
2.10 + MindCV 0.3.0) load into our networks and give MindCV's logits.

The fixture networks are MindCV's ``Res2Net(Bottle2neck, [1, 1, 1, 1], base_width=8)``;
they are registered here under test-only names so that loading goes through the public
``create_model(..., checkpoint_path=...)`` path exactly as for ``res2net50``.
"""

from __future__ import annotations

import lzma
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import relative_error

from res2net import create_model
from res2net.checkpoint import read_state_dict
from res2net.errors import CheckpointError
from res2net.models import register_model

FIXTURES = Path(__file__).parent / "fixtures" / "mindcv"
TINY = {"layers": (1, 1, 1, 1), "base_width": 8, "scale": 4}
register_model("mindcv_tiny", "res2net", TINY, "MindCV fixture network")
register_model("mindcv_tiny_v1b", "res2net", {**TINY, "stem_type": "deep", "shortcut_type": "avgpool"}, "v1b fixture")
RTOL = 1e-5


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The committed ``.ckpt.xz`` files, decompressed to the bytes MindSpore wrote."""
    out = tmp_path_factory.mktemp("mindcv")
    paths = {}
    for packed in FIXTURES.glob("*.ckpt.xz"):
        path = out / packed.name.removesuffix(".xz")
        path.write_bytes(lzma.decompress(packed.read_bytes()))
        paths[path.stem] = path
    return paths


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return dict(data)


def _logits(model: torch.nn.Module, reference: dict[str, np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(reference["input"]))


@pytest.mark.parametrize(
    ("fixture", "model_name", "num_classes"),
    [("res2net_train", "mindcv_tiny", 1001), ("res2net_v1b", "mindcv_tiny_v1b", 10)],
)
def test_identical_logits(
    ckpts: dict[str, Path], reference: dict[str, np.ndarray], fixture: str, model_name: str, num_classes: int
) -> None:
    model = create_model(model_name, checkpoint_path=ckpts[fixture], num_classes=num_classes)
    expected = torch.from_numpy(reference[f"{fixture}_logits"])
    assert relative_error(_logits(model, reference), expected) < RTOL


def test_wrong_variant_is_an_error(ckpts: dict[str, Path]) -> None:
    """The plain file must not load into the v1b network (deep stem keys are missing)."""
    with pytest.raises(CheckpointError, match="conv1.0.weight"):
        create_model("mindcv_tiny_v1b", checkpoint_path=ckpts["res2net_train"], num_classes=1001)


def test_optimizer_entries_present_and_ignored(ckpts: dict[str, Path]) -> None:
    raw = read_state_dict(ckpts["res2net_train"])
    for key in ("moments.conv1.weight", "moments.classifier.weight", "global_step", "learning_rate", "momentum",
                "epoch_num", "step_num"):
        assert key in raw
    model = create_model("mindcv_tiny", checkpoint_path=ckpts["res2net_train"], num_classes=1001)
    assert torch.equal(model.conv1.weight, raw["conv1.weight"])
    assert torch.equal(model.layer4[0].downsample[1].running_var, raw["layer4.0.down_sample.1.moving_variance"])


def test_1001_class_head_into_1000_class_model(ckpts: dict[str, Path], reference: dict[str, np.ndarray]) -> None:
    """MindCV's rule (models/helpers.py load_pretrained): keep the first 1000 classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model("mindcv_tiny", checkpoint_path=ckpts["res2net_train"])
    expected = torch.from_numpy(reference["res2net_train_logits"][:, :1000])
    logits = _logits(model, reference)
    assert logits.shape == (1, 1000)
    assert relative_error(logits, expected) < RTOL


def test_1001_class_head_into_other_size_is_reinitialised(
    ckpts: dict[str, Path], reference: dict[str, np.ndarray]
) -> None:
    full = create_model("mindcv_tiny", checkpoint_path=ckpts["res2net_train"], num_classes=1001).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuned = create_model("mindcv_tiny", checkpoint_path=ckpts["res2net_train"], num_classes=37).eval()
    assert len(caught) == 1 and "1001 classes" in str(caught[0].message)
    x = torch.from_numpy(reference["input"])
    with torch.no_grad():
        features = tuned.forward_head(tuned.forward_features(x), pre_logits=True)
        assert torch.equal(features, full.forward_head(full.forward_features(x), pre_logits=True))
        assert tuned(x).shape == (1, 37)


def test_features_only_from_mindcv(ckpts: dict[str, Path], reference: dict[str, np.ndarray]) -> None:
    backbone = create_model(
        "mindcv_tiny_v1b", checkpoint_path=ckpts["res2net_v1b"], num_classes=10, features_only=True
    ).eval()
    with torch.no_grad():
        maps = backbone(torch.from_numpy(reference["input"]))
    assert [m.shape[1] for m in maps] == [256, 512, 1024, 2048]
