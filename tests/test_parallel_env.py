"""The PettingZoo ParallelEnv (each user's device an agent): PettingZoo's own API and seed tests, turn-taking
and rewards, bad actions, and independent learners that learn on it."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from orchlib.agents.base import random_valid_action
from orchlib.agents.catalogue import make_agent
from orchlib.envs.parallel import OrchestrationParallelEnv
from orchlib.system.scenario import tiny


def _env(n_requests: int = 200, **kwargs) -> OrchestrationParallelEnv:
    return OrchestrationParallelEnv(tiny().replace(n_requests=n_requests), **kwargs)


@pytest.mark.parametrize("observation", ["discrete", "box"])
def test_passes_pettingzoo_parallel_api_test(observation: str) -> None:
    parallel_api_test(_env(observation=observation), num_cycles=250)


def test_passes_pettingzoo_seed_test() -> None:
    parallel_seed_test(lambda: _env(100), num_cycles=50)


def test_one_agent_acts_per_step_and_only_it_is_rewarded() -> None:
    env = _env(50)
    obs, infos = env.reset(seed=3)
    assert env.agents == ["user_0", "user_1"]
    served_users = []
    while env.agents:
        acting = [agent for agent in env.agents if infos[agent]["acting"]]
        assert len(acting) == 1
        (agent,) = acting
        others = [a for a in env.agents if a != agent]
        assert all(obs[a]["action_mask"].all() for a in others)  # their actions are ignored
        action = int(np.flatnonzero(obs[agent]["action_mask"])[-1])
        obs, rewards, terminations, truncations, infos = env.step(dict.fromkeys(env.agents, action))
        assert rewards[agent] == pytest.approx(-infos[agent]["latency_ms"] / 1e3)
        assert infos[agent]["served"] and infos[agent]["met_requirement"]
        assert all(rewards[a] == 0.0 and "served" not in infos[a] for a in others)
        assert not any(terminations.values())
        served_users.append(infos[agent]["served_user"])
    assert all(truncations.values()) and len(served_users) == 50 and set(served_users) == {0, 1}


def test_bad_actions_are_refused_naming_the_agent() -> None:
    env = _env(10)
    _, infos = env.reset(seed=0)
    acting = next(agent for agent in env.agents if infos[agent]["acting"])
    idle = next(agent for agent in env.agents if agent != acting)
    with pytest.raises(ValueError, match=f"acting agent '{acting}'"):
        env.step({idle: 0})
    with pytest.raises(ValueError, match=r"unknown or finished agent\(s\) \['user_9'\]"):
        env.step({acting: 0, "user_9": 0})
    with pytest.raises(ValueError, match="unknown agent 'user_9'"):
        env.action_space("user_9")
    with pytest.raises(RuntimeError, match="reset"):
        _env(10).step({"user_0": 0})


def _play(env: OrchestrationParallelEnv, seed: int, policy: str) -> np.ndarray:
    """Response times (ms) of one episode: independent Q-learners (one per device, each learning only from
    its own turns, with its own next turn as the next state) or random valid actions."""
    streams = np.random.SeedSequence(seed).spawn(len(env.possible_agents) + 1)
    learners = {agent: make_agent("q_learning", env.env) for agent in env.possible_agents}
    for learner, stream in zip(learners.values(), streams, strict=False):
        learner.reset(np.random.default_rng(stream))
    rng = np.random.default_rng(streams[-1])
    obs, infos = env.reset(seed=seed)
    waiting: dict[str, tuple] = {}
    latencies = []
    while env.agents:
        (agent,) = (a for a in env.agents if infos[a]["acting"])
        state, mask = obs[agent]["observation"], obs[agent]["action_mask"].astype(bool)
        if policy == "random":
            action = random_valid_action(mask, rng)
        else:
            if agent in waiting:
                learners[agent].learn(*waiting.pop(agent), state, mask, infos[agent])
            action = learners[agent].act(state, mask, infos[agent])
        obs, rewards, _, _, infos = env.step({agent: action})
        waiting[agent] = (state, action, rewards[agent])
        latencies.append(infos[agent]["latency_ms"])
    return np.array(latencies)


def test_independent_learners_learn_on_it() -> None:
    env = _env(2000)
    learned = _play(env, seed=5, policy="q_learning")
    random = _play(env, seed=5, policy="random")
    half = len(learned) // 2
    # measured at seed 5: about 60 ms for the learners' second half, about 120 ms for random valid actions
    assert learned[half:].mean() < 0.7 * random[half:].mean()
    assert learned[half:].mean() < learned[:half].mean()
    np.testing.assert_array_equal(_play(env, seed=5, policy="q_learning"), learned)  # same seed, same run
