"""Item 5: how cost grows with the number of users and the horizon (time and peak memory).

Workload: the Gymnasium loop with catalogue Q-learning on the ``ideal`` scenario (``oracle=False``), with
``n_users`` and the horizon varied one at a time. Each configuration runs in its own Python process (this file
with ``--worker``), so that its peak memory is its own: after a warm-up run the process resets its resident-set
high-water mark (``/proc/self/clear_refs``), runs the timed repeats, and reports the growth of the high-water mark
over the resident set it had before (``VmHWM - VmRSS`` from ``/proc/self/status``).

Run one worker by hand: ``python benchmarks/bench_scaling.py --worker --users 8 --horizon 10000 --repeats 3``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import ROOT, Config, Section, Stats, Target, fmt

#: "linear or better": the fitted exponent of time against size may exceed 1 by at most this (timing noise).
SLOPE_TOLERANCE = 0.1
#: "memory bounded": the peak grows by less than this from the shortest to the longest horizon, i.e. by less than
#: 4 bytes per request over 10^6 requests, so nothing is kept per request.
MEMORY_BOUND_MB = 4.0


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def worker(n_users: int, horizon: int, repeats: int) -> dict:
    """Time ``repeats`` runs of ``horizon`` requests with ``n_users`` users; measure the peak memory growth."""
    from orchlib.agents.catalogue import make_agent
    from orchlib.envs.orchestration import OrchestrationEnv
    from orchlib.system.scenario import ideal

    env = OrchestrationEnv(ideal().replace(n_users=n_users, n_requests=horizon), oracle=False)
    agent = make_agent("q_learning", env)

    def episode(n_steps: int, seed: int) -> float:
        agent.reset(seed)
        obs, info = env.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(n_steps):
            action = agent.act(obs, info["action_mask"], info)
            next_obs, reward, _, _, info = env.step(action)
            agent.learn(obs, action, reward, next_obs, info["action_mask"], info)
            obs = next_obs
        return time.perf_counter() - start

    episode(min(horizon, 1_000), seed=10**6)  # warm-up
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    rss_before = _status_kib("VmRSS")
    times = [episode(horizon, seed) for seed in range(repeats)]
    peak = _status_kib("VmHWM")
    growth_mb = (peak - rss_before) / 1024 if reset and peak is not None and rss_before is not None else None
    return {"times_s": times, "rss_before_mb": (rss_before or 0) / 1024, "peak_growth_mb": growth_mb}


def _spawn(config: Config, n_users: int, horizon: int, repeats: int) -> dict:
    command = [config.python, str(Path(__file__).resolve()), "--worker"]
    command += ["--users", str(n_users), "--horizon", str(horizon), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scaling worker {command} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _slope(sizes: list[int], seconds: list[float]) -> float:
    """Exponent k of time ~ size^k, least squares on log-log."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def run(config: Config) -> Section:
    users = [1, 10, 100, 1_000] if not config.quick else [1, 4]
    horizons = [10**3, 10**4, 10**5, 10**6] if not config.quick else [300, 1_000]
    fixed_horizon = 10**4 if not config.quick else 300
    fixed_users = 8
    repeats = config.size(3, 1)
    section = Section(
        "5. How cost grows: users and horizon",
        intro=(
            "Gymnasium loop with catalogue Q-learning on the `ideal` scenario, one process per configuration; "
            f"{repeats} timed runs after a warm-up run; median (min–max). Peak memory = growth of the resident-set "
            "high-water mark during the timed runs over the resident set before them."
        ),
    )

    def measure_all(configs: list[tuple[int, int]]) -> list[tuple[int, int, Stats, dict]]:
        out = []
        for n_users, horizon in configs:
            report = _spawn(config, n_users, horizon, repeats)
            out.append((n_users, horizon, Stats(tuple(report["times_s"])), report))
        return out

    def memory(report: dict) -> str:
        growth = report["peak_growth_mb"]
        return "n/a" if growth is None else f"{growth:.1f}"

    by_users = measure_all([(u, fixed_horizon) for u in users])
    by_horizon = measure_all([(fixed_users, h) for h in horizons])
    section.table(
        ("users", "run time, s", "µs per request", "peak memory growth, MB", "resident before, MB"),
        [
            (f"{u:,}", s.fmt(3), fmt(s.median / h * 1e6), memory(r), f"{r['rss_before_mb']:.0f}")
            for u, h, s, r in by_users
        ],
        caption=f"versus users, horizon {fixed_horizon:,} requests",
    )
    section.table(
        ("requests", "run time, s", "µs per request", "peak memory growth, MB", "resident before, MB"),
        [
            (f"{h:,}", s.fmt(3), fmt(s.median / h * 1e6), memory(r), f"{r['rss_before_mb']:.0f}")
            for u, h, s, r in by_horizon
        ],
        caption=f"versus horizon, {fixed_users} users",
    )
    users_slope = _slope(users, [s.median for _, _, s, _ in by_users])
    horizon_slope = _slope(horizons, [s.median for _, _, s, _ in by_horizon])
    for what, slope in (("time vs users", users_slope), ("time vs horizon", horizon_slope)):
        met = slope <= 1 + SLOPE_TOLERANCE
        section.targets.append(
            Target(
                f"{what}: linear or better",
                f"exponent ≤ 1 (+{SLOPE_TOLERANCE:g} noise)",
                f"time ∝ size^{slope:.2f}",
                met,
                "" if met else "see the table",
            )
        )
    growths = [r["peak_growth_mb"] for _, _, _, r in by_horizon]
    if all(g is not None for g in growths):
        increase = growths[-1] - growths[0]
        met = increase < MEMORY_BOUND_MB
        measured = f"peak growth {growths[0]:.1f} MB at {horizons[0]:,} → {growths[-1]:.1f} MB at {horizons[-1]:,} requests"
        cause = "" if met else "memory grows with the horizon: something is kept per request"
    else:
        met, measured, cause = False, "not measurable", "/proc/self/clear_refs not writable on this system"
    section.targets.append(
        Target("memory bounded on long runs", f"increase < {MEMORY_BOUND_MB:g} MB", measured, met, cause)
    )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", required=True, help="run one configuration")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(worker(args.users, args.horizon, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
