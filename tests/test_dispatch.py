"""The dispatch table (`kernels/dispatch.py`) names the kernel of every ResNet-20 conv, the
conv entry points run exactly that kernel, and every kernel in the package is reached.

Also: no kernel module takes another one's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from minitorch_compress.kernels import conv, direct_conv, dispatch, sparse_conv
from minitorch_compress.kernels import direct_conv_tiled as tiled
from minitorch_compress.kernels.sparse_conv import SparseWeights, sparse_conv2d_forward

ROOT = Path(__file__).resolve().parents[1]
F32 = np.dtype(np.float32)
T, G = dispatch.TILED_3X3, dispatch.IM2COL_GEMM
# the 3x3 grad-weight: direct where its tile fits the CPU's vector registers
D = dispatch.DIRECT_GRAD_WEIGHT if dispatch.DIRECT_GRAD_WEIGHT_FITS else dispatch.GEMM_GRAD_WEIGHT

# (forward, grad-input, grad-weight) of each ResNet-20 conv in float32, in the order of
# `dispatch.RESNET20_CONVS`
EXPECTED = {
    "head_conv": (T, T, D),
    "stage 1 conv": (T, T, D),
    "stage 2 first conv1": (T, dispatch.GEMM_COL2IM, D),
    "stage 2 shortcut": (G, dispatch.GEMM_COL2IM, dispatch.GEMM_GRAD_WEIGHT),
    "stage 2 conv": (T, T, D),
    "stage 3 first conv1": (T, dispatch.GEMM_COL2IM, D),
    "stage 3 shortcut": (G, dispatch.GEMM_COL2IM, dispatch.GEMM_GRAD_WEIGHT),
    "stage 3 conv": (T, T, D),
}


def _choices(shape: dispatch.ConvShape, dtype=F32) -> tuple[str, str, str]:
    """(forward, grad-input, grad-weight) kernels the table names for this conv."""
    _, _, _, _, kernel, stride, padding = shape
    return (dispatch.forward_kernel(kernel, kernel, stride, dtype),
            dispatch.grad_input_kernel(kernel, kernel, stride, padding, dtype),
            dispatch.grad_weight_kernel(kernel, kernel, stride, dtype))


@pytest.mark.parametrize("shape", dispatch.RESNET20_CONVS, ids=lambda s: s.name)
def test_the_table_names_each_resnet20_conv_kernel(shape: dispatch.ConvShape):
    assert _choices(shape) == EXPECTED[shape.name]
    # the fused inference forward is the forward's kernel with an epilogue; grad checks in
    # float64 run the GEMM kernels
    forward, grad_input, grad_weight = _choices(shape, np.dtype(np.float64))
    assert forward == G and grad_input in (G, dispatch.GEMM_COL2IM)
    assert grad_weight == dispatch.GEMM_GRAD_WEIGHT


def test_every_kernel_is_reached_by_a_default_case():
    """ResNet-20 in float32 (training and inference) and its sparse inference reach every
    kernel the table can name, so none is left behind a switch."""
    reached = {kernel for shape in dispatch.RESNET20_CONVS for kernel in _choices(shape)}
    reached.add(dispatch.sparse_forward_kernel(F32))
    # (but the direct grad-weight only where its tile fits the registers)
    assert reached == set(dispatch.KERNELS) - (
        set() if dispatch.DIRECT_GRAD_WEIGHT_FITS else {dispatch.DIRECT_GRAD_WEIGHT})


def test_the_direct_grad_weight_runs_only_where_its_tile_fits_the_registers():
    for fits, expected in ((True, dispatch.DIRECT_GRAD_WEIGHT),
                           (False, dispatch.GEMM_GRAD_WEIGHT)):
        with mock.patch.object(dispatch, "DIRECT_GRAD_WEIGHT_FITS", fits):
            assert dispatch.grad_weight_kernel(3, 3, 1, F32) == expected
            assert dispatch.grad_weight_kernel(3, 3, 2, F32) == expected
            assert dispatch.grad_weight_kernel(1, 1, 2, F32) == dispatch.GEMM_GRAD_WEIGHT


def test_the_choice_of_forward_does_not_depend_on_the_channel_count_or_width():
    """Pruned widths (K = 10, 11, 31, 49) and odd image sizes stay on the tiled kernel: the
    table asks only for the dtype, the kernel size and the stride."""
    assert dispatch.forward_kernel(3, 3, 1, F32) == dispatch.forward_kernel(3, 3, 2, F32) == T
    assert dispatch.grad_input_kernel(3, 3, 1, 1, F32) == T
    assert dispatch.forward_kernel(3, 3, 3, F32) == G
    assert dispatch.forward_kernel(5, 5, 1, F32) == G


def _spies():
    """Mocks wrapping each kernel entry the conv module calls, by table name (the GEMM
    grad-weight is seen through `_im2col`, which a grad-weight-only call runs only there)."""
    return {
        T: mock.patch.object(tiled, "tiled3x3_forward_serial",
                             wraps=tiled.tiled3x3_forward_serial),
        G: mock.patch.object(conv, "_forward_cols", wraps=conv._forward_cols),
        dispatch.GEMM_COL2IM: mock.patch.object(conv, "_col2im", wraps=conv._col2im),
        dispatch.DIRECT_GRAD_WEIGHT: mock.patch.object(
            direct_conv, "direct3x3_grad_weight_serial",
            wraps=direct_conv.direct3x3_grad_weight_serial),
        dispatch.GEMM_GRAD_WEIGHT: mock.patch.object(conv, "_im2col", wraps=conv._im2col),
    }


def _called(run) -> set[str]:
    """The kernels (table names) that `run()` calls."""
    spies = _spies()
    mocks = {name: spy.start() for name, spy in spies.items()}
    try:
        run()
    finally:
        for spy in spies.values():
            spy.stop()
    return {name for name, m in mocks.items() if m.called}


@pytest.mark.parametrize("shape", dispatch.RESNET20_CONVS, ids=lambda s: s.name)
def test_the_conv_entry_points_run_the_kernel_the_table_names(shape: dispatch.ConvShape):
    _, c, k, size, kernel, stride, padding = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, size, size)).astype(np.float32)
    w = rng.standard_normal((k, c, kernel, kernel)).astype(np.float32)
    gy = rng.standard_normal(conv.conv2d_forward(x, w, stride, padding).shape).astype(F32)
    coef = np.ones((k, 2), np.float32)
    forward, grad_input, grad_weight = EXPECTED[shape.name]
    # (the im2col + GEMM forward runs `_im2col` too: only grad-weight calls count it)
    im2col = {dispatch.GEMM_GRAD_WEIGHT}
    assert _called(lambda: conv.conv2d_forward(x, w, stride, padding)) - im2col == {forward}
    assert _called(lambda: conv.conv2d_affine_forward(x, w, stride, padding, coef)) - im2col == {
        forward}
    assert _called(lambda: conv.conv2d_grad_input(gy, w, x.shape, stride, padding)) - im2col == {
        grad_input}
    assert _called(lambda: conv.conv2d_grad_weight(gy, x, w.shape, stride, padding)) == {
        grad_weight}


@pytest.mark.parametrize("stride", [1, 2])
def test_sparse_conv_runs_the_kernel_the_table_names(stride: int):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * (rng.random((4, 4, 3, 3)) < 0.3)
    sw = SparseWeights.from_dense(w)
    tiled_spy = mock.patch.object(sparse_conv, "_sparse_tiled", wraps=sparse_conv._sparse_tiled)
    gemm_spy = mock.patch.object(conv, "_forward_cols", wraps=conv._forward_cols)
    for dtype, kernel in ((np.float32, dispatch.SPARSE_TILED), (np.float64, G)):
        assert dispatch.sparse_forward_kernel(np.dtype(dtype)) == kernel
        tiled, gemm = tiled_spy.start(), gemm_spy.start()
        try:
            sparse_conv2d_forward(x.astype(dtype), sw, stride, 1)
        finally:
            tiled_spy.stop()
            gemm_spy.stop()
        assert (tiled.called, gemm.called) == (kernel == dispatch.SPARSE_TILED, kernel == G)


def test_no_kernel_module_takes_another_ones_private_names():
    """Neither `from minitorch_compress.kernels.X import _name` anywhere in the package, nor
    `X._name` in code of another kernel module (docstrings and comments may cite them)."""
    kernel_modules = {p.stem for p in (ROOT / "minitorch_compress" / "kernels").glob("*.py")}
    for path in sorted((ROOT / "minitorch_compress").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "minitorch_compress.kernels"):
                assert not [a.name for a in node.names if a.name.startswith("_")], path
            if (path.parent.name == "kernels" and isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name) and node.attr.startswith("_")):
                assert node.value.id not in kernel_modules - {path.stem}, (path, node.attr)


def test_the_old_direct_conv_environment_switch_is_gone():
    for path in (ROOT / "minitorch_compress").rglob("*.py"):
        assert "MINITORCH_DIRECT_CONV" not in path.read_text(), path
