"""Data pipeline: transforms, auto-augment parsing, colour jitter, mixup/cutmix, samplers, loaders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from res2net.data import (
    EncodedImage,
    EvalShardSampler,
    ImageFolderDataset,
    MixupCutmix,
    TrainSampler,
    build_eval_loader,
    build_eval_transform,
    build_loader,
    build_train_transform,
    normalize_stats,
    parse_auto_augment,
    set_epoch,
)
from res2net.data.autoaugment import NoisyRandAugment
from res2net.data.color import FloatColorJitter
from res2net.data.decode import ImageDecodeError, _jpeg_frame, decode_rgb, draft_factor
from res2net.data.transforms import RandomErasing, ToNormalizedFloat

MINDCV_MEAN = (123.675, 116.28, 103.53)
MINDCV_STD = (58.395, 57.12, 57.375)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients + noise: JPEG-friendly like a photo, varied enough to catch misplaced crops."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 37)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def encoded(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> EncodedImage:
    buffer = io.BytesIO()
    Image.fromarray(photo(width, height, seed)).save(buffer, fmt, quality=95)
    return EncodedImage(Path(f"img{seed}.{fmt.lower()}"), buffer.getvalue())


# ---- decoding and transforms ---------------------------------------------------------------


def test_header_size_matches_pillow_for_baseline_and_progressive() -> None:
    for progressive in (False, True):
        buffer = io.BytesIO()
        Image.fromarray(photo(123, 77)).save(buffer, "JPEG", progressive=progressive, exif=b"Exif\x00\x00" + b"x" * 64)
        assert _jpeg_frame(buffer.getvalue()) == (123, 77, 3)
    buffer = io.BytesIO()
    Image.fromarray(photo(31, 17)[..., 0]).save(buffer, "JPEG")
    assert _jpeg_frame(buffer.getvalue()) == (31, 17, 1)
    assert encoded(50, 20, fmt="PNG").size() == (50, 20)


def _pillow_decode(data: bytes, reduce: int) -> torch.Tensor:
    img = Image.open(io.BytesIO(data))
    if reduce > 1:
        img.draft("RGB", (img.size[0] // reduce, img.size[1] // reduce))
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0
@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_jpeg_decode_gives_pillows_pixels_at_every_draft_scale(subsampling: int, reduce: int) -> None:
    """The fast decoder must not change what the pipeline sees: Pillow is what timm and torchvision use."""
    buffer = io.BytesIO()
    Image.fromarray(photo(501, 375)).save(buffer, "JPEG", quality=90, subsampling=subsampling)
    image = EncodedImage(Path("photo.jpg"), buffer.getvalue())
    pixels, scale = decode_rgb(image, reduce)
    assert torch.equal(pixels, _pillow_decode(image.data, reduce))
    assert scale == pixels.shape[2] / 501 and pixels.shape[1:] == (-(-375 // reduce), -(-501 // reduce))


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_decode_to_pillows_rgb(mode: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo(64, 48)).convert(mode).save(buffer, "JPEG", quality=95)
    pixels, _ = decode_rgb(EncodedImage(Path(f"{mode}.jpg"), buffer.getvalue()))
    assert pixels.shape == (3, 48, 64) and torch.equal(pixels, _pillow_decode(buffer.getvalue(), 1))


def test_truncated_jpeg_is_a_decode_error() -> None:
    data = encoded(200, 150).data
    with pytest.raises(ImageDecodeError, match="corrupt or truncated JPEG"):
        decode_rgb(EncodedImage(Path("cut.jpg"), data[: len(data) // 2]))


def test_draft_factor_never_upsamples() -> None:
    assert draft_factor((2000, 1500), (224, 224)) == 4
    assert draft_factor((2000, 1500), (250, 190)) == 4
    assert draft_factor((2000, 1500), (1001, 100)) == 1
    assert draft_factor((500, 375), (256, 256)) == 1


def test_reduced_decode_matches_full_decode_closely() -> None:
    image = encoded(1600, 1200)
    full, scale_full = decode_rgb(image)
    reduced, scale = decode_rgb(image, reduce=4)
    assert scale_full == 1.0 and scale == 0.25 and reduced.shape == (3, 300, 400)
    downscaled = v2.functional.resize(full, [300, 400], antialias=True)
    assert (reduced.float() - downscaled.float()).abs().mean() < 3


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (1600, 1200), (60, 40)])
def test_train_transform_shapes_and_dtype(size: tuple[int, int]) -> None:
    transform = build_train_transform(image_size=64, color_jitter=0.4, re_prob=0.5, vflip=0.5)
    for seed in range(4):
        out = transform(encoded(*size, seed=seed))
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and out.is_contiguous()
        assert out.abs().max() < 3  # normalised values


def test_eval_transform_matches_resize_then_center_crop_reference() -> None:
    image = encoded(400, 300, fmt="PNG")  # lossless, so the reference sees the same pixels
    out = build_eval_transform(image_size=112, crop_pct=0.875)(image)
    pixels = torch.from_numpy(photo(400, 300)).permute(2, 0, 1)
    reference = v2.functional.center_crop(v2.functional.resize(pixels, [128], antialias=True), [112, 112])
    mean, std = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    assert out.shape == (3, 112, 112)
    assert torch.allclose(out, (reference.float() / 255 - mean) / std, atol=1e-5)


def test_eval_transform_reduced_decode_keeps_geometry() -> None:
    big = encoded(2400, 1800)
    out = build_eval_transform(image_size=64, crop_pct=0.875)(big)
    full = build_eval_transform(image_size=64, crop_pct=0.875)(decode_rgb(big)[0])
    assert out.shape == full.shape == (3, 64, 64)
    assert (out - full).abs().mean() < 0.05


def test_transforms_accept_decoded_inputs() -> None:
    pixels = torch.from_numpy(photo(80, 60)).permute(2, 0, 1).contiguous()
    assert build_train_transform(image_size=32)(pixels).shape == (3, 32, 32)
    assert build_eval_transform(image_size=32)(Image.fromarray(photo(80, 60))).shape == (3, 32, 32)
    assert build_eval_transform(image_size=32)(pixels[:1]).shape == (3, 32, 32)


def test_mindcv_0_255_stats_equal_0_1_stats() -> None:
    mean, std = normalize_stats(MINDCV_MEAN, MINDCV_STD)
    assert np.allclose(mean, (0.485, 0.456, 0.406)) and np.allclose(std, (0.229, 0.224, 0.225))
    assert normalize_stats((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)) == ((0.5,) * 3, (0.25,) * 3)
    image = encoded(120, 90)
    a = build_eval_transform(image_size=48, mean=MINDCV_MEAN, std=MINDCV_STD)(image)
    b = build_eval_transform(image_size=48)(image)
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="looks 0-255 scaled but std"):
        normalize_stats(MINDCV_MEAN, (0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="need 3 values"):
        normalize_stats((0.5,), (0.5,))


def test_train_transform_is_reproducible_under_torch_seed() -> None:
    transform = build_train_transform(image_size=48, color_jitter=0.4, auto_augment="randaug-m9-mstd0.5", re_prob=0.5)
    image = encoded(200, 150)
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    assert torch.equal(first, transform(image))
    assert not torch.equal(first, transform(image))


def test_invalid_transform_arguments() -> None:
    with pytest.raises(ValueError, match="interpolation 'area' is not supported"):
        build_train_transform(image_size=32, interpolation="area")
    with pytest.raises(ValueError, match="color_jitter needs 1, 3 or 4 values"):
        build_train_transform(image_size=32, color_jitter=(0.1, 0.2))
    with pytest.raises(ValueError, match="invalid crop scale"):
        build_train_transform(image_size=32, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="crop_pct must be in"):
        build_eval_transform(image_size=32, crop_pct=1.5)


# ---- colour jitter --------------------------------------------------------------------------


def test_float_color_jitter_factors() -> None:
    image = torch.rand(3, 16, 16) * 0.5
    assert torch.equal(FloatColorJitter(0, 0, 0)(image.clone()), image)
    bright = FloatColorJitter(0.4, 0, 0)
    ratios = [(bright(image.clone()) / image).mean().item() for _ in range(50)]
    assert 0.6 <= min(ratios) and max(ratios) <= 1.4 and max(ratios) - min(ratios) > 0.3
    out = FloatColorJitter(0.9, 0.9, 0.9, 0.2)(torch.rand(3, 16, 16))
    assert out.min() >= 0 and out.max() <= 1
    grey = torch.full((3, 8, 8), 0.3)
    assert torch.allclose(FloatColorJitter(0, 0.9, 0.9)(grey.clone()), grey, atol=1e-5)
    with pytest.raises(ValueError, match="hue must be in"):
        FloatColorJitter(0, 0, 0, 0.7)


def test_float_color_jitter_on_the_0_255_scale_is_the_0_1_jitter_scaled() -> None:
    image = torch.rand(3, 20, 20)
    for seed in range(20):
        torch.manual_seed(seed)
        unit = FloatColorJitter(0.4, 0.4, 0.4)(image.clone())
        torch.manual_seed(seed)
        wide = FloatColorJitter(0.4, 0.4, 0.4, peak=255.0)(image * 255)
        assert torch.allclose(wide / 255, unit, atol=1e-5)
        assert wide.min() >= 0 and wide.max() <= 255
    with pytest.raises(ValueError, match="needs peak=255"):
        ToNormalizedFloat((0.5,) * 3, (0.25,) * 3, FloatColorJitter(0.4, 0.4, 0.4))


@pytest.mark.parametrize(
    ("field", "reference"),
    [
        ("brightness", v2.functional.adjust_brightness),
        ("contrast", v2.functional.adjust_contrast),
        ("saturation", v2.functional.adjust_saturation),
    ],
)
def test_float_color_jitter_matches_torchvision_at_fixed_factor(field: str, reference) -> None:
    image = torch.rand(3, 12, 12)
    for factor in (0.6, 1.4):
        jitter = FloatColorJitter(0, 0, 0)
        setattr(jitter, field, (factor, factor))
        assert torch.allclose(jitter(image.clone()), reference(image, factor), atol=1e-5)


# ---- auto augment strings -------------------------------------------------------------------

FILL = [124, 116, 104]


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("randaug-m9-mstd0.5", NoisyRandAugment),
        ("randaug-m9-mstd0.5-inc1", NoisyRandAugment),
        ("rand-m7-n3-mstd101-mmax9", NoisyRandAugment),
        ("autoaug", v2.AutoAugment),
        ("autoaugr", v2.AutoAugment),
        ("3a", v2.RandomChoice),
        ("trivialaugwide", v2.TrivialAugmentWide),
        ("augmix-m5-w4-d2", v2.AugMix),
    ],
)
def test_auto_augment_strings(spec: str, kind: type) -> None:
    policy = parse_auto_augment(spec, interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    assert isinstance(policy, kind)
    image = torch.from_numpy(photo(40, 30)).permute(2, 0, 1).contiguous()
    out = policy(image)
    assert out.shape == image.shape and out.dtype == torch.uint8


def test_auto_augment_magnitudes() -> None:
    ra = parse_auto_augment("randaug-m9-n3-mstd0", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    assert isinstance(ra, NoisyRandAugment)
    assert (ra.num_ops, ra.magnitude, ra.magnitude_std, ra.magnitude_max) == (3, 9.0, 0.0, 10.0)
    assert {ra._draw_level() for _ in range(20)} == {90}
    noisy = parse_auto_augment("randaug-m9-mstd101-mmax9", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    levels = {noisy._draw_level() for _ in range(200)}
    assert min(levels) < 30 and max(levels) <= 90
    defaults = parse_auto_augment("randaug", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    assert (defaults.num_ops, defaults.magnitude, defaults.magnitude_std) == (2, 10.0, 0.5)
    ta = parse_auto_augment("trivialaugwide-m20", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    assert ta.num_magnitude_bins == 20
    mix = parse_auto_augment("augmix-m5-w4-d2-a0.5", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    assert (mix.severity, mix.mixture_width, mix.chain_depth, mix.alpha) == (5, 4, 2, 0.5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("randomaug-m9", "unknown policy 'randomaug'"),
        ("randaug-m9-x3", "unknown option 'x3' for randaug"),
        ("randaug-w0", "unknown option 'w0'"),
        ("randaug-m11", "magnitude m must be in 0..10"),
        ("randaug-mmax20", "mmax above 10"),
        ("randaug-n0", "n must be an integer >= 1"),
        ("randaug-mfoo", "unknown option 'mfoo'"),
        ("trivialaugwide-n2", "unknown option 'n2' for trivialaugwide"),
        ("v0", "unknown policy 'v0'"),
        ("", "unknown policy ''"),
    ],
)
def test_auto_augment_invalid(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_auto_augment(spec, interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)


def test_autoaug_mstd_is_reported_not_silently_dropped() -> None:
    with pytest.warns(UserWarning, match="mstd is ignored"):
        parse_auto_augment("autoaug-mstd0.5", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)


# ---- mixup / cutmix -------------------------------------------------------------------------


def test_mixup_cutmix_targets_sum_to_one_and_match_pixels() -> None:
    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    mixer = MixupCutmix(num_classes=5, mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1, seed=1)
    modes = set()
    for _ in range(20):
        mixed, soft = mixer(images, targets)
        assert soft.shape == (6, 5) and torch.allclose(soft.sum(1), torch.ones(6))
        assert soft.min() >= 0.1 / 5 - 1e-6
        # Weight on each sample's own class == share of its pixels (cutmix) or mixing weight (mixup).
        from_self = (mixed[0] == images[0]).float().mean().item()
        modes.add("cutmix" if from_self not in (0.0,) and from_self < 1 else "mixup")
    assert modes == {"cutmix", "mixup"}


def test_cutmix_lambda_equals_pasted_area() -> None:
    images = torch.stack([torch.zeros(1, 20, 20), torch.ones(1, 20, 20)])
    mixer = MixupCutmix(num_classes=2, cutmix_alpha=1.0, seed=3)
    for _ in range(10):
        mixed, soft = mixer(images, torch.tensor([0, 1]))
        pasted = mixed[0].mean().item()  # share of sample 0 covered by sample 1
        assert soft[0, 1].item() == pytest.approx(pasted, abs=1e-6)
        assert soft[0, 0].item() == pytest.approx(1 - pasted, abs=1e-6)


def test_mixup_prob_zero_only_smooths_and_state_resumes() -> None:
    images = torch.rand(4, 3, 8, 8)
    targets = torch.tensor([1, 0, 2, 1])
    off = MixupCutmix(num_classes=3, mixup_alpha=1.0, prob=0.0, label_smoothing=0.3)
    same, soft = off(images, targets)
    assert same is images and torch.allclose(soft[0], torch.tensor([0.1, 0.8, 0.1]))

    mixer = MixupCutmix(num_classes=3, mixup_alpha=1.0, cutmix_alpha=1.0, seed=7)
    mixer(images, targets)
    state = mixer.state_dict()
    expected = [mixer(images, targets) for _ in range(3)]
    resumed = MixupCutmix(num_classes=3, mixup_alpha=1.0, cutmix_alpha=1.0, seed=99)
    resumed.load_state_dict(state)
    for (x, y), (a, b) in zip(expected, [resumed(images, targets) for _ in range(3)], strict=True):
        assert torch.equal(x, a) and torch.equal(y, b)
    with pytest.raises(ValueError, match="need mixup_alpha > 0 or cutmix_alpha > 0"):
        MixupCutmix(num_classes=3)


# ---- samplers -------------------------------------------------------------------------------


def test_train_sampler_deterministic_per_seed_and_epoch() -> None:
    make = lambda seed: TrainSampler(50, batch_size=8, shuffle=True, seed=seed)  # noqa: E731
    a, b = make(0), make(0)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
    a.set_epoch(1)
    order1 = [i for i, _ in a]
    a.set_epoch(2)
    assert sorted(order1) == list(range(50)) and order1 != [i for i, _ in a]
    assert [i for i, _ in make(1).epoch_order(1)] != order1
    in_order = TrainSampler(10, batch_size=4, shuffle=False, seed=0)
    assert [i for i, _ in in_order] == list(range(10))


def test_start_batch_skips_exactly_the_head() -> None:
    sampler = TrainSampler(37, batch_size=5, shuffle=True, seed=4)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start_batch=3)
    assert list(sampler) == full[15:] and len(sampler) == 22
    sampler.set_epoch(2, start_batch=100)
    assert list(sampler) == [] and len(sampler) == 0


def test_distributed_train_shards_cover_the_epoch() -> None:
    shards = [TrainSampler(10, batch_size=2, shuffle=True, seed=0, num_replicas=3, rank=r) for r in range(3)]
    orders = [[i for i, _ in s] for s in shards]
    assert all(len(o) == 4 for o in orders)  # 10 padded to 12
    assert set(sum(orders, [])) == set(range(10))
    seeds = [seed for s in shards for _, seed in s]
    assert len(set(seeds)) == 12


def test_repeated_augmentation_sampler() -> None:
    shards = [
        TrainSampler(12, batch_size=2, shuffle=True, seed=0, num_replicas=3, rank=r, aug_repeats=3) for r in range(3)
    ]
    pairs = [p for s in shards for p in s]
    assert all(len(s) == 4 for s in shards) and len(pairs) == 12
    indices = [i for i, _ in pairs]
    assert max(indices.count(i) for i in set(indices)) > 1  # copies of an image in one epoch...
    for i in set(indices):
        assert len({seed for j, seed in pairs if j == i}) == indices.count(i)  # ...each augmented differently


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_eval_shards_cover_every_sample_once(world: int) -> None:
    n = 10
    seen = [i for r in range(world) for i in EvalShardSampler(n, num_replicas=world, rank=r)]
    assert sorted(seen) == list(range(n))
    assert sum(len(EvalShardSampler(n, num_replicas=world, rank=r)) for r in range(world)) == n


# ---- loaders --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for label in range(3):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(7):
            Image.fromarray(photo(48, 40, seed=label * 10 + i)).save(folder / f"{i}.jpg")
    return root


def batches(loader, epoch: int, start_batch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    set_epoch(loader, epoch, start_batch)
    return list(loader)


def test_loader_augmentation_independent_of_workers_and_resumable(tiny_folder: Path) -> None:
    transform = build_train_transform(image_size=24, color_jitter=0.4, re_prob=0.5)
    ds = ImageFolderDataset(tiny_folder, "train", transform=transform)
    kwargs = dict(batch_size=4, shuffle=True, drop_last=True, distributed=False, seed=5)
    serial = build_loader(ds, num_workers=0, **kwargs)
    parallel = build_loader(ds, num_workers=2, persistent_workers=True, **kwargs)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    full = batches(serial, epoch=1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading never touches the training RNG
    assert len(full) == 5
    for (x, y), (a, b) in zip(full, batches(parallel, epoch=1), strict=True):
        assert torch.equal(x, a) and torch.equal(y, b)
    tail = batches(serial, epoch=1, start_batch=2)
    assert len(tail) == 3
    for (x, y), (a, b) in zip(full[2:], tail, strict=True):
        assert torch.equal(x, a) and torch.equal(y, b)
    assert not torch.equal(full[0][0], batches(serial, epoch=2)[0][0])


def test_eval_loader_shards_without_padding(tiny_folder: Path) -> None:
    ds = ImageFolderDataset(tiny_folder, "train", transform=build_eval_transform(image_size=16))
    counts = []
    for rank in range(4):
        loader = build_eval_loader(ds, batch_size=4, num_workers=0, distributed=True, num_replicas=4, rank=rank)
        counts.append(sum(len(y) for _, y in loader))
    assert counts == [6, 5, 5, 5] and sum(counts) == len(ds)


def test_three_augment_applies_exactly_one_of_its_three_operations() -> None:
    """MindCV's 3a: solarize at 128, full desaturation, or a 3x3 Gaussian blur; never two."""
    policy = parse_auto_augment("3a", interpolation=v2.InterpolationMode.BILINEAR, fill=FILL)
    image = torch.from_numpy(photo(40, 30)).permute(2, 0, 1).contiguous()
    solarized = torch.where(image >= 128, 255 - image, image)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = policy(image)
        if torch.equal(out, solarized):
            seen.add("solarize")
        elif torch.equal(out[0], out[1]) and torch.equal(out[1], out[2]):
            seen.add("greyscale")
        else:
            assert (out.float() - image.float()).abs().mean() < 40, "neither solarized nor grey: a blur is mild"
            seen.add("blur")
    assert seen == {"solarize", "greyscale", "blur"}


def test_random_erasing_honours_max_attempts() -> None:
    """scale 0.5 with log-uniform ratios in [1/4, 4]: a box fits for ratios in (1/2, 2), half the draws.
    One attempt then erases about half the images, ten attempts nearly all (1 - 2**-10)."""
    def erased_share(attempts: int) -> float:
        erase = RandomErasing(1.0, scale=(0.5, 0.5), ratio=(0.25, 4.0), value=7.0, max_attempts=attempts)
        torch.manual_seed(0)
        return sum(bool((erase(torch.zeros(3, 32, 32)) == 7.0).any()) for _ in range(400)) / 400

    assert 0.4 < erased_share(1) < 0.6
    assert erased_share(10) > 0.98
    box = RandomErasing(1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=(1.0, 2.0, 3.0))(torch.zeros(3, 16, 16))
    assert [int((box[c] == c + 1).sum()) for c in range(3)] == [64, 64, 64]
    noisy = RandomErasing(1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value="random")(torch.zeros(3, 16, 16))
    assert int((noisy != 0).sum()) == 3 * 64


def test_re_max_attempts_reaches_the_training_transform() -> None:
    transform = build_train_transform(image_size=16, re_prob=0.5, re_max_attempts=3)
    (erasing,) = [t for t in transform.transforms if isinstance(t, RandomErasing)]
    assert (erasing.max_attempts, erasing.p) == (3, 0.5)
