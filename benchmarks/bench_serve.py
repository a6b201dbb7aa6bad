"""Serving throughput: 8 concurrent clients vs one at a time, with the dynamic batcher on.

Starts the server in a child process (so the load generator's Python does not compete
with it for the GIL), sends already-preprocessed FP32 tensors with the binary tensor
extension (what ``tritonclient.http`` sends, and the cheapest encoding for the client),
and reports images/s and per-request p50/p99 latency for each scenario, plus the
speed-up. It then times the same model alone at batch 1 and at batch ``--concurrency``: the
ratio of those is the most any batcher could gain (the server's HTTP work comes on top),
so the two speed-ups side by side show how much of it the batcher realises. Not a test:
run it by hand, e.g.

    python benchmarks/bench_serve.py --model res2net50 --precision bf16 --requests 128

The issue's target is a speed-up >= 1.5x with 8 clients. ``--engine both`` runs the same load
against ``res2net serve --engine fastapi`` and ``--engine triton`` (NVIDIA's tritonserver on the
exported repository: Triton's HTTP endpoint speaks the same v2 protocol and binary tensor
extension, so the load generator is the same), engines alternating round by round:

    python benchmarks/bench_serve.py --engine both --rounds 3 --requests 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch

from res2net.speed.results import add_record_argument, record_if_asked

SERVED = "bench"


def _serve_args(args: argparse.Namespace) -> argparse.Namespace:
    """``res2net serve``'s arguments for this benchmark, through the console script's own parser."""
    from res2net.serve.cli import add_serve_parser

    parser = argparse.ArgumentParser(prog="res2net")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    calibration = ["--calibration-dir", str(args.calibration_dir)] if args.calibration_dir else []
    return parser.parse_args([
        "serve", "--model", args.model, "--served-name", SERVED, "--precision", args.precision, *calibration,
        "--max-batch-size", str(args.max_batch_size), "--max-latency-ms", str(args.max_latency_ms), "--port", "0",
    ])


def _serve(args: argparse.Namespace) -> int:
    """Child process: ``res2net serve`` itself (randomly initialised weights: speed does not
    depend on their values), through the same entry point as the console script."""
    from res2net.serve.cli import run_serve

    return run_serve(_serve_args(args))


def _write_calibration_images(directory: Path, count: int = 16) -> None:
    """Noise images for int8 calibration: scale choices do not change the speed being measured."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(directory / f"{index}.png")


def _model_alone(args: argparse.Namespace, size: int, batch: int) -> tuple[float, float]:
    """Images/s of the served model called directly, at batch 1 and at ``batch`` (medians of 5)."""
    from res2net.serve.cli import build_runner

    runner = build_runner(_serve_args(args))

    def images_per_s(rows: int) -> float:
        pixels = torch.randn(rows, 3, size, size)
        runner(pixels)  # warm-up (and compilation for a new batch size)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            runner(pixels)
            timings.append(time.perf_counter() - started)
        return rows / sorted(timings)[2]

    return images_per_s(1), images_per_s(batch)


@dataclass(frozen=True)
class Result:
    clients: int
    images: int
    seconds: float
    latencies_ms: list[float]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _request(size: int, seed: int) -> tuple[bytes, dict[str, str]]:
    pixels = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32).tobytes()
    header = json.dumps({
        "inputs": [{"name": "input", "shape": [1, 3, size, size], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(pixels)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }).encode()
    return header + pixels, {"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"}


async def _drive(url: str, clients: int, requests: int, size: int) -> Result:
    body, headers = _request(size, seed=clients)
    latencies: list[float] = []
    remaining = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:

        async def client() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await http.post(f"/v2/models/{SERVED}/infer", content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Result(clients, requests, seconds, latencies)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_triton(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str, str]:
    """``res2net serve --engine triton``; returns the process, the HTTP URL and the metrics URL."""
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    command = [str(Path(sys.executable).with_name("res2net")), "serve", "--engine", "triton", "--model", args.model,
               "--served-name", SERVED, "--max-batch-size", str(args.max_batch_size), "--max-latency-ms",
               str(args.max_latency_ms), "--port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    process, _ = _spawn(command, "Triton serving")
    return process, f"http://127.0.0.1:{http}", f"http://127.0.0.1:{metrics}"


def _spawn(command: list[str], ready_prefix: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server and wait for its first line, which must start with ``ready_prefix``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(ready_prefix):
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, line


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, __file__, "--serve", "--model", args.model, "--precision", args.precision,
               "--max-batch-size", str(args.max_batch_size), "--max-latency-ms", str(args.max_latency_ms)]
    if args.calibration_dir:
        command += ["--calibration-dir", str(args.calibration_dir)]
    process, line = _spawn(command, "serving on ")
    url = line.split()[-1]
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("server never became ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="res2net50")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32")
    parser.add_argument("--requests", type=int, default=64, help="requests per scenario (one image each)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-latency-ms", type=float, default=10.0)
    parser.add_argument("--engine", choices=("fastapi", "triton", "both"), default="fastapi")
    parser.add_argument("--rounds", type=int, default=1, help="--engine both: alternating rounds per engine")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calibration-dir", type=Path, help=argparse.SUPPRESS)
    add_record_argument(parser, "serve")
    args = parser.parse_args()
    if args.serve:
        return _serve(args)
    if args.engine != "fastapi":
        return _compare_engines(args)
    if args.precision != "int8":
        return _benchmark(args)
    with tempfile.TemporaryDirectory(prefix="bench-serve-calibration-") as tmp:
        args.calibration_dir = Path(tmp)
        _write_calibration_images(args.calibration_dir)
        return _benchmark(args)


def _benchmark(args: argparse.Namespace) -> int:
    process, url = _start_server(args)
    try:
        size = httpx.get(f"{url}/v2/models/{SERVED}").json()["inputs"][0]["shape"][2]
        asyncio.run(_drive(url, args.concurrency, 2 * args.concurrency, size))  # warm-up
        sequential = asyncio.run(_drive(url, 1, args.requests, size))
        images_before, batches_before = _batch_totals(url)
        concurrent = asyncio.run(_drive(url, args.concurrency, args.requests, size))
        images_after, batches_after = _batch_totals(url)
    finally:
        process.terminate()
        process.wait(60)
    mean_batch = (images_after - images_before) / max(batches_after - batches_before, 1.0)
    alone_single, alone_batched = _model_alone(args, size, args.concurrency)
    ceiling = alone_batched / alone_single
    print(f"{args.model} ({args.precision}) at {size}x{size}, {args.requests} requests of 1 image per scenario, "
          f"max_batch_size={args.max_batch_size}, max_latency_ms={args.max_latency_ms:g}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'clients':>8} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for result in (sequential, concurrent):
        print(f"{result.clients:>8} {result.images_per_s:>9.2f} "
              f"{result.percentile(50):>8.1f} {result.percentile(99):>8.1f}")
    speedup = concurrent.images_per_s / sequential.images_per_s
    print(f"speed-up with {args.concurrency} clients: {speedup:.2f}x "
          f"(mean batch with {args.concurrency} clients: {mean_batch:.2f})")
    print(f"model alone: {alone_single:.2f} img/s at batch 1, {alone_batched:.2f} at batch {args.concurrency} "
          f"(the most batching can gain: {ceiling:.2f}x)")
    figures = {
        "model": args.model, "precision": args.precision, "size": size, "requests": args.requests,
        "sequential": {"images_per_s": sequential.images_per_s, "p50_ms": sequential.percentile(50),
                       "p99_ms": sequential.percentile(99)},
        "concurrent": {"clients": args.concurrency, "images_per_s": concurrent.images_per_s,
                       "p50_ms": concurrent.percentile(50), "p99_ms": concurrent.percentile(99)},
        "speedup": speedup, "mean_batch_concurrent": mean_batch,
        "model_alone": {"batch_1_images_per_s": alone_single, f"batch_{args.concurrency}_images_per_s": alone_batched,
                        "ceiling": ceiling},
    }
    print(json.dumps(figures))
    record_if_asked(args, figures)
    return 0


def _engine_round(args: argparse.Namespace, engine: str) -> dict[str, float]:
    """One engine, started fresh: warm-up, then ``--requests`` at ``--concurrency`` clients."""
    if engine == "triton":
        process, url, _ = _start_triton(args)
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    else:
        process, url = _start_server(args)
    try:
        size = httpx.get(f"{url}/v2/models/{SERVED}").json()["inputs"][0]["shape"][2]
        asyncio.run(_drive(url, args.concurrency, 2 * args.concurrency, size))
        result = asyncio.run(_drive(url, args.concurrency, args.requests, size))
    finally:
        process.terminate()
        process.wait(60)
    return {"images_per_s": result.images_per_s, "p50_ms": result.percentile(50), "p99_ms": result.percentile(99),
            "size": size}


def _compare_engines(args: argparse.Namespace) -> int:
    if args.precision != "fp32":
        raise SystemExit("the triton engine serves the fp32 ONNX export: compare engines at --precision fp32")
    engines = ("fastapi", "triton") if args.engine == "both" else (args.engine,)
    rounds: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    for _ in range(args.rounds):
        for engine in engines:
            rounds[engine].append(_engine_round(args, engine))
    size = int(next(iter(rounds.values()))[0]["size"])
    print(f"{args.model} fp32 at {size}x{size}, {args.concurrency} clients x {args.requests} requests of 1 image, "
          f"max_batch_size={args.max_batch_size}, queue delay {args.max_latency_ms:g} ms, {args.rounds} round(s)")
    print(f"{'engine':>8} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    summary = {}
    for engine, results in rounds.items():
        best = max(results, key=lambda r: r["images_per_s"])
        summary[engine] = best
        print(f"{engine:>8} {best['images_per_s']:>9.2f} {best['p50_ms']:>8.1f} {best['p99_ms']:>8.1f}")
    figures = {"model": args.model, "size": size, "clients": args.concurrency, "requests": args.requests,
               "rounds": rounds, "best": summary}
    print(json.dumps(figures))
    record_if_asked(args, figures)
    return 0


def _batch_totals(url: str) -> tuple[float, float]:
    """(images, forward passes) the server's batcher has run so far, from /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(("res2net_batch_size_sum", "res2net_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    return values["res2net_batch_size_sum"], values["res2net_batch_size_count"]


if __name__ == "__main__":
    sys.exit(main())
