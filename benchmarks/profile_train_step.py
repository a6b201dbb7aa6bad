"""Where one training step of ours spends its time, and what torch.compile's modes make of it.

Three views of the step our ``train.py`` runs (res2net50, channels_last, fused momentum SGD,
autocast at ``--precision``), on random images:

* torch's profiler: the operators with the most self time in one eager step;
* oneDNN's verbose log of the same step, summed by primitive kind, implementation and
  direction (which convolution kernels run, and how long the weight reorders take);
* with ``--compile-modes``, img/s of eager against ``torch.compile`` in its default mode and in
  ``max-autotune-no-cudagraphs``, interleaved round by round (each compile is timed once).

    python benchmarks/profile_train_step.py [--precision bf16] [--batch-size 16] [--compile-modes]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import io
import os
import re
import sys
import tempfile
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from res2net.metrics import autocast_context
from res2net.models import build_model
from res2net.speed import interleaved
from res2net.speed.results import add_record_argument, record_if_asked

DTYPES = {"fp32": None, "bf16": "bfloat16"}
# onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,<direction>,...,<milliseconds>
_VERBOSE_EXEC = re.compile(r"^onednn_verbose,.*?,exec,cpu,([^,]+),([^,]+),([^,]+),.*,([0-9.]+)$")


def make_step(model: torch.nn.Module, batch: int, size: int, dtype: str | None):
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)

    def step() -> None:
        with autocast_context(images.device, dtype):
            logits = model(images)
        F.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def onednn_summary(step) -> list[tuple[float, int, tuple[str, str, str]]]:
    """(ms, calls, (kind, implementation, direction)) of one step, largest first, from oneDNN's log
    (printed by the C++ library on file descriptor 1, so that descriptor is sent to a file meanwhile)."""
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+") as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                step()
        finally:
            libc.fflush(None)  # C stdio's buffer still holds the last lines
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().splitlines()
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for line in lines:
        match = _VERBOSE_EXEC.match(line)
        if match:
            totals[match.group(1, 2, 3)].append(float(match.group(4)))
    return sorted(((sum(ms), len(ms), key) for key, ms in totals.items()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=DTYPES, default="bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compile-modes", action="store_true")
    add_record_argument(parser, "profile_train_step")
    args = parser.parse_args()

    dtype = DTYPES[args.precision]
    model = build_model("res2net50").to(memory_format=torch.channels_last)
    step = make_step(model, args.batch_size, args.image_size, dtype)
    step(), step()
    with profile(activities=[ProfilerActivity.CPU]) as prof, contextlib.redirect_stderr(io.StringIO()):
        step()
    print(f"one eager {args.precision} step, batch {args.batch_size}, {args.image_size} px:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print("oneDNN primitives in one step (ms, calls, kind / implementation / direction):")
    primitives = onednn_summary(step)[:12]
    for ms, calls, key in primitives:
        print(f"  {ms:8.1f} ms {calls:4d}  {' / '.join(key)}")
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    figures = {"self_ms": {e.key: round(e.self_cpu_time_total / 1000, 2) for e in top},
               "onednn_ms": {" / ".join(key): round(ms, 2) for ms, _, key in primitives}}

    if args.compile_modes:
        steps = {"eager": step}
        for mode in ("default", "max-autotune-no-cudagraphs"):
            compiled = torch.compile(copy.deepcopy(model), mode=mode)
            steps[f"compile {mode}"] = make_step(compiled, args.batch_size, args.image_size, dtype)
            started = time.perf_counter()
            steps[f"compile {mode}"]()
            print(f"compile {mode}: first step {time.perf_counter() - started:.1f} s")
        for timing in interleaved(steps, rounds=args.rounds, items=args.batch_size):
            print(f"  {timing.name:40s} {timing.per_second:7.2f} img/s")
            figures.setdefault("img_per_s", {})[timing.name] = round(timing.per_second, 2)
    record_if_asked(args, figures, {"precision": args.precision, "batch_size": args.batch_size,
                                    "image_size": args.image_size})


if __name__ == "__main__":
    main()
