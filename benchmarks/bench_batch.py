"""Item 2: the fast path for sweeps (``orchlib.study.batch``): aggregate agent-steps per second, and evidence that it
gives the reference path's results in distribution.

Throughput: ``run_batch(system, agent, n_requests, B, record=False)`` on the ``ideal`` scenario with the
catalogue's hyperparameters (Q-learning: ``PAPER_DEFAULTS``; UCB1: ``c`` from ``reward_scales``). One agent-step
is one request decided, served and learnt from in one replicate, so aggregate agent-steps/s = B x n / time.
A fixed policy (a table lookup, no learning) through the same loop measures what the rest costs (the engine's
compiled step and the state encoding), so a shortfall is split into the simulator's and the learner's share.

Run it alone: ``cd benchmarks && ../.venv/bin/python bench_batch.py [--quick]`` prints the section.

Equivalence: the same agent through the reference path (the Gymnasium loop, one run per seed) and through the
fast path (one run of B replicates); per run, the mean response time of the last requests; compared with a
two-sample Kolmogorov-Smirnov test (shapes) and Welch's t-test (means). The simulator is the same engine on both
paths (bit for bit equal per replicate, ``tests/test_engine.py``); the learners' exploration draws differ in order.
"""

from __future__ import annotations

import time

import numpy as np
from harness import Config, Section, Target, fmt, load_note, measure
from scipy.stats import ks_2samp, ttest_ind

from orchlib.agents.batched import BatchFixedPolicy, BatchQLearning, BatchUCB1
from orchlib.agents.catalogue import PAPER_DEFAULTS, make_agent, reward_scales
from orchlib.envs.batch import discrete_state_masks
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.study.batch import run_batch
from orchlib.system.scenario import ideal

#: the issue's target: aggregate agent-steps per second of the fast path for tabular agents.
TARGET_STEPS_PER_S = 1_000_000
#: "same distribution" if neither the KS test nor Welch's t-test rejects at this level. (Per-run means of the
#: ideal scenario are skewed and vary by ~10% between runs, so a fixed tolerance on the mean would test the
#: number of reference runs rather than the fast path.)
TEST_LEVEL = 0.01


def _reference(
    env: OrchestrationEnv, name: str, n_requests: int, seeds: range, last: int
) -> tuple[np.ndarray, float]:
    """Per-seed mean latency of the last ``last`` requests through the Gymnasium loop, and steps per second."""
    out = []
    start = time.perf_counter()
    for seed in seeds:
        agent = make_agent(name, env)
        agent.reset(seed)
        obs, info = env.reset(seed=seed)
        latencies = np.empty(n_requests)
        for t in range(n_requests):
            action = agent.act(obs, info["action_mask"], info)
            next_obs, reward, _, _, info = env.step(action)
            agent.learn(obs, action, reward, next_obs, info["action_mask"], info)
            latencies[t] = info["latency_ms"]
            obs = next_obs
        out.append(latencies[-last:].mean())
    return np.array(out), len(seeds) * n_requests / (time.perf_counter() - start)


def run(config: Config) -> Section:
    scenario = ideal()
    env = OrchestrationEnv(scenario, oracle=False)
    system = env.system
    masks = discrete_state_masks(system)
    c = reward_scales(env)[0]
    agents = {
        "Q-learning": ("q_learning", lambda: BatchQLearning(masks, **PAPER_DEFAULTS)),
        "UCB1": ("ucb1", lambda: BatchUCB1(masks, c=c)),
    }
    # a valid action per state that spreads the states over the tiers (the engine's cost barely depends on it)
    policy = np.array([np.flatnonzero(row)[s % np.count_nonzero(row)] for s, row in enumerate(masks)])
    floor = {"fixed policy (simulator and state only)": lambda: BatchFixedPolicy(policy, masks)}
    n_requests = config.size(2_000, 50)
    batch_sizes = (config.size(100, 10), config.size(2_000, 20))
    repeats = config.size(3, 2)
    section = Section(
        "2. Fast path for sweeps (`orchlib.study.batch`)",
        intro=(
            "B independent replicates (seeds) of the `ideal` scenario advanced in lockstep by the engine's "
            "compiled kernels (`orchlib.system.engine`; `run_batch(..., record=False)`), with batched tabular "
            "agents (compiled loops over replicates) acting on the env's discrete state; a fixed policy (a table "
            "lookup) measures the simulator's and the state encoding's share. "
            f"One timed call = {n_requests:,} requests in each of B replicates; {repeats} repeats after one "
            "warm-up call; aggregate agent-steps/s = B × requests / time. Randomness: one generator per replicate, "
            "so a replicate's requests and latencies equal the per-request path's bit for bit "
            "(`tests/test_engine.py`); the batched learners draw their exploration in another order, so their "
            "choices equal the per-request learners' *in distribution* (the equivalence table)."
        ),
    )
    rows = []
    timings = {}
    builders = {label: build for label, (_, build) in agents.items()} | floor
    for label, build in builders.items():
        for b in batch_sizes:
            timing = measure(
                lambda build=build, b=b: run_batch(system, build(), n_requests, b, rng=0, record=False),
                repeats=repeats,
            ).map(lambda s, b=b: b * n_requests / s)
            rows.append((label, b, timing))
            timings[label, b] = timing
    b = batch_sizes[-1]
    simulator_us = 1e6 * b / timings[next(iter(floor)), b].wall.median
    for label in agents:
        timing = timings[label, b]
        met = timing.wall.median >= TARGET_STEPS_PER_S
        cause = ""
        if not met:
            step_us = 1e6 * b / timing.wall.median
            cause = (
                f"{fmt(step_us)} µs per lockstep step of {b:,} replicates, of which {fmt(simulator_us)} µs "
                "are the simulator and the state encoding (the fixed policy's step: mostly the engine's "
                f"compiled calls) and {fmt(step_us - simulator_us)} µs the learner's act and learn (compiled "
                "loops that read each replicate's Q or index row in place); the simulator alone allows "
                f"{fmt(1e6 * b / simulator_us, 3)} agent-steps/s"
            )
            cause += load_note(timing.cpu.median, TARGET_STEPS_PER_S, "agent-steps/s")
        section.targets.append(
            Target(
                f"fast path, batched {label}, B={b:,}: agent-steps/s",
                f"≥ {TARGET_STEPS_PER_S:,}",
                fmt(timing.wall.median, 4),
                met,
                cause,
            )
        )
    section.table(
        (
            "agent",
            "B (replicates)",
            "agent-steps/s, wall clock: median (min–max)",
            "spread",
            "CPU time: median",
        ),
        [
            (label, f"{b:,}", t.wall.fmt(4), f"{t.wall.spread_pct:.0f}%", fmt(t.cpu.median, 4))
            for label, b, t in rows
        ],
        caption="throughput (targets judged on wall-clock time)",
    )

    # Equivalence in distribution, and the speed-up over the reference path for the same work.
    n_eq = config.size(5_000, 200)
    last = config.size(1_000, 50)
    seeds = range(config.size(40, 3))
    n_replicates = config.size(1_000, 20)
    eq_rows = []
    for label, (name, build) in agents.items():
        reference, reference_rate = _reference(env, name, n_eq, seeds, last)
        start = time.perf_counter()
        result = run_batch(system, build(), n_eq, n_replicates, rng=1)
        batch_rate = n_replicates * n_eq / (time.perf_counter() - start)
        batch = result.latency_ms[:, -last:].mean(axis=1)
        test = ks_2samp(reference, batch)
        welch = ttest_ind(reference, batch, equal_var=False).pvalue
        difference = batch.mean() / reference.mean() - 1
        # standard error of the relative difference (delta method; the reference's share dominates)
        error = (
            np.hypot(reference.std(ddof=1) / np.sqrt(reference.size), batch.std(ddof=1) / np.sqrt(batch.size))
            / reference.mean()
        )
        same = test.pvalue > TEST_LEVEL and welch > TEST_LEVEL
        eq_rows.append(
            (
                label,
                f"{len(seeds)} seeds: {reference.mean():.2f} ± {reference.std(ddof=1):.2f}",
                f"{n_replicates:,} replicates: {batch.mean():.2f} ± {batch.std(ddof=1):.2f}",
                f"{100 * difference:+.2f}% ± {100 * error:.2f}%",
                f"{test.statistic:.3f}",
                f"{test.pvalue:.3g}",
                f"{welch:.3g}",
                "same" if same else "**differs**",
                f"{fmt(batch_rate / reference_rate)}×",
            )
        )
        section.targets.append(
            Target(
                f"fast path = reference in distribution ({label})",
                f"KS and Welch p > {TEST_LEVEL}",
                f"KS p = {test.pvalue:.3g}, Welch p = {welch:.3g} (Δ mean {100 * difference:+.2f}%)",
                same,
                "" if same else "see the equivalence table",
            )
        )
    section.table(
        (
            "agent",
            "reference path, ms",
            "fast path, ms",
            "Δ mean ± s.e.",
            "KS statistic",
            "KS p-value",
            "Welch p-value",
            "verdict",
            "speed-up (agent-steps/s)",
        ),
        eq_rows,
        caption=(
            f"equivalence: mean response time of the last {last:,} of {n_eq:,} requests per run (mean ± sd over "
            "runs); the speed-up compares agent-steps/s of the two paths on this work (the reference keeping its "
            "per-request latencies too)"
        ),
    )
    return section


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test; numbers mean nothing)"
    )
    args = parser.parse_args()
    print(run(Config(quick=args.quick, skip_reproduce=True, reproduce_timeout_s=0.0)).markdown())
