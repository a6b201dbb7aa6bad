"""Triton Python-backend model: the exported ONNX classifier run by onnxruntime, taking either
preprocessed tensors (``input``) or encoded images (``image``), like ``res2net serve``.

Written by ``res2net export --format triton --runtime python`` beside ``model.onnx``, for Triton
servers without the onnxruntime backend (the CPU ``tritonserver`` that ships in the
nvidia-pytriton wheel has only the Python backend). Both inputs are optional and a request
sends one of them; outputs are ``logits`` and ``probabilities``. Tensors cross the stub
boundary through DLPack rather than NumPy: the Python-backend stubs of Triton 2.51 were
compiled against NumPy 1 and hand NumPy 2 processes arrays with a wrong item size, while
DLPack does not involve NumPy's C layout. (BYTES have no DLPack form; they need NumPy 1 in the
models' environment.) Every request the dynamic batcher hands over runs in one onnxruntime call.
"""

import sys
from pathlib import Path

import onnxruntime
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

sys.path.insert(0, str(Path(__file__).parent))
from res2net_preprocessing import Preprocessor, client_error  # noqa: E402 - the copy beside this file


class TritonPythonModel:
    def initialize(self, args):
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        here = Path(__file__).parent
        self.session = onnxruntime.InferenceSession(str(here / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.preprocess = Preprocessor(here / "preprocess.json")

    def _batch(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "input")
        image = pb_utils.get_input_tensor_by_name(request, "image")
        if (tensor is None) == (image is None):
            raise ValueError("send exactly one of the inputs 'input' (FP32) and 'image' (BYTES)")
        if tensor is not None:
            return from_dlpack(tensor.to_dlpack()).float()
        try:
            return torch.from_numpy(self.preprocess.batch(image.as_numpy()))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot decode image: {exc}") from None

    def execute(self, requests):
        responses = [None] * len(requests)
        batches, owners = [], []
        for index, request in enumerate(requests):
            try:
                batches.append(self._batch(request))
                owners.append(index)
            except ValueError as exc:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=client_error(pb_utils, str(exc)))
        if batches:
            logits = self.session.run(["logits"], {"input": torch.cat(batches).contiguous().numpy()})[0]
            logits = torch.from_numpy(logits)
            probabilities = torch.softmax(logits, dim=1)
            sizes = [len(batch) for batch in batches]
            for index, part, probs in zip(owners, logits.split(sizes), probabilities.split(sizes)):
                outputs = [pb_utils.Tensor.from_dlpack("logits", to_dlpack(part.contiguous())),
                           pb_utils.Tensor.from_dlpack("probabilities", to_dlpack(probs.contiguous()))]
                responses[index] = pb_utils.InferenceResponse(output_tensors=outputs)
        return responses
