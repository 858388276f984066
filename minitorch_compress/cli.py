"""Command line: `python -m minitorch_compress COMMAND`, one of evaluate, finetune, compress,
inspect, export, models, reproduce, report, snapshot (each with its own --help).

Every user-facing problem (missing data, a corrupt checkpoint, a state_dict that does not fit)
is a `MinitorchError` and is printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minitorch_compress.compression import calibration
from minitorch_compress.compression.mixed_precision import read_bits_per_layer
from minitorch_compress.compression.pipeline import compress_model, write_model_file
from minitorch_compress.data.cifar10 import load_cifar10
from minitorch_compress.errors import MinitorchError
from minitorch_compress.experiments import model_files
from minitorch_compress.experiments.common import load_data
from minitorch_compress.io import mtc
from minitorch_compress.io.torch_export import write_torch_state_dict
from minitorch_compress.kernels.memory import keep_freed_memory
from minitorch_compress.kernels.parallel import threads_from_environment
from minitorch_compress.kernels.select import kernels_from_environment
from minitorch_compress.models.int8_resnet import predict_int8
from minitorch_compress.models.pretrained import load_pretrained
from minitorch_compress.models.resnet import to_sparse
from minitorch_compress.options import (
    OneLineParser,
    add_data_arguments,
    add_training_arguments,
    bits_type,
    config_from_args,
    ensure_writable_dir,
    fraction,
    positive_int,
)
from minitorch_compress.paths import LOCAL_RESULTS_DIR, REPO_ROOT, RUNS_DIR, is_tracked
from minitorch_compress.reports import (
    claims,
    compression,
    int8,
    lab1,
    lab2,
    lab3,
    lab4,
    lab5,
    sparse,
    summary,
)
from minitorch_compress.reproduce import HOW_TO_CONTINUE, reproduce
from minitorch_compress.results import git_commit
from minitorch_compress.training.evaluate import evaluate
from minitorch_compress.training.run_folder import RecordProvenance
from minitorch_compress.training.trainer import Trainer, refuse_existing_run


# ------------------------------------------------------------------ integer inference (#35)
def _check_int8_options(args: argparse.Namespace, command: str) -> None:
    """--calibration-images, --calibration (and compress's --data-dir) only go with --int8."""
    if args.int8:
        return
    options = [("--calibration-images", args.calibration_images),
               ("--calibration", args.calibration)]
    if command == "compress":  # evaluate reads its test images from --data-dir anyway
        options.append(("--data-dir", args.data_dir))
    given = [option for option, value in options if value is not None]
    if given:
        raise MinitorchError(f"{command}: {given[0]} is an option of --int8 (calibration); "
                             "add --int8 or leave it out")


def _calibration_images(args: argparse.Namespace) -> np.ndarray:
    """The first --calibration-images training images (raw uint8)."""
    count = args.calibration_images or calibration.CALIBRATION_IMAGES
    return load_cifar10(args.data_dir, subset=count, test_subset=0,
                        download=getattr(args, "download", False)).x_train


def _evaluate_int8(args: argparse.Namespace) -> int:
    """evaluate --int8: the integer model of --weights, on the test images."""
    if args.sparse:
        raise MinitorchError("--int8 and --sparse are two different inference paths; "
                             "choose one")
    if ((args.calibration_images or args.calibration) and args.weights
            and Path(args.weights).suffix == ".mtc"
            and mtc.load(args.weights).activation_ranges is not None):
        raise MinitorchError(f"{args.weights} stores its activation ranges, which --int8 "
                             "uses; --calibration-images and --calibration are for a file "
                             "without them")
    data = load_data(args, train=False)
    method = args.calibration or calibration.DEFAULT_METHOD
    int_model, _, note = calibration.int8_from_weights(
        args.weights, lambda: _calibration_images(args), method)
    print(note)
    start = time.perf_counter()
    accuracy = float((predict_int8(int_model, data.x_test) == data.y_test).mean())
    wall = time.perf_counter() - start
    print(f"int8 test accuracy: {accuracy:.4f}  ({len(data.y_test)} images, {wall:.1f} s, "
          f"{len(data.y_test) / wall:.0f} img/s)")
    return 0


def _print_integer_layers(path: Path, loaded: mtc.Loaded) -> None:
    """inspect: each integer layer's scales and fixed-point multipliers (a file with
    activation ranges), or one line saying the file has none."""
    if loaded.activation_ranges is None:
        print("no activation ranges for integer inference (compress --int8 stores them; "
              "evaluate --int8 calibrates a file without them)")
        return
    about = loaded.activation_ranges.calibration
    int_model = calibration.int8_from_ranges(mtc.load_model(path), loaded.activation_ranges)
    print(f"integer inference: activation ranges by {about.get('method', '?')} on "
          f"{about.get('source', '?')}; real = scale * (code - z); a multiplier M is stored "
          "as (m, shift): M = m * 2^-(31 + shift)")
    print(f"{'layer':<22}{'weights':>8}{'in scale':>11}{'z':>4}{'out scale':>11}{'z':>4}"
          f"{'M_A channel 0':>22}{'M_A over channels':>20}{'M_B ch 0':>10}{'M_res':>9}")
    for row in calibration.integer_layers(int_model, loaded.activation_ranges.ranges):
        m_a = f"({row['multiplier_a'][0]}, {row['shift_a'][0]})"
        spread = f"{min(row['real_a']):.3g}..{max(row['real_a']):.3g}"
        m_b = "" if row["real_b"] is None else f"{row['real_b'][0]:.3g}"
        m_res = "" if row["real_residual"] is None else f"{row['real_residual']:.3g}"
        print(f"{row['layer']:<22}{row['weights']:>8}{row['in_scale']:>11.4g}"
              f"{row['in_zero_point']:>4}{row['out_scale']:>11.4g}{row['out_zero_point']:>4}"
              f"{m_a:>22}{spread:>20}{m_b:>10}{m_res:>9}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    _check_int8_options(args, "evaluate")
    if args.int8:
        return _evaluate_int8(args)
    data = load_data(args, train=False)
    model = load_pretrained(args.weights)
    if args.sparse:
        chosen = to_sparse(model)
        print(f"sparse path: {len(chosen)} convs at or above their shape's break-even sparsity")
    start = time.perf_counter()
    accuracy = evaluate(model, data.x_test, data.y_test, progress=not args.no_progress)
    wall = time.perf_counter() - start
    print(f"test accuracy: {accuracy:.4f}  ({len(data.y_test)} images, {wall:.1f} s, "
          f"{len(data.y_test) / wall:.0f} img/s)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    ensure_writable_dir(args.run_dir, "--run-dir")
    if not (args.resume or args.overwrite):
        refuse_existing_run(args.run_dir, "another --run-dir")  # before reading the data
    model = load_pretrained(args.weights)
    data = load_data(args)
    # for `snapshot`: the command and planned epochs; no result file (best.npz is the result)
    record = RecordProvenance({"command": "python -m minitorch_compress finetune "
                                          + shlex.join(args.argv),
                               "commit": git_commit(), "result": None})
    trainer = Trainer(model, (data.x_train, data.y_train), (data.x_test, data.y_test),
                      config_from_args(args), hooks=[record], run_dir=args.run_dir,
                      progress=not args.no_progress)
    history = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if history:
        print(f"best test accuracy {trainer.best_accuracy:.4f}; checkpoints and log in "
              f"{args.run_dir}")
    return 0


def _output_file(path: Path, option: str, overwrite: bool,
                 inputs: Sequence[str | Path | None] = ()) -> None:
    """Checks on a file a command is about to write, all before any work: a folder is
    refused; so is a file the repository tracks (a committed model or page), one of the
    command's own `inputs`, and any existing file unless `overwrite`; its folder must be
    writable."""
    if path.is_dir():
        raise MinitorchError(f"{option} {path} is a folder; give a file name")
    if is_tracked(path):
        raise MinitorchError(f"{option} {path} is a file of the repository; write to another "
                             "name (results/local/ is yours)")
    if any(given is not None and Path(given).resolve() == path.resolve() for given in inputs):
        raise MinitorchError(f"{option} {path} is also this command's input; give another "
                             "output name")
    if path.exists() and not overwrite:
        raise MinitorchError(f"{option} {path} already exists; add --overwrite to replace it, "
                             "or give another name")
    ensure_writable_dir(path.parent, f"the folder of {option}")


def cmd_compress(args: argparse.Namespace) -> int:
    _check_int8_options(args, "compress")
    if args.out.suffix != ".mtc":
        raise MinitorchError(f"--out {args.out}: a compressed model file ends in .mtc")
    _output_file(args.out, "--out", args.overwrite, [args.weights])
    if args.quantizer == "symmetric" and args.bits is not None and args.bits < 2:
        raise MinitorchError("--bits 1 with --quantizer symmetric leaves no non-zero level "
                             "(2^(b-1) - 1 = 0); use --bits 2 or more, or --quantizer masked")
    model = load_pretrained(args.weights)
    per_layer = (read_bits_per_layer(args.bits_per_layer, model)
                 if args.bits_per_layer is not None else None)
    if args.quantizer == "symmetric" and per_layer and min(per_layer.values()) < 2:
        raise MinitorchError("--bits-per-layer gives a layer 1 bit, which --quantizer "
                             "symmetric cannot (no non-zero level); use 2 or more")
    model = compress_model(model, args.prune, args.bits, args.quantizer, per_layer)
    ranges = None
    if args.int8:  # the compressed model's own activation ranges, for evaluate --int8
        ranges = calibration.calibrated_ranges(
            model, _calibration_images(args), args.calibration or calibration.DEFAULT_METHOD)
        print(f"activation ranges of {len(ranges.ranges)} tensors calibrated on "
              f"{ranges.calibration['source']} ({ranges.calibration['method']})")
    sizes = write_model_file(model, args.out, fold_batch_norm=args.fold_batch_norm,
                             activation_ranges=ranges)
    stages = sizes["stages"]
    print(f"wrote {args.out}: {sizes['bytes']:,} bytes, {sizes['ratio']:.1f}x smaller than "
          f"float32 ({stages['float32']:,} bytes)")
    print(f"{'stage':<28}{'bytes':>12}{'ratio':>8}")
    for stage, size in stages.items():
        print(f"{stage:<28}{size:>12,}{stages['float32'] / size:>7.1f}x")
    print("where the file's bytes go: " + ", ".join(
        f"{part} {size:,}" for part, size in sizes["parts"].items()))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    loaded = mtc.load(args.file)  # checks every record that the table below reads
    tensors = loaded.header.get("tensors", {})  # an all-dense file has none
    print(f"{args.file}: {loaded.file_bytes:,} bytes; architecture {loaded.architecture}")
    # columns as wide as the longest name and shape (plus a gap), so none runs into the next
    named = [name for name in loaded.state if name in tensors]
    wide = max((len(name) for name in named), default=6) + 2
    shape_wide = max((len(str(loaded.state[name].shape)) for name in named), default=5) + 2
    print(f"{'tensor':<{wide}}{'shape':<{shape_wide}}{'sparsity':>9}{'bits':>6}{'index':>8}"
          f"{'codes':>8}"
          f"{'codebook':>9}{'floats':>8}  encoding")
    for name, value in loaded.state.items():
        if name in tensors:
            parts = mtc.tensor_bytes(tensors[name])
            sparsity = 1 - np.count_nonzero(value) / value.size
            bits = mtc.stored_bits(tensors[name])  # each layer's own width (mixed precision)
            print(f"{name:<{wide}}{str(value.shape):<{shape_wide}}{sparsity:>9.4f}"
                  f"{'float' if bits is None else bits:>6}{parts['index']:>8,}"
                  f"{parts['codes']:>8,}{parts['codebook']:>9,}{parts['floats']:>8,}  "
                  f"{mtc.describe(tensors[name])}")
    dense = [v for k, v in loaded.state.items() if k not in tensors]
    codec = loaded.header["dense"]["codec"]
    stored = len(loaded.sections[loaded.header["dense"]["section"]])
    print(f"{len(dense)} dense tensors ({sum(v.size for v in dense):,} values): {stored:,} "
          f"bytes ({codec})")
    _print_integer_layers(args.file, loaded)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format != "torch":
        raise MinitorchError(f"--format {args.format}: only torch is written")
    _output_file(args.out, "--out", args.overwrite, [args.weights])
    if args.out.suffix not in (".pt", ".pth"):  # what --weights reads as a PyTorch file
        raise MinitorchError(f"--out {args.out}: a PyTorch checkpoint ends in .pt (or .pth)")
    model = load_pretrained(args.weights)
    if getattr(model, "batch_norm_folded", False):
        raise MinitorchError(f"--weights {args.weights} has folded batch norm (eps 0), which "
                             "PyTorch's BatchNorm2d (eps 1e-5) cannot hold exactly; export "
                             "the unfolded .mtc file")
    write_torch_state_dict(args.out, mtc.inference_state(model))
    print(f"wrote {args.out}: a PyTorch state_dict (torch.load(path, weights_only=True)) with "
          f"{len(model.state_dict())} tensors")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    options = model_files.ModelFilesOptions.from_args(args)
    model_files.check_something_to_do(options)  # before any folder is made or data read
    ensure_writable_dir(options.out_dir, "--out-dir")
    listed = model_files.run(options, load_data(options, train=False))["models"]
    print(f"wrote {compression.write_report(options.out_dir)} ({len(listed)} model files, in "
          f"{options.out_dir / 'models'})")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    return reproduce(args)


def cmd_report(args: argparse.Namespace) -> int:
    out_dir = args.out_dir or REPO_ROOT / "results"
    if not out_dir.is_dir():  # a report is made from the result files there
        raise MinitorchError(f"--out-dir {out_dir} is not a folder (a results folder, such as "
                             "results/, results/local/ or results/quick/)")
    if not any(out_dir.glob("*.json")):  # then every page would only say "not run yet"
        raise MinitorchError(f"--out-dir {out_dir} holds no result files (*.json): run a lab "
                             f"with --out-dir {out_dir} first (e.g. `python "
                             "labs/lab1_sparse_linear.py`), or `python -m minitorch_compress "
                             "reproduce`, which writes results/quick/")
    if args.all:
        for page in (lab1, lab2, lab3, compression, lab4, sparse, lab5, int8):
            if (written := page.write_report(out_dir)) is not None:
                print(f"wrote {written}")
        if (out_dir / "claims.json").is_file():  # the table of every lab's claims
            claims.write_claims(out_dir)
            print(f"wrote {out_dir / 'claims.md'}")
    print(f"wrote {summary.write_report(out_dir, smoke=out_dir.name == 'quick')}")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    out_dir = args.out_dir or LOCAL_RESULTS_DIR
    ensure_writable_dir(out_dir, "--out-dir")
    print(f"wrote {summary.write_progress_snapshot(args.run_dir, out_dir, args.name, args.title)}")
    print(f"wrote {summary.write_report(out_dir, smoke=out_dir.name == 'quick')}")
    return 0


def add_int8_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--int8 and its calibration options (evaluate, compress)."""
    parser.add_argument("--int8", action="store_true", help=what)
    parser.add_argument("--calibration-images", type=positive_int, default=None,
                        help="--int8: calibrate on the first N training images (default "
                             f"{calibration.CALIBRATION_IMAGES:,}; only for a file without "
                             "stored activation ranges)")
    parser.add_argument("--calibration", choices=calibration.METHODS, default=None,
                        help=f"--int8: range method (default {calibration.DEFAULT_METHOD})")


def build_parser() -> argparse.ArgumentParser:
    first_paragraph = " ".join(__doc__.split("\n\n")[0].split()).replace("`", "")
    parser = OneLineParser(prog="python -m minitorch_compress", description=first_paragraph,
                           epilog="Every command first sets glibc malloc to keep freed memory "
                                  "for reuse (kernels/memory.py; MINITORCH_KEEP_FREED_MEMORY=0 "
                                  "leaves it alone). MINITORCH_KERNELS=reference runs every op "
                                  "on the readable NumPy kernels (default: fast).")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate_parser = sub.add_parser(
        "evaluate", help="test accuracy of the pretrained model (or --weights: .pt, .npz, .mtc)")
    add_data_arguments(evaluate_parser, training_images=False)  # reads only the test set
    evaluate_parser.add_argument("--sparse", action="store_true",
                                 help="run sparse convs on the direct sparse kernel (those at "
                                      "or above their shape's measured break-even)")
    add_int8_arguments(evaluate_parser, "run the integer model (u8 activations, int8 "
                                        "weights; issue #35) instead of the float one")
    evaluate_parser.set_defaults(func=cmd_evaluate)

    finetune_parser = sub.add_parser("finetune", help="finetune the pretrained model (recipe)")
    add_data_arguments(finetune_parser)
    add_training_arguments(finetune_parser)
    finetune_parser.add_argument("--run-dir", type=Path, default=Path("runs/finetune"),
                                 help="checkpoints and log (default: runs/finetune)")
    finetune_parser.set_defaults(func=cmd_finetune)

    compress_parser = sub.add_parser(
        "compress", help="prune, quantize and Huffman-code a model into an .mtc file")
    compress_parser.add_argument("--weights", default=None,
                                 help="the model: the pretrained .pt (default), an .npz "
                                      "(e.g. a run's best.npz) or an .mtc")
    compress_parser.add_argument("--prune", type=fraction, default=None,
                                 help="prune this fraction of every prunable layer by magnitude "
                                      "(Lab 2 (b)); default: keep the model's own zeros")
    compress_parser.add_argument("--bits", type=bits_type, default=None,
                                 help="quantize the body's weights to this many bits (Lab 3 "
                                      "(d)); default: keep the model's own values")
    compress_parser.add_argument("--bits-per-layer", type=Path, default=None, metavar="FILE",
                                 help="mixed precision: a JSON file {\"layer name\": bits} "
                                      "(or a Lab 5 run's allocation.json); the layers it names "
                                      "get their own width, over --bits")
    compress_parser.add_argument("--quantizer", choices=["masked", "asymmetric", "symmetric"],
                                 default="masked",
                                 help="quantizer of --bits (default masked: zeros stay zero)")
    compress_parser.add_argument("--fold-batch-norm", action="store_true",
                                 help="store each batch norm as its eval-mode (scale, shift): "
                                      "about 5 KB smaller, the same predictions, but for "
                                      "inference only (no finetuning, no export)")
    compress_parser.add_argument("--out", type=Path, required=True, help="the .mtc file")
    compress_parser.add_argument("--overwrite", action="store_true",
                                 help="replace --out if it exists (never a tracked file)")
    add_int8_arguments(compress_parser, "also store the activation ranges for integer "
                                        "inference, calibrated on training images")
    compress_parser.add_argument("--data-dir", default=None,
                                 help="CIFAR-10 for --int8's calibration (default: as evaluate)")
    compress_parser.set_defaults(func=cmd_compress)

    inspect_parser = sub.add_parser("inspect", help="per-layer contents of an .mtc file")
    inspect_parser.add_argument("file", type=Path, help="the .mtc file")
    inspect_parser.set_defaults(func=cmd_inspect)

    export_parser = sub.add_parser(
        "export", help="write a model as a PyTorch checkpoint (no torch needed)")
    export_parser.add_argument("--weights", default=None,
                               help="the model (.pt, .npz or .mtc; default: the pretrained)")
    export_parser.add_argument("--format", default="torch", help="torch (the only one)")
    export_parser.add_argument("--out", type=Path, required=True, help="the .pt file")
    export_parser.add_argument("--overwrite", action="store_true",
                               help="replace --out if it exists (never a tracked file)")
    export_parser.set_defaults(func=cmd_export)

    models_parser = sub.add_parser(
        "models", help="every finetuned lab model on disk as an .mtc file, evaluated from it "
                       "(compression.json/.md)")
    add_data_arguments(models_parser, training_images=False)  # reads only the test set
    models_parser.add_argument("--run-root", type=Path, default=RUNS_DIR,
                               help="where the lab runs are (default: runs/)")
    models_parser.add_argument("--out-dir", type=Path, default=LOCAL_RESULTS_DIR,
                               help="results folder (default: results/local/; --out-dir "
                                    "results publishes)")
    models_parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                               help="only these models (e.g. lab3_d_naive_4bit); the others "
                                    "keep their entries in compression.json")
    models_parser.set_defaults(func=cmd_models)

    reproduce_parser = sub.add_parser(
        "reproduce", help="run every lab and write a REPORT.md (quick mode by default: "
                          "results/quick/)")
    add_data_arguments(reproduce_parser)
    reproduce_parser.add_argument("--full", action="store_true",
                                  help="full-size runs (hours on 2 cores; resumable)")
    reproduce_parser.add_argument("--out-dir", type=Path, default=None,
                                  help="results folder (default: results/quick/, or "
                                       "results/local/ with --full; --out-dir results "
                                       "publishes, with --full only)")
    reproduce_parser.add_argument("--run-root", type=Path, default=None,
                                  help="run checkpoints (default: runs/quick, or runs/ with "
                                       "--full)")
    reproduce_parser.set_defaults(func=cmd_reproduce, how_to_continue=HOW_TO_CONTINUE)
    report_parser = sub.add_parser("report", help="rebuild results/REPORT.md from result files")
    report_parser.add_argument("--out-dir", type=Path, default=None,
                               help="results folder (default: results/)")
    report_parser.add_argument("--all", action="store_true",
                               help="also re-render every lab page and its figures from "
                                    "the JSON files (lab1.md, lab2.md, lab3.md, "
                                    "compression.md, lab4.md, sparse.md, lab5.md and "
                                    "claims.md; the committed pages change only where "
                                    "their JSON changed)")
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
                                 help="results folder (default: results/local/; --out-dir "
                                      "results publishes the page)")
    snapshot_parser.set_defaults(func=cmd_snapshot)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: Any = None, line: str | None = None) -> None:
    """`warnings.showwarning` for the command line: "warning: <message>" on stderr, without
    the file:line and source line meant for a developer."""
    print(f"warning: {message}", file=sys.stderr)


RESUME_HINT = "finished epochs are checkpointed; rerun with --resume to continue"
_active_runs = 0  # run_cli calls under way: reproduce runs each lab script's main inside its own


def run_cli(main: Callable[[], int], how_to_continue: str = RESUME_HINT) -> int:
    """Run `main`, turning user-facing errors and Ctrl-C into one line and an exit status,
    and each warning into one "warning: ..." line.

    After Ctrl-C the outermost run prints the one "interrupted: <how_to_continue>" line: a
    lab run by `reproduce` passes the interrupt on, since its "--resume" is not what the user
    typed.
    """
    global _active_runs
    _active_runs += 1
    try:
        threads_from_environment()  # a bad MINITORCH_NUM_THREADS is one line, not a guess
        kernels_from_environment()  # the same for MINITORCH_KERNELS
        keep_freed_memory()  # the allocator setting of the hot path (kernels/memory.py)
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return main()
    except MinitorchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed our output: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # the file system refused: a name too long, a full disk, ...
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}; check the path and the disk",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if _active_runs > 1:
            raise
        print(f"\ninterrupted: {how_to_continue}", file=sys.stderr)
        return 130
    finally:
        _active_runs -= 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m minitorch_compress`."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(given)
    args.argv = given[1:]  # the command's own arguments, for provenance
    return run_cli(lambda: args.func(args), getattr(args, "how_to_continue", RESUME_HINT))
