"""results/int8.md (`reports.int8`): rendered from the JSON alone, every verdict computed."""

from __future__ import annotations

import copy
import json

from minitorch_compress.reports import int8 as report


def layer(name: str, k: int, c: int, size: int, stride: int = 1, kernel: int = 3) -> dict:
    return {"layer": name, "weights": [k, c, kernel, kernel], "stride": stride,
            "output": [k, size, size], "macs": k * c * kernel * kernel * size * size}


RESULT = {
    "models": {
        "pretrained": {"file": None, "float_accuracy": 0.9151, "int8_accuracy": 0.9154,
                       "table_accuracy": None, "predictions_differing": 40,
                       "weight_kinds": {"s8": 21}},
        "lab3_d_4bit": {"file": "results/models/lab3_d_4bit.mtc", "float_accuracy": 0.8863,
                        "int8_accuracy": 0.8858, "table_accuracy": 0.8863,
                        "predictions_differing": 70, "weight_kinds": {"grid4": 20, "s8": 1}},
    },
    "calibration": {"method": "percentile", "images": 1000, "percentiles": [0.01, 99.99],
                    "source": "the first 1,000 CIFAR-10 training images"},
    "test_images": 10000,
    "layers": [layer("head_conv", 16, 3, 32), layer("body_op.0.conv1", 16, 16, 32),
               layer("body_op.6.conv1", 64, 32, 8, stride=2)],
    "_meta": {"command": "python labs/lab3_int8.py --out-dir results", "commit": "abc1234",
              "smoke": False},
}
BENCH = {
    "isa": "avx512_vnni", "threads": 2, "rounds": 3, "cpu": "x86_64", "torch_version": "2.x",
    "calibration": "cifar10 train",
    "batch_1": {"ours_float": 600.0, "ours_int8": 900.0, "torch_float": 650.0,
                "torch_int8": 1100.0},
    "batch_100": {"ours_float": 2000.0, "ours_int8": 2100.0, "torch_float": 1500.0,
                  "torch_int8": 13000.0},
    "layers_batch_100": [{"layer": "head_conv", "ms": 3.0},
                         {"layer": "body_op.0.conv1", "ms": 3.0},
                         {"layer": "body_op.6.conv1", "ms": 1.0}],
}


def with_speed(ours_int8: float) -> dict:
    bench = copy.deepcopy(BENCH)
    bench["batch_100"]["ours_int8"] = ours_int8
    return bench


def test_the_page_shows_every_table_and_checks_the_bounds():
    page = report.render(RESULT, BENCH)
    assert "| pretrained | s8 x21 | 0.9151 |  | 0.9154 | +0.03 vs float | 0.3 | yes |" in page
    assert "| 0.8863 | 0.8863 | 0.8858 | -0.05 vs table | 0.2 | yes |" in page
    assert "| batch 100 | 2,000 | 2,100 | 1,500 | 13,000 | 1.05x | 8.67x | 0.16x |" in page
    assert "**avx512_vnni**" in page
    assert "not met (1.05x)" in page and "not met (0.16x)" in page
    # time per layer: 2 * MACs * 100 images / time
    assert "| head_conv | 16x3x3x3 | 16x32x32 | 0.44 | 3.00 | 43% | 29 |" in page
    assert "python labs/lab3_int8.py --out-dir results" in page


def test_the_answer_follows_the_measured_speed():
    fast = report.answer(RESULT, with_speed(5000.0))
    same = report.answer(RESULT, with_speed(2100.0))
    slow = report.answer(RESULT, with_speed(1000.0))
    assert fast.startswith("Yes: ") and "2.50x" in fast
    assert same.startswith("Not in our code yet") and "1.05x" in same
    assert slow.startswith("No, not in our code") and "0.50x" in slow
    # PyTorch's 8.67x shows the hardware pays; a PyTorch that gains little says otherwise
    assert "kernel work, not arithmetic" in same
    flat = with_speed(2100.0)
    flat["batch_100"]["torch_int8"] = 1500.0
    assert "not behind the best the hardware gives" in report.answer(RESULT, flat)
    # the time profile: 32x32 layers take 6/7 of the time for a smaller share of the MACs
    assert "the 32x32 layers take 86%" in same


def test_the_answer_follows_the_accuracies_and_a_missing_benchmark():
    assert "every model is within its bound" in report.answer(RESULT, BENCH)
    worse = copy.deepcopy(RESULT)
    worse["models"]["lab3_d_4bit"]["int8_accuracy"] = 0.8800
    text = report.answer(worse, BENCH)
    assert "1 of 2 models miss their bound (lab3_d_4bit" in text and "-0.63 points" in text
    assert "| **no** |" in report.render(worse, BENCH)
    unmeasured = report.render(RESULT, None)
    assert "Not answered yet for speed" in unmeasured and "bench_int8.py" in unmeasured


def test_a_smoke_run_holds_lab3_models_to_their_float_accuracy():
    smoke = copy.deepcopy(RESULT)
    smoke["_meta"]["smoke"] = True
    smoke["test_images"] = 500
    smoke["models"]["lab3_d_4bit"].update(float_accuracy=0.9000, int8_accuracy=0.9010)
    page = report.render(smoke, BENCH)
    assert "**Smoke run**" in page
    assert "| +0.10 vs float | 0.2 | yes |" in page


def test_write_report_renders_from_the_folder_and_is_a_pure_function(tmp_path):
    assert report.write_report(tmp_path) is None  # no int8.json: nothing to render
    (tmp_path / "int8.json").write_text(json.dumps(RESULT))
    first = report.write_report(tmp_path).read_text()
    assert "Not measured in this folder" in first
    (tmp_path / "bench_int8.json").write_text(json.dumps(BENCH))
    page = report.write_report(tmp_path)
    assert page.read_text() == report.render(RESULT, BENCH)
    assert report.write_report(tmp_path).read_text() == page.read_text()


def with_peak(peak: float, amx: float | None = None) -> dict:
    """BENCH with a measured vpdpbusd peak (the kernel's instruction), or with an AMX one
    (then the kernel's) beside it."""
    bench = copy.deepcopy(BENCH)
    bench["peaks"] = {"vpdpbusd": {"per_core": peak, "together": 2 * peak,
                                   "method": "16 accumulators"}}
    bench.update(peak_instruction="vpdpbusd", peak_gmacs_per_core=peak)
    if amx is not None:
        bench["peaks"]["tdpbusd"] = {"per_core": amx, "together": 2 * amx, "method": "tiles"}
        bench.update(isa="amx", peak_instruction="tdpbusd", peak_gmacs_per_core=amx)
    return bench


def test_the_bound_is_the_model_macs_over_the_measured_peak_times_threads():
    macs = sum(row["macs"] for row in RESULT["layers"])  # 3,981,312 per image
    assert report.bound(RESULT, BENCH) is None  # no peak measured: no bound
    assert report.bound(RESULT, with_peak(400.0)) == 400e9 * 2 / macs
    high = " ".join(report.bound_lines(RESULT, with_peak(400.0)))
    assert "at most **200,939 images/s**" in high and "15.46x PyTorch's int8" in high
    assert "does not rule the goal out" in high and "keep 6% of its peak" in high
    # ours: 2,100 images/s of 200,939; the layers: 7 ms for 3.98 M MACs x 100 images
    assert "Ours runs at 1% of that bound" in high and "alone run at 7% of the peak" in high
    # a slower instruction puts the bound below PyTorch's figure: the sentence turns
    low = " ".join(report.bound_lines(RESULT, with_peak(10.0)))
    assert "at most **5,023 images/s**" in low and "0.39x PyTorch's int8" in low
    assert "no kernel on this instruction can reach it" in low
    assert "does not rule the goal out" not in low


def test_the_layer_table_shows_the_share_of_the_peak_only_when_measured():
    page = report.render(RESULT, with_peak(400.0))
    assert "of vpdpbusd peak" in page and "The bound of the design" in page
    # head_conv: 0.44 M MACs x 100 in 3 ms = 14.7 G/s over 2 threads of a 400 G/s peak
    assert "| head_conv | 16x3x3x3 | 16x32x32 | 0.44 | 3.00 | 43% | 29 | 2% |" in page
    # body_op.6.conv1: 1.18 M x 100 in 1 ms = 118 G/s, 15% of 2 x 400
    assert "| 1.18 | 1.00 | 14% | 236 | 15% |" in page
    plain = report.render(RESULT, BENCH)
    assert "of vpdpbusd peak" not in plain and "The bound of the design" not in plain


def test_the_bound_names_the_kernels_instruction_and_the_others():
    text = " ".join(report.bound_lines(RESULT, with_peak(10.0, amx=400.0)))
    assert "built on, `tdpbusd` (AMX tiles" in text and "**200,939 images/s**" in text
    assert "On `vpdpbusd` (10 G multiply-adds/s per core) the bound would be 5,023" in text
    assert "0.39x PyTorch's int8 figure" in text
    page = report.render(RESULT, with_peak(10.0, amx=400.0))
    assert "of tdpbusd peak" in page and "**amx**" in page
    slow_amx = " ".join(report.bound_lines(RESULT, with_peak(400.0, amx=10.0)))
    assert "no kernel on this instruction can reach it here, whatever its blocking." in slow_amx
    assert "needs a wider one" not in slow_amx


def test_the_epilogue_bound_adds_the_measured_epilogue_to_the_sums_at_their_peak():
    macs = sum(row["macs"] for row in RESULT["layers"])
    assert report.epilogue_bound(RESULT, with_peak(400.0)) is None  # not measured
    bench = with_peak(400.0)
    bench.update(epilogue={"plain": 3.0, "residual": 5.0, "method": "finish"},
                 epilogue_seconds_per_image=200e-6)
    most = report.epilogue_bound(RESULT, bench)
    assert most == 2 / (200e-6 + macs / 400e9)  # 9,526 images/s
    text = " ".join(report.bound_lines(RESULT, bench))
    assert "3.0 ns per 16 codes on one core (5.0 with a residual)" in text
    assert "200 us per image" in text and "at most 10,000 images/s on 2 threads" in text
    assert "at most **9,526 images/s**" in text and "0.73x PyTorch's int8" in text
    assert "the epilogue, not the multiply-adds, is what stands in the way" in text
    bench["epilogue_seconds_per_image"] = 20e-6  # a tenth: the bound passes PyTorch's
    text = " ".join(report.bound_lines(RESULT, bench))
    assert "what stands in the way" not in text and "keep 19% of this bound" in text
