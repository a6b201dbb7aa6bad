"""The server's memory under one oversized request (issue: a ~100 KB request of 1,000 images).

Starts ``res2net serve`` in a child process (the package on ``PYTHONPATH`` / installed, so an
older checkout can be measured the same way), waits until it is ready, and sends one KServe v2
request whose ``image`` input holds ``--images`` copies of an 8x8 PNG, ``--concurrent`` times at
once. Reports each response's status and seconds, and the server's resident memory before, at
its peak (``VmHWM``) and after. ``--record`` appends the figures to
``benchmarks/results/serve_memory.jsonl``.

    python benchmarks/bench_serve_memory.py --checkpoint last.pth [--model res2net50] [--images 1000]
        [--concurrent 1] [--server-pythonpath OTHER_CHECKOUT/src] [--record] [-- EXTRA SERVE FLAGS]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

from res2net.provenance import git_commit
from res2net.speed.results import append_row, make_row

RESULTS = Path(__file__).resolve().parent / "results" / "serve_memory.jsonl"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kib(pid: int, field: str) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(field))
    return int(line.split()[1])


def _request(images: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return json.dumps({"inputs": [{"name": "image", "shape": [images], "datatype": "BYTES",
                                   "data": [encoded] * images}]}).encode()


async def _send(url: str, body: bytes, count: int) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(timeout=900) as client:
        async def one() -> tuple[int, float]:
            started = time.monotonic()
            response = await client.post(url, content=body)
            return response.status_code, round(time.monotonic() - started, 2)
        return await asyncio.gather(*(one() for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", default="res2net50")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--server-pythonpath", help="PYTHONPATH for the server (another checkout's src/, to compare)")
    args, serve_flags = parser.parse_known_args()
    serve_flags = [f for f in serve_flags if f != "--"]
    port = _free_port()
    code = "import sys; from res2net.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ)
    if args.server_pythonpath:
        env["PYTHONPATH"] = args.server_pythonpath
    server = subprocess.Popen([sys.executable, "-c", code, "serve", "--model", args.model, "--checkpoint",
                               args.checkpoint, "--port", str(port), *serve_flags],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"server did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.5)
        before = _status_kib(server.pid, "VmRSS:")
        results = asyncio.run(_send(f"{base}/v2/models/{args.model}/infer", _request(args.images), args.concurrent))
        figures = {"responses": [{"status": s, "seconds": t} for s, t in results],
                   "rss_before_mib": round(before / 1024),
                   "rss_peak_mib": round(_status_kib(server.pid, "VmHWM:") / 1024),
                   "rss_after_mib": round(_status_kib(server.pid, "VmRSS:") / 1024)}
        figures["rss_growth_mib"] = figures["rss_after_mib"] - figures["rss_before_mib"]
        ready = httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        figures["ready_after"] = ready
    finally:
        server.terminate()
        server.wait(60)
    print(json.dumps(figures))
    if args.record:
        append_row(RESULTS, make_row("serve_memory", figures, folder=Path(__file__).resolve().parent, settings={
            "model": args.model, "images": args.images, "concurrent": args.concurrent, "serve_flags": serve_flags,
            "server_pythonpath": args.server_pythonpath,
            "server_commit": git_commit(Path(args.server_pythonpath).parent) if args.server_pythonpath else None}))


if __name__ == "__main__":
    main()
