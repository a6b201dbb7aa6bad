"""``res2net serve`` as a process: a checkpoint served end to end, SIGTERM draining, load.

Servers are started by running this file as a script, which parses ``serve`` arguments
with ``add_serve_parser`` and calls ``run_serve`` exactly as the ``res2net`` console script
does (one-line error and non-zero exit on a ``UserError``). The model is a 10-class
res2net50 checkpoint whose training config says 16x16 inputs, so it loads through the real
checkpoint and ``load_inference_model`` path and still runs fast.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from res2net.checkpoint.training import TrainingCheckpoint, recipe_pretrained_cfg, write_training_checkpoint
from res2net.config import load_config
from res2net.errors import UserError
from res2net.inference.calibration import sample_files
from res2net.inference.session import PreprocessInfo, load_model, preprocess_images
from res2net.models import build_model
from res2net.serve import cli as serve_cli
from res2net.serve.cli import add_serve_parser, run_serve

MODEL = "res2net50"
SIZE = 16
NUM_CLASSES = 10
CLASS_NAMES = [f"kind_{i}" for i in range(NUM_CLASSES)]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="res2net")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _main(argv: list[str]) -> int:
    try:
        return run_serve(_parse(argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One of our training checkpoints: weights, class names and a recipe giving the input size."""
    torch.manual_seed(0)
    model = build_model(MODEL, num_classes=NUM_CLASSES)
    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    config = load_config(["--model", MODEL, "--image_resize", str(SIZE)], purpose="train").to_dict()
    write_training_checkpoint(
        TrainingCheckpoint(
            model_name=MODEL, model=model.state_dict(), optimizer={}, scaler={}, schedule={}, epoch=1, step=1,
            rng={}, config=config, class_names=CLASS_NAMES,
            pretrained_cfg=recipe_pretrained_cfg(MODEL, config, CLASS_NAMES, None).to_dict(),
        ),
        path,
    )
    return path


class ServerProcess:
    """``serve ARGS --port 0`` in a child process; the URL comes from its first line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", *args, "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("serving on "):
            self.stop()
            pytest.fail(f"server did not start: {first}{self.process.stdout.read()}")
        self.url = first.split()[-1]
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while not self._ready():
            assert time.monotonic() < deadline and self.process.poll() is None, "".join(self.output)
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def _drain(self) -> None:
        assert self.process.stdout is not None
        self.output.extend(self.process.stdout)

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
        return int(kib) * 1024

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture(scope="module")
def served(checkpoint: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", MODEL, "--checkpoint", str(checkpoint), "--served-name", "tiny")
    yield server
    server.stop()


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _infer(pixels: torch.Tensor) -> dict[str, object]:
    tensor = {"name": "input", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels.flatten().tolist()}
    return {"inputs": [tensor]}


def test_checkpoint_is_served_with_its_preprocessing_and_labels(served: ServerProcess, checkpoint: Path) -> None:
    meta = httpx.get(f"{served.url}/v2/models/tiny").json()
    assert meta["inputs"][0]["shape"] == [-1, 3, SIZE, SIZE] and meta["outputs"][0]["shape"] == [-1, NUM_CLASSES]
    eager, info = load_model(MODEL, checkpoint_path=checkpoint)
    image = _png(1)
    header = json.dumps({
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(image) + 4}}
        ],
        "outputs": [{"name": "logits"}, {"name": "probabilities", "parameters": {"classification": 2}}],
    }).encode()
    body = header + len(image).to_bytes(4, "little") + image
    response = httpx.post(
        f"{served.url}/v2/models/tiny/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    logits, top = response.json()["outputs"]
    with torch.inference_mode():
        expected = eager(preprocess_images([Image.open(io.BytesIO(image))], info))
    torch.testing.assert_close(torch.tensor(logits["data"]).reshape(1, NUM_CLASSES), expected, rtol=1e-4, atol=1e-4)
    assert top["data"][0].split(":")[2] == CLASS_NAMES[int(expected.argmax())]


def test_load_1000_requests_no_5xx_and_flat_memory(served: ServerProcess) -> None:
    request = json.dumps(_infer(torch.randn(1, 3, SIZE, SIZE))).encode()
    headers = {"Content-Type": "application/json"}

    async def load(total: int) -> dict[int, int]:
        statuses: dict[int, int] = {}
        pending = iter(range(total))
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:

            async def client() -> None:
                for _ in pending:
                    response = await http.post("/v2/models/tiny/infer", content=request, headers=headers)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            await asyncio.gather(*(client() for _ in range(16)))
        return statuses

    assert asyncio.run(load(150)) == {200: 150}  # warm-up: allocator arenas and thread pools settle
    rss_before = served.rss_bytes()
    batches_before = served.metric("res2net_batch_size_count")
    started = time.monotonic()
    statuses = asyncio.run(load(1000))
    elapsed = time.monotonic() - started
    rss_after = served.rss_bytes()
    assert statuses == {200: 1000}
    print(f"1000 requests in {elapsed:.1f} s; server RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB")
    assert (rss_after - rss_before) / 2**20 < 40, "server memory grew over 1000 requests"
    assert served.metric("res2net_batch_size_count") - batches_before < 1000  # concurrent requests were batched


def test_sigterm_drains_in_flight_requests(checkpoint: Path) -> None:
    server = ServerProcess("--model", MODEL, "--checkpoint", str(checkpoint))
    try:
        result: dict[str, httpx.Response] = {}
        body = json.dumps(_infer(torch.randn(1, 3, SIZE, SIZE))).encode()
        started = threading.Event()

        def slow_upload() -> Iterator[bytes]:
            """The body in three parts over ~1.5 s, so SIGTERM lands while the request is in flight."""
            third = len(body) // 3
            yield body[:third]
            started.set()
            time.sleep(1.0)
            yield body[third : 2 * third]
            time.sleep(0.5)
            yield body[2 * third :]

        def send() -> None:
            result["response"] = httpx.post(
                f"{server.url}/v2/models/{MODEL}/infer", content=slow_upload(),
                headers={"Content-Type": "application/json"}, timeout=30,
            )

        request = threading.Thread(target=send)
        request.start()
        assert started.wait(10)
        time.sleep(0.2)
        server.process.send_signal(signal.SIGTERM)
        request.join(30)
        assert result["response"].status_code == 200
        assert len(result["response"].json()["outputs"][0]["data"]) == NUM_CLASSES
        assert server.process.wait(30) == 0, "".join(server.output)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/v2/health/live")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "res2net_nonexistent"], "res2net_nonexistent"),
        (["--model", MODEL, "--checkpoint", "{garbage}"], "garbage"),
        (["--model", MODEL, "--checkpoint", "{missing}"], "not found"),
        (["--onnx", "{missing}"], "not found"),
        (["--model", MODEL, "--precision", "int8"], "--calibration-dir"),
        (["--model", MODEL, "--calibration-dir", "{missing}"], "only used with --precision int8"),
        (["--onnx", "{garbage}", "--precision", "bf16"], "--precision"),
        (["--model", MODEL, "--max-batch-size", "0"], "--max-batch-size"),
        ([], "--model"),
    ],
)
def test_bad_models_and_flags_are_one_line_errors(argv: list[str], message: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    argv = [arg.format(garbage=garbage, missing=tmp_path / "missing.pt") for arg in argv]
    with pytest.raises(UserError) as err:
        run_serve(_parse(["serve", *argv, "--port", "0"]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_checkpoint_process_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    done = subprocess.run(
        [sys.executable, __file__, "serve", "--model", MODEL, "--checkpoint", str(garbage), "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def test_the_runner_is_built_on_a_thread_that_then_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's OpenMP team must not outlive it (it would slow the batcher's thread; see batcher)."""
    builders: list[threading.Thread] = []

    def build(args: argparse.Namespace) -> str:
        builders.append(threading.current_thread())
        return "runner"

    monkeypatch.setattr(serve_cli, "_build_runner", build)
    assert serve_cli.build_runner(argparse.Namespace()) == "runner"
    (builder,) = builders
    assert builder is not threading.main_thread() and not builder.is_alive()


def test_calibration_images_are_a_seeded_sample_and_a_bad_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = PreprocessInfo(
        input_size=(3, SIZE, SIZE), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875,
        interpolation="bilinear", class_names=None,
    )
    rng = np.random.default_rng(0)
    for index in (2, 0, 1):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    in_order = [Image.open(tmp_path / f"{index}.png").convert("RGB") for index in range(3)]
    torch.testing.assert_close(serve_cli.calibration_images(tmp_path, info), preprocess_images(in_order, info))
    assert f"int8 calibration: 3 images (all) in {tmp_path}" in capsys.readouterr().err

    (tmp_path / "3.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"calibration image .*3\.png cannot be read"):
        serve_cli.calibration_images(tmp_path, info)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no images"):
        serve_cli.calibration_images(empty, info)


def test_more_images_than_needed_are_sampled_with_a_fixed_seed(tmp_path: Path) -> None:
    files = [tmp_path / f"{index:03d}.png" for index in range(100)]
    first = sample_files(files, 10, seed=0)
    assert first == sample_files(files, 10, seed=0) and first == sorted(first)
    assert first != files[:10] and first != sample_files(files, 10, seed=1)
    assert sample_files(files, 200, seed=0) == files
