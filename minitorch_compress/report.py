"""`results/REPORT.md`: every lab's table beside the published numbers, in one page.

The report is assembled from the result files alone (`lab*.json` and the labs' own
`lab*.md`), so it can be rebuilt at any time with `python -m minitorch_compress report`
without running anything.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

# (label, result file, path into its JSON, published figure) - SPEC "Published numbers"
PUBLISHED: list[tuple[str, str, tuple[str, ...], float]] = [
    ("Lab 2 (a) pretrained float", "lab2_a", ("accuracy",), 0.9151),
    ("Lab 2 (c) prune 80 % + finetune 20 ep", "lab2_c", ("best_accuracy",), 0.8790),
    ("Lab 2 (d) iterative to 80 %", "lab2_d", ("best_accuracy",), 0.8739),
    ("Lab 2 (e) global iterative to 80 %", "lab2_e", ("best_accuracy",), 0.8868),
    ("Lab 3 (c) QAT finetune 4 bits", "lab3_c", ("best_accuracy", "4"), 0.9149),
    ("Lab 3 (c) QAT finetune 3 bits", "lab3_c", ("best_accuracy", "3"), 0.9069),
    ("Lab 3 (c) QAT finetune 2 bits", "lab3_c", ("best_accuracy", "2"), 0.8591),
    ("Lab 3 (d) 80 %-sparse + 4 bits, after finetune", "lab3_d", ("after", "4"), 0.8977),
    ("Lab 3 (d) 80 %-sparse + 3 bits, after finetune", "lab3_d", ("after", "3"), 0.8718),
    ("Lab 3 (d) 80 %-sparse + 2 bits, after finetune", "lab3_d", ("after", "2"), 0.3342),
    ("Lab 3 (e) global iterative 80 % + 4-bit QAT", "lab3_e", ("best_accuracy",), 0.7479),
]


def _lookup(document: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) else None


def _load(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def summary_table(out_dir: Path) -> str:
    """Markdown table: ours, published, difference, and how each of our numbers was made."""
    rows = ["| experiment | ours | published | ours − published | run |",
            "|---|---|---|---|---|"]
    for label, name, path, published in PUBLISHED:
        document = _load(out_dir, name)
        ours = _lookup(document, path) if document else None
        if ours is None:
            partial = out_dir / f"{name}_in_progress.md"
            status = (f"run in progress, see [{partial.name}]({partial.name})"
                      if partial.is_file() else "not run yet")
            rows.append(f"| {label} | {status} | {published:.4f} | | |")
            continue
        meta = document.get("_meta", {})
        kind = "**smoke run**" if meta.get("smoke") else "full size"
        wall = f", {meta['wall_s']:.0f} s" if "wall_s" in meta else ""
        run = f"{kind}: `{meta.get('command', '?')}` @ `{meta.get('commit', '?')}`{wall}"
        rows.append(f"| {label} | {ours:.4f} | {published:.4f} | {ours - published:+.4f} | "
                    f"{run} |")
    return "\n".join(rows)


def _demote(markdown: str) -> str:
    """Push every heading one level down so a lab's page nests under its report section."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.MULTILINE)


def write_report(out_dir: Path, smoke: bool = False) -> Path:
    """Write `out_dir/REPORT.md` from the results found there; returns its path."""
    out_dir = Path(out_dir)
    parts = [
        "# minitorch_compress — results report",
        "",
        f"Assembled {time.strftime('%Y-%m-%d %H:%M %Z')} from the result files in this folder "
        "by `python -m minitorch_compress report` (also the last step of "
        "`python -m minitorch_compress reproduce`).",
    ]
    if smoke:
        parts += ["", "> **Quick mode.** Finetuning figures below are smoke runs (1 epoch on a "
                  "training subset) that only show the pipeline works; they are not "
                  "reproductions of the published numbers. Run with `--full` for those."]
    parts += ["", "## Summary: ours beside the published numbers", "",
              "Finetuning is stochastic; the published figures are best-of-run, and so are "
              "ours (best test accuracy over the epochs, all 10,000 test images).", "",
              summary_table(out_dir)]
    for number, title in ((1, "Lab 1"), (2, "Lab 2"), (3, "Lab 3")):
        page = out_dir / f"lab{number}.md"
        parts += ["", f"## {title}", ""]
        if page.is_file():
            text = page.read_text()
            text = re.sub(r"^# .*\n", "", text, count=1)  # the section heading replaces it
            parts.append(_demote(text).strip())
        else:
            parts.append(f"Not run yet: `python labs/lab{number}_*.py`.")
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(parts) + "\n")
    return path
