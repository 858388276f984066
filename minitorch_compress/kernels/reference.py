"""Slow, obviously correct NumPy versions of every fast kernel (the tests' ground truth).

Each function here has the same signature and returns the same shapes as its fast twin in
`kernels/conv.py`, `kernels/batchnorm.py` or `kernels/sparse_conv.py`; together they are the
"reference" kernel set (`kernels/sets.py`), which the whole model runs on under
``use_kernels("reference")``. Clarity beats speed: convolutions loop over the kernel offsets
(ky, kx) and use strided slicing plus `einsum`; batch-norm is written out formula by
formula. Everything is computed in float64 and cast back to the input's dtype,
so these functions are also the place to read when you want to know what a kernel *means*
(and to step through: they are plain NumPy, no compiler involved).

Layouts: activations are NCHW, conv weights are (K, C, kh, kw) (K output channels).
"""

from __future__ import annotations

import numpy as np

from minitorch_compress.kernels.rules import conv2d_output_size, result_float_dtype


def _window(a: np.ndarray, ky: int, kx: int, ho: int, wo: int, stride: int) -> np.ndarray:
    """The (N, C, Ho, Wo) view of padded `a` that kernel offset (ky, kx) multiplies."""
    rows = slice(ky, ky + stride * (ho - 1) + 1, stride)
    cols = slice(kx, kx + stride * (wo - 1) + 1, stride)
    return a[:, :, rows, cols]


def conv2d_forward(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation ``y[n,k,i,j] = sum_{c,ky,kx} w[k,c,ky,kx] * xpad[n,c,i*s+ky,j*s+kx]``.

    Args:
        x: input, shape (N, C, H, W).
        w: weights, shape (K, C, kh, kw).
        stride: step between output pixels, same on both axes.
        padding: zeros added on every side of H and W.

    Returns:
        y, shape (N, K, Ho, Wo); float64 if x or w is float64, else float32.
    """
    n, _, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho, wo = conv2d_output_size(h, wd, kh, kw, stride, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, k, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            patch = _window(xp, ky, kx, ho, wo, stride)
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, ky, kx].astype(np.float64))
    return y.astype(result_float_dtype(x, w))


def conv2d_grad_input(
    grad_y: np.ndarray,
    w: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: int,
    padding: int,
) -> np.ndarray:
    """Gradient of the loss with respect to the conv input.

    Every output pixel sends ``w[k, c, ky, kx] * grad_y[n, k, i, j]`` back to the input pixel
    it read, so we scatter-add into a padded buffer and crop the padding off at the end.

    Args:
        grad_y: upstream gradient, shape (N, K, Ho, Wo).
        w: weights, shape (K, C, kh, kw).
        x_shape: (N, C, H, W) of the forward input.
        stride: forward stride.
        padding: forward padding.

    Returns:
        grad_x, shape `x_shape`; float64 if grad_y or w is float64, else float32.
    """
    n, c, h, wd = x_shape
    _, _, kh, kw = w.shape
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    gxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
    gy = grad_y.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            _window(gxp, ky, kx, ho, wo, stride)[...] += np.einsum(
                "nkhw,kc->nchw", gy, w[:, :, ky, kx].astype(np.float64)
            )
    inner = gxp[:, :, padding : padding + h, padding : padding + wd]
    return inner.astype(result_float_dtype(grad_y, w))


def conv2d_grad_weight(
    grad_y: np.ndarray,
    x: np.ndarray,
    w_shape: tuple[int, int, int, int],
    stride: int,
    padding: int,
) -> np.ndarray:
    """Gradient of the loss with respect to the conv weights.

    ``grad_w[k, c, ky, kx] = sum_{n,i,j} grad_y[n,k,i,j] * xpad[n, c, i*s+ky, j*s+kx]``.

    Args:
        grad_y: upstream gradient, shape (N, K, Ho, Wo).
        x: forward input, shape (N, C, H, W).
        w_shape: (K, C, kh, kw).
        stride: forward stride.
        padding: forward padding.

    Returns:
        grad_w, shape `w_shape`; float64 if grad_y or x is float64, else float32.
    """
    k, c, kh, kw = w_shape
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    gy = grad_y.astype(np.float64)
    gw = np.zeros((k, c, kh, kw))
    for ky in range(kh):
        for kx in range(kw):
            gw[:, :, ky, kx] = np.einsum("nkhw,nchw->kc", gy, _window(xp, ky, kx, ho, wo, stride))
    return gw.astype(result_float_dtype(grad_y, x))


def conv2d_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int,
    padding: int,
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both conv gradients: ``(grad_x or None, grad_w or None)``; shapes of x and w."""
    gx = conv2d_grad_input(grad_y, w, x.shape, stride, padding) if need_input_grad else None
    gw = conv2d_grad_weight(grad_y, x, w.shape, stride, padding) if need_weight_grad else None
    return gx, gw


# ---------------------------------------------------------------------------- batch-norm
def _per_channel(v: np.ndarray) -> np.ndarray:
    """Reshape a (C,) vector so it broadcasts against NCHW."""
    return np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1)


def batchnorm_train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, relu: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode batch-norm over (N, H, W) per channel, optionally followed by ReLU.

    Args:
        x: input, shape (N, C, H, W).
        gamma: scale, shape (C,).
        beta: shift, shape (C,).
        eps: added to the variance before the square root.
        relu: apply ``max(., 0)`` to the output.

    Returns:
        ``(y, mean, var, invstd)``: y of shape (N, C, H, W); mean, biased variance and
        ``1/sqrt(var + eps)`` of shape (C,). Computed in float64, returned in float64 if x,
        gamma or beta is float64, else float32.
    """
    xd = x.astype(np.float64)
    mean = xd.mean(axis=(0, 2, 3))
    var = ((xd - _per_channel(mean)) ** 2).mean(axis=(0, 2, 3))
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (xd - _per_channel(mean)) * _per_channel(invstd)
    y = _per_channel(gamma) * xhat + _per_channel(beta)
    if relu:
        y = np.maximum(y, 0.0)
    dt = result_float_dtype(x, gamma, beta)
    return y.astype(dt), mean.astype(dt), var.astype(dt), invstd.astype(dt)


def batchnorm_train_backward(
    grad_y: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    gamma: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    relu: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of training-mode batch-norm (+ optional ReLU).

    With ``m = N*H*W`` elements per channel and ``g = grad_y * (y > 0 if relu)``:
    ``dx = gamma * invstd * (g - mean(g) - xhat * mean(g * xhat))``,
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``.

    Args:
        grad_y: upstream gradient, shape (N, C, H, W).
        x: forward input, shape (N, C, H, W).
        y: forward output (only used for the ReLU mask), shape (N, C, H, W).
        gamma: scale, shape (C,).
        mean: batch mean from the forward pass, shape (C,).
        invstd: ``1/sqrt(var + eps)`` from the forward pass, shape (C,).
        relu: whether the forward applied ReLU.

    Returns:
        ``(grad_x, grad_gamma, grad_beta)`` of shapes (N, C, H, W), (C,), (C,); float64 if
        grad_y, x or gamma is float64, else float32.
    """
    g = grad_y.astype(np.float64)
    if relu:
        g = g * (y > 0)
    xhat = (x.astype(np.float64) - _per_channel(mean)) * _per_channel(invstd)
    g_mean = g.mean(axis=(0, 2, 3))
    gx_mean = (g * xhat).mean(axis=(0, 2, 3))
    dx = (
        _per_channel(gamma)
        * _per_channel(invstd)
        * (g - _per_channel(g_mean) - xhat * _per_channel(gx_mean))
    )
    m = x.shape[0] * x.shape[2] * x.shape[3]
    dgamma = gx_mean * m
    dbeta = g_mean * m
    dt = result_float_dtype(grad_y, x, gamma)
    return dx.astype(dt), dgamma.astype(dt), dbeta.astype(dt)


def batchnorm_eval_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    relu: bool = False,
) -> np.ndarray:
    """Eval-mode batch-norm: normalise with the running statistics, optional ReLU.

    Args:
        x: input, shape (N, C, H, W).
        gamma, beta, running_mean, running_var: shape (C,).
        eps: added to the variance before the square root.
        relu: apply ``max(., 0)`` to the output.

    Returns:
        y, shape (N, C, H, W); float64 if x, gamma or beta is float64, else float32.
    """
    xhat = (x.astype(np.float64) - _per_channel(running_mean)) / np.sqrt(
        _per_channel(running_var) + eps
    )
    y = _per_channel(gamma) * xhat + _per_channel(beta)
    if relu:
        y = np.maximum(y, 0.0)
    return y.astype(result_float_dtype(x, gamma, beta))


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
    """Gradients of eval-mode batch-norm (the statistics are constants).

    Returns:
        ``(grad_x, grad_gamma, grad_beta)`` of shapes (N, C, H, W), (C,), (C,):
        ``dx = g * gamma / sqrt(var + eps)``, ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``
        with ``g = grad_y * (y > 0 if relu)``; float64 if grad_y, x or gamma is float64,
        else float32.
    """
    g = grad_y.astype(np.float64)
    if relu:
        g = g * (y > 0)
    invstd = 1.0 / np.sqrt(_per_channel(running_var) + eps)
    xhat = (x.astype(np.float64) - _per_channel(running_mean)) * invstd
    dx = g * _per_channel(gamma) * invstd
    dt = result_float_dtype(grad_y, x, gamma)
    dgamma = (g * xhat).sum(axis=(0, 2, 3))
    dbeta = g.sum(axis=(0, 2, 3))
    return dx.astype(dt), dgamma.astype(dt), dbeta.astype(dt)


# ----------------------------------------------------------------- residual add + ReLU
def add_relu_forward(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``max(a + b, 0)`` for two arrays of the same shape (float64 if either is)."""
    dt = result_float_dtype(a, b)
    return np.maximum(a.astype(dt) + b.astype(dt), 0).astype(dt)


def relu_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient through a ReLU whose output was `y`: ``grad_y * (y > 0)``."""
    g = grad_y.astype(result_float_dtype(grad_y))
    return np.where(y > 0, g, np.zeros_like(g))


# ------------------------------------------------------------ inference: conv + eval BN
def conv2d_affine_forward(
    x: np.ndarray,
    w: np.ndarray,
    stride: int,
    padding: int,
    coef: np.ndarray,
    relu: bool = False,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """Conv -> eval-mode batch norm -> residual add -> ReLU, one step after the other:
    ``y = relu?(conv2d(x, w) * a + b (+ residual))`` with ``(a, b) = coef[k]`` per channel.

    Args:
        x: input, shape (N, C, H, W).
        w: weights, shape (K, C, kh, kw).
        stride, padding: as in `conv2d_forward`.
        coef: (K, 2): the eval batch norm as ``a = gamma / sqrt(running_var + eps)``,
            ``b = beta - running_mean * a`` (`batchnorm.eval_coefficients`).
        relu: apply ``max(., 0)`` last.
        residual: optional (N, K, Ho, Wo) added before the ReLU.

    Returns:
        y, shape (N, K, Ho, Wo); float64 if x or w is float64, else float32.
    """
    conv = conv2d_forward(x, w, stride, padding).astype(np.float64)
    coef64 = np.asarray(coef, dtype=np.float64)
    y = conv * _per_channel(coef64[:, 0]) + _per_channel(coef64[:, 1])
    if residual is not None:
        y = y + residual.astype(np.float64)
    if relu:
        y = np.maximum(y, 0.0)
    return y.astype(result_float_dtype(x, w))


def sparse_conv2d_forward(
    x: np.ndarray,
    sw,
    stride: int = 1,
    padding: int = 0,
    coef: np.ndarray | None = None,
    relu: bool = False,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """`conv2d_affine_forward` with the weights given by their non-zeros, computed the way
    the direct sparse kernel does: each non-zero ``w_j`` at (k, c, ky, kx) adds ``w_j`` times
    one shifted, strided window of the padded input channel c to the whole output plane k::

        y[n, k] += w_j * xpad[n, c, ky : ky + s*Ho : s, kx : kx + s*Wo : s]

    so a zero weight costs nothing; then the epilogue ``relu?(y*a + b (+ residual))``.

    Args:
        x: input, shape (N, C, H, W).
        sw: the weights (K, C, kh, kw) as `sparse_conv.SparseWeights` (CSR per output
            channel: ``indptr``, ``channel``, ``row``, ``col``, ``values``).
        stride, padding: the conv's.
        coef: (K, 2) per-channel (a, b); default (1, 0), the plain convolution.
        relu, residual: as in `conv2d_affine_forward`.

    Returns:
        y, shape (N, K, Ho, Wo); float64 if x or the weights are float64, else float32.
    """
    n, _, h, w = np.shape(x)
    k, _, kh, kw = sw.shape
    ho, wo = conv2d_output_size(h, w, kh, kw, stride, padding)
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    xpad = np.pad(np.asarray(x, dtype=np.float64), pad)
    y = np.zeros((n, k, ho, wo))
    for out in range(k):
        for j in range(sw.indptr[out], sw.indptr[out + 1]):
            c, ky, kx = sw.channel[j], sw.row[j], sw.col[j]
            y[:, out] += float(sw.values[j]) * _window(xpad, ky, kx, ho, wo, stride)[:, c]
    coef64 = (np.tile([1.0, 0.0], (k, 1)) if coef is None
              else np.asarray(coef, dtype=np.float64))
    y = y * _per_channel(coef64[:, 0]) + _per_channel(coef64[:, 1])
    if residual is not None:
        y = y + np.asarray(residual, dtype=np.float64)
    if relu:
        y = np.maximum(y, 0.0)
    return y.astype(result_float_dtype(x, sw.values))
