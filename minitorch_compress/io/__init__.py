"""Reading and writing weights: our ``.npz`` checkpoints and torch-free ``.pt`` import.

``checkpoint``: ``save_checkpoint`` / ``load_checkpoint`` (atomic ``.npz`` + JSON metadata) and
the ``Generator`` state helpers. ``torch_checkpoint``: ``load_torch_state_dict`` /
``convert_checkpoint`` for PyTorch ``state_dict`` files, without importing torch.
"""

from minitorch_compress.io.checkpoint import (
    generator_from_state,
    generator_state,
    load_checkpoint,
    save_checkpoint,
)
from minitorch_compress.io.torch_checkpoint import convert_checkpoint, load_torch_state_dict

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "generator_state",
    "generator_from_state",
    "load_torch_state_dict",
    "convert_checkpoint",
]
