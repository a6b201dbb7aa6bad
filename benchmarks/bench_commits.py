"""Our training step from two checkouts, and timm's, in one interleaved run: did a change make training slower?

Separate processes are not comparable on a shared machine (their speed drifts by tens of percent between runs),
so this script builds "ours, as our train.py runs it" from another checkout's ``src/`` first (imported, its
callable kept, its modules then dropped from ``sys.modules``), then from this checkout, then timm's own loop, and
times the three round by round in one process.

    python benchmarks/bench_commits.py --other /path/to/older/clone/src [--image-size 224 --batch-size 16]
        [--precision fp32] [--rounds 5] [--threads 2] [--record]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _forget_res2net() -> None:
    for name in [n for n in sys.modules if n == "res2net" or n.startswith("res2net.")]:
        del sys.modules[name]


def _our_step(src: Path | None, size: int, batch: int, dtype: str | None) -> tuple[Callable[[], None], str]:
    """That checkout's "ours, as our train.py runs it" step (this checkout's when ``src`` is None)."""
    _forget_res2net()
    if src is not None:
        sys.path.insert(0, str(src))
    try:
        try:
            contenders = importlib.import_module("res2net.speed.contenders")
            kernels = importlib.import_module("res2net.cpu_training").load_kernels(build=True)
            steps = contenders.train_step_contenders("res2net50_26w_4s", "res2net50_26w_4s", batch, size, dtype,
                                                     cpu_kernels=kernels)
        except ModuleNotFoundError:  # checkouts before res2net.speed (0.1.0): the kernels were inside the model
            contenders = importlib.import_module("res2net.benchmark.contenders")
            steps = contenders.train_step_contenders("res2net50_26w_4s", "res2net50_26w_4s", batch, size, dtype)
        commit = importlib.import_module("res2net.version").__version__
        return steps[contenders.OURS_TRAIN], commit
    finally:
        if src is not None:
            sys.path.remove(str(src))
        _forget_res2net()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the other checkout's src/ folder")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/results/commits.jsonl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = None if args.precision == "fp32" else "bfloat16"
    other, other_version = _our_step(args.other.resolve(), args.image_size, args.batch_size, dtype)
    ours, version = _our_step(None, args.image_size, args.batch_size, dtype)
    from res2net.provenance import git_commit
    from res2net.speed import format_table, interleaved
    from res2net.speed.contenders import TIMM_TRAIN, train_step_contenders
    from res2net.speed.results import append_row, make_row

    timm_step = train_step_contenders("res2net50_26w_4s", "res2net50_26w_4s", args.batch_size, args.image_size,
                                      dtype)[TIMM_TRAIN]
    other_name = f"ours at {git_commit(args.other.resolve().parent) or other_version} ({args.other})"
    this_name = f"ours at {git_commit(HERE.parent) or version} (this checkout)"
    timings = interleaved({TIMM_TRAIN: timm_step, other_name: other, this_name: ours}, rounds=args.rounds,
                          items=args.batch_size)
    print(format_table(f"res2net50 train step, {args.image_size} px, batch {args.batch_size}, {args.precision}:",
                       timings))
    if args.record:
        base = timings[0].per_second
        figures = {t.name: {"img_per_s": round(t.per_second, 3), "over_timm": round(t.per_second / base, 3)}
                   for t in timings}
        append_row(HERE / "results" / "commits.jsonl", make_row("commits", figures, folder=HERE, settings={
            "image_size": args.image_size, "batch_size": args.batch_size, "precision": args.precision,
            "rounds": args.rounds, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
