"""sparse.md's verdicts (reports/sparse.py) follow the kernel the run measured."""

from __future__ import annotations

from minitorch_compress.reports.sparse import render, target_lines


def _result(break_even: float, kernel: str | None) -> dict:
    rows = [{"sparsity": s, "speedup": 0.5 + 3 * s, "sparse_useful_gflops": 1.0,
             "dense_gflops": 2.0} for s in (0.0, 0.5, 0.8, 0.95)]
    result = {"command": "bench", "commit": "abc", "threads": 2, "rounds": 3,
              "layers": {"shapes": {"16x32x32": rows}, "break_even": {"16x32x32": break_even}},
              "models": {"per_layer_80": {"dense_img_s": 100, "sparse_img_s": 160,
                                          "speedup": 1.6, "sparse_layers": 19}}}
    if kernel:
        result.update(sparse_kernel=kernel, cpu="somecpu")
    return result


def test_a_run_of_the_tiled_kernel_is_judged_by_the_60_percent_break_even():
    assert "at or below 60 %" in target_lines(_result(0.55, "tiled-1"))[0]
    assert ": met" in target_lines(_result(0.55, "tiled-1"))[0]
    assert "not met" in target_lines(_result(0.65, "tiled-1"))[0]
    page = render(_result(0.55, "tiled-1"))
    assert "on `somecpu`" in page and "register" in page and "least-squares" in page


def test_an_older_run_keeps_its_own_issue_s_70_percent_target():
    assert ": met" in target_lines(_result(0.65, None))[0]
    assert "at or below 70 %" in target_lines(_result(0.65, None))[0]
    assert "least-squares" not in render(_result(0.65, None))


def test_the_kernel_description_is_that_of_the_version_the_run_measured():
    """A `tiled-1` run describes 8-lane tiles only; a later one the 16-lane tile too, so
    regenerating an old page from its JSON changes nothing."""
    wide = "16 on AVX-512 CPUs"
    assert wide not in render(_result(0.55, "tiled-1"))
    assert wide in render(_result(0.55, "tiled-lanes8or16-1"))
    assert ": met" in target_lines(_result(0.55, "tiled-lanes8or16-1"))[0]
