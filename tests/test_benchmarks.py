"""The benchmark suite runs end to end at tiny sizes and writes every section of RESULTS.md (no timing checks)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = (
    "## Machine",
    "## Summary of targets",
    "## 1. Environment + agent throughput (Gymnasium API)",
    "## 2. Fast path for sweeps (`orchlib.study.batch`)",
    "## 3. Decision latency per agent",
    "## 4. orchlib vs MABWiser on the identical reward stream",
    "## 5. How cost grows: users and horizon",
    "## 6. `make reproduce` wall time",
    "## 7. Side by side with a baseline commit",
    "## 8. Learning targets (issue 13)",
    "## 9. Testbed: back-to-back against sporadic inference (profile as served)",
    "## 10. Testbed links: shaped throughput and added RTT (namespace mode)",
    "## 11. The engine's first compilation, kernel by kernel",
    "## Commands to rerun",
)


@pytest.fixture(scope="session")
def quick_run(built_once) -> tuple[subprocess.CompletedProcess, Path]:
    """One quick run of every benchmark for the test run, whichever workers run these tests (about 30 s): its
    exit code, output and ``RESULTS.md``."""

    def run_all(folder: Path) -> None:
        out = (
            folder / "out"
        )  # RESULTS.md alone in its folder (a test checks that nothing half-written is left)
        out.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                "benchmarks/run_all.py",
                "--quick",
                "--skip-reproduce",
                "--out",
                str(out / "RESULTS.md"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        (folder / "stdout.txt").write_text(done.stdout)
        (folder / "stderr.txt").write_text(done.stderr)
        (folder / "returncode.txt").write_text(str(done.returncode))

    folder = built_once("bench_quick", run_all)
    done = subprocess.CompletedProcess(
        args=["benchmarks/run_all.py", "--quick"],
        returncode=int((folder / "returncode.txt").read_text()),
        stdout=(folder / "stdout.txt").read_text(),
        stderr=(folder / "stderr.txt").read_text(),
    )
    return done, folder / "out" / "RESULTS.md"


@pytest.mark.slow
def test_quick_run_writes_every_section(quick_run) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    positions = [text.find(heading) for heading in SECTIONS]
    assert -1 not in positions, [h for h, p in zip(SECTIONS, positions, strict=True) if p == -1]
    assert positions == sorted(positions), "sections out of order"
    assert "Quick mode" in text
    # nothing half-written next to the results (the file is written to a temporary name, then renamed)
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.slow
def test_results_describe_the_machine_but_not_the_host(quick_run) -> None:
    _, out = quick_run
    text = out.read_text()
    for field in (
        "| CPU |",
        "| cores |",
        "| Python |",
        "| numpy |",
        "| torch |",
        "| date (UTC) |",
        "load average",
    ):
        assert field in text, field
    host = socket.gethostname()
    if len(host) >= 4:  # a very short name could match unrelated text
        assert host not in text


@pytest.mark.slow
def test_every_section_has_a_filled_table_and_targets_say_met_or_not(quick_run) -> None:
    done, out = quick_run
    text = out.read_text()
    for number in range(1, 7):
        body = text.split(f"## {number}. ", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("|---")]
        assert len(rows) >= 2, f"section {number} has no table rows"
    summary = text.split("## Summary of targets", 1)[1].split("\n## ", 1)[0]
    target_rows = [
        line for line in summary.splitlines() if line.startswith("| ") and "| target |" not in line
    ]
    assert len(target_rows) >= 8
    for row in target_rows:
        assert re.search(r"\| (met|\*\*not met\*\*) \|", row), row
    assert "skipped (--skip-reproduce)" in text
    # the same tables are printed
    assert "## Summary of targets" in done.stdout and "## 3. Decision latency per agent" in done.stdout


def test_bad_option_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--no-such-option"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--no-such-option" in done.stderr


#: the commit issue 22's ratios are measured against.
BASELINE = "597b4cd"


@pytest.mark.slow
def test_side_by_side_runs_the_baseline_and_head(tmp_path: Path) -> None:
    """Section 7 checks out the baseline and HEAD and measures the first env and an env step on both."""
    known = subprocess.run(["git", "cat-file", "-e", f"{BASELINE}^{{commit}}"], cwd=ROOT, check=False)
    if known.returncode != 0:
        pytest.skip(f"commit {BASELINE} is not in this clone's history (shallow clone)")
    done = subprocess.run(
        [
            sys.executable,
            "bench_vs_baseline.py",
            "--baseline",
            BASELINE,
            "--quick",
            "--skip-reproduce",
        ],
        cwd=ROOT / "benchmarks",
        # numba's kernels interpreted: the fresh worktree of HEAD would compile them afresh (about 3 of this
        # suite's minutes) for a quick run whose numbers mean nothing; the harness is what this test checks
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| env step with oracle info"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].endswith("steps/s") and cells[2].endswith("steps/s"), row
    assert float(cells[3].rstrip("x").replace(",", "")) > 0, row
    row = next(line for line in done.stdout.splitlines() if line.startswith("| first env: peak RSS"))
    assert row.count(" MB") == 2, row


@pytest.mark.slow
def test_the_q_rules_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_q_rules.py", "--quick", "--replicates", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "measurement" not in line]
    assert len(rows) == 8 and all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows)


def test_side_by_side_refuses_an_unknown_measure_group() -> None:
    done = subprocess.run(
        [sys.executable, "bench_vs_baseline.py", "--baseline", "HEAD", "--measures", "first-env,cold"],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--measures" in done.stderr and "make-test" in done.stderr and "'first-env,cold'" in done.stderr


def test_the_same_tests_plugin_keeps_only_the_baselines_tests() -> None:
    """benchmarks/same_tests.py (the same-work make test of RESULTS.md section 7) reads the baseline's test names."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from same_tests import baseline_tests
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    here = baseline_tests("HEAD", str(ROOT))
    assert "test_benchmarks.py::test_side_by_side_refuses_an_unknown_measure_group" in here
    assert "test_cli.py::test_the_command_line_starts_without_torch" in here
    known = subprocess.run(["git", "cat-file", "-e", f"{BASELINE}^{{commit}}"], cwd=ROOT, check=False)
    if known.returncode == 0:  # a shallow clone lacks it
        old = baseline_tests(BASELINE, str(ROOT))
        assert "test_cli.py::test_the_command_line_starts_without_torch" not in old  # added since
        assert "test_cli.py::test_bad_arguments_name_the_argument" in old and len(old) < len(here)
