"""Item 7: this checkout side by side with an earlier commit, on the same machine in one run, as ratios.

Machines of this kind differ by 2x or more in speed, so a speed-up is only meaningful against a baseline
measured in the same run. Each measure runs the baseline and the current code alternately (baseline first in
odd repeats, current first in even ones), so a slow patch of the machine falls on both:

- ``make reproduce`` on an empty results folder and ``reproduce --quick``: the command each commit's Makefile
  target runs (``python -m orchlib reproduce [--quick] --out DIR``), one run each (too long to repeat);
- an environment step with the oracle's info (``OrchestrationEnv(oracle=True)``, the first valid action),
  steps per second over ``n_steps`` steps, median of ``repeats`` alternating runs: on ``paper`` (the issue's
  measure; a baseline before issue 12 runs its ``paper``, the world now called ``ideal``, while the current
  ``paper`` is the grounded world) and on the same world on both sides (``ideal``);
- cold ``make test``: a fresh ``git clone`` of each commit, then ``make test`` (it creates its virtual
  environment, as CI does), one run each.

Both commits are checked out with ``git worktree add --detach`` into a temporary folder; the in-process
measures run with the worktree first on ``PYTHONPATH`` and this interpreter (same packages for both). The
current side is ``HEAD`` (committed work only). Skipped unless ``run_all.py --baseline COMMIT`` is given.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import ROOT, Config, Section, Target, fmt

#: the issue's targets: measure -> (minimum speed-up factor, baseline time / current time; or "no slower").
TARGETS = {
    "make reproduce (empty results/)": 2.5,
    "reproduce --quick": 2.5,
    "env step with oracle info, paper": 4.0,
    "env step with oracle info, same world (ideal)": None,
    "cold make test": 1.0,
}

#: steps per second of one environment with the oracle's info; works on old (flat) and new (layered) layouts.
#: ``ideal`` runs ``paper`` on commits before issue 12, whose ``paper`` is the world now called ``ideal``.
_ENV_STEP = """
import os, sys, time
import numpy as np
# Only the checkout on PYTHONPATH: an editable install's finder would otherwise serve the submodules a checkout
# lacks (orchlib.envs for the flat layout of 71433da) from the installed tree, and time that code instead.
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
try:
    from orchlib.envs.orchestration import OrchestrationEnv
except ImportError:
    from orchlib.env import OrchestrationEnv
source = os.path.realpath(sys.modules[OrchestrationEnv.__module__].__file__)
if not source.startswith(os.path.realpath(os.environ["PYTHONPATH"]) + os.sep):
    raise SystemExit(f"the env came from {source}, not from the checkout on PYTHONPATH")
world = sys.argv[1]
if world == "ideal":
    try:
        from orchlib.system.scenario import ideal
    except ImportError:  # before issue 12 there is no ideal preset: its paper is the world now called ideal
        world = "paper"
env = OrchestrationEnv(world, oracle=True)
n = int(sys.argv[2])
obs, info = env.reset(seed=0)
for _ in range(200):  # warm-up
    obs, r, term, trunc, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
start = time.perf_counter()
for _ in range(n):
    obs, r, term, trunc, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
print(n / (time.perf_counter() - start))
"""


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _seconds(command: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return float("nan"), f"stopped after {fmt(timeout_s)} s"
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        # the whole output kept for the diagnosis; the status names the failures (pytest's summary lines, on
        # stdout: stderr holds only the build's warnings and make's last word)
        log = Path(tempfile.mkdtemp(prefix="orchlib-vs-failed-")) / "output.txt"
        log.write_text(
            f"$ {' '.join(command)}\n{done.stdout}\n--- stderr ---\n{done.stderr}", encoding="utf-8"
        )
        lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))] or lines[-2:]
        return float("nan"), f"failed (exit {done.returncode}; output in {log}): {' '.join(failed)[:400]}"
    return elapsed, "ok"


def _alternate(measure: Callable[[str], float], repeats: int) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {"baseline": [], "current": []}
    for i in range(repeats):
        for side in ("baseline", "current") if i % 2 == 0 else ("current", "baseline"):
            values[side].append(measure(side))
    return values


def run(config: Config) -> Section:
    section = Section(
        "7. Side by side with a baseline commit",
        intro="Ratios measured in one run on this machine; > 1 means the current code is faster.",
    )
    baseline = getattr(config, "baseline", None)
    if not baseline:
        section.notes.append("skipped (pass `--baseline COMMIT` to run_all.py)")
        return section
    baseline_sha, current_sha = _git("rev-parse", baseline), _git("rev-parse", "HEAD")
    with tempfile.TemporaryDirectory(prefix="orchlib-vs-") as tmp_name:
        tmp = Path(tmp_name)
        trees = {"baseline": tmp / "baseline", "current": tmp / "current"}
        for side, sha in (("baseline", baseline_sha), ("current", current_sha)):
            _git("worktree", "add", "--detach", "--quiet", str(trees[side]), sha)
        try:
            rows, targets = _measure_all(
                config, tmp, trees, {"baseline": baseline_sha, "current": current_sha}
            )
        finally:
            for tree in trees.values():
                _git("worktree", "remove", "--force", str(tree))
    section.table(
        (
            "measure",
            f"baseline {baseline_sha[:7]}",
            f"current {current_sha[:7]}",
            "speed-up (baseline / current)",
            "status",
        ),
        rows,
    )
    section.targets.extend(targets)
    return section


def _measure_all(
    config: Config, tmp: Path, trees: dict[str, Path], shas: dict[str, str]
) -> tuple[list[tuple], list[Target]]:
    def env_for(side: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(trees[side]), "MPLBACKEND": "Agg"}

    results: dict[str, tuple[float, float, str]] = {}  # measure -> (baseline s, current s, status)

    n_steps, repeats = config.size(5000, 300), config.size(5, 2)
    # `paper` on both sides (the measure: before issue 12 it was the world now called `ideal`; since
    # then it is the grounded world, with more to compute per step), and the same world on both sides (`ideal`
    # here; the baseline runs its `paper` when it has no `ideal` preset, see _ENV_STEP)
    for world, label in (
        ("paper", "env step with oracle info, paper"),
        ("ideal", "env step with oracle info, same world (ideal)"),
    ):
        rates = _alternate(
            lambda side, world=world: float(
                subprocess.run(
                    [config.python, "-c", _ENV_STEP, world, str(n_steps)],
                    cwd=tmp,
                    env=env_for(side),
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()[-1]
            ),
            repeats,
        )
        # seconds per step, so that every measure is "time": the speed-up is always baseline / current.
        results[label] = (
            1 / statistics.median(rates["baseline"]),
            1 / statistics.median(rates["current"]),
            f"median of {repeats} alternating runs of {n_steps} steps each",
        )

    for label, extra in (("reproduce --quick", ["--quick"]), ("make reproduce (empty results/)", [])):
        if config.skip_reproduce:
            continue
        times, status = {}, []
        for side in ("baseline", "current"):
            seconds, state = _seconds(
                [
                    config.python,
                    "-m",
                    "orchlib",
                    "reproduce",
                    *extra,
                    "--out",
                    str(tmp / f"out-{side}{extra}"),
                ],
                cwd=trees[side],
                env=env_for(side),
                timeout_s=config.reproduce_timeout_s,
            )
            times[side] = seconds
            status.append(f"{side}: {state}")
        results[label] = (times["baseline"], times["current"], "; ".join(status))

    if not config.quick:
        times, status = {}, []
        for side in ("baseline", "current"):
            clone = tmp / f"clone-{side}"
            _git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone))
            _git("checkout", "--quiet", shas[side], cwd=clone)
            clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
            seconds, state = _seconds(["make", "test"], cwd=clone, env=clean, timeout_s=5400)
            times[side] = seconds
            status.append(f"{side}: {state}")
        results["cold make test"] = (times["baseline"], times["current"], "; ".join(status))

    rows, targets = [], []
    for label, (base_s, current_s, status) in results.items():
        speedup = base_s / current_s if base_s == base_s and current_s == current_s else float("nan")
        unit = (
            (lambda s: f"{fmt(1 / s)} steps/s") if label.startswith("env step") else (lambda s: f"{fmt(s)} s")
        )
        rows.append((label, unit(base_s), unit(current_s), f"{fmt(speedup)}x", status))
        factor = TARGETS[label]
        if factor is None:  # reported beside a target, not one itself
            continue
        asked = "no slower (≥ 1x, within noise)" if factor == 1.0 else f"≥ {factor}x faster"
        met = speedup >= (0.95 if factor == 1.0 else factor)
        targets.append(Target(label, asked, f"{fmt(speedup)}x", bool(met), "" if met else "see section 7"))
    return rows, targets


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", required=True, help="commit to compare with, e.g. 71433da")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test; numbers mean nothing)"
    )
    parser.add_argument("--skip-reproduce", action="store_true")
    args = parser.parse_args()
    cfg = Config(
        quick=args.quick, skip_reproduce=args.skip_reproduce, reproduce_timeout_s=3600, baseline=args.baseline
    )
    print(run(cfg).markdown())
    sys.exit(0)
