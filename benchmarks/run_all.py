"""Run every orchlib benchmark, print the tables, and write ``benchmarks/RESULTS.md`` (atomically).

``make bench`` runs ``.venv/bin/python benchmarks/run_all.py``. Options: ``--quick`` (tiny sizes: a smoke test, the
numbers mean nothing), ``--skip-reproduce`` (skip the ``make reproduce`` timings), ``--out PATH`` (where to write
the results; default ``benchmarks/RESULTS.md``). Exit code 1 if a benchmark raised (its section says why).

Sections: 1 env + agent throughput (bench_env), 2 fast path (bench_batch), 3 decision latency (bench_latency),
4 orchlib vs MABWiser (bench_mabwiser), 5 scaling with users and horizon (bench_scaling), 6 reproduce wall time
(bench_reproduce), 7 side by side with a baseline commit (bench_vs_baseline, only with ``--baseline COMMIT``),
8 learning targets of issue 13 (bench_learners; quality, not speed), 9 back-to-back against sporadic inference
(bench_testbed_cold: why testbed servers run slower than a back-to-back profile), 10 the testbed's shaped links
(bench_testbed_links; needs root for network namespaces, skipped without it and in quick mode), 11 the engine's
first compilation, kernel by kernel (bench_compile).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from harness import ROOT, Config, Section, Target, fmt, machine_description, targets_table

DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
#: the issue's limit on ``make bench``, seconds.
TIME_LIMIT_S = 600
#: the benchmark modules, in section order (imported after the arguments are parsed: they import orchlib).
MODULES = (
    "bench_env",
    "bench_batch",
    "bench_latency",
    "bench_mabwiser",
    "bench_scaling",
    "bench_reproduce",
    "bench_vs_baseline",
    "bench_learners",
    "bench_testbed_cold",
    "bench_testbed_links",
    "bench_compile",
)


def _run_section(module, config: Config) -> tuple[Section, float, bool]:
    start = time.perf_counter()
    try:
        section = module.run(config)
        ok = True
    except Exception:  # report the failure in RESULTS.md rather than losing every other section
        name = module.__name__
        section = Section(f"{name}: failed")
        section.blocks.append("```\n" + traceback.format_exc() + "```")
        section.targets.append(Target(name, "runs", "raised an exception", False, "see the traceback"))
        ok = False
    return section, time.perf_counter() - start, ok


def render(
    config: Config, machine: list[tuple[str, str]], sections: list[Section], timings: list[float]
) -> str:
    total = sum(timings)
    # the reproduce timings (section 6) and the side-by-side run (section 7) are the long, optional parts.
    reproduce_s = sum(timings[MODULES.index(name)] for name in ("bench_reproduce", "bench_vs_baseline"))
    all_targets = [t for s in sections for t in s.targets]
    without_reproduce = total - reproduce_s
    within = total <= TIME_LIMIT_S
    if within:
        cause = ""
    elif without_reproduce <= TIME_LIMIT_S:
        cause = (
            f"the `reproduce` runs take {fmt(reproduce_s)} s of it (sections 6 and 7); the benchmarks themselves "
            f"take {fmt(without_reproduce)} s (`--skip-reproduce` stays within the limit)"
        )
    else:
        cause = "the benchmarks themselves exceed the limit (see the section wall times below)"
    limit = Target(
        "`make bench` wall time",
        f"≤ {TIME_LIMIT_S // 60} min",
        f"{fmt(total)} s in all, {fmt(without_reproduce)} s without the reproduce timings",
        within,
        cause,
    )
    if not config.quick:
        all_targets.append(limit)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        "# orchlib benchmarks",
        "",
        "Written by `benchmarks/run_all.py` (never edited by hand)."
        + (" **Quick mode: tiny sizes, the numbers mean nothing.**" if config.quick else ""),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine),
        f"| load average at end (1, 5, 15 min) | {', '.join(f'{x:.2f}' for x in load)} |",
        "",
        "Noise: the machine has 2 cores and other work (test suites of parallel development) may have run during "
        "these measurements; the load averages above show how busy it was. Medians over repeats are reported "
        "with their min–max range; a wide range marks a disturbed measurement.",
        "",
        "## Summary of targets",
        "",
        targets_table(all_targets),
        "",
        *(part for section in sections for part in (section.markdown(), "")),
        "## Commands to rerun",
        "",
        "```",
        "make bench                                         # = .venv/bin/python benchmarks/run_all.py",
        ".venv/bin/python benchmarks/run_all.py --skip-reproduce   # everything but the reproduce timings",
        ".venv/bin/python benchmarks/run_all.py --quick --skip-reproduce --out /tmp/RESULTS.md  # smoke test",
        ".venv/bin/python benchmarks/run_all.py --baseline 597b4cd   # adds section 7, side by side (long)",
        "cd benchmarks && ../.venv/bin/python bench_vs_baseline.py --baseline 597b4cd   # section 7 alone",
        "cd benchmarks && ../.venv/bin/python bench_compile.py   # section 11 alone",
        ".venv/bin/python benchmarks/bench_scaling.py --worker --users 8 --horizon 10000 --repeats 3",
        ".venv/bin/python -m pytest tests/test_batch.py -q   # fast path = reference (rules bit for bit; distributions)",
        "```",
        "",
        "Section wall times: "
        + ", ".join(f"{s.title.split(' ', 1)[0]} {fmt(t)} s" for s, t in zip(sections, timings, strict=True))
        + f"; total {fmt(total)} s.",
        "",
    ]
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
        temporary = Path(handle.name)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run orchlib's benchmarks and write RESULTS.md.")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test; numbers mean nothing)"
    )
    parser.add_argument("--skip-reproduce", action="store_true", help="skip the `make reproduce` timings")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    parser.add_argument(
        "--reproduce-timeout",
        type=float,
        default=3600.0,
        help="seconds the full reproduce may run before it is stopped (default 3600)",
    )
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="also measure this checkout side by side with COMMIT (section 7; long: it runs both reproduces "
        "and two cold `make test`s)",
    )
    parser.add_argument(
        "--reproduce-out",
        type=Path,
        metavar="DIR",
        help="keep the full reproduction of section 6 (figures, tables, summary) in DIR, a new or empty folder, "
        "instead of a temporary one",
    )
    args = parser.parse_args(argv)
    if args.reproduce_out is not None and args.reproduce_out.exists() and any(args.reproduce_out.iterdir()):
        parser.error(
            f"--reproduce-out {args.reproduce_out}: not empty (its cached runs would make the timing wrong)"
        )
    config = Config(
        quick=args.quick,
        skip_reproduce=args.skip_reproduce,
        reproduce_timeout_s=args.reproduce_timeout,
        baseline=args.baseline,
        reproduce_out=args.reproduce_out,
    )
    machine = machine_description()
    sections, timings, all_ok = [], [], True
    for name in MODULES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        section, seconds, ok = _run_section(importlib.import_module(name), config)
        sections.append(section)
        timings.append(seconds)
        all_ok &= ok
        print(section.markdown() + "\n", flush=True)
    text = render(config, machine, sections, timings)
    write_atomically(args.out, text)
    print(text.split("## Summary of targets", 1)[1].split("\n## ", 1)[0].join(("## Summary of targets", "")))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
