"""Reading and writing weights: our ``.npz`` checkpoints and torch-free ``.pt`` import.

* ``minitorch_compress.io.checkpoint``: ``save_checkpoint`` / ``load_checkpoint`` (atomic
  ``.npz`` + JSON metadata) and ``generator_state`` / ``generator_from_state``.
* ``minitorch_compress.io.torch_checkpoint``: ``load_torch_state_dict`` / ``convert_checkpoint``
  for PyTorch ``state_dict`` files, without importing torch; also a command line
  (``python -m minitorch_compress.io.torch_checkpoint IN.pt OUT.npz``).

Nothing is re-exported here, so that running the command line does not import its own module
twice (``python -m`` warns when a package ``__init__`` already imported it).
"""
