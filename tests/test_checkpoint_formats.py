"""Format detection, unwrapping, MindSpore protobuf parsing and load-time errors."""

from __future__ import annotations

import argparse
import binascii
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import randomise_, tiny_res2net
from safetensors.torch import save_file

from res2net.checkpoint import CheckpointFormat, detect_format, load_checkpoint_into, read_state_dict
from res2net.checkpoint.mindspore_ckpt import checkpoint_message_class
from res2net.checkpoint.remap import is_training_state, translate_name
from res2net.errors import CheckpointError
from res2net.models.res2net import Res2Net

FIXTURES = Path(__file__).parent / "fixtures" / "mindcv"


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    return randomise_(tiny_res2net(), seed=1)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _writers() -> dict[str, tuple[CheckpointFormat, object]]:
    """Writers named with misleading suffixes: detection must not trust the name."""
    return {
        "zip.ckpt": (CheckpointFormat.TORCH_ZIP, lambda sd, p: torch.save(sd, p)),
        "legacy.safetensors": (
            CheckpointFormat.TORCH_PICKLE,
            lambda sd, p: torch.save(sd, p, _use_new_zipfile_serialization=False),
        ),
        "weights.pth": (CheckpointFormat.SAFETENSORS, lambda sd, p: save_file(sd, str(p))),
        "ms_weights.bin": (CheckpointFormat.MINDSPORE, lambda sd, p: p.write_bytes(_mindspore_bytes(sd))),
    }


def _mindspore_value(ckpt: object, tag: str, tensor: torch.Tensor, content: bytes | None = None) -> None:
    names = {torch.float32: "Float32", torch.float16: "Float16", torch.int64: "Int64"}
    value = ckpt.value.add()  # type: ignore[attr-defined]
    value.tag = tag
    value.tensor.dims.extend(tensor.shape)
    value.tensor.tensor_type = names[tensor.dtype]
    value.tensor.tensor_content = tensor.contiguous().numpy().tobytes() if content is None else content


def _mindspore_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """A MindSpore-layout checkpoint (one message per value, as MindSpore writes them)."""
    out = b""
    for tag, tensor in state.items():
        ckpt = checkpoint_message_class()()
        _mindspore_value(ckpt, tag, tensor)
        out += ckpt.SerializeToString()
    return out


@pytest.mark.parametrize("file_name", list(_writers()))
def test_format_detected_from_bytes_not_name(tmp_path: Path, file_name: str, trained: torch.nn.Module) -> None:
    fmt, write = _writers()[file_name]
    state = trained.state_dict()
    path = tmp_path / file_name
    write(state, path)
    assert detect_format(path) is fmt
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_module_prefix_and_wrapper_removed(tmp_path: Path, trained: torch.nn.Module, x: torch.Tensor) -> None:
    path = tmp_path / "ddp.pth"
    prefixed = {f"module._orig_mod.{k}": v for k, v in trained.state_dict().items()}  # DDP around torch.compile
    torch.save({"epoch": 3, "state_dict": prefixed}, path)
    model = tiny_res2net()
    load_checkpoint_into(model, path, model_name="tiny")
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


def test_our_training_checkpoint_ema_choice(tmp_path: Path, x: torch.Tensor) -> None:
    live, ema = randomise_(tiny_res2net(), seed=2), randomise_(tiny_res2net(), seed=3)
    path = tmp_path / "last.pt"
    torch.save(
        {"model": live.state_dict(), "model_ema": ema.state_dict(), "optimizer": {"lr": 0.1}, "epoch": 7}, path
    )
    for use_ema, expected in ((False, live), (True, ema)):
        model = tiny_res2net()
        load_checkpoint_into(model, path, model_name="tiny", use_ema=use_ema)
        with torch.no_grad():
            assert torch.equal(model(x), expected(x))


def test_timm_style_ema_key(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = tmp_path / "timm_train.pth"
    torch.save({"state_dict": {}, "state_dict_ema": trained.state_dict()}, path)
    assert read_state_dict(path, use_ema=True).keys() == trained.state_dict().keys()


def test_ema_requested_but_absent(tmp_path: Path, trained: torch.nn.Module) -> None:
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "wrapped.pth"
    torch.save(trained.state_dict(), plain)
    torch.save({"model": trained.state_dict(), "epoch": 1}, wrapped)
    for path in (plain, wrapped):
        with pytest.raises(CheckpointError, match="EMA") as err:
            read_state_dict(path, use_ema=True)
        assert str(path) in str(err.value)


@pytest.mark.parametrize("file_name", list(_writers()))
def test_truncated_file_names_the_file(tmp_path: Path, file_name: str, trained: torch.nn.Module) -> None:
    _, write = _writers()[file_name]
    full = tmp_path / f"full_{file_name}"
    write(trained.state_dict(), full)
    data = full.read_bytes()
    for cut in (len(data) // 2, len(data) - 5):
        path = tmp_path / f"cut_{cut}_{file_name}"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint_into(tiny_res2net(), path, model_name="tiny")
        assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content",
    [b"", os.urandom(4096), b"hello, this is a README, not weights\n" * 20, b'{"not": "weights"}', b"\n\x05abcde"],
    ids=["empty", "random", "text", "json", "protobuf-like"],
)
def test_garbage_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_into(tiny_res2net(), path, model_name="tiny")
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_pickle_with_code_objects_refused(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": trained.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="refused") as err:
        read_state_dict(path)
    assert str(path) in str(err.value)


def test_other_architecture_lists_keys(tmp_path: Path) -> None:
    import torchvision  # slow to import; only this test needs it

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_into(tiny_res2net(), path, model_name="tiny")
    message = str(err.value)
    assert str(path) in message and "tiny" in message
    assert "missing keys" in message and "layer1.0.bns.0.weight" in message
    assert "unexpected keys" in message and "layer1.0.bn2.bias" in message


def test_shape_mismatch_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "wider.pth"
    torch.save(Res2Net([1, 1, 1, 1], base_width=8, scale=2, num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches") as err:
        load_checkpoint_into(tiny_res2net(), path, model_name="tiny")
    assert "layer1.0.bns.0.weight [8] vs [4]" in str(err.value)


def test_classifier_of_other_size_reinitialised_with_one_warning(
    tmp_path: Path, trained: torch.nn.Module, x: torch.Tensor
) -> None:
    path = tmp_path / "ten_classes.pth"
    torch.save(trained.state_dict(), path)
    model = tiny_res2net(num_classes=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_checkpoint_into(model, path, model_name="tiny")
    assert len(caught) == 1
    assert "10 classes" in str(caught[0].message) and "re-initialised" in str(caught[0].message)
    assert model.fc.weight.shape == (5, trained.num_features)
    with torch.no_grad():
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True),
                           trained.forward_head(trained.forward_features(x), pre_logits=True))
    with pytest.raises(CheckpointError, match="classifier has 10 classes"):
        load_checkpoint_into(tiny_res2net(num_classes=5), path, model_name="tiny", strict_head=True)


def test_headless_model_ignores_checkpoint_head(tmp_path: Path, trained: torch.nn.Module) -> None:
    path = tmp_path / "full.pth"
    torch.save(trained.state_dict(), path)
    model = tiny_res2net(num_classes=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint_into(model, path, model_name="tiny")
    assert torch.equal(model.layer4[0].bn3.running_var, trained.layer4[0].bn3.running_var)


def test_missing_batch_counters_are_accepted(tmp_path: Path, trained: torch.nn.Module, x: torch.Tensor) -> None:
    path = tmp_path / "old_pytorch.pth"
    torch.save({k: v for k, v in trained.state_dict().items() if "num_batches_tracked" not in k}, path)
    model = tiny_res2net()
    load_checkpoint_into(model, path, model_name="tiny")
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))


def test_mindspore_dtypes_from_genuine_file() -> None:
    reference = np.load(FIXTURES / "reference.npz")
    state = read_state_dict(FIXTURES / "dtypes.ckpt")
    assert "comment" not in state  # text entries are metadata, skipped
    expected_dtypes = {
        "f16": torch.float16, "f32": torch.float32, "f64": torch.float64, "i8": torch.int8, "u8": torch.uint8,
        "i32": torch.int32, "i64": torch.int64, "flag": torch.bool, "scalar": torch.float32, "bf16": torch.bfloat16,
    }
    assert state.keys() == {f"t.{k}" for k in expected_dtypes}
    for name, dtype in expected_dtypes.items():
        tensor = state[f"t.{name}"]
        assert tensor.dtype == dtype
        values = tensor.float().numpy() if dtype == torch.bfloat16 else tensor.numpy()
        np.testing.assert_array_equal(values, reference[f"dtype_{name}"])
    assert state["t.scalar"].shape == ()


def test_mindspore_split_tensor_is_joined(tmp_path: Path) -> None:
    big = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    raw = big.numpy().tobytes()
    ckpt = checkpoint_message_class()()
    for chunk in (raw[:20], raw[20:]):  # MindSpore splits large tensors into same-tag values
        _mindspore_value(ckpt, "w", big, content=chunk)
    _mindspore_value(ckpt, "b", torch.ones(2))
    path = tmp_path / "split.ckpt"
    path.write_bytes(ckpt.SerializeToString())
    state = read_state_dict(path)
    assert torch.equal(state["w"], big) and torch.equal(state["b"], torch.ones(2))


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"\x00" * 7, "needs 8"), (None, "appears twice")],
    ids=["short-content", "duplicate-tag"],
)
def test_mindspore_inconsistent_entries(tmp_path: Path, content: bytes | None, match: str) -> None:
    ckpt = checkpoint_message_class()()
    _mindspore_value(ckpt, "w", torch.ones(2), content=content)
    if content is None:
        _mindspore_value(ckpt, "x", torch.ones(2))
        _mindspore_value(ckpt, "w", torch.ones(2))
    path = tmp_path / "bad.ckpt"
    path.write_bytes(ckpt.SerializeToString())
    with pytest.raises(CheckpointError, match=match):
        read_state_dict(path)


def test_mindspore_crc_mismatch(tmp_path: Path) -> None:
    good = _mindspore_bytes({"w": torch.ones(4)})
    trailer = b"crc_num" + binascii.crc32(good).to_bytes(10, "big")
    ok, bad = tmp_path / "ok.ckpt", tmp_path / "bad.ckpt"
    ok.write_bytes(good + trailer)
    corrupted = bytearray(good)
    corrupted[-1] ^= 0xFF
    bad.write_bytes(bytes(corrupted) + trailer)
    assert torch.equal(read_state_dict(ok)["w"], torch.ones(4))
    with pytest.raises(CheckpointError, match="CRC"):
        read_state_dict(bad)


def test_mindspore_ema_entries(tmp_path: Path) -> None:
    path = tmp_path / "ema.ckpt"
    path.write_bytes(_mindspore_bytes({"conv.weight": torch.zeros(2), "ema.conv.weight": torch.ones(2)}))
    assert torch.equal(read_state_dict(path)["conv.weight"], torch.zeros(2))
    assert "ema.conv.weight" not in read_state_dict(path)
    assert torch.equal(read_state_dict(path, use_ema=True)["conv.weight"], torch.ones(2))
    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(_mindspore_bytes({"conv.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="EMA"):
        read_state_dict(plain, use_ema=True)


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("layer1.0.bn1.gamma", "layer1.0.bn1.weight"),
        ("layer1.0.bns.2.beta", "layer1.0.bns.2.bias"),
        ("conv1.1.moving_mean", "conv1.1.running_mean"),
        ("layer3.0.down_sample.2.moving_variance", "layer3.0.downsample.2.running_var"),
        ("classifier.weight", "fc.weight"),
        ("layer2.0.convs.1.weight", "layer2.0.convs.1.weight"),
    ],
)
def test_mindcv_names(name: str, ours: str) -> None:
    assert translate_name(name) == ours


def test_training_state_recognised() -> None:
    names = {"conv1.weight", "moments.conv1.weight", "adam_v.conv1.weight", "global_step", "learning_rate"}
    assert {n for n in names if is_training_state(n, names)} == names - {"conv1.weight"}
    assert not is_training_state("layer1.0.conv1.weight", {"layer1.0.conv1.weight", "conv1.weight"})
