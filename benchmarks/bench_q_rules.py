"""Q-learning's rules, written once (issue 23): how fast the batched form runs against a plain NumPy loop, side by side
in one run, and how fast the per-request form runs in the Gymnasium loop.

Part ``agent`` (the rules alone, the same recorded stream of states and rewards for both):

* **batched**: ``BatchQLearning`` with the catalogue's paper defaults over ``B`` replicates in lockstep, one
  ``act`` + one ``learn`` per step (the compiled kernels over the replicate axis);
* **plain NumPy**: the textbook loop a user writes, one replicate, one request per iteration: explore with
  probability epsilon (``rng.random()``), else ``argmax`` of ``Q[s]`` over the valid actions with random ties
  (``np.flatnonzero``), then ``Q[s, a] += alpha_n * (r + gamma * max Q[s'] over valid - Q[s, a])``.

Both count agent-steps per second (one decision and one update of one replicate). Part ``world``: the batched
loop with the engine (``run_batch``, B replicates of ``ideal``) against the Gymnasium loop with the per-request
``QLearning`` (``env.step`` + ``act`` + ``learn``, ``oracle=False``) on ``ideal`` and ``paper``. Part ``env``: only the
Gymnasium loop's steps per second, in a form that runs on older checkouts too (to compare with a baseline commit
side by side: run it alternately with ``PYTHONPATH=<other checkout>``).

Usage: ``python benchmarks/bench_q_rules.py [--quick] [--part agent|world|env|all] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from bench_env import _episode

from orchlib.agents.catalogue import PAPER_DEFAULTS, make_agent
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system.scenario import ideal, paper


def _median_rate(run, n_items: int, repeats: int) -> float:
    """Items per second: ``n_items`` over the median wall time of ``repeats`` calls of ``run`` (after one warm-up)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n_items / statistics.median(times)


def plain_numpy_q_learning(
    masks: np.ndarray, states: np.ndarray, rewards: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The textbook loop, one replicate: ``states`` (T + 1,), ``rewards`` (T,); returns Q. Paper defaults."""
    p = PAPER_DEFAULTS
    n_states, n_actions = masks.shape
    q = np.zeros((n_states, n_actions))
    visits = np.zeros((n_states, n_actions))
    decisions = np.zeros(n_states)
    penalty = np.where(masks, 0.0, -np.inf)
    valid = [np.flatnonzero(m) for m in masks]
    for t in range(rewards.size):
        s, s_next = states[t], states[t + 1]
        decisions[s] += 1
        epsilon = max(
            p["epsilon_min"], min(p["epsilon"], p["explore_per_action"] * valid[s].size / decisions[s])
        )
        if rng.random() < epsilon:
            a = valid[s][int(rng.random() * valid[s].size)]
        else:
            values = q[s] + penalty[s]
            best = np.flatnonzero(values == values.max())
            a = best[int(rng.random() * best.size)]
        visits[s, a] += 1
        target = rewards[t] + p["gamma"] * (q[s_next] + penalty[s_next]).max()
        q[s, a] += p["alpha"] * visits[s, a] ** -p["alpha_exponent"] * (target - q[s, a])
    return q


def agent_part(quick: bool, repeats: int, n_replicates: int) -> list[tuple[str, float]]:
    from orchlib.agents.qlearning import BatchQLearning

    env = OrchestrationEnv(ideal(), oracle=False)
    masks = env.state.masks(env.system)
    rng = np.random.default_rng(0)
    n_plain, n_steps = (2_000, 20) if quick else (50_000, 200)
    states = rng.integers(masks.shape[0], size=(n_steps + 1, n_replicates))
    rewards = -rng.exponential(0.05, size=(n_steps, n_replicates))
    batch = BatchQLearning(masks, **PAPER_DEFAULTS)

    batch.reset(n_replicates, 1)  # (setup, not timed: the tables of B replicates; each run learns on)

    def batched() -> None:
        for t in range(n_steps):
            actions = batch.act(states[t])
            batch.learn(states[t], actions, rewards[t], states[t + 1])

    plain_states = rng.integers(masks.shape[0], size=n_plain + 1)
    plain_rewards = -rng.exponential(0.05, size=n_plain)
    batched_rate = _median_rate(batched, n_steps * n_replicates, repeats)
    plain_rate = _median_rate(
        lambda: plain_numpy_q_learning(masks, plain_states, plain_rewards, np.random.default_rng(2)),
        n_plain,
        repeats,
    )
    return [
        (f"batched Q-learning, B = {n_replicates} (agent-steps/s)", batched_rate),
        ("plain NumPy Q-learning loop (agent-steps/s)", plain_rate),
        ("ratio batched / plain", batched_rate / plain_rate),
    ]


def gym_loop_rate(scenario, n_steps: int, repeats: int) -> float:
    """Steps per second of ``env.step`` + the catalogue's per-request Q-learning ``act`` + ``learn``."""
    env = OrchestrationEnv(scenario, oracle=False, max_steps=10**9)
    run = _episode(env, make_agent("q_learning", env), n_steps, [0])
    return _median_rate(run, n_steps, repeats)


def world_part(quick: bool, repeats: int, n_replicates: int) -> list[tuple[str, float]]:
    from orchlib.agents.qlearning import BatchQLearning
    from orchlib.envs.batch import discrete_state_masks
    from orchlib.study.batch import run_batch
    from orchlib.system.simulator import build_system

    system = build_system(ideal())
    n_requests = 20 if quick else 500
    agent = BatchQLearning(discrete_state_masks(system), **PAPER_DEFAULTS)
    batched = _median_rate(
        lambda: run_batch(system, agent, n_requests, n_replicates, rng=0, record=False),
        n_requests * n_replicates,
        repeats,
    )
    gym_ideal = gym_loop_rate(ideal(), 500 if quick else 20_000, repeats)
    return [
        (f"run_batch ideal, B = {n_replicates} (agent-steps/s)", batched),
        ("env + per-request Q-learning, ideal (steps/s)", gym_ideal),
        ("ratio", batched / gym_ideal),
    ]


def env_part(quick: bool, repeats: int) -> list[tuple[str, float]]:
    n = 500 if quick else 20_000
    return [
        ("env + Q-learning, ideal (steps/s)", gym_loop_rate(ideal(), n, repeats)),
        ("env + Q-learning, paper (steps/s)", gym_loop_rate(paper(), n, repeats)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke test: numbers mean nothing)"
    )
    parser.add_argument("--part", choices=("agent", "world", "env", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--replicates", type=int, default=2_000)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    rows: list[tuple[str, float]] = []
    if args.part in ("agent", "all"):
        rows += agent_part(args.quick, repeats, args.replicates)
    if args.part in ("world", "all"):
        rows += world_part(args.quick, repeats, args.replicates)
    if args.part in ("env", "all"):
        rows += env_part(args.quick, repeats)
    print("| measurement | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:,.1f} |")


if __name__ == "__main__":
    main()
