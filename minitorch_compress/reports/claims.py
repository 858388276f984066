"""``claims.json`` and ``claims.md``: the course's ten true/false claims, what this project
measured for each and where, and whether it agrees with the course's answer.

Built from the committed result files alone (``lab1.json``, ``lab3_c.json``, ``lab3_d.json``,
``lab4_*.json``, ``compression.json``, ``lab5_b.json``, ``lab5_a.json``); nothing is run.
Each claim's evaluator returns what was measured, where, and whether the measurement shows
the claim's statement true (True, False, "in part" or None for not measured); the verdict
then compares that with the course's answer. Lab 4's and Lab 5's own pages choose their
sentences (`reports.lab4.claim_1_2` ..., `reports.lab5.claim_1_8`); this table reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minitorch_compress import published as pub
from minitorch_compress.experiments.lab4_layout import iterative_pruning
from minitorch_compress.io.checkpoint import atomic_write
from minitorch_compress.reports import lab4, lab5, lab5_mixed
from minitorch_compress.reports.format import fmt, table, write_markdown
from minitorch_compress.results import read_result

Holds = bool | str | None  # True, False, "in part", or None: not measured

#: Where claims 1.1 and 1.9 are shown: the code that does it and the tests that check it
#: (``module:name`` and ``tests/file.py::test``; tests/test_lab5.py checks that each exists).
CODE_EVIDENCE: dict[str, tuple[list[str], list[str]]] = {
    "1.1": (["minitorch_compress.compression.quant:quantize_array",
             "minitorch_compress.compression.masks:MaskHook"],
            ["tests/test_quant.py::test_masked_keeps_zeros_and_scales_over_the_non_zero_weights",
             "tests/test_quant.py::test_masked_sparsity_is_unchanged_for_one_signed_weights"]),
    "1.9": (["minitorch_compress.compression.quant:QuantizeSTE",
             "minitorch_compress.compression.quant:WeightQuantizer"],
            ["tests/test_quant.py::test_ste_passes_the_upstream_gradient_unchanged",
             "tests/test_quant.py::"
             "test_quantized_model_gradient_is_the_gradient_at_the_quantized_weights"]),
}


def _code(key: str) -> str:
    code, tests = CODE_EVIDENCE[key]
    return ("code: " + ", ".join(f"`{c}`" for c in code) + "; tests: "
            + ", ".join(f"`{t}`" for t in tests))


def claim_1_1(out_dir: Path) -> tuple[str, str, Holds]:
    """Pruning and quantization together: Lab 3 (d)'s masked quantizer keeps every zero."""
    d = read_result(out_dir, "lab3_d")
    where = "Lab 3 (d), [lab3.md](lab3.md); " + _code("1.1")
    if d is None:
        return "_Not measured yet: Lab 3 (d)._", where, None
    widths = sorted(d["quantized_sparsity"], key=int, reverse=True)
    kept = all(d["quantized_sparsity"][b] >= d["sparsity"][b] - 1e-12 for b in widths)
    text = (f"The {d['sparsity'][widths[0]]:.1%}-sparse model quantized by the mask-aware "
            "quantizer keeps " + ", ".join(f"{d['quantized_sparsity'][b]:.1%} zeros at {b} bits"
                                           for b in widths)
            + " and finetunes to " + ", ".join(f"{fmt(d['after'][b])}" for b in widths)
            + " (mask in force throughout). Pruning and quantization "
            + ("coexist." if kept else "do not coexist here: quantization lost zeros."))
    return text, where, kept


def claim_1_5(out_dir: Path) -> tuple[str, str, Holds]:
    """L1's bias and trimmed L1, from Lab 1 (e) and (f) (full batch)."""
    d = read_result(out_dir, "lab1")
    where = "Lab 1 (e), (f), [lab1.md](lab1.md)"
    if d is None:
        return "_Not measured yet: Lab 1._", where, None
    prox, trimmed = d["full_batch"]["e"], d["full_batch"]["f"]
    refits = d["evidence"]["refits"]  # least-squares loss on each prox run's support
    biased = [t for (t, run), refit in zip(prox.items(), refits, strict=True)
              if run["loss"] > refit + 1e-9]
    t_big = max(trimmed, key=float)
    least_squares = d["evidence"]["e_last_ls"]  # the least-squares fit on {w2, w5}
    gap = max(abs(a - b) for a, b in zip(trimmed[t_big]["W"], least_squares, strict=True))
    unbiased = gap < 1e-6
    text = (f"L1 prox ends above the least-squares loss of its own support at "
            f"{len(biased)} of {len(prox)} thresholds (e.g. t = {max(prox, key=float)}: L = "
            f"{prox[max(prox, key=float)]['loss']:.4g} against {refits[-1]:.4g}): the kept "
            f"weights are shrunk. Trimmed L1 at t = {t_big} ends "
            f"{'on' if unbiased else 'off'} the least-squares fit of its support "
            f"(max difference {gap:.1e}).")
    return text, where, bool(biased) and unbiased


def claim_1_7(out_dir: Path) -> tuple[str, str, Holds]:
    """Proximal vs subgradient convergence, from Lab 1 (d) and (e) (full batch)."""
    d = read_result(out_dir, "lab1")
    where = "Lab 1 (d), (e), [lab1.md](lab1.md)"
    if d is None:
        return "_Not measured yet: Lab 1._", where, None
    sub, prox = d["full_batch"]["d"], d["full_batch"]["e"]
    size = len(next(iter(sub.values()))["W"])
    still = [r["last_change"] for r in sub.values()]
    settled = {t: r for t, r in prox.items() if r["last_change"] < 1e-6}
    oscillates = min(still) > 1e-4 and all(r["nnz"] == size for r in sub.values())
    converges = bool(settled) and all(r["nnz"] < size for r in settled.values())
    text = (f"After the same steps the subgradient method still moves by "
            f"{min(still):.1e} to {max(still):.1e} per step with no exact zero "
            f"(‖W‖₀ = {size}); the prox settles (last step below 1e-6) at "
            f"{len(settled)} of {len(prox)} thresholds with exact zeros "
            f"(‖W‖₀ = {', '.join(str(r['nnz']) for r in settled.values())}).")
    return text, where, oscillates and converges


def claim_1_9(out_dir: Path) -> tuple[str, str, Holds]:
    """The STE: shown by the code and its tests; Lab 3 (c) trains with it."""
    c = read_result(out_dir, "lab3_c")
    where = "Lab 3 (c), [lab3.md](lab3.md); " + _code("1.9")
    text = ("The layer keeps its float weight as the parameter and computes with "
            "`QuantizeSTE` of it; the backward passes the gradient at the quantized weight to "
            "the float one unchanged (tested).")
    if c is not None:
        best = c["best_accuracy"]
        text += (" Lab 3 (c) finetunes this way to " + ", ".join(
            f"{fmt(best[b])} at {b} bits" for b in sorted(best, key=int, reverse=True)) + ".")
    return text, where, True


def _lab4_claim(key: str, render: Callable[[], str], where: str) -> tuple[str, str, Holds]:
    text = render()
    return text, where, lab4_holds(key, text)


#: How each of Lab 4's sentences ends, and what that says of the claim's statement: the
#: first phrase found in the sentence decides (a test walks every branch of lab4's
#: functions, so a reworded sentence fails loudly instead of being misread).
LAB4_PHRASES: dict[str, list[tuple[str, Holds]]] = {
    "1.2": [("agrees with the course: not much speedup", True),
            ("on the dense kernel it does.", "in part"),
            ("does not hold here", False), ("The dense path alone gives", False)],
    "1.3": [("agree with the course", True), ("do not show both effects", False)],
    "1.4": [("agrees with the course's answer (False)", False),
            ("sides with the claim", True)],
    "1.6": [("Less sparsity, more speedup", True), ("holds only in part", "in part"),
            ("does not hold here", False)],
}


#: Lab 4's sentences that measure one side only (the other lab's result is absent)
LAB4_ONE_SIDED = ("is not in the results to compare with", "was not there to compare with")


def lab4_holds(key: str, sentence: str) -> Holds:
    """Whether Lab 4's sentence on claim `key` finds the statement true (see LAB4_PHRASES);
    None when it is not measured, or only one side of the comparison is.

    Raises:
        ValueError: a sentence none of the phrases matches (Lab 4's wording changed).
    """
    if sentence.startswith("_Not measured yet") or any(p in sentence for p in LAB4_ONE_SIDED):
        return None
    for phrase, holds in LAB4_PHRASES[key]:
        if phrase in sentence:
            return holds
    raise ValueError(f"claim {key}: Lab 4's sentence has no known verdict: {sentence!r}")


def claim_1_10(out_dir: Path) -> tuple[str, str, Holds]:
    """Mixed precision: Lab 5 (a)'s sentence and verdict (`reports.lab5_mixed.claim_1_10`)."""
    text, verdict = lab5_mixed.claim_1_10(read_result(out_dir, "lab5_a"))
    holds = {"agrees": True, "in part": "in part", "disagrees": False}.get(verdict)
    where = ("Lab 5 (a) (issue #38)" if holds is None else
             "Lab 5 (a), [lab5.md](lab5.md), figure lab5/mixed_vs_uniform.png")
    return text, where, holds


def evaluators(out_dir: Path) -> dict[str, Callable[[], tuple[str, str, Holds]]]:
    """Claim number -> its evaluator over the result files of `out_dir`."""
    def lab4_results() -> dict[str, Any]:
        return {p: r for p in ("a", "b", "c", "d")
                if (r := read_result(out_dir, f"lab4_{p}")) is not None}

    def claim_1_8() -> tuple[str, str, Holds]:
        text, verdict = lab5.claim_1_8(read_result(out_dir, "lab5_b"))
        holds = {"agrees": True, "in part": "in part", "disagrees": False}.get(verdict)
        return text, "Lab 5 (b), [lab5.md](lab5.md), figure lab5/early_exit.png", holds

    return {
        "1.1": lambda: claim_1_1(out_dir),
        "1.2": lambda: _lab4_claim("1.2", lambda: lab4.claim_1_2(lab4_results()),
                                   "Lab 4 (d), [lab4.md](lab4.md)"),
        "1.3": lambda: _lab4_claim("1.3",
                                   lambda: lab4.claim_1_3(read_result(out_dir, "compression")),
                                   "[compression.md](compression.md), [lab4.md](lab4.md)"),
        "1.4": lambda: _lab4_claim("1.4", lambda: lab4.claim_1_4(_lab4_c_beside(out_dir)),
                                   "Lab 4 (c), [lab4.md](lab4.md), figure "
                                   "lab4/lasso_vs_iterative.png"),
        "1.5": lambda: claim_1_5(out_dir),
        "1.6": lambda: _lab4_claim("1.6", lambda: lab4.claim_1_6(lab4_results()),
                                   "Lab 4 (a), (b), (d), [lab4.md](lab4.md), figure "
                                   "lab4/accuracy_vs_speed.png"),
        "1.7": lambda: claim_1_7(out_dir),
        "1.8": claim_1_8,
        "1.9": lambda: claim_1_9(out_dir),
        "1.10": lambda: claim_1_10(out_dir),
    }


def _lab4_c_beside(out_dir: Path) -> dict[str, Any]:
    """Lab 4 (c) compared with the Lab 2 (d) result beside it, as lab4.md does."""
    c = read_result(out_dir, "lab4_c")
    if c is None:
        return {}
    iterative = iterative_pruning(out_dir)
    if iterative is not None:
        c = {**c, "iterative": {**iterative, "source": "lab2_d.json"}}
    return {"c": c}


def verdict(answer: bool | None, holds: Holds) -> str:
    """"agrees", "in part", "disagrees" or "not measured"; where the course's answer is not
    recorded, what our measurement says of the statement: "holds", "holds in part" or "does
    not hold" (then "; course answer not recorded")."""
    if holds is None:
        return "not measured"
    if answer is None:
        said = {True: "holds", False: "does not hold"}.get(holds, "holds in part")
        return f"{said}; course answer not recorded"
    if holds == "in part":
        return "in part"
    return "agrees" if holds == answer else "disagrees"


def claims_payload(out_dir: str | Path) -> dict[str, Any]:
    """Every claim with its text, the course's answer, what we measured, where, whether it
    shows the statement true, and the verdict; computed from the result files only."""
    out_dir = Path(out_dir)
    rows = []
    for key, evaluate in evaluators(out_dir).items():
        text, answer, source = pub.ALL_CLAIMS[key]
        measured, where, holds = evaluate()
        rows.append({"claim": key, "text": text, "answer": answer, "text_source": source,
                     "measured": measured, "where": where, "holds": holds,
                     "verdict": verdict(answer, holds)})
    inputs = ["lab1", "lab3_c", "lab3_d", "lab4_a", "lab4_b", "lab4_c", "lab4_d", "lab2_d",
              "compression", "lab5_a", "lab5_b"]
    documents = {name: read_result(out_dir, name) for name in inputs}
    return {"claims": rows,
            "inputs": {name: document is not None for name, document in documents.items()},
            "smoke_inputs": [name for name, document in documents.items()
                             if document is not None
                             and document.get("_meta", {}).get("smoke")]}


def _answer(value: bool | None) -> str:
    return "not recorded here" if value is None else ("True" if value else "False")


_ORDER = ("agrees", "in part", "disagrees", "not measured", "without the course's answer")


def render(payload: dict[str, Any]) -> list[str]:
    """The markdown lines of ``claims.md``."""
    counts: dict[str, int] = {}
    for row in payload["claims"]:
        kind = row["verdict"] if row["answer"] is not None else "without the course's answer"
        counts[kind] = counts.get(kind, 0) + 1
    L = ["# The course's true/false claims, measured", "",
         "Built by `python labs/lab5_claims.py --part c` from the result files in this "
         "folder (`claims.json` holds the same rows); nothing is re-run. A claim's verdict "
         "compares what our measurement says of its statement with the course's answer.", "",
         "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in _ORDER if v in counts) + ".",
         ""]
    if payload.get("smoke_inputs"):
        L += ["> **Built from smoke results** (" + ", ".join(
            f"`{name}.json`" for name in payload["smoke_inputs"]) + "): fewer epochs or "
            "images, to check that the code runs; their verdicts mean nothing.", ""]
    L += table(["claim", "the course's answer", "what we measured", "where", "verdict"],
               "lllll",
               ([f"{row['claim']}: {row['text']}"
                 + ("" if row["answer"] is not None else " _(our paraphrase)_"),
                 _answer(row["answer"]), row["measured"], row["where"],
                 f"**{row['verdict']}**"] for row in payload["claims"]))
    missing = [name for name, present in payload["inputs"].items() if not present]
    paraphrased = [row["claim"] for row in payload["claims"] if row["answer"] is None]
    L += ["", f"Claims {', '.join(paraphrased)} are our paraphrases: the course's wording and "
          "answer are not recorded in this repository (`published.PARAPHRASED_CLAIMS`), so "
          "their verdict only says whether our measurement supports the paraphrase.", ""]
    if missing:
        L += ["Result files not present: " + ", ".join(f"`{m}.json`" for m in missing) + ".",
              ""]
    return L


def write_claims(out_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir/claims.json`` (the payload) and ``claims.md`` (rendered from it);
    returns the payload."""
    out_dir = Path(out_dir)
    payload = claims_payload(out_dir)
    text = json.dumps(payload, indent=2) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "claims.json", lambda f: f.write(text.encode()))
    write_markdown(out_dir / "claims.md", render(json.loads(text)))
    return payload
