"""The kernels: NumPy references and their numba twins (see README's layout table).

Importing the package first hands this folder to `numba_cache.install`, before any kernel
module is compiled or loaded from numba's cache: a kernel's cached machine code holds the
code of the helpers it inlines from other modules here (`simd.py`, `simd_int8.py`, ...), so
its cache must go stale when any of them changes, not only when its own file does.
"""

import os

from minitorch_compress.kernels import numba_cache

numba_cache.install(os.path.dirname(os.path.abspath(__file__)))
