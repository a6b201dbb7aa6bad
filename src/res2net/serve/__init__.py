"""KServe v2 / Open Inference Protocol HTTP server with dynamic batching.

``create_app(runner, served_name=...)`` builds the FastAPI app around a :class:`ModelRunner`
(:class:`TorchRunner` for a PyTorch module, ``OnnxRunner`` for an ONNX export);
``res2net serve`` (``add_serve_parser`` / ``run_serve``) builds a runner from a model name,
checkpoint or ``.onnx`` file and serves it with uvicorn.
"""

from .app import create_app
from .batcher import DynamicBatcher
from .errors import RequestError
from .protocol import InferRequest, decode_request
from .runner import ModelRunner, RunnerInfo, TorchRunner

__all__ = [
    "DynamicBatcher",
    "InferRequest",
    "ModelRunner",
    "RequestError",
    "RunnerInfo",
    "TorchRunner",
    "create_app",
    "decode_request",
]
