"""Baselines and the agent catalogue: masks and private information over long runs, the profile-based latency
estimate by hand, the fixed placements' rules, and the catalogue's names, defaults and errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from orchlib.agents.base import Agent
from orchlib.agents.baselines import (
    CloudFastest,
    CloudMostAccurate,
    EdgeFastest,
    EdgeMostAccurate,
    GreedyProfiles,
    LocalFastest,
    LocalMostAccurate,
    LocationOnlyQLearning,
    RandomValid,
    profile_latency_ms,
)
from orchlib.agents.catalogue import (
    AGENT_NAMES,
    AGENTS,
    PAPER_DEFAULTS,
    make_agent,
    observation_for,
    reward_scales,
)
from orchlib.envs.orchestration import PRIVATE_INFO_KEYS, OrchestrationEnv
from orchlib.study.runner import RunSpec, run_one
from orchlib.system.scenario import tiny
from orchlib.system.simulator import CLOUD, EDGE, END, Simulator, build_system

#: ``tiny`` with more users, so that queues build up and the discrete state moves around.
BUSY_TINY = tiny().replace(name="tiny_busy", n_users=6, n_requests=1500)

#: small budgets for the slow learner, so the long-run test stays fast.
SMALL_BUDGET: dict[str, dict[str, Any]] = {"dqn": {"hidden_sizes": (16,), "train_every": 4}}


def guarded(agent: Agent, checks: dict[str, int]) -> Agent:
    """Wrap the agent's act and learn to assert, on every call, that the action respects the mask and that a
    non-privileged agent never receives a private info key (and a privileged one does)."""
    act, learn = agent.act, agent.learn

    def check_info(info: Mapping[str, Any], after_step: bool) -> None:
        private = PRIVATE_INFO_KEYS.intersection(info)
        if agent.privileged:
            assert private == PRIVATE_INFO_KEYS or not after_step
        else:
            assert not private, f"{agent.name} received private keys {sorted(private)}"

    def checked_act(obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        check_info(info, after_step=checks["act"] > 0)
        a = act(obs, mask, info)
        assert mask[a], f"{agent.name} took masked action {a}"
        checks["act"] += 1
        return a

    def checked_learn(
        obs: Any, action: int, reward: float, next_obs: Any, next_mask: np.ndarray, info: Any
    ) -> None:
        check_info(info, after_step=True)
        checks["learn"] += 1
        learn(obs, action, reward, next_obs, next_mask, info)

    agent.act = checked_act  # type: ignore[method-assign]
    agent.learn = checked_learn  # type: ignore[method-assign]
    return agent


# ---------------------------------------------------------------- every catalogue agent over a long run


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_agent_respects_masks_and_sees_only_public_info_over_a_long_run(name: str) -> None:
    """1500 requests of a busy ``tiny`` through the runner (which decides what each agent may see), with act
    and learn wrapped to check every call."""
    checks = {"act": 0, "learn": 0}

    def factory(env: OrchestrationEnv) -> Agent:
        return guarded(make_agent(name, env, **SMALL_BUDGET.get(name, {})), checks)

    spec = RunSpec(
        scenario=BUSY_TINY, agent=name, env_kwargs={"observation": observation_for(name)}, seed=0, replicate=0
    )
    requests, _ = run_one(spec, factory=factory)
    assert checks == {"act": 1500, "learn": 1500}
    assert requests["met_requirement"].all()


def test_only_the_oracle_is_privileged() -> None:
    env = OrchestrationEnv("tiny")
    privileged = {
        name for name in AGENT_NAMES if AGENTS[name].observation != "box" and make_agent(name, env).privileged
    }
    assert privileged == {"oracle"}
    box = OrchestrationEnv("tiny", observation="box")
    assert not any(
        make_agent(name, box).privileged for name in AGENT_NAMES if AGENTS[name].observation == "box"
    )


# ---------------------------------------------------------------- the profile-based estimate, by hand


def test_profile_latency_on_an_idle_system_is_the_simulators_exact_answer(toy_scenario) -> None:
    """Toy system (conftest): on an idle system with steady links and no compute noise, the estimate has nothing
    to guess, so it must equal the simulator's what-if evaluation; the numbers are also checked by hand.
    big: end 50; edge 8 up + 5 + 20 + 0.8 down + 5 = 38.8; cloud 8 + 5 + 1 WAN up + 10 + 2 + 0.1 + 10 + 0.8 + 5
    = 41.9. small: end 10; edge 4 + 5 + 4 + 0.8 + 5 = 18.8; cloud 4 + 5 + 0.5 + 10 + 1 + 0.1 + 10 + 0.8 + 5 = 36.4."""
    system = build_system(toy_scenario)
    estimate = profile_latency_ms(system, access_mbps=1.0, wan_mbps=8.0)
    np.testing.assert_allclose(estimate, [50.0, 10.0, 38.8, 18.8, 41.9, 36.4])
    sim = Simulator(system, rng=0)
    np.testing.assert_allclose(estimate, sim.evaluate(sim.make_request(0.0, user=0)))


def test_profile_latency_with_backlogs_and_queues_by_hand(toy_scenario) -> None:
    """Device backlog 7 ms, uplink backlog 3 ms, 2 requests at the 1-worker edge, 3 at the 2-worker cloud.
    big at the edge: arrives after 3 + 8 + 5 = 16 ms; 2 requests ahead x 20 ms = 40 ms of work, 24 left:
    16 + 24 + 20 + 0.8 + 5 = 65.8. big in the cloud: arrives after 16 + 1 + 10 = 27 ms; (3 - 2 + 1) ahead x 2 ms
    / 2 workers = 2 ms of work, drained already: 27 + 2 + 0.1 + 10 + 0.8 + 5 = 44.9."""
    system = build_system(toy_scenario)
    estimate = profile_latency_ms(system, 1.0, 8.0, 3.0, 7.0, edge_in_system=2, cloud_in_system=3)
    big = [system.encode_action(tier, 0) for tier in (END, EDGE, CLOUD)]
    np.testing.assert_allclose(estimate[big], [57.0, 65.8, 44.9])
    with pytest.raises(ValueError, match="access_mbps"):
        profile_latency_ms(system, 0.0, 8.0)
    with pytest.raises(ValueError, match="edge_in_system"):
        profile_latency_ms(system, 1.0, 8.0, edge_in_system=-1)


def test_greedy_profiles_beats_random_on_tiny() -> None:
    """Same requests (common random numbers): the greedy rule is at least twice as fast as random valid choices,
    and within 10% of the clairvoyant optimum on this simple scenario."""
    results = {}
    for name in ("greedy_profiles", "random"):
        spec = RunSpec(scenario=BUSY_TINY, agent=name, seed=1, replicate=0)
        results[name] = run_one(spec)[1]
    assert results["greedy_profiles"]["mean_latency_ms"] < 0.5 * results["random"]["mean_latency_ms"]
    assert results["greedy_profiles"]["latency_ratio_to_oracle"] < 1.1


def test_greedy_profiles_names_a_missing_measurement() -> None:
    env = OrchestrationEnv("tiny")
    agent = make_agent("greedy_profiles", env)
    agent.reset(0)
    _, info = env.reset(seed=0)
    del info["access_backlog_ms"]
    with pytest.raises(KeyError, match="access_backlog_ms"):
        agent.act(0, info["action_mask"], info)


# ---------------------------------------------------------------- fixed placements


@pytest.mark.parametrize(
    ("cls", "tier", "rule"),
    [
        (LocalMostAccurate, END, "accurate"),
        (EdgeMostAccurate, EDGE, "accurate"),
        (CloudMostAccurate, CLOUD, "accurate"),
        (LocalFastest, END, "fastest"),
        (EdgeFastest, EDGE, "fastest"),
        (CloudFastest, CLOUD, "fastest"),
    ],
)
def test_fixed_baseline_always_picks_its_tier_and_variant_rule(
    cls: type[Agent], tier: int, rule: str
) -> None:
    env = OrchestrationEnv("tiny")
    system = env.system
    agent = cls(env.observation_space, env.action_space, system)
    agent.reset(0)
    assert not agent.privileged
    obs, info = env.reset(seed=2)
    classes = set()
    for _ in range(300):
        mask = info["action_mask"]
        a = agent.act(obs, mask, info)
        obs, _, _, _, info = env.step(a)
        assert info["tier"] == tier
        valid_variants = mask[tier * system.n_variants : (tier + 1) * system.n_variants]
        if rule == "accurate":
            assert info["variant"] == int(np.argmax(system.top1_pct))
        else:
            fastest = np.flatnonzero(valid_variants)[np.argmin(system.median_ms[tier][valid_variants])]
            assert info["variant"] == fastest
        classes.add(info["served_requirement_class"])
    assert classes == {0, 1}


def test_fastest_baselines_change_variant_with_the_requirement() -> None:
    """On ``tiny`` the fastest device variant misses the 65% class, so LocalFastest must switch variants."""
    env = OrchestrationEnv("tiny")
    agent = LocalFastest(env.observation_space, env.action_space, env.system)
    agent.reset(0)
    chosen = {k: agent.act(0, env.system.masks[k], {}) for k in range(2)}
    assert chosen[0] != chosen[1]
    assert all(env.system.masks[k][a] for k, a in chosen.items())


# ---------------------------------------------------------------- the state-of-the-art stand-in


def test_location_only_qlearning_uses_three_actions_and_learns_the_best_location() -> None:
    """It only ever serves the most accurate variant, at one of three locations; on ``tiny`` the device is the
    fastest place for that variant (24 ms vs > 100 ms of upload), which its greedy policy must find."""
    env = OrchestrationEnv("tiny", max_steps=10**9)
    agent = make_agent("sota_location_only", env)
    assert isinstance(agent, LocationOnlyQLearning)
    agent.reset(0)
    best = int(np.argmax(env.system.top1_pct))
    allowed = {env.system.encode_action(tier, best) for tier in (END, EDGE, CLOUD)}
    obs, info = env.reset(seed=0)
    visits = np.zeros(env.n_states)
    for _ in range(4000):
        a = agent.act(obs, info["action_mask"], info)
        assert a in allowed
        next_obs, reward, _, _, info = env.step(a)
        agent.learn(obs, a, reward, next_obs, info["action_mask"], info)
        visits[obs] += 1
        obs = next_obs
    frequent = visits >= 0.05 * visits.sum()
    assert np.all(agent.q_learning_.greedy_policy()[frequent] == END)
    with pytest.raises(ValueError, match="only takes actions"):
        agent.learn(
            obs,
            env.system.encode_action(END, (best + 1) % env.system.n_variants),
            -1.0,
            obs,
            info["action_mask"],
            info,
        )


# ---------------------------------------------------------------- the catalogue


def test_catalogue_names_and_errors() -> None:
    env = OrchestrationEnv("tiny")
    assert tuple(AGENTS) == AGENT_NAMES and len(set(AGENT_NAMES)) == len(AGENT_NAMES)
    with pytest.raises(ValueError, match="unknown agent 'nope'; valid names: q_learning"):
        make_agent("nope", env)
    with pytest.raises(ValueError, match="observation='box'"):
        make_agent("dqn", env)
    with pytest.raises(ValueError, match="observation='discrete'"):
        make_agent("q_learning", OrchestrationEnv("tiny", observation="box"))
    with pytest.raises(TypeError, match="OrchestrationEnv"):
        make_agent("random", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        make_agent("ucb1", env, no_such_parameter=1)
    with pytest.raises(ValueError, match="alpha"):
        make_agent("sota_location_only", env, alpha=2.0)


def test_catalogue_defaults_and_overrides() -> None:
    env = OrchestrationEnv("tiny")
    q = make_agent("q_learning", env)
    sota = make_agent("sota_location_only", env)
    for key, value in PAPER_DEFAULTS.items():
        assert getattr(q, key) == value
        assert sota.q_learning_kwargs[key] == value  # type: ignore[attr-defined]
    assert make_agent("q_learning", env, gamma=0.5).gamma == 0.5  # type: ignore[attr-defined]
    spread, high = reward_scales(env)
    assert 0 < spread <= high
    assert make_agent("ucb1", env).c == spread  # type: ignore[attr-defined]
    assert make_agent("exp3", env).reward_range[0] < -high  # type: ignore[attr-defined]
    assert isinstance(make_agent("random", env), RandomValid)
    assert isinstance(make_agent("greedy_profiles", env), GreedyProfiles)


def test_baselines_refuse_a_system_of_another_size(toy_scenario) -> None:
    env = OrchestrationEnv("tiny")
    other = build_system(toy_scenario)
    for cls in (LocalFastest, RandomValid, GreedyProfiles, LocationOnlyQLearning):
        with pytest.raises(ValueError, match="action_space has 12 actions"):
            cls(env.observation_space, env.action_space, other)
    with pytest.raises(TypeError, match="system must be"):
        RandomValid(env.observation_space, env.action_space, "tiny")  # type: ignore[arg-type]
