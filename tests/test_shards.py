"""WebDataset shards (``res2net make-shards``, ``dataset: webdataset``) and SLURM launches."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from res2net import cli
from res2net.checkpoint.training import read_training_checkpoint
from res2net.config import load_config
from res2net.data import ImageFolderDataset, build_eval_transform
from res2net.data.decode import EncodedImage
from res2net.data.folder import CorruptImageWarning
from res2net.data.shards import ShardIndex, ShardStream, epoch_plan
from res2net.distributed import detect_launcher, expand_nodelist, slurm_rendezvous
from res2net.validation import validate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"


@pytest.fixture(scope="module")
def shards(tiny_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny digits (40 train / 30 val) as shards of 6: 7 train shards, the last one of 4."""
    out = tmp_path_factory.mktemp("shards")
    assert cli.main(["make-shards", str(tiny_digits_dir), str(out), "--shard_size", "6"]) == 0
    return out


def key_of(image: EncodedImage) -> torch.Tensor:
    """A transform that turns a sample into its position key, to follow samples through a plan."""
    return torch.tensor([int(image.path.stem.rsplit("_", 1)[1])])


def keys_seen(stream: ShardStream, workers: int) -> list[int]:
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    batches = [batch for batch in loader if batch is not None]
    assert len(batches) == len(loader) == len(stream)
    return [int(k) for images, _ in batches for k in images.flatten().tolist()]


def test_make_shards_writes_an_index_of_every_shard(shards: Path) -> None:
    index = ShardIndex.read(str(shards))
    assert [count for _, count in index.shards("train")] == [6, 6, 6, 6, 6, 6, 4]
    assert index.num_samples("val") == 30 and index.classes == tuple(str(i) for i in range(10))
    assert sorted(p.name for p in shards.glob("train-*.tar")) == [f"train-{i:06d}.tar" for i in range(7)]
    pattern = ShardIndex.read(str(shards / "train-{000000..000006}.tar"))
    assert pattern.splits == index.splits  # a brace pattern finds the index beside the shards


def test_shards_give_the_folder_loaders_labels_and_pixels(shards: Path, tiny_digits_dir: Path) -> None:
    transform = build_eval_transform(image_size=16, crop_pct=1.0)
    folder = ImageFolderDataset(tiny_digits_dir, "val", transform=transform)
    expected = torch.stack([folder[i][0] for i in range(len(folder))])
    stream = ShardStream(ShardIndex.read(str(shards)), "val", transform=transform, batch_size=7, training=False)
    images, labels = zip(*[batch for batch in DataLoader(stream, batch_size=None)])
    assert torch.equal(torch.cat(images), expected)  # the same bytes, decoded the same way
    assert torch.cat(labels).tolist() == folder.targets


def test_training_order_is_seeded_per_epoch(shards: Path) -> None:
    index = ShardIndex.read(str(shards))

    def order(epoch: int, seed: int = 0) -> list[int]:
        stream = ShardStream(index, "train", transform=key_of, batch_size=4, training=True, seed=seed)
        stream.set_epoch(epoch)
        return keys_seen(stream, workers=0)

    assert order(1) == order(1) and order(1) != order(2) and order(1, seed=5) != order(1)
    assert sorted(order(1)) == list(range(40))


@pytest.mark.parametrize(("samples", "world"), [(40, 2), (41, 2), (41, 3)])
def test_plan_covers_every_sample_once_with_equal_shares(samples: int, world: int) -> None:
    counts = [6] * (samples // 6) + ([samples % 6] if samples % 6 else [])
    plans = [epoch_plan(counts, epoch=3, seed=1, shuffle=True, num_replicas=world, rank=r, pad=True)
             for r in range(world)]
    assert len({len(p) for p in plans}) == 1  # equal shares: DDP steps stay in lockstep
    seen = [(shard, i) for plan in plans for shard, i, _ in plan]
    every = {(s, i) for s, n in enumerate(counts) for i in range(n)}
    assert set(seen) == every and len(seen) - len(every) == (-samples) % world  # only the wrap-around pad repeats


def test_two_ranks_by_two_workers_see_every_sample_exactly_once(shards: Path) -> None:
    """40 samples in 7 uneven shards, batch 4: each rank 20 samples = 5 batches, split 3 + 2 between
    its two workers; together every sample once."""
    index = ShardIndex.read(str(shards))
    seen = []
    for rank in range(2):
        stream = ShardStream(index, "train", transform=key_of, batch_size=4, training=True, num_replicas=2, rank=rank)
        stream.set_epoch(1)
        assert len(stream) == 5
        seen.append(keys_seen(stream, workers=2))
    assert len(seen[0]) == len(seen[1]) == 20
    assert sorted(seen[0] + seen[1]) == list(range(40))


def test_validation_counts_are_exact_across_ranks(shards: Path) -> None:
    index = ShardIndex.read(str(shards))
    seen = [keys_seen(ShardStream(index, "val", transform=key_of, batch_size=4, training=False, num_replicas=3,
                                  rank=r), workers=2) for r in range(3)]
    assert sorted(k for keys in seen for k in keys) == list(range(30))


def test_a_corrupt_sample_is_skipped_counted_and_named(shards: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.json").write_text((shards / "index.json").read_text())
    for shard in shards.glob("val-*.tar"):
        (bad / shard.name).write_bytes(shard.read_bytes())
    first = bad / "val-000000.tar"
    members = []
    with tarfile.open(first) as source:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "val_00000002.jpg":
                data = data[:40]  # a truncated JPEG
            members.append((member, data))
    with tarfile.open(first, "w") as target:
        for member, data in members:
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    stream = ShardStream(ShardIndex.read(str(bad)), "val", transform=build_eval_transform(image_size=16),
                         batch_size=10, training=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(DataLoader(stream, batch_size=None))
    assert sum(len(labels) for _, labels in batches) == 29 and stream.skipped.value == 1
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(messages) == 1 and "val_00000002" in messages[0] and "val-000000.tar" in messages[0]


def shard_args(shards: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["-c", str(DEMO_RECIPE), "--dataset", "webdataset", "--data_dir", str(shards), "--ckpt_save_dir",
            str(run_dir), "--image_resize", "16", "--batch_size", "8", "--epoch_size", "2", "--warmup_epochs", "0",
            "--num_parallel_workers", "2", "--log_interval", "1", *extra]


@pytest.mark.slow
def test_train_and_validate_from_shards_and_resume_mid_epoch(
    shards: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """An uninterrupted run, and one SIGKILLed in epoch 2 then resumed with --resume auto: the same
    weights (same world size and worker count: the plan is a function of both)."""
    straight = tmp_path / "straight"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *shard_args(shards, straight)],
                          capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "train_samples=40" in done.stdout and "val_samples=30" in done.stdout
    assert "host_memory=retained" in done.stdout  # CPU training keeps freed maps (test_host_memory.py)
    assert "cpu_kernels=" in done.stdout  # what CPU training ran with (test_cpu_training.py)

    crashed_dir = tmp_path / "crashed"
    env = {**subprocess_env, "CRASH_MARKER": str(tmp_path / "marker"), "CRASH_AT_STEP": "8"}  # 5 steps per epoch
    crashed = subprocess.run([sys.executable, str(REPO_ROOT / "tests/crash_once.py"),
                              *shard_args(shards, crashed_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert crashed.returncode == -9 and read_training_checkpoint(crashed_dir / "last.pth").epoch == 1
    resumed = subprocess.run([sys.executable, str(REPO_ROOT / "tests/crash_once.py"),
                              *shard_args(shards, crashed_dir, "--resume", "auto")],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_training_checkpoint(straight / "last.pth"), read_training_checkpoint(crashed_dir / "last.pth")
    assert a.step == b.step == 10
    assert max((a.model[k].double() - b.model[k].double()).abs().max().item() for k in a.model) <= 1e-6

    result = validate(load_config([*shard_args(shards, tmp_path), "--ckpt_path", str(straight / "last.pth")],
                                  purpose="validate"))
    assert result.num_samples == 30 and result.top1 == pytest.approx(a.metrics["top1"], abs=1e-4)  # 4 decimals kept


# --- SLURM ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [("node[01-04]", ["node01", "node02", "node03", "node04"]), ("gpu7", ["gpu7"]),
     ("a[1-2,5],b3", ["a1", "a2", "a5", "b3"]), ("rack[1-2]-n[08-09]", ["rack1-n08", "rack1-n09", "rack2-n08",
                                                                        "rack2-n09"])],
)
def test_slurm_node_lists_are_expanded(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


def test_slurm_rendezvous_and_launcher_precedence() -> None:
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "node[07-08]",
           "SLURM_JOB_ID": "4242"}
    assert detect_launcher(env) == ("SLURM", 3, 8, 1)
    assert slurm_rendezvous(env) == ("node07", str(15000 + 4242))
    assert slurm_rendezvous({**env, "MASTER_PORT": "1234", "MASTER_ADDR": "head"}) == ("head", "1234")
    # torchrun / mpirun inside an allocation inherit the SLURM variables; their own come first.
    assert detect_launcher({**env, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})[0] == "torchrun"
    assert detect_launcher({**env, "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"})[0] == "OpenMPI"
    assert detect_launcher({**env, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}) == ("SLURM", 1, 2, 1)


def free_port_for_job() -> tuple[int, int]:
    """A free port that SLURM's job-id rule maps to, and that job id."""
    for port in range(15000 + os.getpid() % 10000, 35000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port, port - 15000
    raise RuntimeError("no free port")


@pytest.mark.slow
def test_srun_style_launch_trains_two_gloo_ranks(
    tiny_digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """Two processes started as srun starts them (SLURM variables, no torchrun, no MASTER_*)."""
    _, job = free_port_for_job()
    args = ["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir), "--ckpt_save_dir", str(tmp_path),
            "--image_resize", "16", "--batch_size", "8", "--epoch_size", "1", "--warmup_epochs", "0",
            "--num_parallel_workers", "0", "--distribute", "True", "--device", "cpu"]
    env = {k: v for k, v in subprocess_env.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    processes = [
        subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**env, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
                              "SLURM_JOB_NODELIST": "127.0.0.1", "SLURM_JOB_ID": str(job)})
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    summary = next(line for line in outputs[0][0].splitlines() if line.startswith("run: "))
    assert "world_size=2" in summary and "launcher=SLURM" in summary
    assert not any(line.startswith("run: ") for line in outputs[1][0].splitlines())  # rank 1 stays quiet
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["last.pth", "res2net50-1_2.pth"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["val_num_samples"] == 30
