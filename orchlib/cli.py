"""Command-line interface: ``python -m orchlib <subcommand> ...`` (also installed as ``orchlib``).

Only argument parsing lives here; each subcommand calls one library function. To add a subcommand, write an
``_add_<name>(subparsers)`` function that creates its parser and sets ``handler``, and append it to
:data:`_SUBCOMMANDS`. Bad arguments are refused by argparse (exit code 2, one line naming the argument).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from orchlib.profiling.mobilenet import parse_variant, variant_names
from orchlib.profiling.profiler import MIN_REPEATS, ProfileRow, profile_metadata, profile_to_csv

#: Exit code of a run stopped with Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen subcommand and return its exit code.

    Raises:
        SystemExit: with code 2 for bad arguments (argparse prints the usage and one error line).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchlib", description="Reproduce online RL orchestration of DNN inference (orchlib)."
    )
    subparsers = parser.add_subparsers(title="subcommands", dest="subcommand", required=True)
    for add_subcommand in _SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


# --- profile ---------------------------------------------------------------------------------------------


def _add_profile(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure batch-1 latency of MobileNetV1 variants on this CPU (float32 and int8)",
        description="Measure batch-1 latency of MobileNetV1 variants on this CPU with torch and write a "
        "profile CSV, rewritten after every finished variant (Ctrl-C keeps the finished rows).",
    )
    parser.add_argument("--threads", type=_int_at_least(1), required=True, help="torch threads (1..n_cores)")
    parser.add_argument(
        "--repeats",
        type=_int_at_least(MIN_REPEATS),
        required=True,
        help=f"timed runs per variant (>= {MIN_REPEATS})",
    )
    parser.add_argument("--warmup", type=_int_at_least(0), default=10, help="untimed runs first (default 10)")
    parser.add_argument(
        "--variants", nargs="+", type=_variant_name, default=None, metavar="NAME", help="default: all 32"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    parser.add_argument(
        "--machine", default=None, help="generic machine description for the metadata (never the host name)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--out", type=_csv_path, required=True, help="output file, e.g. data/profiles/NAME.csv"
    )
    parser.set_defaults(handler=_run_profile, parser=parser)


def _run_profile(args: argparse.Namespace) -> int:
    n_cores = os.cpu_count() or 1
    if args.threads > n_cores:
        args.parser.error(
            f"argument --threads: must be at most {n_cores} (os.cpu_count()), got {args.threads}"
        )
    variants = args.variants if args.variants is not None else variant_names()
    if len(set(variants)) != len(variants):
        args.parser.error("argument --variants: names must not repeat")
    # Record a command that reproduces the file exactly: every setting explicit, defaults included.
    command = ["python", "-m", "orchlib", "profile", "--threads", args.threads, "--repeats", args.repeats]
    command += ["--warmup", args.warmup, "--seed", args.seed]
    if args.variants is not None:
        command += ["--variants", *args.variants]
    if args.machine is not None:
        command += ["--machine", args.machine]
    command += ["--out", args.out.as_posix()]
    metadata = profile_metadata(
        name=args.out.stem,
        threads=args.threads,
        command=shlex.join(str(part) for part in command),
        machine=args.machine,
    )
    finished: list[ProfileRow] = []
    try:
        profile_to_csv(
            args.out,
            variants,
            threads=args.threads,
            repeats=args.repeats,
            warmup=args.warmup,
            metadata=metadata,
            rng=args.seed,
            progress=not args.no_progress,
            on_row=finished.append,
        )
    except KeyboardInterrupt:
        kept = f"{args.out} holds them" if finished else f"{args.out} left unchanged"
        print(f"\ninterrupted: {len(finished)} of {len(variants)} variants finished; {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {len(finished)} variants to {args.out}", file=sys.stderr)
    return 0


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    return parse


def _variant_name(text: str) -> str:
    try:
        parse_variant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _csv_path(text: str) -> Path:
    path = Path(text)
    if path.suffix != ".csv":
        raise argparse.ArgumentTypeError(f"must end in .csv, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist (create it first)")
    return path


#: Each entry adds one subcommand parser (with its ``handler``) to the subparsers action.
# --- reproduce -------------------------------------------------------------------------------------------


def _add_reproduce(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="regenerate every figure and the summary table",
        description="Run every experiment (cached in OUT/runs), draw every figure to OUT/figures (PNG and PDF), "
        "and write OUT/summary.md and OUT/summary.csv. With --notebooks, also write executed copies of the "
        "notebooks to OUT/notebooks (the 'notebooks' subcommand does that step alone).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny budget (about a minute); not for conclusions"
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    parser.add_argument(
        "--jobs",
        type=_int_at_least(1),
        default=min(2, os.cpu_count() or 1),
        help="parallel runs (default: 2)",
    )
    parser.add_argument(
        "--notebooks", action="store_true", help="also execute every notebook into OUT/notebooks"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(handler=_run_reproduce, parser=parser)


def _run_reproduce(args: argparse.Namespace) -> int:
    from orchlib.study.notebooks import QUICK_ENV, RESULTS_ENV
    from orchlib.study.reproduce import reproduce

    if args.out.exists() and not args.out.is_dir():
        args.parser.error(f"--out: {args.out} exists and is not a folder")
    # The notebooks executed at the end read the runs cached by this call.
    os.environ[RESULTS_ENV] = str(args.out.resolve())
    os.environ[QUICK_ENV] = "1" if args.quick else "0"
    try:
        reproduce(
            args.out,
            quick=args.quick,
            n_jobs=args.jobs,
            notebooks=args.notebooks,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            "\ninterrupted: every finished run is cached in OUT/runs and is reused by the next call",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


# --- notebooks -----------------------------------------------------------------------------------------


def _add_notebooks(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "notebooks",
        help="execute every notebook against the cached runs in OUT",
        description="Execute every notebook in a fresh kernel, reusing the runs that 'reproduce' cached in "
        "OUT/runs, and write the executed copies (with outputs) to OUT/notebooks.",
    )
    parser.add_argument("--quick", action="store_true", help="run the notebooks at their tiny size")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    parser.add_argument(
        "--jobs", type=_int_at_least(1), default=min(2, os.cpu_count() or 1), help="notebooks at a time"
    )
    parser.set_defaults(handler=_run_notebooks, parser=parser)


def _run_notebooks(args: argparse.Namespace) -> int:
    from orchlib.study.reproduce import execute_notebooks

    if args.out.exists() and not args.out.is_dir():
        args.parser.error(f"--out: {args.out} exists and is not a folder")
    written = execute_notebooks(args.out, quick=args.quick, n_jobs=args.jobs)
    print(f"executed {len(written)} notebooks into {args.out / 'notebooks'}", file=sys.stderr)
    return 0


# --- sanity --------------------------------------------------------------------------------------------


def _add_sanity(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sanity",
        help="which tier is fastest per variant, network level and user count (paper scenario)",
        description="Write a Markdown table: for the paper scenario with each steady network level and user "
        "count, the tier with the lowest mean response time for every variant.",
    )
    parser.add_argument(
        "--requests", type=_int_at_least(100), default=1000, help="requests per cell (default 1000)"
    )
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write, e.g. docs/sanity.md")
    parser.set_defaults(handler=_run_sanity, parser=parser)


def _run_sanity(args: argparse.Namespace) -> int:
    from orchlib.study.experiments import sanity_markdown

    if not args.out.parent.is_dir():
        args.parser.error(f"--out: folder {args.out.parent} does not exist")
    text = sanity_markdown(n_requests=args.requests)
    from orchlib.study.runner import atomic_write

    atomic_write(args.out, text.encode("utf-8"))
    print(text)
    return 0


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_profile,
    _add_reproduce,
    _add_notebooks,
    _add_sanity,
]
