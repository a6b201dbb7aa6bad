"""timm's state dicts load into our networks and give timm's logits.

For every network timm also implements, timm's model with random weights and random
BatchNorm statistics is saved as ``.pth`` and as ``.safetensors``, each is loaded
through ``create_model(name, checkpoint_path=...)``, and the eval logits compared.
The official DLA files differ from timm's by a 4-D ``fc`` and unused ``project`` layers;
a state dict shaped like them is checked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from checkpoint_helpers import randomise_, relative_error
from safetensors.torch import save_file

from res2net import create_model

# timm name -> our name
PAIRS = {
    "res2net50_26w_4s": "res2net50_26w_4s",
    "res2net50_48w_2s": "res2net50_48w_2s",
    "res2net50_14w_8s": "res2net50_14w_8s",
    "res2net50_26w_6s": "res2net50_26w_6s",
    "res2net50_26w_8s": "res2net50_26w_8s",
    "res2net101_26w_4s": "res2net101_26w_4s",
    "res2next50": "res2next50",
    "res2net50d": "res2net50d",
    "res2net101d": "res2net101d",
    "dla60_res2net": "res2net_dla60",
    "dla60_res2next": "res2next_dla60",
}
RTOL = 1e-5
NUM_CLASSES = 7  # small head: the comparison covers it, building it costs nothing


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _timm_model(name: str) -> torch.nn.Module:
    return randomise_(timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES), seed=len(name))


@pytest.mark.parametrize("timm_name", list(PAIRS))
def test_timm_state_dict_gives_timm_logits(tmp_path: Path, x: torch.Tensor, timm_name: str) -> None:
    reference = _timm_model(timm_name)
    with torch.no_grad():
        expected = reference(x)
    state = reference.state_dict()
    pth, st = tmp_path / "timm.pth", tmp_path / "timm.safetensors"
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))

    for path in (pth, st):
        ours = create_model(PAIRS[timm_name], checkpoint_path=path, num_classes=NUM_CLASSES).eval()
        with torch.no_grad():
            assert relative_error(ours(x), expected) < RTOL, path.name


# The official DLA-60 code's multi-level trees carry a projection that forward never uses.
OFFICIAL_UNUSED_PROJECTIONS = {"level3": (128, 256), "level4": (256, 512), "level4.tree1": (256, 512)}


def _official_dla_state(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(timm_state)
    gen = torch.Generator().manual_seed(5)
    for prefix, (cin, cout) in OFFICIAL_UNUSED_PROJECTIONS.items():
        state[f"{prefix}.project.0.weight"] = torch.randn(cout, cin, 1, 1, generator=gen)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.project.1.{leaf}"] = torch.rand(cout, generator=gen) + 0.5
        state[f"{prefix}.project.1.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = state["fc.weight"].reshape(*state["fc.weight"].shape[:2], 1, 1)
    return state


@pytest.mark.parametrize("timm_name", ["dla60_res2net", "dla60_res2next"])
def test_official_dla_layout(tmp_path: Path, x: torch.Tensor, timm_name: str) -> None:
    reference = _timm_model(timm_name)
    with torch.no_grad():
        expected = reference(x)
    official = _official_dla_state(reference.state_dict())
    path = tmp_path / "official_dla.pth"
    torch.save(official, path)
    ours = create_model(PAIRS[timm_name], checkpoint_path=path, num_classes=NUM_CLASSES).eval()
    model_keys = ours.state_dict().keys()
    assert not {k for k in official if ".project." in k and k.split(".project.")[0] in OFFICIAL_UNUSED_PROJECTIONS} & (
        model_keys
    ), "the extra projections must be ones our network lacks, or this test proves nothing"
    assert official["fc.weight"].dim() == 4 and ours.fc.weight.dim() == 2
    with torch.no_grad():
        assert relative_error(ours(x), expected) < RTOL
