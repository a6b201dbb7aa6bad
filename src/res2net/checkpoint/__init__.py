"""Reading every checkpoint format users have and loading it into our models.

``read_checkpoint`` reads a file once (format from its bytes: PyTorch zip or pickle,
safetensors, MindSpore protobuf) into weights plus what the file says about itself;
``load_state_into`` translates MindCV / official / timm names and loads strictly;
``training`` owns the layout of our training checkpoints; ``hub`` downloads published weights
into a cache.
"""

from res2net.checkpoint.formats import RawCheckpoint, read_checkpoint, read_state_dict
from res2net.checkpoint.load import HeadFit, HeadReinitialisedWarning, load_checkpoint_into, load_state_into
from res2net.checkpoint.sniff import CheckpointFormat, detect_format

__all__ = [
    "CheckpointFormat",
    "HeadFit",
    "HeadReinitialisedWarning",
    "RawCheckpoint",
    "detect_format",
    "load_checkpoint_into",
    "load_state_into",
    "read_checkpoint",
    "read_state_dict",
]
