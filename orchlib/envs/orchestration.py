"""The orchestration MDP as a Gymnasium environment, on top of :class:`orchlib.system.simulator.Simulator`."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from orchlib.envs.registration import ENV_ID, register
from orchlib.system.scenario import TIERS, Scenario, preset
from orchlib.system.simulator import Request, Simulator, Snapshot, System, build_system

__all__ = [
    "BOX_FEATURES",
    "DEFAULT_BANDWIDTH_EDGES_MBPS",
    "DEFAULT_DEVICE_LOAD_EDGES",
    "DEFAULT_EDGE_LOAD_EDGES",
    "DEFAULT_FAILURE_LATENCY_S",
    "ENV_ID",
    "PRIVATE_INFO_KEYS",
    "STATE_COMPONENTS",
    "DiscreteState",
    "OrchestrationEnv",
    "discrete_state",
    "public_info",
    "register",
]

#: info keys that reveal what a real orchestrator could not know; only ``privileged`` agents receive them.
PRIVATE_INFO_KEYS: frozenset[str] = frozenset({"oracle_latency_ms", "oracle_action", "regret_ms"})

#: the continuous observation's features, in order (see ``OrchestrationEnv``).
BOX_FEATURES: tuple[str, ...] = (
    "access_mbps",
    "wan_mbps",
    "access_backlog_s",
    "device_backlog_s",
    "edge_in_system",
    "cloud_in_system",
    "requirement_fraction",
    "user_recent_latency_s",
    "device_slowdown_estimate",
)
#: raw upper bounds of the Box features (Mbit/s, Mbit/s, s, s, requests, requests, fraction, s, ratio); larger
#: values clip.
_BOX_HIGH = np.array([1000.0, 10000.0, 100.0, 100.0, 10000.0, 10000.0, 1.0, 100.0, 10.0])
_BOX_SCALE = 1.0 / np.log1p(_BOX_HIGH)


def public_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` without the keys in :data:`PRIVATE_INFO_KEYS`."""
    return {k: v for k, v in info.items() if k not in PRIVATE_INFO_KEYS}


#: the discrete state's components, in encode() order (mixed radix, the last varies fastest).
STATE_COMPONENTS: tuple[str, ...] = (
    "bandwidth_level",
    "edge_load_level",
    "uplink_busy",
    "device_load_level",
    "device_class",
    "requirement_class",
)
#: access-bandwidth level edges, Mbit/s (assumption E3: 5 levels, chosen by the Optuna study).
DEFAULT_BANDWIDTH_EDGES_MBPS: tuple[float, ...] = (2.5, 5.0, 15.0, 30.0)
#: edge-load level edges, requests in the edge system (E3).
DEFAULT_EDGE_LOAD_EDGES: tuple[int, ...] = (1, 2)
#: a failed request (an action its tier or device cannot run, E8) is rewarded as a response after this many
#: seconds: the live testbed's request timeout (``TestbedConfig.request_timeout_s``), which rewards its own
#: failed requests the same way.
DEFAULT_FAILURE_LATENCY_S = 10.0
#: device-load level edge on ``device_slowdown_estimate`` (E7): 1.5, half way between an unloaded device (1)
#: and a throttled one (``Thermal.max_slowdown`` 1.9) or one with a busy background app (2.0).
DEFAULT_DEVICE_LOAD_EDGES: tuple[float, ...] = (1.5,)


def _check_edges(name: str, edges: tuple[float, ...]) -> None:
    if list(edges) != sorted(set(edges)) or any(not e > 0 for e in edges):
        raise ValueError(f"{name} must be strictly increasing positive numbers, got {edges!r}")


def _level(edges: tuple[float, ...], value: Any) -> Any:
    """Number of ``edges`` <= ``value`` (right-closed levels); scalars and arrays alike."""
    # the env's path, once per request: the cheapest test first
    if type(value) is float or type(value) is int:
        return bisect.bisect_right(edges, value)
    if isinstance(value, np.ndarray):
        return np.searchsorted(edges, value, side="right")
    return bisect.bisect_right(edges, value)


@dataclass(frozen=True)
class DiscreteState:
    """The discrete state's definition: which measurements, at which level edges (assumptions E3, E7).

    The one definition that :class:`OrchestrationEnv` (per request), :class:`orchlib.envs.batch.BatchEnv`
    (B replicates) and the live testbed share. Build it with :func:`discrete_state`, which gives the components a world
    does not have (a second device class, hidden device load) a single level, so the ``ideal`` world keeps its
    120 states and its state indices.
    """

    #: access-bandwidth level edges, Mbit/s (on the measured rate or the bandwidth estimate).
    bandwidth_edges_mbps: tuple[float, ...]
    #: edge-load level edges, requests in the edge system.
    edge_load_edges: tuple[int, ...]
    #: device-load level edges on ``device_slowdown_estimate``; () where the world has no hidden device load.
    device_load_edges: tuple[float, ...]
    #: end-device classes (1 without a fleet).
    n_device_classes: int
    #: accuracy-requirement classes.
    n_requirement_classes: int

    @functools.cached_property  # read on every request; the dataclass is frozen, so it never changes
    def shape(self) -> tuple[int, ...]:
        """Sizes of the components, in :data:`STATE_COMPONENTS` order."""
        return (
            len(self.bandwidth_edges_mbps) + 1,
            len(self.edge_load_edges) + 1,
            2,
            len(self.device_load_edges) + 1,
            self.n_device_classes,
            self.n_requirement_classes,
        )

    @property
    def n_states(self) -> int:
        return int(np.prod(self.shape))

    def index(
        self,
        access_mbps: Any,
        edge_in_system: Any,
        access_backlog_ms: Any,
        device_slowdown_estimate: Any,
        device_class: Any,
        requirement_class: Any,
    ) -> Any:
        """The state index of measurements (scalars, or arrays of equal shape for many replicates).

        Args:
            access_mbps: measured access rate or bandwidth estimate, Mbit/s.
            edge_in_system: requests in the edge system.
            access_backlog_ms: queued work on the shared uplink, ms (busy when > 0).
            device_slowdown_estimate: the user's last on-device compute time over its profile median.
            device_class: the requesting device's class (0 without a fleet).
            requirement_class: the request's accuracy-requirement class.
        """
        s = self.shape
        device_load = _level(self.device_load_edges, device_slowdown_estimate) if s[3] > 1 else 0
        state = _level(self.bandwidth_edges_mbps, access_mbps) * s[1] + _level(
            self.edge_load_edges, edge_in_system
        )
        state = state * s[2] + (access_backlog_ms > 0)
        state = (state * s[3] + device_load) * s[4] + device_class
        return state * s[5] + requirement_class

    def encode(self, *components: int) -> int:
        """Flat index of the components (:data:`STATE_COMPONENTS` order; mixed radix over :attr:`shape`)."""
        if len(components) != len(STATE_COMPONENTS):
            raise ValueError(
                f"encode takes {len(STATE_COMPONENTS)} components {STATE_COMPONENTS}, got {components}"
            )
        return int(np.ravel_multi_index(components, self.shape))

    def decode(self, state: int) -> tuple[int, ...]:
        """Inverse of :meth:`encode`."""
        if not 0 <= state < self.n_states:
            raise ValueError(f"state must be in [0, {self.n_states}), got {state}")
        return tuple(int(i) for i in np.unravel_index(int(state), self.shape))

    def masks(self, system: System) -> np.ndarray:
        """The action mask of every state, shape (n_states, n_actions): a function of the state's device class
        and requirement class (``System.device_masks``)."""
        components = np.unravel_index(np.arange(self.n_states), self.shape)
        device_masks = system.device_masks
        if device_masks is None or device_masks.shape[0] != self.n_device_classes:
            raise ValueError(
                f"system has {0 if device_masks is None else device_masks.shape[0]} device classes, the state "
                f"{self.n_device_classes}: build the state with discrete_state(system)"
            )
        return device_masks[components[4], components[5]]


def discrete_state(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
    device_load_edges: tuple[float, ...] = DEFAULT_DEVICE_LOAD_EDGES,
) -> DiscreteState:
    """The discrete state of ``system``'s world (assumptions E3, E7).

    Components a world lacks get one level: the device class without a fleet, the device load without
    hidden device load (``Scenario.thermal`` and ``Scenario.background`` both off, where
    ``device_slowdown_estimate`` only reflects compute noise).

    Raises:
        ValueError: level edges that are not strictly increasing positive numbers (named).
    """
    _check_edges("bandwidth_edges_mbps", bandwidth_edges_mbps)
    _check_edges("edge_load_edges", edge_load_edges)
    _check_edges("device_load_edges", device_load_edges)
    scenario = system.scenario
    hidden_device_load = scenario.thermal is not None or scenario.background is not None
    return DiscreteState(
        bandwidth_edges_mbps=tuple(float(e) for e in bandwidth_edges_mbps),
        edge_load_edges=tuple(int(e) for e in edge_load_edges),
        device_load_edges=tuple(float(e) for e in device_load_edges) if hidden_device_load else (),
        n_device_classes=1 if scenario.fleet is None else len(system.device_classes),
        n_requirement_classes=len(system.requirement_pct),
    )


class OrchestrationEnv(gym.Env):
    """Where to run each inference request, and with which model variant.

    **Description.** Several users' end devices send image-classification requests (MobileNetV1). For
    every request, in time order over all users, the orchestrator chooses a *tier* (the user's own device,
    the shared edge server, or the cloud) and a *model variant* (width x resolution x float32/int8). The
    request's response time follows the profiled latency model of :mod:`orchlib.system.simulator` (shared access
    uplink, FIFO servers, per-user devices); choices change the queues later requests meet.

    **Action.** ``Discrete(3 * n_variants)``; action ``a`` means tier ``a // n_variants`` (0 end, 1 edge,
    2 cloud) and variant ``a % n_variants`` (order of ``system.variant_names``).

    **Observation.** ``observation="discrete"`` (default): ``Discrete(n_states)``, the index
    :meth:`encode` gives to (access-bandwidth level, edge-load level, uplink busy, device-load level, device
    class, accuracy-requirement class), with the level edges ``bandwidth_edges_mbps``, ``edge_load_edges`` and
    ``device_load_edges`` (the device-load level reads ``device_slowdown_estimate``; it and the device class
    have one level in a world without hidden device load or without a fleet, such as ``ideal``). The
    definition is :class:`DiscreteState` (:func:`discrete_state`); :meth:`decode` inverts :meth:`encode`, and
    :meth:`state_mask` gives each state's action mask, a function of its device and requirement classes. ``observation="box"``: ``Box(0, 1)`` of float32 features :data:`BOX_FEATURES`
    (Mbit/s, seconds of backlog, request counts, requirement as a fraction, the user's recent response time
    in seconds, the device-load tracker), each mapped to [0, 1] as
    ``log(1 + x) / log(1 + high)`` with ``high`` the feature's clip value, for function approximation.
    The raw measurements are in ``info`` (see below).
    Both are measurements a real orchestrator has; see ``docs/assumptions.md``.

    **Reward.** ``-response_time_s * reward_scale`` (default: minus the response time in seconds). With
    ``accuracy_mode="penalty"`` a request served by a variant below its accuracy requirement also costs
    ``accuracy_penalty``. With ``accuracy_mode="mask"`` (default) ``info["action_mask"]`` lists the valid
    actions and the reward has no penalty: agents must respect the mask (orchlib's runner refuses an
    agent that does not); an action outside it is still served and reported with ``met_requirement`` False.

    **Actions that cannot run.** Every action of the space is accepted, in both modes. An action whose tier
    cannot run the variant at all (no profile: a GPU-delegate phone and 8-bit models, an NNAPI phone and
    float ones, the int8 cloud accelerator and float ones) gives a **failed request** (assumption E8): it is not
    served and occupies no device, link or server; the reward is ``-failure_latency_s * reward_scale`` (default
    10 s, the live testbed's request timeout, as bad as the slowest answer it waits for) in both modes, with no
    accuracy penalty on top; ``info["failed"]`` is True, ``info["error"]`` says why, the response time and its
    parts are NaN (``regret_ms`` too), ``met_requirement`` is False. In a closed loop the user's next request
    comes a think time after the failed one's arrival. The masks never allow such an action, so agents that
    respect them never see a failure, and runs without failures are unchanged.

    **Info.** After ``reset`` and ``step``: ``action_mask``, ``user``, ``time_ms``, ``requirement_pct``,
    ``requirement_class`` and the measurements of :class:`~orchlib.system.simulator.Snapshot` describe the
    *next* request (the one the observation is about). They are what a real orchestrator measures:

    - ``access_mbps``: the access-link rate; with ``Scenario.bandwidth_estimate`` (the ``paper`` preset) the
      harmonic mean of the throughputs of the last completed uploads, *not* the true current rate;
    - ``wan_mbps``: the operator's own edge-cloud link rate;
    - ``access_backlog_ms``, ``device_backlog_ms``: queued work on the shared uplink and on the user's device;
    - ``edge_in_system``, ``cloud_in_system``: the queue lengths of edge and cloud (orchlib's own requests);
    - ``device_class``: the requesting user's device class, an index into ``system.device_classes``;
    - ``user_recent_latency_ms``: mean response time of the user's last (up to 5) finished requests;
    - ``device_slowdown_estimate``: the user's last finished on-device compute time over its profile median
      (a device-load tracker).

    ``action_mask`` depends on the requirement *and* on the user's device (a GPU-delegate phone cannot run
    8-bit variants, an NNAPI phone cannot run float ones, the int8 cloud accelerator runs no float variant).
    Hidden factors (the true access rate under a bandwidth estimate, the thermal state, background and
    co-tenant load) are never in the observation or in ``info``; the oracle reads the truth through the
    simulator (``sim.evaluate``, ``sim.hidden_state``). After ``step``
    also, about the request just served: ``latency_ms`` and its parts (``network_wait_ms``, ``upload_ms``,
    ``propagation_ms``, ``queue_ms``, ``compute_ms``, ``download_ms``, ``overhead_ms``), ``tier``, ``variant``,
    ``accuracy_pct``, ``met_requirement``, ``failed`` (and on a failed request ``error``), ``served_user``,
    ``served_time_ms``, and, when ``oracle=True``,
    the per-request clairvoyant optimum ``oracle_latency_ms``, ``oracle_action`` and ``regret_ms``
    (private: see :data:`PRIVATE_INFO_KEYS`).

    **Episode end.** Serving requests is a continuing task: the environment never terminates; it truncates
    after ``max_steps`` requests (default: the scenario's ``n_requests``), also when made with
    ``gym.make("orchlib/Orchestration-<preset>-v0")`` (ids in :mod:`orchlib.envs.registration`).

    **Arguments.**
        scenario: a :class:`Scenario`, a preset name, or a prebuilt :class:`System`.
        observation: ``"discrete"`` or ``"box"``.
        accuracy_mode: ``"mask"`` or ``"penalty"``.
        accuracy_penalty: reward cost of a violated requirement in ``"penalty"`` mode (> 0).
        reward_scale: multiplies minus the response time in seconds (> 0).
        failure_latency_s: a failed request is rewarded as a response after this many seconds (finite, > 0).
        oracle: compute the clairvoyant optimum for every request (costs one evaluation of all actions).
        bandwidth_edges_mbps, edge_load_edges, device_load_edges: level boundaries of the discrete state
            (:func:`discrete_state`; the device-load edges apply only in worlds with hidden device load).
        max_steps: truncation length of a direct instance (None: the scenario's ``n_requests``).

    **Reconstruction.** The paper's exact state, action and reward are not public; this definition is
    assumption E1-E5 in ``docs/assumptions.md``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium's documented class attribute

    def __init__(
        self,
        scenario: Scenario | System | str = "paper",
        *,
        observation: Literal["discrete", "box"] = "discrete",
        accuracy_mode: Literal["mask", "penalty"] = "mask",
        accuracy_penalty: float = 1.0,
        reward_scale: float = 1.0,
        failure_latency_s: float = DEFAULT_FAILURE_LATENCY_S,
        oracle: bool = True,
        bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
        edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
        device_load_edges: tuple[float, ...] = DEFAULT_DEVICE_LOAD_EDGES,
        max_steps: int | None = None,
    ) -> None:
        if observation not in ("discrete", "box"):
            raise ValueError(f"observation must be 'discrete' or 'box', got {observation!r}")
        if accuracy_mode not in ("mask", "penalty"):
            raise ValueError(f"accuracy_mode must be 'mask' or 'penalty', got {accuracy_mode!r}")
        if not accuracy_penalty > 0:
            raise ValueError(f"accuracy_penalty must be > 0, got {accuracy_penalty!r}")
        if not reward_scale > 0:
            raise ValueError(f"reward_scale must be > 0, got {reward_scale!r}")
        if not 0 < failure_latency_s < float("inf"):
            raise ValueError(f"failure_latency_s must be a finite number > 0, got {failure_latency_s!r}")
        if isinstance(scenario, str):
            scenario = preset(scenario)
        self.system = scenario if isinstance(scenario, System) else build_system(scenario)
        self.scenario = self.system.scenario
        self.observation_mode = observation
        self.accuracy_mode = accuracy_mode
        self.accuracy_penalty = float(accuracy_penalty)
        self.reward_scale = float(reward_scale)
        self.failure_latency_s = float(failure_latency_s)
        self.oracle = oracle
        #: the discrete state's definition (shared with :class:`orchlib.envs.batch.BatchEnv` and the testbed).
        self.state = discrete_state(self.system, bandwidth_edges_mbps, edge_load_edges, device_load_edges)
        self.bandwidth_edges_mbps = self.state.bandwidth_edges_mbps
        self.edge_load_edges = self.state.edge_load_edges
        self.device_load_edges = self.state.device_load_edges
        self.max_steps = self.scenario.n_requests if max_steps is None else int(max_steps)
        #: sizes of the discrete state's components, in encode() order (:data:`STATE_COMPONENTS`).
        self.state_shape: tuple[int, ...] = self.state.shape
        self.n_states = self.state.n_states
        self._state_masks = self.state.masks(self.system)
        self.action_space = gym.spaces.Discrete(self.system.n_actions)
        if observation == "discrete":
            self.observation_space: gym.Space = gym.spaces.Discrete(self.n_states)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(len(BOX_FEATURES),), dtype=np.float32)
        # each request is drawn, observed and (for the oracle) its best action found in the compiled call that
        # serves the previous one
        self.sim = Simulator(self.system, rng=0, evaluate_ahead="best" if oracle else False, draw_ahead=True)
        self._n_variants = self.system.n_variants
        self._top1_pct = self.system.top1_pct.tolist()
        # 0 for the actions each (device class, requirement class) allows, inf for those it forbids (added to
        # the evaluation); the masks Simulator.mask reads
        masks = self.system.masks[None] if self.scenario.fleet is None else self.system.device_masks
        self._forbidden = np.where(masks, 0.0, np.inf)
        self._n_actions = self.system.n_actions
        self._request: Request | None = None
        self._totals_for: Request | None = None  # the request whose evaluation _totals holds
        self._totals = np.empty(0)
        self._steps = 0

    # -- state encoding --------------------------------------------------------------------------------------
    def encode(self, *components: int) -> int:
        """Flat index of a discrete state from its components (:data:`STATE_COMPONENTS` order: bandwidth level,
        edge-load level, uplink busy, device-load level, device class, requirement class)."""
        return self.state.encode(*components)

    def decode(self, state: int) -> tuple[int, ...]:
        """Inverse of :meth:`encode`: the components in :data:`STATE_COMPONENTS` order."""
        return self.state.decode(state)

    def state_mask(self, state: int) -> np.ndarray:
        """The action mask of every request in discrete state ``state`` (its device class and requirement class
        decide it, in both worlds)."""
        if not 0 <= state < self.n_states:
            raise ValueError(f"state must be in [0, {self.n_states}), got {state}")
        return self._state_masks[int(state)]

    def _observe(self, request: Request) -> tuple[int | np.ndarray, Snapshot]:
        snap = self.sim.snapshot(request)
        return self.observation(snap, request.requirement_pct, request.requirement_class), snap

    def observation(self, snap: Snapshot, requirement_pct: float, requirement_class: int) -> int | np.ndarray:
        """The observation of a request with requirement ``requirement_pct`` (class ``requirement_class``)
        given the measurements ``snap``: a discrete state index or the Box features (see the class docstring).

        Public so that a real deployment (``orchlib.testbed``) builds its agents' observations from its own
        measurements with exactly the rule the simulator uses.
        """
        if self.observation_mode == "box":
            values = np.array(
                [
                    snap.access_mbps,
                    snap.wan_mbps,
                    snap.access_backlog_ms / 1e3,
                    snap.device_backlog_ms / 1e3,
                    snap.edge_in_system,
                    snap.cloud_in_system,
                    requirement_pct / 100.0,
                    snap.user_recent_latency_ms / 1e3,
                    snap.device_slowdown_estimate,
                ],
                dtype=np.float32,
            )
            # log(1 + x) / log(1 + high): every feature in [0, 1], with resolution where the values live
            # (a few Mbit/s to Gbit/s; a few ms to seconds of backlog), as MLPs and LinUCB need.
            return (np.log1p(np.minimum(values, _BOX_HIGH)) * _BOX_SCALE).astype(np.float32)
        return self.state.index(
            snap.access_mbps,
            snap.edge_in_system,
            snap.access_backlog_ms,
            snap.device_slowdown_estimate,
            snap.device_class,
            requirement_class,
        )

    def _request_info(self, request: Request, snap: Snapshot, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` with the keys that describe the next request (written into it: this runs on every request)."""
        info["access_mbps"] = snap.access_mbps
        info["wan_mbps"] = snap.wan_mbps
        info["access_backlog_ms"] = snap.access_backlog_ms
        info["device_backlog_ms"] = snap.device_backlog_ms
        info["edge_in_system"] = snap.edge_in_system
        info["cloud_in_system"] = snap.cloud_in_system
        info["device_class"] = snap.device_class
        info["user_recent_latency_ms"] = snap.user_recent_latency_ms
        info["device_slowdown_estimate"] = snap.device_slowdown_estimate
        info["action_mask"] = self.sim.mask(request).copy()
        info["user"] = request.user
        info["time_ms"] = request.time_ms
        info["requirement_pct"] = request.requirement_pct
        info["requirement_class"] = request.requirement_class
        return info

    # -- Gymnasium API ---------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.reset(self.np_random)
        self._steps = 0
        self._request = self.sim.next_request()
        obs, snap = self._observe(self._request)
        return obs, self._request_info(self._request, snap, {})

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._request is None:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        if not 0 <= a < self._n_actions:
            raise ValueError(f"action must be in [0, {self._n_actions}), got {action!r}")
        request = self._request
        sim = self.sim
        met = bool(sim.mask(request)[a])
        # the info is written key by key into one dict, in the documented order: this runs on every request
        info: dict[str, Any] = {}
        if self.oracle:
            oracle_action, oracle_ms = sim.best(request)
            info["oracle_action"] = oracle_action
            info["oracle_latency_ms"] = oracle_ms
        if not met and not sim.can_run(request, a):  # (what the mask allows can run: checked only outside it)
            # a failed request (E8): not served, the same outcome in both accuracy modes
            error = sim.refusal_reason(request, a)
            sim.refuse(request)
            nan = float("nan")
            wait_ms = upload_ms = propagation_ms = queue_ms = compute_ms = download_ms = overhead_ms = nan
            total_ms = nan
            reward = -self.failure_latency_s * self.reward_scale
            failed = True
            info["error"] = error
        else:
            failed = False
            wait_ms, upload_ms, propagation_ms, queue_ms, compute_ms, download_ms, overhead_ms, total_ms = (
                sim.serve(request, a)
            )
            reward = -total_ms / 1e3 * self.reward_scale
            if not met and self.accuracy_mode == "penalty":
                reward -= self.accuracy_penalty
        tier, variant = divmod(a, self._n_variants)
        info["network_wait_ms"] = wait_ms
        info["upload_ms"] = upload_ms
        info["propagation_ms"] = propagation_ms
        info["queue_ms"] = queue_ms
        info["compute_ms"] = compute_ms
        info["download_ms"] = download_ms
        info["overhead_ms"] = overhead_ms
        info["latency_ms"] = total_ms
        if self.oracle:
            info["regret_ms"] = total_ms - oracle_ms
        info["tier"] = tier
        info["variant"] = variant
        info["accuracy_pct"] = self._top1_pct[variant]
        info["met_requirement"] = met
        info["failed"] = failed
        info["served_user"] = request.user
        info["served_time_ms"] = request.time_ms
        info["served_requirement_class"] = request.requirement_class
        self._steps += 1
        self._request = request = sim.next_request()
        obs, snap = self._observe(request)
        self._request_info(request, snap, info)
        truncated = self._steps >= self.max_steps
        return obs, reward, False, truncated, info

    def oracle_action(self) -> int:
        """The clairvoyant best valid action for the current request (privileged: reads the true state)."""
        if self._request is None:
            raise RuntimeError("call reset() before oracle_action()")
        return int(np.argmin(self._masked_totals()))

    def _masked_totals(self) -> np.ndarray:
        """Response time of every action for the current request (inf where masked), computed once per request."""
        request = self._request
        if self._totals_for is not request:
            # add the 0/inf row of the request's mask (the evaluation is finite or inf, so x + 0 is x)
            self._totals = self.sim.evaluate(request)  # a fresh array: masked in place
            self._totals += self._forbidden[self.sim.user_class[request.user], request.requirement_class]
            self._totals_for = request
        return self._totals

    @property
    def tier_names(self) -> tuple[str, ...]:
        return TIERS
