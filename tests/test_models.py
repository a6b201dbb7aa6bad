"""Registry-driven model tests: every registered name is built and checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import res2net
from res2net.errors import UserError
from res2net.models import REGISTRY, build_model, get_architecture, imagenet_label_names
from res2net.models.features import FeatureExtractor
from res2net.models.registry import ARCHITECTURES, SHIPPED_NAMES, Architecture, shipped_registry

ALL_MODELS = list(SHIPPED_NAMES)  # test files register tiny models of their own

# Trainable parameters with 1000 classes, as MindCV 0.3.0 and the paper authors' official code build
# them (both agree; the DLA figures are timm's, without the official code's unused ``project`` layers).
EXPECTED_PARAMS = {
    "res2net50_26w_4s": 25_699_120,
    "res2net50": 25_699_120,
    "res2net50_48w_2s": 25_287_304,
    "res2net50_14w_8s": 25_059_816,
    "res2net50_26w_6s": 37_051_448,
    "res2net50_26w_8s": 48_403_776,
    "res2net101_26w_4s": 45_206_688,
    "res2net101": 45_206_688,
    "res2net50_v1b_26w_4s": 25_718_352,
    "res2net50_v1b": 25_718_352,
    "res2net50d": 25_718_352,
    "res2net101_v1b_26w_4s": 45_225_920,
    "res2net101_v1b": 45_225_920,
    "res2net101d": 45_225_920,
    "res2next50": 24_671_464,
    "res2net_dla60": 20_848_072,
    "res2next_dla60": 17_032_984,
}
# Neither source publishes a count for the 152-layer networks; the deep stem adds the same
# 19,232 parameters to every depth, which ties the two 152 variants together.
DEEP_STEM_EXTRA = 25_718_352 - 25_699_120

REQUIRED_NAMES = {
    "res2net50", "res2net101", "res2net152", "res2net50_v1b", "res2net101_v1b", "res2net152_v1b",
    "res2net50_26w_4s", "res2net50_48w_2s", "res2net50_14w_8s", "res2net50_26w_6s", "res2net50_26w_8s",
    "res2net101_26w_4s", "res2net50_v1b_26w_4s", "res2net101_v1b_26w_4s", "res2net152_v1b_26w_4s",
    "res2next50", "res2net_dla60", "res2next_dla60", "res2net50d", "res2net101d",
}  # fmt: skip


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def meta_model(name: str) -> torch.nn.Module:
    """Built on the meta device: shapes only, no memory or initialisation cost."""
    with torch.device("meta"):
        return build_model(name)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    """Each network built once, with a small head, shared by the shape tests."""
    torch.manual_seed(0)
    return {name: build_model(name, num_classes=7).eval() for name in ALL_MODELS}


def test_every_family_member_is_registered() -> None:
    assert REQUIRED_NAMES <= set(ALL_MODELS)


def test_list_models_pattern() -> None:
    assert res2net.list_models("res2net152*") == [
        "res2net152", "res2net152_26w_4s", "res2net152_v1b", "res2net152_v1b_26w_4s"]
    assert res2net.list_models("nothing*") == []


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UserError, match="did you mean 'res2net50'"):
        res2net.create_model("res2net5O")


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_exact_parameter_count(name: str) -> None:
    assert count_parameters(meta_model(name)) == EXPECTED_PARAMS[name]


def test_152_parameter_counts_are_consistent() -> None:
    plain, v1b = count_parameters(meta_model("res2net152")), count_parameters(meta_model("res2net152_v1b"))
    assert v1b - plain == DEEP_STEM_EXTRA
    assert count_parameters(meta_model("res2net152_v1b_26w_4s")) == v1b
    assert plain > EXPECTED_PARAMS["res2net101"]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_features_head_and_reset(name: str, models: dict[str, torch.nn.Module]) -> None:
    model = models[name]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 2, 2)
        logits = model.forward_head(features)
        assert logits.shape == (2, 7)
        torch.testing.assert_close(model(x), logits)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    model.reset_classifier(7)


def test_thirteen_architectures_behind_every_name() -> None:
    assert len(ARCHITECTURES) == 13
    assert {get_architecture(name).name for name in ALL_MODELS} == {arch.name for arch in ARCHITECTURES}


@pytest.mark.parametrize(
    ("alias", "architecture"),
    [("res2net50", "res2net50_26w_4s"), ("res2net101", "res2net101_26w_4s"), ("res2net152", "res2net152_26w_4s"),
     ("res2net50_v1b", "res2net50_v1b_26w_4s"), ("res2net50d", "res2net50_v1b_26w_4s"),
     ("res2net101_v1b", "res2net101_v1b_26w_4s"), ("res2net101d", "res2net101_v1b_26w_4s"),
     ("res2net152_v1b", "res2net152_v1b_26w_4s")],
)
def test_aliases_resolve_to_one_architecture_and_share_its_weight_tags(alias: str, architecture: str) -> None:
    assert get_architecture(alias).name == architecture
    assert REGISTRY.tags(alias) == REGISTRY.tags(architecture)
    assert count_parameters(meta_model(alias)) == count_parameters(meta_model(architecture))


def test_official_weights_of_a_mindcv_name_and_tags_in_names() -> None:
    """The authors' file for res2net50_26w_4s is the file for MindCV's res2net50, the same network."""
    official = REGISTRY.pretrained_cfg("res2net50", "official")
    assert official is REGISTRY.pretrained_cfg("res2net50_26w_4s")  # the paper name's default tag
    assert REGISTRY.pretrained_cfg("res2net50").tag == "mindcv"  # MindCV's name defaults to MindCV's weights
    assert REGISTRY.pretrained_cfg("res2net50_26w_4s.mindcv").file_name == "res2net50-f42cf71b.ckpt"
    model = res2net.create_model("res2net50_26w_4s.official")  # timm: describes, does not download
    assert model.pretrained_cfg.tag == "official" and model.pretrained_cfg.top1 == 77.99
    with pytest.raises(UserError, match="no weights tagged 'imagenet21k'"):
        res2net.create_model("res2net50.imagenet21k")


def test_list_pretrained_names_with_tags() -> None:
    found = res2net.list_pretrained("res2net50*")
    assert {"res2net50.mindcv", "res2net50.official", "res2net50_26w_4s.official", "res2net50_26w_4s.mindcv",
            "res2net50_v1b.mindcv", "res2net50d.official", "res2net50_14w_8s.official"} <= set(found)
    assert found == sorted(found) and not any(n.startswith("res2net50_26w_6s.mindcv") for n in found)
    assert res2net.list_pretrained("res2net*.mindcv") == sorted(
        f"{n}.mindcv" for n in ALL_MODELS if "mindcv" in REGISTRY.tags(n))
    assert not any(name.startswith("res2net152") for name in res2net.list_pretrained())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_published_weight_file_is_fully_described(name: str) -> None:
    for tag, cfg in REGISTRY.tags(name).items():
        assert cfg.tag == tag == cfg.source and cfg.architecture == get_architecture(name).name
        assert cfg.url.startswith("https://") and cfg.file_name in cfg.url
        assert len(cfg.sha256) == 8 and int(cfg.sha256, 16) >= 0 and cfg.sha256 in cfg.file_name
        assert cfg.top1 is not None and 70 < cfg.top1 < 90
        assert cfg.license and cfg.interpolation in {"bilinear", "bicubic"}
        assert 0.5 < cfg.crop_pct <= 1 and len(cfg.mean) == len(cfg.std) == 3
        assert cfg.num_classes == (1001 if cfg.source == "mindcv" else 1000)
        assert cfg.label_names == imagenet_label_names()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_carries_its_pretrained_cfg(name: str) -> None:
    with torch.device("meta"):
        plain = res2net.create_model(name)
        ten = res2net.create_model(name, num_classes=10, features_only=False)
    cfg = plain.pretrained_cfg
    assert cfg.architecture == get_architecture(name).name and cfg.source == "none" and not cfg.has_weights
    assert (cfg.num_classes, cfg.input_size, cfg.crop_pct) == (1000, (3, 224, 224), 0.875)
    assert cfg.label_names == imagenet_label_names()
    assert ten.pretrained_cfg.num_classes == 10 and ten.pretrained_cfg.label_names is None
    for tag in REGISTRY.tags(name):
        with torch.device("meta"):
            described = res2net.create_model(f"{name}.{tag}")
        assert described.pretrained_cfg.tag == tag and described.pretrained_cfg.num_classes == 1000
        assert res2net.resolve_data_config(described).input_size == (3, 224, 224)


def test_register_weights_adds_a_tag_for_every_name_of_the_network() -> None:
    cfg = res2net.register_weights("res2net50", "test_in1k", url="file:///weights/r50.pth", top1=80.0)
    try:
        assert cfg.architecture == "res2net50_26w_4s" and cfg.label_names == imagenet_label_names()
        assert "res2net50_26w_4s.test_in1k" in res2net.list_pretrained()
        assert REGISTRY.pretrained_cfg("res2net50_26w_4s", "test_in1k") is cfg
        res2net.register_weights("res2net50", "test_in1k", url="file:///weights/r50.pth", top1=80.0)  # same: no-op
        with pytest.raises(UserError, match="already registered differently"):
            res2net.register_weights("res2net50", "test_in1k", url="file:///other.pth")
    finally:
        del REGISTRY.weights["res2net50_26w_4s"]["test_in1k"]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", ["res2net50", "res2net50_v1b", "res2next50", "res2net_dla60"])
def test_features_only_output_stride(name: str, output_stride: int) -> None:
    backbone = res2net.create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4), output_stride=output_stride)
    backbone.eval()
    size = 64
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, size, size))
    assert len(maps) == 5 == len(backbone.feature_info)
    for feature, info in zip(maps, backbone.feature_info):
        assert info.reduction <= output_stride
        assert feature.shape[1] == info.channels
        assert feature.shape[-1] == size // info.reduction
    assert [info.reduction for info in backbone.feature_info][-1] == output_stride


@pytest.mark.parametrize("name", ALL_MODELS)
def test_features_only_default_indices(name: str, models: dict[str, torch.nn.Module]) -> None:
    backbone = FeatureExtractor(models[name], (1, 2, 3, 4))
    assert [info.reduction for info in backbone.feature_info] == [4, 8, 16, 32]
    assert not any(key.startswith("fc.") for key in backbone.state_dict())
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [info.channels for info in backbone.feature_info]


def test_features_only_through_create_model_drops_the_head() -> None:
    backbone = res2net.create_model("res2next_dla60", features_only=True)
    assert isinstance(backbone, FeatureExtractor)
    assert [info.reduction for info in backbone.feature_info] == [4, 8, 16, 32]
    assert not any(key.startswith("fc.") for key in backbone.state_dict())


def test_dilated_backbone_keeps_weights_and_differs_only_in_geometry() -> None:
    """Dilation changes strides, never parameter shapes, so pretrained weights load."""
    with torch.device("meta"):
        dense = build_model("res2net50_v1b", output_stride=8)
        plain = build_model("res2net50_v1b")
    assert {k: v.shape for k, v in dense.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}


def test_features_only_rejects_bad_indices() -> None:
    with pytest.raises(ValueError, match="out_indices"):
        res2net.create_model("res2net50", features_only=True, out_indices=(3, 1))


def test_bad_output_stride() -> None:
    with pytest.raises(ValueError, match="output_stride"):
        build_model("res2net50", output_stride=4)


def test_drop_path_and_dropout_only_act_in_training() -> None:
    torch.manual_seed(0)
    model = build_model("res2net_dla60", num_classes=4, drop_rate=0.5, drop_path_rate=0.2)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("size", [80, 97, 100])
def test_dla_accepts_sizes_that_are_not_multiples_of_32(size: int, models: dict[str, torch.nn.Module]) -> None:
    with torch.no_grad():
        assert models["res2net_dla60"](torch.randn(1, 3, size, size)).shape == (1, 7)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_the_registry_records_each_architectures_parameters_and_macs(arch: Architecture) -> None:
    """The registry's facts are the built network's: trainable parameters, and multiply-accumulates
    per 224x224 image as torch's FlopCounterMode counts them (convolutions and classifier), halved."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(arch.name).eval()
        image = torch.empty(1, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:
        model(image)
    assert count_parameters(model) == arch.num_params
    assert counter.get_total_flops() // 2 == arch.macs
    if arch.name in EXPECTED_PARAMS:
        assert arch.num_params == EXPECTED_PARAMS[arch.name]


def test_norm_and_act_layers_are_arguments_and_keys_stay() -> None:
    """norm_layer / act_layer build the network as torchvision and timm do, with the same state-dict keys."""
    from torchvision.ops import FrozenBatchNorm2d

    plain = build_model("res2net50_v1b")
    frozen = build_model("res2net50_v1b", norm_layer=FrozenBatchNorm2d, act_layer=torch.nn.SiLU)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in frozen.modules())
    assert {k for k in plain.state_dict() if not k.endswith("num_batches_tracked")} == set(frozen.state_dict())
    dla = build_model("res2net_dla60", norm_layer=FrozenBatchNorm2d)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in dla.modules()) == sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in build_model("res2net_dla60").modules())


def test_stage_first_pool_still_works_with_a_deprecation_warning() -> None:
    with pytest.deprecated_call(match="pass pool_unstrided"):
        legacy = build_model("res2net50", stage_first_pool="strided")
    assert legacy.layer1[0].pool is None and build_model("res2net50", pool_unstrided=False).layer1[0].pool is None
    assert build_model("res2net50").layer1[0].pool is not None
    with pytest.raises(ValueError, match="stage_first_pool must be"):
        build_model("res2net50", stage_first_pool="sometimes")


@pytest.fixture
def shipped_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models command sees the registry as shipped: other test modules register tiny networks on import."""
    from res2net.cli import models as models_command

    monkeypatch.setattr(models_command, "REGISTRY", shipped_registry())


@pytest.mark.usefixtures("shipped_only")
def test_models_command_prints_the_registry_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from res2net.cli import main

    assert main(["models", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "model,other names,params (M),GMACs @224,weights: top-1 %"
    assert len(rows) == 1 + len(ARCHITECTURES)
    assert any(r.startswith("res2net50_26w_4s,res2net50,25.70,4.26,") and "mindcv 79.35" in r for r in rows)
    assert main(["models", "res2net152*", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out.strip().splitlines()
    assert markdown[1] == "|---|---|---|---|---|" and len(markdown) == 4  # header, rule, the two 152s


@pytest.mark.usefixtures("shipped_only")
@pytest.mark.parametrize("page", ["README.md", "docs/models.md"])
def test_the_model_tables_are_the_models_command_output(page: str) -> None:
    from res2net.cli.models import model_rows, render

    text = (Path(__file__).resolve().parents[1] / page).read_text(encoding="utf-8")
    start, end = "<!-- models: res2net models --format markdown -->\n", "\n<!-- /models -->"
    assert start in text and end in text, f"{page}'s model table markers are missing"
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == render(model_rows(), "markdown"), "stale: paste `res2net models --format markdown` there"
