"""Res2Net in torchvision's detectors and segmenters: builders, freezing, the demo data, the
COCO evaluator round trip, recipes and an end-to-end train -> evaluate -> predict run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from res2net.data.demo_detection import CanvasSpec, write_detection_dataset
from res2net.detection import BUILDERS as DETECTORS
from res2net.detection import res2net_backbone
from res2net.detection.coco_eval import coco_evaluate
from res2net.detection.config import DetectionConfig, load_detection_config
from res2net.detection.data import CocoDenseDataset, paint_semantic
from res2net.errors import ConfigError, UserError
from res2net.segmentation import BUILDERS as SEGMENTERS
from res2net.segmentation import SaliencyMetrics, SegmentationMetrics

BACKBONES = ("res2net50", "res2net50_v1b")  # ResNet-style stem and shortcuts, and v1b's deep stem / avg-pool
SMALL = {"min_size": 64, "max_size": 64, "anchor_sizes": (8, 16, 32, 64, 128)}


@pytest.fixture(scope="module")
def detection_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo canvases at 64 px (digits 12-24 px): the same generator as the README's set."""
    root = tmp_path_factory.mktemp("digits_detection")
    write_detection_dataset(root, spec=CanvasSpec(canvas_size=64, min_digit_size=12, max_digit_size=24))
    return root


@pytest.fixture(scope="module")
def tiny_detection_dir(detection_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train / 4 val canvases of the demo set, for training runs measured in seconds."""
    root = tmp_path_factory.mktemp("tiny_detection")
    for split, keep in (("train", 8), ("val", 4)):
        coco = json.loads((detection_dir / "annotations" / f"instances_{split}.json").read_text())
        coco["images"] = coco["images"][:keep]
        ids = {image["id"] for image in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        for sub in (split, f"masks/{split}"):
            (root / sub).mkdir(parents=True)
            for image in coco["images"]:
                (root / sub / image["file_name"]).symlink_to(detection_dir / sub / image["file_name"])
    return root


def _targets(with_masks: bool) -> list[dict[str, torch.Tensor]]:
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 10:30] = 1
    masks[1, 35:60, 30:50] = 1
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30], [30, 35, 50, 60]]), "labels": torch.tensor([1, 2])}
    return [target | ({"masks": masks} if with_masks else {})]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("builder", sorted(DETECTORS))
def test_detector_trains_and_predicts(builder: str, backbone: str) -> None:
    torch.manual_seed(0)
    model = DETECTORS[builder](backbone, num_classes=3, **SMALL)
    model.train()
    losses = model([torch.rand(3, 64, 64)], _targets(with_masks=builder.startswith("mask")))
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) >= 2
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        (output,) = model([torch.rand(3, 64, 64)])
    assert {"boxes", "scores", "labels"} <= set(output)
    assert output["boxes"].shape[1:] == (4,)
    # The detector normalises with the backbone weights' own statistics.
    assert model.transform.image_mean == list(model.backbone.pretrained_cfg.mean)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("builder", sorted(SEGMENTERS))
def test_segmenter_trains_and_predicts(builder: str, backbone: str) -> None:
    kwargs = {} if builder == "sod_res2net" else {"num_classes": 4, "output_stride": 16}
    model = SEGMENTERS[builder](backbone, **kwargs)
    model.train()
    outputs = model(torch.rand(2, 3, 64, 64))
    channels = 1 if builder == "sod_res2net" else 4
    assert outputs["out"].shape == (2, channels, 64, 64)
    assert ("aux" in outputs) == (builder != "sod_res2net")
    outputs["out"].mean().backward()
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 48, 80))["out"].shape == (1, channels, 48, 80)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_stride_is_the_trunks_stride(output_stride: int) -> None:
    model = SEGMENTERS["deeplabv3_res2net"]("res2net50_v1b", num_classes=3, output_stride=output_stride)
    features = model.backbone(torch.rand(1, 3, 64, 64))
    assert features["out"].shape[-1] == 64 // output_stride
    assert features["aux"].shape[1] == 1024


def test_frozen_stages_get_no_gradients_and_keep_their_statistics() -> None:
    torch.manual_seed(0)
    model = DETECTORS["fasterrcnn_res2net_fpn"]("res2net50_v1b", num_classes=3, trainable_stages=2, norm="bn",
                                                **SMALL)
    trunk = model.backbone.body
    frozen = [trunk[name] for name in trunk.frozen_names]
    assert [name for name in trunk.frozen_names] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
    before = copy.deepcopy({k: v for k, v in trunk.state_dict().items()})
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    model.train()
    for _ in range(2):
        loss = sum(model([torch.rand(3, 64, 64)], _targets(with_masks=False)).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())
    after = trunk.state_dict()
    frozen_keys = [k for k in before if k.split(".")[0] in trunk.frozen_names]
    assert any("running_mean" in k for k in frozen_keys)
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys), "a frozen stage changed"
    trained = [k for k in before if k.startswith("layer4") and "running_mean" in k]
    assert any(not torch.equal(before[k], after[k]) for k in trained), "trainable BatchNorm did not update"


def test_frozen_norm_is_built_in_and_keeps_outputs(tmp_path: Path) -> None:
    """norm="frozen" builds the trunk with norm_layer=FrozenBatchNorm2d (no module-tree rewrite), and a
    BatchNorm checkpoint (counters included) loads into it with the same outputs."""
    plain = res2net_backbone("res2net50", trainable_stages=5, norm="bn").eval()
    with torch.no_grad():  # non-trivial statistics, so loading them is tested
        for module in plain.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "plain.pth"
    torch.save(plain.state_dict(), path)
    frozen = res2net_backbone("res2net50", weights=path, trainable_stages=5, norm="frozen").eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = plain.forward_features(x)
        torch.testing.assert_close(frozen.forward_features(x), expected, rtol=1e-4, atol=1e-5)
    from res2net.detection import freeze_batch_norm

    rewritten = copy.deepcopy(plain)
    with pytest.deprecated_call():  # the old after-the-build rewrite still works, with a warning
        freeze_batch_norm(rewritten)
    with torch.no_grad():
        torch.testing.assert_close(rewritten.forward_features(x), expected, rtol=1e-4, atol=1e-5)


def test_backbone_weights_from_a_file_and_unknown_weights(tmp_path: Path) -> None:
    source = res2net_backbone("res2net50_v1b", trainable_stages=5, norm="bn")
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    loaded = res2net_backbone("res2net50_v1b", weights=path, trainable_stages=5, norm="bn")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UserError, match="neither a file nor a weight tag"):
        res2net_backbone("res2net50_v1b", weights="imagenet22k")
    with pytest.raises(UserError, match="trainable_stages"):
        res2net_backbone("res2net50_v1b", trainable_stages=6)
    with pytest.raises(UserError, match="ResNet-style"):
        res2net_backbone("res2net_dla60", dcn_stages=(False, True, True, True))


def test_dla_backbone_works_in_a_detector() -> None:
    model = DETECTORS["fasterrcnn_res2net_fpn"]("res2net_dla60", num_classes=3, **SMALL).eval()
    with torch.no_grad():
        (output,) = model([torch.rand(3, 64, 64)])
    assert output["boxes"].shape[1:] == (4,)


def test_demo_data_layout_and_masks(detection_dir: Path) -> None:
    marker = json.loads((detection_dir / ".res2net-digits-detection.json").read_text())
    assert marker["counts"]["train"]["objects"] == 1437 and marker["counts"]["val"]["objects"] == 360
    again = write_detection_dataset(detection_dir, spec=CanvasSpec(canvas_size=64, min_digit_size=12,
                                                                   max_digit_size=24))
    assert again["written"] is False
    dataset = CocoDenseDataset(detection_dir, "val")
    assert dataset.num_classes == 11 and [c.name for c in dataset.categories] == [str(d) for d in range(10)]
    per_image = [len(dataset.coco.getAnnIds(imgIds=i)) for i in dataset.image_ids]
    assert min(per_image) >= 1 and max(per_image) <= 5 and sum(per_image) / len(per_image) > 2.5
    touching = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (3, 64, 64)
        # Boxes are the masks' extents; the semantic PNG is the instances painted in order.
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert torch.equal(target["semantic"], paint_semantic(target["masks"], target["labels"]))
        boxes = target["boxes"]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                gap_x = max(boxes[i, 0], boxes[j, 0]) - min(boxes[i, 2], boxes[j, 2])
                gap_y = max(boxes[i, 1], boxes[j, 1]) - min(boxes[i, 3], boxes[j, 3])
                touching += bool(gap_x <= 0 and gap_y <= 0)
    assert touching > 0, "no two digits touch anywhere"


def test_train_and_val_canvases_use_disjoint_digits(detection_dir: Path) -> None:
    used = {}
    for split in ("train", "val"):
        coco = json.loads((detection_dir / "annotations" / f"instances_{split}.json").read_text())
        used[split] = {a["digit_index"] for a in coco["annotations"]}
    assert not used["train"] & used["val"] and len(used["train"]) + len(used["val"]) == 1797


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_demo_annotations_read_back_by_the_coco_evaluator(detection_dir: Path, backend: str) -> None:
    path = detection_dir / "annotations" / "instances_val.json"
    coco = json.loads(path.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
                "segmentation": a["segmentation"]} for a in coco["annotations"]]
    assert coco_evaluate(path, perfect, "bbox", backend=backend)["map"] == pytest.approx(1.0)  # type: ignore[arg-type]
    assert coco_evaluate(path, perfect, "segm", backend=backend)["map"] == pytest.approx(1.0)  # type: ignore[arg-type]
    wrong_class = [r | {"category_id": r["category_id"] % 10 + 1} for r in perfect]
    assert coco_evaluate(path, wrong_class, "bbox", backend=backend)["map"] == 0.0  # type: ignore[arg-type]
    shifted = [r | {"bbox": [r["bbox"][0] + r["bbox"][2] * 0.3, *r["bbox"][1:]]} for r in perfect[::2]]
    partial = coco_evaluate(path, shifted, "bbox", backend=backend)  # type: ignore[arg-type]
    assert 0.0 < partial["map"] < partial["map_50"] <= 0.6


def test_both_coco_evaluators_agree(detection_dir: Path) -> None:
    path = detection_dir / "annotations" / "instances_val.json"
    coco = json.loads(path.read_text())
    generator = torch.Generator().manual_seed(0)
    results = []
    for a in coco["annotations"]:
        jitter = (torch.rand(4, generator=generator) - 0.5) * 0.4
        x, y, w, h = a["bbox"]
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(jitter[0] + 0.5),
                        "bbox": [x + w * float(jitter[1]), y + h * float(jitter[2]), w * (1 + float(jitter[3])), h]})
    fast = coco_evaluate(path, results, "bbox", backend="faster_coco_eval")
    reference = coco_evaluate(path, results, "bbox", backend="pycocotools")
    assert 0.1 < reference["map"] < 0.9
    for name, value in reference.items():
        assert fast[name] == pytest.approx(value, abs=1e-6), name


def test_segmentation_metrics() -> None:
    confusion = SegmentationMetrics(3)
    confusion.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]]))
    results = confusion.results()
    assert results["iou"] == [1.0, 0.5, 0.0] and results["miou"] == pytest.approx(0.5)
    saliency = SaliencyMetrics()
    truth = torch.zeros(2, 16, 16)
    truth[:, 4:12, 4:12] = 1
    saliency.update(truth.clone(), truth)
    perfect = saliency.results()
    assert perfect["mae"] == 0.0 and perfect["max_f"] == pytest.approx(1.0, abs=1e-3)
    worse = SaliencyMetrics()
    worse.update(torch.full((2, 16, 16), 0.5), truth)
    assert worse.results()["mae"] == pytest.approx(0.5, abs=0.01) and worse.results()["max_f"] < perfect["max_f"]


def test_recipe_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="did you mean 'anchor_sizes'"):
        load_detection_config(["--anchor_size", "1"])
    with pytest.raises(ConfigError, match="does not apply to deeplabv3_res2net"):
        load_detection_config(["--model", "deeplabv3_res2net", "--min_size", "64"])
    with pytest.raises(ConfigError, match="one size per pyramid level"):
        load_detection_config(["--anchor_sizes", "16", "32"])
    with pytest.raises(ConfigError, match="expects one of frozen, bn, sync"):
        DetectionConfig.from_dict({"norm": "group"})
    with pytest.raises(ConfigError, match="samples no RoIs"):
        load_detection_config(["--model", "retinanet_res2net_fpn", "--box_batch_size_per_image", "64"])


RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs" / "detection").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_shipped_recipes_read_and_round_trip(recipe: Path) -> None:
    cfg = load_detection_config(["-c", str(recipe)])
    assert cfg.num_classes == 11 and cfg.backbone == "res2net50_v1b"
    assert DetectionConfig.from_dict(cfg.to_dict()) == cfg


def test_saved_configs_of_every_model_read_back() -> None:
    for model in ("fasterrcnn_res2net_fpn", "retinanet_res2net_fpn", "maskrcnn_res2net_fpn", "deeplabv3_res2net",
                  "fcn_res2net", "sod_res2net"):
        cfg = load_detection_config(["--model", model])
        assert DetectionConfig.from_dict(cfg.to_dict()) == cfg


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("res2net")), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_num_classes_must_fit_the_dataset(tiny_detection_dir: Path, tmp_path: Path) -> None:
    from res2net.detection.engine import train_dense

    cfg = load_detection_config(["--data_dir", str(tiny_detection_dir), "--num_classes", "5",
                                 "--ckpt_save_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="10 categories plus the background make 11"):
        train_dense(cfg)


@pytest.mark.slow
def test_train_resume_evaluate_predict(tiny_detection_dir: Path, tmp_path: Path,
                                       subprocess_env: dict[str, str]) -> None:
    from res2net.detection.checkpoint import read_dense_checkpoint
    from res2net.detection.engine import train_dense

    common = ["--data_dir", str(tiny_detection_dir), "--backbone", "res2net50", "--batch_size", "4",
              "--num_parallel_workers", "0", "--min_size", "64", "--max_size", "64",
              "--anchor_sizes", "8", "16", "32", "64", "128", "--box_batch_size_per_image", "32",
              "--lr", "0.01", "--scheduler", "constant", "--log_interval", "1"]
    straight = train_dense(load_detection_config([*common, "--epoch_size", "2", "--ckpt_save_dir",
                                                  str(tmp_path / "straight")]))
    assert set(straight.metrics) >= {"bbox_map", "bbox_map_50", "loss", "loss_classifier"}
    first = train_dense(load_detection_config([*common, "--epoch_size", "1", "--ckpt_save_dir",
                                               str(tmp_path / "split")]))
    assert first.epochs == 1
    resumed = train_dense(load_detection_config([*common, "--epoch_size", "2", "--ckpt_save_dir",
                                                 str(tmp_path / "split"), "--resume", "auto"]))
    a = read_dense_checkpoint(straight.checkpoint).model  # type: ignore[arg-type]
    b = read_dense_checkpoint(resumed.checkpoint).model  # type: ignore[arg-type]
    assert resumed.epochs == 2 and all(torch.equal(a[k], b[k]) for k in a), "resume changed the run"
    saved = yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())
    assert DetectionConfig.from_dict(saved).to_dict() == saved  # the run folder's recipe reads back
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    last = tmp_path / "straight" / "last.pth"
    evaluated = _run_cli(["evaluate-detection", str(last), "--json"], subprocess_env)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert scores["bbox_map"] == pytest.approx(straight.metrics["bbox_map"], abs=1e-6)
    drawn = _run_cli(["predict-detection", str(last), str(tiny_detection_dir / "val"), "--output",
                      str(tmp_path / "drawings"), "--score-threshold", "0.0", "--json"], subprocess_env)
    assert drawn.returncode == 0, drawn.stderr
    assert len(list((tmp_path / "drawings").glob("*.png"))) == 4
    broken = tmp_path / "broken.pth"
    broken.write_bytes(last.read_bytes()[:1000])
    failed = _run_cli(["evaluate-detection", str(broken)], subprocess_env)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr and failed.stderr.startswith("error:")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deeplabv3_res2net", "sod_res2net"])
def test_segmentation_runs_end_to_end(model: str, tiny_detection_dir: Path, tmp_path: Path) -> None:
    from res2net.detection.engine import train_dense

    args = ["--model", model, "--data_dir", str(tiny_detection_dir), "--backbone", "res2net50_v1b",
            "--batch_size", "4", "--num_parallel_workers", "0", "--epoch_size", "1", "--trainable_stages", "5",
            "--norm", "bn", "--lr", "0.01", "--scheduler", "constant", "--ckpt_save_dir", str(tmp_path)]
    if model == "deeplabv3_res2net":
        args += ["--output_stride", "16"]
    result = train_dense(load_detection_config(args))
    if model == "deeplabv3_res2net":
        assert 0.0 <= result.metrics["miou"] <= 1.0 and result.metrics["pixel_accuracy"] > 0.5
    else:
        assert 0.0 <= result.metrics["mae"] <= 1.0 and 0.0 <= result.metrics["max_f"] <= 1.0
    assert (tmp_path / "last.pth").is_file()


def test_demo_data_command(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    done = _run_cli(["demo-data", "--task", "detection", str(tmp_path), "--image-size", "48"], subprocess_env)
    assert done.returncode == 0, done.stderr
    assert "/ 1437 digits" in done.stdout and "/ 360 digits" in done.stdout
    info = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())["images"][0]
    assert (info["width"], info["height"]) == (48, 48)


@pytest.mark.slow
def test_torchrun_two_gloo_workers_train_a_detector(tiny_detection_dir: Path, tmp_path: Path,
                                                    subprocess_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
               "--no-python", str(Path(sys.executable).with_name("res2net")), "train-detection",
               "--data_dir", str(tiny_detection_dir), "--backbone", "res2net50", "--batch_size", "2",
               "--num_parallel_workers", "0", "--min_size", "64", "--max_size", "64", "--anchor_sizes", "8", "16",
               "32", "64", "128", "--box_batch_size_per_image", "32", "--epoch_size", "1", "--scheduler",
               "constant", "--lr", "0.01", "--distribute", "True", "--device", "cpu", "--norm", "sync",
               "--ckpt_save_dir", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 process(es) on cpu" in completed.stdout
    assert completed.stdout.count("note: norm 'sync'") == 1  # rank 0 speaks for the run
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 2  # each rank: 4 of the 8 images, batch 2
    assert "bbox_map" in rows[0]
