"""Data package: demo dataset, folder errors, corrupt images, prepare-imagenet, CLI parsers."""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from res2net.cli.data import add_demo_data_parser, add_prepare_imagenet_parser
from res2net.data import (
    CorruptImageWarning,
    ImageFolderDataset,
    build_eval_loader,
    build_eval_transform,
    build_loader,
    check_same_classes,
    prepare_imagenet_val,
    set_epoch,
    write_digits_dataset,
)
from res2net.errors import DataError


def jpeg_bytes(size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def make_folder(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """``layout[split][class] = number of images`` -> an ImageNet-style tree of small JPEGs."""
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i:03d}.jpg").write_bytes(jpeg_bytes(seed=hash((split, name, i)) % 1000))
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("digits")
    return root, write_digits_dataset(root, image_size=16)


# ---- demo dataset ---------------------------------------------------------------------------


def test_digits_counts_classes_and_format(digits: tuple[Path, dict]) -> None:
    root, counts = digits
    assert counts == {"num_classes": 10, "train": 1437, "val": 360, "written": True}
    for split, expected in (("train", 1437), ("val", 360)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == [str(d) for d in range(10)]
        assert sum(1 for _ in (root / split).glob("*/*.jpg")) == expected
    # Stratified: every class keeps close to 20 % of its images in val.
    for d in range(10):
        n_val = len(list((root / "val" / str(d)).glob("*.jpg")))
        n_train = len(list((root / "train" / str(d)).glob("*.jpg")))
        assert abs(n_val / (n_val + n_train) - 0.2) < 0.02
    image = Image.open(next((root / "val" / "3").glob("*.jpg")))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (16, 16))


def test_digits_idempotent_and_split_stable(digits: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = digits
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/*/*.jpg")}
    assert write_digits_dataset(root, image_size=16)["written"] is False
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/*/*.jpg")} == before

    again = write_digits_dataset(tmp_path / "again", image_size=8)
    assert again["written"] is True
    names = lambda r: sorted(p.relative_to(r).as_posix() for p in r.glob("*/*/*.jpg"))  # noqa: E731
    assert names(tmp_path / "again") == names(root)
    other_seed = write_digits_dataset(tmp_path / "seed1", image_size=8, seed=1)
    assert other_seed["val"] == 360 and names(tmp_path / "seed1") != names(root)


def test_digits_rewrites_incomplete_folder(tmp_path: Path) -> None:
    write_digits_dataset(tmp_path, image_size=8)
    next((tmp_path / "train" / "0").glob("*.jpg")).unlink()
    assert write_digits_dataset(tmp_path, image_size=8)["written"] is True
    assert sum(1 for _ in tmp_path.glob("train/*/*.jpg")) == 1437


def test_demo_data_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_demo_data_parser(parser.add_subparsers())
    args = parser.parse_args(["demo-data", str(tmp_path), "--image-size", "8"])
    assert args.handler(args) == 0
    assert "1437 train / 360 val images, 10 classes" in capsys.readouterr().out


def test_digits_are_learnable_images(digits: tuple[Path, dict]) -> None:
    """The JPEGs still look like the digits: class means differ far more than noise."""
    root, _ = digits
    ds = ImageFolderDataset(root, "train")
    means = torch.stack(
        [torch.stack([ds[i][0].float() for i in range(len(ds)) if ds.targets[i] == c]).mean(0) for c in (0, 1)]
    )
    assert (means[0] - means[1]).abs().mean() > 20


# ---- folder layout errors -------------------------------------------------------------------


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data_dir .*nope does not exist"):
        ImageFolderDataset(tmp_path / "nope", "train")


def test_missing_split_lists_existing(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": {"a": 1}, "validation": {"a": 1}})
    with pytest.raises(DataError, match=r"split folder .*val not found \(folders in .*: train, validation\)"):
        ImageFolderDataset(tmp_path, "val")


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "loose.jpg").write_bytes(jpeg_bytes())
    with pytest.raises(DataError, match="no class folders in .*train"):
        ImageFolderDataset(tmp_path, "train")


def test_empty_class_folders_named(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": {"cat": 2, "dog": 0, "eel": 0}})
    (tmp_path / "train" / "eel" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"2 class folder\(s\) in .*train contain no images \(dog, eel\)"):
        ImageFolderDataset(tmp_path, "train")


def test_class_mismatch(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": {"cat": 1, "dog": 1, "emu": 1}, "val": {"cat": 1, "dog": 1, "fox": 1}})
    train, val = ImageFolderDataset(tmp_path, "train"), ImageFolderDataset(tmp_path, "val")
    with pytest.raises(DataError, match=r"class folders differ .*1 only in train \(emu\), 1 only in val \(fox\)"):
        check_same_classes(train, val)
    check_same_classes(train, ImageFolderDataset(tmp_path, "train"))


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": {"cat": 0, "dog": 1}})
    with pytest.raises(DataError) as info:
        ImageFolderDataset(tmp_path, "train")
    assert "\n" not in str(info.value)


def test_num_samples_subset_deterministic(tmp_path: Path) -> None:
    make_folder(tmp_path, {"train": {"a": 6, "b": 6}})
    first = ImageFolderDataset(tmp_path, "train", num_samples=5)
    second = ImageFolderDataset(tmp_path, "train", num_samples=5)
    assert len(first) == 5 and first.samples == second.samples
    assert first.samples == sorted(first.samples)
    assert ImageFolderDataset(tmp_path, "train", num_samples=5, subset_seed=1).samples != first.samples
    assert len(ImageFolderDataset(tmp_path, "train", num_samples=100)) == 12
    with pytest.raises(DataError, match="num_samples must be positive"):
        ImageFolderDataset(tmp_path, "train", num_samples=0)


# ---- corrupt images ---------------------------------------------------------------------------


@pytest.fixture
def corrupt_folder(tmp_path: Path) -> Path:
    make_folder(tmp_path, {"train": {"a": 5, "b": 5}})
    (tmp_path / "train" / "a" / "zz_garbage.jpg").write_bytes(b"this is not a jpeg at all")
    good = jpeg_bytes((64, 48))
    (tmp_path / "train" / "b" / "zz_truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "train" / "b" / "zz_empty.png").write_bytes(b"")
    return tmp_path


def test_corrupt_images_warn_by_name_and_count(corrupt_folder: Path) -> None:
    transform = build_eval_transform(image_size=16, crop_pct=1.0)
    ds = ImageFolderDataset(corrupt_folder, "train", transform=transform)
    assert len(ds) == 13
    bad = {i for i, (path, _) in enumerate(ds.samples) if path.name.startswith("zz_")}
    with pytest.warns(CorruptImageWarning) as record:
        results = [ds[i] for i in range(len(ds))]
    assert {i for i, r in enumerate(results) if r is None} == bad
    messages = " ".join(str(w.message) for w in record)
    for name in ("zz_garbage.jpg", "zz_truncated.jpg", "zz_empty.png"):
        assert name in messages
    assert ds.skipped.value == 3
    assert ds.skipped.reset() == 3 and ds.skipped.value == 0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_images_dropped_from_batches_and_counted_across_workers(corrupt_folder: Path, num_workers: int) -> None:
    ds = ImageFolderDataset(corrupt_folder, "train", transform=build_eval_transform(image_size=16, crop_pct=1.0))
    loader = build_loader(
        ds, batch_size=4, shuffle=True, drop_last=False, num_workers=num_workers, distributed=False, seed=0,
        persistent_workers=True,
    )
    for epoch in range(2):
        set_epoch(loader, epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorruptImageWarning)
            seen = sum(len(batch[1]) for batch in loader if batch is not None)
        assert seen == 10
        assert ds.skipped.reset() == 3


def test_all_corrupt_batch_is_none(tmp_path: Path) -> None:
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a" / "x.jpg").write_bytes(b"\xff\xd8 broken")
    ds = ImageFolderDataset(tmp_path, "val", transform=build_eval_transform(image_size=8))
    loader = build_eval_loader(ds, batch_size=2, num_workers=0, distributed=False)
    with pytest.warns(CorruptImageWarning, match="x.jpg"):
        assert list(loader) == [None]


# ---- prepare-imagenet -------------------------------------------------------------------------


@pytest.fixture
def flat_val(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    flat = tmp_path / "flat"
    flat.mkdir()
    labels = [3, 1, 2, 3, 1, 1]
    for i in range(len(labels)):
        (flat / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(jpeg_bytes(seed=i))
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("".join(f"{label}\n" for label in labels))
    # Devkit order is deliberately not sorted, as in the real meta.mat.
    return flat, truth, ["n0300", "n0100", "n0200"]


def test_prepare_imagenet_arranges_by_devkit_order(flat_val: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    flat, truth, synsets = flat_val
    out = tmp_path / "imagenet" / "val"
    counts = prepare_imagenet_val(flat, truth, out, synsets)
    assert counts == {"images": 6, "classes": 3, "linked": 6, "copied": 0, "present": 0}
    layout = {p.name: sorted(f.name[-13:-5] for f in p.iterdir()) for p in sorted(out.iterdir())}
    # label k -> synsets[k - 1]: 1 -> n0300, 2 -> n0100, 3 -> n0200
    assert layout == {
        "n0100": ["00000003"],
        "n0200": ["00000001", "00000004"],
        "n0300": ["00000002", "00000005", "00000006"],
    }
    target = out / "n0200" / "ILSVRC2012_val_00000001.JPEG"
    assert target.read_bytes() == (flat / target.name).read_bytes()
    assert prepare_imagenet_val(flat, truth, out, synsets)["present"] == 6
    ds = ImageFolderDataset(tmp_path / "imagenet", "val")
    assert ds.classes == ["n0100", "n0200", "n0300"] and len(ds) == 6


def test_prepare_imagenet_cli_with_text_synsets_and_copy(
    flat_val: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat, truth, synsets = flat_val
    synset_file = tmp_path / "synsets.txt"
    synset_file.write_text("".join(f"{s} some words, more words\n" for s in synsets))
    parser = argparse.ArgumentParser()
    add_prepare_imagenet_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["prepare-imagenet", str(flat), str(truth), str(synset_file), str(tmp_path / "out"), "--copy"]
    )
    assert args.handler(args) == 0
    assert "6 images in 3 classes (0 linked, 6 copied, 0 already there)" in capsys.readouterr().out
    assert (tmp_path / "out" / "n0300" / "ILSVRC2012_val_00000002.JPEG").stat().st_nlink == 1


def test_prepare_imagenet_reads_devkit_meta_mat(flat_val: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    flat, truth, synsets = flat_val
    # meta.mat lists leaf synsets (num_children == 0) by ILSVRC2012_ID plus internal nodes after them.
    rows = [(2, "n0100", 0), (1, "n0300", 0), (3, "n0200", 0), (4, "n9999", 2)]
    table = np.array(rows, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    scipy_io.savemat(tmp_path / "meta.mat", {"synsets": table})
    counts = prepare_imagenet_val(flat, truth, tmp_path / "out", tmp_path / "meta.mat")
    assert counts["images"] == 6
    assert sorted(p.name for p in (tmp_path / "out" / "n0200").iterdir()) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000004.JPEG",
    ]


def test_prepare_imagenet_errors(flat_val: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    flat, truth, synsets = flat_val
    with pytest.raises(DataError, match="has 6 images but .* has 5 labels"):
        short = tmp_path / "short.txt"
        short.write_text("1\n2\n3\n1\n2\n")
        prepare_imagenet_val(flat, short, tmp_path / "o", synsets)
    with pytest.raises(DataError, match=r":2: label 7 is outside 1..3"):
        bad = tmp_path / "bad.txt"
        bad.write_text("1\n7\n")
        prepare_imagenet_val(flat, bad, tmp_path / "o", synsets)
    with pytest.raises(DataError, match="validation folder .* does not exist"):
        prepare_imagenet_val(tmp_path / "missing", truth, tmp_path / "o", synsets)
    with pytest.raises(DataError, match="synset file .* not found"):
        prepare_imagenet_val(flat, truth, tmp_path / "o", tmp_path / "nope.txt")
