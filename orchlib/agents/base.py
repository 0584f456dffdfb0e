"""The one small interface every orchestrator follows.

An agent sees what a real orchestrator would see: the observation of the current request, the mask of
actions that meet its accuracy requirement, and the *public* part of the environment's ``info`` (which
user sent the request, its arrival time, its accuracy requirement, and, after it is served, its measured
response time). Agents whose class attribute ``privileged`` is True (the oracle and the baselines that say
so in their name) receive the full ``info``, including the simulator's true state and the oracle's answer.
The runner enforces this split with :func:`orchlib.envs.orchestration.public_info`.
"""

from __future__ import annotations

import abc
import math
import numbers
import operator
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numba
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
            raise TypeError(
                f"action_space must be gymnasium.spaces.Discrete, got {type(action_space).__name__}"
            )
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


def check_real(
    name: str,
    value: float,
    low: float = -np.inf,
    high: float = np.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Check a real hyperparameter lies in an interval.

    Args:
        name: the parameter's name, quoted in the error.
        value: the value given.
        low, high: interval ends (infinite ends are always open).
        low_open, high_open: whether the finite ends are excluded.

    Raises:
        TypeError: ``value`` is not a real number (bools are refused too).
        ValueError: ``value`` is NaN, infinite or outside the interval; the message names ``name`` and the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    left = "(" if low_open or low == -np.inf else "["
    right = ")" if high_open or high == np.inf else "]"
    interval = f"{left}{low:g}, {high:g}{right}"
    inside = math.isfinite(value) and (low < value if low_open else low <= value)
    inside = inside and (value < high if high_open else value <= high)
    if not inside:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")


def check_int(name: str, value: int, low: int, high: float = np.inf) -> None:
    """Check an integer hyperparameter lies in ``[low, high]``.

    Raises:
        TypeError: ``value`` is not an integer (bools and floats such as ``2.0`` are refused).
        ValueError: ``value`` is outside ``[low, high]``; the message names ``name`` and the range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        upper = "inf)" if high == np.inf else f"{high:g}]"
        raise ValueError(f"{name} must be an integer in [{low}, {upper}, got {value!r}")


class MaskTable:
    """Per-mask arrays the hot path needs, computed once per distinct mask and looked up by its bytes.

    An environment produces few distinct masks (one per accuracy requirement), so caching the additive penalty
    (0 where valid, -inf where not) and the valid indices turns a masked argmax into one add and one argmax,
    a few hundred nanoseconds instead of several microseconds. Each mask is validated when first seen.

    Args:
        n_actions: length every mask must have.
        max_entries: masks beyond this many distinct ones are still handled correctly, just not cached, so
            memory stays bounded when masks are random.
    """

    def __init__(self, n_actions: int, max_entries: int = 4096) -> None:
        self.n_actions = n_actions
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(penalty, valid)``: float array 0/-inf of length ``n_actions``, and ``flatnonzero(mask)``.

        Raises:
            ValueError: the mask is not a 1-D bool array of length ``n_actions`` with at least one True.
        """
        try:
            entry = self._entries.get(mask.tobytes())
        except AttributeError:  # a list or tuple: validate and convert, then use the array path
            return self.get(np.asarray(mask))
        if entry is not None and mask.dtype is _BOOL:
            return entry
        return self._build(mask)

    def _build(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if mask.dtype != _BOOL or mask.shape != (self.n_actions,):
            raise ValueError(
                f"mask must be a bool array of shape ({self.n_actions},), got dtype {mask.dtype} shape {mask.shape}"
            )
        valid = np.flatnonzero(mask)
        if valid.size == 0:
            raise ValueError("mask must allow at least one action, got all False")
        penalty = np.where(mask, 0.0, -np.inf)
        penalty.flags.writeable = False
        valid.flags.writeable = False
        if len(self._entries) < self.max_entries:
            self._entries[mask.tobytes()] = (penalty, valid)
        return penalty, valid


_BOOL = np.dtype(bool)


def penalised_argmax(
    values: np.ndarray, penalty: np.ndarray, buffer: np.ndarray, rng: np.random.Generator
) -> int:
    """Fast :func:`masked_argmax` given a :class:`MaskTable` penalty; ``buffer`` is scratch of the same shape.

    Ties are broken uniformly at random; one uniform is drawn from ``rng`` only when there is a tie.
    """
    np.add(values, penalty, out=buffer)
    a = int(buffer.argmax())
    ties = buffer == buffer[a]
    n_ties = int(np.count_nonzero(ties))
    if n_ties == 1:
        return a
    return int(np.flatnonzero(ties)[int(rng.random() * n_ties)])


def check_action_reward(action: int, reward: float, n_actions: int) -> tuple[int, float]:
    """Validate a learn() outcome and return it as ``(int, float)``.

    Raises:
        ValueError: ``action`` not in ``[0, n_actions)`` or ``reward`` not finite (NaN or infinite).
    """
    a = operator.index(action)
    if not 0 <= a < n_actions:
        raise ValueError(f"action must be in [0, {n_actions}), got {action!r}")
    r = float(reward)
    if not math.isfinite(r):
        raise ValueError(f"reward must be finite, got {reward!r}")
    return a, r


# ---------------------------------------------------------------------------------------------------------
# Shared by the agents written over a leading replicate axis (``orchlib.agents.qlearning``, ``orchlib.agents.batched``)

#: decisions per block of a replicated agent's random numbers.
AGENT_BLOCK = 256


@numba.njit(cache=True)
def argmax_random_tie(values: np.ndarray, valid: np.ndarray, n_valid: int, uniform: float) -> int:
    """Index of the maximum of ``values`` over the allowed indices ``valid[:n_valid]`` (in increasing order, as
    :class:`MaskTable` and :func:`uniform_valid_table` list them); among ``n`` tied maxima the
    ``int(uniform * n)``-th (in column order).

    The argmax with random ties of the agents written over replicates (one uniform per decision, drawn whether
    or not there is a tie, so a replicate's stream does not depend on its values). It reads only the allowed
    entries (a state of the paper's world allows 6 to 54 of 96 actions), so an invalid entry's value never
    matters."""
    best = values[valid[0]]
    for i in range(1, n_valid):
        best = max(best, values[valid[i]])
    n = 0
    for i in range(n_valid):
        n += values[valid[i]] == best
    k = int(uniform * n)
    for i in range(n_valid):
        a = valid[i]
        if values[a] == best:
            if k == 0:
                return a
            k -= 1
    return -1  # unreachable: the maximum is in the row


class ReplicateUniforms:
    """``k`` uniforms per step for each replicate, from the replicate's own generator, drawn in blocks of
    :data:`AGENT_BLOCK` steps.

    A replicate's draws depend only on its generator, so an agent's choices in replicate ``b`` depend neither on
    the batch size nor on which replicates share the batch: the one-replicate view draws what replicate ``b``
    of a batch draws, given the same generator.
    """

    def __init__(self, rngs: list[np.random.Generator], k: int) -> None:
        self.rngs = rngs
        self.k = k
        self._block = np.empty((len(rngs), AGENT_BLOCK, k))
        self._position = AGENT_BLOCK

    def take(self) -> np.ndarray:
        """The next step's uniforms, shape (B, k)."""
        if self._position >= AGENT_BLOCK:
            for b, rng in enumerate(self.rngs):
                self._block[b] = rng.random((AGENT_BLOCK, self.k))
            self._position = 0
        self._position += 1
        return self._block[:, self._position - 1]


def check_state_masks(state_masks: np.ndarray) -> np.ndarray:
    """``state_masks`` as a bool array (n_states, n_actions) in which every row allows an action.

    Raises:
        ValueError: another shape or dtype, or a row that allows nothing.
    """
    state_masks = np.asarray(state_masks)
    if state_masks.dtype != bool or state_masks.ndim != 2 or 0 in state_masks.shape:
        raise ValueError(
            f"state_masks must be a non-empty 2-D bool array (n_states, n_actions), got "
            f"{state_masks.dtype} {state_masks.shape}"
        )
    if not state_masks.any(axis=1).all():
        raise ValueError("every row of state_masks must allow at least one action")
    return state_masks


def uniform_valid_table(state_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, n_valid): each row's valid actions in increasing order (as np.flatnonzero), then the rest."""
    return np.argsort(~state_masks, axis=1, kind="stable"), state_masks.sum(axis=1)
