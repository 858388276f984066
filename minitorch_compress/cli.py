"""Command line: `python -m minitorch_compress {evaluate,finetune,reproduce} ...`.

Every user-facing problem (missing data, a corrupt checkpoint, a state_dict that does not fit)
is a `MinitorchError` and is printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from minitorch_compress.errors import MinitorchError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --download, --weights, --subset, --test-subset: shared by every command."""
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 folder or .tar.gz (default: $MINITORCH_DATA, ./data, "
                             "../shared/data)")
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR-10 (official URL, md5-checked) if not found")
    parser.add_argument("--weights", default=None,
                        help="pretrained checkpoint (.pt or converted .npz); default: "
                             "$MINITORCH_WEIGHTS or ../shared/weights/pretrained_model.pt")
    parser.add_argument("--subset", type=int, default=None,
                        help="use only the first N training images (quick runs)")
    parser.add_argument("--test-subset", type=int, default=None,
                        help="use only the first N test images")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The finetuning recipe's knobs (defaults = the course recipe) and run management."""
    from minitorch_compress.training.trainer import FinetuneConfig

    defaults = FinetuneConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--momentum", type=float, default=defaults.momentum)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir after its last completed epoch")


def config_from_args(args: argparse.Namespace):
    """FinetuneConfig from parsed `add_training_arguments` options."""
    from minitorch_compress.training.trainer import FinetuneConfig

    return FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed)


def load_data(args: argparse.Namespace):
    """CIFAR-10 arrays as selected by `add_data_arguments` options."""
    from minitorch_compress.data.cifar10 import load_cifar10

    return load_cifar10(args.data_dir, subset=args.subset, test_subset=args.test_subset,
                        download=args.download)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.training.evaluate import evaluate

    data = load_data(args)
    model = load_pretrained(args.weights)
    start = time.perf_counter()
    accuracy = evaluate(model, data.x_test, data.y_test, progress=not args.no_progress)
    wall = time.perf_counter() - start
    print(f"test accuracy: {accuracy:.4f}  ({len(data.y_test)} images, {wall:.1f} s, "
          f"{len(data.y_test) / wall:.0f} img/s)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from minitorch_compress.models.pretrained import load_pretrained
    from minitorch_compress.training.trainer import Trainer

    data = load_data(args)
    model = load_pretrained(args.weights)
    trainer = Trainer(model, (data.x_train, data.y_train), (data.x_test, data.y_test),
                      config_from_args(args), run_dir=args.run_dir,
                      progress=not args.no_progress)
    history = trainer.fit(resume=args.resume)
    if history:
        print(f"best test accuracy {trainer.best_accuracy:.4f}; checkpoints and log in "
              f"{args.run_dir}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from minitorch_compress.reproduce import reproduce

    return reproduce(args)


def cmd_report(args: argparse.Namespace) -> int:
    from minitorch_compress.models.pretrained import REPO_ROOT
    from minitorch_compress.report import write_report

    out_dir = args.out_dir or REPO_ROOT / "results"
    print(f"wrote {write_report(out_dir, smoke=out_dir.name == 'quick')}")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from minitorch_compress.models.pretrained import REPO_ROOT
    from minitorch_compress.report import write_progress_snapshot, write_report

    out_dir = args.out_dir or REPO_ROOT / "results"
    print(f"wrote {write_progress_snapshot(args.run_dir, out_dir, args.name, args.title)}")
    print(f"wrote {write_report(out_dir, smoke=out_dir.name == 'quick')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minitorch_compress",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate_parser = sub.add_parser("evaluate", help="test accuracy of the pretrained model")
    add_data_arguments(evaluate_parser)
    evaluate_parser.set_defaults(func=cmd_evaluate)

    finetune_parser = sub.add_parser("finetune", help="finetune the pretrained model (recipe)")
    add_data_arguments(finetune_parser)
    add_training_arguments(finetune_parser)
    finetune_parser.add_argument("--run-dir", type=Path, default=Path("runs/finetune"),
                                 help="checkpoints and log (default: runs/finetune)")
    finetune_parser.set_defaults(func=cmd_finetune)

    reproduce_parser = sub.add_parser(
        "reproduce", help="run every lab and write results/REPORT.md (quick mode by default)")
    add_data_arguments(reproduce_parser)
    reproduce_parser.add_argument("--full", action="store_true",
                                  help="full-size runs (hours on 2 cores; resumable)")
    reproduce_parser.add_argument("--out-dir", type=Path, default=None,
                                  help="results folder (default: results/quick, or results/ "
                                       "with --full)")
    reproduce_parser.add_argument("--run-root", type=Path, default=None,
                                  help="run checkpoints (default: runs/quick, or runs/ with "
                                       "--full)")
    reproduce_parser.set_defaults(func=cmd_reproduce)
    report_parser = sub.add_parser("report", help="rebuild results/REPORT.md from result files")
    report_parser.add_argument("--out-dir", type=Path, default=None,
                               help="results folder (default: results/)")
    report_parser.set_defaults(func=cmd_report)
    snapshot_parser = sub.add_parser(
        "snapshot", help="write <name>_in_progress.md for a finetune still running, and the "
                         "report that links it")
    snapshot_parser.add_argument("run_dir", type=Path, help="the run's folder, e.g. runs/lab2_e")
    snapshot_parser.add_argument("--name", default=None,
                                 help="result name (default: the run folder's name)")
    snapshot_parser.add_argument("--title", default=None,
                                 help="the page's heading (default: the name)")
    snapshot_parser.add_argument("--out-dir", type=Path, default=None,
                                 help="results folder (default: results/)")
    snapshot_parser.set_defaults(func=cmd_snapshot)
    return parser


def run_cli(main: Callable[[], int]) -> int:
    """Run `main`, turning user-facing errors and Ctrl-C into one line and an exit status."""
    try:
        return main()
    except MinitorchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished epochs are checkpointed; rerun with --resume to continue",
              file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m minitorch_compress`."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.func(args))
