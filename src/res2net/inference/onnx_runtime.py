"""ONNX serialisation and onnxruntime execution behind an ``nn.Module`` interface.

Every backend of :func:`optimize_for_inference` starts from the ONNX export made here. onnxruntime runs it
where OpenVINO (the preferred backend, see :mod:`.optimize`) is not installed: fp32 through its CPU kernels and
int8 through its static quantisation, the next fastest in ``benchmarks/bench_inference.py``. Wrapping the session
in a module lets callers (predict, validate, the server) treat every backend and precision alike.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserError

if TYPE_CHECKING:
    import onnxruntime

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Calibration batches: large enough to give min/max statistics, small enough that the
# augmented (every activation is an output) model does not hold many full-size batches.
_CALIBRATION_BATCH = 8


def require_onnxruntime() -> None:
    """Fail with an installable hint instead of an ImportError deep in a call."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("onnxruntime is not installed: pip install 'res2net[export]'") from None


def onnx_bytes(model: nn.Module, example_input_size: tuple[int, int, int], opset: int = 17) -> bytes:
    """Serialise an eval-mode model to ONNX with dynamic batch, height and width axes.

    The TorchScript-based exporter is used (``dynamo=False``): it needs no extra package
    and handles every network in the family; its deprecation notice is silenced because
    the choice is deliberate.
    """
    example = torch.zeros(1, *example_input_size)
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def make_session(model: bytes | str | Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A CPU session using ``threads`` intra-op threads (default: torch's setting, so one
    ``torch.set_num_threads`` call governs every backend)."""
    require_onnxruntime()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModule(nn.Module):
    """Runs an ONNX graph (float32 NCHW in, float32 logits out) in onnxruntime.

    It has no parameters: the weights live in the session. ``onnx_model`` keeps the
    serialised graph so the module can be saved or inspected.
    """

    def __init__(self, onnx_model: bytes, *, precision: str) -> None:
        super().__init__()
        self.onnx_model = onnx_model
        self.precision = precision
        self.session = make_session(onnx_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous(): onnxruntime reads plain NCHW buffers, whatever layout came in.
        array = x.detach().to(torch.float32).contiguous().cpu().numpy()
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits)

    def extra_repr(self) -> str:
        return f"precision={self.precision}, backend=onnxruntime"


def _calibration_batches(images: torch.Tensor) -> Iterator[dict[str, object]]:
    for start in range(0, images.shape[0], _CALIBRATION_BATCH):
        yield {INPUT_NAME: images[start : start + _CALIBRATION_BATCH].to(torch.float32).contiguous().numpy()}


def quantize_int8(float_model: bytes, calibration_images: torch.Tensor) -> bytes:
    """Post-training static int8 quantisation of an fp32 ONNX graph.

    Activations are uint8 with ranges from the calibration images (min/max), weights
    int8 per output channel. The QOperator format (fused QLinearConv) was faster than
    QDQ on the development machine. The graph is first pre-processed (shape inference,
    constant folding) as onnxruntime recommends, which also removes the Identity nodes
    the exporter inserts for shared initialisers that the quantiser cannot follow.
    """
    require_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _calibration_batches(calibration_images)

        def get_next(self) -> dict[str, object] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="res2net-int8-") as tmp:
        work = Path(tmp)
        (work / "float.onnx").write_bytes(float_model)
        quant_pre_process(str(work / "float.onnx"), str(work / "prepared.onnx"), skip_symbolic_shape=True)
        quantize_static(
            str(work / "prepared.onnx"),
            str(work / "int8.onnx"),
            _Reader(),
            quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        return (work / "int8.onnx").read_bytes()
