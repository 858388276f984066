"""The kernel switch: ResNet-20 gives the same logits and gradients on the reference and the
fast kernels, every op really runs on the chosen set, and a bad choice is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

import minitorch_compress
from minitorch_compress import Tensor, no_grad, ops, use_kernels
from minitorch_compress.errors import MinitorchError
from minitorch_compress.kernels import (
    batchnorm,
    conv,
    dispatch,
    reference,
    select,
    sets,
    sparse_conv,
)
from minitorch_compress.models.resnet import ResNet20, to_sparse
from minitorch_compress.nn import BatchNorm2d
from minitorch_compress.optim import SGD

# Where each set's functions live: in the other set's run, none of them may be called.
_MODULES = {"fast": (conv, batchnorm, sparse_conv), "reference": (reference,)}
_FUNCTIONS = [name for name in vars(sets.FAST) if name != "name"]
# max |fast - reference| allowed, relative to max |reference|, per dtype
_TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


@contextmanager
def only(name: str):
    """Inside the block, every function of the other kernel set raises if it is called."""
    other = "reference" if name == "fast" else "fast"

    def refuse(*args, **kwargs):
        raise AssertionError(f"a {other} kernel ran under use_kernels({name!r})")

    with pytest.MonkeyPatch.context() as patch:
        for function in _FUNCTIONS:
            patch.setattr(sets.KERNEL_NAMESPACES[other], function, refuse)
            for module in _MODULES[other]:
                if hasattr(module, function):
                    patch.setattr(module, function, refuse)
        yield


def _model(dtype) -> ResNet20:
    """A seeded ResNet-20 in `dtype`, with batch-norm parameters and statistics away from
    their initial 1s and 0s so that every term of eval batch norm matters."""
    rng = np.random.default_rng(7)
    model = ResNet20(rng=np.random.default_rng(0))
    for _, module in model.named_modules():
        for name, array in list(module._buffers.items()):
            value = (rng.uniform(0.5, 1.5, array.shape) if name == "running_var"
                     else rng.normal(0.0, 0.1, array.shape))
            module.register_buffer(name, value.astype(dtype))
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            module.weight.data = rng.uniform(0.5, 1.5, module.weight.shape)
            module.bias.data = rng.normal(0.0, 0.1, module.bias.shape)
    for _, p in model.named_parameters():
        p.data = p.data.astype(dtype)
    return model


def _images(dtype, n: int = 4) -> tuple[Tensor, np.ndarray]:
    rng = np.random.default_rng(3)
    return Tensor(rng.standard_normal((n, 3, 32, 32)).astype(dtype)), rng.integers(0, 10, n)


def _training_step(kernels: str, dtype) -> dict[str, np.ndarray]:
    """Logits, every parameter gradient, the parameters after one SGD step and the running
    statistics after it, from one training step on `kernels`."""
    model = _model(dtype).train()
    x, labels = _images(dtype)
    with use_kernels(kernels):
        logits = model(x)
        loss = ops.cross_entropy(logits, labels)
        loss.backward()
        result = {"logits": logits.data}
        result.update({f"grad {n}": p.grad for n, p in model.named_parameters()})
        SGD(model.parameters(), lr=0.1, momentum=0.9).step()
    result.update({f"after {n}": p.data for n, p in model.named_parameters()})
    result.update({f"buffer {n}": b for n, b in model.named_buffers()})
    return result


def _eval_logits(kernels: str, dtype, fused: bool = True, sparse: bool = False) -> np.ndarray:
    model = _model(dtype).eval()
    model.set_fuse_at_inference(fused)
    if sparse:
        rng = np.random.default_rng(5)
        for _, p in model.named_parameters():  # about half of the conv weights zero
            if p.data.ndim == 4:
                p.data[rng.random(p.data.shape) < 0.5] = 0
        assert len(to_sparse(model, min_sparsity=0.0)) == 21
    x, _ = _images(dtype)
    with use_kernels(kernels), no_grad():
        return model(x).data


def _assert_same(fast: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype) -> None:
    assert fast.keys() == ref.keys()
    for name, expected in ref.items():
        assert fast[name].dtype == expected.dtype == dtype, name
        scale = max(float(np.abs(expected).max()), 1e-30)
        error = float(np.abs(fast[name] - expected).max())
        assert error <= _TOLERANCE[dtype] * scale, f"{name}: {error:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("dtype, wide", [(np.float64, False), (np.float32, False),
                                         (np.float32, True)])
def test_a_training_step_is_the_same_on_both_kernel_sets(dtype, wide, monkeypatch):
    """float32 with 16-lane vectors in the tiled conv allowed (`dispatch.WIDE_VECTORS`,
    forced so that every x86-64 CPU runs it) and not."""
    monkeypatch.setattr(dispatch, "WIDE_VECTORS", wide)
    with only("reference"):
        ref = _training_step("reference", dtype)
    with only("fast"):
        fast = _training_step("fast", dtype)
    assert len([k for k in ref if k.startswith("grad ")]) == len(list(_model(dtype).parameters()))
    _assert_same(fast, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fused, sparse", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("wide", [False, True])
def test_an_eval_forward_is_the_same_on_both_kernel_sets(dtype, fused, sparse, wide,
                                                         monkeypatch):
    monkeypatch.setattr(dispatch, "WIDE_VECTORS", wide)
    with only("reference"):
        ref = _eval_logits("reference", dtype, fused, sparse)
    with only("fast"):
        fast = _eval_logits("fast", dtype, fused, sparse)
    _assert_same({"logits": fast}, {"logits": ref}, dtype)


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_the_other_set_raises_when_called(kernels):
    """The check the comparisons above rely on: under only(...) the other set cannot run."""
    other = "reference" if kernels == "fast" else "fast"
    with only(kernels), pytest.raises(AssertionError, match=f"a {other} kernel ran"):
        _eval_logits(other, np.float32)


def test_use_kernels_is_a_plain_call_and_a_context_manager():
    before = select.kernel_choice()
    try:
        minitorch_compress.use_kernels("reference")
        assert select.kernel_choice() == "reference"
        assert sets.active_kernels() is sets.REFERENCE
        with use_kernels("fast"):
            assert sets.active_kernels() is sets.FAST
        assert select.kernel_choice() == "reference"
        with pytest.raises(KeyError), use_kernels("fast"):
            {}["missing"]
        assert select.kernel_choice() == "reference"
    finally:
        use_kernels(before)


def test_an_unknown_kernel_set_is_a_one_line_error():
    with pytest.raises(MinitorchError, match="give one of fast, reference"):
        use_kernels("numba")


def _run(code_or_args: list[str], value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINITORCH_KERNELS=value)
    return subprocess.run([sys.executable, *code_or_args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_environment_is_read_at_the_first_kernel_call_not_at_import():
    code = ("import numpy as np, minitorch_compress as m\n"
            "from minitorch_compress import ops\n"
            "from minitorch_compress.kernels import select\n"
            "assert select._choice is None\n"
            "ops.conv2d(m.tensor(np.ones((1, 1, 4, 4))), m.tensor(np.ones((2, 1, 3, 3))))\n"
            "print(m.kernel_choice())\n")
    out = _run(["-c", code], "reference")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "reference"
    bad = _run(["-c", code], "slow")
    assert bad.returncode != 0
    assert "MinitorchError: MINITORCH_KERNELS='slow': give one of fast, reference" in bad.stderr


def test_a_bad_environment_value_is_one_line_and_exit_2_at_the_command_line():
    out = _run(["-m", "minitorch_compress", "report", "--out-dir", os.devnull + "_nothing"],
               "slow")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: MINITORCH_KERNELS='slow': give one of fast, reference")


def test_importing_the_package_leaves_the_allocator_alone():
    code = ("import minitorch_compress, sys\n"
            "from minitorch_compress.kernels import memory\n"
            "print(memory.applied(), 'numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]
    if sys.platform.startswith("linux"):  # glibc: the CLI's call does change it
        code = "from minitorch_compress.kernels import memory as m; m.keep_freed_memory(); " \
               "print(m.applied())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=120)
        assert out.stdout.strip() == "True"
