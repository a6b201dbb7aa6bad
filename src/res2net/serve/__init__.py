"""KServe v2 / Open Inference Protocol HTTP server with dynamic batching.

``create_app(runner, served_name=...)`` builds the FastAPI app around a :class:`ModelRunner`
(:class:`TorchRunner` for a model module, ``load_onnx_runner`` for an ONNX export);
``res2net serve`` (``add_serve_parser`` / ``run_serve`` in :mod:`res2net.serve.cli`) builds
a runner from a model name, checkpoint or ``.onnx`` file and serves it with uvicorn.

Names are imported on first use (PEP 562) so that importing ``res2net.serve.cli`` for the
console script does not require the optional FastAPI / uvicorn / prometheus dependencies.
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "create_app": "app",
    "DynamicBatcher": "batcher",
    "RequestError": "errors",
    "InferRequest": "protocol",
    "decode_request": "protocol",
    "ModelRunner": "runner",
    "RunnerInfo": "runner",
    "TorchRunner": "runner",
    "load_onnx_runner": "onnx_runner",
    "serve": "server",
    "add_serve_parser": "cli",
    "run_serve": "cli",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
