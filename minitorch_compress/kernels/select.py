"""The kernel switch: whether the ops run the readable or the fast kernels.

* ``"reference"``: `kernels/reference.py`, slow NumPy written formula by formula, computed in
  float64; the one to read and to step through in a debugger.
* ``"fast"`` (the default): the numba kernels (`kernels/conv.py`, `kernels/batchnorm.py`,
  `kernels/sparse_conv.py`), which choose among their own loops by shape.

`kernels/sets.py` holds the table of which function each op calls in each set. Choose with
``use_kernels("reference")`` (process-wide), ``with use_kernels("reference"):`` (for a block:
the previous choice comes back on exit, even on an exception), or the environment variable
``MINITORCH_KERNELS=reference|fast``, read at the first kernel call, not at import. An op
reads the choice when its forward runs and keeps it on its context, so its backward runs on
the same set.

This module imports no kernel, so ``import minitorch_compress`` (which exports `use_kernels`)
stays free of numba.
"""

from __future__ import annotations

import os

from minitorch_compress.errors import MinitorchError

ENV_VAR = "MINITORCH_KERNELS"
KERNEL_SETS = ("fast", "reference")
DEFAULT = "fast"

# The chosen set's name, or None until the first kernel call reads the environment.
_choice: str | None = None


def kernels_from_environment() -> str:
    """``MINITORCH_KERNELS`` if set (``reference`` or ``fast``), else ``"fast"``.

    Raises:
        MinitorchError: the variable holds another value.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT
    if value not in KERNEL_SETS:
        raise MinitorchError(f"{ENV_VAR}={value!r}: give one of {', '.join(KERNEL_SETS)} "
                             "(or unset it for the fast kernels)")
    return value


def kernel_choice() -> str:
    """The kernel set the ops run now: ``"fast"`` or ``"reference"``.

    Raises:
        MinitorchError: nothing was chosen with `use_kernels` and ``MINITORCH_KERNELS`` holds
            an unknown value.
    """
    global _choice
    if _choice is None:
        _choice = kernels_from_environment()
    return _choice


class use_kernels:  # noqa: N801 - used like a function: use_kernels("reference")
    """Run every op on the ``"reference"`` or the ``"fast"`` kernels.

    A plain call sets the choice for the whole process; used as a context manager it sets
    it for the ``with`` block and restores the previous choice on exit, even when the block
    raises::

        use_kernels("reference")           # from now on
        with use_kernels("fast"):          # only inside the block
            logits = model(x)

    Raises:
        MinitorchError: `name` is not a kernel set.
    """

    def __init__(self, name: str) -> None:
        global _choice
        if name not in KERNEL_SETS:
            raise MinitorchError(f"use_kernels({name!r}): give one of {', '.join(KERNEL_SETS)}")
        self.name = name
        self._previous = _choice
        _choice = name

    def __enter__(self) -> use_kernels:
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _choice
        _choice = self._previous
