"""Every architecture in the registry trains: a whole step (forward, backward, optimizer step) on the
CPU, channels-last, in fp32 and under bf16 autocast, with the fused CPU kernels (the training copy
``cpu_kernels: fused`` makes) and without them (``cpu_kernels: off``). Then ``train.py`` end to end
for each of the seed's four models. Generated from the registry's table: a network added to it is
covered here without touching this file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from autograd_calls import record_calls

from res2net.cpu_training import accelerate_cpu_training, compiler_available, fused_norm, load_kernels
from res2net.models import build_model
from res2net.models.registry import ARCHITECTURES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"
#: The four models of the seed's table (MindCV's names).
SEED_MODELS = ("res2net50", "res2net101", "res2net50_v1b", "res2net101_v1b")


@pytest.fixture(scope="module")
def cpu_kernels() -> ModuleType:
    if not compiler_available():
        pytest.skip("needs a C++ compiler to build the fused CPU kernels")
    built = load_kernels(build=True)
    assert built is not None
    return built


@pytest.mark.parametrize("kernels", ["fused", "off"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", [arch.name for arch in ARCHITECTURES])
def test_a_training_step(name: str, precision: str, kernels: str, request: pytest.FixtureRequest,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=4).to(memory_format=torch.channels_last)
    keys = list(model.state_dict())
    fused_calls = record_calls(monkeypatch, fused_norm._FusedBatchNorm)
    trained = model if kernels == "off" else accelerate_cpu_training(model, kernels=request.getfixturevalue(
        "cpu_kernels"))
    trained.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = F.cross_entropy(trained(images).float(), torch.tensor([0, 3]))
    loss.backward()
    optimizer.step()

    assert loss.isfinite()
    assert (len(fused_calls) > 0) == (kernels == "fused")
    for param_name, param in model.named_parameters():
        assert param.grad is not None and param.grad.isfinite().all(), param_name
        if param.grad.abs().sum() > 0:
            assert not torch.equal(param.detach(), before[param_name]), f"{param_name} did not move"
    assert not torch.equal(model.fc.weight.detach(), before["fc.weight"])
    assert list(model.state_dict()) == keys
    counters = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 1 for c in counters)


@pytest.mark.slow
@pytest.mark.parametrize("name", SEED_MODELS)
def test_train_py_end_to_end(name: str, tiny_digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The seed's models through ``train.py`` on the tiny digits: one short epoch, validated, checkpointed."""
    args = ["-c", str(DEMO_RECIPE), "--model", name, "--data_dir", str(tiny_digits_dir), "--ckpt_save_dir",
            str(tmp_path), "--epoch_size", "1", "--batch_size", "8", "--warmup_epochs", "0",
            "--decay_epochs", "1", "--log_interval", "1", "--keep_checkpoint_max", "1"]
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], capture_output=True, text=True,
                          env=subprocess_env, cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"model={name} (" in done.stdout and "final: top-1" in done.stdout
    assert (tmp_path / "last.pth").is_file()
