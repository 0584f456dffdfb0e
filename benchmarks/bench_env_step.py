"""Issue 14: an environment step with the oracle's info, side by side with baseline commits, on ``paper`` and ``ideal``.

For each world and each baseline commit, the loop of ``bench_vs_baseline._ENV_STEP``
(``OrchestrationEnv(world, oracle=True)``, the first valid action, ``n_steps`` steps after 200 of warm-up, a
fresh interpreter each time) runs alternately on the baseline and on ``HEAD`` (baseline first in odd repeats,
current first in even ones), ``repeats`` times. The table gives each side's median steps per second, the ratio
of the medians, the range of the pairwise ratios (run ``i`` of the baseline against run ``i`` of the current
code), and the 1-minute load average before and after: on a shared machine the ratio moves with the load, so
read it beside the load. Commits before issue 12 (such as 71433da) have no ``ideal`` preset; their ``paper``
is the world now called ``ideal``, and the loop runs it (the table says which preset ran).

Both commits are checked out with ``git worktree add --detach`` into a temporary folder and run with this
interpreter (same packages); numba compiles each checkout's cache once, in a run before the timed ones.
Usage: ``python benchmarks/bench_env_step.py --baselines 71433da ce27391 [--steps 5000] [--repeats 5]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_vs_baseline import _ENV_STEP, _alternate, _git
from harness import Section, fmt, machine_description

WORLDS = ("paper", "ideal")


def _steps_per_s(python: str, tree: Path, world: str, n_steps: int) -> float:
    done = subprocess.run(
        [python, "-c", _ENV_STEP, world, str(n_steps)],
        cwd=tree.parent,
        env={**os.environ, "PYTHONPATH": str(tree), "MPLBACKEND": "Agg"},
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.split()[-1])


def _preset_run(tree: Path, world: str) -> str:
    """The preset the loop runs for ``world`` in ``tree`` (``paper`` for ``ideal`` before issue 12)."""
    layered = tree / "orchlib" / "system" / "scenario.py"  # the flat layout (71433da) predates ideal
    has_ideal = layered.exists() and "def ideal(" in layered.read_text()
    return "paper" if world == "ideal" and not has_ideal else world


def run(baselines: list[str], n_steps: int, repeats: int, python: str = sys.executable) -> Section:
    """Measure every (world, baseline) pair against HEAD; returns the table as a :class:`Section`."""
    section = Section(
        "Env step with the oracle's info, side by side",
        intro=(
            f"{repeats} alternating runs of {n_steps} steps per side; > 1 means HEAD is faster. "
            "Load average: 1-minute, before -> after the pair of series."
        ),
    )
    current_sha = _git("rev-parse", "HEAD")
    rows = []
    with tempfile.TemporaryDirectory(prefix="orchlib-envstep-") as tmp_name:
        tmp = Path(tmp_name)
        trees = {"current": tmp / "current"}
        _git("worktree", "add", "--detach", "--quiet", str(trees["current"]), current_sha)
        for sha in baselines:
            trees[sha] = tmp / f"baseline-{sha}"
            _git("worktree", "add", "--detach", "--quiet", str(trees[sha]), _git("rev-parse", sha))
        try:
            for tree in trees.values():  # numba's cache is compiled here, not in a timed run
                for world in WORLDS:
                    _steps_per_s(python, tree, world, 10)
            for world in WORLDS:
                for sha in baselines:
                    sides = {"baseline": trees[sha], "current": trees["current"]}
                    load_before = os.getloadavg()[0]
                    rates = _alternate(
                        lambda side, sides=sides, world=world: _steps_per_s(
                            python, sides[side], world, n_steps
                        ),
                        repeats,
                    )
                    load_after = os.getloadavg()[0]
                    base, current = statistics.median(rates["baseline"]), statistics.median(rates["current"])
                    pairwise = [c / b for b, c in zip(rates["baseline"], rates["current"], strict=True)]
                    rows.append(
                        (
                            world,
                            f"{sha} ({_preset_run(trees[sha], world)})",
                            fmt(base),
                            fmt(current),
                            f"{fmt(current / base)}x",
                            f"{fmt(min(pairwise))}-{fmt(max(pairwise))}x",
                            f"{load_before:.1f} -> {load_after:.1f}",
                        )
                    )
        finally:
            for tree in trees.values():
                _git("worktree", "remove", "--force", str(tree))
    section.table(
        (
            "world",
            "baseline (preset run)",
            "baseline steps/s",
            f"HEAD {current_sha[:7]} steps/s",
            "speed-up (median)",
            "pairwise",
            "load average",
        ),
        rows,
    )
    section.notes.append(f"{len(os.sched_getaffinity(0))} CPUs available to this process")
    return section


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baselines", nargs="+", default=["71433da"], help="commits to compare with")
    parser.add_argument("--steps", type=int, default=5000, help="timed steps per run (> 0)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per side (> 0)")
    args = parser.parse_args()
    for name in ("steps", "repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    print("\n".join(f"- {k}: {v}" for k, v in machine_description()))
    print(run(args.baselines, args.steps, args.repeats).markdown())
