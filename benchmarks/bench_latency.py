"""Item 3: decision latency per agent, in microseconds (every agent of the catalogue, `ideal` scenario).

Each agent first plays a warm-up run of the Gymnasium loop (so that its tables or networks are in a realistic,
partly trained state), then a recorded run. Timed, over the recorded requests: ``act`` alone (the decision),
and ``act`` + ``learn`` (the whole per-request cost of the agent, update included). Privileged agents get the
full ``info``; the others its public part, as orchlib's runner gives them.
"""

from __future__ import annotations

import time

from harness import Config, Section, Stats, Target, fmt, measure

from orchlib.agents.catalogue import AGENT_NAMES, make_agent, observation_for
from orchlib.envs.orchestration import OrchestrationEnv, public_info
from orchlib.system.scenario import ideal

#: the issue's target for tabular agents, microseconds per decision.
TARGET_US = 10.0

#: the kind of each catalogue agent; the target applies to "tabular" (a table of values or arm statistics).
KIND = {
    "q_learning": "tabular",
    "dyna_q": "tabular",
    "sota_location_only": "tabular",
    "epsilon_greedy": "tabular",
    "ucb1": "tabular",
    "per_state_ucb1": "tabular",
    "per_user_ucb1": "tabular",
    "sw_ucb": "tabular",
    "thompson": "tabular",
    "per_state_thompson": "tabular",
    "exp3": "tabular",
    "linucb": "linear",
    "dqn": "neural network",
    "oracle": "clairvoyant (simulator what-if)",
}


def _record(env: OrchestrationEnv, agent, n_warmup: int, n_record: int) -> list[tuple]:
    agent.reset(0)
    obs, info = env.reset(seed=0)
    view = (lambda i: i) if agent.privileged else public_info
    recorded = []
    for t in range(n_warmup + n_record):
        mask = info["action_mask"]
        action = agent.act(obs, mask, view(info))
        next_obs, reward, _, _, next_info = env.step(action)
        agent.learn(obs, action, reward, next_obs, next_info["action_mask"], view(next_info))
        if t >= n_warmup:
            recorded.append(
                (obs, mask, view(info), reward, next_obs, next_info["action_mask"], view(next_info))
            )
        obs, info = next_obs, next_info
    return recorded


def _live_act_seconds(env: OrchestrationEnv, agent, n_steps: int, seed: int) -> float:
    """Total seconds spent in ``act`` over a live run of ``n_steps`` requests (the agent learns nothing)."""
    agent.reset(seed)
    obs, info = env.reset(seed=seed)
    spent = 0.0
    for _ in range(n_steps):
        start = time.perf_counter()
        action = agent.act(obs, info["action_mask"], info)
        spent += time.perf_counter() - start
        obs, _, _, _, info = env.step(action)
    return spent


def run(config: Config) -> Section:
    scenario = ideal()
    n_warmup = config.size(2_000, 50)
    n_record = config.size(2_000, 50)
    repeats = config.size(5, 2)
    envs = {mode: OrchestrationEnv(scenario, observation=mode, oracle=False) for mode in ("discrete", "box")}
    section = Section(
        "3. Decision latency per agent",
        intro=(
            f"`ideal` scenario; each agent (catalogue defaults) plays {n_warmup:,} warm-up requests, then "
            f"{n_record:,} recorded ones; timed over the recorded requests, {repeats} repeats after one warm-up "
            "pass; median (min–max) µs per request. *decision* = `act`; *decision + update* = `act` + `learn`. The "
            "oracle reads the env's current request, so its `act` is timed call by call inside live runs."
        ),
    )
    rows, slow_tabular, tabular_worst = [], [], (0.0, "")
    for name in AGENT_NAMES:
        env = envs[observation_for(name)]
        agent = make_agent(name, env)
        recorded = _record(env, agent, n_warmup, n_record)

        def decide(agent=agent, recorded=recorded) -> None:
            for obs, mask, info, *_ in recorded:
                agent.act(obs, mask, info)

        def decide_and_learn(agent=agent, recorded=recorded) -> None:
            for obs, mask, info, reward, next_obs, next_mask, next_info in recorded:
                action = agent.act(obs, mask, info)
                agent.learn(obs, action, reward, next_obs, next_mask, next_info)

        per_request = lambda s: s / n_record * 1e6  # noqa: E731 - seconds per pass -> µs per request
        if agent.privileged:
            # A privileged agent reads the env's current request, which a replay does not advance (and the env
            # caches its evaluation per request): time its calls inside live runs instead.
            decision = Stats(tuple(_live_act_seconds(env, agent, n_record, seed) for seed in range(repeats)))
            decision = decision.map(per_request)
            full = decision
        else:
            decision = measure(decide, repeats=repeats).map(per_request).wall
            full = measure(decide_and_learn, repeats=repeats).map(per_request).wall
        kind = KIND.get(name, "rule-based baseline")
        verdict = "—"
        if kind == "tabular":
            verdict = "met" if decision.median <= TARGET_US else "**not met**"
            if decision.median > TARGET_US:
                slow_tabular.append(f"{name} {fmt(decision.median)} µs")
            tabular_worst = max(tabular_worst, (decision.median, name))
        rows.append((name, kind, decision.fmt(3), full.fmt(3), verdict))
    section.table(
        ("agent", "kind", "decision µs", "decision + update µs", f"tabular target ≤ {TARGET_US:g} µs"),
        rows,
    )
    met = not slow_tabular
    section.targets.append(
        Target(
            "tabular agents: decision latency",
            f"≤ {TARGET_US:g} µs per request",
            f"slowest: {tabular_worst[1]} {fmt(tabular_worst[0])} µs",
            met,
            ""
            if met
            else "over the target: "
            + ", ".join(slow_tabular)
            + " (agent modules not this benchmark's to change)",
        )
    )
    section.notes.append(
        "The target is read as the decision (`act`); the update (`learn`) happens after the response has "
        "come back, off the request's critical path. Dyna-Q's update includes its planning updates."
    )
    return section
