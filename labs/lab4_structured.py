"""Lab 4: structured (channel) sparsity that makes ResNet-20 smaller, and the course's
true/false claims 1.2, 1.3, 1.4 and 1.6 measured.

Usage (from the repository root)::

    python labs/lab4_structured.py --part a     # group-Lasso finetunes, zero channels removed
    python labs/lab4_structured.py --part b     # the smaller networks finetuned; L1 baseline
    python labs/lab4_structured.py --part c     # Lasso + one small threshold vs iterative
    python labs/lab4_structured.py --part d     # measured inference speed of every model
    python labs/lab4_structured.py --part all --resume

``--strengths`` / ``--l1-strengths`` choose the penalty strengths (the defaults come from
the first full runs: `minitorch_compress.experiments.lab4` says how). Each part writes
``<out-dir>/lab4_<part>.json`` and its models ``<out-dir>/models/lab4_*.mtc``;
``<out-dir>/lab4.md`` is regenerated after every part. The default ``--out-dir`` is
``results/local/`` (git-ignored); ``--out-dir results`` publishes. The other lab options
(``--epochs``, ``--subset``, ``--test-subset``, ``--resume``, ``--run-root``, ...) work as
in Labs 2 and 3. The experiment lives in ``minitorch_compress.experiments.lab4``, the page
in ``minitorch_compress.reports.lab4``.
"""

from __future__ import annotations

from collections.abc import Sequence

from minitorch_compress.cli import run_cli
from minitorch_compress.experiments import lab4
from minitorch_compress.experiments.common import lab_parser
from minitorch_compress.reports import lab4 as report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2."""
    parser = lab_parser(__doc__.split("\n\n")[0], lab4.PARTS)
    lab4.add_arguments(parser)
    args = parser.parse_args(argv)
    lab4.check_arguments(args, parser)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Run the chosen parts, re-rendering lab4.md after each one."""
    lab4.run(args, after_part=lambda: report.write_report(args.out_dir))
    print(f"wrote {args.out_dir / 'lab4.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
