"""Baseline orchestrators: fixed placements, random, a profile-based greedy rule, and the state-of-the-art stand-in.

Constructor convention (all classes here): ``(observation_space, action_space, system, **hyperparameters)``,
where ``system`` is the environment's :class:`~orchlib.system.simulator.System`. The baselines read only its
*public, static* part: the offline profiles (``median_ms``), payload and result sizes, link RTTs, worker
counts and the variant table (accuracy). None of them is privileged: at run time they see the observation,
the mask and the public ``info``. The clairvoyant oracle, which needs the live environment, is
:class:`orchlib.agents.oracle.OracleAgent`. :func:`orchlib.agents.catalogue.make_agent` builds any of them from an env.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from orchlib.agents.base import Agent, Observation, random_valid_action
from orchlib.agents.qlearning import QLearning
from orchlib.system import latency
from orchlib.system.engine import SNAPSHOT_COLUMNS
from orchlib.system.scenario import TIERS, LinkSpec
from orchlib.system.simulator import CLOUD, EDGE, END, System

#: the measurements :class:`GreedyProfiles` reads from ``info`` (all public; see ``Snapshot``): the engine's
#: snapshot columns, under the same names in the env's info.
GREEDY_INFO_KEYS: tuple[str, ...] = SNAPSHOT_COLUMNS


def _check_system(system: System, action_space: gym.spaces.Discrete) -> None:
    if not isinstance(system, System):
        raise TypeError(f"system must be an orchlib.system.simulator.System, got {type(system).__name__}")
    if int(action_space.n) != system.n_actions:
        raise ValueError(
            f"action_space has {action_space.n} actions but system has {system.n_actions} (3 tiers x "
            f"{system.n_variants} variants)"
        )


def _downlink_ratio(link: LinkSpec) -> float:
    """Downlink rate / uplink rate of a link, as configured (a replayed trace drives both directions alike)."""
    if link.trace is not None and not link.trace_rescale:
        return 1.0
    return link.downlink_mbps / link.uplink_mbps


def profile_latency_ms(
    system: System,
    access_mbps: float,
    wan_mbps: float,
    access_backlog_ms: float = 0.0,
    device_backlog_ms: float = 0.0,
    edge_in_system: int = 0,
    cloud_in_system: int = 0,
    device_class: int = 0,
) -> np.ndarray:
    """Estimated response time of every action from the profiles and a few measurements (Neurosurgeon-style).

    Per variant ``v`` (medians from the profiles, transfers at the measured rates, held constant)::

        end   = device_backlog + median[end, v] + overhead[end]
        up    = access_backlog + input_bytes[v] / access_rate                  (the shared uplink is FIFO)
        edge  = up + rtt_access/2 + wait_edge + median[edge, v] + result / access_down_rate + rtt_access/2
                + overhead[edge]
        cloud = up + rtt_access/2 + input_bytes[v] / wan_rate + rtt_wan/2 + wait_cloud + median[cloud, v]
                + result / wan_down_rate + rtt_wan/2 + result / access_down_rate + rtt_access/2
                + overhead[cloud]

    ``overhead`` is each tier's fixed per-request protocol cost (``TierSpec.request_overhead_ms``, L11), a
    configured constant like the RTT.

    A server with ``k`` workers and ``n`` requests in it is assumed to hold ``max(0, n - k + 1)`` requests ahead
    of a newcomer, each costing this variant's median, shared by ``k`` workers; the work drains while the
    input travels, so ``wait = max(0, work - travel time)``. The queued requests' real variants, compute
    noise and the link's future rate are unknown to a real orchestrator, so this is an estimate, not the
    simulator's exact answer (:meth:`orchlib.system.simulator.Simulator.evaluate`). Downlink rates are the measured
    uplink rate times the link's configured downlink/uplink ratio.

    Args:
        system: the profiles, sizes and links.
        access_mbps, wan_mbps: measured uplink rates, Mbit/s (> 0).
        access_backlog_ms: time until the shared uplink has sent the uploads queued on it, ms.
        device_backlog_ms: time until the requesting device has finished its queued inferences, ms.
        edge_in_system, cloud_in_system: requests at the edge / cloud server not yet finished.
        device_class: the requesting user's device class (index into ``system.device_classes``), whose
            profile gives the end tier's medians.

    Returns:
        Estimated response time of every action, ms, shape ``(system.n_actions,)`` (action = tier * V + v).

    Raises:
        ValueError: a rate that is not positive, or a backlog or count that is negative.
    """
    return profile_latency_ms_batch(
        system,
        *(
            np.array([value], dtype=float)
            for value in (
                access_mbps,
                wan_mbps,
                access_backlog_ms,
                device_backlog_ms,
                edge_in_system,
                cloud_in_system,
            )
        ),
        device_class=np.array([int(device_class)]),
    )[0]


def profile_latency_ms_batch(
    system: System,
    access_mbps: np.ndarray,
    wan_mbps: np.ndarray,
    access_backlog_ms: np.ndarray,
    device_backlog_ms: np.ndarray,
    edge_in_system: np.ndarray,
    cloud_in_system: np.ndarray,
    device_class: np.ndarray,
) -> np.ndarray:
    """:func:`profile_latency_ms` of ``B`` requests at once (the one implementation of the estimate).

    Args: as :func:`profile_latency_ms`, each an array of shape (B,).

    Returns:
        Estimated response time of every action of every request, ms, shape (B, n_actions).

    Raises:
        ValueError: a rate that is not positive, or a backlog or count that is negative.
    """
    access_mbps = np.asarray(access_mbps, dtype=float)[:, None]
    wan_mbps = np.asarray(wan_mbps, dtype=float)[:, None]
    rates = np.concatenate((access_mbps.ravel(), wan_mbps.ravel()))
    if not np.all(rates > 0):
        raise ValueError(f"access_mbps and wan_mbps must be > 0, got {rates[~(rates > 0)][0]!r}")
    for name, value in (
        ("access_backlog_ms", access_backlog_ms),
        ("device_backlog_ms", device_backlog_ms),
        ("edge_in_system", edge_in_system),
        ("cloud_in_system", cloud_in_system),
    ):
        value = np.ravel(value)
        if not np.all(value >= 0):
            raise ValueError(f"{name} must be >= 0, got {value[~(value >= 0)][0]!r}")
    scenario = system.scenario
    median = system.median_ms
    bits_per_ms = 1e3  # 1 Mbit/s carries 1e3 bits per ms
    result_bits = system.result_bytes * latency.BITS_PER_BYTE
    input_bits = system.input_bytes * latency.BITS_PER_BYTE
    access_down = result_bits / (access_mbps * _downlink_ratio(scenario.access) * bits_per_ms)
    wan_down = result_bits / (wan_mbps * _downlink_ratio(scenario.wan) * bits_per_ms)
    half_access, half_wan = system.access_rtt_ms / 2, system.wan_rtt_ms / 2

    def wait(tier: int, n_in_system: np.ndarray, travel_ms: np.ndarray, n_workers: int) -> np.ndarray:
        ahead = np.maximum(0, np.asarray(n_in_system, dtype=float) - n_workers + 1)[:, None]
        # ahead == 0 gives 0 (also keeps 0 * inf, a variant the tier cannot run, from becoming NaN)
        with np.errstate(invalid="ignore"):
            queued = np.maximum(0.0, ahead * median[tier] / n_workers - travel_ms)
        return np.where(ahead == 0, 0.0, queued)

    overhead_end, overhead_edge, overhead_cloud = system.overhead_ms
    end = (
        np.asarray(device_backlog_ms, dtype=float)[:, None]
        + system.device_median_ms[device_class]
        + overhead_end
    )
    at_edge = (
        np.asarray(access_backlog_ms, dtype=float)[:, None]
        + input_bits / (access_mbps * bits_per_ms)
        + half_access
    )
    edge = (
        at_edge
        + wait(EDGE, edge_in_system, at_edge, scenario.edge.n_workers)
        + median[EDGE]
        + access_down
        + half_access
        + overhead_edge
    )
    at_cloud = at_edge + input_bits / (wan_mbps * bits_per_ms) + half_wan
    cloud = (
        at_cloud
        + wait(CLOUD, cloud_in_system, at_cloud, scenario.cloud.n_workers)
        + median[CLOUD]
        + wan_down
        + half_wan
        + access_down
        + half_access
        + overhead_cloud
    )
    return np.concatenate((end, edge, cloud), axis=1)


class _OnTier(Agent):
    """Shared part of the fixed-placement baselines: always the tier ``tier`` (a class attribute)."""

    #: END, EDGE or CLOUD, set by each concrete class.
    tier: ClassVar[int]

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, system: System
    ) -> None:
        super().__init__(observation_space, action_space)
        _check_system(system, action_space)
        self.system = system
        self._n_variants = system.n_variants
        self._median = system.median_ms[self.tier]

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to learn; keeps an ``rng_`` for the interface."""
        self.rng_ = np.random.default_rng(rng)

    def _median_for(self, info: Mapping[str, Any]) -> np.ndarray:
        """Profiled medians on this tier; on the end tier those of the requesting user's device class (public)."""
        if self.tier == END:
            return self.system.device_median_ms[int(info.get("device_class", 0))]
        return self._median

    def _tier_mask(self, mask: np.ndarray) -> np.ndarray:
        """Which variants the mask allows on this tier (raises if none)."""
        on_tier = np.asarray(mask, dtype=bool)[
            self.tier * self._n_variants : (self.tier + 1) * self._n_variants
        ]
        if on_tier.shape != (self._n_variants,) or not on_tier.any():
            raise ValueError(f"{self.name}: the mask allows no variant on tier {self.tier}")
        return on_tier

    def _fallback(self, mask: np.ndarray, info: Mapping[str, Any]) -> int | None:
        """When this tier can run no valid variant for the request (a device without the kernels the
        requirement needs), the fastest valid variant on the first tier after it that has one; else None."""
        mask = np.asarray(mask, dtype=bool)
        if mask[self.tier * self._n_variants : (self.tier + 1) * self._n_variants].any():
            return None
        for tier in [t for t in (END, EDGE, CLOUD) if t != self.tier]:
            on_tier = mask[tier * self._n_variants : (tier + 1) * self._n_variants]
            if on_tier.any():
                median = self.system.median_ms[tier] if tier != END else self._median_for(info)
                return tier * self._n_variants + int(np.argmin(np.where(on_tier, median, np.inf)))
        raise ValueError(f"{self.name}: the mask allows no action")


class _MostAccurateOnTier(_OnTier):
    """The most accurate variant (ties: the faster by profile) on the class's tier."""

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, system: System
    ) -> None:
        super().__init__(observation_space, action_space, system)
        # lexsort's last key is primary: highest top-1 first, then lowest median on this tier.
        best = int(np.lexsort((self._median, -system.top1_pct))[0])
        self._variant = best
        self._action = system.encode_action(self.tier, best)

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The most accurate variant on the tier; where the mask forbids it (a device or tier that cannot run
        it), the most accurate variant the mask allows.

        Raises:
            ValueError: the mask allows no variant on the tier.
        """
        fallback = self._fallback(mask, info)
        if fallback is not None:
            return fallback
        on_tier = self._tier_mask(mask)
        if on_tier[self._variant]:
            return self._action
        # This device or tier cannot run the most accurate variant: the most accurate one it can run.
        median = np.where(on_tier, self._median_for(info), np.inf)
        accuracy = np.where(on_tier, self.system.top1_pct, -np.inf)
        return self.tier * self._n_variants + int(np.lexsort((median, -accuracy))[0])


class _FastestOnTier(_OnTier):
    """The variant with the lowest profiled median compute time on the class's tier among those the mask allows."""

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Fastest valid variant on the tier (ties: lowest index)."""
        fallback = self._fallback(mask, info)
        if fallback is not None:
            return fallback
        variant = int(np.argmin(np.where(self._tier_mask(mask), self._median_for(info), np.inf)))
        return self.tier * self._n_variants + variant


class LocalMostAccurate(_MostAccurateOnTier):
    """Always on the user's own device, with the most accurate variant. Not privileged.

    Where the user's device can run no variant meeting the request's requirement, the fastest valid variant
    on the edge (then the cloud) is used, as a local-first application would fall back.
    """

    tier = END


class EdgeMostAccurate(_MostAccurateOnTier):
    """Always on the edge server, with the most accurate variant. Not privileged."""

    tier = EDGE


class CloudMostAccurate(_MostAccurateOnTier):
    """Always in the cloud, with the most accurate variant. Not privileged."""

    tier = CLOUD


class LocalFastest(_FastestOnTier):
    """Always on the user's own device, with the fastest (by profile) variant meeting the requirement. Not privileged.

    Where the device can run no valid variant, the fastest valid variant on the edge (then the cloud).
    """

    tier = END


class EdgeFastest(_FastestOnTier):
    """Always on the edge server, with the fastest (by profile) variant meeting the requirement. Not privileged."""

    tier = EDGE


class CloudFastest(_FastestOnTier):
    """Always in the cloud, with the fastest (by profile) variant meeting the requirement. Not privileged."""

    tier = CLOUD


class RandomValid(Agent):
    """A uniformly random action among those the mask allows. Not privileged.

    Args:
        observation_space, action_space: the environment's spaces.
        system: the environment's system (only checked against ``action_space``; kept for the common
            constructor convention).
    """

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, system: System
    ) -> None:
        super().__init__(observation_space, action_space)
        _check_system(system, action_space)
        self.system = system

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Reseed."""
        self.rng_ = np.random.default_rng(rng)

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """A uniformly random valid action."""
        return random_valid_action(np.asarray(mask, dtype=bool), self.rng_)


class GreedyProfiles(Agent):
    """Neurosurgeon-style greedy rule: the valid action of lowest :func:`profile_latency_ms` estimate. Not privileged.

    Per request, the response time of every action is estimated from the offline profiles (median compute per
    tier and variant), payload sizes and RTTs, and the measurements in the public ``info`` (keys
    :data:`GREEDY_INFO_KEYS`: last measured access and WAN rates, uplink and device backlogs, requests at the
    edge and cloud). It takes the lowest estimate among the valid actions (ties: lowest index). It never
    learns. The rule is Neurosurgeon's (Kang et al., ASPLOS 2017: latency predicted from per-layer profiles
    and the current bandwidth and server load) applied to whole-model placement and variant choice.

    Args:
        observation_space, action_space: the environment's spaces (the observation is not used).
        system: the environment's system, for its profiles, sizes, RTTs and worker counts.

    Raises:
        TypeError, ValueError: ``system`` is not a System or does not match ``action_space``.
    """

    def __init__(
        self, observation_space: gym.Space, action_space: gym.spaces.Discrete, system: System
    ) -> None:
        super().__init__(observation_space, action_space)
        _check_system(system, action_space)
        self.system = system

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to learn; keeps an ``rng_`` for the interface."""
        self.rng_ = np.random.default_rng(rng)

    def estimates_ms(self, info: Mapping[str, Any]) -> np.ndarray:
        """Estimated response time of every action for the request ``info`` describes, ms.

        Raises:
            KeyError: ``info`` lacks one of :data:`GREEDY_INFO_KEYS` (the message names it).
        """
        missing = [key for key in GREEDY_INFO_KEYS if key not in info]
        if missing:
            raise KeyError(f"GreedyProfiles needs info keys {missing} (it reads {list(GREEDY_INFO_KEYS)})")
        return profile_latency_ms(
            self.system,
            *(info[key] for key in GREEDY_INFO_KEYS),
            device_class=int(info.get("device_class", 0)),
        )

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The valid action of lowest estimated response time."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("mask must allow at least one action, got all False")
        return int(np.argmin(np.where(mask, self.estimates_ms(info), np.inf)))


class LocationOnlyQLearning(Agent):
    """The "state of the art" stand-in: Q-learning that chooses only *where* to run, always the most accurate model.

    Not privileged. The paper compares against an unnamed state-of-the-art orchestrator; the stand-in is the
    usual design of RL offloading before model selection was added (see ``shared/PAPER.md``): tabular
    Q-learning over three actions (end, edge, cloud) on the same discrete observation, always serving the
    most accurate variant (which meets every accuracy requirement). Internally it is an
    :class:`orchlib.agents.qlearning.QLearning` over ``Discrete(3)``, built with the given hyperparameters (the
    catalogue passes the same ones as the full Q-learning orchestrator); location ``t`` maps to action
    ``t * n_variants + v_best``.

    Args:
        observation_space: ``Discrete(S)``.
        action_space: the environment's ``Discrete(3 * n_variants)``.
        system: the environment's system (variant accuracies).
        **q_learning_kwargs: hyperparameters of :class:`~orchlib.agents.qlearning.QLearning` (its defaults otherwise).

    Raises:
        TypeError: the observation space is not Discrete, or a hyperparameter has the wrong type.
        ValueError: a hyperparameter outside its range.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        system: System,
        **q_learning_kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space)
        _check_system(system, action_space)
        self.system = system
        self.q_learning_kwargs = q_learning_kwargs
        self._location_space = gym.spaces.Discrete(len(TIERS))
        # Built now so that bad hyperparameters are refused at construction, named by QLearning's checks.
        QLearning(observation_space, self._location_space, **q_learning_kwargs)
        # The most accurate variant (ties: the smallest payload, as it matters most off the device).
        best = int(np.lexsort((system.input_bytes, -system.top1_pct))[0])
        self._actions = np.array([system.encode_action(tier, best) for tier in (END, EDGE, CLOUD)])

    @property
    def actions(self) -> np.ndarray:
        """The full action of each location (end, edge, cloud), shape (3,)."""
        return self._actions.copy()

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """A fresh inner Q-learner; reseed."""
        self.rng_ = np.random.default_rng(rng)
        self.q_learning_ = QLearning(self.observation_space, self._location_space, **self.q_learning_kwargs)
        self.q_learning_.reset(self.rng_)

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Epsilon-greedy location; the most accurate variant there."""
        location_mask = np.asarray(mask, dtype=bool)[self._actions]
        return int(self._actions[self.q_learning_.act(obs, location_mask, info)])

    def learn(
        self,
        obs: Observation,
        action: int,
        reward: float,
        next_obs: Observation,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Q-learning update of the location that ``action`` used.

        Raises:
            ValueError: ``action`` is not one of :attr:`actions`.
        """
        locations = np.flatnonzero(self._actions == action)
        if locations.size != 1:
            raise ValueError(f"{self.name} only takes actions {self._actions.tolist()}, got {action!r}")
        next_location_mask = np.asarray(next_mask, dtype=bool)[self._actions]
        self.q_learning_.learn(obs, int(locations[0]), reward, next_obs, next_location_mask, info)
