"""`results/REPORT.md`: every lab's table beside the published numbers, in one page.

The report is assembled from the result files alone (`lab*.json` and the labs' own
`lab*.md`), so it can be rebuilt at any time with `python -m minitorch_compress report`
without running anything.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from minitorch_compress.errors import MinitorchError
from minitorch_compress.published import SUMMARY as PUBLISHED
from minitorch_compress.reports.format import table
from minitorch_compress.results import lookup, read_result


def _load(out_dir: Path, name: str) -> dict[str, Any] | None:
    return read_result(out_dir, name)


def summary_table(out_dir: Path) -> str:
    """Markdown table: ours, published, difference, and how each of our numbers was made."""
    rows = ["| experiment | ours | published | ours − published | run |",
            "|---|---|---|---|---|"]
    for label, name, path, published in PUBLISHED:
        document = _load(out_dir, name)
        ours = lookup(document, path) if document else None
        if ours is None:
            partial = out_dir / f"{name}_in_progress.md"
            status = (f"run in progress, see [{partial.name}]({partial.name})"
                      if partial.is_file() else "not run yet")
            rows.append(f"| {label} | {status} | {published:.4f} | | |")
            continue
        meta = document.get("_meta", {})
        if meta.get("epochs") is not None:  # the run's own epoch count, not the recipe's
            label = f"{label} ({meta['epochs']} ep)"
        kind = "**smoke run**" if meta.get("smoke") else "full size"
        per_width = document.get("wall_s")  # Lab 3 (c)/(d): each bit width's own time
        seconds = (per_width.get(path[-1]) if isinstance(per_width, dict)
                   else meta.get("wall_s"))
        wall = f", {seconds:.0f} s" if seconds is not None else ""
        made = {**meta, **document.get("run", {}).get(path[-1], {})}  # the width's own run
        run = f"{kind}: `{made.get('command', '?')}` @ `{made.get('commit', '?')}`{wall}"
        rows.append(f"| {label} | {ours:.4f} | {published:.4f} | {ours - published:+.4f} | "
                    f"{run} |")
    return "\n".join(rows)


def _test_images(out_dir: Path) -> str:
    """How many test images the summary's numbers used, from their own result files."""
    cuts = {(_load(out_dir, name) or {}).get("_meta", {}).get("test_subset")
            for name in dict.fromkeys(name for _, name, _, _ in PUBLISHED)
            if _load(out_dir, name) is not None}
    if cuts <= {None}:
        return "all 10,000 test images"
    sizes = sorted(f"{c:,}" for c in cuts if c is not None)
    return (f"on {' or '.join(sizes)} test images for the runs cut with --test-subset"
            + (", all 10,000 for the others" if None in cuts else ""))


def _demote(markdown: str) -> str:
    """Push every heading one level down so a lab's page nests under its report section."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.MULTILINE)


def write_report(out_dir: Path, smoke: bool = False) -> Path:
    """Write `out_dir/REPORT.md` from the results found there; returns its path."""
    out_dir = Path(out_dir)
    parts = [
        "# minitorch_compress — results report",
        "",
        # no time stamp: the page is a pure function of the result files (each of which
        # records its own date), so regenerating it from the same files changes nothing
        "Assembled from the result files in this folder by `python -m minitorch_compress "
        "report` (also the last step of `python -m minitorch_compress reproduce`).",
    ]
    if smoke:
        parts += ["", "> **Quick mode.** Finetuning figures below are smoke runs (1 epoch on a "
                  "training subset) that only show the pipeline works; they are not "
                  "reproductions of the published numbers. Run with `--full` for those."]
    parts += ["", "## Summary: ours beside the published numbers", "",
              "Finetuning is stochastic; the published figures are best-of-run, and so are "
              f"ours (best test accuracy over the epochs, {_test_images(out_dir)}).", "",
              summary_table(out_dir)]
    if (out_dir / "compression.md").is_file():
        parts += ["", "Every finetuned lab model as a compressed file, evaluated from the file: "
                  "[compression.md](compression.md)."]
    if (out_dir / "int8.json").is_file():  # int8.md is rendered from it
        parts += ["", "Lab 3's models and the pretrained one run in integer arithmetic (u8 "
                  "activations, int8 weights), accuracy and speed against float: "
                  "[int8.md](int8.md)."]
    if (out_dir / "claims.json").is_file():  # claims.md is rendered from it
        parts += ["", "The course's ten true/false claims, each with what we measured and the "
                  "verdict: [claims.md](claims.md)."]
    for number, title in ((1, "Lab 1"), (2, "Lab 2"), (3, "Lab 3"), (4, "Lab 4")):
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


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


#: The optional numeric fields of an epoch record that the snapshot's table shows.
_EPOCH_FIGURES = ("sparsity_target", "train_loss", "train_accuracy", "sparsity",
                  "train_img_per_s", "epoch_wall_s")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(record: dict[str, Any], key: str, spec: str) -> str:
    """An optional figure of an epoch record, formatted; "" when the record has none."""
    return "" if record.get(key) is None else format(record[key], spec)


def read_epoch_log(log_path: Path) -> list[dict[str, Any]]:
    """The epoch records of a run's ``log.jsonl``; a line that is not one (not UTF-8, not
    JSON, not an object, no whole ``epoch`` >= 1 and ``test_accuracy`` in [0, 1], a
    non-numeric figure) is skipped with a one-line warning naming it.

    Raises:
        MinitorchError: `log_path` is not a readable regular file.
    """
    try:
        raw = log_path.read_bytes()
    except OSError as error:
        raise MinitorchError(f"{log_path}: cannot be read ({error.strerror or error})") from None
    epochs = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            _warn(f"{log_path} line {number} is not UTF-8 JSON; skipped")
            continue
        if not (isinstance(record, dict) and isinstance(record.get("epoch"), int)
                and not isinstance(record["epoch"], bool) and record["epoch"] >= 1
                and _is_number(record.get("test_accuracy"))
                and 0 <= record["test_accuracy"] <= 1
                and all(_is_number(record[key]) for key in _EPOCH_FIGURES
                        if record.get(key) is not None)):
            _warn(f"{log_path} line {number} is not an epoch record (a whole epoch >= 1, a "
                  "test_accuracy in [0, 1], numeric figures); skipped")
            continue
        epochs.append(record)
    return epochs


def _read_run_provenance(path: Path) -> dict[str, Any]:
    """A run folder's ``provenance.json`` (command, commit, planned epochs), or {} when it is
    missing or unreadable (then with a warning: the snapshot shows "?" for those)."""
    if not path.is_file():
        return {}
    try:
        provenance = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        provenance = None
    if not isinstance(provenance, dict):
        _warn(f"{path} is not a JSON object; the page shows '?' for its command and epochs")
        return {}
    return provenance


def write_progress_snapshot(run_dir: Path, out_dir: Path, name: str | None = None,
                            title: str | None = None) -> Path:
    """``out_dir/<name>_in_progress.md``: the per-epoch table of a finetune still running.

    A full-size finetune takes about 40 minutes and may span sessions; until it writes its
    result JSON, `summary_table` links this page instead of saying "not run yet". It is
    built from the run folder alone: ``log.jsonl`` (one line per finished epoch; malformed
    lines are skipped with a warning) and ``provenance.json`` (command, commit, planned
    epochs, and ``"result"``: the result file the run writes when it completes, None for a
    command-line finetune, whose result is its ``best.npz``).

    Args:
        run_dir: the run's folder (holding ``log.jsonl``), e.g. ``runs/lab2_e``.
        out_dir: the results folder.
        name: the result's name (default: the run folder's name), e.g. ``lab2_e``.
        title: the page's heading (default: the name).

    Returns:
        The page's path.

    Raises:
        MinitorchError: if the run folder has no finished epoch yet, or `name` (by default
            the run folder's name) is a path or not valid UTF-8.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    name = name or run_dir.name
    if "/" in name or "\0" in name or name.startswith("."):  # the page is <out_dir>/<name>_...
        raise MinitorchError(f"--name {name!r} is a path, not a result name (e.g. lab2_e)")
    for text, what in ((name, "the result name"), (title or "", "--title")):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MinitorchError(f"{what} {text.encode('utf-8', 'replace').decode()!r} is "
                                 "not valid UTF-8 (a run folder's name is the default); give "
                                 "--name (and --title) in UTF-8") from None
    log_path = run_dir / "log.jsonl"
    epochs = read_epoch_log(log_path) if log_path.is_file() else []
    if not epochs:
        raise MinitorchError(f"{run_dir} has no finished epoch yet (no epoch record in "
                             f"{log_path}); snapshot a run after its first epoch")
    provenance = _read_run_provenance(run_dir / "provenance.json")
    planned = provenance.get("epochs")
    planned = planned if isinstance(planned, int) and not isinstance(planned, bool) else "?"
    result_file = provenance.get("result", f"{name}.json")
    completes = (f"`{result_file}` is written when the run completes, and this page should "
                 "then be deleted" if result_file else
                 "the run's `best.npz` is its result when it completes (a command-line "
                 "finetune writes no result file)")
    eligible = [e for e in epochs if e.get("eligible_for_best", True)]
    best = max(eligible, key=lambda e: e["test_accuracy"]) if eligible else None
    lines = [
        f"# {title or name}: run in progress (partial, not a final result)", "",
        f"**{len(epochs)} of {planned} epochs** were finished when this snapshot was taken "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). These are the real "
        f"per-epoch numbers from the run's `log.jsonl`; {completes}. In an iterative-pruning "
        "run the weights pruned before an epoch may regrow during it until the last pruning "
        "step, so the sparsity at the end of those epochs is below the fraction pruned to.",
        "",
        "Command (resumable: the same command with `--resume` continues after the last "
        "finished epoch):", "",
        "```bash", str(provenance.get("command", "?")), "```", "",
        f"Commit at the last (re)start: `{provenance.get('commit', '?')}`.", "",
    ]
    if best is not None:
        lines += ["Best so far among the epochs that may be reported: "
                  f"**{best['test_accuracy']:.4f}** at epoch {best['epoch']}.", ""]
    else:
        lines += ["No epoch may be reported yet: the final mask is not in force.", ""]
    lines += table(
        ["epoch", "pruned to", "train loss", "train acc", "test acc", "sparsity at the end",
         "img/s", "epoch s", "may be best"], "rrrrrrrrl",
        ([e["epoch"], _figure(e, "sparsity_target", ".2f"), _figure(e, "train_loss", ".4f"),
          _figure(e, "train_accuracy", ".4f"), f"{e['test_accuracy']:.4f}",
          _figure(e, "sparsity", ".4f"), _figure(e, "train_img_per_s", ".0f"),
          _figure(e, "epoch_wall_s", ".0f"),
          "yes" if e.get("eligible_for_best", True) else "no"] for e in epochs))
    path = out_dir / f"{name}_in_progress.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
