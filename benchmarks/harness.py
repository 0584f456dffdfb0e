"""Shared benchmark machinery: a timeit-based harness, result sections, and the machine description.

Every benchmark module exposes ``run(config) -> Section``. A :class:`Section` holds markdown tables, notes, and
:class:`Target` rows (what was asked, what was measured, met or not, and the cause of a shortfall), so that
``run_all.py`` can print them and write ``benchmarks/RESULTS.md`` without any number typed by hand.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Config:
    """Sizes shared by every benchmark; ``quick`` shrinks them for a smoke test (numbers then mean nothing)."""

    #: tiny sizes, for tests.
    quick: bool
    #: skip the ``make reproduce`` timings.
    skip_reproduce: bool
    #: seconds a full ``reproduce`` may take before it is stopped and reported as not finished.
    reproduce_timeout_s: float
    #: the interpreter that runs subprocess workers (the project's virtual environment).
    python: str = sys.executable
    #: a commit to measure side by side with this checkout (section 7); None skips that section.
    baseline: str | None = None
    #: the commit section 7 measures against ``baseline`` (``HEAD``: the committed work of this checkout).
    current: str = "HEAD"
    #: which of section 7's measure groups to run (``bench_vs_baseline.GROUPS``); empty: all of them.
    measures: tuple[str, ...] = ()
    #: where section 6 keeps the full reproduction's results (None: a temporary folder).
    reproduce_out: Path | None = None

    def size(self, full: int, quick: int) -> int:
        """``full`` normally, ``quick`` in quick mode."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Stats:
    """Median and range of repeated measurements of one quantity."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, percent: the run-to-run spread."""
        return 100.0 * (self.high - self.low) / self.median if self.median else 0.0

    def map(self, f: Callable[[float], float]) -> Stats:
        """The statistics of ``f`` of each value (e.g. seconds -> rate; a decreasing f swaps min and max)."""
        return Stats(tuple(f(v) for v in self.values))

    def fmt(self, digits: int = 3, scale: float = 1.0) -> str:
        """``median (min-max)`` with ``digits`` significant digits, each value times ``scale``."""
        return (
            f"{_sig(self.median * scale, digits)} "
            f"({_sig(self.low * scale, digits)}–{_sig(self.high * scale, digits)})"
        )


def _sig(x: float, digits: int) -> str:
    if x == 0 or not (abs(x) < float("inf")):
        return f"{x:g}"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands separated when large)."""
    return _sig(x, digits)


@dataclass(frozen=True)
class Timing:
    """Seconds per call: wall-clock time, and the CPU time this process used (which other processes on the
    machine inflate much less: they take cores away, which stretches wall time but not this CPU time)."""

    wall: Stats
    cpu: Stats

    def map(self, f: Callable[[float], float]) -> Timing:
        """Both statistics mapped through ``f`` (e.g. seconds per call -> steps per second)."""
        return Timing(self.wall.map(f), self.cpu.map(f))


def measure(fn: Callable[[], object], *, repeats: int, number: int = 1, warmup: int = 1) -> Timing:
    """Time ``fn``: ``warmup`` untimed calls, then ``repeats`` timings of ``number`` calls each.

    As :mod:`timeit` does, garbage collection is off while timing and wall time is ``time.perf_counter``;
    ``time.process_time`` gives the CPU time alongside.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(number):
                fn()
            wall.append((time.perf_counter() - wall_start) / number)
            cpu.append((time.process_time() - cpu_start) / number)
    finally:
        if collecting:
            gc.enable()
    return Timing(Stats(tuple(wall)), Stats(tuple(cpu)))


def load_note(cpu_rate: float, target: float, unit: str) -> str:
    """The clause a shortfall's cause gets when the rate on this process's CPU time (``cpu_rate``, ``unit``) meets
    ``target``: the wall-clock shortfall is then the load of other processes; "" otherwise."""
    if cpu_rate < target:
        return ""
    return (
        f". On this process's CPU time it is {fmt(cpu_rate, 4)} {unit}: the wall-clock shortfall is the load of "
        "other processes"
    )


@dataclass(frozen=True)
class Target:
    """One target of the issue: met or not, with the measured number and, if not met, why."""

    what: str
    target: str
    measured: str
    met: bool
    cause: str = ""


@dataclass
class Section:
    """A section of RESULTS.md."""

    title: str
    intro: str = ""
    blocks: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> None:
        """Append a markdown table (and an optional caption line above it)."""
        lines = [f"*{caption}*", ""] if caption else []
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
        self.blocks.append("\n".join(lines))

    def markdown(self) -> str:
        parts = [f"## {self.title}"]
        if self.intro:
            parts.append(self.intro)
        parts.extend(self.blocks)
        if self.targets:
            parts.append(targets_table(self.targets))
        if self.notes:
            parts.append("\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)


def targets_table(targets: Sequence[Target]) -> str:
    rows = ["| target | asked | measured | met | cause of shortfall |", "|---|---|---|---|---|"]
    for t in targets:
        rows.append(
            f"| {t.what} | {t.target} | {t.measured} | {'met' if t.met else '**not met**'} | {t.cause} |"
        )
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> list[tuple[str, str]]:
    """What the numbers were measured on; never the host name."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return [
        ("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")),
        ("CPU", _cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("memory", _memory_gib()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        *(
            (package, _version(package))
            for package in ("numpy", "scipy", "torch", "gymnasium", "mabwiser", "pandas")
        ),
        ("load average at start (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in load)),
    ]
