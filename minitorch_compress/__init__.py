"""minitorch_compress: a from-scratch NumPy + numba deep-learning engine with a compression toolkit.

Importing the package is cheap and changes nothing in the process: no JIT compilation, no
file I/O, no allocator setting (the command line and the benchmarks apply that one when they
start, see `kernels/memory.py`). Kernels are compiled the first time they are called (and
cached on disk by numba afterwards).

``use_kernels("reference")`` runs every op on the readable NumPy kernels of
`kernels/reference.py` instead of the fast numba ones, for the whole process or, as
``with use_kernels("reference"):``, for a block; ``MINITORCH_KERNELS=reference`` does the
same from the environment (`kernels/sets.py` tables which kernel each op runs).

The kernels run on as many threads as there are cores available; ``MINITORCH_NUM_THREADS=1``
(or ``set_num_threads(1)``) runs every kernel on the calling thread, for stepping through
them in a debugger (see `kernels/parallel.py`).
"""

from minitorch_compress.autograd.engine import no_grad
from minitorch_compress.autograd.gradcheck import grad_check
from minitorch_compress.autograd.tensor import Tensor, tensor
from minitorch_compress.kernels.parallel import get_num_threads, set_num_threads
from minitorch_compress.kernels.select import kernel_choice, use_kernels

__all__ = ["Tensor", "tensor", "no_grad", "grad_check", "set_num_threads", "get_num_threads",
           "use_kernels", "kernel_choice"]
__version__ = "0.1.0"
