"""The agent registry: a new agent is one entry (README, "Use your own agent"), and an agent written once over
``B`` replicates plays per request as its one-replicate view with exactly the batched path's choices."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from orchlib.agents.base import random_valid_action
from orchlib.agents.catalogue import (
    AGENT_NAMES,
    AGENTS,
    AgentEntry,
    agent_names,
    batched_agent,
    make_agent,
    register_agent,
    unregister_agent,
)
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.study.runner import RunSpec, batch_agent, grid, run_sweep
from orchlib.system.engine import replicate_generators
from orchlib.system.scenario import paper, tiny


class GreedyMeans:
    """A new agent, written once for ``B`` replicates: per (state, action) the mean reward so far; the valid
    action of largest mean (untried ones first, ties: the lowest index), or with probability ``epsilon`` a
    uniformly random valid action, both drawn from the replicate's own generator on every decision."""

    def __init__(self, state_masks: np.ndarray, epsilon: float = 0.1) -> None:
        self.state_masks = state_masks
        self.epsilon = epsilon

    def reset(self, n_replicates: int, rng=None) -> None:
        self.rngs_ = replicate_generators(rng, n_replicates)
        shape = (n_replicates, *self.state_masks.shape)
        self.sums_ = np.zeros(shape)
        self.counts_ = np.zeros(shape)
        self._rows = np.arange(n_replicates)

    def act(self, states: np.ndarray) -> np.ndarray:
        rows, masks = self._rows, self.state_masks[states]
        counts = self.counts_[rows, states]
        means = np.where(counts > 0, self.sums_[rows, states] / np.maximum(counts, 1), np.inf)
        greedy = np.where(masks, means, -np.inf).argmax(axis=1)
        explore = np.array([rng.random() < self.epsilon for rng in self.rngs_])
        uniform = np.array([random_valid_action(m, rng) for m, rng in zip(masks, self.rngs_, strict=True)])
        return np.where(explore, uniform, greedy)

    def learn(self, states, actions, rewards, next_states) -> None:
        self.sums_[self._rows, states, actions] += rewards
        self.counts_[self._rows, states, actions] += 1


@pytest.fixture
def greedy_means() -> Iterator[str]:
    register_agent("greedy_means", AgentEntry.replicated(GreedyMeans, defaults={"epsilon": 0.2}))
    yield "greedy_means"
    unregister_agent("greedy_means")


@pytest.mark.parametrize("world", ["tiny", "paper"])
def test_an_agent_added_in_one_place_runs_batched_and_per_request_with_identical_tables(
    greedy_means: str, world: str, tmp_path
) -> None:
    scenario = (tiny() if world == "tiny" else paper()).replace(n_requests=400)
    specs = grid([scenario], [greedy_means], n_replicates=3, seed=5)
    env = OrchestrationEnv(scenario)
    assert all(isinstance(batch_agent(spec, env), GreedyMeans) for spec in specs)  # the fast path plays it
    fast = run_sweep(specs, tmp_path / "fast", progress=False)
    slow = run_sweep(specs, tmp_path / "slow", progress=False, batched=False)
    assert fast.keys == slow.keys
    pd.testing.assert_frame_equal(fast.requests.reset_index(drop=True), slow.requests.reset_index(drop=True))
    assert fast.requests.groupby("replicate", observed=True)["variant"].nunique().min() > 3  # it explores
    # the hyperparameters given to the spec reach both forms
    tuned = RunSpec(scenario=scenario, agent=greedy_means, agent_kwargs={"epsilon": 0.0}, seed=5, replicate=0)
    assert batch_agent(tuned, env).epsilon == 0.0


def test_the_registry_is_the_one_place_each_agent_is_described() -> None:
    env = OrchestrationEnv("tiny")
    assert tuple(AGENTS) == AGENT_NAMES == agent_names()
    assert make_agent("q_learning", env).gamma == AGENTS["q_learning"].defaults_for(env)["gamma"]
    assert batched_agent("q_learning", env, gamma=0.5).gamma == 0.5  # built from the per-request agent
    assert batched_agent("dqn", OrchestrationEnv("tiny", observation="box")) is None
    assert batched_agent("q_learning", OrchestrationEnv("tiny", accuracy_mode="penalty")) is None
    assert batched_agent("q_learning", env, no_such_option=1) is None  # the per-request path reports it


def test_registering_is_checked(greedy_means: str) -> None:
    entry = AGENTS[greedy_means]
    assert greedy_means in agent_names() and greedy_means not in AGENT_NAMES
    with pytest.raises(ValueError, match="registered already"):
        register_agent(greedy_means, entry)
    with pytest.raises(ValueError, match="non-empty string"):
        register_agent("", entry)
    with pytest.raises(TypeError, match="AgentEntry"):
        register_agent("other", GreedyMeans)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"AgentEntry\.observation"):
        AgentEntry(build=lambda env, params: None, observation="image")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"AgentEntry\.build"):
        AgentEntry(build=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an agent added by register_agent"):
        unregister_agent("q_learning")
    spec = RunSpec(
        scenario=tiny(),
        agent=greedy_means,
        agent_kwargs={"epsilon": 0.0},
        deciders="per_user",
        seed=0,
        replicate=0,
    )
    assert batch_agent(spec, OrchestrationEnv("tiny")) is None  # per-user deciders play per request


@pytest.mark.parametrize("world", ["tiny", "paper"])
def test_the_learners_written_once_record_the_same_tables_batched_and_per_request(
    world: str, tmp_path
) -> None:
    """Q-learning and UCB1 are written once (each per-request form the one-replicate view of the batched rules,
    drawing what replicate b draws from the run's agent generator), so these learners' runs are the same on both
    paths, every request of them (which makes a comparison in distribution, as ``tests/test_batch.py`` does for
    a fixed policy, unnecessary for them)."""
    scenario = (tiny() if world == "tiny" else paper()).replace(n_requests=400)
    specs = grid(
        [scenario],
        ["q_learning", "q_learning_textbook", "sota_location_only", "ucb1"],
        n_replicates=2,
        seed=8,
    )
    fast = run_sweep(specs, tmp_path / "fast", progress=False)
    slow = run_sweep(specs, tmp_path / "slow", progress=False, batched=False)
    pd.testing.assert_frame_equal(fast.requests.reset_index(drop=True), slow.requests.reset_index(drop=True))
