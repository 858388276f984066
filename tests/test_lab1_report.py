"""Lab 1's report: each sentence that compares or concludes follows the computed values.

The report is rendered from the JSON alone (`reports.lab1.render_lab1`), so each test takes
the document of one real run, changes the value a sentence depends on, and checks that the
sentence changes with it.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from minitorch_compress.experiments import lab1
from minitorch_compress.paths import RESULTS_DIR
from minitorch_compress.reports import lab1 as report


@pytest.fixture(scope="module")
def document():
    """The JSON document of a real 200-step run (the lab takes about a second)."""
    return json.loads(json.dumps(lab1.payload(lab1.run_all(200), 200)))


def test_the_committed_page_is_rendered_from_the_committed_json():
    committed = json.loads((RESULTS_DIR / "lab1.json").read_text())
    assert report.render_lab1(committed) == (RESULTS_DIR / "lab1.md").read_text()


def test_a_tie_at_the_first_update_is_found_and_resolved_to_the_earlier_index():
    above, tied, kept = report.tie_at_first_update(np.array([-0.2, 0.4, 0.2, 0.2, -0.2]))
    assert (above, tied, kept) == ([1], [0, 2, 3, 4], 0)
    assert report.tie_at_first_update(np.array([-0.3, 0.4, 0.2, 0.2, -0.2])) is None


def test_support_segments_name_every_change_of_support():
    text = report.support_segments(["{w1, w2}"] * 3 + ["{w2, w3}"] + ["{w1, w2}"] * 2)
    assert text == "{w1, w2} for steps 1-3, {w2, w3} at step 4 and {w1, w2} from step 5 on"
    assert report.support_segments(["{w2}"] * 4) == "{w2} for steps 1-4"


def test_the_boundary_sentence_follows_the_computed_threshold():
    w = [0.0, 2.2, 1e-15, 0.0, -0.67]
    assert "sits on that boundary" in report.boundary_sentence(0.04, 0.04, w, 200)
    assert "is above that boundary" in report.boundary_sentence(0.05, 0.04, w, 200)
    assert "is below that boundary" in report.boundary_sentence(0.03, 0.04, w, 200)


def _with(document, change):
    flipped = copy.deepcopy(document)
    change(flipped)
    return report.Lab1Results(flipped)


def test_the_per_sample_sentence_flips_with_the_support_it_ends_on(document):
    r = report.Lab1Results(document)
    assert "lands elsewhere: on {w1, w2}, W*'s support" in report.per_sample_c_sentence(r)
    assert "keeps the earliest, w1" in report.per_sample_c_sentence(r)

    def same_as_full_batch(d):
        d["per_sample"]["c"]["W"] = list(d["full_batch"]["c"]["W"])

    assert report.per_sample_c_sentence(_with(document, same_as_full_batch)).startswith(
        "The per-sample run lands on the same support")


def test_the_l1_reading_of_the_reference_points_follows_the_norms(document):
    text = " ".join(report.reference_lines(report.Lab1Results(document)))
    assert "W* is not the smallest-L1 exact fit" in text

    def small_w_star(d):
        d["evidence"]["w_star"] = [1.0, 1.0, 0.0, 0.0, 0.0]

    flipped = " ".join(report.reference_lines(_with(document, small_w_star)))
    assert "not the smallest-L1" not in flipped and "at least as small in L1" in flipped


def test_the_subgradient_sentences_follow_the_final_weights(document):
    text = report.part_d_commentary(report.Lab1Results(document))[0]
    assert "L grows with lambda" in text
    assert "The two largest entries are w2 and w5 for every lambda, as in (e)" in text

    def other_top_two(d):
        d["full_batch"]["d"]["2.0"]["W"] = [3.0, 2.0, 0.0, 0.0, 0.0]
        d["full_batch"]["d"]["2.0"]["loss"] = 0.0

    flipped = report.part_d_commentary(_with(document, other_top_two))[0]
    assert "L is not monotone in lambda" in flipped
    assert "The two largest entries change with lambda" in flipped
    assert "lambda = 2.0: w1 and w2" in flipped


def test_the_prox_sentences_follow_the_support_and_the_kkt_check(document):
    text = report.part_e_commentary(report.Lab1Results(document))[0]
    assert "not on W*'s support" in text and "the converged runs are lasso minimisers" in text

    def on_w_star_and_not_a_minimiser(d):
        d["full_batch"]["e"]["0.04"]["W"] = [0.9, 2.9, 0.0, 0.0, 0.0]
        d["evidence"]["e_last_ls"] = [1.0, 3.0, 0.0, 0.0, 0.0]
        d["evidence"]["kkt_fb"][-1] = 0.5

    flipped = report.part_e_commentary(_with(document, on_w_star_and_not_a_minimiser))[0]
    assert "and on W*'s support" in flipped
    assert "not every converged run satisfies them" in flipped


def test_the_trimmed_sentences_follow_where_the_runs_end(document):
    text = report.part_f_commentary(report.Lab1Results(document))[0]
    assert "the result is the projected-GD point" in text and "misses W*" in text

    def trimmed_finds_w_star(d):
        d["full_batch"]["f"]["0.2"]["W"] = [1.0, 3.0, 0.0, 0.0, 0.0]

    flipped = report.part_f_commentary(_with(document, trimmed_finds_w_star))[0]
    assert "is not the projected-GD point" in flipped
    assert "Unlike the projection it ends on {w1, w2} and finds W*'s support" in flipped


def test_the_schedule_items_follow_the_measured_gaps(document):
    r = report.Lab1Results(document)
    assert "much closer to full-batch runs with 3x the penalty" in report.penalty_item(r)
    assert "somewhat faster per step" in report.data_term_item(r)

    def per_sample_matches_the_same_penalty(d):
        d["evidence"]["e_vs"][0][1] = 0.0  # per sample equal to full batch with the same t
        ps = d["evidence"]["probe_losses"]
        ps["per_sample"] = [2 * x for x in ps["full_batch"]]

    flipped = _with(document, per_sample_matches_the_same_penalty)
    assert "in 7 of 8 cases" in report.penalty_item(flipped)
    assert "not faster per step" in report.data_term_item(flipped)


def test_a_run_that_converges_nowhere_never_speaks_of_its_converged_results():
    """Issue #34, part 6: a `--steps 50` page said both "no run converged" and "its converged
    (e) results satisfy the lasso conditions"."""
    short = json.loads(json.dumps(lab1.payload(lab1.run_all(50), 50)))
    r = report.Lab1Results(short)
    assert "no run converged within the steps" in report.part_e_commentary(r)[0]
    page = "\n".join(report.schedules_lines(r))
    assert "its converged (e) results" not in page
    assert "compare the lasso violations above for both schedules" in page
