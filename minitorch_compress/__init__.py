"""minitorch_compress: a from-scratch NumPy + numba deep-learning engine with a compression toolkit.

Importing the package is cheap: no JIT compilation and no file I/O happen here. Kernels are
compiled the first time they are called (and cached on disk by numba afterwards). The one
process-wide effect of importing it is an allocator setting that keeps freed memory for
reuse (see `kernels/memory.py`; ``MINITORCH_KEEP_FREED_MEMORY=0`` turns it off).
"""

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.gradcheck import grad_check
from minitorch_compress.autograd.tensor import Tensor, tensor
from minitorch_compress.kernels.memory import keep_freed_memory

keep_freed_memory()

__all__ = ["Tensor", "tensor", "no_grad", "grad_check"]
__version__ = "0.1.0"
