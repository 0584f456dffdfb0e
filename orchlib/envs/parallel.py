"""The orchestration problem as a PettingZoo ``ParallelEnv``: each user's device is an agent.

This is the per-user setting (``deciders="per_user"`` in :mod:`orchlib.study.runner`) in the API that
multi-agent RL libraries use. It wraps one :class:`~orchlib.envs.orchestration.OrchestrationEnv`.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from orchlib.envs.orchestration import OrchestrationEnv, public_info
from orchlib.system.scenario import Scenario
from orchlib.system.simulator import System


class OrchestrationParallelEnv(ParallelEnv):
    """Every user's end device decides, for its own requests, where each runs and with which model variant.

    **Agents.** ``"user_0" ... "user_{n-1}"``, one per user of the scenario; all live for the whole episode.

    **Turns.** Requests are served in arrival order over all users (the queues they share are FIFO), so at
    every step exactly one request is pending: the next one in time, from the *acting* agent
    (``infos[agent]["acting"]`` is True for it alone). Every live agent submits an action, as the parallel API
    requires, but only the acting agent's action is applied; the others are ignored. An agent missing from
    ``actions`` is allowed unless it is the acting one.

    **Observation** (per agent). ``Dict(observation=..., action_mask=MultiBinary(A))``: ``observation`` is
    the single-agent environment's observation of the system and the pending request (``Discrete`` or
    ``Box``, see :class:`~orchlib.envs.orchestration.OrchestrationEnv`); ``action_mask`` marks the actions
    that meet the pending request's accuracy requirement for the acting agent, and every action for the
    others (their actions are ignored).

    **Action.** ``Discrete(3 * n_variants)``, as in the single-agent environment.

    **Reward.** The acting agent gets the single-agent reward of its request (minus the response time in
    seconds); the others get 0 for that step. Independent learners should therefore learn only from the
    steps on which they acted, with the next observation of their own next turn.

    **Info.** For every agent: ``acting`` (whether the pending request, the one the observation is about, is
    its own) and ``user`` (the pending request's user). After :meth:`step`, the agent whose request was just
    served also gets ``served=True`` and the single-agent info about that request (``latency_ms`` and its
    parts, ``tier``, ``variant``, ``accuracy_pct``, ``met_requirement``, ``served_user``, ``served_time_ms``).

    **Episode end.** All agents are truncated together after the scenario's ``n_requests`` requests (or
    ``max_steps``); no agent terminates.

    **Arguments.**
        scenario: a :class:`Scenario`, a preset name, or a prebuilt :class:`System`.
        observation: ``"discrete"`` or ``"box"``.
        max_steps: requests per episode (None: the scenario's ``n_requests``).
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 - PettingZoo's documented class attribute
        "name": "orchlib_orchestration_parallel_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        scenario: Scenario | System | str = "paper",
        *,
        observation: Literal["discrete", "box"] = "discrete",
        max_steps: int | None = None,
    ) -> None:
        # oracle=False: a user's device cannot know the clairvoyant optimum, and it costs a full evaluation.
        self.env = OrchestrationEnv(scenario, observation=observation, oracle=False, max_steps=max_steps)
        self.possible_agents: list[str] = [f"user_{u}" for u in range(self.env.scenario.n_users)]
        self.agents: list[str] = []
        n_actions = int(self.env.action_space.n)
        self._observation_space = gym.spaces.Dict(
            {"observation": self.env.observation_space, "action_mask": gym.spaces.MultiBinary(n_actions)}
        )
        self._action_space = self.env.action_space
        self._every_action = np.ones(n_actions, dtype=np.int8)
        self._acting: str | None = None
        self._pending_keys: frozenset[str] = frozenset()

    def observation_space(self, agent: str) -> gym.spaces.Space:
        self._check_agent(agent)
        return self._observation_space

    def action_space(self, agent: str) -> gym.spaces.Space:
        self._check_agent(agent)
        return self._action_space

    def _check_agent(self, agent: str) -> None:
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}")

    def _observe(self, obs: Any, info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        self._acting = self.possible_agents[info["user"]]
        mask = info["action_mask"].astype(np.int8)
        observations = {
            agent: {"observation": obs, "action_mask": mask if agent == self._acting else self._every_action}
            for agent in self.agents
        }
        infos = {agent: {"acting": agent == self._acting, "user": info["user"]} for agent in self.agents}
        return observations, infos

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode (``seed`` seeds the wrapped environment; ``options`` is unused)."""
        obs, info = self.env.reset(seed=seed)
        # the keys that describe the pending request; a step's other info keys describe the served one
        self._pending_keys = frozenset(info)
        self.agents = list(self.possible_agents)
        return self._observe(obs, info)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Serve the pending request with the acting agent's action.

        Raises:
            RuntimeError: called before :meth:`reset` or after the episode ended.
            ValueError: ``actions`` has no action for the acting agent, or names an unknown agent.
        """
        if not self.agents or self._acting is None:
            raise RuntimeError("call reset() before step() (and again after the episode ends)")
        unknown = sorted(set(actions) - set(self.agents))
        if unknown:
            raise ValueError(
                f"actions for unknown or finished agent(s) {unknown}; live agents: {self.agents}"
            )
        if self._acting not in actions:
            raise ValueError(
                f"actions must include the acting agent {self._acting!r} (infos[agent]['acting'])"
            )
        acting = self._acting
        obs, reward, _, truncated, info = self.env.step(actions[acting])
        rewards = {agent: float(reward) if agent == acting else 0.0 for agent in self.agents}
        observations, infos = self._observe(obs, info)
        served = {k: v for k, v in public_info(info).items() if k not in self._pending_keys}
        infos[acting].update(served, served=True)
        terminations = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, bool(truncated))
        if truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos
