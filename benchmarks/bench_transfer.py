"""Does starting from trained weights pay? res2net50 pretrained on the digits 0-4, fine-tuned on the digits 5-9.

With k training images per class of the new digits (k = 5, 20 and all), ``res2net finetune`` from the
pretrained checkpoint against the same command with ``--weights none`` (training from scratch), for each
seed; both are scored on the whole validation split of the new digits. Everything runs through the
command line, as a user runs it.

    python benchmarks/bench_transfer.py --data data/digits [--k 5 20 all] [--seeds 0 1 2] [--starts ...]
        [--work DIR] [--record] [-- FLAGS]

FLAGS are passed to every ``res2net finetune`` (recipe keys, e.g. ``--lr 0.0005``), to compare recipes.
``--starts fine-tuned`` runs one side only (a diagnosis such as a linear probe, ``-- --freeze_stages 5``);
``--work DIR`` keeps the pretrained model and every run folder (curves.png, metrics.jsonl) there, and a later
run with the same DIR starts from the pretrained model already in it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from res2net.speed.results import append_row, make_row

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "transfer.jsonl"
OLD, NEW = ("0", "1", "2", "3", "4"), ("5", "6", "7", "8", "9")
STARTS = ("fine-tuned", "from scratch")


def _cli(*args: str) -> None:
    code = "import sys; from res2net.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *args], check=True, stdout=subprocess.DEVNULL)


def _link_split(source: Path, target: Path, classes: tuple[str, ...], per_class: int | None, seed: int) -> None:
    for name in classes:
        files = sorted((source / name).iterdir())
        if per_class is not None:
            files = sorted(random.Random(f"{seed}:{name}").sample(files, per_class))
        (target / name).mkdir(parents=True)
        for file in files:
            (target / name / file.name).symlink_to(file.resolve())


def _final_top1(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(rows[-1]["val_top1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the digits written by `res2net demo-data`")
    parser.add_argument("--k", nargs="+", default=["5", "20", "all"], help="training images per new class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS), help="which sides to run")
    parser.add_argument("--work", type=Path, help="keep the pretrained model and the runs here (default: a "
                                                  "temporary folder)")
    parser.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    args, flags = parser.parse_known_args()
    flags = [f for f in flags if f != "--"]
    started = time.monotonic()
    keep = nullcontext(str(args.work)) if args.work else tempfile.TemporaryDirectory(prefix="res2net-transfer-")
    with keep as scratch:
        work = Path(scratch)
        pretrained = work / "pretrained" / "last.pth"
        if not pretrained.is_file():
            for split in ("train", "val"):
                _link_split(args.data / split, work / "old" / split, OLD, None, 0)
            _cli("train", "-c", str(HERE.parent / "configs/demo/res2net50_digits.yaml"), "--data_dir",
                 str(work / "old"), "--ckpt_save_dir", str(work / "pretrained"), "--log_interval", "1000")
        print(f"pretrained on the digits 0-4: val top-1 {_final_top1(work / 'pretrained'):.2f}%", flush=True)
        tag = "_".join(flags).replace("-", "") or "recipe"
        figures: dict[str, dict[str, list[float]]] = {}
        for k in args.k:
            for seed in args.seeds:
                data = work / f"new_k{k}_s{seed}"
                if not data.is_dir():
                    _link_split(args.data / "train", data / "train", NEW, None if k == "all" else int(k), seed)
                    _link_split(args.data / "val", data / "val", NEW, None, 0)
                for start in args.starts:
                    weights = str(pretrained) if start == "fine-tuned" else "none"
                    run = work / "runs" / tag / f"k{k}_s{seed}_{start.replace(' ', '_')}"
                    shutil.rmtree(run, ignore_errors=True)
                    _cli("finetune", str(data), "--model", "res2net50", "--weights", weights, "--seed", str(seed),
                         "--image-size", "32", "--output", str(run), "--hflip", "0", "--log_interval", "1000", *flags)
                    top1 = _final_top1(run)
                    figures.setdefault(f"k={k}", {}).setdefault(start, []).append(top1)
                    print(f"k={k} seed {seed} {start}: {top1:.2f}%", flush=True)
    summary = {k: {start: {"top1": values, "mean": round(statistics.mean(values), 2),
                           "stdev": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}
                   for start, values in by_start.items()} for k, by_start in figures.items()}
    print(json.dumps(summary))
    print(f"{time.monotonic() - started:.0f} s")
    if args.record:
        append_row(RESULTS, make_row("transfer", summary, folder=HERE,
                                     settings={"k": args.k, "seeds": args.seeds, "starts": args.starts,
                                               "finetune_flags": flags}))


if __name__ == "__main__":
    main()
