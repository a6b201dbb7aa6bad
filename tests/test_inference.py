"""The inference fast path: BatchNorm folding, fp32/bf16/int8 parity with the eager model,
preprocessing metadata and class names.

Models get random weights *and* random BatchNorm statistics: with the identity statistics
of a fresh model, folding errors (wrong eps, mean or scale) would cancel out unseen.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from res2net.cpu_training import compiler_available
from res2net.errors import UserError
from res2net.inference import (
    PreprocessInfo,
    fold_batchnorm,
    load_inference_model,
    load_model,
    optimize_for_inference,
    preprocess_images,
)
from res2net.inference import optimize as optimize_module
from res2net.inference.onnx_runtime import OnnxRuntimeModule
from res2net.inference.openvino_backend import OpenVinoModule
from res2net.inference.optimize import BackendFallbackWarning
from res2net.inference.torch_backend import ChannelsLastModule
from res2net.models import build_model, imagenet_label_names

SMALL = (3, 64, 64)
MODELS = ("res2net50_26w_4s", "res2net_dla60")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (in place), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.8 + 0.4)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def random_model(name: str, num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model(name, num_classes=num_classes), seed)


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module", params=MODELS)
def model(request: pytest.FixtureRequest) -> nn.Module:
    return random_model(request.param)


@pytest.mark.parametrize(("name", "backend", "kind"), [
    ("res2net50_26w_4s", "auto", OpenVinoModule),
    ("res2net_dla60", "auto", OpenVinoModule),
    ("res2net50_26w_4s", "onnxruntime", OnnxRuntimeModule),
    ("res2net50_26w_4s", "torch", ChannelsLastModule),
])
def test_fp32_matches_eager_at_any_batch_size(name: str, backend: str, kind: type) -> None:
    """auto means OpenVINO (measured fastest); onnxruntime and torch are the fallbacks."""
    model = random_model(name)
    before = copy.deepcopy(model.state_dict())
    fast = optimize_for_inference(model, "fp32", example_input_size=SMALL, backend=backend)  # type: ignore[arg-type]
    assert isinstance(fast, kind)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the input model must not change"
    for batch in (1, 3, 1):
        x = torch.randn(batch, *SMALL)
        out = fast(x)
        assert out.dtype == torch.float32 and out.shape == (batch, 10)
        assert relative_error(out, eager(model, x)) < 1e-4
    # Any spatial size too, and channels_last input.
    x = torch.randn(2, 3, 96, 64).contiguous(memory_format=torch.channels_last)
    assert relative_error(fast(x), eager(model, x)) < 1e-4


def test_openvino_outputs_are_not_overwritten_by_the_next_call() -> None:
    fast = optimize_for_inference(random_model("res2net50_26w_4s"), "fp32", example_input_size=SMALL)
    first_input = torch.randn(2, *SMALL)
    first = fast(first_input)
    kept = first.clone()
    fast(torch.randn(2, *SMALL))  # same shape: the same infer request and output buffer
    assert torch.equal(first, kept)


def test_without_openvino_each_precision_falls_back_with_one_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optimize_module, "openvino_available", lambda: False)
    model = random_model("res2net50_26w_4s")
    with pytest.warns(BackendFallbackWarning, match=r"OpenVINO is not installed .*fp32 runs in onnxruntime") as notes:
        fast = optimize_for_inference(model, "fp32", example_input_size=SMALL)
    assert len(notes) == 1 and isinstance(fast, OnnxRuntimeModule)
    with pytest.warns(BackendFallbackWarning, match="bf16 runs in torch"):
        assert isinstance(optimize_for_inference(model, "bf16", example_input_size=SMALL), ChannelsLastModule)
    with pytest.raises(ValueError, match="OpenVINO"):
        optimize_for_inference(model, "fp32", example_input_size=SMALL, backend="openvino")


def test_bf16_without_cpu_support_says_so_and_runs_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optimize_module, "cpu_has_bf16", lambda: False)
    model = random_model("res2net50_26w_4s")
    with pytest.warns(BackendFallbackWarning, match="no bf16 instructions"):
        fast = optimize_for_inference(model, "bf16", example_input_size=SMALL)
    assert isinstance(fast, OpenVinoModule) and fast.precision == "fp32"
    x = torch.randn(2, *SMALL)
    assert relative_error(fast(x), eager(model, x)) < 1e-4


@pytest.mark.parametrize(("backend", "precision"), [("onnxruntime", "bf16"), ("torch", "int8"), ("tensorrt", "fp32")])
def test_impossible_backends_are_refused(backend: str, precision: str) -> None:
    with pytest.raises(ValueError, match="backend|onnxruntime|int8"):
        optimize_for_inference(random_model("res2net50_26w_4s"), precision, backend=backend,  # type: ignore[arg-type]
                               calibration_images=torch.randn(2, *SMALL), example_input_size=SMALL)


def test_fold_batchnorm_keeps_the_module_tree(model: nn.Module) -> None:
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert {n for n, _ in folded.named_modules()} == {n for n, _ in model.named_modules()}
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the input model must not change"


def test_bf16_through_openvino_is_within_two_percent() -> None:
    """bf16 where the CPU has bf16 instructions; elsewhere one warning and float32 (never emulated bf16,
    which runs ~100x slower than float32 on such CPUs)."""
    from res2net.inference.openvino_backend import cpu_has_bf16

    model = random_model("res2net50_26w_4s")
    if cpu_has_bf16():
        fast = optimize_for_inference(model, "bf16", example_input_size=SMALL)
    else:
        with pytest.warns(BackendFallbackWarning, match="no bf16 instructions"):
            fast = optimize_for_inference(model, "bf16", example_input_size=SMALL)
    assert isinstance(fast, OpenVinoModule) and fast.precision == ("bf16" if cpu_has_bf16() else "fp32")
    for batch in (3, 2):
        x = torch.randn(batch, *SMALL)
        out = fast(x)
        assert out.dtype == torch.float32 and out.shape == (batch, 10)
        assert relative_error(out, eager(model, x)) < 0.02


@pytest.mark.parametrize(("name", "compiled"), [
    # The fallback without OpenVINO compiles with inductor (~30-60 s on 2 cores): marked slow.
    pytest.param("res2net50_26w_4s", compiler_available(), marks=pytest.mark.slow),
    ("res2net_dla60", False),
])
def test_torch_bf16_is_folded_channels_last_and_within_two_percent(
    name: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = "torch"
    if compiled:  # torch.compile is what auto runs when OpenVINO is missing
        monkeypatch.setattr(optimize_module, "openvino_available", lambda: False)
        backend = "auto"
    model = random_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)
        fast = optimize_for_inference(model, "bf16", example_input_size=SMALL, backend=backend)  # type: ignore[arg-type]
    assert isinstance(fast, ChannelsLastModule) and fast.compiled == compiled
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.kernel_size != (1, 1))
    for batch in (3, 2):  # a second batch size must not need another model
        x = torch.randn(batch, *SMALL)
        out = fast(x)
        assert out.dtype == torch.float32 and out.shape == (batch, 10)
        assert relative_error(out, eager(model, x)) < 0.02
    assert next(model.parameters()).dtype == torch.float32, "the input model must not change"


def test_int8_requires_calibration_images() -> None:
    model = random_model("res2net50_26w_4s")
    with pytest.raises(ValueError, match="calibration_images"):
        optimize_for_inference(model, "int8")
    with pytest.raises(ValueError, match="calibration_images"):
        optimize_for_inference(model, "int8", calibration_images=torch.randn(4, 64, 64))


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(nn.Linear(2, 2), "fp16")  # type: ignore[arg-type]


def near_prototypes(prototypes: torch.Tensor, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copies of each prototype image, labelled by prototype."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(prototypes.shape[0]).repeat(per_class)
    return prototypes[labels] + 0.3 * torch.randn(len(labels), *SMALL, generator=generator), labels


def test_int8_agrees_with_fp32_on_a_separable_problem() -> None:
    """Four clusters of inputs (noisy copies of four random images) and a classifier
    fitted on the fp32 features' class means: fp32 logits are then well separated
    (margins ~1, far above the noise), so int8 must agree with fp32 on every image and
    stay close to its logits. A wrong scale, zero point or calibration fails both."""
    model = random_model("res2net50_26w_4s", num_classes=4, seed=1)
    prototypes = torch.randn(4, *SMALL, generator=torch.Generator().manual_seed(5))
    calibration, labels = near_prototypes(prototypes, 4, seed=1)
    with torch.no_grad():
        features = model.forward_head(model.forward_features(calibration), pre_logits=True)
        centres = torch.stack([features[labels == c].mean(0) for c in range(4)])
        directions = centres - centres.mean(0)
        directions /= directions.norm(dim=1, keepdim=True)
        model.fc.weight.copy_(directions)
        model.fc.bias.copy_(-(directions @ centres.mean(0)))
    test_x, test_y = near_prototypes(prototypes, 12, seed=3)
    reference = eager(model, test_x)
    assert torch.equal(reference.argmax(1), test_y), "the fp32 model itself must separate the clusters"
    for backend, kind in (("auto", OpenVinoModule), ("onnxruntime", OnnxRuntimeModule)):
        fast = optimize_for_inference(model, "int8", calibration_images=calibration, example_input_size=SMALL,
                                      backend=backend)  # type: ignore[arg-type]
        assert isinstance(fast, kind)
        out = fast(test_x)
        assert out.dtype == torch.float32 and out.shape == (48, 4)
        assert torch.equal(out.argmax(1), reference.argmax(1)), backend
        assert relative_error(out, reference) < 0.35, backend
        assert fast(test_x[:1]).shape == (1, 4)


def test_int8_quantises_once_per_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NNCF's result is cached under $RES2NET_HOME: a second process (here: call) reads it back."""
    import nncf

    monkeypatch.setenv("RES2NET_HOME", str(tmp_path))
    model = random_model("res2net50_26w_4s", num_classes=4)
    calibration = torch.randn(8, *SMALL, generator=torch.Generator().manual_seed(0))
    first = optimize_for_inference(model, "int8", calibration_images=calibration, example_input_size=SMALL)
    assert len(list((tmp_path / "openvino").glob("int8-*.xml"))) == 1

    def no_quantisation(*args: object, **kwargs: object) -> None:
        raise AssertionError("quantised again although the result is cached")

    monkeypatch.setattr(nncf, "quantize", no_quantisation)
    again = optimize_for_inference(model, "int8", calibration_images=calibration, example_input_size=SMALL)
    x = torch.randn(3, *SMALL)
    assert torch.equal(first(x), again(x))
    with pytest.raises(AssertionError, match="quantised again"):  # other images are another model: quantised anew
        optimize_for_inference(model, "int8", calibration_images=calibration * 2, example_input_size=SMALL)


def test_imagenet_class_names_are_the_standard_list() -> None:
    names = imagenet_label_names()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[1] == "goldfish"
    assert names[281] == "tabby" and names[340] == "zebra" and names[948] == "Granny Smith"
    assert names[999] == "toilet tissue"


def test_preprocessing_comes_from_the_registry_and_mindcv_rows_are_imagenet_first() -> None:
    _, info = load_model("res2net50_26w_4s")
    assert info.input_size == (3, 224, 224) and info.crop_pct == 0.875 and info.interpolation == "bilinear"
    assert info.mean == pytest.approx((0.485, 0.456, 0.406)) and info.num_classes == 1000
    # MindCV's 1001-row head: rows 0..999 are ImageNet's classes, row 1000 is never trained.
    _, mindcv = load_model("res2net50.mindcv")
    assert mindcv.num_classes == 1000 and mindcv.class_names[:2] == ["tench", "goldfish"]
    _, all_rows = load_model("res2net50.mindcv", num_classes=1001)
    assert all_rows.class_names[:2] == ["tench", "goldfish"] and all_rows.class_names[1000] == "unused_1000"


def test_labels_file_and_mismatch(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n\nbird\n")
    assert load_model("res2net50", num_classes=3, labels_file=labels)[1].class_names == ["cat", "dog", "bird"]
    with pytest.raises(UserError, match="3 class names but the model has 1000"):
        load_model("res2net50", labels_file=labels)


def save_training_checkpoint(path: Path, model: nn.Module, class_names: list[str], image_size: int) -> Path:
    """A training checkpoint as this package's first layout (version 1) wrote it: weights, the
    recipe and the class names, no pretrained_cfg (reading upgrades it)."""
    config = {"image_resize": image_size, "crop_pct": 1.0, "interpolation": "bicubic", "in_channels": 3,
              "mean": [127.5, 127.5, 127.5], "std": [63.75, 63.75, 63.75]}
    torch.save({"format": "res2net-train", "version": 1, "model_name": "res2net50_26w_4s",
                "model": model.state_dict(), "model_ema": None, "ema_updates": 0, "optimizer": {}, "scaler": {},
                "schedule": {}, "epoch": 3, "step": 30, "best_top1": None, "rng": {}, "config": config,
                "class_names": class_names, "mixer": None, "metrics": {"top1": 55.0, "top5": 90.0}}, path)
    return path


def test_training_checkpoint_metadata_and_num_classes(tmp_path: Path) -> None:
    model = random_model("res2net50_26w_4s", num_classes=3)
    path = save_training_checkpoint(tmp_path / "ours.pth", model, ["a", "b", "c"], 64)
    _, info = load_model("res2net50_26w_4s", checkpoint_path=path)
    assert info == PreprocessInfo((3, 64, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1.0, "bicubic", ["a", "b", "c"])
    fast, loaded_info = load_inference_model("res2net50_26w_4s", checkpoint_path=path)
    assert loaded_info == info
    x = torch.randn(2, *SMALL)
    assert relative_error(fast(x), eager(model, x)) < 1e-4
    # A plain state dict: the number of classes comes from the classifier's rows, the names are unknown.
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    assert load_model("res2net50_26w_4s", checkpoint_path=plain)[1].class_names == ["class_0", "class_1", "class_2"]


def test_preprocess_images_matches_a_hand_computation() -> None:
    info = PreprocessInfo((3, 4, 4), (0.5, 0.25, 0.0), (0.5, 0.25, 1.0), 1.0, "bilinear", ["x"])
    red = Image.new("RGB", (8, 6), (255, 0, 51))
    grey = Image.new("L", (5, 9), 0)
    batch = preprocess_images([red, grey], info)
    assert batch.shape == (2, 3, 4, 4) and batch.dtype == torch.float32
    assert torch.allclose(batch[0, :, 0, 0], torch.tensor([1.0, -1.0, 0.2]), atol=1e-5)
    assert torch.allclose(batch[1, :, 0, 0], torch.tensor([-1.0, -1.0, 0.0]), atol=1e-5)


def test_openvino_compiles_two_batch_sizes_statically_and_shares_one_model_for_the_rest() -> None:
    """Every compiled model holds a copy of the weights: serving's many batch sizes must not each get one."""
    model = random_model("res2net50_26w_4s")
    fast = optimize_for_inference(model, "fp32", example_input_size=SMALL)
    assert isinstance(fast, OpenVinoModule)
    for batch in (1, 4, 2, 7, 1, 4):
        x = torch.randn(batch, *SMALL)
        assert relative_error(fast(x), eager(model, x)) < 1e-4
    assert sorted(shape[0] for shape in fast._static) == [1, 4] and list(fast._dynamic) == [SMALL]
