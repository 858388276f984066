"""The per-CPU choice of sparse convs (kernels/sparse_break_even.py): its decision from
timings (injected here: no test times a kernel), its cache, and `to_sparse` using it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minitorch_compress.kernels import sparse_break_even as sbe
from minitorch_compress.kernels.sparse_break_even import ConvGeometry, break_even_from_timings

SHAPE = ConvGeometry(16, 16, 32, 3, 1, 1)


def _linear(t0: float, t1: float, sparsities=sbe.SPARSITIES) -> dict[float, float]:
    """Sparse times that fall linearly with the density: t0 + t1 * (1 - sparsity)."""
    return {s: t0 + t1 * (1 - s) for s in sparsities}


@pytest.mark.parametrize("t0, t1, dense, want", [
    (0.1, 1.8, 1.0, 0.5),     # crosses at density 0.5
    (0.2, 2.0, 1.0, 0.6),     # crosses at density 0.4
    (0.0, 1.0, 0.05, 0.95),   # crosses past the sparsest point measured
])
def test_the_break_even_is_where_the_fitted_sparse_time_meets_dense(t0, t1, dense, want):
    assert break_even_from_timings(dense, _linear(t0, t1)) == pytest.approx(want)


def test_noise_on_one_point_moves_the_fit_less_than_the_points_apart():
    times = _linear(0.1, 1.8)
    times[0.5] *= 1.1  # one noisy point
    assert break_even_from_timings(1.0, times) == pytest.approx(0.5, abs=0.03)


def test_never_and_always():
    assert break_even_from_timings(1.0, _linear(1.1, 1.0)) == sbe.NEVER  # slower everywhere
    assert break_even_from_timings(1.0, _linear(0.1, 0.5)) == 0.0  # faster even when dense
    assert sbe.NEVER > 1.0


def test_a_fit_that_does_not_fall_with_density_takes_the_least_sparse_faster_point():
    times = {0.5: 1.2, 0.65: 0.9, 0.8: 1.1, 0.95: 1.3}  # noise: no fall with density
    assert break_even_from_timings(1.0, times) == 0.65
    assert break_even_from_timings(0.5, times) == sbe.NEVER


def test_one_point_is_not_enough():
    with pytest.raises(ValueError):
        break_even_from_timings(1.0, {0.8: 0.5})


@pytest.fixture
def unpinned(monkeypatch, tmp_path):
    """`break_even` as in a real run (not pinned, nothing known), with its cache in tmp_path
    and `measure` replaced by a counter returning timings that cross at 50 %."""
    calls = []

    def fake_measure(shape, *args, **kwargs):
        calls.append(shape)
        return 1.0, _linear(0.1, 1.8), 1.02  # a quiet machine's spread

    path = tmp_path / "cache" / "sparse_break_even.json"
    monkeypatch.setattr(sbe, "_pinned", None)
    monkeypatch.setattr(sbe, "_known", {})
    monkeypatch.setattr(sbe, "_announced", False)
    monkeypatch.setattr(sbe, "measure", fake_measure)
    monkeypatch.setattr(sbe, "CACHE_FILE", path)  # never this checkout's cache
    return path, calls


def test_a_shape_is_measured_once_then_read_from_the_cache(unpinned, monkeypatch):
    path, calls = unpinned
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)
    assert calls == [SHAPE]
    entry = json.loads(path.read_text())[sbe.cache_key()]["16,16,32,3,1,1"]
    assert entry["break_even"] == pytest.approx(0.5) and entry["dense_s"] == 1.0
    assert entry["dense_spread"] == 1.02
    monkeypatch.setattr(sbe, "_known", {})  # a new process: reads the file, measures nothing
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)
    assert calls == [SHAPE]


def test_another_cpu_or_kernel_version_measures_again(unpinned, monkeypatch):
    path, calls = unpinned
    sbe.break_even(SHAPE, path)
    monkeypatch.setattr(sbe, "_known", {})
    monkeypatch.setattr(sbe, "KERNEL_VERSION", "next")
    sbe.break_even(SHAPE, path)
    assert calls == [SHAPE, SHAPE]
    assert len(json.loads(path.read_text())) == 2  # both entries kept


def test_calibrate_measures_again_and_a_broken_cache_is_measured_over(unpinned):
    path, calls = unpinned
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)
    sbe.calibrate(SHAPE, path)
    assert calls == [SHAPE, SHAPE]


def test_below_the_floor_nothing_is_measured(unpinned):
    path, calls = unpinned
    assert not sbe.runs_sparse(SHAPE, sbe.MIN_SPARSITY - 0.01)
    assert calls == []
    assert sbe.runs_sparse(SHAPE, 0.6) and not sbe.runs_sparse(SHAPE, 0.4)


def test_pinned_answers_without_measuring_and_restores(unpinned):
    path, calls = unpinned
    with sbe.pinned({SHAPE: 0.1}):
        assert sbe.break_even(SHAPE, path) == 0.1
        assert sbe.break_even(SHAPE._replace(size=16), path) == sbe.NEVER
    with sbe.pinned(0.7):
        assert sbe.break_even(SHAPE, path) == 0.7
    assert calls == []


def test_to_sparse_asks_for_each_conv_at_its_own_input_size():
    """Only the conv whose shape the table names goes sparse: the first stride-2 conv of
    stage 2 (16 -> 32 channels on 32x32 inputs), not the stage's 16x16 convs."""
    from minitorch_compress.compression import prune_model_by_percentage
    from minitorch_compress.models import resnet20
    from minitorch_compress.models.resnet import to_sparse

    model = resnet20(rng=np.random.default_rng(0)).eval()
    prune_model_by_percentage(model, 0.8)
    with sbe.pinned({ConvGeometry(16, 32, 32, 3, 2, 1): 0.5}):
        assert list(to_sparse(model)) == ["body_op.3.conv1"]
    with sbe.pinned({ConvGeometry(64, 64, 8, 3, 1, 1): 0.5}):
        assert len(to_sparse(model)) == 5  # stage 3: conv2 of block 6, both convs of 7, 8
    with sbe.pinned(0.9):
        assert to_sparse(model) == {}  # 80 % is below a 90 % break-even
    table = {ConvGeometry(3, 16, 32, 3, 1, 1): 0.5}
    assert list(to_sparse(model, break_even=table)) == ["head_conv"]


def test_measure_times_the_dense_path_and_every_sparsity():
    """The calibration's timing runs both kernels on a shape (what it finds is not tested)."""
    dense_s, sparse_s, spread = sbe.measure(ConvGeometry(2, 3, 8, 3, 2, 1), (0.5, 0.9),
                                            batch=2, rounds=3)
    assert dense_s > 0 and list(sparse_s) == [0.5, 0.9] and min(sparse_s.values()) > 0
    assert spread >= 1.0  # the dense runs' median over their fastest


def test_calibrating_says_so_once_on_stderr(unpinned, capsys):
    path, calls = unpinned
    sbe.break_even(SHAPE, path)
    sbe.break_even(SHAPE._replace(size=16), path)
    assert len(calls) == 2
    err = capsys.readouterr().err
    assert err.count("calibrating the sparse/dense break-even") == 1
    assert len(err.splitlines()) == 1


def test_calibrate_keeps_the_entries_another_process_wrote_meanwhile(unpinned, monkeypatch):
    """Another process writes its shape while this one measures: both entries stay."""
    path, _ = unpinned
    other = SHAPE._replace(size=16)

    def measure_while_another_process_writes(shape, *args, **kwargs):
        sbe._write_cache(path, {sbe.cache_key(): {"16,16,16,3,1,1": {"break_even": 0.4}}})
        return 1.0, _linear(0.1, 1.8), 1.0

    monkeypatch.setattr(sbe, "measure", measure_while_another_process_writes)
    sbe.calibrate(SHAPE, path)
    entries = json.loads(path.read_text())[sbe.cache_key()]
    assert set(entries) == {"16,16,32,3,1,1", "16,16,16,3,1,1"}
    monkeypatch.setattr(sbe, "_known", {})
    assert sbe.break_even(other, path) == 0.4
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed


def test_a_calibration_on_a_busy_machine_is_used_but_not_cached(unpinned, monkeypatch, capsys):
    path, calls = unpinned
    monkeypatch.setattr(sbe, "measure",
                        lambda shape, *a, **k: calls.append(shape) or (1.0, _linear(0.1, 1.8), 1.6))
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)
    assert sbe.break_even(SHAPE, path) == pytest.approx(0.5)  # known to this process
    assert calls == [SHAPE] and not path.exists()
    assert "busy" in capsys.readouterr().err
    monkeypatch.setattr(sbe, "_known", {})  # the next process measures again
    sbe.break_even(SHAPE, path)
    assert calls == [SHAPE, SHAPE]
