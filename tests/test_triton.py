"""Triton and KServe: exported repositories parsed by Triton's own protobuf, the preprocessing
model checked against ours, and the real ``tritonserver`` serving an export and ``serve --engine
triton`` (HTTP and gRPC with tritonclient, top-k labels, bad requests, 1,000 requests at 16
concurrent clients, SIGTERM)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import types
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from google.protobuf import text_format
from PIL import Image

from res2net import create_model
from res2net.errors import UserError
from res2net.inference.session import PreprocessInfo, eval_transform
from res2net.inference.triton_repo import TEMPLATES, TritonOptions, export_model_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
PYTRITON_WHEEL = "nvidia-pytriton==0.7.0"
INFO = PreprocessInfo((3, 16, 16), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875, "bicubic",
                      [f"digit {i}" for i in range(10)])


def _parse(path: Path) -> object:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("res2net50", num_classes=10).eval()


@pytest.mark.parametrize("options", [
    TritonOptions(), TritonOptions(gpu=True, precision="fp16", instances=2, max_batch_size=32),
    TritonOptions(runtime="python", max_batch_size=4, queue_delay_us=500),
], ids=["cpu", "gpu-fp16", "python"])
def test_every_config_parses_with_tritons_protobuf(options: TritonOptions, small_model: torch.nn.Module,
                                                    tmp_path: Path) -> None:
    written = export_model_repository(small_model, INFO, tmp_path, "digits", options)
    classifier, preprocess, ensemble = (_parse(p) for p in written)
    assert classifier.max_batch_size == options.max_batch_size
    assert list(classifier.input[0].dims) == [3, 16, 16]  # the batch dimension is Triton's
    assert classifier.input[0].name == "input" and classifier.output[0].name == "logits"
    assert list(classifier.output[0].dims) == [10] and classifier.output[0].label_filename == "labels.txt"
    assert max(classifier.dynamic_batching.preferred_batch_size) <= options.max_batch_size
    assert classifier.dynamic_batching.max_queue_delay_microseconds == options.queue_delay_us
    assert classifier.instance_group[0].count == options.instances
    kind = model_config_pb2.ModelInstanceGroup.KIND_GPU if options.gpu else model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert classifier.instance_group[0].kind == kind
    assert classifier.model_warmup[0].inputs["input"].zero_data
    if options.runtime == "python":  # the same inputs and outputs as `res2net serve`
        assert classifier.backend == "python" and (tmp_path / "digits" / "1" / "model.py").is_file()
        assert [(t.name, t.optional) for t in classifier.input] == [("input", True), ("image", True)]
        assert [t.name for t in classifier.output] == ["logits", "probabilities"]
    else:
        assert classifier.platform == "onnxruntime_onnx"
    accelerators = classifier.optimization.execution_accelerators.gpu_execution_accelerator
    if options.gpu:
        assert accelerators[0].name == "tensorrt" and accelerators[0].parameters["precision_mode"] == "FP16"
    else:
        assert not accelerators
    assert preprocess.backend == "python" and preprocess.input[0].data_type == model_config_pb2.TYPE_STRING
    assert ensemble.platform == "ensemble" and ensemble.input[0].name == "image"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["digits_preprocess", "digits"]
    assert steps[0].output_map["input"] == steps[1].input_map["input"]
    assert (tmp_path / "digits" / "labels.txt").read_text().splitlines() == INFO.class_names
    limits = {"max_image_pixels": options.max_image_pixels, "max_request_pixels": options.max_request_pixels}
    assert json.loads((tmp_path / "digits_preprocess" / "1" / "preprocess.json").read_text()) == {
        **INFO.to_dict(), **limits}


def test_invalid_options_are_refused(small_model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs --gpu"):
        export_model_repository(small_model, INFO, tmp_path, "m", TritonOptions(precision="fp16"))
    with pytest.raises(UserError, match="int8"):
        export_model_repository(small_model, INFO, tmp_path, "m", TritonOptions(precision="int8"))
    with pytest.raises(UserError, match="model names"):
        export_model_repository(small_model, INFO, tmp_path, "bad name", TritonOptions())


def test_kserve_manifest(small_model: torch.nn.Module, tmp_path: Path) -> None:
    written = export_model_repository(small_model, INFO, tmp_path, "res2net50_digits", TritonOptions(gpu=True),
                                      kserve_storage_uri="s3://bucket/res2net")
    manifest = yaml.safe_load(written[-1].read_text())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "res2net50-digits"  # DNS-1123: no underscores
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://bucket/res2net"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # A crashed or hung tritonserver is restarted by Kubernetes; traffic waits until the models are loaded.
    assert model["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert model["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert (tmp_path / "model_repository" / "res2net50_digits" / "1" / "model.onnx").is_file()


def _load_template(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A Triton Python-backend model file imported with a stand-in for Triton's utilities module."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location(f"template_{name}", TEMPLATES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_preprocessing_model_matches_our_eval_transform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = _load_template("preprocess", monkeypatch)
    info = PreprocessInfo((3, 24, 24), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), 0.875, "bicubic", ["a"])
    (tmp_path / "preprocess.json").write_text(json.dumps(info.to_dict()))
    preprocess = template.Preprocessor(tmp_path / "preprocess.json")
    rng = np.random.default_rng(0)
    for size in ((40, 31), (31, 57), (24, 24)):
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        ours = eval_transform(info)(image)
        theirs = torch.from_numpy(preprocess.batch(np.array([buffer.getvalue()], dtype=object))[0])
        assert theirs.shape == ours.shape
        # At most one grey level apart (uint8 rounding of the resized image), in very few pixels.
        difference = (theirs - ours).abs() * torch.tensor(info.std).view(3, 1, 1) * 255
        assert difference.max() < 1.01 and (difference > 0.5).float().mean() < 0.02, size


def test_preprocessing_model_refuses_pixels_over_its_limits_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same per-image and per-request pixel limits as `res2net serve`, read from the headers."""
    template = _load_template("preprocess", monkeypatch)
    info = PreprocessInfo((3, 8, 8), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), 1.0, "bilinear", ["a"])
    (tmp_path / "preprocess.json").write_text(json.dumps({**info.to_dict(), "max_image_pixels": 10_000,
                                                          "max_request_pixels": 15_000}))
    preprocess = template.Preprocessor(tmp_path / "preprocess.json")

    def png(width: int, height: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height)).save(buffer, format="PNG")
        return buffer.getvalue()

    assert preprocess.batch(np.array([png(100, 100)], dtype=object)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="image\\[0\\] is 101x100 pixels; the limit is 10000"):
        preprocess.batch(np.array([png(101, 100)], dtype=object))
    with pytest.raises(ValueError, match="hold 20000 pixels together; the limit is 15000"):
        preprocess.batch(np.array([png(100, 100), png(100, 100)], dtype=object))


# --- the real server -----------------------------------------------------------------------------


def _tritonserver() -> Path:
    """The tritonserver of an installed nvidia-pytriton, of $RES2NET_TRITONSERVER, or of the
    nvidia-pytriton wheel fetched once from the package index into a cache folder."""
    from res2net.serve.tritonserver import find_tritonserver

    try:
        return find_tritonserver().binary
    except UserError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "res2net-tests" / "pytriton-0.7.0"
    binary = cache / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                                  PYTRITON_WHEEL, "-d", str(cache)], capture_output=True, text=True, timeout=600)
        wheels = sorted(cache.glob("nvidia_pytriton-*.whl"))
        if fetched.returncode != 0 or not wheels:
            pytest.skip(f"no tritonserver here and the {PYTRITON_WHEEL} wheel could not be fetched: "
                        f"{fetched.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
            wheel.extractall(cache, members)
        wheels[0].unlink()
    binary.chmod(0o755)
    return binary


def _numpy1() -> Path:
    """NumPy 1.26 unpacked into a cache folder: the models' NumPy for BYTES inputs (see
    res2net.serve.tritonserver)."""
    target = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "res2net-tests" / "numpy1"
    if not (target / "numpy" / "__init__.py").is_file():
        target.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                                  "numpy>=1.26,<2", "-d", str(target)], capture_output=True, text=True, timeout=600)
        wheels = sorted(target.glob("numpy-*.whl"))
        if fetched.returncode != 0 or not wheels:
            pytest.skip(f"NumPy 1.x could not be fetched for the BYTES path: {fetched.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(target)
        wheels[0].unlink()
    return target


@pytest.fixture(scope="module")
def triton_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"RES2NET_TRITONSERVER": str(_tritonserver()), "RES2NET_TRITON_PYTHONPATH": str(_numpy1()),
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"})
    return env


def _encoded(path: Path) -> bytes:
    return path.read_bytes()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _clients(http_port: int, grpc_port: int) -> tuple[object, object]:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return (httpclient.InferenceServerClient(f"127.0.0.1:{http_port}", concurrency=16),
            grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"))


def _infer(client: object, model: str, batch: np.ndarray, class_count: int = 0) -> object:
    module = sys.modules[type(client).__module__.rsplit(".", 1)[0]]
    tensor = module.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    outputs = [module.InferRequestedOutput("logits", class_count=class_count)] if class_count else None
    return client.infer(model, [tensor], outputs=outputs)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_bundled_tritonserver_serves_an_exported_repository(learned_run: tuple[Path, float], digits_dir: Path,
                                                            tmp_path: Path, triton_env: dict[str, str]) -> None:
    from tritonclient.utils import InferenceServerException

    from res2net.inference.session import load_model
    from res2net.serve.tritonserver import run_tritonserver

    checkpoint = learned_run[0] / "last.pth"
    exported = subprocess.run([str(Path(sys.executable).with_name("res2net")), "export", "--model", "res2net50",
                               "--checkpoint", str(checkpoint), "--format", "triton", "--runtime", "python",
                               "--output", str(tmp_path / "repo"), "--name", "digits", "--max-batch-size", "8"],
                              capture_output=True, text=True, env=triton_env, timeout=600)
    assert exported.returncode == 0, exported.stderr
    model, info = load_model("res2net50", checkpoint_path=checkpoint)
    batch = np.random.default_rng(0).standard_normal((3, *info.input_size)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(batch)).numpy()
    http_port, grpc_port, metrics_port = _free_ports(3)
    images = sorted((digits_dir / "val").glob("*/*.jpg"))[::60][:4]
    with torch.no_grad():
        pixels = torch.stack([eval_transform(info)(Image.open(p).convert("RGB")) for p in images])
        image_reference = model(pixels).numpy()
    for name in ("RES2NET_TRITONSERVER", "RES2NET_TRITON_PYTHONPATH"):
        os.environ[name] = triton_env[name]
    try:
        with run_tritonserver(tmp_path / "repo", http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                              log=tmp_path / "triton.log"):
            http, grpc = _clients(http_port, grpc_port)
            for client in (http, grpc):
                logits = _infer(client, "digits", batch).as_numpy("logits")
                np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
            top = _infer(http, "digits", batch, class_count=2).as_numpy("logits")
            expected = [info.class_names[i] for i in reference.argmax(1)]
            assert [row[0].decode().split(":", 2)[2] for row in top] == expected
            with pytest.raises(InferenceServerException) as bad:  # wrong image size: refused, not crashed
                _infer(http, "digits", np.zeros((1, 3, 5, 5), np.float32))
            assert "400" in str(bad.value) or "unexpected shape" in str(bad.value)
            np.testing.assert_allclose(_infer(grpc, "digits", batch).as_numpy("logits"), reference, rtol=1e-4,
                                       atol=1e-4)
            # Encoded images through the ensemble (preprocessing model -> classifier), both protocols.
            encoded = np.array([[_encoded(p)] for p in images], dtype=object)
            for client in (http, grpc):
                module = sys.modules[type(client).__module__.rsplit(".", 1)[0]]
                tensor = module.InferInput("image", list(encoded.shape), "BYTES")
                tensor.set_data_from_numpy(encoded)
                result = client.infer("digits_ensemble", [tensor])  # type: ignore[attr-defined]
                np.testing.assert_allclose(result.as_numpy("logits"), image_reference, atol=0.05)
                labelled = client.infer("digits_ensemble", [tensor], outputs=[  # type: ignore[attr-defined]
                    module.InferRequestedOutput("logits", class_count=1)]).as_numpy("logits")
                predicted = [info.class_names[i] for i in image_reference.argmax(1)]  # what `res2net predict` says
                assert [row[0].decode().split(":", 2)[2] for row in labelled] == predicted
                # ... and on the classifier itself, which answers probabilities too, as `res2net serve` does.
                direct = client.infer("digits", [tensor], outputs=[  # type: ignore[attr-defined]
                    module.InferRequestedOutput("probabilities")]).as_numpy("probabilities")
                np.testing.assert_allclose(direct, torch.softmax(torch.from_numpy(image_reference), 1).numpy(),
                                           atol=0.01)
            tensor = sys.modules["tritonclient.http"].InferInput("image", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[b"not an image"]], dtype=object))
            for model_name in ("digits_ensemble", "digits"):
                with pytest.raises(InferenceServerException, match="cannot decode image"):
                    http.infer(model_name, [tensor])  # type: ignore[attr-defined]
            assert _infer(http, "digits", batch).as_numpy("logits").shape == (3, 10)  # still serving
    finally:
        for name in ("RES2NET_TRITONSERVER", "RES2NET_TRITON_PYTHONPATH"):
            os.environ.pop(name, None)


@pytest.mark.slow
def test_serve_engine_triton_under_load_and_sigterm(learned_run: tuple[Path, float], tmp_path: Path,
                                                    triton_env: dict[str, str]) -> None:
    import urllib.request

    http_port, grpc_port, metrics_port = _free_ports(3)
    command = [str(Path(sys.executable).with_name("res2net")), "serve", "--engine", "triton", "--model", "res2net50",
               "--checkpoint", str(learned_run[0] / "last.pth"), "--served-name", "digits", "--port", str(http_port),
               "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port), "--max-batch-size", "8"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=triton_env)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert "Triton serving 'digits'" in line, server.stderr.read()  # type: ignore[union-attr]
        http, grpc = _clients(http_port, grpc_port)
        sample = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
        expected = _infer(grpc, "digits", sample).as_numpy("logits")

        def client_run(worker: int) -> list[bool]:
            """One of 16 concurrent clients (half HTTP, half gRPC; each its own connection)."""
            client = _clients(http_port, grpc_port)[worker % 2]
            share = range(worker, 1000, 16)
            return [np.allclose(_infer(client, "digits", sample).as_numpy("logits"), expected, atol=1e-5)
                    for _ in share]

        with ThreadPoolExecutor(16) as pool:
            answers = [ok for part in pool.map(client_run, range(16)) for ok in part]
        assert all(answers) and len(answers) == 1000
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        success = [ln for ln in metrics.splitlines() if ln.startswith("nv_inference_request_success{")
                   and 'model="digits"' in ln]
        assert success and float(success[0].rsplit(" ", 1)[1]) >= 1001
        batches = [ln for ln in metrics.splitlines() if ln.startswith("nv_inference_exec_count{")
                   and 'model="digits"' in ln]
        assert float(batches[0].rsplit(" ", 1)[1]) < 1001, "the dynamic batcher merged no requests"
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
        assert "Triton stopped" in server.stdout.read()  # type: ignore[union-attr]
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.slow
def test_serve_engine_triton_port_in_use(learned_run: tuple[Path, float], triton_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_port, metrics_port = _free_ports(2)
        command = [str(Path(sys.executable).with_name("res2net")), "serve", "--engine", "triton", "--model",
                   "res2net50", "--checkpoint", str(learned_run[0] / "last.pth"), "--port", str(port),
                   "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)]
        failed = subprocess.run(command, capture_output=True, text=True, env=triton_env, timeout=300)
    assert failed.returncode != 0 and failed.stderr.startswith("error: tritonserver exited")
    assert "Traceback" not in failed.stderr
