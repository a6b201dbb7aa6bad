"""mmdetection interop: its Res2Net checkpoints load into our backbone and ours write in its naming.

The fixtures were made by mmdetection 3.3.0's own ``Res2Net`` class
(``tests/fixtures/make_mmdet_fixtures.py``): the state-dict layout of depth 50 and 101, and the
stage outputs of depth 50 on weights that ``seeded_weights`` regenerates here from the names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from seeded_weights import seeded_state

import res2net
from res2net.checkpoint import read_checkpoint
from res2net.checkpoint.mmdet import from_mmdet, to_mmdet
from res2net.cli import main as cli_main
from res2net.convert import convert
from res2net.errors import CheckpointError
from res2net.models import build_model

FIXTURES = Path(__file__).parent / "fixtures" / "mmdet"
LAYOUTS = json.loads((FIXTURES / "layouts.json").read_text())


def mmdet_detector_file(path: Path) -> Path:
    """An mmdetection detector checkpoint around the seeded depth-50 backbone: its wrapper,
    the ``backbone.`` prefix, and neck / head entries our backbone must leave out."""
    backbone = seeded_state(LAYOUTS["res2net50"])
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    state["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 256, 1, 1)
    state["rpn_head.rpn_conv.weight"] = torch.zeros(256, 256, 3, 3)
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state, "optimizer": {}}, path)
    return path


def test_mmdet_detector_checkpoint_gives_mmdet_outputs(tmp_path: Path) -> None:
    reference = torch.load(FIXTURES / "res2net50_io.pt")
    path = mmdet_detector_file(tmp_path / "faster_rcnn_r2_101_fpn.pth")
    backbone = res2net.create_model("res2net50_v1b", checkpoint_path=path, features_only=True).eval()
    with torch.no_grad():
        ours = backbone(reference["input"])
    assert len(ours) == len(reference["outputs"]) == 4
    for stage, (mine, theirs) in enumerate(zip(ours, reference["outputs"])):
        assert mine.shape == theirs.shape, stage
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))


def test_mmdet_first_block_pooling_is_what_makes_the_outputs_equal(tmp_path: Path) -> None:
    """The paper's code pools layer1's first block at stride 1; mmdetection does not. Loading
    an mmdetection file chooses its pooling; forcing the paper's changes the first stage."""
    reference = torch.load(FIXTURES / "res2net50_io.pt")
    path = mmdet_detector_file(tmp_path / "det.pth")
    forced = res2net.create_model("res2net50_v1b", checkpoint_path=path, features_only=True,
                                  pool_unstrided=True).eval()
    with torch.no_grad():
        first = forced(reference["input"])[0]
    assert not torch.allclose(first, reference["outputs"][0], rtol=1e-3, atol=1e-3)


def test_mmdet_file_into_a_classifier_gets_a_fresh_head(tmp_path: Path) -> None:
    path = mmdet_detector_file(tmp_path / "det.pth")
    headless = res2net.create_model("res2net50_v1b", checkpoint_path=path)
    assert headless.num_classes == 0
    with pytest.warns(UserWarning, match="has no classifier"):
        classifier = res2net.create_model("res2net50_v1b", checkpoint_path=path, num_classes=7)
    assert classifier.fc.out_features == 7
    expected = from_mmdet(read_checkpoint(path).state)
    for name, tensor in classifier.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, expected[name]), name


@pytest.mark.parametrize("name,depth", [("res2net50_v1b", 50), ("res2net101_v1b", 101)])
def test_written_names_and_shapes_are_mmdets(name: str, depth: int) -> None:
    ours = build_model(name, num_classes=10).state_dict()
    written = {k: list(v.shape) for k, v in to_mmdet(ours).items()}
    assert written == LAYOUTS[f"res2net{depth}"]
    assert {k: list(v.shape) for k, v in to_mmdet(ours, prefix="backbone.").items()} == {
        f"backbone.{k}": v for k, v in LAYOUTS[f"res2net{depth}"].items()}


def test_convert_to_mmdet_round_trips(tmp_path: Path) -> None:
    model = build_model("res2net50_v1b", num_classes=10)
    src = tmp_path / "ours.pth"
    torch.save(model.state_dict(), src)
    dst = tmp_path / "mmdet_backbone.pth"
    assert convert(src, dst, "res2net50_v1b", to="mmdet") == 0
    saved = torch.load(dst)
    assert set(saved) == {"meta", "state_dict"}
    assert saved["meta"]["res2net_model"] == "res2net50_v1b"
    assert set(saved["state_dict"]) == set(LAYOUTS["res2net50"])
    back = res2net.create_model("res2net50_v1b", checkpoint_path=dst)
    for key, tensor in back.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[key]), key


def test_only_v1b_models_have_an_mmdet_naming(tmp_path: Path) -> None:
    src = tmp_path / "plain.pth"
    torch.save(build_model("res2net50", num_classes=10).state_dict(), src)
    with pytest.raises(CheckpointError, match="v1b layout"):
        convert(src, tmp_path / "out.pth", "res2net50", to="mmdet")
    assert not (tmp_path / "out.pth").exists()


def test_convert_cli_to_mmdet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ours.pth"
    torch.save(build_model("res2net50_v1b", num_classes=10).state_dict(), src)
    assert cli_main(["convert", str(src), str(tmp_path / "b.pth"), "--model", "res2net50_v1b",
                             "--to", "mmdet"]) == 0
    assert "mmdetection's naming" in capsys.readouterr().out
    plain = tmp_path / "plain.pth"
    torch.save(build_model("res2net50", num_classes=10).state_dict(), plain)
    assert cli_main(["convert", str(plain), str(tmp_path / "c.pth"), "--model", "res2net50",
                             "--to", "mmdet"]) != 0
    assert "v1b layout" in capsys.readouterr().err
