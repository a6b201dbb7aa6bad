"""Triton Python-backend model: the exported ONNX classifier run by onnxruntime.

Written by ``res2net export --format triton --runtime python`` beside ``model.onnx``, for Triton
servers without the onnxruntime backend (the CPU ``tritonserver`` that ships in the
nvidia-pytriton wheel has only the Python backend). Tensors cross the stub boundary through
DLPack rather than ``as_numpy()``: the Python-backend stubs of Triton 2.51 were compiled against
NumPy 1 and hand NumPy 2 processes arrays with a wrong item size, while DLPack does not involve
NumPy's C layout at all. Every request the dynamic batcher hands over is run in one
onnxruntime call.
"""

from pathlib import Path

import onnxruntime
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack


class TritonPythonModel:
    def initialize(self, args):
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = Path(__file__).with_name("model.onnx")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batches = [from_dlpack(pb_utils.get_input_tensor_by_name(r, "input").to_dlpack()) for r in requests]
        sizes = [len(batch) for batch in batches]
        logits = self.session.run(["logits"], {"input": torch.cat(batches).contiguous().numpy()})[0]
        responses = []
        for part in torch.from_numpy(logits).split(sizes):
            output = pb_utils.Tensor.from_dlpack("logits", to_dlpack(part.contiguous()))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
