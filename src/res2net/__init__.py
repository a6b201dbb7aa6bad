"""res2net: the Res2Net family for PyTorch.

``create_model`` builds any member of the family and loads weights from every source
users have (our checkpoints, the official ``.pth`` files, timm, MindCV ``.ckpt``);
``list_models`` lists the names; ``optimize_for_inference`` turns a model into its
fastest measured form for fp32, bf16 or int8 inference.
"""

from .inference.optimize import optimize_for_inference
from .models import create_model, list_models

__all__ = ["create_model", "list_models", "optimize_for_inference"]
__version__ = "0.1.0"
