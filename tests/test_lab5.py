"""Lab 5: early exit (the policy, the overthinking arithmetic, the classifiers, the batch that
drops exited images), the claims table, and the lab script."""

from __future__ import annotations

import importlib
import json
import re

import numpy as np
import pytest
from lab_scripts import load_lab_script
from test_lab4 import lab4_d_result

from minitorch_compress import published as pub
from minitorch_compress.compression.structured import resnet20_macs
from minitorch_compress.data.transforms import normalize
from minitorch_compress.experiments import lab5
from minitorch_compress.models import early_exit as ee
from minitorch_compress.models import resnet20
from minitorch_compress.paths import REPO_ROOT
from minitorch_compress.reports import claims
from minitorch_compress.reports import lab5 as report

lab5_script = load_lab_script("lab5_claims")


# --------------------------------------------------------------------------------------------
# The exit policy and the overthinking arithmetic, on hand-made examples.
# --------------------------------------------------------------------------------------------


def _logits_with_confidence(confidence: float, label: int, classes: int = 3) -> np.ndarray:
    """Logits whose softmax gives `label` probability `confidence`, the rest equal shares."""
    rest = (1 - confidence) / (classes - 1)
    probabilities = np.full(classes, rest)
    probabilities[label] = confidence
    return np.log(probabilities)


def test_each_image_leaves_at_the_first_confident_exit_else_at_the_last():
    # 3 exits, 4 images: (confidence, predicted label) per exit
    table = [[(0.9, 0), (0.5, 1), (0.4, 2), (0.6, 0)],  # exit 0
             [(0.95, 1), (0.8, 1), (0.5, 2), (0.7, 1)],  # exit 1
             [(0.99, 2), (0.9, 0), (0.6, 1), (0.5, 2)]]  # exit 2 (the last)
    logits = np.array([[_logits_with_confidence(c, k) for c, k in row] for row in table])
    exits = ee.confidence_exits(logits, 0.75)
    assert exits.tolist() == [0, 1, 2, 2]
    assert ee.predictions_at(logits, exits).tolist() == [0, 1, 1, 2]
    assert ee.confidence_exits(logits, 0.0).tolist() == [0, 0, 0, 0]
    assert ee.confidence_exits(logits, 1.5).tolist() == [2, 2, 2, 2]  # nothing exits early
    np.testing.assert_allclose(ee.softmax_confidence(logits)[1], [0.95, 0.8, 0.5, 0.7])


def test_wasteful_and_destructive_count_what_earlier_exits_got_right():
    correct = np.array([[1, 0, 0, 1, 0],   # exit 0
                        [0, 1, 0, 1, 0],   # exit 1
                        [0, 1, 0, 0, 1]],  # exit 2
                       dtype=bool)
    wasteful, destructive = ee.wasteful_and_destructive(correct)
    # exit 1: images 0 and 3 were right at exit 0; image 0 is now wrong
    # exit 2: images 0, 1, 3 were right before; 0 and 3 are now wrong
    np.testing.assert_allclose(wasteful, [0.0, 2 / 5, 3 / 5])
    np.testing.assert_allclose(destructive, [0.0, 1 / 5, 2 / 5])


def test_the_curve_and_the_operating_point_follow_the_policy():
    labels = np.array([0, 1, 2, 2])
    table = [[(0.9, 0), (0.5, 1), (0.4, 2), (0.9, 1)],
             [(0.95, 1), (0.8, 1), (0.5, 2), (0.7, 1)],
             [(0.99, 0), (0.9, 1), (0.6, 2), (0.5, 2)]]
    logits = np.array([[_logits_with_confidence(c, k) for c, k in row] for row in table])
    costs = np.array([10, 20, 30])
    curve = lab5.threshold_curve(logits, labels, costs, full_macs=30, thresholds=(0.85, 0.99))
    low, high = curve
    # t = 0.85: images 0 and 3 leave at exit 0 (right, wrong); 1 and 2 go to the end (right)
    assert low["accuracy"] == 0.75 and low["mean_macs"] == (10 + 30 + 30 + 10) / 4
    assert low["exit_fractions"] == [0.5, 0.0, 0.5] and low["exit_accuracy"][1] is None
    assert low["lost"] == 0.25 and low["rescued"] == 0.0  # image 3: the last exit was right
    assert high["accuracy"] == 1.0 and high["saving"] == 0.0
    assert lab5.operating_point(curve, float_accuracy=1.0, tolerance=0.3) == low
    assert lab5.operating_point(curve, float_accuracy=1.0, tolerance=0.0) == high
    assert lab5.operating_point(curve[:1], float_accuracy=1.0, tolerance=0.0) is None


def test_macs_are_counted_from_the_layer_shapes():
    model = resnet20()
    assert sum(ee.segment_macs(model)) + 64 * 10 == resnet20_macs() == ee.full_model_macs(model)
    heads = ee.internal_classifiers_for(model)
    costs = ee.exit_costs(model, heads)
    assert np.all(np.diff(costs) > 0)
    assert costs[-1] == resnet20_macs() + 10 * (16 * 3 + 32 * 3 + 64 * 2)
    small = resnet20(mid_channels=[8] * 9)  # a channel-pruned model costs less
    assert ee.full_model_macs(small) == resnet20_macs([8] * 9)


# --------------------------------------------------------------------------------------------
# The classifiers and the model that drops exited images.
# --------------------------------------------------------------------------------------------


def test_the_classifiers_learn_a_synthetic_task_well_above_chance():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    centres = rng.normal(0, 2, (3, 4))
    features = [(centres[labels] + rng.normal(0, 1, (600, 4))).astype(np.float32)
                for _ in range(2)]
    heads = ee.InternalClassifiers([4, 4], num_classes=3, rng=np.random.default_rng(1))
    log = lab5.train_internal_classifiers(heads, features, labels, epochs=4, seed=0)
    assert log[-1]["loss"] < log[0]["loss"]
    for head, f in zip(heads.heads, features, strict=True):
        from minitorch_compress.autograd.tensor import Tensor

        accuracy = (head(Tensor(f)).data.argmax(axis=1) == labels).mean()
        assert accuracy > 0.7  # chance is 1/3


@pytest.fixture(scope="module")
def tiny_model():
    """A random ResNet-20 (eval mode), random classifiers, 6 images and their features."""
    model = resnet20(rng=np.random.default_rng(3)).eval()
    heads = ee.internal_classifiers_for(model, np.random.default_rng(4))
    images = np.random.default_rng(5).integers(0, 256, (6, 3, 32, 32)).astype(np.uint8)
    features = ee.pooled_block_features(model, images)
    return model, heads, images, features


def test_the_last_exit_is_the_pretrained_models_own_head(tiny_model):
    from minitorch_compress.autograd.engine import no_grad
    from minitorch_compress.autograd.tensor import Tensor

    model, heads, images, features = tiny_model
    logits = ee.exit_logits(model, heads, features)
    with no_grad():
        direct = model(Tensor(normalize(images))).data
    assert logits.shape == (9, 6, 10)
    np.testing.assert_allclose(logits[-1], direct, rtol=1e-5, atol=1e-5)


def test_dropping_exited_images_gives_the_policys_predictions(tiny_model):
    model, heads, images, features = tiny_model
    logits = ee.exit_logits(model, heads, features)
    # half the images are confident enough at exit 0; the rest leave later or at the end
    first = np.median(ee.softmax_confidence(logits[0]))
    for threshold in (first, np.max(ee.softmax_confidence(logits[1:-1])), 2.0):
        expected_exits = ee.confidence_exits(logits, threshold)
        predictions, exits = ee.early_exit_predict(model, heads, normalize(images), threshold)
        assert exits.tolist() == expected_exits.tolist()
        assert predictions.tolist() == ee.predictions_at(logits, expected_exits).tolist()
    assert len(set(ee.confidence_exits(logits, first))) > 1


def test_speed_is_measured_in_alternating_rounds(tiny_model):
    model, heads, images, _ = tiny_model
    speed = lab5.measure_speed(model, heads, normalize(images[:2]), threshold=0.5,
                               batch_size=1, rounds=1)
    assert speed["full_img_s"] > 0 and speed["early_exit_img_s"] > 0
    assert len(speed["full_rounds"]) == len(speed["early_exit_rounds"]) == 1
    with pytest.raises(ValueError):
        lab5.measure_speed(model, heads, normalize(images[:2]), 0.5, 1, rounds=0)


# --------------------------------------------------------------------------------------------
# The verdict on 1.8 and the claims table.
# --------------------------------------------------------------------------------------------


def _lab5_b(saving: float, rescued: float, early_accuracy: float | None) -> dict:
    """A minimal lab5_b.json: an operating point with these numbers."""
    fractions = [0.2, 0, 0, 0, 0, 0, 0, 0, 0.8] if early_accuracy is not None else [0] * 8 + [1]
    point = {"threshold": 0.9, "accuracy": 0.91, "mean_macs": 4e7 * (1 - saving),
             "saving": saving, "rescued": rescued, "lost": 0.01,
             "exit_fractions": fractions,
             "exit_accuracy": [early_accuracy] + [None] * 7 + [0.9]}
    return {"protocol": {"tolerance": 0.005}, "float_accuracy": 0.915,
            "operating_point": point, "exits": [{"destructive": 0.02}],
            "destructive_errors": 200, "final_errors": 850, "_meta": {}}


def test_the_verdict_on_1_8_follows_the_numbers():
    assert report.claim_1_8(_lab5_b(0.3, 0.01, 0.99))[1] == "agrees"
    text, verdict = report.claim_1_8(_lab5_b(0.02, 0.01, 0.99))
    assert verdict == "in part" and "not effective" in text
    assert report.claim_1_8(_lab5_b(0.02, 0.0, None))[1] == "disagrees"
    assert report.claim_1_8({**_lab5_b(0.3, 0.01, 0.99), "operating_point": None})[1] \
        == "disagrees"
    assert report.claim_1_8(None)[1] == "not measured"


def _committed_results(tmp_path, names):
    for name in names:
        (tmp_path / f"{name}.json").write_text((REPO_ROOT / "results" / f"{name}.json")
                                               .read_text())
    return tmp_path


def _lab5_a(gains: dict[str, float], mixed_bytes: int = 50_000) -> dict:
    """A part (a) result whose mixed models beat their uniform ones by `gains`."""
    def record(gain: float) -> dict:
        return {"best_accuracy": 0.85 + gain, "model_file": {"bytes": mixed_bytes},
                "uniform": {"name": "lab3_c_2bit", "bytes": 53_728, "bits": 2,
                            "accuracy": 0.85, "next": None}}
    return {"targets": {t: record(g) for t, g in gains.items()}, "_meta": {"smoke": False}}


INPUTS = ["lab1", "lab2_d", "lab3_c", "lab3_d", "lab4_a", "lab4_b", "lab4_c", "lab4_d",
          "compression"]


def test_the_claims_table_covers_all_ten_and_1_10_waits_for_its_result_file(tmp_path):
    out = _committed_results(tmp_path, INPUTS)
    (out / "lab5_b.json").write_text(json.dumps(_lab5_b(0.3, 0.01, 0.99)))
    payload = claims.write_claims(out)
    rows = {row["claim"]: row for row in payload["claims"]}
    assert list(rows) == [f"1.{i}" for i in range(1, 11)]
    assert rows["1.10"]["verdict"] == "not measured"
    assert rows["1.8"]["verdict"] == "agrees"
    assert rows["1.4"]["answer"] is False
    assert all(rows[k]["verdict"] != "not measured" for k in rows if k != "1.10")
    page = (out / "claims.md").read_text()
    assert page.count("\n| 1.") == 10 and "| 1.10: " in page
    assert json.loads((out / "claims.json").read_text()) == payload
    # 1.10's row is computed from lab5_a.json's numbers, not fixed
    (out / "lab5_a.json").write_text(json.dumps(_lab5_a({"c2": 0.01, "c3": 0.02})))
    rows = {row["claim"]: row for row in claims.claims_payload(out)["claims"]}
    assert rows["1.10"]["verdict"] == "agrees"
    (out / "lab5_a.json").write_text(json.dumps(_lab5_a({"c2": 0.01, "c3": -0.001})))
    rows = {row["claim"]: row for row in claims.claims_payload(out)["claims"]}
    assert rows["1.10"]["verdict"] == "in part"


def test_a_claims_table_built_from_smoke_results_says_so(tmp_path):
    (tmp_path / "lab5_b.json").write_text(json.dumps(
        {**_lab5_b(0.3, 0.01, 0.99), "_meta": {"smoke": True}}))
    payload = claims.write_claims(tmp_path)
    assert payload["smoke_inputs"] == ["lab5_b"]
    assert "Built from smoke results** (`lab5_b.json`)" in (tmp_path / "claims.md").read_text()
    (tmp_path / "lab5_b.json").write_text(json.dumps(_lab5_b(0.3, 0.01, 0.99)))
    claims.write_claims(tmp_path)
    assert "smoke" not in (tmp_path / "claims.md").read_text()


def test_claims_without_their_result_files_are_not_measured(tmp_path):
    rows = claims.claims_payload(tmp_path)["claims"]
    assert {row["verdict"] for row in rows if row["claim"] != "1.9"} == {"not measured"}


def test_every_lab4_sentence_maps_to_a_reading_of_the_claim():
    from minitorch_compress.reports import lab4

    assert claims.lab4_holds("1.2", lab4.claim_1_2(lab4_d_result(110.0, 150.0))) is True
    assert claims.lab4_holds("1.2", lab4.claim_1_2(lab4_d_result(200.0, 150.0))) == "in part"
    assert claims.lab4_holds("1.6", lab4.claim_1_6(lab4_d_result(110.0, 150.0))) is True
    assert claims.lab4_holds("1.6", lab4.claim_1_6(lab4_d_result(200.0, 150.0))) == "in part"
    assert claims.lab4_holds("1.6", lab4.claim_1_6(lab4_d_result(200.0, 50.0))) == "in part"
    iterative = {"best_accuracy": 0.87, "total_sparsity": 0.8, "source": "lab2_d.json"}

    def c(sparsity, accuracy):
        return {"c": {"threshold": 1e-3, "iterative": iterative,
                      "strengths": {"0.01": {"sparsity": sparsity, "accuracy": accuracy}}}}

    assert claims.lab4_holds("1.4", lab4.claim_1_4(c(0.85, 0.865))) is False
    assert claims.lab4_holds("1.4", lab4.claim_1_4(c(0.85, 0.50))) is True
    assert claims.lab4_holds("1.4", lab4.claim_1_4(c(0.60, 0.90))) is True
    stages = {"sparse+quantized": 100, "sparse+quantized+huffman": 50}
    compression = {"models": {"p": {"bits": None, "ratio": 5.0, "stages": {
        "sparse+quantized": 100, "sparse+quantized+huffman": 90}},
        "q": {"bits": 4, "ratio": 20.0, "stages": stages}}}
    assert claims.lab4_holds("1.3", lab4.claim_1_3(compression)) is True
    assert claims.lab4_holds("1.3", lab4.claim_1_3(
        {"models": {"q": {"bits": 4, "ratio": 20.0, "stages": stages}}})) is False
    assert claims.lab4_holds("1.2", lab4.claim_1_2({})) is None
    alone = {"c": {**c(0.85, 0.865)["c"], "iterative": None}}  # Lab 2 (d) absent
    assert claims.lab4_holds("1.4", lab4.claim_1_4(alone)) is None
    unstructured_absent = lab4_d_result(110.0, 150.0)
    del unstructured_absent["d"]["models"]["unstructured_80_dense_path"]
    del unstructured_absent["d"]["models"]["unstructured_80_sparse_path"]
    assert claims.lab4_holds("1.6", lab4.claim_1_6(unstructured_absent)) is None
    with pytest.raises(ValueError, match="no known verdict"):
        claims.lab4_holds("1.2", "a sentence in other words")


def test_the_code_and_tests_named_for_1_1_and_1_9_exist():
    for code, tests in claims.CODE_EVIDENCE.values():
        for name in code:
            module, attribute = name.split(":")
            assert hasattr(importlib.import_module(module), attribute), name
        for name in tests:
            path, test = name.split("::")
            assert re.search(rf"^def {test}\(", (REPO_ROOT / path).read_text(), re.M), name


def test_every_claim_has_a_text_and_the_known_answers_are_kept():
    assert list(pub.ALL_CLAIMS) == [f"1.{i}" for i in range(1, 11)]
    assert all(text for text, _, _ in pub.ALL_CLAIMS.values())
    assert {k for k, (_, answer, _) in pub.ALL_CLAIMS.items() if answer is None} \
        == set(pub.PARAPHRASED_CLAIMS)


# --------------------------------------------------------------------------------------------
# The lab script.
# --------------------------------------------------------------------------------------------


def test_an_unknown_part_a_target_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        lab5_script.main(["--part", "a", "--targets", "c5"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "--targets" in err and "\n" not in err


def test_a_target_given_twice_is_refused():
    """`--targets c3 c3` finetuned c3 twice."""
    from minitorch_compress.errors import MinitorchError

    with pytest.raises(MinitorchError, match="--targets names c3 twice"):
        lab5.Lab5Options(part="a", targets=("c3", "d2", "c3"))


def test_bad_options_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        lab5_script.main(["--speed-rounds", "-1"])
    assert exit_info.value.code == 2 and "--speed-rounds" in capsys.readouterr().err


def test_part_b_and_c_end_to_end(tmp_path, synthetic_cifar10_dir, random_resnet20_weights):
    out = tmp_path / "results"
    argv = ["--part", "all", "--data-dir", str(synthetic_cifar10_dir),
            "--weights", str(random_resnet20_weights), "--epochs", "2", "--subset", "64",
            "--test-subset", "32", "--out-dir", str(out), "--run-root", str(tmp_path / "runs"),
            "--no-progress"]
    assert lab5_script.main(argv) == 0
    result = json.loads((out / "lab5_b.json").read_text())
    assert result["_meta"]["smoke"] and result["speed"] is None
    assert len(result["exits"]) == 9 and result["test_images"] == 32
    assert (out / "models" / "lab5_b_exits.npz").is_file()
    page = (out / "lab5.md").read_text()
    assert "speed not measured in this run" in page.lower()
    assert (out / "lab5" / "early_exit.png").is_file()
    assert "| 1.8: " in (out / "claims.md").read_text()
    # --resume reuses the cached features and gives the same numbers
    assert lab5_script.main([*argv, "--resume"]) == 0
    again = json.loads((out / "lab5_b.json").read_text())
    assert again["exits"] == result["exits"]


def test_report_links_the_claims_table_when_it_exists(tmp_path):
    from minitorch_compress.reports.summary import write_report

    assert "claims.md" not in write_report(tmp_path).read_text()
    claims.write_claims(tmp_path)
    assert "[claims.md](claims.md)" in write_report(tmp_path).read_text()


def test_a_smoke_run_never_replaces_the_full_result(tmp_path, synthetic_cifar10_dir,
                                                    random_resnet20_weights, capsys):
    (tmp_path / "lab5_b.json").write_text(json.dumps({"_meta": {"smoke": False}}))
    argv = ["--part", "b", "--data-dir", str(synthetic_cifar10_dir), "--weights",
            str(random_resnet20_weights), "--epochs", "1", "--subset", "64", "--out-dir",
            str(tmp_path), "--run-root", str(tmp_path / "runs"), "--no-progress"]
    assert lab5_script.main(argv) == 2
    assert "full-size result" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()  # refused before anything was written


def test_a_handful_of_early_images_is_not_easy_data_identified_early():
    few = _lab5_b(0.3, 0.01, 0.99)
    few["operating_point"]["exit_fractions"] = [0.001] + [0] * 7 + [0.999]
    text, verdict = report.claim_1_8(few)
    assert verdict == "in part" and "not identifies easy data early" in text


def test_the_page_shows_measured_speed_when_there_is_some():
    result = json.loads((REPO_ROOT / "results" / "lab5_b.json").read_text())
    assert "Speed not measured in this run" in "\n".join(report.page({**result, "speed": None}))
    result["speed"] = {"100": {"images": 1000, "rounds": 3, "full_img_s": 1600.0,
                               "early_exit_img_s": 2000.0, "speedup": 1.25}}
    page = "\n".join(report.page(result))
    assert "| 100 | 1000 | 3 | 1600 | 2000 | 1.25x |" in page and "not measured" not in page


def test_claim_1_8_counts_saved_macs_as_effective_only_if_time_is_saved_where_measured():
    fast = {"speed": {"100": {"speedup": 1.3}}}
    flat = {"speed": {"100": {"speedup": 1.0}}}
    assert report.claim_1_8({**_lab5_b(0.3, 0.01, 0.99), **fast})[1] == "agrees"
    text, verdict = report.claim_1_8({**_lab5_b(0.3, 0.01, 0.99), **flat})
    assert verdict == "in part" and "not effective" in text and "1.00x" in text
