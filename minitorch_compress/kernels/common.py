"""Helpers that several fast kernels share: the CPU's vector registers, padding a chunk of
images, and the fused inference epilogue's arguments.

Each lives here once, under a public name, so no kernel module reaches into another one's
private names.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from numba import njit


@cache
def has_32_vector_registers() -> bool:
    """Whether this CPU has AVX-512's 32 vector registers (x86 without it has 16).

    The register-tiled forward and the direct grad-weight size their register blocks by it
    (`kernels/dispatch.py` names both choices)."""
    import llvmlite.binding as llvm

    try:
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except Exception:  # a host llvmlite cannot describe: take the safe, smaller block
        return False


@cache
def cpu_name() -> str:
    """LLVM's name for this CPU (e.g. "znver4", "rocketlake"): what the kernels are compiled
    for, and what a speed figure must name."""
    import llvmlite.binding as llvm

    try:
        return str(llvm.get_host_cpu_name())
    except Exception:  # a host llvmlite cannot describe
        return "unknown CPU"


@njit(cache=True, nogil=True)
def pad_chunk(x, n0, padding, xp):
    """xp[i, c, padding + iy, padding + ix] = x[n0 + i, c, iy, ix] for the interior only.

    x: (N, C, H, W); xp: (nc, C, H + 2*padding, W + 2*padding), whose border is zero from
    its allocation and never written, so it stays zero across chunks."""
    nc, c_in, _, _ = xp.shape
    _, _, h, w = x.shape
    for i in range(nc):
        for c in range(c_in):
            for iy in range(h):
                src = x[n0 + i, c, iy]
                dst = xp[i, c, padding + iy, padding:]
                for ix in range(w):
                    dst[ix] = src[ix]


class Epilogue(NamedTuple):
    """What the fused inference forward applies to each output row: relu?(y*a + b (+ r)),
    with (a, b) = coef[k] (eval batch norm) and r the residual."""

    coef: np.ndarray  # (K, 2)
    relu: bool
    residual: np.ndarray | None  # (N, K, Ho, Wo), or the part of it of one thread

    def part(self, a: int, b: int) -> Epilogue:
        """The epilogue of images a..b-1 of the batch."""
        return self if self.residual is None else self._replace(residual=self.residual[a:b])


def epilogue_args(epilogue: Epilogue | None, ndim: int, dtype: np.dtype) -> tuple:
    """(epilogue, coef, relu, res, add_res) as the numba kernels take them
    (`rows.epilogue_on_row`, `rows.affine_row`).

    res is an `ndim`-D view of the residual (4: (N, K, Ho, Wo); 3: (N, K, Ho*Wo)), or a
    never-read placeholder; with no epilogue the kernels just write the conv (coef and relu
    are placeholders too)."""
    placeholder = np.zeros((1,) * ndim, dtype)
    if epilogue is None:
        return False, np.zeros((1, 2), dtype), False, placeholder, False
    residual = epilogue.residual
    if residual is None:
        return True, epilogue.coef, epilogue.relu, placeholder, False
    n, k = residual.shape[:2]
    res = residual if ndim == 4 else residual.reshape(n, k, -1)
    return True, epilogue.coef, epilogue.relu, res, True
