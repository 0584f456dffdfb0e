"""Item 7: this checkout side by side with an earlier commit, on the same machine in one run, as ratios.

Machines of this kind differ by 2x or more in speed, so a speed-up is only meaningful against a baseline
measured in the same run. Each repeated measure runs the baseline and the current code alternately (baseline
first in odd repeats, current first in even ones), so a slow patch of the machine falls on both. The measures
are issue 22's (first contact), each against the commit given with ``--baseline`` (the issue's: 597b4cd):

- the first env on ``paper`` + 200 steps with an empty compiled cache (a fresh ``NUMBA_CACHE_DIR``: what a new
  install, an upgrade or an edit of a kernel costs): wall seconds, CPU seconds and the process's peak RSS;
- cold ``make test``: a fresh ``git clone`` of each commit, then ``make test`` (it creates its virtual
  environment, as CI does; the clone has no compiled cache), one run each; then ``make test`` again in the same
  clone (warm: environment and compiled cache in place), in the opposite order. Cold minus warm is what the first
  contact costs on top of the tests' own work, the fair measure when the two commits' suites differ in size;
- ``reproduce --quick`` and ``make reproduce`` (``python -m orchlib reproduce [--quick] --out DIR``, an empty
  results folder) with a warm compiled cache (each side runs ``reproduce --quick`` once first), one run each;
- an environment step with the oracle's info (``OrchestrationEnv(oracle=True)``, the first valid action),
  steps per second, on ``paper`` and on ``ideal``, median of alternating runs;
- the batched fast path: Q-learning at B = 2,000 replicates of ``ideal`` (``run_batch``, no recording),
  aggregate agent-steps per second, median of alternating runs.

Both commits are checked out with ``git worktree add --detach`` into a temporary folder; the in-process
measures run with the worktree first on ``PYTHONPATH`` and this interpreter (same packages for both). The
current side is ``HEAD`` (committed work only) unless ``--current COMMIT`` names another; ``--measures`` runs
some of the groups (:data:`GROUPS`). Skipped unless ``run_all.py --baseline COMMIT`` is given.

Usage: ``python benchmarks/bench_vs_baseline.py --baseline 597b4cd [--current COMMIT] [--measures first-env,...]
[--skip-reproduce] [--quick]``.
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

#: the issue's targets: measure -> minimum speed-up factor (baseline time / current time; 1.0: "no slower"),
#: or None for a measure reported beside them.
TARGETS = {
    "first env on paper + 200 steps, no compiled cache (wall)": 10.0,
    "first env on paper + 200 steps, no compiled cache (CPU)": None,
    "cold make test": 2.0,
    "warm make test (same clone, second run)": None,
    "cold make test minus warm: the first contact's own cost": None,
    "reproduce --quick (warm compiled cache)": 1.0,
    "make reproduce (warm compiled cache, empty results/)": 1.0,
    "env step with oracle info, paper": 1.0,
    "env step with oracle info, same world (ideal)": None,
    "batched Q-learning, B = 2,000 (ideal)": 1.0,
}
#: section 7's measure groups, in the order they run (``--measures`` picks some).
GROUPS = ("first-env", "env-step", "batch-q", "reproduce-quick", "reproduce", "make-test")

#: the issue's limit on the first env's peak resident memory (current side), MB.
FIRST_ENV_RSS_LIMIT_MB = 1536
#: a speed-up within this much of 1 counts as "no slower" (the machine's run-to-run noise).
NO_SLOWER = 0.95

#: the first env on ``paper`` and 200 valid steps in a fresh process; prints wall s, CPU s, peak RSS MB.
_FIRST_ENV = """
import resource, sys, time
start, cpu = time.perf_counter(), time.process_time()
import numpy as np
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
from orchlib.envs.orchestration import OrchestrationEnv
env = OrchestrationEnv("paper")
obs, info = env.reset(seed=0)
rng = np.random.default_rng(0)
for _ in range(200):
    obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
    if term or trunc:
        obs, info = env.reset()
print(time.perf_counter() - start, time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

#: aggregate agent-steps per second of batched Q-learning (B replicates of ``ideal``, no recording).
_BATCH_Q = """
import sys, time
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
from orchlib.agents.catalogue import PAPER_DEFAULTS
from orchlib.study.batch import run_batch
try:  # its home since issue 23c (before, orchlib.study.batch)
    from orchlib.envs.batch import discrete_state_masks
except ImportError:
    from orchlib.study.batch import discrete_state_masks
try:  # its home since issue 23 (before, orchlib.study.batch)
    from orchlib.agents.qlearning import BatchQLearning
except ImportError:
    from orchlib.study.batch import BatchQLearning
from orchlib.system.scenario import ideal
from orchlib.system.simulator import build_system
system = build_system(ideal())
n, b = int(sys.argv[1]), int(sys.argv[2])
masks = discrete_state_masks(system)
run_batch(system, BatchQLearning(masks, **PAPER_DEFAULTS), 20, b, rng=1, record=False)  # warm-up
start = time.perf_counter()
run_batch(system, BatchQLearning(masks, **PAPER_DEFAULTS), n, b, rng=0, record=False)
print(n * b / (time.perf_counter() - start))
"""

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
    baseline_sha, current_sha = _git("rev-parse", baseline), _git("rev-parse", config.current)
    unknown = set(config.measures) - set(GROUPS)
    if unknown:
        raise ValueError(f"measures {sorted(unknown)} are not section 7's groups; valid: {', '.join(GROUPS)}")
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


class _Progress(dict):
    """The results, each also printed to standard error as it is measured (a long run that is stopped keeps
    what it finished)."""

    def __setitem__(self, label: str, value: tuple[float, float, str]) -> None:
        super().__setitem__(label, value)
        print(
            f"[bench_vs_baseline] {label}: baseline {value[0]:.6g}, current {value[1]:.6g} ({value[2]})",
            file=sys.stderr,
            flush=True,
        )


def _measure_all(
    config: Config, tmp: Path, trees: dict[str, Path], shas: dict[str, str]
) -> tuple[list[tuple], list[Target]]:
    def wants(group: str) -> bool:
        return not config.measures or group in config.measures

    def env_for(side: str, **extra: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(trees[side]), "MPLBACKEND": "Agg", **extra}

    def python(side: str, script: str, *args: str, **extra: str) -> list[float]:
        done = subprocess.run(
            [config.python, "-c", script, *args],
            cwd=tmp,
            env=env_for(side, **extra),
            check=True,
            capture_output=True,
            text=True,
        )
        return [float(x) for x in done.stdout.split()[-3:]]

    # measure -> (baseline, current, status); "time" measures in s, rates converted to s per unit
    results: dict[str, tuple[float, float, str]] = _Progress()

    # the first contact: an empty compiled cache on both sides, every repeat
    repeats = config.size(2, 1)
    first: dict[str, list[list[float]]] = {"baseline": [], "current": []}

    def first_env(side: str) -> float:
        with tempfile.TemporaryDirectory(prefix="orchlib-numba-cache-") as cache:
            first[side].append(python(side, _FIRST_ENV, NUMBA_CACHE_DIR=cache))
        return first[side][-1][0]

    if wants("first-env"):
        _alternate(first_env, repeats)
        for k, label in ((0, "wall"), (1, "CPU")):
            results[f"first env on paper + 200 steps, no compiled cache ({label})"] = (
                statistics.median(x[k] for x in first["baseline"]),
                statistics.median(x[k] for x in first["current"]),
                f"median of {repeats} alternating runs, a fresh NUMBA_CACHE_DIR each",
            )

    # warm: each side's own compiled cache (its worktree's __pycache__), filled by reproduce --quick first
    warm_groups = ("env-step", "batch-q", "reproduce-quick", "reproduce")
    warm_up = not config.skip_reproduce and any(wants(group) for group in warm_groups)
    for side in ("baseline", "current") if warm_up else ():
        _seconds(
            [config.python, "-m", "orchlib", "reproduce", "--quick", "--out", str(tmp / f"warm-{side}")],
            cwd=trees[side],
            env=env_for(side),
            timeout_s=config.reproduce_timeout_s,
        )
    n_steps, repeats = config.size(5000, 300), config.size(5, 2)
    # `paper` on both sides (the measure) and the same world on both sides (`ideal`; a baseline before
    # issue 12 runs its `paper`, see _ENV_STEP)
    for world, label in (
        ("paper", "env step with oracle info, paper"),
        ("ideal", "env step with oracle info, same world (ideal)"),
    ):
        if not wants("env-step"):
            break
        rates = _alternate(
            lambda side, world=world: python(side, _ENV_STEP, world, str(n_steps))[-1], repeats
        )
        results[label] = (
            1 / statistics.median(rates["baseline"]),
            1 / statistics.median(rates["current"]),
            f"median of {repeats} alternating runs of {n_steps} steps each",
        )
    if wants("batch-q"):
        n_batch, b = config.size(200, 20), config.size(2000, 50)
        rates = _alternate(lambda side: python(side, _BATCH_Q, str(n_batch), str(b))[-1], repeats)
        results["batched Q-learning, B = 2,000 (ideal)"] = (
            1 / statistics.median(rates["baseline"]),
            1 / statistics.median(rates["current"]),
            f"median of {repeats} alternating runs of {n_batch} lockstep steps of B = {b}",
        )

    for group, label, extra in (
        ("reproduce-quick", "reproduce --quick (warm compiled cache)", ["--quick"]),
        ("reproduce", "make reproduce (warm compiled cache, empty results/)", []),
    ):
        if config.skip_reproduce or not wants(group):
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

    if not config.quick and wants("make-test"):
        clean = {
            k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR"}
        }
        times: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
        status: dict[str, list[str]] = {"cold": [], "warm": []}
        clones = {side: tmp / f"clone-{side}" for side in ("baseline", "current")}
        # cold: baseline first; warm (the same clones, second run): current first
        for kind, order in (("cold", ("baseline", "current")), ("warm", ("current", "baseline"))):
            for side in order:
                if kind == "cold":
                    _git("clone", "--quiet", "--no-checkout", str(ROOT), str(clones[side]))
                    _git("checkout", "--quiet", shas[side], cwd=clones[side])
                seconds, state = _seconds(["make", "test"], cwd=clones[side], env=clean, timeout_s=5400)
                times[kind][side] = seconds
                status[kind].append(f"{side}: {state}")
        results["cold make test"] = (
            times["cold"]["baseline"],
            times["cold"]["current"],
            "; ".join(status["cold"]) + "; each suite as committed (their sizes may differ)",
        )
        results["warm make test (same clone, second run)"] = (
            times["warm"]["baseline"],
            times["warm"]["current"],
            "; ".join(status["warm"]),
        )
        results["cold make test minus warm: the first contact's own cost"] = (
            times["cold"]["baseline"] - times["warm"]["baseline"],
            times["cold"]["current"] - times["warm"]["current"],
            "environment creation and compilation on top of the same suite's warm run",
        )

    rows, targets = [], []
    for label, (base_s, current_s, status) in results.items():
        speedup = base_s / current_s if base_s == base_s and current_s == current_s else float("nan")
        if label.startswith("env step"):
            unit = lambda s: f"{fmt(1 / s)} steps/s"  # noqa: E731
        elif label.startswith("batched"):
            unit = lambda s: f"{fmt(1 / s)} agent-steps/s"  # noqa: E731
        else:
            unit = lambda s: f"{fmt(s)} s"  # noqa: E731
        rows.append((label, unit(base_s), unit(current_s), f"{fmt(speedup)}x", status))
        factor = TARGETS[label]
        if factor is None:  # reported beside a target, not one itself
            continue
        asked = "no slower (≥ 1x, within noise)" if factor == 1.0 else f"≥ {factor}x faster"
        met = speedup >= (NO_SLOWER if factor == 1.0 else factor)
        targets.append(Target(label, asked, f"{fmt(speedup)}x", bool(met), "" if met else "see section 7"))
    if first["current"]:
        peak_mb = {side: max(x[2] for x in runs) for side, runs in first.items()}
        rows.append(
            (
                "first env: peak RSS",
                f"{fmt(peak_mb['baseline'])} MB",
                f"{fmt(peak_mb['current'])} MB",
                f"{fmt(peak_mb['baseline'] / peak_mb['current'])}x less",
                "largest of the runs above",
            )
        )
        met = peak_mb["current"] <= FIRST_ENV_RSS_LIMIT_MB
        targets.append(
            Target(
                "first env on paper + 200 steps, no compiled cache: peak RSS",
                f"≤ {FIRST_ENV_RSS_LIMIT_MB} MB",
                f"{fmt(peak_mb['current'])} MB",
                met,
                "" if met else "see section 7",
            )
        )
    return rows, targets


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", required=True, help="commit to compare with, e.g. 71433da")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test; numbers mean nothing)"
    )
    parser.add_argument(
        "--current", default="HEAD", help="commit measured against the baseline (default HEAD)"
    )
    parser.add_argument(
        "--measures",
        default="",
        help=f"comma-separated groups to run, of: {', '.join(GROUPS)} (default: all)",
    )
    parser.add_argument("--skip-reproduce", action="store_true")
    args = parser.parse_args()
    measures = tuple(m for m in args.measures.split(",") if m)
    if set(measures) - set(GROUPS):
        parser.error(f"--measures must name groups of: {', '.join(GROUPS)}; got {args.measures!r}")
    cfg = Config(
        quick=args.quick,
        skip_reproduce=args.skip_reproduce,
        reproduce_timeout_s=3600,
        baseline=args.baseline,
        current=args.current,
        measures=measures,
    )
    print(run(cfg).markdown())
    sys.exit(0)
