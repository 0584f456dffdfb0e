"""Item 6: wall time of ``make reproduce`` (full) and ``make reproduce-quick``.

Runs ``python -m orchlib reproduce --quick --out <tmp>`` and ``python -m orchlib reproduce --out <tmp>`` (what the
Makefile targets run) once each into temporary folders. If the ``reproduce`` subcommand does not exist yet, the
row says so instead of failing. One run each: the full reproduction is too long to repeat.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from harness import ROOT, Config, Section, fmt


def _available(config: Config) -> bool:
    done = subprocess.run(
        [config.python, "-m", "orchlib", "reproduce", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return done.returncode == 0


def _timed(config: Config, extra: list[str], out: Path) -> tuple[str, str]:
    command = [config.python, "-m", "orchlib", "reproduce", *extra, "--out", str(out)]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=config.reproduce_timeout_s
        )
    except subprocess.TimeoutExpired:
        return (
            f"> {fmt(config.reproduce_timeout_s)}",
            f"stopped after the {fmt(config.reproduce_timeout_s)} s limit",
        )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])[:300]
        return fmt(elapsed), f"**failed** (exit {done.returncode}): {tail}"
    return fmt(elapsed), "ok"


def run(config: Config) -> Section:
    section = Section(
        "6. `make reproduce` wall time",
        intro="One run each into a temporary folder (the full reproduction is too long to repeat).",
    )
    header = ("command", "wall time, s", "status")
    if config.skip_reproduce:
        section.table(header, [("python -m orchlib reproduce [--quick]", "—", "skipped (--skip-reproduce)")])
        return section
    if not _available(config):
        section.table(
            header,
            [("python -m orchlib reproduce [--quick]", "—", "not available yet (no `reproduce` subcommand)")],
        )
        return section
    rows = []
    with tempfile.TemporaryDirectory(prefix="orchlib-bench-") as tmp:
        for label, extra in (("quick", ["--quick"]), ("full", [])):
            keep = label == "full" and config.reproduce_out is not None
            wall, status = _timed(config, extra, config.reproduce_out if keep else Path(tmp) / label)
            command = "python -m orchlib reproduce " + " ".join([*extra, "--out", "<tmp>"])
            rows.append((f"`{command}` ({label})", wall, status))
    section.table(header, rows)
    return section
