"""The ``ctexplore`` command line: scan a folder, preprocess a data set, write sample data.

Exit status: 0 when everything worked, 1 when a series failed (or none was
found, by ``preprocess`` or ``scan``), 2 for a usage error (bad option, missing input, output inside the
input, unwritable output, unreachable dask scheduler), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _rule(text: str) -> str:
    from .selection import parse_rule

    try:
        parse_rule(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# "Pass on_uneven='resample'" in a library message is, on the command line, "--on-uneven resample"
_PYTHON_ADVICE = re.compile(r"\b[Pp]ass (\w+)=(?:'([^']*)'|\"([^\"]*)\"|(\w+))")


def _flag_advice(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """Rewrite the library's keyword-argument advice as the command's flag, where the flag exists."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    options = {option for action in commands.choices[command]._actions for option in action.option_strings}

    def as_flag(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        value = next(group for group in match.groups()[1:] if group is not None)
        if flag not in options:
            return match.group(0)
        if value == "True":
            return f"use {flag}"
        return f"use {flag} {value}"

    return _PYTHON_ADVICE.sub(as_flag, message)


def _not_a_folder(path: str, what: str) -> str | None:
    """The message for an output folder that is an existing file, else None."""
    if Path(path).exists() and not Path(path).is_dir():
        return f"{what} {path} is an existing file, not a folder: give a folder (it is created if missing)"
    return None


def _not_a_file(path: str, flag: str) -> str | None:
    if Path(path).is_dir():
        return f"{flag} {path} is an existing folder: give a file name to write the table to"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ctexplore`` (subcommands scan, preprocess, sample)."""
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="ctexplore", description="Explore and preprocess CT scans stored as DICOM.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser("scan", help="list the CT series under a folder and the files skipped")
    scan.add_argument("path", help="folder (searched recursively) or file")
    scan.add_argument("--csv", metavar="FILE", help="also write the whole table (patient and folder columns) as CSV")
    scan.add_argument("--json", metavar="FILE", help="also write the whole table as JSON")

    report = commands.add_parser(
        "report", help="write report.html (thumbnails, distributions, flags) for a preprocess output or a DICOM tree"
    )
    report.add_argument("folder", help="output folder of 'ctexplore preprocess' (has manifest.csv), or a DICOM tree")
    report.add_argument("--out", metavar="FOLDER", help="where to write (needed for a DICOM tree; default: FOLDER)")
    report.add_argument("--rule", type=_rule, default="thinnest", help="DICOM tree: series to show per study")

    run = commands.add_parser(
        "preprocess",
        help="resample the chosen series of every study to arrays, with a manifest",
        description="Write one file per chosen series into OUTPUT and OUTPUT/manifest.csv "
        "(status ok, skipped or failed for every series found, with the reason). "
        "Outputs are named OUTPUT/<patient>/<patient>__s<series number>_<description>__<hash>.npz "
        "and appear atomically; the input is never written to.",
        epilog="A rerun keeps every output whose options and input files are unchanged "
        "(reason 'already done') and redoes the rest, failures included. "
        "Exit status: 0 all done, 1 a series failed or no series was found, "
        "2 usage error (bad option, missing input, output inside the input, unwritable output), "
        "130 interrupted (the manifest still records what finished).",
    )
    run.add_argument("input", help="data set folder (e.g. CQ500: CQ500-CT-N/Unknown Study/...)")
    run.add_argument("output", help="output folder (outside INPUT)")
    run.add_argument(
        "--rule",
        type=_rule,
        default="thinnest",
        help="series to take from each study: thinnest (default; axial, smallest slice spacing), "
        "all, axial, noncontrast, kernel:soft|sharp|REGEX, slices:N (exactly N images), "
        "coverage:MM (first to last slice), description:REGEX (case-insensitive), terms combined with '&'; "
        "preset cq500 = 'axial & noncontrast & kernel:soft & thinnest'",
    )
    run.add_argument(
        "--labels",
        metavar="READS_CSV",
        help="CQ500 reads.csv: majority vote per finding as manifest columns (ICH, SDH, ...); "
        "'download' fetches it (SHA-256 pinned on first download)",
    )
    grid = run.add_mutually_exclusive_group()
    grid.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="MM",
        help="output voxel size in mm: one value (isotropic) or three (slice normal, rows, columns); default 1 1 1",
    )
    grid.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), help="output array shape instead")
    grid.add_argument(
        "--keep-spacing",
        action="store_true",
        help="keep the acquired voxel size (tilted series are still made orthogonal)",
    )
    values = run.add_mutually_exclusive_group()
    values.add_argument(
        "--window",
        nargs="+",
        metavar="PRESET",
        help="store window preset(s) (brain, subdural, soft_tissue, bone, ...) "
        "as the 'processed' array; several give channels",
    )
    values.add_argument(
        "--normalize",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="store HU clipped to [LOW, HIGH] and scaled to [0, 1] as 'processed'",
    )
    run.add_argument(
        "--crop", action=argparse.BooleanOptionalAction, default=False, help="crop to the head (default: no)"
    )
    run.add_argument(
        "--order", type=int, default=1, choices=range(6), metavar="0..5", help="interpolation order (default 1, linear)"
    )
    run.add_argument("--format", choices=("npz", "nifti"), default="npz", help="output format (default npz)")
    run.add_argument(
        "--hu-dtype",
        choices=("int16", "float32"),
        default="int16",
        help="stored HU: int16 rounds to whole HU (default; at most 0.5 HU off, far below "
        "CT noise; a third the file size), float32 keeps interpolated values",
    )
    run.add_argument(
        "--compress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="zlib-compress .npz outputs (default: yes; compressing is most of the time per series)",
    )
    run.add_argument(
        "--on-uneven",
        choices=("raise", "resample"),
        default="raise",
        help="uneven slice steps: fail the series (default) or interpolate",
    )
    model = run.add_argument_group("model inputs")
    model.add_argument("--skull-strip", action="store_true", help="set everything outside the brain mask to -1000 HU")
    model.add_argument(
        "--stack-2p5d",
        type=int,
        metavar="K",
        help="2.5D: each output slice with K neighbours on each side as channels, times the window(s); "
        "'processed' is (channels, slices, rows, cols)",
    )
    model.add_argument(
        "--slab",
        nargs="+",
        metavar=("MM", "MODE"),
        help="thick slabs MM thick along the slice normal, MODE mean (default), max (MIP) or min (MinIP)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    where.add_argument("--dask", metavar="ADDRESS", help="run on a dask.distributed scheduler, e.g. tcp://host:8786")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    sample = commands.add_parser("sample", help="write synthetic sample data (a CQ500-like data set)")
    sample.add_argument("dest", help="folder to write into")
    kind = sample.add_mutually_exclusive_group()
    kind.add_argument("--patients", type=int, default=3, metavar="N", help="patients in the data set (default 3)")
    kind.add_argument("--study", action="store_true", help="write one scanner-style study folder instead")
    return parser


def _options(args: argparse.Namespace):  # -> PreprocessOptions
    from .pipeline import PreprocessOptions

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    if args.keep_spacing or args.shape:
        spacing = None
    elif args.spacing:
        if len(args.spacing) not in (1, 3):
            raise ValueError(f"--spacing takes one or three values, got {len(args.spacing)}")
        first, *rest = args.spacing
        spacing = (first, first, first) if not rest else (first, rest[0], rest[1])
    window = args.window[0] if args.window is not None and len(args.window) == 1 else None
    windows = tuple(args.window) if args.window is not None and len(args.window) > 1 else None
    return PreprocessOptions(
        spacing=spacing,
        shape=tuple(args.shape) if args.shape else None,
        window=window,
        windows=windows,
        normalize=tuple(args.normalize) if args.normalize else None,
        crop=args.crop,
        order=args.order,
        format=args.format,
        on_uneven=args.on_uneven,
        hu_dtype=args.hu_dtype,
        compress=args.compress,
        **_model_input_options(args),
    )


def _model_input_options(args: argparse.Namespace) -> dict:
    if args.slab is not None and len(args.slab) > 2:
        raise ValueError(f"--slab takes MM and an optional mode (mean, max, min), got {' '.join(args.slab)}")
    slab = None
    if args.slab is not None:
        try:
            thickness = float(args.slab[0])
        except ValueError:
            raise ValueError(f"--slab MM [MODE]: MM is the slab thickness in mm, got {args.slab[0]!r}") from None
        slab = (thickness, args.slab[1] if len(args.slab) > 1 else "mean")
    return {"skull_strip": args.skull_strip, "stack_2p5d": args.stack_2p5d, "slab": slab}


def _run_preprocess(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .batch import preprocess
    from .errors import DicomError

    try:
        options = _options(args)
    except ValueError as error:  # contradictory or out-of-range options
        print(f"ctexplore preprocess: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    problem = _not_a_folder(args.output, "OUTPUT")
    if problem:
        print(f"ctexplore preprocess: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = preprocess(
            args.input,
            args.output,
            rule=args.rule,
            options=options,
            workers=args.workers,
            dask_address=args.dask,
            progress=not args.no_progress,
            labels=args.labels,
        )
    except DicomError as error:  # the data, not the command line, is at fault
        advice = _flag_advice(str(error), parser, "preprocess")
        print(f"ctexplore preprocess: error in the input data: {advice}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, ValueError) as error:  # missing input, output inside input, unreachable dask scheduler
        advice = _flag_advice(str(error), parser, "preprocess")
        print(f"ctexplore preprocess: error: {advice}", file=sys.stderr)
        return EXIT_USAGE
    if not summary.rows:
        skipped = len(summary.skipped_files)
        print(
            f"ctexplore preprocess: no CT series found under {args.input} "
            f"({_plural(skipped, 'file')} {'was' if skipped == 1 else 'were'} not CT images)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    for row in summary.rows:
        if row.status == "failed":
            print(
                f"failed: {row.patient_id} series {row.series_number} {row.series_description!r}: "
                + _flag_advice(row.reason, parser, "preprocess"),
                file=sys.stderr,
            )
    print(f"manifest: {summary.manifest}")
    print(summary)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _run_scan(args: argparse.Namespace) -> int:
    from .series import scan

    for flag, target in (("--csv", args.csv), ("--json", args.json)):
        problem = target and _not_a_file(target, flag)
        if problem:
            print(f"ctexplore scan: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        index = scan(args.path)
    except FileNotFoundError as error:
        print(f"ctexplore scan: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(index)
    table = index.table()
    try:
        if args.csv:
            _write_table_csv(args.csv, table)
        if args.json:
            _write_table_json(args.json, table)
    except OSError as error:
        print(f"ctexplore scan: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if index.skipped:
        print(f"\n{_plural(len(index.skipped), 'file')} skipped:")
        for path, reason in index.skipped:
            print(f"  {path}: {reason}")
    if not index.series:
        found = f"{_plural(len(index.skipped), 'file')}, none a DICOM image" if index.skipped else "no files at all"
        print(
            f"ctexplore scan: no image series found under {args.path} ({found}). "
            "Point it at the folder holding the .dcm files (sub-folders are searched).",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _write_table_csv(path: str, table: list[dict]) -> None:
    import csv
    from pathlib import Path

    from ._atomic import atomic_target

    columns = list(table[0]) if table else ["patient", "folder", "description"]
    with atomic_target(Path(path)) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, columns)
            writer.writeheader()
            writer.writerows(table)


def _write_table_json(path: str, table: list[dict]) -> None:
    import json
    from pathlib import Path

    from ._atomic import atomic_target

    with atomic_target(Path(path)) as temporary:
        temporary.write_text(json.dumps(table, indent=1, default=str), encoding="utf-8")


def _run_report(args: argparse.Namespace) -> int:
    from .report import write_report

    try:
        print(write_report(args.folder, args.out, rule=args.rule))
    except (OSError, ValueError) as error:
        print(f"ctexplore report: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _run_sample(args: argparse.Namespace) -> int:
    from .datasets import sample_dataset, sample_study

    problem = _not_a_folder(args.dest, "DEST")
    if problem:
        print(f"ctexplore sample: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.study:
        print(sample_study(args.dest))
    else:
        if args.patients < 1:
            print("ctexplore sample: error: --patients must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        print(sample_dataset(args.dest, n_patients=args.patients))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to ``sys.exit``).

    Examples
    --------
    A usage error returns 2 (argparse prints the message to stderr):

    >>> main(["preprocess", "in", "out", "--rule", "largest"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors and 0 on --help
        return int(exit_.code or 0)
    try:
        if args.command == "scan":
            return _run_scan(args)
        if args.command == "preprocess":
            return _run_preprocess(args, parser)
        if args.command == "report":
            return _run_report(args)
        return _run_sample(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
