"""``res2net benchmark``: train-step and inference speed against timm, OpenVINO and onnxruntime.

Every table is one interleaved run in one process (see :mod:`.timing`). ``--json`` prints one
JSON object instead, with every contender's img/s and its ratio to the reference contender,
for scripts to read; ``--record FILE`` appends it as a results row (:mod:`.results`). Train steps
also report the step's work and the share of the machine's matrix-multiply rate each contender
reaches (see :mod:`.roofline`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..cpu_training import load_kernels
from ..cpu_training.host_memory import host_memory_label, retain_freed_memory
from ..models import build_model
from .contenders import (
    OPENVINO,
    OURS,
    OURS_TRAIN_COMPILED,
    TIMM_NCHW,
    TIMM_TRAIN,
    inference_contenders,
    train_step_contenders,
)
from .results import append_row, make_row
from .roofline import matmul_gflops, training_gflop_per_image
from .timing import Timing, format_table, interleaved, peak_rss_mib


def _summary(timings: list[Timing], reference: str) -> dict[str, Any]:
    base = next(t.per_second for t in timings if t.name == reference)
    return {
        "img_per_s": {t.name: round(t.per_second, 3) for t in timings},
        "ratio_to": reference,
        "ratios": {t.name: round(t.per_second / base, 3) for t in timings},
        "seconds_per_round": {t.name: [round(s, 4) for s in t.seconds] for t in timings},
    }


def _roofline(summary: dict[str, Any], gflop: float, peak: float) -> dict[str, Any]:
    """The step's GFLOP per image, the matrix-product peak at its precision, and each contender's share of it."""
    return {
        "gflop_per_image": float(f"{gflop:.4g}"),
        "matmul_peak_gflops": float(f"{peak:.4g}"),  # 4 digits: a CPU without bf16 runs bf16 at ~1 GFLOP/s
        "share_of_peak": {name: round(rate * gflop / peak, 3) for name, rate in summary["img_per_s"].items()},
    }


def inference_summary(timings: list[Timing]) -> dict[str, Any]:
    """Ratios to OpenVINO fp32 (timm NCHW without OpenVINO), and ours over OpenVINO per precision."""
    names = {t.name for t in timings}
    reference = OPENVINO.format("fp32") if OPENVINO.format("fp32") in names else TIMM_NCHW
    summary = _summary(timings, reference)
    rates = summary["img_per_s"]
    summary["ours_over_openvino"] = {
        p: round(rates[OURS.format(p)] / rates[OPENVINO.format(p)], 3)
        for p in ("fp32", "bf16", "int8")
        if OPENVINO.format(p) in rates
    }
    return summary


def run_benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = args.retain_host_memory and retain_freed_memory()
    results: dict[str, Any] = {"model": args.model, "timm_model": args.timm_model, "image_size": args.image_size,
                               "threads": torch.get_num_threads(), "rounds": args.rounds,
                               "host_memory": host_memory_label(retained), "cpu_kernels": args.cpu_kernels}
    if not args.json:
        print(f"{args.model} vs timm {args.timm_model}, {args.image_size}px, {torch.get_num_threads()} threads, "
              f"{args.rounds} interleaved rounds, medians, host memory {results['host_memory']}")
    precisions = [(label, dtype) for label, dtype in (("fp32", None), ("bf16", "bfloat16")) if label in args.precision]
    kernels = None
    if args.what in ("train", "all"):
        kernels = load_kernels(build=True) if args.cpu_kernels == "fused" else None
        # The same operations run at either precision and any batch size: one count, one peak per precision.
        gflop = training_gflop_per_image(build_model(args.model), args.image_size, None)
        peaks = {label: matmul_gflops(dtype) for label, dtype in precisions}
    for batch in args.batch_size:
        if args.what in ("train", "all"):
            for label, dtype in precisions:
                contenders = train_step_contenders(args.model, args.timm_model, batch, args.image_size, dtype,
                                                   compiled=args.compile, cpu_kernels=kernels)
                compile_seconds = None
                if args.compile:
                    started = time.perf_counter()
                    contenders[OURS_TRAIN_COMPILED]()  # compilation happens in the first steps
                    contenders[OURS_TRAIN_COMPILED]()
                    compile_seconds = round(time.perf_counter() - started, 1)
                timings = interleaved(contenders, rounds=args.rounds, items=batch)
                summary = _summary(timings, TIMM_TRAIN)
                summary["compile_warmup_seconds"] = compile_seconds
                summary.update(_roofline(summary, gflop, peaks[label]))
                results.setdefault("train", {}).setdefault(str(batch), {})[label] = summary
                if compile_seconds is not None and not args.json:
                    print(f"torch.compile warm-up (first two steps): {compile_seconds} s")
                if not args.json:
                    print(format_table(f"train step, batch {batch}, {label}:", timings))
                    shares = ", ".join(f"{name} {share:.0%}" for name, share in summary["share_of_peak"].items())
                    print(f"work {summary['gflop_per_image']} GFLOP per image; {label} matrix product "
                          f"{summary['matmul_peak_gflops']} GFLOP/s here; share of it: {shares}")
        if args.what in ("inference", "all"):
            calibration = torch.randn(32, 3, args.image_size, args.image_size,
                                      generator=torch.Generator().manual_seed(1))
            contenders = inference_contenders(args.model, args.timm_model, batch, args.image_size, calibration)
            timings = interleaved(contenders, rounds=args.rounds, items=batch)
            results.setdefault("inference", {})[str(batch)] = inference_summary(timings)
            if not args.json:
                print(format_table(f"inference, batch {batch}:", timings))
    results["peak_rss_mib"] = round(peak_rss_mib())
    if args.record:
        append_row(Path(args.record), make_row("res2net benchmark", results, folder=Path.cwd()))
    if args.json:
        print(json.dumps(results))
    else:
        print(f"peak RSS: {results['peak_rss_mib']} MiB")
    return 0
