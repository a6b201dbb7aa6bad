"""Region decoding (libjpeg-turbo 3's cropping region) gives exactly the full decode's pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode

from res2net.data import jpeg_region
from res2net.data.decode import EncodedImage, decode_crop, decode_rgb
from res2net.data.transforms import RandomResizedCropDecode

pytestmark = pytest.mark.skipif(not jpeg_region.available(), reason="no libturbojpeg 3 (the fastjpeg extra)")


def jpeg(width: int, height: int, *, subsampling: int = 2, mode: str = "RGB", progressive: bool = False) -> bytes:
    """A noisy photo-like JPEG: sharp enough that a wrong chroma neighbour changes pixels."""
    rng = np.random.default_rng(width * 7 + height)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x - y) / 9)], -1)
    pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    image = Image.fromarray(pixels).convert(mode)
    image.save(buffer, "JPEG", quality=90, subsampling=subsampling, progressive=progressive)
    return buffer.getvalue()


def random_boxes(width: int, height: int, count: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    boxes = [(0, 0, height, width), (height - 1, width - 1, 1, 1)]
    for _ in range(count):
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        boxes.append((int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w))
    return boxes


@pytest.mark.parametrize(
    "subsampling, mode, progressive",
    [(0, "RGB", False), (1, "RGB", False), (2, "RGB", False), (2, "RGB", True), (2, "L", False)],
    ids=["444", "422", "420", "420-progressive", "grey"],
)
@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_region_equals_the_full_decode_sliced(subsampling: int, mode: str, progressive: bool, reduce: int) -> None:
    data = jpeg(203, 157, subsampling=subsampling, mode=mode, progressive=progressive)
    image = EncodedImage(Path("x.jpg"), data)
    full, _ = decode_rgb(image, reduce)
    height, width = full.shape[1:]
    for top, left, h, w in random_boxes(width, height, 40, seed=reduce * 10 + subsampling):
        region = jpeg_region.decode_region(data, (top, left, h, w), reduce)
        assert region is not None
        expected = full[:, top : top + h, left : left + w].permute(1, 2, 0).numpy()
        assert np.array_equal(region, expected), (top, left, h, w)


def test_decode_crop_maps_original_coordinates_like_the_whole_image_path(monkeypatch: pytest.MonkeyPatch) -> None:
    image = EncodedImage(Path("x.jpg"), jpeg(640, 480))
    boxes = random_boxes(640, 480, 30, seed=1)
    regions = [decode_crop(image, box, reduce) for box in boxes for reduce in (1, 2, 4)]
    monkeypatch.setattr(jpeg_region, "available", lambda: False)
    whole = [decode_crop(image, box, reduce) for box in boxes for reduce in (1, 2, 4)]
    for region, sliced in zip(regions, whole):
        assert torch.equal(region, sliced)


def test_random_resized_crop_output_unchanged_by_region_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    crop = RandomResizedCropDecode(64, scale=(0.08, 1.0), ratio=(0.75, 1.333), interpolation=InterpolationMode.BILINEAR)
    images = [EncodedImage(Path("x.jpg"), jpeg(300 + k, 220 - k, subsampling=k % 3)) for k in range(6)]

    def outputs() -> list[torch.Tensor]:
        torch.manual_seed(0)
        return [crop(image) for image in images for _ in range(5)]

    with_regions = outputs()
    monkeypatch.setattr(jpeg_region, "available", lambda: False)
    for ours, reference in zip(with_regions, outputs()):
        assert torch.equal(ours, reference)


def test_broken_jpeg_falls_back_to_the_whole_image_decoder_error() -> None:
    data = jpeg(120, 90)
    assert jpeg_region.decode_region(data[: len(data) // 2], (0, 0, 80, 100)) is None
    assert jpeg_region.decode_region(b"\xff\xd8not a jpeg", (0, 0, 1, 1)) is None
    with pytest.raises(ValueError, match="outside"):
        jpeg_region.decode_region(data, (10, 0, 90, 10))


def test_library_search_order_and_rejections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = jpeg_region._library()._name
    without_the_api = jpeg_region.ctypes.util.find_library("c")  # loads, lacks tj3SetCroppingRegion
    monkeypatch.setattr(jpeg_region.importlib.metadata, "files", lambda name: [])
    monkeypatch.setattr(jpeg_region.ctypes.util, "find_library", lambda name: None)
    not_a_library = tmp_path / "libturbojpeg.so"
    not_a_library.write_bytes(b"not an ELF file")
    try:
        cases = [(str(not_a_library), False), ("/nonexistent/libturbojpeg.so", False), (bundled, True)]
        for path, found in cases + ([(without_the_api, False)] if without_the_api else []):
            monkeypatch.setenv("RES2NET_TURBOJPEG", path)
            jpeg_region._library.cache_clear()
            assert jpeg_region.available() is found, path
        monkeypatch.delenv("RES2NET_TURBOJPEG")
        jpeg_region._library.cache_clear()
        assert not jpeg_region.available()
        assert jpeg_region.decode_region(jpeg(32, 32), (0, 0, 8, 8)) is None
    finally:
        monkeypatch.undo()
        jpeg_region._library.cache_clear()
    assert jpeg_region.available()


def test_each_threads_decompressor_is_destroyed_when_the_thread_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import threading

    lib = jpeg_region._library()
    assert lib is not None
    destroyed: list[int] = []
    original = lib.tj3Destroy
    monkeypatch.setattr(lib, "tj3Destroy", lambda handle: (destroyed.append(handle), original(handle))[1])
    data = jpeg(64, 48)
    handles: list[int | None] = []

    def decode() -> None:
        assert jpeg_region.decode_region(data, (0, 0, 16, 16)) is not None
        handles.append(jpeg_region._local.decompressor.handle)  # type: ignore[union-attr]

    for _ in range(3):
        worker = threading.Thread(target=decode)
        worker.start()
        worker.join()
    gc.collect()
    assert len(destroyed) == 3 and destroyed == handles
