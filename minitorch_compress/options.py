"""Options of the command line and the labs: argparse types, shared arguments, option classes.

The experiments and the command line both read their options from here, and nothing here
imports the engine, so building options never loads a kernel.

* argparse types (`positive_int`, `fraction`, `bits_type`, ...) and `OneLineParser`, whose
  usage errors are one line;
* `add_data_arguments`, `add_training_arguments`, `lab_parser`: the arguments the commands and
  lab scripts share;
* `Options`, `DataOptions` and `LabOptions`: frozen dataclasses of those options. Each lab extends
  `LabOptions` with its own knobs (``experiments.lab2.Lab2Options``, ...), and a lab part
  takes one, so it can be called from a Python prompt as well as from its script
  (``Options.from_args(args)`` turns parsed arguments into one).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from minitorch_compress.errors import MinitorchError
from minitorch_compress.paths import LOCAL_RESULTS_DIR, RUNS_DIR
from minitorch_compress.recipe import RECIPE_EPOCHS, FinetuneConfig

OptionsT = TypeVar("OptionsT", bound="Options")


# ------------------------------------------------------------------------------ argparse types
class OneLineParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose usage errors are one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """Print ``<prog>: error: <message> (see --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (a seed: numpy's generators take no negative)."""
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def momentum_float(text: str) -> float:
    """argparse type: a momentum in [0, 1)."""
    value = _number(text, float, "a number")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = _number(text, float, "a number")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def bits_type(text: str) -> int:
    """argparse type: a bit width from 1 to 8."""
    value = _number(text, int, "a whole number")
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be 1 .. 8, got {value}")
    return value


def ensure_writable_dir(folder: Path, option: str) -> None:
    """Create `folder` if needed and check that a file can be written in it, so a run fails
    in its first second rather than after an hour of training.

    Raises:
        MinitorchError: `folder` is a file, lies under a file, or cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MinitorchError(f"{option} {folder} is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise MinitorchError(
            f"{option} {folder} cannot be written ({exc.strerror or exc}); give a folder you "
            "can write to") from None


# ------------------------------------------------------------------------------ shared arguments
def add_data_arguments(parser: argparse.ArgumentParser, training_images: bool = True) -> None:
    """--data-dir, --download, --weights, --subset, --test-subset, --no-progress: shared by
    every command (--subset only where `training_images` are read)."""
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 folder or .tar.gz (default: $MINITORCH_DATA, ./data, "
                             "../shared/data)")
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR-10 (official URL, md5-checked) if not found")
    parser.add_argument("--weights", default=None,
                        help="the model: a PyTorch .pt (the course's checkpoint), an .npz "
                             "(converted, or a run's best.npz) or an .mtc; default: "
                             "$MINITORCH_WEIGHTS, else ./weights/pretrained_model.pt, else "
                             "../shared/weights/pretrained_model.pt")
    if training_images:
        parser.add_argument("--subset", type=positive_int, default=None,
                            help="use only the first N training images (quick runs)")
    parser.add_argument("--test-subset", type=positive_int, default=None,
                        help="use only the first N test images")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (per-epoch lines are still printed)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The finetuning recipe's knobs (defaults = the course recipe) and run management."""
    defaults = FinetuneConfig()
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs,
                        help=f"training epochs (recipe: {defaults.epochs})")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help=f"images per SGD step (recipe: {defaults.batch_size})")
    parser.add_argument("--lr", type=positive_float, default=defaults.lr,
                        help=f"learning rate (recipe: {defaults.lr})")
    parser.add_argument("--momentum", type=momentum_float, default=defaults.momentum,
                        help=f"SGD momentum in [0, 1) (recipe: {defaults.momentum})")
    parser.add_argument("--weight-decay", type=non_negative_float,
                        default=defaults.weight_decay,
                        help=f"L2 weight decay added to the gradient (recipe: "
                             f"{defaults.weight_decay})")
    parser.add_argument("--seed", type=non_negative_int, default=defaults.seed,
                        help=f"seed of batch order and augmentation (default {defaults.seed})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir after its last completed epoch")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even if --run-dir holds a run (replaces it)")


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """FinetuneConfig from parsed `add_training_arguments` options."""
    return FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed)


class LabParser(OneLineParser):
    """An `argparse.ArgumentParser` that keeps the arguments it parsed as ``args.argv``.

    Provenance records them, so a lab's ``main(argv)`` called in-process (as the tests do)
    is recorded with its own arguments rather than the test runner's command line.
    """

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """`argparse.ArgumentParser.parse_args`, plus ``argv``: the arguments parsed."""
        parsed = super().parse_args(args, namespace)
        parsed.argv = list(sys.argv[1:] if args is None else args)
        return parsed


def lab_parser(description: str, parts: Sequence[str]) -> argparse.ArgumentParser:
    """Options common to the lab scripts: --part, --epochs, --subset, --resume, output folders
    (the fields of `LabOptions`). The parsed options also hold ``argv`` (see `LabParser`)."""
    parser = LabParser(description=description)
    parser.add_argument("--part", choices=[*parts, "all"], default="all")
    parser.add_argument("--epochs", type=positive_int, default=RECIPE_EPOCHS,
                        help=f"finetuning epochs (the recipe: {RECIPE_EPOCHS})")
    parser.add_argument("--resume", action="store_true",
                        help="continue interrupted finetuning runs from their last epoch")
    parser.add_argument("--overwrite", action="store_true",
                        help="start finetuning runs afresh even where --run-root holds one "
                             "(its checkpoints are replaced)")
    parser.add_argument("--out-dir", type=Path, default=LOCAL_RESULTS_DIR,
                        help="where JSON, tables and figures go (default: results/local/, "
                             "git-ignored; --out-dir results publishes into the committed "
                             "results/, where a smoke run never replaces a full-size result)")
    parser.add_argument("--run-root", type=Path, default=RUNS_DIR,
                        help="where run checkpoints go (default: runs/, git-ignored)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of batch order and "
                        "augmentation (default 0)")
    add_data_arguments(parser)
    return parser


# ------------------------------------------------------------------------------ option classes
def refuse_repeats(option: str, values: Sequence[Any],
                   same: Callable[[Any], Any] = lambda value: value) -> None:
    """Refuse a list option that names one value twice (``--strengths 0 0`` would run the
    same thing twice); values with equal ``same(value)`` are the same (0 and 0.0).

    Raises:
        MinitorchError: naming the repeated value.
    """
    first: dict[Any, Any] = {}  # same(value) -> the value that gave it first
    for value in values:
        key = same(value)
        if key in first:
            also = "" if str(first[key]) == str(value) else f" (as {value})"
            raise MinitorchError(f"{option} names {first[key]} twice{also}; give each value "
                                 "once")
        first[key] = value


@dataclass(frozen=True)
class Options:
    """Base of the option dataclasses: built from parsed arguments (`from_args`) and turned
    back into them (`as_argv`), a field ``some_name`` being the option ``--some-name``."""

    @classmethod
    def from_args(cls: type[OptionsT], args: argparse.Namespace) -> OptionsT:
        """The options of parsed arguments: every field found in `args` by its name (lists
        become tuples, so the options stay hashable and immutable)."""
        values = {}
        for field in fields(cls):
            if field.init and hasattr(args, field.name):
                value = getattr(args, field.name)
                values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def as_argv(self) -> list[str]:
        """Command-line arguments that give these options: ``--name value`` for every field
        not at its default (``--name`` alone for a flag), ``argv`` itself left out."""
        out: list[str] = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "argv" or field.default is not MISSING and value == field.default:
                continue
            flag = "--" + field.name.replace("_", "-")
            if value is True:
                out.append(flag)
            elif isinstance(value, tuple):
                out += [flag, *map(str, value)]
            else:
                out += [flag, str(value)]
        return out


@dataclass(frozen=True)
class DataOptions(Options):
    """Where the data and the starting weights come from (`add_data_arguments`).

    Attributes:
        data_dir: CIFAR-10 folder or .tar.gz (None: the default search).
        download: download CIFAR-10 if it is not found.
        weights: the starting model, .pt, .npz or .mtc (None: the pretrained checkpoint).
        subset: only the first N training images (None: all; 0: none are read).
        test_subset: only the first N test images (None: all).
        no_progress: hide progress bars.
        argv: the command-line arguments these options were parsed from, recorded in the
            provenance of results; None when built in Python (the provenance then records
            the equivalent options, `as_argv`).
    """

    data_dir: str | Path | None = None
    download: bool = False
    weights: str | Path | None = None
    subset: int | None = None
    test_subset: int | None = None
    no_progress: bool = False
    argv: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise MinitorchError(f"{name} must be a whole number >= 0 or None, got {value!r}")
        if self.test_subset == 0:
            raise MinitorchError("test_subset must be >= 1 (or None: the whole test set)")


@dataclass(frozen=True)
class LabOptions(DataOptions):
    """What every lab part takes: `DataOptions`, the recipe's length, output folders and run
    management (`lab_parser`'s options). A lab subclasses it with its own knobs.

    Attributes:
        part: the part `run` runs ("all": every one of ``PARTS``, in order).
        epochs: finetuning epochs (the recipe: 20; fewer make a smoke run).
        seed: seed of the batch order and augmentation.
        out_dir: where result JSON, pages, figures and model files go.
        run_root: where the finetuning runs keep their checkpoints.
        resume: continue interrupted runs (and reuse finished evaluations).
        overwrite: start runs afresh where ``run_root`` already holds one.
    """

    PARTS: ClassVar[tuple[str, ...]] = ()  # the lab's parts (set by each lab's subclass)

    part: str = "all"
    epochs: int = RECIPE_EPOCHS
    seed: int = 0
    out_dir: Path = LOCAL_RESULTS_DIR
    run_root: Path = RUNS_DIR
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        # a frozen dataclass sets its own fields through object.__setattr__
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "run_root", Path(self.run_root))
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise MinitorchError(f"epochs must be a whole number >= 1, got {self.epochs!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise MinitorchError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.PARTS and self.part not in (*self.PARTS, "all"):
            raise MinitorchError(f"unknown part {self.part!r}; choose from "
                                 f"{', '.join(self.PARTS)} or all")

    def parts(self) -> list[str]:
        """The parts `part` names, in order."""
        return list(self.PARTS) if self.part == "all" else [self.part]
