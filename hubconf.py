"""torch.hub entry points: every model name of the package, with create_model's arguments.

    model = torch.hub.load("path/to/res2net", "res2net50_v1b", source="local", pretrained=True)
    names = torch.hub.list("path/to/res2net", source="local")

Each entry is ``create_model(name, pretrained=..., **kwargs)``: ``pretrained`` may be a weight
tag ("official", "mindcv"), and ``checkpoint_path``, ``num_classes``, ``features_only`` ... pass
through. A clone that was not pip-installed works too: its ``src/`` is put on the path.
"""

import importlib.util
import pathlib
import sys

dependencies = ["torch", "torchvision", "numpy", "safetensors", "yaml", "PIL", "tqdm", "google.protobuf"]

if importlib.util.find_spec("res2net") is None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "src"))

from res2net import create_model as _create_model  # noqa: E402 - after the path set-up above
from res2net.models.registry import SHIPPED_NAMES as _SHIPPED_NAMES  # noqa: E402


def _entry(name):
    def entry(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{name}: res2net.create_model({name!r}, pretrained=..., **kwargs)"
    return entry


for _name in _SHIPPED_NAMES:
    globals()[_name] = _entry(_name)
