"""Tabular Q-learning (the paper's orchestrator) and Dyna-Q (the companion paper's hybrid learning).

Q-learning's rules are written once, for one replicate, as compiled functions: the exploration schedule
(:func:`exploration_probability`), the epsilon-greedy choice (:func:`epsilon_greedy`) and the TD update
(:func:`td_update`). :class:`BatchQLearning` applies them to ``B`` replicates in lockstep (compiled loops over a
leading replicate axis), :class:`QLearning` to one, behind the per-request :class:`~orchlib.agents.base.Agent`
interface; both draw three uniforms per decision from the replicate's generator in blocks
(:class:`~orchlib.agents.base.ReplicateUniforms`), so given the same generator they choose the same actions and
hold the same values, bit for bit (``tests/test_agents.py``).

Both work on a ``gymnasium.spaces.Discrete`` observation (the encoded system state). Every choice and every max
in a target reads only the valid actions of the mask concerned (a list per mask: :class:`~orchlib.agents.base.MaskTable`
per request, :func:`~orchlib.agents.base.uniform_valid_table` per state in the batched form, whose mask is a
function of the state, the env's ``state_mask``).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numba
import numpy as np

from orchlib.agents.base import (
    Agent,
    MaskTable,
    ReplicateUniforms,
    argmax_random_tie,
    check_action_reward,
    check_int,
    check_real,
    check_state_masks,
    uniform_valid_table,
)
from orchlib.system.engine import replicate_generators


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
    """Validate tabular Q-learning's hyperparameters (ranges in :class:`QHyperparameters`), naming the bad one."""
    check_real("alpha", alpha, 0.0, 1.0, low_open=True)
    check_real("alpha_exponent", alpha_exponent, 0.0, 1.0)
    check_real("gamma", gamma, 0.0, 1.0, high_open=True)
    check_real("epsilon", epsilon, 0.0, 1.0)
    check_real("epsilon_min", epsilon_min, 0.0, epsilon)
    check_real("epsilon_decay", epsilon_decay, 0.0, 1.0, low_open=True)
    check_real("initial_q", initial_q)
    if explore_per_action is not None:
        check_real("explore_per_action", explore_per_action, 0.0, low_open=True)


@numba.njit(cache=True)
def exploration_probability(t, epsilon, epsilon_decay, epsilon_min, explore_per_action, n_valid, k):
    """``max(epsilon_min, min(epsilon * epsilon_decay ** t, explore_per_action * n_valid / k))``: the exploration
    probability of decision ``t`` (0-based, a float), the ``k``-th in a state with ``n_valid`` valid actions; the
    per-state term only when ``explore_per_action`` is not NaN (``QLearning(explore_per_action=None)``).

    The one statement of the exploration schedule, for one replicate (the batched kernel calls it per replicate).
    """
    global_epsilon = epsilon * epsilon_decay**t
    if explore_per_action == explore_per_action:  # not NaN
        per_state = explore_per_action * n_valid / k
        if per_state < global_epsilon:
            global_epsilon = per_state
    return global_epsilon if global_epsilon > epsilon_min else epsilon_min


@numba.njit(cache=True)
def epsilon_greedy(q_row, valid_row, n_valid, uniforms, epsilon):
    """The epsilon-greedy choice in one state of one replicate: with probability ``epsilon`` (``uniforms[0] <
    epsilon``) the ``int(uniforms[1] * n_valid)``-th valid action (``valid_row``: the mask's valid actions first,
    in increasing order), else the valid action of largest ``q_row``, ties broken by ``uniforms[2]``
    (:func:`~orchlib.agents.base.argmax_random_tie`)."""
    if uniforms[0] < epsilon:
        return valid_row[int(uniforms[1] * n_valid)]
    return argmax_random_tie(q_row, valid_row, n_valid, uniforms[2])


@numba.njit(cache=True)
def td_update(q_table, s, a, reward, s_next, next_valid, next_n_valid, gamma, alpha, n, neg_omega):
    """``Q(s, a) += alpha * n ** neg_omega * (reward + gamma * max_{a' valid in s'} Q(s', a') - Q(s, a))`` on one
    replicate's table (S, A), ``n`` being the pair's visits so far (this one included); ``next_valid[:next_n_valid]``
    lists the actions the next mask allows."""
    row = q_table[s_next]
    top = row[next_valid[0]]
    for i in range(1, next_n_valid):
        top = max(top, row[next_valid[i]])
    target = reward + gamma * top
    old = q_table[s, a]
    q_table[s, a] = old + alpha * float(n) ** neg_omega * (target - old)


@numba.njit(cache=True)
def _q_act(
    q_table,
    states,
    uniforms,
    t,
    decisions,
    valid,
    n_valid,
    epsilon,
    decay,
    epsilon_min,
    per_action,
    out,
):
    """:func:`epsilon_greedy` of every replicate ``b`` in state ``states[b]`` into ``out``, with
    :func:`exploration_probability` of decision ``t``, the ``k``-th in that state (``decisions`` (B, S) counts them;
    empty: not counted, no per-state term); ``valid`` (S, A) and ``n_valid`` (S,) list each state's valid actions
    (:func:`~orchlib.agents.base.uniform_valid_table`)."""
    counted = decisions.shape[0] > 0
    for b in range(states.size):
        s = states[b]
        k = 1
        if counted:
            k = decisions[b, s] + 1
            decisions[b, s] = k
        e = exploration_probability(t, epsilon, decay, epsilon_min, per_action, n_valid[s], k)
        out[b] = epsilon_greedy(q_table[b, s], valid[s], n_valid[s], uniforms[b], e)


@numba.njit(cache=True)
def _q_learn(q_table, valid, n_valid, visits, states, actions, rewards, next_states, gamma, alpha, neg_omega):
    """:func:`td_update` in every replicate, counting the visits in ``visits`` (B, S, A) (empty: a constant
    learning rate, ``n ** -0`` is 1); ``valid``, ``n_valid`` as :func:`_q_act`'s."""
    counted = visits.shape[0] > 0
    for b in range(states.size):
        s, a, s_next = states[b], actions[b], next_states[b]
        n = 1
        if counted:
            n = visits[b, s, a] + 1
            visits[b, s, a] = n
        td_update(
            q_table[b], s, a, rewards[b], s_next, valid[s_next], n_valid[s_next], gamma, alpha, n, neg_omega
        )


@dataclass(frozen=True)
class QHyperparameters:
    """Tabular Q-learning's hyperparameters and their defaults, stated once: :class:`QLearning`, :class:`DynaQ`,
    :class:`BatchQLearning` and the location-only stand-in all take these keywords (``**hyperparameters``), and
    the defaults are the textbook values (the catalogue's ``q_learning_textbook``; its ``q_learning`` passes the
    project's own). Validated on construction (:func:`check_hyperparameters`).

    Raises:
        TypeError: an unknown keyword or a value of the wrong type.
        ValueError: a value outside the range given below (the message names it).
    """

    #: base learning rate, in (0, 1].
    alpha: float = 0.1
    #: exponent ``omega`` of the visit-count decay of the learning rate, in [0, 1].
    alpha_exponent: float = 0.0
    #: discount factor, in [0, 1). 1 is excluded because the task is continuing (no episode ends), so
    #: undiscounted values would diverge.
    gamma: float = 0.9
    #: exploration probability at the first decision, in [0, 1].
    epsilon: float = 1.0
    #: floor of the exploration probability, in [0, epsilon].
    epsilon_min: float = 0.01
    #: per-decision multiplicative decay, in (0, 1]; 1 keeps ``epsilon`` constant.
    epsilon_decay: float = 0.999
    #: initial value of every ``Q(s, a)``, any finite number (seconds, negative = pessimistic).
    initial_q: float = 0.0
    #: ``c`` of the per-state exploration term ``c * |V| / k``, > 0, or None for no per-state term.
    explore_per_action: float | None = None

    def __post_init__(self) -> None:
        check_hyperparameters(*dataclasses.astuple(self))

    def apply(self, agent: object) -> None:
        """Set each hyperparameter as an attribute of ``agent`` (``agent.alpha``, ...) and the whole as
        ``agent.hyperparameters``."""
        vars(agent).update(dataclasses.asdict(self), hyperparameters=self)


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
    uniformly at random (:func:`epsilon_greedy`, three uniforms per decision). The per-state term sizes exploration to the number of valid actions: a state keeps
    exploring fully until it has been met about ``explore_per_action`` times per valid action, then explores
    as ``1 / k``, the GLIE schedule of Singh et al. (Machine Learning 2000, "Convergence results for
    single-step on-policy reinforcement-learning algorithms", epsilon = c / n(s)). ``explore_per_action=None``
    drops the term (the global geometric schedule alone).

    ``alpha_exponent = 0`` gives a constant learning rate, which keeps tracking a changing system; an exponent
    in (1/2, 1] gives rates whose sum diverges and whose sum of squares converges, the conditions under which
    tabular Q-learning converges (Even-Dar & Mansour 2003 compare the speed of these polynomial rates). ``Q`` starts at ``initial_q``
    everywhere. The default 0 is optimistic here because every reward (minus a response time) is negative:
    an untried action looks better than any tried one, which drives the agent to try each valid action once.

    This is the one-replicate view of :class:`BatchQLearning`: the same compiled rules and the same draws, so
    where the mask is a function of the state (the env's ``state_mask``) both choose the same actions and hold the
    same values of the valid pairs, bit for bit (``tests/test_agents.py``).

    Args:
        observation_space: ``Discrete(S)`` (any ``start``).
        action_space: ``Discrete(A)``.
        **hyperparameters: the fields of :class:`QHyperparameters` (``alpha``, ``alpha_exponent``, ``gamma``,
            ``epsilon``, ``epsilon_min``, ``epsilon_decay``, ``initial_q``, ``explore_per_action``), with their
            ranges and defaults there; each is also an attribute of the agent.

    Raises:
        TypeError: the observation space is not ``Discrete``, an unknown hyperparameter, or one of the wrong type.
        ValueError: a hyperparameter is outside its range (the message names it).
    """

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, **hyperparameters: Any
    ) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise TypeError(
                f"{type(self).__name__} needs a Discrete observation_space, got {type(observation_space).__name__}"
            )
        QHyperparameters(**hyperparameters).apply(self)
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
        # three uniforms per decision, in blocks, as replicate 0 of BatchQLearning draws them from this generator
        self._draws = ReplicateUniforms([self.rng_], 3)
        # Hot-path constants (not learned state).
        self._masks = MaskTable(self.n_actions)
        self._start = int(self.observation_space.start)
        self._alpha = float(self.alpha)
        self._neg_omega = -float(self.alpha_exponent)
        self._gamma = float(self.gamma)
        self._epsilon = float(self.epsilon)
        self._epsilon_min = float(self.epsilon_min)
        self._epsilon_decay = float(self.epsilon_decay)
        self._per_action = np.nan if self.explore_per_action is None else float(self.explore_per_action)

    def epsilon_at(self, t: int, n_valid: int | None = None, k: int | None = None) -> float:
        """Exploration probability of decision ``t`` (0-based), the ``k``-th in a state with ``n_valid`` valid actions.

        Without ``n_valid`` and ``k`` (or with ``explore_per_action=None``), the global schedule alone.
        """
        per_action = self._per_action if n_valid is not None and k is not None else np.nan
        return float(
            exploration_probability(
                float(t),
                self._epsilon,
                self._epsilon_decay,
                self._epsilon_min,
                per_action,
                1 if n_valid is None else n_valid,
                1 if k is None else k,
            )
        )

    def _state(self, obs: Any) -> int:
        s = operator.index(obs) - self._start
        if not 0 <= s < self.n_states:
            raise ValueError(f"obs must be in the observation space {self.observation_space}, got {obs!r}")
        return s

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Epsilon-greedy valid action in state ``obs`` (:func:`epsilon_greedy`)."""
        s = self._state(obs)
        _, valid = self._masks.get(mask)
        t = self.n_decisions_
        self.n_decisions_ = t + 1
        k = self.state_decisions_[s] + 1
        self.state_decisions_[s] = k
        n_valid = valid.size
        epsilon = exploration_probability(
            float(t), self._epsilon, self._epsilon_decay, self._epsilon_min, self._per_action, n_valid, k
        )
        return int(epsilon_greedy(self.q_table_[s], valid, n_valid, self._draws.take()[0], epsilon))

    def _update(self, s: int, a: int, reward: float, s_next: int, next_valid: np.ndarray, n: int) -> None:
        """One Q-learning step (:func:`td_update`) on ``Q(s, a)`` with learning rate ``alpha / n ** omega``;
        ``next_valid``: the next mask's valid actions."""
        td_update(
            self.q_table_,
            s,
            a,
            reward,
            s_next,
            next_valid,
            next_valid.size,
            self._gamma,
            self._alpha,
            n,
            self._neg_omega,
        )

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
        _, next_valid = self._masks.get(next_mask)
        visits = self.visits_[s]
        n = visits[a] + 1
        visits[a] = n
        self._update(s, a, reward, s_next, next_valid, n)

    def greedy_policy(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Greedy action of every state (lowest index on ties), restricted to ``mask`` if given; shape (S,)."""
        q = self.q_table_ if mask is None else np.where(mask, self.q_table_, -np.inf)
        return q.argmax(axis=1)


#: Dyna-Q's planning updates per real request (reconstruction; the companion paper's value is not public).
DYNA_Q_PLANNING = 10


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
        Other arguments: as :class:`QLearning` (the fields of :class:`QHyperparameters`).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        *,
        n_planning: int = DYNA_Q_PLANNING,
        **hyperparameters: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **hyperparameters)
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
        self.next_valid_: list[np.ndarray] = []  # mask id -> its valid actions
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
            mask_id = len(self.next_valid_)
            self._mask_ids[mask_key] = mask_id
            self.next_valid_.append(self._masks.get(next_mask)[1])
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
            self._update(s, a, float(self.reward_sums_[s, a]) / n, s_next, self.next_valid_[mask_id], n)


class BatchQLearning:
    """:class:`QLearning`'s rules (:func:`epsilon_greedy`, :func:`td_update`) for ``B`` independent replicates in
    lockstep; :class:`QLearning` is its one-replicate view.

    The same update and exploration rule, replicate by replicate (see :class:`~orchlib.agents.qlearning.QLearning`)::

        n(s, a)  += 1
        Q(s, a)  += alpha / n(s, a) ** alpha_exponent * (r + gamma * max_{a' in M(s')} Q(s', a') - Q(s, a))

    Decision ``t`` (the same for every replicate), the ``k``-th of a replicate in state ``s`` with ``|V|`` valid
    actions, explores with probability
    ``max(epsilon_min, min(epsilon * epsilon_decay ** t, explore_per_action * |V| / k))`` (no per-state term
    when ``explore_per_action`` is None): a uniformly random valid action; otherwise the valid action of
    largest ``Q(s, .)``, ties broken uniformly at random.

    The mask is a function of the state: the greedy choice and the target's maximum read only each state's valid
    actions (:func:`~orchlib.agents.base.uniform_valid_table`), and ``Q(s, a)`` of an invalid pair is stored as
    ``-inf`` (never read by the rules, never updated; it marks the pair as unavailable to anyone reading the
    table).

    Args:
        state_masks: bool array (n_states, n_actions), the mask of each state (``BatchEnv.state_masks``).
        **hyperparameters: the fields of :class:`QHyperparameters`, as :class:`QLearning` takes them (the same
            defaults and ranges); each is also an attribute of the agent.

    Raises:
        TypeError: an unknown hyperparameter or one of the wrong type.
        ValueError: a hyperparameter outside its range (named), or bad state masks.
    """

    def __init__(self, state_masks: np.ndarray, **hyperparameters: Any) -> None:
        QHyperparameters(**hyperparameters).apply(self)
        self.state_masks = check_state_masks(state_masks)
        self.n_states, self.n_actions = self.state_masks.shape
        self._valid, self._n_valid = uniform_valid_table(self.state_masks)

    def reset(
        self, n_replicates: int, rng: np.random.Generator | np.random.SeedSequence | int | None = None
    ) -> None:
        """Forget Q, visit counts and the decision counter of ``n_replicates`` replicates; reseed.

        Replicate ``b`` draws from ``replicate_generators(rng, n_replicates)[b]`` (three uniforms per decision:
        explore or not, the random action, the tie break).
        """
        self.draws_ = ReplicateUniforms(replicate_generators(rng, n_replicates), 3)
        row = np.where(self.state_masks, float(self.initial_q), -np.inf)
        # Q(s, a) of each replicate, seconds, shape (B, S, A); -inf marks an invalid pair (class docstring).
        self.q_table_ = np.empty((n_replicates, self.n_states, self.n_actions))
        self.q_table_[...] = row
        # Visit counts only matter for a decaying learning rate; with exponent 0 every n ** -0 is 1.
        self.visits_ = np.zeros(
            self.q_table_.shape if self.alpha_exponent else (0, 0, 0), dtype=np.int32
        )  # (empty: not counted)
        self.n_decisions_ = 0
        # decisions taken in each state, per replicate (the k of the per-state exploration term; empty without it)
        self.state_decisions_ = np.zeros(
            (n_replicates, self.n_states) if self.explore_per_action is not None else (0, 0), dtype=np.int64
        )
        self._rows = np.arange(n_replicates)

    def epsilon_at(self, t: int) -> float:
        """Exploration probability of decision ``t`` (0-based), as :meth:`QLearning.epsilon_at`."""
        return float(
            exploration_probability(
                float(t),
                float(self.epsilon),
                float(self.epsilon_decay),
                float(self.epsilon_min),
                np.nan,
                1,
                1,
            )
        )

    def act(self, states: np.ndarray) -> np.ndarray:
        """Epsilon-greedy valid action of every replicate (:func:`epsilon_greedy`); shape (B,)."""
        t = self.n_decisions_
        self.n_decisions_ += 1
        per_action = np.nan if self.explore_per_action is None else float(self.explore_per_action)
        actions = np.empty(states.size, dtype=np.int64)
        _q_act(
            self.q_table_,
            states,
            self.draws_.take(),
            float(t),
            self.state_decisions_,
            self._valid,
            self._n_valid,
            float(self.epsilon),
            float(self.epsilon_decay),
            float(self.epsilon_min),
            per_action,
            actions,
        )
        return actions

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """One Q-learning update per replicate."""
        _q_learn(
            self.q_table_,
            self._valid,
            self._n_valid,
            self.visits_,
            states,
            actions,
            rewards,
            next_states,
            float(self.gamma),
            float(self.alpha),
            -float(self.alpha_exponent),
        )
