"""The conv-time split of `experiments/conv_time.py`: which convs a forward records, their
MACs, and that timing them replays the model's own calls."""

from __future__ import annotations

import numpy as np
import pytest

from minitorch_compress import Tensor, no_grad
from minitorch_compress.compression.structured import resnet20_macs
from minitorch_compress.experiments.conv_time import (
    conv_macs,
    narrowed,
    record_convs,
    time_each,
)
from minitorch_compress.kernels.sets import FAST, active_kernels
from minitorch_compress.models.resnet import ResNet20, to_sparse

MIDS = (12, 8, 4, 20, 16, 32, 36, 24, 64)


def _images(n: int = 2) -> Tensor:
    return Tensor(np.random.default_rng(1).standard_normal((n, 3, 32, 32)).astype(np.float32))


def test_a_forward_records_every_conv_in_order_with_the_models_macs():
    model = ResNet20(mid_channels=MIDS).eval()
    calls = record_convs(model, _images(2))
    # the head, two convs a block, and the two 1x1 shortcuts
    assert len(calls) == 1 + 2 * 9 + 2
    assert [c.w.shape[0] for c in calls[1:3]] == [12, 16]  # block 0: conv1 to 12, conv2 back
    assert sum(c.w.shape[2] == 1 for c in calls) == 2
    assert all(c.epilogue is not None for c in calls)  # eval, no grad: the fused path
    # 2 images; resnet20_macs also counts the FC's 64*10
    assert conv_macs(calls) == 2 * (resnet20_macs(MIDS) - 64 * 10)
    # narrowed: conv1 and conv2 of every block but blocks 5 and 8 (32 and 64, full width);
    # calls 0, 7 and 14 are the head and the two shortcuts
    full_calls = record_convs(ResNet20().eval(), _images(2))
    assert narrowed(calls, full_calls) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 15, 16, 17, 18]
    assert narrowed(full_calls, full_calls) == []
    assert narrowed(calls[:-1], full_calls) is None


@pytest.mark.parametrize("fused", [False, True])
def test_timing_replays_the_recorded_calls_and_leaves_the_kernel_set_as_it_was(fused):
    model = ResNet20(mid_channels=MIDS).eval()
    before = dict(vars(active_kernels()))
    calls = record_convs(model, _images(2))
    assert dict(vars(active_kernels())) == before
    seen = []
    original = FAST.conv2d_affine_forward if fused else FAST.conv2d_forward
    name = "conv2d_affine_forward" if fused else "conv2d_forward"

    def spy(x, w, *args, **kwargs):
        seen.append((x, w))
        return original(x, w, *args, **kwargs)

    setattr(FAST, name, spy)
    try:
        seconds = time_each(calls, fused=fused)
    finally:
        setattr(FAST, name, original)
    assert len(seconds) == len(calls) and all(s >= 0 for s in seconds)
    assert all(x is c.x and w is c.w for (x, w), c in zip(seen, calls, strict=True))


def test_the_kernel_set_is_restored_when_the_forward_fails():
    model = ResNet20(mid_channels=MIDS).eval()
    before = dict(vars(active_kernels()))
    with pytest.raises(ValueError):
        record_convs(model, Tensor(np.zeros((1, 4, 32, 32), np.float32)))  # 4 channels, not 3
    assert dict(vars(active_kernels())) == before


def test_a_model_with_sparse_convs_gets_no_split_and_an_unfused_one_its_plain_convs():
    model = ResNet20(mid_channels=MIDS).eval()
    with no_grad():
        for _, p in model.named_parameters():
            if p.data.ndim == 4:
                p.data[np.abs(p.data) < np.quantile(np.abs(p.data), 0.9)] = 0
    assert to_sparse(model, min_sparsity=0.5)
    assert record_convs(model, _images(1)) is None
    unfused = ResNet20(mid_channels=MIDS, fuse_at_inference=False).eval()
    calls = record_convs(unfused, _images(1))
    assert len(calls) == 21 and all(c.epilogue is None for c in calls)
