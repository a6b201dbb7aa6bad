"""The Hugging Face Hub both ways: our exports load in timm and timm's in ours (logits and class names), and
hf-hub: names download through huggingface_hub's own code (its cache, revisions, tokens, offline mode)
from a local stand-in for the Hub (tests/fake_hub.py). Nothing touches the network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from checkpoint_helpers import randomise_, relative_error
from fake_hub import fake_hub
from PIL import Image
from timm.models import save_for_hf

import res2net
from res2net.checkpoint.hf import TIMM_NAMES
from res2net.inference.export import hf_folder
from res2net.models import build_model

NUM_CLASSES = 6
NAMES = [f"kind {i}" for i in range(NUM_CLASSES)]
RTOL = 1e-5


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _ours(architecture: str) -> torch.nn.Module:
    torch.manual_seed(1)
    model = randomise_(build_model(architecture, num_classes=NUM_CLASSES), seed=3).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(label_names=tuple(NAMES), input_size=(3, 64, 64))
    return model


@pytest.mark.parametrize("architecture", sorted(TIMM_NAMES))
def test_timm_loads_our_export(architecture: str, x: torch.Tensor, tmp_path: Path) -> None:
    ours = _ours(architecture)
    written = hf_folder(ours, tmp_path / "export", repo_name="digits", checkpoint=None)
    assert [p.name for p in written] == ["config.json", "model.safetensors", "README.md"]
    theirs = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True).eval()
    assert type(theirs).__module__.startswith("timm.")
    with torch.no_grad():
        assert relative_error(theirs(x), ours(x)) <= RTOL
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["architecture"] == TIMM_NAMES[architecture] and config["label_names"] == NAMES
    assert tuple(theirs.pretrained_cfg["input_size"]) == (3, 64, 64)


@pytest.mark.parametrize("timm_name", sorted(TIMM_NAMES.values()))
def test_we_load_timms_save_for_hf(timm_name: str, x: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(2)
    theirs = randomise_(timm.create_model(timm_name, num_classes=NUM_CLASSES), seed=5).eval()
    save_for_hf(theirs, str(tmp_path), model_config={"label_names": NAMES}, safe_serialization=True)
    ours = res2net.create_model(f"local-dir:{tmp_path}").eval()
    with torch.no_grad():
        assert relative_error(ours(x), theirs(x)) <= RTOL
    assert ours.pretrained_cfg.label_names == tuple(NAMES) and ours.pretrained_cfg.source == "local-dir"
    assert ours.pretrained_cfg.architecture == next(a for a, t in TIMM_NAMES.items() if t == timm_name)


def test_architectures_timm_lacks_export_under_our_name(x: torch.Tensor, tmp_path: Path) -> None:
    ours = _ours("res2net152_v1b_26w_4s")
    hf_folder(ours, tmp_path, repo_name="deep", checkpoint=None)
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "res2net152_v1b_26w_4s"
    card = (tmp_path / "README.md").read_text()
    assert "not in timm: load it with the res2net package" in card and "library_name: res2net" in card
    again = res2net.create_model(f"local-dir:{tmp_path}").eval()
    with torch.no_grad():
        assert torch.equal(again(x), ours(x))


def test_the_model_card_of_a_training_run(learned_run: tuple[Path, float], tmp_path: Path) -> None:
    checkpoint = learned_run[0] / "last.pth"
    model = res2net.create_model("res2net50", checkpoint_path=checkpoint)
    hf_folder(model, tmp_path, repo_name="res2net50-digits", checkpoint=checkpoint)
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\ntags:\n- image-classification\n- res2net\n- timm\nlibrary_name: timm\n")
    assert f"Top-1 {model.pretrained_cfg.top1:.2f}%" in card and "validation images" in card
    assert "| `image_resize` | `16` |" in card and "trained 20" in card  # the recipe and the provenance
    assert "@article{gao2021res2net" in card and "## License" in card
    assert "- Weights: trained with the res2net package (see Training)" in card


def _in_subprocess(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


LOAD = """
import json, sys, torch
import res2net
model = res2net.create_model(sys.argv[1] if len(sys.argv) > 1 else {name!r}).eval()
with torch.no_grad():
    out = model(torch.ones(1, 3, 64, 64))
print(json.dumps({{"logits": out[0].tolist(), "labels": list(model.pretrained_cfg.label_names or []),
                   "source": model.pretrained_cfg.source}}))
"""


@pytest.mark.slow
def test_hf_hub_names_download_through_huggingface_hub(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """A revision pinned, a token sent, the cache used, offline mode honoured; a corrupted download is one line and
    leaves no partial file in the cache."""
    ours = _ours("res2net50_26w_4s")
    folder = tmp_path / "published"
    hf_folder(ours, folder, repo_name="digits", checkpoint=None)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    with torch.no_grad():
        expected = ours(torch.ones(1, 3, 64, 64))[0]
    cache = tmp_path / "hf_cache"
    with fake_hub() as hub:
        hub.publish("org/digits", "v1", files)
        env = {**subprocess_env, "HF_ENDPOINT": hub.url, "HF_HOME": str(cache), "HF_TOKEN": "hf_test_token",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        done = _in_subprocess(LOAD.format(name="hf-hub:org/digits@v1"), env)
        assert done.returncode == 0, done.stderr
        loaded = json.loads(done.stdout.strip().splitlines()[-1])
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, rtol=RTOL, atol=RTOL)
        assert loaded["labels"] == NAMES and loaded["source"] == "hf-hub:org/digits@v1"
        gets = [path for method, path, _ in hub.requests if method == "GET"]
        assert gets == ["/org/digits/resolve/v1/config.json", "/org/digits/resolve/v1/model.safetensors"]
        assert {auth for _, _, auth in hub.requests} == {"Bearer hf_test_token"}

        served = len(hub.requests)
        offline = _in_subprocess(LOAD.format(name="hf-hub:org/digits@v1"), {**env, "HF_HUB_OFFLINE": "1"})
        assert offline.returncode == 0, offline.stderr
        assert json.loads(offline.stdout.strip().splitlines()[-1])["logits"] == loaded["logits"]
        assert len(hub.requests) == served  # the cache answered
        missing = _in_subprocess(LOAD.format(name="hf-hub:org/digits@v2"), {**env, "HF_HUB_OFFLINE": "1"})
        assert missing.returncode != 0 and "offline (HF_HUB_OFFLINE) and not in the cache" in missing.stderr

        hub.publish("org/broken", "main", files)
        hub.truncate["model.safetensors"] = 1000
        picture = tmp_path / "picture.png"
        Image.new("RGB", (16, 16)).save(picture)
        cli = [str(Path(sys.executable).with_name("res2net")), "predict", "--model", "hf-hub:org/broken",
               str(picture)]
        broken = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=300)
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: cannot download hf-hub:org/broken") and "Traceback" not in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
    assert not [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]


def test_push_to_hub_uploads_the_export_as_one_commit(learned_run: tuple[Path, float], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """What reaches huggingface_hub's HfApi: the repository, privacy, branch, the folder and the message."""
    import huggingface_hub

    calls: dict[str, object] = {}

    class Api:
        def __init__(self, **kwargs: object) -> None:
            calls["api"] = kwargs

        def create_repo(self, repo_id: str, private: bool, exist_ok: bool) -> None:
            calls["repo"] = (repo_id, private, exist_ok)

        def create_branch(self, repo_id: str, branch: str, exist_ok: bool) -> None:
            calls["branch"] = branch

        def upload_folder(self, repo_id: str, folder_path: str, commit_message: str, revision: str | None) -> object:
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["message"], calls["revision"] = commit_message, revision
            return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    from res2net.cli import main

    assert main(["push-to-hub", str(learned_run[0] / "last.pth"), "me/res2net50-digits", "--private",
                             "--revision", "v1"]) == 0
    assert calls["repo"] == ("me/res2net50-digits", True, True) and calls["branch"] == "v1" == calls["revision"]
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert str(calls["message"]).startswith("res2net50_26w_4s (10 classes, val top-1 ")
    assert "pushed me/res2net50-digits" in capsys.readouterr().out
