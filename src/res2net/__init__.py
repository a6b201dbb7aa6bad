"""res2net: the Res2Net family for PyTorch.

``create_model`` builds any member of the family and loads weights from every source users
have (our checkpoints, the official ``.pth`` files, timm, MindCV ``.ckpt``), attaching what
the weights are as ``model.pretrained_cfg``; ``list_models`` / ``list_pretrained`` list the
names and ``name.tag`` weights, ``register_weights`` adds weights of your own;
``resolve_data_config`` / ``create_transform`` give the preprocessing the weights expect;
``optimize_for_inference`` turns a model into its fastest measured form for fp32, bf16 or
int8 inference.
"""

from .data import DataConfig, create_transform, resolve_data_config
from .factory import create_model
from .inference.optimize import optimize_for_inference
from .models import PretrainedCfg, list_models, list_pretrained, register_model, register_weights
from .version import __version__

__all__ = [
    "DataConfig",
    "PretrainedCfg",
    "create_model",
    "create_transform",
    "list_models",
    "list_pretrained",
    "optimize_for_inference",
    "register_model",
    "register_weights",
    "resolve_data_config",
    "__version__",
]
