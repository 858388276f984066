"""Mixed precision (Lab 5 (a), claim 1.10): the knapsack against brute force, per-layer widths
through the .mtc file, measured layer bytes, `compress --bits-per-layer`, and a small run of
the lab part."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from minitorch_compress.cli import main
from minitorch_compress.compression import bits_per_layer, set_bits_per_layer, weight_layers
from minitorch_compress.compression import mixed_precision as mp
from minitorch_compress.errors import MinitorchError
from minitorch_compress.io import mtc
from minitorch_compress.models.resnet import ResNet20
from minitorch_compress.reports import lab5_mixed

#: a ResNet-20 with 4 channels inside every block: the same layer names, files saved faster
MID_CHANNELS = [4] * 9
BODY = ["body_op.0.conv1.0.conv", "body_op.4.conv2.0.conv", "body_op.6.id_mapping.0.conv",
        "body_op.8.conv2.0.conv"]


def _brute_force(cost, penalty, units, granularity):
    """The least summed penalty over every choice whose rounded cost fits `units`."""
    names = list(cost)
    best = None
    for choice in itertools.product(*[list(cost[n]) for n in names]):
        need = sum(-(-cost[n][b] // granularity) for n, b in zip(names, choice, strict=True))
        if need <= units:
            total = sum(penalty[n][b] for n, b in zip(names, choice, strict=True))
            best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("granularity", [1, 7])
def test_the_knapsack_is_exact_against_brute_force(seed, granularity):
    rng = np.random.default_rng(seed)
    widths = (1, 2, 3, 4)
    cost = {f"l{i}": {b: int(rng.integers(20, 60)) * b for b in widths} for i in range(5)}
    penalty = {n: {b: float(rng.exponential(1.0 / b)) for b in widths} for n in cost}
    budget = int(rng.integers(sum(min(c.values()) for c in cost.values()),
                              sum(max(c.values()) for c in cost.values())))
    bits = mp.allocate(cost, penalty, budget, granularity)
    assert list(bits) == list(cost)
    assert mp.allocation_cost(cost, bits) <= budget  # rounding up never overspends
    assert mp.allocation_penalty(penalty, bits) == pytest.approx(
        _brute_force(cost, penalty, budget // granularity, granularity))


def test_the_knapsack_refuses_a_budget_nothing_fits():
    cost = {"a": {1: 10, 2: 20}, "b": {1: 10, 2: 20}}
    penalty = {"a": {1: 1.0, 2: 0.0}, "b": {1: 1.0, 2: 0.0}}
    assert mp.allocate(cost, penalty, 30) in ({"a": 1, "b": 2}, {"a": 2, "b": 1})
    assert mp.allocate(cost, penalty, 40) == {"a": 2, "b": 2}
    with pytest.raises(MinitorchError, match="no allocation fits 19 bytes"):
        mp.allocate(cost, penalty, 19)


def test_per_layer_widths_round_trip_through_the_model_file(tmp_path):
    model = ResNet20(rng=np.random.default_rng(0), mid_channels=MID_CHANNELS).eval()
    widths = dict(zip(BODY, (1, 3, 5, 8), strict=True))
    set_bits_per_layer(model, widths, "asymmetric")
    assert bits_per_layer(model) == widths
    path = tmp_path / "mixed.mtc"
    mtc.save(path, model)
    loaded = mtc.load(path)
    stored = {name: mtc.stored_bits(loaded.header["tensors"][f"{name}.weight"])
              for name in weight_layers(model)}
    assert {n: stored[n] for n in BODY} == widths
    assert stored["body_op.1.conv1.0.conv"] is None  # not quantized: float32 values
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    from minitorch_compress.autograd.engine import no_grad
    from minitorch_compress.autograd.tensor import Tensor
    with no_grad():
        assert np.array_equal(mtc.load_model(path)(Tensor(x)).data, model(Tensor(x)).data)


def test_a_layers_measured_bytes_are_its_bytes_in_a_mixed_file(tmp_path):
    """Each tensor is coded on its own: what `layer_bytes` measured in a uniform file is what
    the layer takes in any mixed one."""
    model = ResNet20(rng=np.random.default_rng(0), mid_channels=MID_CHANNELS).eval()
    costs, rest = mp.layer_bytes(model, BODY, (2, 4), "asymmetric")
    assert bits_per_layer(model) == {}  # the model's own (no) quantizers are back
    widths = {BODY[0]: 2, BODY[1]: 4, BODY[2]: 4, BODY[3]: 2}
    set_bits_per_layer(model, widths, "asymmetric")
    mtc.save(tmp_path / "mixed.mtc", model)
    total, by_layer = mp.file_bytes_by_layer(tmp_path / "mixed.mtc", BODY)
    assert by_layer == {n: costs[n][b] for n, b in widths.items()}
    assert costs[BODY[3]][2] < costs[BODY[3]][4]
    assert min(rest.values()) <= total - sum(by_layer.values()) <= max(rest.values()) + 64


def _compress(tmp_path, capsys, *extra):
    code = main(["compress", "--quantizer", "asymmetric", "--out", str(tmp_path / "m.mtc"),
                 "--overwrite", *extra])
    return code, capsys.readouterr()


@pytest.mark.parametrize(("content", "message"), [
    ('{"body_op.0.conv1.0.conv": 3, "no.such.layer": 2}', "no layer named 'no.such.layer'"),
    ('{"body_op.0.conv1.0.conv": 9}', "has 9 bits; a width is a whole number from 1 to 8"),
    ('{"body_op.0.conv1.0.conv": true}', "has True bits"),
    ('{"body_op.0.conv1.0.conv": 2.5}', "has 2.5 bits"),
    ("[3, 4]", "expected a JSON object"),
    ("not json", "not JSON"),
])
def test_bad_bits_per_layer_files_are_one_line(tmp_path, capsys, random_resnet20_weights,
                                               content, message):
    bad = tmp_path / "bits.json"
    bad.write_text(content)
    code, out = _compress(tmp_path, capsys, "--weights", str(random_resnet20_weights),
                          "--bits-per-layer", str(bad))
    assert code == 2 and message in out.err and out.err.count("\n") == 1
    code, out = _compress(tmp_path, capsys, "--bits-per-layer", str(tmp_path / "missing.json"))
    assert code == 2 and "no such file" in out.err


def test_compress_with_bits_per_layer_writes_and_inspect_shows_each_width(
        tmp_path, capsys, random_resnet20_weights):
    allocation = tmp_path / "allocation.json"  # a Lab 5 run's file, widths under "bits"
    allocation.write_text(json.dumps({"bits": {BODY[0]: 4, BODY[3]: 1}, "budget_bytes": 1}))
    code, _ = _compress(tmp_path, capsys, "--weights", str(random_resnet20_weights),
                        "--bits", "2", "--bits-per-layer", str(allocation))
    assert code == 0
    assert main(["inspect", str(tmp_path / "m.mtc")]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith(("body_op", "head_conv"))}
    bits_column = 5  # name, shape (4 words), sparsity, then bits
    assert rows[f"{BODY[0]}.weight"][bits_column + 1] == "4"
    assert rows[f"{BODY[3]}.weight"][bits_column + 1] == "1"
    assert rows["body_op.1.conv1.0.conv.weight"][bits_column + 1] == "2"
    assert rows["head_conv.0.conv.weight"][bits_column + 1] == "float"


def test_claim_1_10_counts_only_comparisons_at_equal_size():
    def record(gain, mixed_bytes):
        return {"best_accuracy": 0.8 + gain, "model_file": {"bytes": mixed_bytes},
                "uniform": {"name": "u", "bytes": 1000, "bits": 2, "accuracy": 0.8,
                            "next": None}}

    better = {"targets": {"c2": record(0.01, 990)}}
    assert lab5_mixed.claim_1_10(better)[1] == "agrees"
    larger = {"targets": {"c2": record(0.01, 1001)}}
    text, verdict = lab5_mixed.claim_1_10(larger)
    assert verdict == "disagrees" and "LARGER" in text
    noise = {"targets": {"c2": record(0.004, 990), "c3": record(0.02, 900)}}
    assert lab5_mixed.claim_1_10(noise)[1] == "in part"
    assert lab5_mixed.claim_1_10(None)[1] == "not measured"


def test_a_small_part_a_run_writes_its_result_model_and_page(
        tmp_path, monkeypatch, synthetic_cifar10_dir, random_resnet20_weights):
    from minitorch_compress.experiments import lab5
    from minitorch_compress.reports import lab5 as report

    monkeypatch.setattr(lab5, "BIT_MENU", (1, 2))  # fewer evaluations: seconds, not more
    options = lab5.Lab5Options(
        part="a", targets=("c2",), epochs=1, subset=32, test_subset=16, sensitivity_images=8,
        data_dir=synthetic_cifar10_dir, weights=random_resnet20_weights,
        out_dir=tmp_path / "out", run_root=tmp_path / "runs", no_progress=True)
    result = lab5.part_a(options)
    record = result["targets"]["c2"]
    assert result["_meta"]["smoke"] is True
    assert record["stored_bits"] == record["bits"] and set(record["bits"].values()) <= {1, 2}
    assert record["before_file_bytes"] <= record["budget_bytes"] - record["margin_bytes"]
    assert record["file_accuracy"] == record["best_accuracy"]
    assert (tmp_path / "out" / "models" / "lab5_a_c2.mtc").stat().st_size \
        == record["model_file"]["bytes"]
    assert (tmp_path / "runs" / "lab5_a_c2" / "allocation.json").is_file()
    page = report.write_report(tmp_path / "out").read_text()
    assert "## (a) Mixed precision (claim 1.10)" in page and "| c2 | `lab3_c_2bit` |" in page
    # --resume keeps the finished target without running it again
    again = lab5.part_a(lab5.Lab5Options(**{**options.__dict__, "resume": True}))
    assert again["targets"]["c2"]["run"] == record["run"]
