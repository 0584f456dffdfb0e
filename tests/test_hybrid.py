"""The profile-based learners: the adaptive heuristic and the hybrid (model + learned residual), and the
measurement behind Q-learning's discount.

The exact-model case runs on ``tiny`` (steady link, no compute jitter: nothing hidden from the profiles); the
wrong-profile case hands the agents a model whose end device is 20 times faster than the real one, as a
throttled or mis-profiled device would be.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

from orchlib.agents.baselines import GREEDY_INFO_KEYS, profile_latency_ms
from orchlib.agents.catalogue import make_agent
from orchlib.agents.hybrid import AdaptiveGreedy, ProfileHybrid, drift_forgetting
from orchlib.envs.orchestration import OrchestrationEnv, public_info
from orchlib.study.influence import decision_influence, gamma_from_influence, influence_ratio
from orchlib.system.scenario import Arrivals, paper, tiny
from orchlib.system.simulator import END, build_system


def play(env: OrchestrationEnv, agent, n_requests: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Latencies and tiers of ``n_requests`` requests served by ``agent`` (public info only)."""
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    latencies, tiers = np.empty(n_requests), np.empty(n_requests, dtype=np.int64)
    for t in range(n_requests):
        a = agent.act(obs, info["action_mask"], public_info(info))
        next_obs, reward, _, _, info = env.step(a)
        agent.learn(obs, a, reward, next_obs, info["action_mask"], public_info(info))
        obs = next_obs
        latencies[t], tiers[t] = info["latency_ms"], info["tier"]
    return latencies, tiers


def test_catalogue_builds_the_new_agents() -> None:
    env = OrchestrationEnv("tiny")
    assert isinstance(make_agent("hybrid", env), ProfileHybrid)
    assert isinstance(make_agent("adaptive_greedy", env), AdaptiveGreedy)
    assert not make_agent("hybrid", env).privileged


#: the forgetting factor the grounded ``paper`` world gives the hybrid (tiny has no drift: 1, a running mean).
PAPER_FORGETTING = drift_forgetting(paper())


@pytest.mark.parametrize("forgetting", [None, PAPER_FORGETTING])
def test_hybrid_starts_at_the_greedy_level_with_an_exact_model(forgetting: float | None) -> None:
    env = OrchestrationEnv("tiny", oracle=False)
    greedy, _ = play(env, make_agent("greedy_profiles", env), 300, seed=3)
    hybrid, _ = play(env, make_agent("hybrid", env, forgetting=forgetting), 300, seed=3)
    adaptive, _ = play(env, make_agent("adaptive_greedy", env), 300, seed=3)
    # the first 100 requests already: no exploration phase far from the model's choice
    assert hybrid[:100].mean() <= 1.05 * greedy[:100].mean()
    assert hybrid.mean() <= 1.03 * greedy.mean()
    assert adaptive.mean() <= 1.03 * greedy.mean()


def wrong_end_profile_system():
    """(true system, model): tiny's end device really runs 20 times slower than its profile says (throttled)."""
    model = build_system(tiny())
    median, device = model.median_ms.copy(), model.device_median_ms.copy()
    median[END] *= 20.0
    device *= 20.0  # the per-device-class profile that serves the end tier (and that estimates read)
    return dataclasses.replace(model, median_ms=median, device_median_ms=device), model


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(ProfileHybrid, {}), (ProfileHybrid, {"forgetting": PAPER_FORGETTING}), (AdaptiveGreedy, {})],
)
def test_wrong_profile_converges_to_the_true_best(cls, kwargs: dict) -> None:
    true, wrong = wrong_end_profile_system()
    env = OrchestrationEnv(true, oracle=False)
    truth, _ = play(env, make_agent("greedy_profiles", env), 1500, seed=5)
    fooled, _ = play(env, cls(env.observation_space, env.action_space, wrong, **kwargs), 1500, seed=5)
    wrong_greedy, _ = play(env, make_agent("greedy_profiles", OrchestrationEnv(wrong, oracle=False)), 1500, 5)
    # The greedy rule on the wrong model stays far from the true best, so the test can tell learning from luck;
    # the learner's real response times bring it to the true best level.
    assert wrong_greedy[-500:].mean() > 1.3 * truth[-500:].mean()
    assert fooled[-500:].mean() <= 1.05 * truth[-500:].mean()


def end_device_slows_down(forgetting: float, n_before: int = 1000, n_after: int = 300) -> np.ndarray:
    """Tiers the hybrid chooses after tiny's end device turns slower than every other tier, mid-run.

    The world is scripted: fixed measurements, the model's estimates are the truth (5% log-normal noise)
    until request ``n_before``, after which every end-tier response time is 3x the best off-device estimate
    over the best on-device one times slower, so the best action moves off the device.
    """
    system = build_system(tiny())
    info = {key: 0.0 for key in GREEDY_INFO_KEYS} | {"access_mbps": 20.0, "wan_mbps": 100.0}
    estimates = profile_latency_ms(system, 20.0, 100.0)
    n_variants = system.n_variants
    slowdown = 3.0 * estimates[n_variants:].min() / estimates[:n_variants].min()
    mask = np.ones(system.n_actions, dtype=bool)
    agent = ProfileHybrid(
        gym.spaces.Discrete(1), gym.spaces.Discrete(system.n_actions), system, forgetting=forgetting
    )
    agent.reset(0)
    rng = np.random.default_rng(0)
    tiers = np.empty(n_before + n_after, dtype=np.int64)
    for t in range(tiers.size):
        a = agent.act(0, mask, info)
        tiers[t] = a // n_variants
        factor = slowdown if t >= n_before and tiers[t] == END else 1.0
        latency_ms = estimates[a] * factor * math.exp(0.05 * rng.standard_normal())
        agent.learn(0, a, -latency_ms / 1e3, 0, mask, {"latency_ms": latency_ms})
    assert (tiers[:n_before] == END).all()  # before the change the device was the best place
    return tiers[n_before:]


def test_forgetting_hybrid_follows_a_device_that_slows_down() -> None:
    after = end_device_slows_down(PAPER_FORGETTING)
    # it leaves the device within 200 requests, having tried each end variant a few times (4 variants),
    # and stays off it
    assert np.flatnonzero(after == END).max() < 200
    assert (after == END).sum() <= 60
    # a running mean (no forgetting) still serves every request on the slow device 300 requests later: the
    # 1,000 fast observations outweigh the new ones, so the test can tell forgetting from luck
    assert (end_device_slows_down(1.0) == END).all()


def test_drift_forgetting_from_the_scenario() -> None:
    # paper: 10 s background on-periods, 8 users x 2 req/s over 5 device classes -> memory 10 * 3.2 / 2 = 16
    assert pytest.approx(1 - 1 / 16) == PAPER_FORGETTING
    assert drift_forgetting(paper().without_grounding()) == 1.0  # nothing drifts: a running mean


def test_hybrid_is_reproducible() -> None:
    env = OrchestrationEnv("tiny", oracle=False)
    first = play(env, make_agent("hybrid", env), 200, seed=11)
    second = play(env, make_agent("hybrid", env), 200, seed=11)
    np.testing.assert_array_equal(first[0], second[0])


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("hybrid", {"sigma": 0.0}, "sigma"),
        ("hybrid", {"kappa": -1.0}, "kappa"),
        ("hybrid", {"forgetting": 1.5}, "forgetting"),
        ("adaptive_greedy", {"beta": 0.0}, "beta"),
    ],
)
def test_bad_hyperparameters_are_named(name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make_agent(name, OrchestrationEnv("tiny"), **kwargs)


def test_decision_influence_vanishes_when_requests_never_meet() -> None:
    # One request every 100 s: no queue survives until the next request, so no decision can reach it.
    sparse = tiny().replace(arrivals=Arrivals("poisson", rate_per_s=0.01))
    table = decision_influence(sparse, n_decisions=20, horizon=3, spacing=2, warmup=5, rng=1)
    assert set(table["lag"]) == {0, 1, 2, 3}
    assert influence_ratio(table) == 0.0
    assert gamma_from_influence(influence_ratio(table)) == 0.0


def test_decision_influence_is_positive_under_load_and_reproducible() -> None:
    busy = tiny().replace(n_users=8, arrivals=Arrivals("poisson", rate_per_s=8.0))
    table = decision_influence(busy, n_decisions=30, horizon=5, spacing=5, warmup=20, rng=2)
    again = decision_influence(busy, n_decisions=30, horizon=5, spacing=5, warmup=20, rng=2)
    pd_equal = table.equals(again)
    assert pd_equal
    assert influence_ratio(table) > 0.0
    assert table.loc[table["lag"] > 0, "state_changed"].any()


def test_gamma_from_influence_by_hand_and_bad_input() -> None:
    assert gamma_from_influence(1.0) == pytest.approx(0.5)  # equal weight on the future: 0.5 / (1 - 0.5) = 1
    assert gamma_from_influence(0.0) == 0.0
    with pytest.raises(ValueError, match="ratio"):
        gamma_from_influence(-0.1)
    with pytest.raises(ValueError, match="lacks columns"):
        influence_ratio(__import__("pandas").DataFrame({"lag": [0]}))


def test_hybrid_charges_an_action_for_the_spread_of_its_response_times() -> None:
    """The residual estimates the mean ratio observed / model, exp(mu + v / 2), not its median: an action whose
    ratio alternates between exp(-0.5) and exp(0.5) costs cosh(0.5) = 1.128 times its estimate on average."""
    system = build_system(tiny())
    info = {key: 0.0 for key in GREEDY_INFO_KEYS} | {"access_mbps": 20.0, "wan_mbps": 100.0}
    estimates = profile_latency_ms(system, 20.0, 100.0)
    spread, steady = system.n_variants, 2 * system.n_variants  # one edge action, one cloud action
    agent = ProfileHybrid(
        gym.spaces.Discrete(1), gym.spaces.Discrete(system.n_actions), system, forgetting=1.0
    )
    agent.reset(0)
    for i in range(400):
        for a, log_ratio in ((spread, 0.5 if i % 2 else -0.5), (steady, 0.0)):
            mask = np.zeros(system.n_actions, dtype=bool)
            mask[a] = True
            assert agent.act(0, mask, info) == a
            latency_ms = estimates[a] * math.exp(log_ratio)
            agent.learn(0, a, -latency_ms / 1e3, 0, mask, {"latency_ms": latency_ms})
    mu, v, _ = agent.residual(0)
    assert math.exp(mu[spread] + v[spread] / 2) == pytest.approx(math.cosh(0.5), rel=0.01)
    assert math.exp(mu[steady] + v[steady] / 2) == pytest.approx(1.0, abs=1e-9)
