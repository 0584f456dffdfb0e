"""Tabular Q-learning (the paper's orchestrator) and Dyna-Q (the companion paper's hybrid learning).

Both work on a ``gymnasium.spaces.Discrete`` observation (the encoded system state) and restrict every choice,
and every max in a target, to the actions the accuracy mask allows. They are written for speed: one
:meth:`QLearning.act` plus one :meth:`QLearning.learn` costs a few microseconds, because the per-mask arrays
are cached (:class:`orchlib.agents.base.MaskTable`) and nothing is allocated beyond a tie check.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from orchlib.agents.base import Agent, MaskTable, check_action_reward, check_int, check_real, penalised_argmax


def check_hyperparameters(
    alpha: float,
    alpha_exponent: float,
    gamma: float,
    epsilon: float,
    epsilon_min: float,
    epsilon_decay: float,
    initial_q: float,
    explore_per_action: float | None,
) -> None:
    """Validate tabular Q-learning's hyperparameters (ranges in :class:`QLearning`'s docstring), naming the bad one.

    Shared by :class:`QLearning` and its batched form (``orchlib.agents.batched.BatchQLearning``).
    """
    check_real("alpha", alpha, 0.0, 1.0, low_open=True)
    check_real("alpha_exponent", alpha_exponent, 0.0, 1.0)
    check_real("gamma", gamma, 0.0, 1.0, high_open=True)
    check_real("epsilon", epsilon, 0.0, 1.0)
    check_real("epsilon_min", epsilon_min, 0.0, epsilon)
    check_real("epsilon_decay", epsilon_decay, 0.0, 1.0, low_open=True)
    check_real("initial_q", initial_q)
    if explore_per_action is not None:
        check_real("explore_per_action", explore_per_action, 0.0, low_open=True)


def exploration_probability(
    t: int,
    epsilon: float,
    epsilon_decay: float,
    epsilon_min: float,
    explore_per_action: float | None = None,
    n_valid: Any = None,
    k: Any = None,
) -> Any:
    """``max(epsilon_min, min(epsilon * epsilon_decay ** t, explore_per_action * n_valid / k))`` (the per-state
    term only with ``explore_per_action``); ``n_valid`` and ``k`` may be arrays (one per replicate).

    The one statement of the exploration schedule: :meth:`QLearning.epsilon_at` and the batched form call it
    (``QLearning.act`` repeats it inline for speed).
    """
    global_epsilon = epsilon * epsilon_decay**t
    if explore_per_action is None:
        return np.maximum(global_epsilon, epsilon_min)
    return np.maximum(np.minimum(global_epsilon, explore_per_action * n_valid / k), epsilon_min)


#: Q-learning's hyperparameters, in :class:`QLearning`'s order (its batched form takes the same).
Q_HYPERPARAMETERS: tuple[str, ...] = (
    "alpha",
    "alpha_exponent",
    "gamma",
    "epsilon",
    "epsilon_min",
    "epsilon_decay",
    "initial_q",
    "explore_per_action",
)


class QLearning(Agent):
    """Tabular Q-learning with epsilon-greedy exploration over the valid (masked) actions.

    Update after each served request ``(s, a, r, s')`` with next mask ``M'``::

        n(s, a)  += 1
        alpha_t   = alpha / n(s, a) ** alpha_exponent
        Q(s, a)  += alpha_t * (r + gamma * max_{a' in M'} Q(s', a') - Q(s, a))

    Decision ``t`` (``t = 0, 1, ...`` counts calls to :meth:`act` since :meth:`reset`) in state ``s`` with
    ``|V|`` valid actions, the ``k``-th decision in ``s`` (``k = 1, 2, ...``), explores with probability::

        epsilon_t(s) = max(epsilon_min, min(epsilon * epsilon_decay ** t, explore_per_action * |V| / k))

    a uniformly random valid action; otherwise it takes the valid action of largest ``Q(s, .)``, ties broken
    uniformly at random. The per-state term sizes exploration to the number of valid actions: a state keeps
    exploring fully until it has been met about ``explore_per_action`` times per valid action, then explores
    as ``1 / k``, the GLIE schedule of Singh et al. (Machine Learning 2000, "Convergence results for
    single-step on-policy reinforcement-learning algorithms", epsilon = c / n(s)). ``explore_per_action=None``
    drops the term (the global geometric schedule alone).

    ``alpha_exponent = 0`` gives a constant learning rate, which keeps tracking a changing system; an exponent
    in (1/2, 1] gives rates whose sum diverges and whose sum of squares converges, the conditions under which
    tabular Q-learning converges (Even-Dar & Mansour 2003 compare the speed of these polynomial rates). ``Q`` starts at ``initial_q``
    everywhere. The default 0 is optimistic here because every reward (minus a response time) is negative:
    an untried action looks better than any tried one, which drives the agent to try each valid action once.

    Args:
        observation_space: ``Discrete(S)`` (any ``start``).
        action_space: ``Discrete(A)``.
        alpha: base learning rate, in (0, 1].
        alpha_exponent: exponent ``omega`` of the visit-count decay of the learning rate, in [0, 1].
        gamma: discount factor, in [0, 1). 1 is excluded because the task is continuing (no episode ends), so
            undiscounted values would diverge.
        epsilon: exploration probability at the first decision, in [0, 1].
        epsilon_min: floor of the exploration probability, in [0, epsilon].
        epsilon_decay: per-decision multiplicative decay, in (0, 1]; 1 keeps ``epsilon`` constant.
        initial_q: initial value of every ``Q(s, a)``, any finite number (seconds, negative = pessimistic).
        explore_per_action: ``c`` of the per-state term ``c * |V| / k``, > 0, or None for no per-state term.

    Raises:
        TypeError: the observation space is not ``Discrete`` or a hyperparameter has the wrong type.
        ValueError: a hyperparameter is outside the range given above (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        alpha: float = 0.1,
        alpha_exponent: float = 0.0,
        gamma: float = 0.9,
        epsilon: float = 1.0,
        epsilon_min: float = 0.01,
        epsilon_decay: float = 0.999,
        initial_q: float = 0.0,
        explore_per_action: float | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise TypeError(
                f"{type(self).__name__} needs a Discrete observation_space, got {type(observation_space).__name__}"
            )
        check_hyperparameters(
            alpha, alpha_exponent, gamma, epsilon, epsilon_min, epsilon_decay, initial_q, explore_per_action
        )
        self.alpha = alpha
        self.alpha_exponent = alpha_exponent
        self.gamma = gamma
        self.epsilon = epsilon
        self.epsilon_min = epsilon_min
        self.epsilon_decay = epsilon_decay
        self.initial_q = initial_q
        self.explore_per_action = explore_per_action
        self.n_states = int(observation_space.n)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget Q, visit counts and the decision counter; reseed ``self.rng_``."""
        self.rng_ = np.random.default_rng(rng)
        self.q_table_ = np.full((self.n_states, self.n_actions), float(self.initial_q))  # Q(s, a), seconds
        # Real updates of each (s, a); drives the learning-rate decay. Python ints on the hot path are faster
        # than numpy scalars, so the counts live in a list of lists.
        self.visits_ = [[0] * self.n_actions for _ in range(self.n_states)]
        self.n_decisions_ = 0
        self.state_decisions_ = [0] * self.n_states  # decisions taken in each state (k - 1 of the next one)
        # Hot-path constants and scratch space (not learned state).
        self._masks = MaskTable(self.n_actions)
        self._buffer = np.empty(self.n_actions)
        self._start = int(self.observation_space.start)
        self._alpha = float(self.alpha)
        self._neg_omega = -float(self.alpha_exponent)
        self._gamma = float(self.gamma)
        self._epsilon = float(self.epsilon)
        self._epsilon_min = float(self.epsilon_min)
        self._epsilon_decay = float(self.epsilon_decay)
        self._per_action = None if self.explore_per_action is None else float(self.explore_per_action)

    def epsilon_at(self, t: int, n_valid: int | None = None, k: int | None = None) -> float:
        """Exploration probability of decision ``t`` (0-based), the ``k``-th in a state with ``n_valid`` valid actions.

        Without ``n_valid`` and ``k`` (or with ``explore_per_action=None``), the global schedule alone.
        """
        per_action = self._per_action if n_valid is not None and k is not None else None
        return float(
            exploration_probability(
                t, self._epsilon, self._epsilon_decay, self._epsilon_min, per_action, n_valid, k
            )
        )

    def _state(self, obs: Any) -> int:
        s = operator.index(obs) - self._start
        if not 0 <= s < self.n_states:
            raise ValueError(f"obs must be in the observation space {self.observation_space}, got {obs!r}")
        return s

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Epsilon-greedy valid action in state ``obs``."""
        s = self._state(obs)
        penalty, valid = self._masks.get(mask)
        t = self.n_decisions_
        self.n_decisions_ = t + 1
        k = self.state_decisions_[s] + 1
        self.state_decisions_[s] = k
        epsilon = self._epsilon * self._epsilon_decay**t  # epsilon_at(t, |V|, k), inlined for speed
        if self._per_action is not None:
            per_state = self._per_action * valid.size / k
            if per_state < epsilon:
                epsilon = per_state
        if epsilon < self._epsilon_min:
            epsilon = self._epsilon_min
        rng = self.rng_
        if rng.random() < epsilon:
            return int(valid[int(rng.random() * valid.size)])
        return penalised_argmax(self.q_table_[s], penalty, self._buffer, rng)

    def _update(self, s: int, a: int, reward: float, s_next: int, next_penalty: np.ndarray, n: int) -> None:
        """One Q-learning step on ``Q(s, a)`` with learning rate ``alpha / n ** omega``."""
        buffer = self._buffer
        np.add(self.q_table_[s_next], next_penalty, out=buffer)
        target = reward + self._gamma * float(buffer[buffer.argmax()])
        q_row = self.q_table_[s]
        old = float(q_row[a])
        q_row[a] = old + self._alpha * n**self._neg_omega * (target - old)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """One Q-learning update from a served request.

        Raises:
            ValueError: ``obs``/``next_obs``/``action`` outside their spaces, ``reward`` not finite, or a bad
                ``next_mask``.
        """
        s = self._state(obs)
        s_next = self._state(next_obs)
        a, reward = check_action_reward(action, reward, self.n_actions)
        penalty, _ = self._masks.get(next_mask)
        visits = self.visits_[s]
        n = visits[a] + 1
        visits[a] = n
        self._update(s, a, reward, s_next, penalty, n)

    def greedy_policy(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Greedy action of every state (lowest index on ties), restricted to ``mask`` if given; shape (S,)."""
        q = self.q_table_ if mask is None else np.where(mask, self.q_table_, -np.inf)
        return q.argmax(axis=1)


class DynaQ(QLearning):
    """Dyna-Q: Q-learning plus planning on a model learned from the real requests (Sutton & Barto 2018, 8.2).

    After each real update (exactly :class:`QLearning`'s), the model of the pair ``(s, a)`` is updated with the
    request's reward and outcome, then ``n_planning`` simulated updates follow. Each picks a previously
    seen pair ``(s, a)`` uniformly at random, uses the model's mean reward
    ``R(s, a) = sum of rewards / n(s, a)``, draws an outcome ``(s', M')`` with probability
    ``count(s, a -> s', M') / n(s, a)``, and applies the same update with learning rate
    ``alpha / n(s, a) ** alpha_exponent`` (``n`` = real visits; simulated updates do not count as visits).

    Implementation details and assumptions:

    1. The model's outcome is the pair (next state, next mask), counted jointly, so a simulated target maxes
       over the actions that were valid when that next state was really seen. The mask belongs to the next
       request's accuracy requirement, which the state may not encode.
    2. Unlike the book's deterministic model, outcomes are sampled from their counts, because the next
       request's state (network level, load) is random.
    3. ``n_planning = 0`` draws no random numbers and so is exactly :class:`QLearning` (tested).

    Args:
        n_planning: simulated updates after each real one, an integer >= 0.
        Other arguments: as :class:`QLearning`.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        alpha: float = 0.1,
        alpha_exponent: float = 0.0,
        gamma: float = 0.9,
        epsilon: float = 1.0,
        epsilon_min: float = 0.01,
        epsilon_decay: float = 0.999,
        initial_q: float = 0.0,
        explore_per_action: float | None = None,
        n_planning: int = 10,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            alpha=alpha,
            alpha_exponent=alpha_exponent,
            gamma=gamma,
            epsilon=epsilon,
            epsilon_min=epsilon_min,
            epsilon_decay=epsilon_decay,
            initial_q=initial_q,
            explore_per_action=explore_per_action,
        )
        check_int("n_planning", n_planning, 0)
        self.n_planning = n_planning

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget Q and the model; reseed."""
        super().reset(rng)
        self.reward_sums_ = np.zeros(
            (self.n_states, self.n_actions)
        )  # sum of real rewards of (s, a), seconds
        # For each seen pair, keyed s * A + a: {(next state, next-mask id): count}, in first-seen order.
        self.outcome_counts_: dict[int, dict[tuple[int, int], int]] = {}
        self.seen_pairs_: list[int] = []  # keys of outcome_counts_, for uniform sampling
        self.next_penalties_: list[np.ndarray] = []  # mask id -> additive penalty (0 valid, -inf invalid)
        self._mask_ids: dict[bytes, int] = {}

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Real Q-learning update, model update, then ``n_planning`` simulated updates."""
        next_mask = np.asarray(next_mask)
        super().learn(obs, action, reward, next_obs, next_mask, info)
        s = operator.index(obs) - self._start
        s_next = operator.index(next_obs) - self._start
        a = operator.index(action)
        self.reward_sums_[s, a] += float(reward)
        mask_key = next_mask.tobytes()
        mask_id = self._mask_ids.get(mask_key)
        if mask_id is None:
            mask_id = len(self.next_penalties_)
            self._mask_ids[mask_key] = mask_id
            self.next_penalties_.append(self._masks.get(next_mask)[0])
        pair = s * self.n_actions + a
        outcomes = self.outcome_counts_.get(pair)
        if outcomes is None:
            outcomes = self.outcome_counts_[pair] = {}
            self.seen_pairs_.append(pair)
        outcome = (s_next, mask_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self._plan(self.n_planning)

    def _plan(self, n_updates: int) -> None:
        rng = self.rng_
        pairs = self.seen_pairs_
        for _ in range(n_updates):
            pair = pairs[int(rng.random() * len(pairs))]
            s, a = divmod(pair, self.n_actions)
            n = self.visits_[s][a]
            # Inverse-CDF draw of an outcome from its counts; the counts sum to n.
            u = rng.random() * n
            # If round-off leaves u >= 0 after the last outcome, that last outcome is the right draw.
            for outcome, count in self.outcome_counts_[pair].items():
                s_next, mask_id = outcome
                u -= count
                if u < 0.0:
                    break
            self._update(s, a, float(self.reward_sums_[s, a]) / n, s_next, self.next_penalties_[mask_id], n)
