"""Orchestrators that start from the a-priori profiled model and correct it with the response times they observe.

:class:`AdaptiveGreedy` is the strong non-learning-in-spirit baseline: the profile greedy rule with one
exponentially weighted correction per (tier, device class). :class:`ProfileHybrid` is the hybrid learner: it
plans every request with the profiled model and learns, from real rewards, a multiplicative residual per
(tier, variant, device class) with its confidence, pooled across variants of a tier, so that real response
times take over where the model is wrong. Both read the request's measurements from the public ``info`` through
:meth:`orchlib.agents.baselines.GreedyProfiles.estimates_ms`, so whatever that estimator reads (today the access
and WAN rates, backlogs and server loads; in a grounded world also the device class and a bandwidth estimate)
they read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from orchlib.agents.base import Observation, check_real, masked_argmax
from orchlib.agents.baselines import GreedyProfiles
from orchlib.system.scenario import Scenario
from orchlib.system.simulator import System

#: AdaptiveGreedy's weight of the newest observed/estimated ratio (choice: about the last 20 requests of a
#: tier count, short enough to follow throttling within seconds at the paper's 16 requests/s).
ADAPTIVE_BETA = 0.05

#: ProfileHybrid's prior strength (pseudo-requests), spread of one log residual and optimism multiplier.
#: Choices (docs/assumptions.md, A7): 3 real requests outweigh the model for a pair; sigma 0.3 is a prior for
#: worlds with hidden conditions, about log(1.28 to 1.35), the size of the throughput change from ambient
#: temperature alone in Benoit-Cattin et al. (arXiv 2010.06291: up to 27.7%); on the full-information `paper`
#: world the measured spread of log(observed / estimated) under the greedy rule is 0.003 (the model is exact).
#: kappa 1 makes an untried action look at most exp(0.3 / sqrt(3)) = 1.19 times faster than its estimate.
HYBRID_DEFAULTS: dict[str, float] = {"prior_count": 3.0, "sigma": 0.3, "kappa": 1.0}


def adaptive_factor_update(factor: np.ndarray, ratio: np.ndarray, beta: float) -> np.ndarray:
    """:class:`AdaptiveGreedy`'s correction step: ``factor + beta * (ratio - factor)`` (arrays broadcast)."""
    return factor + beta * (ratio - factor)


def log_ratio(observed_ms: np.ndarray, estimate_ms: np.ndarray) -> np.ndarray:
    """``log(observed / estimate)`` of served requests (both floored at 1e-9 ms): the hybrid's residual sample."""
    return np.log(np.maximum(observed_ms, 1e-9) / np.maximum(estimate_ms, 1e-9))


def residual_update(
    sums: np.ndarray, squares: np.ndarray, counts: np.ndarray, sample: np.ndarray, keep: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:class:`ProfileHybrid`'s residual statistics after one more log-ratio ``sample``: the weighted sums,
    sums of squares and counts of the served (class, action) or (class, tier) entries, the older ones weighted
    by the forgetting factor ``keep`` (``lambda``) (arrays broadcast; the batched form calls it too)."""
    return keep * sums + sample, keep * squares + sample**2, keep * counts + 1.0


def residual_log_mean_sd(
    sums: np.ndarray,
    squares: np.ndarray,
    counts: np.ndarray,
    tier_sums: np.ndarray,
    tier_squares: np.ndarray,
    tier_counts: np.ndarray,
    prior_count: float,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu, v, sd)`` of the log residual of every action (:class:`ProfileHybrid`'s formulas) from the
    statistics of one device class: ``sums``/``squares``/``counts`` (..., n_actions), the tier's (..., 3)."""
    k0 = float(prior_count)
    n_variants = sums.shape[-1] // 3
    mu_tier = tier_sums / (tier_counts + k0)
    mu = (sums + k0 * np.repeat(mu_tier, n_variants, axis=-1)) / (counts + k0)
    v_tier = _weighted_variance(tier_sums, tier_squares, tier_counts)
    v_action = _weighted_variance(sums, squares, counts)
    v = (counts * v_action + k0 * np.repeat(v_tier, n_variants, axis=-1)) / (counts + k0)
    return mu, v, float(sigma) / np.sqrt(counts + k0)


def hybrid_log_score(
    estimates_ms: np.ndarray, mu: np.ndarray, v: np.ndarray, sd: np.ndarray, kappa: float
) -> np.ndarray:
    """``log(m(a)) + mu + v / 2 - kappa * sd``: the log of :class:`ProfileHybrid`'s optimistic corrected mean."""
    return np.log(np.maximum(estimates_ms, 1e-9)) + mu + 0.5 * v - float(kappa) * sd


def _n_device_classes(system: System) -> int:
    """Number of end-device classes of ``system`` (1 where the system has a single device type)."""
    return max(1, len(getattr(system, "device_classes", ()) or ()))


def _device_class(info: Mapping[str, Any], n_classes: int) -> int:
    """The requesting device's class from ``info`` (key ``device_class``; 0 when the world has one class)."""
    c = int(info.get("device_class", 0))
    if not 0 <= c < n_classes:
        raise ValueError(f"info['device_class'] must be in [0, {n_classes}), got {c}")
    return c


def drift_forgetting(scenario: Scenario) -> float:
    """The hybrid's per-update forgetting factor for ``scenario``'s hidden drift (assumption A7).

    The residual of a (tier, variant, device class) should follow the device-side hidden conditions: a busy
    background app (on for ``BackgroundLoad.mean_on_s``, 10 s) and thermal throttling (heating time constant
    ``Thermal.heat_time_constant_s``, 30 s). With ``T`` the shorter of the two that the scenario has and
    ``r`` the requests per second of one device class (``n_users * rate_per_s / n_device_classes``; closed-loop
    users count one request per think time), the exponentially weighted mean's memory ``1 / (1 - lambda)`` is
    ``T * r / 2`` updates, so its mean age is half the shortest drift period. The edge's co-tenant process
    switches every 0.1-0.15 s, faster than a cell sees requests, so it is noise to the residual and does not
    set the factor. Without hidden device load (``ideal``): 1, a running mean (nothing drifts).

    Returns:
        lambda in (0, 1]; the weight of the past after one more observation of the same cell.
    """
    periods = []
    if scenario.background is not None:
        periods.append(scenario.background.mean_on_s)
    if scenario.thermal is not None:
        periods.append(scenario.thermal.heat_time_constant_s)
    if not periods:
        return 1.0
    arrivals = scenario.arrivals
    per_user = (
        arrivals.rate_per_s if arrivals.process == "poisson" else 1e3 / max(arrivals.think_time_ms, 1.0)
    )
    n_classes = 1 if scenario.fleet is None else len(scenario.fleet.classes)
    memory = min(periods) * scenario.n_users * per_user / n_classes / 2.0
    return 1.0 - 1.0 / memory if memory > 1.0 else 0.0


def _weighted_variance(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Variance from (weighted) sums, sums of squares and counts; 0 where fewer than two observations."""
    safe = np.maximum(counts, 1e-12)
    return np.where(counts > 1.0, np.maximum(squares / safe - (sums / safe) ** 2, 0.0), 0.0)


class AdaptiveGreedy(GreedyProfiles):
    """Greedy on the profiles, with an exponentially weighted correction per (tier, device class). Not privileged.

    Decision: the valid action of lowest ``estimate(a) * factor[tier(a), c]``, where ``estimate`` is
    :meth:`GreedyProfiles.estimates_ms` for this request and ``c`` its device class. After each served request
    the factor of the tier and class it used moves towards the observed/estimated ratio::

        factor[t, c] <- (1 - beta) * factor[t, c] + beta * observed_ms / estimate_ms

    Factors start at 1, so with an exact model it is exactly :class:`GreedyProfiles` until the first
    correction and stays near it. It explores nothing: a tier whose factor grew is only tried again if the
    others get slower; that is the weakness a learner has to beat.

    Args:
        observation_space, action_space, system: as :class:`GreedyProfiles`.
        beta: weight of the newest ratio, in (0, 1].

    Raises:
        TypeError, ValueError: a bad ``system`` or ``beta`` (named).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        system: System,
        beta: float = ADAPTIVE_BETA,
    ) -> None:
        super().__init__(observation_space, action_space, system)
        check_real("beta", beta, 0.0, 1.0, low_open=True)
        self.beta = beta
        self._n_classes = _n_device_classes(system)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Factors back to 1; reseed."""
        super().reset(rng)
        self.factor_ = np.ones((3, self._n_classes))  # multiplies the estimate of (tier, device class)
        self._pending: tuple[int, int, float] | None = None  # (action, device class, estimate_ms) of act()

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The valid action of lowest corrected estimate (ties: lowest index)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("mask must allow at least one action, got all False")
        c = _device_class(info, self._n_classes)
        estimates = self.estimates_ms(info)
        corrected = estimates * np.repeat(self.factor_[:, c], self.system.n_variants)
        a = int(np.argmin(np.where(mask, corrected, np.inf)))
        self._pending = (a, c, float(estimates[a]))
        return a

    def learn(
        self,
        obs: Observation,
        action: int,
        reward: float,
        next_obs: Observation,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Move the used (tier, class) factor towards observed/estimated (needs ``info['latency_ms']``)."""
        if self._pending is None or self._pending[0] != int(action):
            return  # not the request this agent just decided (e.g. a scripted action): nothing to compare
        a, c, estimate = self._pending
        self._pending = None
        tier = a // self.system.n_variants
        ratio = float(info["latency_ms"]) / max(estimate, 1e-9)
        self.factor_[tier, c] = adaptive_factor_update(self.factor_[tier, c], ratio, self.beta)


class ProfileHybrid(GreedyProfiles):
    """Hybrid learning from the profiled model: plan with the model, learn its residual from real rewards.

    Not privileged. **Planning.** For every request the model (:meth:`GreedyProfiles.estimates_ms`: profiles,
    payload sizes, the measured rates and queue state in the public ``info``) predicts the response time
    ``m(a)`` of every action, which is minus ``Q`` of the request with a one-request horizon; the measured
    knock-on effect of a decision on later requests is about 1% of its own effect
    (:mod:`orchlib.study.influence`), so a longer planning horizon adds nothing here.

    **Residual.** The observed response time is ``m(a) * rho`` with an unknown multiplicative residual ``rho``
    per (tier, variant, device class) that drifts with hidden conditions. Its logarithm is learned from real
    rewards with a prior pooled over the tier's variants: with ``S``, ``n`` the exponentially weighted sum and
    effective sample size of ``log(observed / m)`` of the pair (each new observation: ``S <- lambda * S + x``,
    ``n <- lambda * n + 1``, with the forgetting factor ``lambda``) and ``S_t``, ``n_t`` those of its
    (tier, class)::

        mu_tier = S_t / (n_t + k0)                 (shrunk towards 0: the model is right until shown otherwise)
        mu      = (S + k0 * mu_tier) / (n + k0)    (the variant's own evidence takes over as n grows)
        v       = (n * v_a + k0 * v_t) / (n + k0)  (spread of log(observed / m): the pair's, pooled with its tier's)
        sd      = sigma / sqrt(n + k0)             (confidence)
        score(a) = m(a) * exp(mu + v / 2 - kappa * sd)

    ``exp(mu + v / 2)`` is the *mean* of a log-normal ratio, not its median ``exp(mu)``: the objective is the
    mean response time, so an action whose response times spread (a queue behind co-tenant jobs, a device
    that is sometimes throttled) must be charged for the spread. ``v_a`` and ``v_t`` are the weighted sample
    variances (0 before two observations).

    The valid action of lowest score is served (ties at random). ``kappa * sd`` is optimism in the face of
    uncertainty: an action tried little looks up to ``exp(kappa * sigma / sqrt(k0))`` times faster than its
    estimate, so actions the model places near the best get tried, and a model that is too optimistic about
    an action is corrected by the first few real response times (a throttled device, a loaded server, a
    mis-profiled tier). A model too *pessimistic* about an action by more than that factor is not corrected
    (the action is never tried): the price of starting at the model's level.

    **Forgetting.** ``lambda`` < 1 bounds the effective sample size by ``1 / (1 - lambda)``, so a residual
    follows a device that slows down (or speeds up, while it is still being used) within about that many of
    its requests, and its confidence never exceeds that many observations' worth. A cell that is no longer
    tried keeps its last value (as :class:`AdaptiveGreedy`'s factors do): forgetting per observation, not per
    second, so actions known to be slow are not re-tried on a clock. ``lambda`` = 1 is a running mean.

    Args:
        observation_space, action_space, system: as :class:`GreedyProfiles`.
        prior_count: ``k0``, pseudo-observations of the prior (the model), > 0.
        sigma: assumed spread of one ``log(observed / m)``, > 0.
        kappa: optimism multiplier, >= 0.
        forgetting: ``lambda`` in [0, 1]; None: :func:`drift_forgetting` of the system's scenario.

    Raises:
        TypeError, ValueError: a bad ``system`` or hyperparameter (named).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        system: System,
        prior_count: float = HYBRID_DEFAULTS["prior_count"],
        sigma: float = HYBRID_DEFAULTS["sigma"],
        kappa: float = HYBRID_DEFAULTS["kappa"],
        forgetting: float | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, system)
        check_real("prior_count", prior_count, 0.0, low_open=True)
        check_real("sigma", sigma, 0.0, low_open=True)
        check_real("kappa", kappa, 0.0)
        if forgetting is not None:
            check_real("forgetting", forgetting, 0.0, 1.0)
        self.prior_count = prior_count
        self.sigma = sigma
        self.kappa = kappa
        self.forgetting = forgetting
        self._lambda = float(drift_forgetting(system.scenario) if forgetting is None else forgetting)
        self._n_classes = _n_device_classes(system)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Forget every residual; reseed."""
        super().reset(rng)
        shape = (self._n_classes, self.n_actions)
        self.log_ratio_sums_ = np.zeros(shape)  # weighted sum of log(observed / m) per (class, action)
        self.log_ratio_squares_ = np.zeros(shape)  # weighted sum of log(observed / m)^2 per (class, action)
        self.counts_ = np.zeros(shape)  # effective number of real requests per (class, action)
        self.tier_sums_ = np.zeros((self._n_classes, 3))  # the same, pooled per (class, tier)
        self.tier_counts_ = np.zeros((self._n_classes, 3))
        self.tier_squares_ = np.zeros((self._n_classes, 3))
        self._pending: tuple[int, int, float] | None = None  # (action, device class, m(action) ms) of act()

    @property
    def forgetting_factor(self) -> float:
        """``lambda`` in use: ``forgetting``, or :func:`drift_forgetting` of the scenario when that is None."""
        return self._lambda

    def residual(self, device_class: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mu, v, sd)`` of the log residual of every action for ``device_class`` (its mean, spread and the
        confidence of the mean); shapes (n_actions,)."""
        return residual_log_mean_sd(
            self.log_ratio_sums_[device_class],
            self.log_ratio_squares_[device_class],
            self.counts_[device_class],
            self.tier_sums_[device_class],
            self.tier_squares_[device_class],
            self.tier_counts_[device_class],
            self.prior_count,
            self.sigma,
        )

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The valid action of lowest optimistic corrected estimate."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("mask must allow at least one action, got all False")
        c = _device_class(info, self._n_classes)
        estimates = self.estimates_ms(info)
        mu, v, sd = self.residual(c)
        # Scores are compared as logs (a product of positive factors): minus the score is the request's Q.
        log_score = hybrid_log_score(estimates, mu, v, sd, self.kappa)
        a = masked_argmax(-log_score, mask, self.rng_)
        self._pending = (a, c, float(estimates[a]))
        return a

    def learn(
        self,
        obs: Observation,
        action: int,
        reward: float,
        next_obs: Observation,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Add the served request's ``log(observed / m)`` to its action's and tier's residual statistics (the
        older ones weighted down by the forgetting factor)."""
        if self._pending is None or self._pending[0] != int(action):
            return  # not the request this agent just decided: no model prediction to compare with
        a, c, estimate = self._pending
        self._pending = None
        sample = float(log_ratio(float(info["latency_ms"]), estimate))
        tier = a // self.system.n_variants
        keep = self._lambda
        self.log_ratio_sums_[c, a], self.log_ratio_squares_[c, a], self.counts_[c, a] = residual_update(
            self.log_ratio_sums_[c, a], self.log_ratio_squares_[c, a], self.counts_[c, a], sample, keep
        )
        self.tier_sums_[c, tier], self.tier_squares_[c, tier], self.tier_counts_[c, tier] = residual_update(
            self.tier_sums_[c, tier], self.tier_squares_[c, tier], self.tier_counts_[c, tier], sample, keep
        )
