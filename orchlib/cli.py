"""Command-line interface: ``python -m orchlib <subcommand> ...`` (also installed as ``orchlib``).

Only argument parsing lives here; each subcommand calls one library function. To add a subcommand, write an
``_add_<name>(subparsers)`` function that creates its parser and sets ``handler``, and append it to
:data:`_SUBCOMMANDS`. Bad arguments are refused by argparse (exit code 2, one line naming the argument).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from orchlib.profiling.profiler import (
    AS_SERVED_GAP_MS,
    MIN_REPEATS,
    ProfileRow,
    check_device,
    profile_metadata,
    profile_to_csv,
)
from orchlib.profiling.variants import parse_variant, variant_names

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
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="seed for weights and inputs (>= 0, default 0)"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to run: cpu (default) or cuda, a GPU when torch sees one (float variants only)",
    )
    parser.add_argument(
        "--machine",
        type=_one_line_text,
        default=None,
        help="generic machine description for the metadata (never the host name)",
    )
    parser.add_argument(
        "--as-served",
        type=_gap_ms,
        nargs="?",
        const=AS_SERVED_GAP_MS,
        default=0.0,
        metavar="GAP_MS",
        help="time each pass after GAP_MS idle, as a server sees sporadic requests (default gap "
        f"{AS_SERVED_GAP_MS:g} ms); without it, passes run back to back",
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
    try:
        check_device(args.device, variants)
    except ValueError as exc:
        args.parser.error(f"argument --device: {exc}")
    # Record a command that reproduces the file exactly: every setting explicit, defaults included.
    command = ["python", "-m", "orchlib", "profile", "--threads", args.threads, "--repeats", args.repeats]
    command += ["--warmup", args.warmup, "--seed", args.seed]
    if args.device != "cpu":
        command += ["--device", args.device]
    if args.variants is not None:
        command += ["--variants", *args.variants]
    if args.machine is not None:
        command += ["--machine", args.machine]
    if args.as_served > 0:
        command += ["--as-served", f"{args.as_served:g}"]
    command += ["--out", args.out.as_posix()]
    metadata = profile_metadata(
        name=args.out.stem,
        threads=args.threads,
        command=shlex.join(str(part) for part in command),
        machine=args.machine,
    )
    if args.device != "cpu":  # a CPU profile keeps the file format it always had
        metadata["device"] = args.device
    if args.as_served > 0:  # likewise a back-to-back profile
        metadata["idle_gap_ms"] = f"{args.as_served:g}"
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
            device=args.device,
            idle_gap_ms=args.as_served,
        )
    except KeyboardInterrupt:
        kept = f"{args.out} holds them" if finished else f"{args.out} left unchanged"
        print(f"\ninterrupted: {len(finished)} of {len(variants)} variants finished; {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {len(finished)} variants to {args.out}", file=sys.stderr)
    return 0


def _add_profile_decode(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile-decode",
        help="measure JPEG decoding of the payload samples on this CPU (the serving tier's extra compute)",
        description="Decode each sample JPEG of data/payloads/samples (one per resolution and quality) and "
        "write the median, p10 and p90 decode time per (resolution, quality) to a CSV.",
    )
    parser.add_argument(
        "--repeats", type=_int_at_least(MIN_REPEATS), default=200, help="timed runs (default 200)"
    )
    parser.add_argument("--warmup", type=_int_at_least(0), default=20, help="untimed runs first (default 20)")
    parser.add_argument(
        "--machine",
        type=_one_line_text,
        default=None,
        help="generic machine description for the metadata (never the host name)",
    )
    parser.add_argument("--out", type=_csv_path, required=True, help="e.g. data/profiles/x86_jpeg_decode.csv")
    parser.set_defaults(handler=_run_profile_decode, parser=parser)


def _run_profile_decode(args: argparse.Namespace) -> int:
    from orchlib.profiling.profiler import load_payload_samples, profile_decode, write_decode_profile
    from orchlib.system.profiles import DATA_DIR

    table = profile_decode(load_payload_samples(DATA_DIR / "payloads" / "samples"), args.repeats, args.warmup)
    command = [
        "python",
        "-m",
        "orchlib",
        "profile-decode",
        "--repeats",
        args.repeats,
        "--warmup",
        args.warmup,
    ]
    if args.machine is not None:
        command += ["--machine", args.machine]
    command += ["--out", args.out.as_posix()]
    base = profile_metadata(
        name=args.out.stem, threads=1, command=shlex.join(str(part) for part in command), machine=args.machine
    )
    metadata = {
        **base,
        "kind": "measured",
        "framework": "Pillow JPEG decode + numpy conversion to float32 CHW (orchlib.profiling.profiler."
        "decode_to_tensor)",
        "quantization_backend": "n/a",
    }
    write_decode_profile(args.out, table, metadata)
    print(f"wrote {len(table)} rows to {args.out}", file=sys.stderr)
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


def _one_line_text(text: str) -> str:
    if not text.strip() or "\n" in text or "\r" in text:
        raise argparse.ArgumentTypeError(f"must be a non-empty text on one line, got {text!r}")
    return text


def _gap_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of ms >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of ms >= 0, got {text!r}")
    return value


def _csv_path(text: str) -> Path:
    path = Path(text)
    if path.suffix != ".csv":
        raise argparse.ArgumentTypeError(f"must end in .csv, got {text!r}")
    return _file_to_write(text)


def _file_to_write(text: str) -> Path:
    """A file path whose folder exists and is writable, and which is not itself a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name inside it")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist (create it first)")
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} is not writable")
    return path


def _folder_to_write(text: str) -> Path:
    """A folder that exists or can be created (its nearest existing ancestor is a writable folder)."""
    path = Path(text)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == path else f"is inside {str(existing)!r}, a file"
        raise argparse.ArgumentTypeError(f"{text!r} {what}")
    if not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{str(existing)!r} is not writable")
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
    parser.add_argument(
        "--out", type=_folder_to_write, default=Path("results"), help="output folder (default: results)"
    )
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
    parser.add_argument(
        "--testbed",
        action="store_true",
        help="also run the live testbed against the simulator at 1, 2 and 4 users (about 5 minutes; quick: "
        "1 user, 10 s) into OUT/testbed and draw OUT/figures/fig9_sim_vs_real",
    )
    parser.set_defaults(handler=_run_reproduce, parser=parser)


def _run_reproduce(args: argparse.Namespace) -> int:
    from orchlib.study.notebooks import QUICK_ENV, RESULTS_ENV
    from orchlib.study.reproduce import reproduce

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
        if args.testbed:
            _reproduce_testbed(args.out, quick=args.quick, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: every finished run is cached in OUT/runs and is reused by the next call",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0


def _reproduce_testbed(out: Path, quick: bool, progress: bool) -> None:
    """The optional step of ``reproduce --testbed``: simulator against the live testbed, table and figure."""
    from orchlib.study import plots
    from orchlib.testbed.compare import run_comparison
    from orchlib.testbed.run import QUICK_VARIANTS

    table, _ = run_comparison(
        out / "testbed",
        users=(1,) if quick else (1, 2, 4),
        duration_s=10.0 if quick else 60.0,
        variants=QUICK_VARIANTS if quick else None,
        progress=progress,
    )
    plots.save(plots.plot_sim_vs_real(table), out / "figures", "fig9_sim_vs_real")
    print(f"simulator vs testbed: {out / 'testbed' / 'sim_vs_real.csv'}", file=sys.stderr)


# --- notebooks -----------------------------------------------------------------------------------------


def _add_notebooks(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "notebooks",
        help="execute every notebook against the cached runs in OUT",
        description="Execute every notebook in a fresh kernel, reusing the runs that 'reproduce' cached in "
        "OUT/runs, and write the executed copies (with outputs) to OUT/notebooks.",
    )
    parser.add_argument("--quick", action="store_true", help="run the notebooks at their tiny size")
    parser.add_argument(
        "--out", type=_folder_to_write, default=Path("results"), help="results folder (default: results)"
    )
    parser.add_argument(
        "--jobs", type=_int_at_least(1), default=min(2, os.cpu_count() or 1), help="notebooks at a time"
    )
    parser.set_defaults(handler=_run_notebooks, parser=parser)


def _run_notebooks(args: argparse.Namespace) -> int:
    from orchlib.study.reproduce import execute_notebooks

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
    parser.add_argument(
        "--out", type=_file_to_write, required=True, help="Markdown file to write, e.g. docs/sanity.md"
    )
    parser.set_defaults(handler=_run_sanity, parser=parser)


def _run_sanity(args: argparse.Namespace) -> int:
    from orchlib.study.experiments import sanity_markdown

    text = sanity_markdown(n_requests=args.requests)
    from orchlib.study.runner import atomic_write

    atomic_write(args.out, text.encode("utf-8"))
    print(text)
    return 0


# --- testbed -------------------------------------------------------------------------------------------


def _add_testbed(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "testbed",
        help="serve real requests: edge and cloud servers, device processes, shaped links, an agent deciding",
        description="Run the live testbed: real MobileNetV1 servers and devices behind shaped links "
        "(network namespaces when run as root, else loopback), every request decided by a catalogue agent. "
        "Writes OUT/requests.parquet (the simulator runner's request table), OUT/calibration.csv and "
        "OUT/run.json. Ctrl-C stops cleanly and keeps every finished request.",
    )
    parser.add_argument("--scenario", required=True, help="scenario preset name, e.g. paper or testbed")
    parser.add_argument("--users", type=_int_at_least(1), required=True, help="number of users (devices)")
    parser.add_argument("--agent", required=True, help="catalogue agent name, e.g. random or q_learning")
    parser.add_argument("--duration", type=_positive_float, required=True, help="seconds of requests")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--variants",
        nargs="+",
        type=_variant_name,
        default=None,
        metavar="NAME",
        help="variants the servers offer (default: the scenario's subset)",
    )
    parser.add_argument("--mode", choices=("auto", "netns", "loopback"), default="auto", help="default: auto")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the request stream and agent (default 0)"
    )
    parser.add_argument(
        "--kill-edge-at",
        type=_positive_float,
        default=None,
        metavar="S",
        help="kill the edge server S seconds into the run (fault test)",
    )
    parser.add_argument(
        "--ports",
        type=_int_at_least(1024),
        nargs=2,
        default=(18080, 18081),
        metavar=("EDGE", "CLOUD"),
        help="server ports (default 18080 18081)",
    )
    parser.add_argument(
        "--calibration-repeats",
        type=_int_at_least(MIN_REPEATS),
        default=None,
        metavar="N",
        help=f"timed passes per variant in the device calibration (>= {MIN_REPEATS}; default: "
        "TestbedConfig.calibration_repeats), each after the as-served idle gap",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=_run_testbed, parser=parser)


def _run_testbed(args: argparse.Namespace) -> int:
    from orchlib.system.profiles import DataError
    from orchlib.system.scenario import preset
    from orchlib.testbed.links import NetworkError
    from orchlib.testbed.run import TestbedConfig, TestbedError, run_testbed

    if args.out.exists() and not args.out.is_dir():
        args.parser.error(f"argument --out: {args.out} exists and is not a folder")
    try:
        scenario = preset(args.scenario).replace(n_users=args.users)
        if args.variants is not None:
            scenario = scenario.replace(variant_subset=tuple(args.variants))
        config = TestbedConfig(
            scenario=scenario,
            agent=args.agent,
            duration_s=args.duration,
            mode=args.mode,
            seed=args.seed,
            kill_edge_at_s=args.kill_edge_at,
            ports=tuple(args.ports),
            calibration_repeats=args.calibration_repeats or TestbedConfig.calibration_repeats,
        )
        result = run_testbed(config, out_dir=args.out, progress=not args.no_progress)
    except (ValueError, TypeError, DataError) as error:
        args.parser.error(str(error))
    except (TestbedError, NetworkError) as error:
        print(f"orchlib testbed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every process and namespace removed; finished requests in {args.out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    info = result.info
    print(
        f"{info['n_requests']} requests ({info['n_failed']} failed) in {info['mode']} mode; results in {args.out}",
        file=sys.stderr,
    )
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_profile,
    _add_profile_decode,
    _add_reproduce,
    _add_notebooks,
    _add_sanity,
    _add_testbed,
]
