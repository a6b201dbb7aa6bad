"""res2net: the Res2Net family for PyTorch.

``create_model`` builds any member of the family and loads weights from every source users
have (our checkpoints, the official ``.pth`` files, timm, MindCV ``.ckpt``), attaching what
the weights are as ``model.pretrained_cfg``; ``list_models`` / ``list_pretrained`` list the
names and ``name.tag`` weights, ``register_weights`` adds weights of your own;
``resolve_data_config`` / ``create_transform`` give the preprocessing the weights expect;
``optimize_for_inference`` turns a model into its fastest measured form for fp32, bf16 or
int8 inference.
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "DataConfig": "data",
    "create_transform": "data",
    "resolve_data_config": "data",
    "create_model": "factory",
    "optimize_for_inference": "inference.optimize",
    "PretrainedCfg": "models",
    "list_models": "models",
    "list_pretrained": "models",
    "register_model": "models",
    "register_weights": "models",
    "__version__": "version",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
