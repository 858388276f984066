"""minitorch_compress: a from-scratch NumPy + numba deep-learning engine with a compression toolkit.

Importing the package is cheap: no JIT compilation and no file I/O happen here. Kernels are
compiled the first time they are called (and cached on disk by numba afterwards). The one
process-wide effect of importing it is an allocator setting that keeps freed memory for
reuse (see `kernels/memory.py`; ``MINITORCH_KEEP_FREED_MEMORY=0`` turns it off).

The kernels run on as many threads as there are cores available; ``MINITORCH_NUM_THREADS=1``
(or ``set_num_threads(1)``) runs every kernel on the calling thread, for stepping through
them in a debugger (see `kernels/parallel.py`).
"""

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.gradcheck import grad_check
from minitorch_compress.autograd.tensor import Tensor, tensor
from minitorch_compress.kernels.memory import keep_freed_memory
from minitorch_compress.kernels.parallel import get_num_threads, set_num_threads

keep_freed_memory()

__all__ = ["Tensor", "tensor", "no_grad", "grad_check", "set_num_threads", "get_num_threads"]
__version__ = "0.1.0"
