"""Batched agents: ``B`` independent learners of one algorithm acting in lockstep, one request of every replicate
per call (the agents of the batched fast path: the one batched loop :func:`orchlib.study.batch.play_batch` plays
them for the runner and for :func:`orchlib.study.batch.run_batch`).

Each is the batched form of a per-request agent of this layer: :class:`BatchQLearning` of
:class:`~orchlib.agents.qlearning.QLearning`, :class:`BatchUCB1` of :class:`~orchlib.agents.bandits.UCB1`,
:class:`BatchLocationOnly` of :class:`~orchlib.agents.baselines.LocationOnlyQLearning`, :class:`BatchFixedPolicy`
of the fixed baselines, :class:`BatchRandom`, :class:`BatchGreedyProfiles`, :class:`BatchAdaptiveGreedy` and
:class:`BatchProfileHybrid` of the agents that read each request's measurements, :class:`BatchOracle` of the
oracle. The catalogue's registry (:data:`orchlib.agents.catalogue.AGENTS`) says which agent has which form.
They act on the discrete state of :class:`~orchlib.envs.orchestration.OrchestrationEnv`, whose mask is a
function of the state (``state_masks``); the by-kind agents also take each request's kind and measurements
(``act(states, kinds, measurements)``, ``learn(states, actions, rewards, next_states, next_kinds, latency_ms)``).
How their random numbers relate to the per-request agents' is in :mod:`orchlib.study.batch` (item 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import gymnasium as gym
import numba
import numpy as np

from orchlib.agents.bandits import UNPULLED_MEAN, ucb_choice
from orchlib.agents.base import (
    Agent,
    Observation,
    ReplicateUniforms,
    check_real,
    check_state_masks,
    masked_argmax,
    random_valid_action,
    uniform_valid_table,
)
from orchlib.agents.baselines import profile_latency_ms_batch
from orchlib.agents.hybrid import (
    adaptive_factor_update,
    hybrid_log_score,
    log_ratio,
    residual_log_mean_sd,
    residual_update,
)
from orchlib.agents.qlearning import BatchQLearning
from orchlib.system.engine import replicate_generators


class BatchAgent(Protocol):
    """What :func:`orchlib.study.batch.play_batch` needs from an agent: ``B`` independent learners acting in lockstep.

    ``state_masks[s]`` is the action mask of every request in discrete state ``s`` (the mask depends on the
    requirement class, which the state encodes: ``OrchestrationEnv.state_mask``), so the agents take states
    only and never build a per-request mask.
    """

    state_masks: np.ndarray

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None: ...

    def act(self, states: np.ndarray) -> np.ndarray: ...

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None: ...


# The batched learners' per-step rules as compiled loops over replicates: each reads its replicate's rows in place,
# where NumPy would gather (B, A) copies of them and pass over them several times (about 1 ms per lockstep step
# at B = 2,000). Same arithmetic in the same order, so the same choices and values bit for bit as the NumPy
# versions they replace (tests/test_batch.py checks them against NumPy definitions).


@numba.njit(cache=True)
def _ucb1_act(inverse_sqrt_counts, means, valid, n_valid, states, scale, uniforms, row, out):
    """:func:`~orchlib.agents.bandits.ucb_choice` of every replicate into ``out`` (``scale``: the bonus
    ``c * sqrt(2 ln t)``, the same in every replicate; ``valid``, ``n_valid``: each state's valid actions,
    :func:`~orchlib.agents.base.uniform_valid_table`; ``row`` is scratch (A,))."""
    for b in range(states.size):
        s = states[b]
        out[b] = ucb_choice(means[b], inverse_sqrt_counts[b], valid[s], n_valid[s], scale, uniforms[b], row)


@numba.njit(cache=True)
def _ucb1_learn(counts, sums, means, inverse_sqrt_counts, actions, rewards):
    """Count each replicate's pull of ``actions[b]`` and add its reward; refresh that arm's mean and n ** -1/2."""
    for b in range(actions.size):
        a = actions[b]
        n = counts[b, a] + 1
        total = sums[b, a] + rewards[b]
        counts[b, a] = n
        sums[b, a] = total
        means[b, a] = total / n
        inverse_sqrt_counts[b, a] = 1.0 / np.sqrt(n)


class BatchUCB1:
    """:class:`~orchlib.agents.bandits.UCB1` for ``B`` independent replicates in lockstep (reads only the mask).

    Index of a pulled arm: ``mean(a) + c * sqrt(2 ln t / n(a))``; valid arms never pulled come first (random
    among them), otherwise the valid arm of largest index (ties at random), per replicate: the one rule
    :func:`~orchlib.agents.bandits.ucb_choice`, of which :class:`~orchlib.agents.bandits.UCB1` is the
    one-replicate view (same draws, same choices bit for bit).

    Args:
        state_masks: bool array (n_states, n_actions), the mask of each state.
        c: exploration scale in seconds, finite and >= 0 (no default here: UCB1's is stated once, in
            :class:`~orchlib.agents.bandits.UCB1`; the catalogue builds this form from the per-request agent's).

    Raises:
        ValueError: ``c`` outside its range or bad state masks.
    """

    def __init__(self, state_masks: np.ndarray, c: float) -> None:
        check_real("c", c, 0.0)
        self.state_masks = check_state_masks(state_masks)
        self.n_states, self.n_actions = self.state_masks.shape
        self.c = c
        self._valid, self._n_valid = uniform_valid_table(self.state_masks)  # each state's valid actions

    def reset(
        self, n_replicates: int, rng: np.random.Generator | np.random.SeedSequence | int | None = None
    ) -> None:
        """Forget all pulls; reseed (replicate ``b``: one uniform per pull, for the tie break, from
        ``replicate_generators(rng, n_replicates)[b]``)."""
        self.draws_ = ReplicateUniforms(replicate_generators(rng, n_replicates), 1)
        shape = (n_replicates, self.n_actions)
        self.counts_ = np.zeros(shape, dtype=np.int64)  # n(a) per replicate
        self.sums_ = np.zeros(shape)  # sum of rewards of arm a, seconds
        # sums / counts; for an unpulled arm the largest float, so that its index comes first (UNPULLED_MEAN)
        self.means_ = np.full(shape, UNPULLED_MEAN)
        self.inverse_sqrt_counts_ = np.zeros(shape)  # n(a) ** -1/2; 0 for an unpulled arm
        self.n_pulls_ = 0  # t: the same in every replicate, which pulls once per step
        self._row = np.empty(self.n_actions)  # scratch: one replicate's indices

    def act(self, states: np.ndarray) -> np.ndarray:
        """An unpulled valid arm if any (random among them), else the valid arm of largest index; shape (B,)."""
        scale = float(self.c) * math.sqrt(2.0 * math.log(max(self.n_pulls_, 1)))
        actions = np.empty(states.size, dtype=np.int64)
        _ucb1_act(
            self.inverse_sqrt_counts_,
            self.means_,
            self._valid,
            self._n_valid,
            states,
            scale,
            self.draws_.take()[:, 0],
            self._row,
            actions,
        )
        return actions

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """Count each replicate's pull and add its reward."""
        _ucb1_learn(self.counts_, self.sums_, self.means_, self.inverse_sqrt_counts_, actions, rewards)
        self.n_pulls_ += 1


class BatchLocationOnly:
    """:class:`~orchlib.agents.baselines.LocationOnlyQLearning` (the state-of-the-art stand-in) for ``B``
    replicates: :class:`BatchQLearning` over the three locations, each serving one fixed action (the most accurate
    variant there), on the states' masks restricted to those actions.

    Args:
        actions: the full action of each location, int array of shape (3,)
            (``LocationOnlyQLearning.actions``).
        state_masks: bool array (n_states, n_actions), the mask of each state.
        **q_learning_kwargs: hyperparameters of :class:`BatchQLearning`.

    Raises:
        ValueError: actions out of range or repeated, a state where none of them is valid, or a bad
            hyperparameter (named).
    """

    def __init__(self, actions: np.ndarray, state_masks: np.ndarray, **q_learning_kwargs: Any) -> None:
        state_masks = check_state_masks(state_masks)
        self.actions = np.asarray(actions, dtype=np.int64)
        n_actions = state_masks.shape[1]
        if (
            self.actions.ndim != 1
            or np.unique(self.actions).size != self.actions.size
            or np.any((self.actions < 0) | (self.actions >= n_actions))
        ):
            raise ValueError(f"actions must be distinct actions in [0, {n_actions}), got {self.actions!r}")
        self.state_masks = state_masks
        #: the Q-learner over locations (its masks: each state's mask at :attr:`actions`).
        self.q_learning = BatchQLearning(state_masks[:, self.actions], **q_learning_kwargs)
        self._location = np.full(n_actions, -1, dtype=np.int64)  # the location of each action (-1: none)
        self._location[self.actions] = np.arange(self.actions.size)

    def reset(
        self, n_replicates: int, rng: np.random.Generator | np.random.SeedSequence | int | None = None
    ) -> None:
        """Forget, reseed (as :meth:`BatchQLearning.reset`)."""
        self.q_learning.reset(n_replicates, rng)

    def act(self, states: np.ndarray) -> np.ndarray:
        """The action of each replicate's epsilon-greedy location; shape (B,)."""
        return self.actions[self.q_learning.act(states)]

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """One Q-learning update per replicate, of the location its action used."""
        self.q_learning.learn(states, self._location[actions], rewards, next_states)


def _check_policy(policy: np.ndarray, masks: np.ndarray, what: str) -> np.ndarray:
    """``policy`` as int64, one action per row of ``masks`` that the row allows (``what``: the rows' name)."""
    policy = np.asarray(policy, dtype=np.int64)
    n_rows, n_actions = masks.shape
    if policy.shape != (n_rows,) or np.any((policy < 0) | (policy >= n_actions)):
        raise ValueError(f"policy must have shape ({n_rows},) with actions in [0, {n_actions})")
    invalid = np.flatnonzero(~masks[np.arange(n_rows), policy])
    if invalid.size:
        raise ValueError(
            f"policy chooses an action its {what}'s mask forbids in {what}(s) {invalid.tolist()}"
        )
    return policy


class BatchFixedPolicy:
    """A fixed policy: ``policy[state]`` in every replicate (no learning, no randomness).

    Args:
        policy: int array of length n_states, one valid action per discrete state.
        state_masks: bool array (n_states, n_actions), the mask of each state.

    Raises:
        ValueError: an action invalid in its state, or shapes that do not match.
    """

    def __init__(self, policy: np.ndarray, state_masks: np.ndarray) -> None:
        self.state_masks = check_state_masks(state_masks)
        self.policy = _check_policy(policy, self.state_masks, "state")

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to forget."""

    def act(self, states: np.ndarray) -> np.ndarray:
        """``policy[states]``."""
        return self.policy[states]

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """Learn nothing."""


class _ByKind:
    """Shared part of the batched agents that read each request's kind and measurements (module docstring):
    the per-request agent they mirror, the kind masks, and the device class of a kind."""

    def __init__(self, agent: Any, kind_masks: np.ndarray, state_masks: np.ndarray) -> None:
        self.agent = agent  # the per-request agent: its hyperparameters and system, as the catalogue built it
        self.system = agent.system
        self.kind_masks = check_state_masks(kind_masks)
        self.state_masks = check_state_masks(state_masks)
        if self.kind_masks.shape[1] != self.system.n_actions:
            raise ValueError(
                f"kind_masks must have {self.system.n_actions} columns, got {self.kind_masks.shape}"
            )
        self._n_classes = self.system.requirement_pct.size
        self._n_device_classes = self.kind_masks.shape[0] // self._n_classes

    def _estimates(self, kinds: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """:func:`~orchlib.agents.baselines.profile_latency_ms_batch` of each request, shape (B, n_actions)."""
        return profile_latency_ms_batch(self.system, *measurements.T, device_class=kinds // self._n_classes)


class BatchRandom(_ByKind):
    """:class:`~orchlib.agents.baselines.RandomValid` for ``B`` replicates: a uniformly random action among
    those the request's mask allows, drawn by the same function
    (:func:`~orchlib.agents.base.random_valid_action`) from each replicate's generator, so given the
    per-request agent's generators the choices are its choices bit for bit."""

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Reseed (replicate ``b`` from ``replicate_generators(rng, n_replicates)[b]``)."""
        self.rngs_ = replicate_generators(rng, n_replicates)

    def act(
        self, states: np.ndarray, kinds: np.ndarray, measurements: np.ndarray | None = None
    ) -> np.ndarray:
        """A uniformly random valid action per replicate."""
        masks = self.kind_masks[kinds]
        return np.array([random_valid_action(m, rng) for m, rng in zip(masks, self.rngs_, strict=True)])

    def learn(self, *args: np.ndarray) -> None:
        """Learn nothing."""


class BatchGreedyProfiles(_ByKind):
    """:class:`~orchlib.agents.baselines.GreedyProfiles` for ``B`` replicates: the valid action of lowest
    profile estimate (ties: lowest index), the estimate computed for all replicates at once. Deterministic:
    its choices equal the per-request agent's bit for bit."""

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to forget."""

    def act(self, states: np.ndarray, kinds: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """Argmin over the request's mask of the profile estimates."""
        return np.where(self.kind_masks[kinds], self._estimates(kinds, measurements), np.inf).argmin(axis=1)

    def learn(self, *args: np.ndarray) -> None:
        """Learn nothing."""


class BatchAdaptiveGreedy(_ByKind):
    """:class:`~orchlib.agents.hybrid.AdaptiveGreedy` for ``B`` replicates: one factor per (tier, device
    class) and replicate, corrected by :func:`~orchlib.agents.hybrid.adaptive_factor_update`. Deterministic:
    its choices equal the per-request agent's (bit for bit up to the rounding of the vectorised arithmetic)."""

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Factors back to 1."""
        self._rows = np.arange(n_replicates)
        self.factor_ = np.ones(
            (n_replicates, 3, self._n_device_classes)
        )  # multiplies (tier, class) estimates
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # (device class, estimate of the action)

    def act(self, states: np.ndarray, kinds: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """The valid action of lowest corrected estimate (ties: lowest index)."""
        rows, c = self._rows, kinds // self._n_classes
        estimates = self._estimates(kinds, measurements)
        corrected = estimates * np.repeat(self.factor_[rows, :, c], self.system.n_variants, axis=1)
        actions = np.where(self.kind_masks[kinds], corrected, np.inf).argmin(axis=1)
        self._pending = (c, estimates[rows, actions])
        return actions

    def learn(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_states: np.ndarray,
        next_kinds: np.ndarray,
        latency_ms: np.ndarray,
    ) -> None:
        """Move each used (tier, class) factor towards observed / estimated."""
        c, estimate = self._pending
        tier = actions // self.system.n_variants
        ratio = latency_ms / np.maximum(estimate, 1e-9)
        rows = self._rows
        self.factor_[rows, tier, c] = adaptive_factor_update(
            self.factor_[rows, tier, c], ratio, self.agent.beta
        )


class BatchProfileHybrid(_ByKind):
    """:class:`~orchlib.agents.hybrid.ProfileHybrid` for ``B`` replicates: the profiled model for every action
    of every replicate at once, corrected by the learned residual (:func:`~orchlib.agents.hybrid.residual_log_mean_sd`,
    :func:`~orchlib.agents.hybrid.hybrid_log_score`, updated by :func:`~orchlib.agents.hybrid.residual_update`).
    A replicate whose best scores tie calls :func:`~orchlib.agents.base.masked_argmax` with its own generator,
    as the per-request agent does, so given its generators the choices are the per-request agent's."""

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Forget every residual; reseed."""
        self.rngs_ = replicate_generators(rng, n_replicates)
        self._rows = np.arange(n_replicates)
        shape = (n_replicates, self._n_device_classes)
        n_actions = self.system.n_actions
        self.log_ratio_sums_ = np.zeros((*shape, n_actions))  # sum of log(observed / m) per (class, action)
        self.log_ratio_squares_ = np.zeros((*shape, n_actions))  # sum of its squares
        self.counts_ = np.zeros((*shape, n_actions))
        self.tier_sums_ = np.zeros((*shape, 3))  # the same, pooled per (class, tier)
        self.tier_squares_ = np.zeros((*shape, 3))
        self.tier_counts_ = np.zeros((*shape, 3))
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def act(self, states: np.ndarray, kinds: np.ndarray, measurements: np.ndarray) -> np.ndarray:
        """The valid action of lowest optimistic corrected estimate per replicate."""
        rows, c = self._rows, kinds // self._n_classes
        agent = self.agent
        estimates = self._estimates(kinds, measurements)
        mu, v, sd = residual_log_mean_sd(
            self.log_ratio_sums_[rows, c],
            self.log_ratio_squares_[rows, c],
            self.counts_[rows, c],
            self.tier_sums_[rows, c],
            self.tier_squares_[rows, c],
            self.tier_counts_[rows, c],
            agent.prior_count,
            agent.sigma,
        )
        masks = self.kind_masks[kinds]
        scores = -hybrid_log_score(estimates, mu, v, sd, agent.kappa)
        values = np.where(masks, scores, -np.inf)
        actions = values.argmax(axis=1)
        tied = np.count_nonzero(values == values[rows, actions, None], axis=1) > 1
        for b in np.flatnonzero(tied):  # rare: the per-request rule, with the replicate's generator
            actions[b] = masked_argmax(scores[b], masks[b], self.rngs_[b])
        self._pending = (c, estimates[rows, actions])
        return actions

    def learn(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_states: np.ndarray,
        next_kinds: np.ndarray,
        latency_ms: np.ndarray,
    ) -> None:
        """Add each served request's log(observed / m) to its action's and tier's residual statistics."""
        c, estimate = self._pending
        sample = log_ratio(latency_ms, estimate)
        rows, tier = self._rows, actions // self.system.n_variants
        keep = self.agent.forgetting_factor
        action_stats = (self.log_ratio_sums_, self.log_ratio_squares_, self.counts_)
        for stats, column in (
            (action_stats, actions),
            ((self.tier_sums_, self.tier_squares_, self.tier_counts_), tier),
        ):
            updated = residual_update(*(x[rows, c, column] for x in stats), sample, keep)
            for x, value in zip(stats, updated, strict=True):
                x[rows, c, column] = value


class BatchOracle:
    """:class:`~orchlib.agents.oracle.OracleAgent`'s batched form: in each replicate the valid action of least
    evaluated response time (the first on ties, as ``OrchestrationEnv.oracle_action``). It needs the world's
    evaluations, so the loop that plays it gives them (:func:`orchlib.study.batch.play_batch` takes ``BatchSimulator.best``).
    """

    def __init__(self, state_masks: np.ndarray) -> None:
        self.state_masks = state_masks

    def reset(self, n_replicates: int, rng: Any = None) -> None:
        """Nothing to forget."""

    def learn(self, *args: Any) -> None:
        """Learn nothing."""


class OneReplicate(Agent):
    """The per-request view of a batched agent: its one-replicate form, behind the :class:`Agent` interface.

    An agent written once over ``B`` replicates (a :class:`BatchAgent` on the discrete state's masks) plays per
    request through this view, so its act and learn rules exist once. ``reset(rng)`` gives replicate 0 the
    generator ``np.random.default_rng(rng)`` itself, as the runner's batched path gives replicate ``b`` its run's
    agent generator: given the same generator, both views choose the same actions.

    Args:
        observation_space: ``Discrete(n_states)``, the env's discrete observation.
        action_space: the env's action space.
        batch: the batched agent (built on the env's ``state.masks(system)``).

    Raises:
        TypeError: the observation space is not Discrete.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Discrete, batch: Any) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise TypeError(
                f"OneReplicate needs a Discrete observation_space, got {type(observation_space).__name__}"
            )
        self.batch = batch

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Reset the batched agent with one replicate whose generator is ``default_rng(rng)``."""
        self.rng_ = np.random.default_rng(rng)
        self.batch.reset(1, [self.rng_])

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The batched agent's action for the one replicate in state ``obs`` (its state's mask is ``mask``)."""
        return int(self.batch.act(np.array([obs], dtype=np.int64))[0])

    def learn(
        self,
        obs: Observation,
        action: int,
        reward: float,
        next_obs: Observation,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """The batched agent's update for the one replicate."""
        self.batch.learn(
            np.array([obs], dtype=np.int64),
            np.array([action], dtype=np.int64),
            np.array([reward], dtype=float),
            np.array([next_obs], dtype=np.int64),
        )

    @property
    def name(self) -> str:
        return type(self.batch).__name__
