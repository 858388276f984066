"""The one elementwise row loop shared by batch norm and the fused conv epilogue.

Eval-mode batch norm, the training forward's second pass and the conv's inference epilogue
all compute ``relu?(x*a + b (+ r))`` along a contiguous row. Keeping that loop in one place
is what makes the fused inference path bit for bit equal to the separate kernels: the same
float operations, in the same order, compiled the same way (see the note on inlining below).
"""

from __future__ import annotations

from numba import njit


# inline="always": numba then compiles a copy of the loop into each caller, under that
# caller's own flags. Compiled once and shared, it took on the fast-math flags of whichever
# caller compiled it first (the training batch norm's, which allow fused multiply-adds), and
# the fused and separate inference paths then differed by an ulp depending on test order.
@njit(cache=True, nogil=True, inline="always")
def affine_row(src, dst, a, b, relu, res, add_res):
    """dst[p] = relu?(src[p]*a + b (+ res[p])) for every p of a 1-D row.

    src, dst: 1-D rows of equal length (may be the same array); a, b: scalars of their dtype;
    res: a row like src, read only when add_res (pass src otherwise)."""
    zero = dst.dtype.type(0)
    for p in range(dst.size):
        v = src[p] * a + b
        if add_res:
            v = v + res[p]
        if relu and v < zero:  # not `not v > 0`: NaN must stay NaN, as in PyTorch
            v = zero
        dst[p] = v


@njit(cache=True, nogil=True, inline="always")
def epilogue_on_row(dst, n, k, oy, epilogue, coef, relu, res, add_res):
    """The conv epilogue on output row y[n, k, oy] = `dst`, in place, if `epilogue`:
    ``relu?(dst*coef[k, 0] + coef[k, 1] (+ res[n, k, oy]))`` (`affine_row`).

    res: (N, K, Ho, Wo), or a placeholder when not add_res: it is indexed only when real.
    Inlined for the same reason as `affine_row`: compiled under each caller's flags."""
    if epilogue:
        res_row = res[n, k, oy] if add_res else dst
        affine_row(dst, dst, coef[k, 0], coef[k, 1], relu, res_row, add_res)
