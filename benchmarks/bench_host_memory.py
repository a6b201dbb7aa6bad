"""What glibc's handling of freed memory costs a CPU training step, and what keeping it saves.

Runs ``profile_train_step.py``'s step (res2net50, channels_last, fused momentum SGD, autocast
at ``--precision``) in one fresh process per setting, one after the other, since glibc's
thresholds belong to the process:

* ``default``: glibc as it starts;
* ``trim only``: only the trim threshold raised (which stops glibc adapting its mmap threshold);
* ``retained``: ``res2net.cpu_training.host_memory.retain_freed_memory()``, as ``train.py`` runs on CPU.

Each prints ms per step and minor page faults per step over ``--steps`` steps after two warm-ups.

    python benchmarks/bench_host_memory.py [--precision bf16] [--batch-size 16] [--image-size 224] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from res2net.speed.results import add_record_argument, record_if_asked

# One setting, in a child process; prints one JSON line.
CHILD = """
import json, resource, sys, time
import torch
setting, precision, batch, size, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
from res2net.cpu_training.host_memory import _M_TRIM_THRESHOLD, RETAIN_BYTES, _glibc, retain_freed_memory
if setting == "retained":
    assert retain_freed_memory()
elif setting == "trim only":
    assert _glibc().mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES)
from profile_train_step import DTYPES, make_step
from res2net.models import build_model
model = build_model("res2net50_26w_4s", num_classes=1000).to(memory_format=torch.channels_last).train()
step = make_step(model, batch, size, DTYPES[precision])
step(); step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = (time.perf_counter() - start) / steps
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"ms_per_step": seconds * 1000, "faults_per_step": faults, "peak_rss_mib": rss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    add_record_argument(parser, "host_memory")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    print(f"res2net50 training step, {args.precision}, batch {args.batch_size}, {args.image_size} px")
    figures = {}
    for setting in ("default", "trim only", "retained"):
        argv = [setting, args.precision, str(args.batch_size), str(args.image_size), str(args.steps)]
        done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, cwd=here,
                              check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {setting:10s} {result['ms_per_step']:8.1f} ms/step {result['faults_per_step']:10.0f} faults/step"
              f"  peak RSS {result['peak_rss_mib']:.0f} MiB")
        figures[setting] = {k: round(v, 1) for k, v in result.items()}
    record_if_asked(args, figures, {"precision": args.precision, "batch_size": args.batch_size,
                                    "image_size": args.image_size, "steps": args.steps})


if __name__ == "__main__":
    main()
