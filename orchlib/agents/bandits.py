"""Multi-armed bandit orchestrators, and wrappers that give a bandit one copy per state or per user.

Every arm is an action (tier, model variant); each choice is restricted to the arms the accuracy mask allows.
Rewards are minus response times in seconds, so they are negative and unbounded below: the index policies take
a reward *scale* ``c`` in seconds where the textbook versions assume rewards in [0, 1], and :class:`Exp3`
maps rewards into [0, 1] through a stated ``reward_range``.

Non-contextual bandits (:class:`EpsilonGreedy`, :class:`UCB1`, :class:`GaussianThompson`, :class:`Exp3`,
:class:`SlidingWindowUCB`) ignore the observation; :class:`LinUCB` reads a ``Box`` observation as its context;
:class:`PerState` and :class:`PerUser` keep one independent learner per discrete state or per user.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
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
    penalised_argmax,
)

AgentFactory = Callable[[gym.Space, gym.spaces.Discrete], Agent]
"""Builds a fresh, un-reset agent from ``(observation_space, action_space)``, e.g. ``functools.partial(UCB1, c=0.5)``."""


#: the mean UCB1 stores for an arm never pulled: the largest float, so that its index (0 bonus: ``n ** -1/2`` is
#: stored as 0) comes first, and several unpulled arms tie (broken at random).
UNPULLED_MEAN = float(np.finfo(float).max)

#: Exploration probability of :class:`EpsilonGreedy` (constant; the textbook 0.1 of Sutton & Barto, section 2.3).
BANDIT_EPSILON = 0.1

#: UCB1's exploration scale ``c`` by default, seconds (the catalogue derives each world's own from its profiles).
UCB1_C = 1.0

#: Sliding-window length of :class:`SlidingWindowUCB`, in requests (choice: about a minute of the paper scenario's
#: 8 users x 2 requests/s, long enough to average the response-time noise, short enough to follow a network
#: change).
SW_UCB_WINDOW = 1000

#: Exp3's exploration mixture gamma (choice: the common 0.1).
EXP3_GAMMA = 0.1


@numba.njit(cache=True)
def ucb_index(means, inverse_sqrt_counts, bonus, out):
    """UCB1's index of every arm of one replicate into ``out``: ``inverse_sqrt_counts * bonus + means``, i.e.
    ``mean(a) + c * sqrt(xi ln t) / sqrt(n(a))`` with ``bonus = c * sqrt(xi ln t)``; an unpulled arm (mean
    :data:`UNPULLED_MEAN`, ``n ** -1/2`` 0) gets the largest float."""
    for a in range(out.size):
        out[a] = inverse_sqrt_counts[a] * bonus + means[a]


@numba.njit(cache=True)
def ucb_choice(means, inverse_sqrt_counts, valid, n_valid, bonus, uniform, scratch):
    """UCB1's choice for one replicate: the valid arm (``valid[:n_valid]``) of largest :func:`ucb_index`, ties
    (unpulled arms among them) broken by ``uniform`` (:func:`~orchlib.agents.base.argmax_random_tie`); ``scratch``
    (A,)."""
    ucb_index(means, inverse_sqrt_counts, bonus, scratch)
    return argmax_random_tie(scratch, valid, n_valid, uniform)


class EpsilonGreedy(Agent):
    """Sample-average epsilon-greedy bandit (Sutton & Barto 2018, section 2.4).

    Index of arm ``a``: ``Q(a)`` = mean reward of its pulls, or ``initial_value`` before its first pull. With
    probability ``epsilon`` a uniformly random valid arm is pulled, otherwise the valid arm of largest ``Q``
    (ties at random).

    Args:
        observation_space: ignored (any space).
        action_space: ``Discrete(K)``.
        epsilon: exploration probability, constant, in [0, 1].
        initial_value: ``Q`` of an unpulled arm, any finite number in seconds. The default 0 is optimistic
            (every reward is negative), so each valid arm is tried once before exploitation settles.

    Raises:
        ValueError: a hyperparameter outside its range (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        epsilon: float = BANDIT_EPSILON,
        initial_value: float = 0.0,
    ) -> None:
        super().__init__(observation_space, action_space)
        check_real("epsilon", epsilon, 0.0, 1.0)
        check_real("initial_value", initial_value)
        self.epsilon = epsilon
        self.initial_value = initial_value

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget all pulls; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.counts_ = np.zeros(self.n_actions, dtype=np.int64)  # pulls of each arm
        self.values_ = np.full(self.n_actions, float(self.initial_value))  # Q(a), seconds
        self._masks = MaskTable(self.n_actions)
        self._buffer = np.empty(self.n_actions)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Random valid arm with probability ``epsilon``, else the greedy valid arm."""
        penalty, valid = self._masks.get(mask)
        if self.rng_.random() < self.epsilon:
            return int(valid[int(self.rng_.random() * valid.size)])
        return penalised_argmax(self.values_, penalty, self._buffer, self.rng_)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Incremental sample mean of the pulled arm."""
        a, r = check_action_reward(action, reward, self.n_actions)
        self.counts_[a] += 1
        self.values_[a] += (r - self.values_[a]) / self.counts_[a]


class UCB1(Agent):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002) with a reward scale.

    Index of a pulled arm ``a``::

        mean(a) + c * sqrt(2 * ln(t) / n(a))

    with ``n(a)`` its pulls and ``t`` the total pulls of all arms. Valid arms never pulled come first (chosen
    uniformly at random among them); otherwise the valid arm of largest index is pulled (ties at random).
    The textbook version has ``c = 1`` for rewards in [0, 1]; here ``c`` carries the reward scale.

    The rule is written once (:func:`ucb_choice`, one uniform per pull in blocks); this class is the one-replicate
    view of :class:`~orchlib.agents.batched.BatchUCB1`, and both choose the same arms bit for bit.

    Args:
        observation_space: ignored (any space).
        action_space: ``Discrete(K)``.
        c: exploration scale in seconds, finite and >= 0 (0 = greedy after one pull each); about the spread of
            the response times between arms.

    Raises:
        ValueError: ``c`` outside its range.
    """

    #: the ``2`` in ``sqrt(2 ln t / n)``; :class:`SlidingWindowUCB` exposes it as ``xi``.
    _xi = 2.0

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, c: float = UCB1_C
    ) -> None:
        super().__init__(observation_space, action_space)
        check_real("c", c, 0.0)
        self.c = c

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget all pulls; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.counts_ = np.zeros(self.n_actions, dtype=np.int64)  # n(a)
        self.sums_ = np.zeros(self.n_actions)  # sum of rewards of arm a, seconds
        self.n_pulls_ = 0  # t
        # Kept up to date by learn() so that act() does a few vector operations (derived from counts_/sums_).
        self.means_ = np.full(
            self.n_actions, UNPULLED_MEAN
        )  # sums_ / counts_ (UNPULLED_MEAN for unpulled arms)
        self.inv_sqrt_counts_ = np.zeros(self.n_actions)  # 1 / sqrt(counts_) (0 for unpulled arms)
        self._masks = MaskTable(self.n_actions)
        self._draws = ReplicateUniforms(
            [self.rng_], 1
        )  # one uniform per pull, as BatchUCB1's replicates draw
        self._scratch = np.empty(self.n_actions)

    def _refresh(self, a: int) -> None:
        """Recompute arm ``a``'s mean and 1/sqrt(n) after its count or sum changed."""
        n = int(self.counts_[a])
        self.means_[a] = self.sums_[a] / n if n else UNPULLED_MEAN
        self.inv_sqrt_counts_[a] = 1.0 / math.sqrt(n) if n else 0.0

    def _horizon(self) -> int:
        """The ``t`` inside the logarithm."""
        return self.n_pulls_

    def _bonus(self) -> float:
        """``c * sqrt(xi ln t)`` (0 before the first pull)."""
        return float(self.c) * math.sqrt(self._xi * math.log(max(self._horizon(), 1)))

    def indices(self, mask: np.ndarray) -> np.ndarray:
        """Index of every arm (:func:`ucb_index`): ``inf`` for a valid arm not yet pulled, ``-inf`` for an invalid
        arm."""
        penalty, _ = self._masks.get(mask)
        out = np.empty(self.n_actions)
        ucb_index(self.means_, self.inv_sqrt_counts_, self._bonus(), out)
        out[self.counts_ == 0] = np.inf
        out[penalty < 0] = -np.inf
        return out

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """An unpulled valid arm if any (random among them), else the valid arm of largest index
        (:func:`ucb_choice`)."""
        _, valid = self._masks.get(mask)
        uniform = self._draws.take()[0, 0]
        return int(
            ucb_choice(
                self.means_, self.inv_sqrt_counts_, valid, valid.size, self._bonus(), uniform, self._scratch
            )
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
        """Count the pull and add its reward."""
        a, r = check_action_reward(action, reward, self.n_actions)
        self.counts_[a] += 1
        self.sums_[a] += r
        self.n_pulls_ += 1
        self._refresh(a)


class SlidingWindowUCB(UCB1):
    """Sliding-window UCB (Garivier & Moulines 2011) for rewards that drift, e.g. with network conditions.

    Only the last ``tau`` pulls (of any arm) count. Index of an arm pulled ``N(a) > 0`` times in the window::

        window_mean(a) + c * sqrt(xi * ln(min(t, tau)) / N(a))

    with ``t`` the total pulls so far. Valid arms absent from the window come first (random among them). In
    the paper's notation ``c`` is the reward bound ``B``; they require ``xi > 1/2`` for their regret bound.
    The default ``xi = 2`` makes the algorithm identical to :class:`UCB1` while ``t <= tau`` (tested).

    Args:
        observation_space: ignored (any space).
        action_space: ``Discrete(K)``.
        tau: window length in pulls, an integer >= 1.
        c: exploration scale in seconds, finite and >= 0.
        xi: exploration exponent constant, finite and > 0.

    Raises:
        ValueError: a hyperparameter outside its range (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        tau: int = SW_UCB_WINDOW,
        c: float = UCB1_C,
        xi: float = 2.0,
    ) -> None:
        super().__init__(observation_space, action_space, c=c)
        check_int("tau", tau, 1)
        check_real("xi", xi, 0.0, low_open=True)
        self.tau = tau
        self.xi = xi

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget the window; reseed."""
        super().reset(rng)
        self._xi = float(self.xi)
        # Ring buffers of the last tau pulls: slot t % tau holds pull t. counts_/sums_ cover the window only.
        self.window_actions_ = np.zeros(self.tau, dtype=np.int64)
        self.window_rewards_ = np.zeros(self.tau)

    def _horizon(self) -> int:
        return min(self.n_pulls_, self.tau)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Push the pull into the window, dropping the one ``tau`` pulls old."""
        a, r = check_action_reward(action, reward, self.n_actions)
        slot = self.n_pulls_ % self.tau
        if self.n_pulls_ >= self.tau:
            old = self.window_actions_[slot]
            self.counts_[old] -= 1
            # Reset an emptied arm's sum exactly, so float round-off cannot accumulate across windows.
            self.sums_[old] = self.sums_[old] - self.window_rewards_[slot] if self.counts_[old] else 0.0
            self._refresh(int(old))
        self.window_actions_[slot] = a
        self.window_rewards_[slot] = r
        self.counts_[a] += 1
        self.sums_[a] += r
        self.n_pulls_ += 1
        self._refresh(a)


class GaussianThompson(Agent):
    """Thompson sampling with a Normal prior and Normal rewards (Normal-Normal conjugate).

    Arm ``a``'s mean reward has prior ``N(prior_mean, prior_std**2)``. After ``n`` pulls with sample mean
    ``m`` and noise variance ``s2``, its posterior is ``N(mu, 1 / precision)`` with::

        precision = 1 / prior_std**2 + n / s2
        mu        = (prior_mean / prior_std**2 + n * m / s2) / precision

    Each decision draws one sample per arm from its posterior and pulls the valid arm of largest sample.

    Noise variance: if ``noise_std`` is given it is known, ``s2 = noise_std**2`` for every arm. If it is None it
    is estimated per arm as ``s2 = (M2 + prior_std**2) / n``, where ``M2`` is the arm's sum of squared
    deviations from its mean: the sample variance with one extra pseudo-deviation of size ``prior_std``, so
    that one or two close rewards cannot collapse the posterior and stop exploration (an implementation
    choice, not from a paper). Response-time noise differs a lot between tiers, hence per arm.

    Args:
        observation_space: ignored (any space).
        action_space: ``Discrete(K)``.
        prior_mean: prior mean reward in seconds, finite. The default 0 is optimistic (rewards are negative).
        prior_std: prior standard deviation in seconds, finite and > 0.
        noise_std: known reward noise standard deviation in seconds (finite, > 0), or None to estimate it.

    Raises:
        ValueError: a hyperparameter outside its range (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        prior_mean: float = 0.0,
        prior_std: float = 1.0,
        noise_std: float | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        check_real("prior_mean", prior_mean)
        check_real("prior_std", prior_std, 0.0, low_open=True)
        if noise_std is not None:
            check_real("noise_std", noise_std, 0.0, low_open=True)
        self.prior_mean = prior_mean
        self.prior_std = prior_std
        self.noise_std = noise_std

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget all pulls; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.counts_ = np.zeros(self.n_actions, dtype=np.int64)  # n
        self.means_ = np.zeros(self.n_actions)  # m, seconds (0 before the first pull; then unused weight 0)
        self.m2_ = np.zeros(self.n_actions)  # M2, Welford's sum of squared deviations, seconds^2
        self._masks = MaskTable(self.n_actions)
        self._buffer = np.empty(self.n_actions)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of every arm's mean reward (seconds), each of shape (K,)."""
        prior_precision = 1.0 / float(self.prior_std) ** 2
        if self.noise_std is None:
            noise_var = (self.m2_ + float(self.prior_std) ** 2) / np.maximum(self.counts_, 1)
        else:
            noise_var = float(self.noise_std) ** 2
        data_precision = self.counts_ / noise_var
        precision = prior_precision + data_precision
        mean = (prior_precision * float(self.prior_mean) + data_precision * self.means_) / precision
        return mean, 1.0 / np.sqrt(precision)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Pull the valid arm whose posterior sample is largest."""
        penalty, _ = self._masks.get(mask)
        mean, std = self.posterior()
        # One draw per arm, valid or not, so the random stream does not depend on the mask.
        sample = mean + std * self.rng_.standard_normal(self.n_actions)
        return penalised_argmax(sample, penalty, self._buffer, self.rng_)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Welford update of the pulled arm's mean and squared deviations."""
        a, r = check_action_reward(action, reward, self.n_actions)
        self.counts_[a] += 1
        delta = r - self.means_[a]
        self.means_[a] += delta / self.counts_[a]
        self.m2_[a] += delta * (r - self.means_[a])


class LinUCB(Agent):
    """Disjoint LinUCB (Li, Chu, Langford & Schapire 2010, Algorithm 1) on a ``Box`` observation.

    The context ``x`` is the flattened observation with a constant 1 appended (so each arm also learns a bias;
    response times are far from 0). Per arm ``a``, ridge regression of reward on ``x``::

        A_a = regularization * I + sum of x x^T over a's pulls,   b_a = sum of r x,   theta_a = A_a^-1 b_a
        index(a) = theta_a^T x + alpha * sqrt(x^T A_a^-1 x)

    The valid arm of largest index is pulled (ties at random). ``A_a^-1`` is kept up to date with the
    Sherman-Morrison formula, ``O(d^2)`` per pull instead of an ``O(d^3)`` inversion.

    Args:
        observation_space: a ``Box``; its features should be of order 1 (e.g. normalised).
        action_space: ``Discrete(K)``.
        alpha: width of the confidence bonus in seconds, finite and >= 0.
        regularization: ridge parameter lambda, finite and > 0.

    Raises:
        TypeError: the observation space is not a ``Box``.
        ValueError: a hyperparameter outside its range (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        alpha: float = 1.0,
        regularization: float = 1.0,
    ) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(observation_space, gym.spaces.Box):
            raise TypeError(f"LinUCB needs a Box observation_space, got {type(observation_space).__name__}")
        check_real("alpha", alpha, 0.0)
        check_real("regularization", regularization, 0.0, low_open=True)
        self.alpha = alpha
        self.regularization = regularization
        self.n_features = int(np.prod(observation_space.shape)) + 1

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget all regressions; reseed."""
        self.rng_ = np.random.default_rng(rng)
        d = self.n_features
        self.a_inverse_ = np.tile(np.eye(d) / float(self.regularization), (self.n_actions, 1, 1))  # A_a^-1
        self.b_ = np.zeros((self.n_actions, d))  # b_a, seconds x feature units
        self.theta_ = np.zeros((self.n_actions, d))  # theta_a = A_a^-1 b_a
        self._masks = MaskTable(self.n_actions)
        self._buffer = np.empty(self.n_actions)

    def _context(self, obs: Any) -> np.ndarray:
        flat = np.asarray(obs, dtype=float).reshape(-1)
        if flat.size != self.n_features - 1:
            raise ValueError(f"obs must have {self.n_features - 1} features, got shape {np.shape(obs)}")
        return np.append(flat, 1.0)

    def indices(self, obs: Any) -> np.ndarray:
        """Index of every arm for observation ``obs``, shape (K,)."""
        x = self._context(obs)
        spread = np.einsum("kij,i,j->k", self.a_inverse_, x, x)
        return self.theta_ @ x + float(self.alpha) * np.sqrt(np.maximum(spread, 0.0))

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Valid arm of largest index."""
        penalty, _ = self._masks.get(mask)
        return penalised_argmax(self.indices(obs), penalty, self._buffer, self.rng_)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Rank-one Sherman-Morrison update of the pulled arm's ``A^-1``, then ``b`` and ``theta``."""
        a, r = check_action_reward(action, reward, self.n_actions)
        x = self._context(obs)
        a_inverse = self.a_inverse_[a]
        u = a_inverse @ x
        a_inverse -= np.outer(u, u) / (1.0 + x @ u)
        self.b_[a] += r * x
        self.theta_[a] = a_inverse @ self.b_[a]


class Exp3(Agent):
    """Exp3 for adversarial bandits (Auer, Cesa-Bianchi, Freund & Schapire 2002), restricted to valid arms.

    With ``k`` valid arms and weights ``w``, the arm is drawn with probability::

        p(a) = (1 - gamma) * w(a) / sum of w over valid arms + gamma / k     (0 for invalid arms)

    The reward is mapped into [0, 1] by ``x = clip((r - low) / (high - low), 0, 1)`` with
    ``reward_range = (low, high)`` in seconds, and only the pulled arm's weight changes::

        w(a) <- w(a) * exp(gamma * x / (p(a) * k))

    Renormalising over the valid arms with ``k`` the number of valid arms is this implementation's way to
    respect the mask (Exp3 itself has no masks). Weights are kept as logarithms so they cannot overflow.
    :meth:`learn` must follow the :meth:`act` that chose the action, because it needs that draw's ``p(a)``.

    Args:
        observation_space: ignored (any space).
        action_space: ``Discrete(K)``.
        reward_range: ``(low, high)`` rewards in seconds mapped to 0 and 1; finite, ``low < high``. Rewards
            outside are clipped. E.g. ``(-5.0, 0.0)`` for response times of at most 5 s.
        gamma: exploration mixture and learning rate, in (0, 1].

    Raises:
        ValueError: a hyperparameter outside its range (the message names it); :meth:`learn` for an action
            other than the last one chosen.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        reward_range: tuple[float, float],
        gamma: float = EXP3_GAMMA,
    ) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(reward_range, tuple | list) or len(reward_range) != 2:
            raise ValueError(f"reward_range must be a pair (low, high) of seconds, got {reward_range!r}")
        check_real("reward_range[0]", reward_range[0])
        check_real("reward_range[1]", reward_range[1], reward_range[0], low_open=True)
        check_real("gamma", gamma, 0.0, 1.0, low_open=True)
        self.reward_range = reward_range
        self.gamma = gamma

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Set every weight to 1; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.log_weights_ = np.zeros(self.n_actions)  # ln w(a)
        self.last_action_: int | None = None  # the last act()'s choice, its probability and valid-arm count
        self.last_probability_ = 0.0
        self.last_n_valid_ = 0
        self._masks = MaskTable(self.n_actions)

    def probabilities(self, mask: np.ndarray) -> np.ndarray:
        """Probability of drawing each arm under ``mask``, shape (K,), zero on invalid arms."""
        penalty, valid = self._masks.get(mask)
        log_w = self.log_weights_ + penalty
        w = np.exp(log_w - log_w.max())  # shifting by the max avoids overflow; exp(-inf) = 0 on invalid arms
        gamma = float(self.gamma)
        p = (1.0 - gamma) * w / w.sum()
        p[valid] += gamma / valid.size
        return p

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Draw an arm from :meth:`probabilities` by inverse CDF."""
        p = self.probabilities(mask)
        cdf = np.cumsum(p)
        a = int(np.searchsorted(cdf, self.rng_.random() * cdf[-1], side="right"))
        # Round-off could point past the last positive-probability arm; step back to a valid one.
        while a >= self.n_actions or p[a] == 0.0:
            a -= 1
        self.last_action_ = a
        self.last_probability_ = float(p[a])
        self.last_n_valid_ = int(np.count_nonzero(p))
        return a

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Exponential-weight update of the pulled arm with the importance-weighted mapped reward."""
        a, r = check_action_reward(action, reward, self.n_actions)
        if a != self.last_action_:
            raise ValueError(f"Exp3.learn got action {a}, but the last act() chose {self.last_action_}")
        low, high = float(self.reward_range[0]), float(self.reward_range[1])
        x = min(max((r - low) / (high - low), 0.0), 1.0)
        gamma = float(self.gamma)
        self.log_weights_[a] += gamma * x / (self.last_probability_ * self.last_n_valid_)
        self.last_action_ = None


class _Independent(Agent):
    """One independent learner per integer key, each built lazily by ``factory`` and seeded from its key.

    Learner ``k`` is reset with ``default_rng(SeedSequence(entropy, spawn_key=(k,)))``, where ``entropy`` is
    drawn once from ``self.rng_`` at reset: the same seed gives every key the same stream whatever order the
    keys appear in.
    """

    _label = ""

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, factory: AgentFactory
    ):
        super().__init__(observation_space, action_space)
        if not callable(factory):
            raise TypeError(
                f"factory must be callable (observation_space, action_space) -> Agent, got {factory!r}"
            )
        prototype = factory(observation_space, action_space)
        if not isinstance(prototype, Agent):
            raise TypeError(f"factory must return an orchlib Agent, got {type(prototype).__name__}")
        self.factory = factory
        self._inner_name = prototype.name

    @property
    def name(self) -> str:
        """E.g. ``"PerState(UCB1)"``."""
        return f"{self._label}({self._inner_name})"

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Drop every learner; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.entropy_ = int(self.rng_.integers(2**63))
        self.learners_: dict[int, Agent] = {}

    def learner(self, key: int) -> Agent:
        """The learner of ``key`` (a non-negative int), created and seeded on first use."""
        learner = self.learners_.get(key)
        if learner is None:
            learner = self.factory(self.observation_space, self.action_space)
            learner.reset(np.random.default_rng(np.random.SeedSequence(self.entropy_, spawn_key=(key,))))
            self.learners_[key] = learner
        return learner


class PerState(_Independent):
    """Makes a non-contextual bandit contextual: one independent copy per value of a ``Discrete`` observation.

    Copies are created on the first request in their state. Each copy sees the same observation and mask
    that the wrapper receives, and learns only from requests made in its state.

    Args:
        observation_space: ``Discrete(S)``.
        action_space: ``Discrete(A)``.
        factory: ``(observation_space, action_space) -> Agent``, e.g. ``functools.partial(UCB1, c=0.5)``.

    Raises:
        TypeError: the observation space is not ``Discrete`` or ``factory`` does not build an Agent.
    """

    _label = "PerState"

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, factory: AgentFactory
    ):
        if not isinstance(observation_space, gym.spaces.Discrete):
            raise TypeError(
                f"PerState needs a Discrete observation_space, got {type(observation_space).__name__}"
            )
        super().__init__(observation_space, action_space, factory)

    def _key(self, obs: Any) -> int:
        s = operator.index(obs) - int(self.observation_space.start)
        if not 0 <= s < self.observation_space.n:
            raise ValueError(f"obs must be in the observation space {self.observation_space}, got {obs!r}")
        return s

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Ask the learner of state ``obs``."""
        return self.learner(self._key(obs)).act(obs, mask, info)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Update the learner of state ``obs`` (the state the action was chosen in)."""
        self.learner(self._key(obs)).learn(obs, action, reward, next_obs, next_mask, info)


class PerUser(_Independent):
    """One independent learner per user (``info["user"]``): each user's device learns on its own.

    Copies are created on a user's first request. :meth:`learn` updates the learner that made the last
    :meth:`act` decision, i.e. the user read from the ``info`` given to :meth:`act`, so it does not matter
    whether the ``info`` given to :meth:`learn` describes the served request or the next one. A wrapped
    learner that bootstraps (Q-learning) receives ``next_obs`` as given, which may come from another user's
    request; per-user bandits are unaffected.

    Args:
        observation_space: any space; passed on to each learner.
        action_space: ``Discrete(A)``.
        factory: ``(observation_space, action_space) -> Agent``.

    Raises:
        TypeError: ``factory`` does not build an Agent.
    """

    _label = "PerUser"

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Drop every learner; reseed."""
        super().reset(rng)
        self.last_user_: int | None = None

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Ask the learner of ``info["user"]``.

        Raises:
            ValueError: ``info`` has no ``"user"`` or it is not a non-negative int.
        """
        user = info.get("user") if isinstance(info, Mapping) else None
        try:
            key = operator.index(user)
        except TypeError:
            key = -1
        if key < 0:
            raise ValueError(f"PerUser needs info['user'] to be a non-negative int, got {user!r}")
        self.last_user_ = key
        return self.learner(key).act(obs, mask, info)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Update the learner of the user whose request the last :meth:`act` decided.

        Raises:
            RuntimeError: no :meth:`act` since :meth:`reset`.
        """
        if self.last_user_ is None:
            raise RuntimeError(
                "PerUser.learn() needs a preceding act() to know which user's learner to update"
            )
        self.learner(self.last_user_).learn(obs, action, reward, next_obs, next_mask, info)
