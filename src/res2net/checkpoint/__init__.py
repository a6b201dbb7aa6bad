"""Reading every checkpoint format users have and loading it into our models.

``load_checkpoint_into`` detects the format from the file's bytes (PyTorch zip or
pickle, safetensors, MindSpore protobuf), unwraps training checkpoints, translates
MindCV / official / timm names and loads strictly; ``hub.fetch_pretrained`` downloads
published weights into a cache; ``convert`` writes any of them as our safetensors.
"""

from res2net.checkpoint.formats import CheckpointFormat, detect_format, read_state_dict
from res2net.checkpoint.load import load_checkpoint_into, load_state_into

__all__ = ["CheckpointFormat", "detect_format", "load_checkpoint_into", "load_state_into", "read_state_dict"]
