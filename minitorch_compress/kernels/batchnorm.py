"""Fast batch-norm (+ optional fused ReLU) and residual add + ReLU kernels in numba.

Layout NCHW; batch-norm statistics are per channel over (N, H, W). Inside the kernels an
(N, C, H, W) array is viewed as (N, C, P) with P = H*W, so each (n, c) plane is one
contiguous run of P numbers that the compiler turns into SIMD code.

Training forward = two passes over the channels: shifted sums for the mean and variance,
then ``y = relu?(x * a + b)`` with ``a = gamma*invstd`` and ``b = beta - mean*a``. Training
backward = two passes too: ``sum(g)`` and ``sum(g * (x - mean))``, then the closed-form
input gradient. Sums are accumulated in float64 whatever the data type, so a channel of
256*32*32 float32 numbers keeps full float32 accuracy; the elementwise passes run in the
data's own dtype (float32 SIMD is twice as wide). Each kernel is serial over a slice of the
channels (or images, or elements) given as a ``[start, stop)`` range, and the public
functions run one slice per core through `kernels/parallel.py` (not numba's ``prange``,
whose idle threads spin and steal the cores from the convolutions that follow).

The numba kernels are plain Python loops over arrays: ``NUMBA_DISABLE_JIT=1`` turns them
into ordinary Python you can step through. `kernels/reference.py` holds slow NumPy twins.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minitorch_compress.kernels.parallel import run_parallel, split_range
from minitorch_compress.kernels.rows import affine_row
from minitorch_compress.kernels.rules import result_float_dtype

# Reductions may be reordered (so LLVM can vectorise them and keep several partial sums);
# no other fast-math flag, so NaN and inf still propagate the IEEE way.
_REDUCE_MATH = {"reassoc", "contract"}
# Elementwise kernels only split arrays larger than this between the cores: below it a
# thread hand-off costs more than the sweep.
_MIN_ELEMENTS = 1 << 15


# ---------------------------------------------------------------------- numba kernels
# The per-channel kernels walk their channels image by image: the rows of one image's
# channels lie one after another in memory, whereas one channel's rows are P values every
# C*P (16 KB apart at 64 channels of 8x8), which map to the same few cache sets and evict
# each other. So each pass streams through memory, its sums kept per channel.
# Per-channel coefficients are stored in a small array of the data's dtype before the
# elementwise pass, so that pass runs in float32 SIMD for float32 data.


@njit(cache=True, nogil=True, fastmath=_REDUCE_MATH)
def _bn_train_forward(x3, gamma, beta, eps, relu, y3, mean, var, invstd, coef, c0, c1):
    """Batch statistics and normalisation of channels c0..c1-1.

    x3, y3: (N, C, P); gamma, beta: (C,) float64; outputs mean, var, invstd: (C,) float64;
    coef: (C, 2) scratch in the dtype of x3 holding a = gamma*invstd and b = beta - mean*a,
    so that ``y = relu?(x*a + b)``.
    """
    n_img, _, p_len = x3.shape
    count = n_img * p_len
    # pass 1: shifted sums. Sums of (x - x0) with x0 one sample of the channel do not
    # cancel catastrophically when |mean| >> std, unlike the raw sum of squares
    sums = np.zeros((c1 - c0, 2))
    for n in range(n_img):  # image by image: the channels' rows of one image are contiguous
        for c in range(c0, c1):
            row = x3[n, c]
            x0 = np.float64(x3[0, c, 0])
            s = 0.0
            ss = 0.0
            for p in range(p_len):
                d = np.float64(row[p]) - x0
                s += d
                ss += d * d
            sums[c - c0, 0] += s
            sums[c - c0, 1] += ss
    for c in range(c0, c1):
        mu = sums[c - c0, 0] / count
        mean[c] = np.float64(x3[0, c, 0]) + mu
        var[c] = max(sums[c - c0, 1] / count - mu * mu, 0.0)
        invstd[c] = 1.0 / np.sqrt(var[c] + eps)
        coef[c, 0] = gamma[c] * invstd[c]
        coef[c, 1] = beta[c] - mean[c] * gamma[c] * invstd[c]
    # pass 2: y = relu?(x*a + b)
    for n in range(n_img):
        for c in range(c0, c1):
            affine_row(x3[n, c], y3[n, c], coef[c, 0], coef[c, 1], relu, x3[n, c], False)


@njit(cache=True, nogil=True)
def _bn_eval_forward(x3, coef, relu, y3, n0, n1):
    """y = relu?(x*a + b) with per-channel (a, b) = coef[c], for images n0..n1-1;
    x3, y3: (N, C, P)."""
    n_ch = x3.shape[1]
    for n in range(n0, n1):
        for c in range(n_ch):
            affine_row(x3[n, c], y3[n, c], coef[c, 0], coef[c, 1], relu, x3[n, c], False)


@njit(cache=True, nogil=True, fastmath=_REDUCE_MATH)
def _bn_backward(g3, x3, y3, gamma, mean, invstd, relu, batch_stats, dx3, dgamma, dbeta, coef,
                 c0, c1):
    """Batch-norm input, scale and shift gradients of channels c0..c1-1.

    g3, x3, y3, dx3: (N, C, P); gamma, mean, invstd: (C,) float64; outputs dgamma, dbeta:
    (C,) float64; coef: (C, 4) scratch in the dtype of x3. The upstream gradient g is
    masked by y > 0 when relu. With ``xhat = (x - mean)*invstd`` and m = N*P:

    * ``dgamma = sum(g*xhat)``, ``dbeta = sum(g)``;
    * batch statistics (training): ``dx = gamma*invstd*(g - dbeta/m - xhat*dgamma/m)``,
      written as ``a*g - k*(x - mean) + d``;
    * running statistics (eval): they are constants, so ``dx = gamma*invstd*g`` (k = d = 0).
    """
    n_img, _, p_len = x3.shape
    count = n_img * p_len
    zero = x3.dtype.type(0)
    # pass 1: sum(g) and sum(g*(x - mean)) in float64, image by image (the channels' rows
    # of one image are contiguous)
    sums = np.zeros((c1 - c0, 2))
    for n in range(n_img):
        for c in range(c0, c1):
            mc = mean[c]
            g_row = g3[n, c]
            x_row = x3[n, c]
            y_row = y3[n, c]
            s = 0.0
            sx = 0.0
            for p in range(p_len):
                g = np.float64(g_row[p])
                if relu and not y_row[p] > 0:
                    g = 0.0
                s += g
                sx += g * (np.float64(x_row[p]) - mc)
            sums[c - c0, 0] += s
            sums[c - c0, 1] += sx
    for c in range(c0, c1):
        s = sums[c - c0, 0]
        dbeta[c] = s
        dgamma[c] = sums[c - c0, 1] * invstd[c]
        a64 = gamma[c] * invstd[c]
        coef[c, 0] = a64
        coef[c, 1] = a64 * invstd[c] * dgamma[c] / count if batch_stats else 0.0
        coef[c, 2] = -a64 * s / count if batch_stats else 0.0
        coef[c, 3] = mean[c]
    # pass 2: dx = a*g - k*(x - mean) + d, in the data's dtype
    for n in range(n_img):
        for c in range(c0, c1):
            a = coef[c, 0]
            k = coef[c, 1]
            d = coef[c, 2]
            m = coef[c, 3]
            g_row = g3[n, c]
            x_row = x3[n, c]
            y_row = y3[n, c]
            dst = dx3[n, c]
            for p in range(p_len):
                g = g_row[p]
                if relu and not y_row[p] > zero:
                    g = zero
                dst[p] = a * g - k * (x_row[p] - m) + d


@njit(cache=True, nogil=True)
def _add_relu(a, b, y):
    """y = max(a + b, 0) over flat arrays (one slice of the whole)."""
    zero = y.dtype.type(0)
    for i in range(a.size):
        v = a[i] + b[i]
        y[i] = zero if v < zero else v  # NaN stays NaN (PyTorch's ReLU propagates it)


@njit(cache=True, nogil=True)
def _relu_mask(g, y, out):
    """out = g where y > 0 else 0, over flat arrays (one slice of the whole)."""
    zero = out.dtype.type(0)
    for i in range(g.size):
        out[i] = g[i] if y[i] > 0 else zero


# ------------------------------------------------------------------------ validation
def _as3d(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous (N, C, H*W) view of an NCHW array in `dtype` (copied only if needed)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])


def _check_x(name: str, x: np.ndarray) -> int:
    """Check that x is NCHW and return its channel count."""
    if np.ndim(x) != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {np.shape(x)}")
    return int(np.shape(x)[1])


def _check_same_shape(name: str, what: str, a: np.ndarray, x: np.ndarray) -> None:
    if np.shape(a) != np.shape(x):
        raise ValueError(
            f"{name}: {what} has shape {np.shape(a)} but the input has shape {np.shape(x)}"
        )


def _channel_vector(name: str, what: str, v: np.ndarray, channels: int) -> np.ndarray:
    """Validate a per-channel parameter and return it as float64 (C,)."""
    if np.shape(v) != (channels,):
        raise ValueError(
            f"{name}: {what} must have shape ({channels},) for an input with {channels} "
            f"channels, got shape {np.shape(v)}"
        )
    return np.asarray(v, dtype=np.float64)


def _check_eps(name: str, eps: float) -> float:
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"{name}: eps must be >= 0, got {eps}")
    return eps


def _backward(grad_y, x, y, gamma64, mean64, invstd64, relu, batch_stats, dtype):
    """Shared body of the train and eval backward passes (validated inputs)."""
    g3 = _as3d(grad_y, dtype)
    x3 = _as3d(x, dtype)
    y3 = _as3d(y, dtype) if relu else x3  # y is only read for the ReLU mask
    ch = x3.shape[1]
    dx = np.empty(x3.shape, dtype=dtype)
    dgamma, dbeta = np.empty(ch), np.empty(ch)
    coef = np.empty((ch, 4), dtype=dtype)
    args = (g3, x3, y3, gamma64, mean64, invstd64, bool(relu), batch_stats, dx, dgamma, dbeta,
            coef)
    run_parallel([(_bn_backward, (*args, c0, c1)) for c0, c1 in split_range(ch)])
    return dx.reshape(np.shape(x)), dgamma.astype(dtype), dbeta.astype(dtype)


# ------------------------------------------------------------------------ public API
def batchnorm_train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, relu: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch-norm with batch statistics, optionally fused with ReLU.

    ``y = relu?(gamma * (x - mean) * invstd + beta)`` per channel, with mean and biased
    variance over (N, H, W) and ``invstd = 1 / sqrt(var + eps)``.

    Args:
        x: input, shape (N, C, H, W).
        gamma: scale, shape (C,).
        beta: shift, shape (C,).
        eps: added to the variance, >= 0 (1e-5 in ResNet-20).
        relu: apply ``max(., 0)`` to the output.

    Returns:
        ``(y, mean, var, invstd)``: y of shape (N, C, H, W); mean, biased variance and
        invstd of shape (C,). The caller derives the unbiased variance for the running
        statistics as ``var * m / (m - 1)`` with ``m = N*H*W``. All outputs are float64 if
        x, gamma or beta is float64, else float32.

    Raises:
        ValueError: on a non-4-D input, parameters of the wrong shape, or eps < 0.
    """
    name = "batchnorm_train_forward"
    ch = _check_x(name, x)
    eps = _check_eps(name, eps)
    dtype = result_float_dtype(x, gamma, beta)
    gamma64 = _channel_vector(name, "gamma", gamma, ch)
    beta64 = _channel_vector(name, "beta", beta, ch)
    if np.size(x) == 0:
        raise ValueError(f"{name}: cannot compute batch statistics of an empty input")
    x3 = _as3d(x, dtype)
    y = np.empty(np.shape(x), dtype=dtype)
    mean, var, invstd = np.empty(ch), np.empty(ch), np.empty(ch)
    coef = np.empty((ch, 2), dtype=dtype)
    args = (x3, gamma64, beta64, eps, bool(relu), y.reshape(x3.shape), mean, var, invstd, coef)
    run_parallel([(_bn_train_forward, (*args, c0, c1)) for c0, c1 in split_range(ch)])
    return y, mean.astype(dtype), var.astype(dtype), invstd.astype(dtype)


def batchnorm_train_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    gamma: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `batchnorm_train_forward`.

    With ``m = N*H*W``, ``xhat = (x - mean) * invstd`` and ``g = grad_y`` (masked by
    ``y > 0`` when relu): ``grad_x = gamma*invstd*(g - mean(g) - xhat*mean(g*xhat))``,
    ``grad_gamma = sum(g*xhat)``, ``grad_beta = sum(g)``, means and sums per channel over
    (N, H, W).

    Args:
        grad_y: upstream gradient, shape (N, C, H, W).
        x: forward input, shape (N, C, H, W).
        y: forward output, shape (N, C, H, W); only read when relu (for the mask).
        gamma: scale, shape (C,).
        mean: batch mean returned by the forward, shape (C,).
        invstd: ``1/sqrt(var + eps)`` returned by the forward, shape (C,).
        relu: whether the forward applied ReLU.

    Returns:
        ``(grad_x, grad_gamma, grad_beta)`` of shapes (N, C, H, W), (C,), (C,); float64 if
        grad_y, x or gamma is float64, else float32.

    Raises:
        ValueError: on inconsistent shapes.
    """
    name = "batchnorm_train_backward"
    ch = _check_x(name, x)
    _check_same_shape(name, "grad_y", grad_y, x)
    _check_same_shape(name, "y", y, x)
    dtype = result_float_dtype(grad_y, x, gamma)
    gamma64 = _channel_vector(name, "gamma", gamma, ch)
    mean64 = _channel_vector(name, "mean", mean, ch)
    invstd64 = _channel_vector(name, "invstd", invstd, ch)
    return _backward(grad_y, x, y, gamma64, mean64, invstd64, relu, True, dtype)


def batchnorm_eval_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    relu: bool = False,
) -> np.ndarray:
    """Eval-mode batch-norm: ``y = relu?(gamma * (x - running_mean) / sqrt(running_var + eps)
    + beta)``.

    Args:
        x: input, shape (N, C, H, W).
        gamma: scale, shape (C,).
        beta: shift, shape (C,).
        running_mean: shape (C,).
        running_var: shape (C,).
        eps: added to the variance, >= 0.
        relu: apply ``max(., 0)`` to the output.

    Returns:
        y, shape (N, C, H, W); float64 if x, gamma or beta is float64, else float32.

    Raises:
        ValueError: on a non-4-D input, parameters of the wrong shape, or eps < 0.
    """
    name = "batchnorm_eval_forward"
    ch = _check_x(name, x)
    dtype = result_float_dtype(x, gamma, beta)
    coef = eval_coefficients(gamma, beta, running_mean, running_var, eps, ch, dtype, name)
    x3 = _as3d(x, dtype)
    y = np.empty(np.shape(x), dtype=dtype)
    args = (x3, coef, bool(relu), y.reshape(x3.shape))
    run_parallel([(_bn_eval_forward, (*args, n0, n1)) for n0, n1 in split_range(x3.shape[0])])
    return y


def eval_coefficients(
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    channels: int,
    dtype: np.dtype,
    name: str = "eval_coefficients",
) -> np.ndarray:
    """Eval-mode batch norm as a per-channel affine map ``y = x*a + b``.

    ``a = gamma / sqrt(running_var + eps)`` and ``b = beta - running_mean * a``, computed in
    float64 and then cast to `dtype`, the precision of the elementwise pass. Shared by
    `batchnorm_eval_forward` and the fused conv epilogue (`conv.conv2d_affine_forward`), so
    the two give identical results.

    Args:
        gamma, beta, running_mean, running_var: shape (channels,).
        eps: added to the variance, >= 0.
        channels: the input's channel count C.
        dtype: the dtype of the data the map is applied to.
        name: the caller's name, for error messages.

    Returns:
        coef, shape (C, 2): ``coef[:, 0] = a``, ``coef[:, 1] = b``.

    Raises:
        ValueError: on parameters of the wrong shape, or eps < 0.
    """
    eps = _check_eps(name, eps)
    gamma64 = _channel_vector(name, "gamma", gamma, channels)
    beta64 = _channel_vector(name, "beta", beta, channels)
    rmean = _channel_vector(name, "running_mean", running_mean, channels)
    rvar = _channel_vector(name, "running_var", running_var, channels)
    a = gamma64 / np.sqrt(rvar + eps)
    return np.stack([a, beta64 - rmean * a], axis=1).astype(dtype)


def batchnorm_eval_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `batchnorm_eval_forward` (the running statistics are constants).

    With ``invstd = 1/sqrt(running_var + eps)``, ``xhat = (x - running_mean) * invstd`` and
    ``g = grad_y`` (masked by ``y > 0`` when relu): ``grad_x = gamma * invstd * g``,
    ``grad_gamma = sum(g * xhat)``, ``grad_beta = sum(g)`` per channel.

    Args:
        grad_y: upstream gradient, shape (N, C, H, W).
        x: forward input, shape (N, C, H, W).
        y: forward output, shape (N, C, H, W); only read when relu.
        gamma, beta, running_mean, running_var: shape (C,) (beta is only shape-checked:
            the gradient does not depend on it).
        eps: added to the variance, >= 0.
        relu: whether the forward applied ReLU.

    Returns:
        ``(grad_x, grad_gamma, grad_beta)`` of shapes (N, C, H, W), (C,), (C,); float64 if
        grad_y, x or gamma is float64, else float32.

    Raises:
        ValueError: on inconsistent shapes or eps < 0.
    """
    name = "batchnorm_eval_backward"
    ch = _check_x(name, x)
    eps = _check_eps(name, eps)
    _check_same_shape(name, "grad_y", grad_y, x)
    _check_same_shape(name, "y", y, x)
    dtype = result_float_dtype(grad_y, x, gamma)
    gamma64 = _channel_vector(name, "gamma", gamma, ch)
    _channel_vector(name, "beta", beta, ch)
    rmean = _channel_vector(name, "running_mean", running_mean, ch)
    invstd = 1.0 / np.sqrt(_channel_vector(name, "running_var", running_var, ch) + eps)
    return _backward(grad_y, x, y, gamma64, rmean, invstd, relu, False, dtype)


def add_relu_forward(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Residual add + ReLU of a ResNet block: ``y = max(a + b, 0)``, one pass, no temporary.

    Args:
        a: any shape (the block's main branch).
        b: same shape as `a` (the shortcut).

    Returns:
        y, same shape; float64 if a or b is float64, else float32.

    Raises:
        ValueError: if the shapes differ (no broadcasting here, by design).
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"add_relu_forward: shapes differ: {np.shape(a)} and {np.shape(b)}")
    dtype = result_float_dtype(a, b)
    a = np.ascontiguousarray(a, dtype=dtype)
    b = np.ascontiguousarray(b, dtype=dtype)
    y = np.empty(a.shape, dtype=dtype)
    a, b, y_flat = a.reshape(-1), b.reshape(-1), y.reshape(-1)
    # slices, not index ranges: a loop from a start index the compiler cannot prove
    # non-negative gets a wrap-around check per element and no SIMD (20x slower here)
    run_parallel([(_add_relu, (a[i:j], b[i:j], y_flat[i:j]))
                  for i, j in split_range(a.size, _MIN_ELEMENTS)])
    return y


def relu_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient through a ReLU whose output was `y`: ``grad_y * (y > 0)``.

    Args:
        grad_y: upstream gradient, any shape.
        y: the ReLU's output, same shape.

    Returns:
        The masked gradient, same shape; dtype of `grad_y` (float32 unless float64).

    Raises:
        ValueError: if the shapes differ.
    """
    if np.shape(grad_y) != np.shape(y):
        raise ValueError(f"relu_backward: shapes differ: {np.shape(grad_y)} and {np.shape(y)}")
    dtype = result_float_dtype(grad_y)
    g = np.ascontiguousarray(grad_y, dtype=dtype)
    y = np.ascontiguousarray(y)
    out = np.empty(g.shape, dtype=dtype)
    g, y, out_flat = g.reshape(-1), y.reshape(-1), out.reshape(-1)
    run_parallel([(_relu_mask, (g[i:j], y[i:j], out_flat[i:j]))
                  for i, j in split_range(g.size, _MIN_ELEMENTS)])
    return out
