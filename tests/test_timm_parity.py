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
OFFICIAL_DLA = ["dla60_res2net", "dla60_res2next"]


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


class References:
    """timm networks with random weights and their logits, built once per module: the DLA
    ones serve two tests, and building is the slow part."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self._cache: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}

    def get(self, name: str, keep: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if name in self._cache:
            return self._cache.pop(name)
        model = randomise_(timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES), seed=len(name))
        with torch.no_grad():
            result = model.state_dict(), model(self.x)
        if keep:
            self._cache[name] = result
        return result


@pytest.fixture(scope="module")
def references(x: torch.Tensor) -> References:
    return References(x)


@pytest.mark.slow
@pytest.mark.parametrize("timm_name", list(PAIRS))
def test_timm_state_dict_gives_timm_logits(
    tmp_path: Path, x: torch.Tensor, references: References, timm_name: str
) -> None:
    state, expected = references.get(timm_name, keep=timm_name in OFFICIAL_DLA)
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
    return state  # the 1x1 convolution head (4-D fc.weight) is timm's too


@pytest.mark.slow
@pytest.mark.parametrize("timm_name", OFFICIAL_DLA)
def test_official_dla_layout(tmp_path: Path, x: torch.Tensor, references: References, timm_name: str) -> None:
    state, expected = references.get(timm_name)
    official = _official_dla_state(state)
    path = tmp_path / "official_dla.pth"
    torch.save(official, path)
    ours = create_model(PAIRS[timm_name], checkpoint_path=path, num_classes=NUM_CLASSES).eval()
    extra = official.keys() - state.keys()
    assert len(extra) == 18 and not extra & ours.state_dict().keys(), "extra keys must be ones our network lacks"
    assert official["fc.weight"].dim() == 4 and ours.fc.weight.dim() == 2
    with torch.no_grad():
        assert relative_error(ours(x), expected) < RTOL
