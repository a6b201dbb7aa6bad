"""The one typed schema for training/validation recipes, with MindCV-compatible YAML and flags.

``load_config(sys.argv[1:], purpose="train")`` is what ``train.py`` and ``validate.py``
call; :class:`Config` is what the rest of the package receives; :func:`amp_plan` and
:func:`ignored_key_notes` say what MindSpore-only keys mean on PyTorch.
"""

from .mindspore_keys import AmpPlan, amp_level_note, amp_plan, ignored_key_notes
from .parser import build_parser, load_config, read_yaml
from .schema import DATASETS, TIMM_OPTIMIZERS, Config, key_specs, schema_keys

__all__ = [
    "DATASETS",
    "TIMM_OPTIMIZERS",
    "AmpPlan",
    "Config",
    "amp_level_note",
    "amp_plan",
    "build_parser",
    "ignored_key_notes",
    "key_specs",
    "load_config",
    "read_yaml",
    "schema_keys",
]
