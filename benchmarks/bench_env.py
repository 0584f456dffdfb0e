"""Item 1: environment + agent steps per second through the Gymnasium API (ideal scenario, the pre-issue-12 `paper`).

The loop is the plain Gymnasium one a user writes (``oracle=False``: no per-request clairvoyant evaluation)::

    a = agent.act(obs, info["action_mask"], info)
    next_obs, reward, terminated, truncated, info = env.step(a)
    agent.learn(obs, a, reward, next_obs, info["action_mask"], info)

One timed call = ``env.reset`` + agent reset + one episode of the scenario's ``n_requests`` requests. To
explain the total, the environment alone (a fixed valid action per requirement class) and the agent alone
(``act`` + ``learn`` replayed on recorded transitions) are timed the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import Config, Section, Target, fmt, load_note, measure

from orchlib.agents.catalogue import make_agent
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system.scenario import ideal

#: the issue's target, environment + agent steps per second on this machine.
TARGET_STEPS_PER_S = 50_000
AGENTS = (("Q-learning", "q_learning"), ("UCB1", "ucb1"))


def _episode(env: OrchestrationEnv, agent, n_steps: int, seed: list[int]) -> Callable[[], None]:
    def run() -> None:
        seed[0] += 1
        agent.reset(seed[0])
        obs, info = env.reset(seed=seed[0])
        for _ in range(n_steps):
            action = agent.act(obs, info["action_mask"], info)
            next_obs, reward, _, _, info = env.step(action)
            agent.learn(obs, action, reward, next_obs, info["action_mask"], info)
            obs = next_obs

    return run


def _env_only(env: OrchestrationEnv, n_steps: int) -> Callable[[], None]:
    first_valid = env.system.masks.argmax(axis=1).tolist()  # a fixed valid action per requirement class

    def run() -> None:
        _, info = env.reset(seed=0)
        for _ in range(n_steps):
            _, _, _, _, info = env.step(first_valid[info["requirement_class"]])

    return run


def _agent_only(env: OrchestrationEnv, agent, n_steps: int) -> Callable[[], None]:
    """act + learn replayed on transitions recorded from the environment (so no env cost is included)."""
    agent.reset(0)
    obs, info = env.reset(seed=0)
    transitions = []
    for _ in range(n_steps):
        action = agent.act(obs, info["action_mask"], info)
        next_obs, reward, _, _, next_info = env.step(action)
        transitions.append(
            (obs, info["action_mask"], info, reward, next_obs, next_info["action_mask"], next_info)
        )
        agent.learn(obs, action, reward, next_obs, next_info["action_mask"], next_info)
        obs, info = next_obs, next_info

    def run() -> None:
        agent.reset(1)
        for obs, mask, info, reward, next_obs, next_mask, next_info in transitions:
            action = agent.act(obs, mask, info)
            agent.learn(obs, action, reward, next_obs, next_mask, next_info)

    return run


def run(config: Config) -> Section:
    scenario = ideal()
    n_steps = config.size(scenario.n_requests, 500)
    repeats = config.size(5, 2)
    env = OrchestrationEnv(scenario, oracle=False)
    section = Section(
        "1. Environment + agent throughput (Gymnasium API)",
        intro=(
            f"`ideal` scenario ({scenario.n_users} users, {env.system.n_actions} actions, {env.n_states} discrete "
            f"states), `OrchestrationEnv(oracle=False)`, catalogue agents (`orchlib.agents.catalogue.make_agent`). One timed "
            f"call = reset + {n_steps:,} steps; {repeats} repeats after one warm-up call; median (min–max). Targets are "
            "judged on wall-clock time; the CPU-time column (this process's CPU seconds) shows how much of a "
            "shortfall is other processes' load."
        ),
    )
    per_step = lambda s: n_steps / s  # noqa: E731 - seconds per call -> steps per second
    env_alone = measure(_env_only(env, n_steps), repeats=repeats).map(per_step)
    loops, alones = [], []
    for label, name in AGENTS:
        agent = make_agent(name, env)
        loop = measure(_episode(env, agent, n_steps, [0]), repeats=repeats).map(per_step)
        alone = measure(_agent_only(env, agent, n_steps), repeats=repeats).map(per_step)
        loops.append((f"{label} + env (Gymnasium loop)", loop))
        alones.append((f"{label} act+learn alone (replayed)", alone))
        met = loop.wall.median >= TARGET_STEPS_PER_S
        env_us, agent_us = 1e6 / env_alone.wall.median, 1e6 / alone.wall.median
        loop_us = 1e6 / loop.wall.median
        if met:
            cause = ""
        else:
            cause = (
                f"one step costs {fmt(loop_us)} µs: env.step alone {fmt(env_us)} µs (simulator serve, next "
                f"request, observation, info dict), {label} act+learn alone {fmt(agent_us)} µs; "
                f"{TARGET_STEPS_PER_S:,} steps/s needs ≤ {fmt(1e6 / TARGET_STEPS_PER_S)} µs"
            )
            cause += load_note(loop.cpu.median, TARGET_STEPS_PER_S, "steps/s")
        section.targets.append(
            Target(
                f"{label} + env, steps/s", f"≥ {TARGET_STEPS_PER_S:,}", fmt(loop.wall.median, 4), met, cause
            )
        )
    section.table(
        (
            "what is timed",
            "steps/s, wall clock: median (min–max)",
            "µs per step",
            "spread",
            "steps/s, CPU time: median",
        ),
        [
            (
                what,
                timing.wall.fmt(4),
                fmt(1e6 / timing.wall.median),
                f"{timing.wall.spread_pct:.0f}%",
                fmt(timing.cpu.median, 4),
            )
            for what, timing in [*loops, ("env.step alone (fixed valid action)", env_alone), *alones]
        ],
    )
    return section
