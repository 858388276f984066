"""Lab 1's report: each sentence that compares or concludes follows the computed values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from minitorch_compress.experiments import lab1_report as report


def test_a_tie_at_the_first_update_is_found_and_resolved_to_the_earlier_index():
    above, tied, kept = report.tie_at_first_update(np.array([-0.2, 0.4, 0.2, 0.2, -0.2]))
    assert (above, tied, kept) == ([1], [0, 2, 3, 4], 0)
    assert report.tie_at_first_update(np.array([-0.3, 0.4, 0.2, 0.2, -0.2])) is None


def test_support_segments_name_every_change_of_support():
    text = report.support_segments(["{w1, w2}"] * 3 + ["{w2, w3}"] + ["{w1, w2}"] * 2)
    assert text == "{w1, w2} for steps 1-3, {w2, w3} at step 4 and {w1, w2} from step 5 on"
    assert report.support_segments(["{w2}"] * 4) == "{w2} for steps 1-4"


def test_the_boundary_sentence_follows_the_computed_threshold():
    run = SimpleNamespace(final_W=np.array([0.0, 2.2, 1e-15, 0.0, -0.67]))
    assert "sits on that boundary" in report.boundary_sentence(0.04, 0.04, run, 200)
    assert "is above that boundary" in report.boundary_sentence(0.05, 0.04, run, 200)
    assert "is below that boundary" in report.boundary_sentence(0.03, 0.04, run, 200)


def _runs(ps_final, fb_final=(0.0, 2.2, 0.0, 0.0, -0.6667)):
    def history(final):
        final = np.asarray(final, float)
        return SimpleNamespace(final_W=final, final_loss=0.1, weights=[np.zeros(5), final],
                               nnz=int(np.count_nonzero(final)))

    return SimpleNamespace(c_ps=history(ps_final), c_fb=history(fb_final), steps=1)


def test_the_per_sample_sentence_flips_with_the_support_it_ends_on():
    evidence = SimpleNamespace(w_star=np.array([1.0, 3.0, 0, 0, 0]), c_ps_supports=["{w1, w2}"],
                               c_ps_first=np.array([-0.2, 0.4, 0.2, 0.2, -0.2]))
    same = report.per_sample_c_sentence(_runs((0.0, 2.2, 0.0, 0.0, -0.669)), evidence)
    assert same.startswith("The per-sample run lands on the same support")
    other = report.per_sample_c_sentence(_runs((1.0, 3.0, 0.0, 0.0, 0.0)), evidence)
    assert "lands elsewhere: on {w1, w2}, W*'s support" in other
    assert "keeps the earliest, w1" in other
