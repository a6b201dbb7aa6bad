"""Deployment artifacts for NVIDIA Triton Inference Server and KServe.

``export --format triton`` writes a model repository a user copies into NGC's Triton container:

    REPO/<name>/config.pbtxt, labels.txt, 1/model.onnx        the classifier (onnxruntime_onnx platform)
    REPO/<name>_preprocess/config.pbtxt, 1/model.py, 1/preprocess.json   encoded image -> input tensor
    REPO/<name>_ensemble/config.pbtxt, 1/                     image BYTES -> logits, the two chained

The classifier takes ``input`` FP32 ``[N, 3, H, W]`` and returns ``logits`` (with the class names
as Triton's ``label_filename``, so a client's ``class_count`` gives top-k labels); the ensemble
takes ``image`` BYTES, the same names as ``res2net serve``. ``--runtime python`` writes the
classifier as a Python-backend model running onnxruntime instead (for servers without the
onnxruntime backend, such as the CPU build inside the nvidia-pytriton wheel), which takes
``input`` or ``image`` and returns ``logits`` and ``probabilities``, as ``res2net serve`` does. ``export --format
kserve`` writes the repository plus an ``InferenceService`` manifest for KServe's Triton runtime.

``config.pbtxt`` files are protobuf text of Triton's ``ModelConfig``; the tests parse every one
with Triton's own ``model_config_pb2`` (from tritonclient).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import UserError
from .onnx_runtime import INPUT_NAME, OUTPUT_NAME
from .session import PreprocessInfo

TEMPLATES = Path(__file__).with_name("triton_models")
IMAGE_INPUT = "image"
PROBABILITIES_NAME = "probabilities"


@dataclass(frozen=True)
class TritonOptions:
    """How the repository serves: batching, instances, device, precision, runtime."""

    max_batch_size: int = 16
    instances: int = 1
    gpu: bool = False
    precision: str = "fp32"
    runtime: str = "onnxruntime"
    queue_delay_us: int = 2000
    #: Decoded pixels the Python-backend models accept per image and per request (summed), checked
    #: from the image headers before decoding; the same limits as ``res2net serve``.
    max_image_pixels: int = 40_000_000
    max_request_pixels: int = 64_000_000

    def check(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1 or self.queue_delay_us < 0:
            raise UserError("--max-batch-size and --instances must be at least 1, the queue delay not negative")
        if self.precision not in ("fp32", "fp16"):
            raise UserError(f"Triton export precision must be fp32 or fp16 (TensorRT on --gpu), got "
                            f"{self.precision!r}; for int8 on CPU use `res2net serve --precision int8`")
        if self.precision == "fp16" and not self.gpu:
            raise UserError("--precision fp16 is TensorRT's half precision and needs --gpu")
        if self.runtime not in ("onnxruntime", "python"):
            raise UserError(f"--runtime must be onnxruntime or python, got {self.runtime!r}")
        if self.runtime == "python" and self.gpu:
            raise UserError("--runtime python runs onnxruntime on CPU; --gpu uses the onnxruntime backend")

    @property
    def preferred_batch_sizes(self) -> list[int]:
        sizes = [s for s in (4, 8, 16, 32, 64) if s <= self.max_batch_size]
        return sizes or [self.max_batch_size]


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor(kind: str, name: str, dtype: str, dims: Sequence[int], extra: str = "") -> str:
    """One ``input [...]`` / ``output [...]`` block with a single tensor."""
    return _tensors(kind, [(name, dtype, dims, extra)])


def _tensors(kind: str, tensors: Sequence[tuple[str, str, Sequence[int], str]]) -> str:
    """An ``input [...]`` / ``output [...]`` block: (name, data type, dims, extra fields) each."""
    entries = [f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: {_dims(dims)}\n{extra}  }}'
               for name, dtype, dims, extra in tensors]
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def _instance_group(options: TritonOptions) -> str:
    kind = "KIND_GPU" if options.gpu else "KIND_CPU"
    return f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {kind}\n  }}\n]\n"


def classifier_config(name: str, info: PreprocessInfo, options: TritonOptions) -> str:
    """``config.pbtxt`` of the classifier: dynamic batching, instances, labels, warm-up, TensorRT.

    The Python-backend classifier also takes encoded images and returns probabilities, so a
    client sees the same model as ``res2net serve`` shows."""
    labels = '    label_filename: "labels.txt"\n'
    if options.runtime == "python":
        head = (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {options.max_batch_size}\n'
                + _tensors("input", [(INPUT_NAME, "TYPE_FP32", info.input_size, "    optional: true\n"),
                                     (IMAGE_INPUT, "TYPE_STRING", [1], "    optional: true\n")])
                + _tensors("output", [(OUTPUT_NAME, "TYPE_FP32", [info.num_classes], labels),
                                      (PROBABILITIES_NAME, "TYPE_FP32", [info.num_classes], labels)]))
    else:
        head = (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {options.max_batch_size}\n'
                + _tensor("input", INPUT_NAME, "TYPE_FP32", info.input_size)
                + _tensor("output", OUTPUT_NAME, "TYPE_FP32", [info.num_classes], labels))
    text = (
        head
        + f"dynamic_batching {{\n  preferred_batch_size: {_dims(options.preferred_batch_sizes)}\n"
        f"  max_queue_delay_microseconds: {options.queue_delay_us}\n}}\n"
        + _instance_group(options)
        + f'model_warmup [\n  {{\n    name: "zeros"\n    batch_size: 1\n    inputs {{\n      key: "{INPUT_NAME}"\n'
        f"      value {{\n        data_type: TYPE_FP32\n        dims: {_dims(info.input_size)}\n"
        f"        zero_data: true\n      }}\n    }}\n  }}\n]\n"
    )
    if options.gpu:
        precision = "FP16" if options.precision == "fp16" else "FP32"
        text += (
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator {\n"
            '      name: "tensorrt"\n'
            f'      parameters {{\n        key: "precision_mode"\n        value: "{precision}"\n      }}\n'
            '      parameters {\n        key: "max_workspace_size_bytes"\n        value: "1073741824"\n      }\n'
            "    }\n  }\n}\n"
        )
    return text


def preprocess_config(name: str, info: PreprocessInfo, options: TritonOptions) -> str:
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {options.max_batch_size}\n'
        + _tensor("input", IMAGE_INPUT, "TYPE_STRING", [1])
        + _tensor("output", INPUT_NAME, "TYPE_FP32", info.input_size)
        + _instance_group(TritonOptions(instances=options.instances))
    )


def ensemble_config(name: str, preprocess: str, classifier: str, info: PreprocessInfo, options: TritonOptions) -> str:
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {options.max_batch_size}\n'
        + _tensor("input", IMAGE_INPUT, "TYPE_STRING", [1])
        + _tensor("output", OUTPUT_NAME, "TYPE_FP32", [info.num_classes], '    label_filename: "labels.txt"\n')
        + "ensemble_scheduling {\n"
        f'  step [\n    {{\n      model_name: "{preprocess}"\n      model_version: -1\n'
        f'      input_map {{\n        key: "{IMAGE_INPUT}"\n        value: "{IMAGE_INPUT}"\n      }}\n'
        f'      output_map {{\n        key: "{INPUT_NAME}"\n        value: "preprocessed"\n      }}\n    }},\n'
        f'    {{\n      model_name: "{classifier}"\n      model_version: -1\n'
        f'      input_map {{\n        key: "{INPUT_NAME}"\n        value: "preprocessed"\n      }}\n'
        f'      output_map {{\n        key: "{OUTPUT_NAME}"\n        value: "{OUTPUT_NAME}"\n      }}\n'
        "    }\n  ]\n}\n"
    )


def write_triton_repository(
    onnx_model: bytes, repository: Path, name: str, info: PreprocessInfo, options: TritonOptions
) -> list[Path]:
    """Write the three models under ``repository`` (replacing earlier versions of them); returns the
    ``config.pbtxt`` paths."""
    options.check()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"Triton model names are letters, digits, '_' and '-'; got {name!r}")
    names = {"classifier": name, "preprocess": f"{name}_preprocess", "ensemble": f"{name}_ensemble"}
    for model_name in names.values():
        shutil.rmtree(repository / model_name, ignore_errors=True)
        (repository / model_name / "1").mkdir(parents=True)
    classifier = repository / names["classifier"]
    (classifier / "1" / "model.onnx").write_bytes(onnx_model)
    for labelled in (classifier, repository / names["ensemble"]):
        (labelled / "labels.txt").write_text("\n".join(info.class_names) + "\n", encoding="utf-8")
    preprocessing = json.dumps({**info.to_dict(), "max_image_pixels": options.max_image_pixels,
                                "max_request_pixels": options.max_request_pixels}, indent=1) + "\n"
    if options.runtime == "python":
        shutil.copyfile(TEMPLATES / "classifier_onnxruntime.py", classifier / "1" / "model.py")
        shutil.copyfile(TEMPLATES / "preprocess.py", classifier / "1" / "res2net_preprocessing.py")
        (classifier / "1" / "preprocess.json").write_text(preprocessing)
    preprocess = repository / names["preprocess"]
    shutil.copyfile(TEMPLATES / "preprocess.py", preprocess / "1" / "model.py")
    (preprocess / "1" / "preprocess.json").write_text(preprocessing)
    configs = {
        classifier: classifier_config(names["classifier"], info, options),
        preprocess: preprocess_config(names["preprocess"], info, options),
        repository / names["ensemble"]: ensemble_config(names["ensemble"], names["preprocess"],
                                                        names["classifier"], info, options),
    }
    for folder, text in configs.items():
        (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    return [folder / "config.pbtxt" for folder in configs]


#: The HTTP port of KServe's ``kserve-tritonserver`` runtime (its ``--http-port``).
KSERVE_TRITON_HTTP_PORT = 8080


def kserve_manifest(name: str, options: TritonOptions, storage_uri: str) -> str:
    """A KServe ``InferenceService`` running the repository on KServe's Triton runtime (v2 protocol).

    Kubernetes restarts the container when tritonserver dies (a request can crash Triton 2.51's
    HTTP front end, see docs/serving.md); the liveness probe restarts it when it hangs, and the
    readiness probe keeps traffic away until the models are loaded again."""
    service = name.replace("_", "-").lower()
    limits = {"cpu": "4", "memory": "8Gi"} | ({"nvidia.com/gpu": "1"} if options.gpu else {})
    requests = {"cpu": "2", "memory": "4Gi"} | ({"nvidia.com/gpu": "1"} if options.gpu else {})
    lines = [
        "apiVersion: serving.kserve.io/v1beta1",
        "kind: InferenceService",
        "metadata:",
        f"  name: {service}",
        "  annotations:",
        '    serving.kserve.io/deploymentMode: "Serverless"',
        "spec:",
        "  predictor:",
        "    minReplicas: 1",
        "    model:",
        "      modelFormat:",
        "        name: triton",
        "      protocolVersion: v2",
        "      runtime: kserve-tritonserver",
        f"      storageUri: {storage_uri}",
        "      args:",
        "        - --strict-model-config=true",
        "      resources:",
        "        requests:",
        *[f'          {key}: "{value}"' for key, value in requests.items()],
        "        limits:",
        *[f'          {key}: "{value}"' for key, value in limits.items()],
        *_probe("livenessProbe", "/v2/health/live", initial_delay_s=60, failures=3),
        *_probe("readinessProbe", "/v2/health/ready", initial_delay_s=10, failures=1),
    ]
    return "\n".join(lines) + "\n"


def _probe(kind: str, path: str, *, initial_delay_s: int, failures: int) -> list[str]:
    return [f"      {kind}:", "        httpGet:", f"          path: {path}",
            f"          port: {KSERVE_TRITON_HTTP_PORT}", f"        initialDelaySeconds: {initial_delay_s}",
            "        periodSeconds: 10", f"        failureThreshold: {failures}"]


def export_model_repository(
    model: nn.Module, info: PreprocessInfo, output: Path, name: str, options: TritonOptions, *, opset: int = 17,
    kserve_storage_uri: str | None = None,
) -> list[Path]:
    """The BatchNorm-folded ONNX export of ``model`` as a Triton repository under ``output`` (and,
    with ``kserve_storage_uri``, under ``output/model_repository`` plus ``output/inferenceservice.yaml``)."""
    from .fold import fold_batchnorm
    from .onnx_runtime import onnx_bytes

    options.check()
    repository = output / "model_repository" if kserve_storage_uri is not None else output
    written = write_triton_repository(onnx_bytes(fold_batchnorm(model), info.input_size, opset), repository, name,
                                      info, options)
    if kserve_storage_uri is not None:
        manifest = output / "inferenceservice.yaml"
        manifest.write_text(kserve_manifest(name, options, kserve_storage_uri), encoding="utf-8")
        written.append(manifest)
    return written
