"""The one small interface every orchestrator follows.

An agent sees what a real orchestrator would see: the observation of the current request, the mask of
actions that meet its accuracy requirement, and the *public* part of the environment's ``info`` (which
user sent the request, its arrival time, its accuracy requirement, and, after it is served, its measured
response time). Agents whose class attribute ``privileged`` is True (the oracle and the baselines that say
so in their name) receive the full ``info``, including the simulator's true state and the oracle's answer.
The runner enforces this split with :func:`orchlib.env.public_info`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

Observation = Any  # an int for Discrete observation spaces, a float32 array for Box ones


class Agent(abc.ABC):
    """Base class: choose an action, learn from the outcome, reset with an ``rng``.

    Subclasses store their hyperparameters in ``__init__`` exactly as given (validating each and naming it in
    the error), create every piece of learned state (names ending in ``_``) in :meth:`reset`, and draw all
    randomness from ``self.rng_``.

    Args:
        observation_space: the environment's observation space.
        action_space: the environment's ``Discrete(n_tiers * n_variants)`` action space.
    """

    #: True only for agents that read simulator internals a real deployment would not expose.
    privileged: ClassVar[bool] = False

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Discrete) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"action_space must be gymnasium.spaces.Discrete, got {type(action_space).__name__}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.n_actions = int(action_space.n)

    @abc.abstractmethod
    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget everything learned and (re)seed: ``self.rng_ = np.random.default_rng(rng)``."""

    @abc.abstractmethod
    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Return an action index ``a`` with ``mask[a]`` True (mask: bool array of length ``n_actions``)."""

    def learn(
        self,
        obs: Observation,
        action: int,
        reward: float,
        next_obs: Observation,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Update from one served request (default: learn nothing, for fixed policies)."""
        return None

    @property
    def name(self) -> str:
        """Label used in results tables and legends."""
        return type(self).__name__


def masked_argmax(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest ``values[a]`` among ``mask[a]`` True, ties broken uniformly at random."""
    masked = np.where(mask, values, -np.inf)
    best = np.flatnonzero(masked == masked.max())
    return int(best[0]) if best.size == 1 else int(rng.choice(best))


def random_valid_action(mask: np.ndarray, rng: np.random.Generator) -> int:
    """A uniformly random action among those allowed by ``mask``."""
    valid = np.flatnonzero(mask)
    return int(valid[rng.integers(valid.size)])
