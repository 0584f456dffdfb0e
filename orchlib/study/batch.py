"""The fast path for sweeps: many independent replicates of one system advanced in lockstep with NumPy.

:class:`BatchSimulator` holds the state of ``B`` replicates (seeds) of one :class:`~orchlib.system.simulator.System`
as arrays with a leading ``B`` axis and serves one request of every replicate per call, with exactly the rules
of :meth:`orchlib.system.simulator.Simulator.serve` (tested bit for bit against it), in the ideal and the
grounded world. :class:`BatchQLearning`, :class:`BatchUCB1`, :class:`BatchFixedPolicy` and the other
``Batch*`` agents are the batched forms of :class:`~orchlib.agents.qlearning.QLearning`,
:class:`~orchlib.agents.bandits.UCB1`, fixed tables and the profile-based agents; they act on the discrete state of
:class:`~orchlib.envs.orchestration.OrchestrationEnv` (same encoding as its ``_observe``). :func:`run_batch` plays an agent
for ``n_requests`` requests in every replicate, the batched form of the Gymnasium loop
``act -> env.step -> learn``.

The simulator is the ``B``-replicate view of :class:`orchlib.system.engine.Engine`, the one implementation of
the system's rules (the per-request :class:`~orchlib.system.simulator.Simulator` is its one-replicate view).

Implementation details and assumptions:

1. **Same rules, same random numbers.** Replicate ``b`` draws from its own generator
   (:func:`orchlib.system.engine.replicate_generators`), so replicate ``b`` of a batch seeded with ``seed`` gives
   bit for bit the requests and latencies of ``Simulator(system, replicate_generators(seed, B)[b])`` served
   with the same actions, whatever the batch size (``tests/test_engine.py``). Arrivals are each user's own
   process (Poisson or closed loop), as in the per-request path.
2. **Masks and state.** The discrete state is the env's (:func:`orchlib.envs.orchestration.discrete_state`,
   the one definition): it encodes the device class and the requirement class, so each state has one mask
   (``state_masks``), in the ideal and the grounded world. :class:`BatchQLearning` stores ``Q`` of invalid
   pairs as ``-inf``, which gives exactly the reference's masked choices and targets. The grounded state's
   bandwidth estimate (H4) and device-load level (H5) come from per-replicate logs of the orchestrator's own
   measurements (:class:`UploadLog`, :class:`UserHistory`), kept only in a world whose state reads them
   (``Scenario.bandwidth_estimate``; hidden device load): in ``ideal`` both components have one level. Each request's mask is also the row of its *kind*
   (device class x requirement class, :meth:`BatchSimulator.kinds`, :attr:`BatchSimulator.kind_masks`); the
   agents that read the request's measurements (:meth:`BatchSimulator.measurements`, the env's info of the
   same names) and its device class take ``act(states, kinds, measurements)`` and
   ``learn(states, actions, rewards, next_states, next_kinds, latency_ms)``: :class:`BatchRandom`,
   :class:`BatchGreedyProfiles`, :class:`BatchAdaptiveGreedy`, :class:`BatchProfileHybrid`.
3. **Same rules as the per-request agents.** Each batched agent calls the per-request class's pure functions
   (``qlearning.check_hyperparameters``/``exploration_probability``, ``baselines.profile_latency_ms_batch``,
   the ``agents.hybrid`` residual functions, ``random_valid_action``, ``masked_argmax``). Given the
   per-request agent's generators, random, greedy, adaptive greedy and the hybrid choose exactly what it
   chooses. :class:`BatchUCB1` keeps means and ``n ** -1/2`` per arm and computes its index in a different
   order than the reference (equal up to rounding); Q-learning and UCB1 draw from each replicate's own
   generator but in another order than the per-request learner, so their choices equal the per-request
   learner's in distribution, not bitwise. A replicate never depends on the batch size. Their per-step rules
   run as compiled loops over replicates (numba), which read each replicate's rows in place. The loop is the
   env's ``accuracy_mode="mask"`` (reward without penalty), ``oracle=False``.
4. **Not provided**: the ``box`` observation and the per-user response history it reads (use the
   per-request path for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numba
import numpy as np

from orchlib.agents.base import check_real, masked_argmax, random_valid_action
from orchlib.agents.baselines import profile_latency_ms_batch
from orchlib.agents.hybrid import (
    adaptive_factor_update,
    hybrid_log_score,
    log_ratio,
    residual_log_mean_sd,
    residual_update,
)
from orchlib.agents.qlearning import check_hyperparameters, exploration_probability
from orchlib.envs.orchestration import (
    DEFAULT_BANDWIDTH_EDGES_MBPS,
    DEFAULT_DEVICE_LOAD_EDGES,
    DEFAULT_EDGE_LOAD_EDGES,
    discrete_state,
)
from orchlib.system import dynamics
from orchlib.system.engine import TOTAL_COLUMN, Engine, replicate_generators
from orchlib.system.simulator import HISTORY_DEPTH, System

#: decisions per block of a batched agent's random numbers.
_AGENT_BLOCK = 256

# ---------------------------------------------------------------------------------------------------------
# The simulator


@dataclass(frozen=True)
class BatchRequests:
    """One request of every replicate; each field has shape (B,)."""

    #: arrival time, ms.
    time_ms: np.ndarray
    #: the user who sent it.
    user: np.ndarray
    #: its accuracy-requirement class (row of ``System.masks``).
    requirement_class: np.ndarray


@dataclass(frozen=True)
class BatchBreakdown:
    """Where each replicate's response time went, ms, each of shape (B,): the fields of
    :class:`~orchlib.system.simulator.Breakdown` (``total_ms`` is the sum of the seven parts)."""

    network_wait_ms: np.ndarray
    upload_ms: np.ndarray
    propagation_ms: np.ndarray
    queue_ms: np.ndarray
    compute_ms: np.ndarray
    download_ms: np.ndarray
    overhead_ms: np.ndarray
    total_ms: np.ndarray


def discrete_state_shape(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> tuple[int, ...]:
    """Sizes of the discrete state's components, as :attr:`OrchestrationEnv.state_shape`
    (:func:`orchlib.envs.orchestration.discrete_state`, the one definition)."""
    return discrete_state(system, bandwidth_edges_mbps, edge_load_edges).shape


def discrete_state_masks(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> np.ndarray:
    """The action mask of each discrete state, shape (n_states, n_actions), as ``OrchestrationEnv.state_mask``
    (:meth:`orchlib.envs.orchestration.DiscreteState.masks`: a function of the state)."""
    return discrete_state(system, bandwidth_edges_mbps, edge_load_edges).masks(system)


class BatchSimulator:
    """``B`` independent replicates of one system, each serving one request per :meth:`serve` call.

    Use: ``req = sim.next_requests()``; optionally ``sim.observe(req)`` and ``sim.evaluate(req)``; then exactly
    one ``sim.serve(req, actions)`` before the next ``next_requests()``. The rules and the randomness are those
    of :class:`orchlib.system.engine.Engine` (module docstring).

    Args:
        system: from :func:`~orchlib.system.simulator.build_system`.
        n_replicates: ``B``, an integer >= 1.
        rng: seed, ``SeedSequence`` or generator; replicate ``b`` draws from
            ``replicate_generators(rng, B)[b]``.
        bandwidth_edges_mbps, edge_load_edges, device_load_edges: level edges of the discrete state
            (default: the environment's defaults); strictly increasing and positive.
        keep_history: keep each user's served requests (:attr:`history`, the H5 record behind
            :meth:`device_slowdown_estimate`). None (default): only where the discrete state reads it, a world
            with hidden device load; elsewhere (``ideal``) its device-load level has one value, and skipping
            the record leaves every state, measurement and latency unchanged (``tests/test_batch.py``).

    Raises:
        ValueError: ``n_replicates`` < 1 or bad level edges.
    """

    def __init__(
        self,
        system: System,
        n_replicates: int,
        rng: np.random.Generator | np.random.SeedSequence | int | None = None,
        *,
        bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
        edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
        device_load_edges: tuple[float, ...] = DEFAULT_DEVICE_LOAD_EDGES,
        keep_history: bool | None = None,
    ) -> None:
        if (
            isinstance(n_replicates, bool)
            or not isinstance(n_replicates, int | np.integer)
            or n_replicates < 1
        ):
            raise ValueError(f"n_replicates must be an integer >= 1, got {n_replicates!r}")
        for name, edges in (
            ("bandwidth_edges_mbps", bandwidth_edges_mbps),
            ("edge_load_edges", edge_load_edges),
        ):
            if len(edges) == 0:
                raise ValueError(f"{name} must be strictly increasing positive numbers, got {edges!r}")
        self.system = system
        self.n_replicates = int(n_replicates)
        #: the discrete state's definition, the env's (:func:`orchlib.envs.orchestration.discrete_state`).
        self.state = discrete_state(
            system, tuple(bandwidth_edges_mbps), tuple(edge_load_edges), tuple(device_load_edges)
        )
        self.bandwidth_edges_mbps = np.array(self.state.bandwidth_edges_mbps, dtype=float)
        self.edge_load_edges = np.array(self.state.edge_load_edges, dtype=np.int64)
        self.state_shape = self.state.shape
        self.n_states = self.state.n_states
        #: the action mask of each discrete state, shape (n_states, n_actions): what batched agents are built on.
        self.state_masks = self.state.masks(system)
        #: the action mask of each request kind (device class x requirement class, :meth:`kinds`), shape
        #: (n_kinds, n_actions): every request's mask is one of these rows (the state encodes both, so
        #: ``state_masks`` agrees; the profile agents read the device class from the kind).
        self.kind_masks = system.device_masks.reshape(-1, system.n_actions)
        self._n_classes = system.requirement_pct.size
        self._estimate = system.scenario.bandwidth_estimate
        # Which of the state's components vary in this world: the device-load level (shape[3]) reads the history,
        # the device class (shape[4]) a gather; a single-level component is 0 (DiscreteState.index).
        self._reads_device_load = self.state.shape[3] > 1
        self._reads_device_class = self.state.shape[4] > 1
        if keep_history is not None and not isinstance(keep_history, bool):
            raise ValueError(f"keep_history must be True, False or None, got {keep_history!r}")
        self.keep_history = self._reads_device_load if keep_history is None else keep_history
        self._rows = np.arange(self.n_replicates)
        # the generators are spawned once here (spawning from a Generator twice would give other children)
        self.engine = Engine(system, self.n_replicates, replicate_generators(rng, self.n_replicates))
        self._clear()

    def reset(self, rng: np.random.Generator | np.random.SeedSequence | int | None = None) -> None:
        """Empty systems at time 0, fresh generators."""
        self.engine.reset(replicate_generators(rng, self.n_replicates))
        self._clear()

    def _clear(self) -> None:
        self.time_ms = np.zeros(self.n_replicates)  # the last request's arrival time
        self.n_served = 0
        self._pending: BatchRequests | None = None
        self._measured_for: BatchRequests | None = None
        #: each user's recent served requests (H5), the source of the device-load estimate in the state; None
        #: when not kept (``keep_history``).
        self.history = (
            UserHistory(self.n_replicates, self.system.scenario.n_users) if self.keep_history else None
        )
        if self._estimate is not None:
            self.uploads = UploadLog(self.n_replicates, self._estimate.window)

    def _requests(self) -> BatchRequests:
        engine = self.engine
        self.time_ms = engine.request_time_ms.copy()
        self._pending = BatchRequests(self.time_ms, engine.request_user.copy(), engine.request_class.copy())
        return self._pending

    def next_requests(self) -> BatchRequests:
        """Advance every replicate to its next request and return them.

        Raises:
            RuntimeError: the previous requests were not served.
        """
        if self._pending is not None:
            raise RuntimeError("serve() the current requests before asking for the next ones")
        self.engine.next_requests()
        return self._requests()

    def make_requests(
        self, time_ms: np.ndarray, user: np.ndarray, requirement_class: np.ndarray | None = None
    ) -> BatchRequests:
        """Make scripted requests the current ones, bypassing the arrival process (compute noise zero).

        Raises:
            ValueError: wrong shapes, a time earlier than the replicate's last one, an unknown user or class.
        """
        if self._pending is not None:
            raise RuntimeError("serve() the current requests before making others")
        b = self.n_replicates
        time_ms = np.asarray(time_ms, dtype=float)
        user = np.asarray(user, dtype=np.int64)
        requirement_class = (
            np.zeros(b, dtype=np.int64)
            if requirement_class is None
            else np.asarray(requirement_class, dtype=np.int64)
        )
        for name, value in (("time_ms", time_ms), ("user", user), ("requirement_class", requirement_class)):
            if value.shape != (b,):
                raise ValueError(f"{name} must have shape ({b},), got {value.shape}")
        if np.any(time_ms < self.time_ms):
            raise ValueError("time_ms must not go back in time in any replicate")
        if np.any((user < 0) | (user >= self.system.scenario.n_users)):
            raise ValueError(f"user must be in [0, {self.system.scenario.n_users})")
        if np.any((requirement_class < 0) | (requirement_class >= self.system.requirement_pct.size)):
            raise ValueError(f"requirement_class must be in [0, {self.system.requirement_pct.size})")
        self.engine.set_requests(time_ms, user, requirement_class, 0.0)
        return self._requests()

    def _check_current(self, requests: BatchRequests, what: str) -> None:
        if requests is not self._pending:
            raise RuntimeError(f"{what}() must be given the requests returned by the last next_requests()")

    def observe(self, requests: BatchRequests) -> np.ndarray:
        """Discrete state of each replicate at its request, as ``OrchestrationEnv._observe``; shape (B,).

        :meth:`orchlib.envs.orchestration.DiscreteState.index` of the replicate's measurements.
        """
        self._check_current(requests, "observe")
        measured = self.measurements(requests)
        # Components with a single level are 0 whatever is passed: skip reading them (the history may not be kept).
        return self.state.index(
            measured[:, 0],
            measured[:, 4],
            measured[:, 2],
            self.device_slowdown_estimate(requests) if self._reads_device_load else 1.0,
            self.engine.user_class[self._rows, requests.user] if self._reads_device_class else 0,
            requests.requirement_class,
        )

    def measurements(self, requests: BatchRequests) -> np.ndarray:
        """What an orchestrator measures at each request, shape (B, 6), columns
        :data:`orchlib.agents.baselines.GREEDY_INFO_KEYS` (the env's info of the same names): the access rate
        (the bandwidth estimate with ``Scenario.bandwidth_estimate``), the WAN rate, the uplink and device
        backlogs (ms), the requests at the edge and the cloud. Reused until the next requests."""
        self._check_current(requests, "measurements")
        if self._measured_for is not requests:
            self._measured = self.engine.snapshot().copy()
            if self._estimate is not None:
                self._measured[:, 0] = self.uploads.estimate_mbps(
                    requests.time_ms, float(self.system.scenario.access.uplink_mbps)
                )
            self._measured_for = requests
        return self._measured

    def device_slowdown_estimate(self, requests: BatchRequests) -> np.ndarray:
        """Each requesting user's last finished on-device compute time over its profile median (1: none yet),
        as ``Snapshot.device_slowdown_estimate`` (H5), from :attr:`history`; shape (B,).

        Raises:
            RuntimeError: the history is not kept (``keep_history``).
        """
        if self.history is None:
            raise RuntimeError(
                "this BatchSimulator keeps no user history (its world's state has no device-load level): build it "
                "with keep_history=True to read device_slowdown_estimate"
            )
        return self.history.device_slowdown(requests.user, requests.time_ms)

    def kinds(self, requests: BatchRequests) -> np.ndarray:
        """Each request's kind, shape (B,): ``device class * n_classes + requirement class`` (the
        requirement class alone without a fleet); its mask is ``kind_masks[kind]``."""
        device_class = self.engine.user_class[self._rows, requests.user]
        return device_class * self._n_classes + requests.requirement_class

    def masks(self, requests: BatchRequests) -> np.ndarray:
        """Each request's action mask, shape (B, n_actions), as ``Simulator.mask``: the requirement and what
        the tiers and the requesting user's device can run."""
        return self.kind_masks[self.kinds(requests)]

    def evaluate(self, requests: BatchRequests) -> np.ndarray:
        """Response time (ms) every action would give every replicate's request, shape (B, n_actions).

        The clairvoyant oracle's view: the rules of :meth:`serve` for every action, without serving.
        """
        self._check_current(requests, "evaluate")
        return self.engine.evaluate().copy()

    def best(self, requests: BatchRequests) -> tuple[np.ndarray, np.ndarray]:
        """The clairvoyant best valid action of every replicate's request and its response time (ms), shape (B,)
        each: ``argmin`` of :meth:`evaluate` over the request's mask (:meth:`masks`; the first on ties), as
        :meth:`orchlib.system.engine.Engine.best` finds it, without evaluating what a lower bound rules out."""
        self._check_current(requests, "best")
        action, ms = self.engine.best()
        return action.copy(), ms.copy()

    def serve(
        self, requests: BatchRequests, actions: np.ndarray, z: np.ndarray | None = None
    ) -> BatchBreakdown:
        """Serve every replicate's current request with its action; update the state; return the breakdowns.

        Args:
            requests: the object the last :meth:`next_requests`/:meth:`make_requests` returned.
            actions: one action (tier * n_variants + variant) per replicate, integers, shape (B,).
            z: standard-normal compute noise of the chosen tier, shape (B,); default: the request's own draw
                (zero after :meth:`make_requests`).

        Raises:
            RuntimeError: ``requests`` is not the current one.
            ValueError: an action out of range or wrong shapes (the accuracy mask is the caller's to enforce).
        """
        self._check_current(requests, "serve")
        system, b = self.system, self.n_replicates
        actions = np.asarray(actions)
        if actions.shape != (b,) or actions.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({b},), got {actions.dtype} {actions.shape}"
            )
        if actions.min() < 0 or actions.max() >= system.n_actions:
            raise ValueError(f"every action must be in [0, {system.n_actions})")
        actions = actions.astype(np.int64, copy=False)
        if z is not None:
            z = np.asarray(z, dtype=float)
            if z.shape != (b,):
                raise ValueError(f"z must have shape ({b},), got {z.shape}")
            self.engine.set_noise(actions // system.n_variants, z)
        if self._estimate is not None:  # the bits each access upload sends (read before the engine moves on)
            payload_bits = self.engine.request_payload_bits[self._rows, actions % system.n_variants]
        parts = self.engine.serve(actions).T.copy()
        served = self.engine.served
        if self.history is not None:
            self.history.record(requests.user, requests.time_ms + parts[TOTAL_COLUMN], served[:, 2])
        if self._estimate is not None:
            off_device = (actions >= system.n_variants) & (served[:, 1] > 0)
            self.uploads.record(off_device, served[:, 0] + served[:, 1], payload_bits / (served[:, 1] * 1e3))
        self.n_served += 1
        self._pending = None
        return BatchBreakdown(*parts)


class UserHistory:
    """Each user's last :data:`UserHistory.DEPTH` served requests in ``B`` replicates (completion time, on-device
    slowdown: observed compute over the profile median, 0 off the device): the orchestrator's H5 record.

    The batched form of the ``Simulator``'s per-user history as its snapshot reads it (the last 16 entries;
    of those finished by the request, the newest with an on-device slowdown; 1 when there is none), tested
    bit for bit through the states in ``tests/test_engine.py``.
    """

    #: entries kept per user (the Simulator's snapshot looks at its last 16).
    DEPTH = HISTORY_DEPTH

    def __init__(self, n_replicates: int, n_users: int) -> None:
        shape = (n_replicates, n_users, self.DEPTH)
        self.done_ms = np.full(shape, np.inf)  # completion times (inf: empty slot)
        self.slowdown = np.zeros(shape)  # on-device slowdowns (0: served off the device)
        self.n = np.zeros((n_replicates, n_users), dtype=np.int64)  # entries written per user
        self._rows = np.arange(n_replicates)
        self._newest_first = np.arange(self.DEPTH)

    def record(self, user: np.ndarray, done_ms: np.ndarray, slowdown: np.ndarray) -> None:
        """Append one served request per replicate (its user, completion time, on-device slowdown)."""
        rows = self._rows
        slot = self.n[rows, user] % self.DEPTH
        self.done_ms[rows, user, slot] = done_ms
        self.slowdown[rows, user, slot] = slowdown
        self.n[rows, user] += 1

    def device_slowdown(self, user: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """The newest on-device slowdown among ``user``'s last entries finished by ``t_ms``; 1 if none."""
        rows = self._rows
        slots = (self.n[rows, user][:, None] - 1 - self._newest_first) % self.DEPTH  # newest first
        done = self.done_ms[rows[:, None], user[:, None], slots]
        slowdown = self.slowdown[rows[:, None], user[:, None], slots]
        usable = (done <= t_ms[:, None]) & (slowdown > 0)
        first = usable.argmax(axis=1)
        return np.where(usable.any(axis=1), slowdown[rows, first], 1.0)


class UploadLog:
    """The orchestrator's log of completed access uploads in ``B`` replicates, and the bandwidth estimate it
    gives (H4): the harmonic mean (:func:`orchlib.system.dynamics.harmonic_mean_mbps`) of the throughputs of
    the last ``window`` uploads completed by the request's arrival; the nominal uplink rate before any.

    The batched form of ``Simulator.access_estimate_mbps`` (same uploads, same estimator, same numbers: tested
    bit for bit in ``tests/test_engine.py``). Uploads complete in FIFO order, so each replicate's completion
    times increase and a pointer per replicate marks those completed by the current request.
    """

    def __init__(self, n_replicates: int, window: int) -> None:
        self.window = int(window)
        self.done_ms = np.full((n_replicates, 64), np.inf)  # completion times, ms (inf: no entry yet)
        self.mbps = np.ones((n_replicates, 64))  # observed throughputs, Mbit/s
        self.n = np.zeros(n_replicates, dtype=np.int64)  # entries per replicate
        self.completed = np.zeros(n_replicates, dtype=np.int64)  # entries completed by the last request
        self._rows = np.arange(n_replicates)

    def record(self, which: np.ndarray, done_ms: np.ndarray, mbps: np.ndarray) -> None:
        """Append an upload (completion time, throughput) to the replicates where ``which`` is True."""
        rows = np.flatnonzero(which)
        if rows.size == 0:
            return
        if self.n.max() >= self.done_ms.shape[1]:
            width = 2 * self.done_ms.shape[1]
            self.done_ms = np.pad(self.done_ms, ((0, 0), (0, width // 2)), constant_values=np.inf)
            self.mbps = np.pad(self.mbps, ((0, 0), (0, width // 2)), constant_values=1.0)
        self.done_ms[rows, self.n[rows]] = done_ms[rows]
        self.mbps[rows, self.n[rows]] = mbps[rows]
        self.n[rows] += 1

    def estimate_mbps(self, t_ms: np.ndarray, nominal_mbps: float) -> np.ndarray:
        """The estimate at each replicate's time ``t_ms`` (B,), Mbit/s (times never go back)."""
        rows, j = self._rows, self.completed
        while True:  # advance each pointer past the uploads completed by t (usually 0 or 1 step)
            ahead = self.done_ms[rows, np.minimum(j, self.done_ms.shape[1] - 1)] <= t_ms
            ahead &= j < self.n
            if not ahead.any():
                break
            j += ahead
        out = np.full(rows.size, nominal_mbps)
        full = j >= self.window
        if full.any():
            columns = j[full, None] - self.window + np.arange(self.window)
            out[full] = dynamics.harmonic_mean_mbps(self.mbps[rows[full, None], columns])
        for b in np.flatnonzero((j > 0) & ~full):  # the first few uploads of a run
            out[b] = dynamics.harmonic_mean_mbps(self.mbps[b, : j[b]])
        return out


# ---------------------------------------------------------------------------------------------------------
# Batched agents


class BatchAgent(Protocol):
    """What :func:`run_batch` needs from an agent: ``B`` independent learners acting in lockstep.

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


def _check_state_masks(state_masks: np.ndarray) -> np.ndarray:
    state_masks = np.asarray(state_masks)
    if state_masks.dtype != bool or state_masks.ndim != 2 or 0 in state_masks.shape:
        raise ValueError(
            f"state_masks must be a non-empty 2-D bool array (n_states, n_actions), got "
            f"{state_masks.dtype} {state_masks.shape}"
        )
    if not state_masks.any(axis=1).all():
        raise ValueError("every row of state_masks must allow at least one action")
    return state_masks


def _uniform_valid_table(state_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, n_valid): each row's valid actions in increasing order (as np.flatnonzero), then the rest."""
    return np.argsort(~state_masks, axis=1, kind="stable"), state_masks.sum(axis=1)


class _ReplicateUniforms:
    """``k`` uniforms per step for each replicate, from the replicate's own generator, drawn in blocks.

    A replicate's draws depend only on its generator, so a batched agent's choices in replicate ``b`` do not
    depend on the batch size (nor on which replicates share the batch).
    """

    def __init__(self, rngs: list[np.random.Generator], k: int) -> None:
        self.rngs = rngs
        self.k = k
        self._block = np.empty((len(rngs), _AGENT_BLOCK, k))
        self._position = _AGENT_BLOCK

    def take(self) -> np.ndarray:
        """The next step's uniforms, shape (B, k)."""
        if self._position >= _AGENT_BLOCK:
            for b, rng in enumerate(self.rngs):
                self._block[b] = rng.random((_AGENT_BLOCK, self.k))
            self._position = 0
        self._position += 1
        return self._block[:, self._position - 1]


# The batched learners' per-step rules as compiled loops over replicates: each reads its replicate's rows in place,
# where NumPy would gather (B, A) copies of them and pass over them several times (about 1 ms per lockstep step
# at B = 2,000). Same arithmetic in the same order, so the same choices and values bit for bit as the NumPy
# versions they replace (tests/test_batch.py checks them against NumPy definitions).


@numba.njit(cache=True)
def _argmax_random_tie(row: np.ndarray, uniform: float) -> int:
    """Index of the maximum of ``row``; among ``n`` tied maxima the ``int(uniform * n)``-th (in column order)."""
    best, n = row[0], 1
    for a in range(1, row.size):
        x = row[a]
        if x > best:
            best, n = x, 1
        elif x == best:
            n += 1
    k = int(uniform * n)
    for a in range(row.size):
        if row[a] == best:
            if k == 0:
                return a
            k -= 1
    return -1  # unreachable: the maximum is in the row


@numba.njit(cache=True)
def _argmax_random_ties(values: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Row-wise argmax of ``values`` (B, A), ties broken uniformly at random with the row's uniform in
    ``uniforms`` (B,): of a row's ``n`` tied maxima, the ``int(u * n)``-th."""
    out = np.empty(values.shape[0], dtype=np.int64)
    for b in range(values.shape[0]):
        out[b] = _argmax_random_tie(values[b], uniforms[b])
    return out


@numba.njit(cache=True)
def _q_act(q_table, states, uniforms, epsilon, valid, n_valid, out):
    """Epsilon-greedy choice of every replicate ``b`` in state ``s = states[b]`` into ``out``: explore if
    ``uniforms[b, 0] < epsilon`` (``epsilon`` of length 1 or B), then the ``int(uniforms[b, 1] * n_valid[s])``-th
    valid action; else the argmax of ``Q(s, .)`` with ties broken by ``uniforms[b, 2]``."""
    shared = epsilon.size == 1
    for b in range(states.size):
        s = states[b]
        if uniforms[b, 0] < epsilon[0 if shared else b]:
            out[b] = valid[s, int(uniforms[b, 1] * n_valid[s])]
        else:
            out[b] = _argmax_random_tie(q_table[b, s], uniforms[b, 2])


@numba.njit(cache=True)
def _q_learn(q_table, states, actions, rewards, next_states, gamma, rate):
    """``Q(s, a) += rate * (r + gamma * max Q(s', .) - Q(s, a))`` in every replicate (``rate`` of length 1 or B)."""
    shared = rate.size == 1
    for b in range(states.size):
        row = q_table[b, next_states[b]]
        top = row[0]
        for a in range(1, row.size):
            if row[a] > top:
                top = row[a]
        target = rewards[b] + gamma * top
        old = q_table[b, states[b], actions[b]]
        q_table[b, states[b], actions[b]] = old + rate[0 if shared else b] * (target - old)


@numba.njit(cache=True)
def _ucb1_act(inverse_sqrt_counts, means, state_penalty, states, scale, uniforms, row, out):
    """UCB1's choice of every replicate into ``out``: the argmax over arms of
    ``inverse_sqrt_counts * scale + means + state_penalty[s]`` (ties by ``uniforms``); ``row`` is scratch (A,)."""
    for b in range(states.size):
        penalty = state_penalty[states[b]]
        for a in range(row.size):
            row[a] = inverse_sqrt_counts[b, a] * scale + means[b, a] + penalty[a]
        out[b] = _argmax_random_tie(row, uniforms[b])


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


class BatchQLearning:
    """:class:`~orchlib.agents.qlearning.QLearning` for ``B`` independent replicates in lockstep.

    The same update and exploration rule, replicate by replicate (see :class:`~orchlib.agents.qlearning.QLearning`)::

        n(s, a)  += 1
        Q(s, a)  += alpha / n(s, a) ** alpha_exponent * (r + gamma * max_{a' in M(s')} Q(s', a') - Q(s, a))

    Decision ``t`` (the same for every replicate), the ``k``-th of a replicate in state ``s`` with ``|V|`` valid
    actions, explores with probability
    ``max(epsilon_min, min(epsilon * epsilon_decay ** t, explore_per_action * |V| / k))`` (no per-state term
    when ``explore_per_action`` is None): a uniformly random valid action; otherwise the valid action of
    largest ``Q(s, .)``, ties broken uniformly at random.

    Because the mask is a function of the state, ``Q(s, a)`` of every invalid pair is stored as ``-inf`` and
    never updated: the greedy choice and the target's maximum then need no mask at all, and pick exactly what
    the reference's masked versions pick.

    Args:
        state_masks: bool array (n_states, n_actions), the mask of each state (``BatchSimulator.state_masks``).
        alpha, alpha_exponent, gamma, epsilon, epsilon_min, epsilon_decay, initial_q, explore_per_action: as
            :class:`~orchlib.agents.qlearning.QLearning`, with the same ranges.

    Raises:
        ValueError: a hyperparameter outside its range (named), or bad state masks.
    """

    def __init__(
        self,
        state_masks: np.ndarray,
        alpha: float = 0.1,
        alpha_exponent: float = 0.0,
        gamma: float = 0.9,
        epsilon: float = 1.0,
        epsilon_min: float = 0.01,
        epsilon_decay: float = 0.999,
        initial_q: float = 0.0,
        explore_per_action: float | None = None,
    ) -> None:
        check_hyperparameters(
            alpha, alpha_exponent, gamma, epsilon, epsilon_min, epsilon_decay, initial_q, explore_per_action
        )
        self.state_masks = _check_state_masks(state_masks)
        self.n_states, self.n_actions = self.state_masks.shape
        self.alpha = alpha
        self.alpha_exponent = alpha_exponent
        self.gamma = gamma
        self.epsilon = epsilon
        self.epsilon_min = epsilon_min
        self.epsilon_decay = epsilon_decay
        self.initial_q = initial_q
        self.explore_per_action = explore_per_action
        self._valid, self._n_valid = _uniform_valid_table(self.state_masks)

    def reset(
        self, n_replicates: int, rng: np.random.Generator | np.random.SeedSequence | int | None = None
    ) -> None:
        """Forget Q, visit counts and the decision counter of ``n_replicates`` replicates; reseed.

        Replicate ``b`` draws from ``replicate_generators(rng, n_replicates)[b]`` (three uniforms per decision:
        explore or not, the random action, the tie break).
        """
        self.draws_ = _ReplicateUniforms(replicate_generators(rng, n_replicates), 3)
        row = np.where(self.state_masks, float(self.initial_q), -np.inf)
        # Q(s, a) of each replicate, seconds, shape (B, S, A); -inf marks an invalid pair (class docstring).
        self.q_table_ = np.empty((n_replicates, self.n_states, self.n_actions))
        self.q_table_[...] = row
        # Visit counts only matter for a decaying learning rate; with exponent 0 every n ** -0 is 1.
        self.visits_ = np.zeros(self.q_table_.shape, dtype=np.int64) if self.alpha_exponent else None
        self.n_decisions_ = 0
        # decisions taken in each state, per replicate (the k of the per-state exploration term)
        self.state_decisions_ = np.zeros((n_replicates, self.n_states), dtype=np.int64)
        self._rows = np.arange(n_replicates)
        self._epsilon = np.empty(1)  # the step's exploration probability, as the kernel reads it
        self._rate = np.array([float(self.alpha)])  # the learning rate, as the kernel reads it

    def epsilon_at(self, t: int) -> float:
        """Exploration probability of decision ``t`` (0-based), as :meth:`QLearning.epsilon_at`."""
        return float(
            exploration_probability(
                t, float(self.epsilon), float(self.epsilon_decay), float(self.epsilon_min)
            )
        )

    def act(self, states: np.ndarray) -> np.ndarray:
        """Epsilon-greedy valid action of every replicate; shape (B,)."""
        t = self.n_decisions_
        self.n_decisions_ += 1
        if self.explore_per_action is not None:
            # QLearning's per-state term c * |V| / k, replicate by replicate, under the same global cap and floor
            k = self.state_decisions_[self._rows, states] + 1
            self.state_decisions_[self._rows, states] = k
            epsilon = exploration_probability(
                t,
                float(self.epsilon),
                float(self.epsilon_decay),
                float(self.epsilon_min),
                float(self.explore_per_action),
                self._n_valid[states],
                k,
            )
        else:
            epsilon = self._epsilon
            epsilon[0] = self.epsilon_at(t)
        actions = np.empty(states.size, dtype=np.int64)
        _q_act(self.q_table_, states, self.draws_.take(), epsilon, self._valid, self._n_valid, actions)
        return actions

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """One Q-learning update per replicate."""
        rate = self._rate
        if self.visits_ is not None:
            rows = self._rows
            n = self.visits_[rows, states, actions] + 1
            self.visits_[rows, states, actions] = n
            rate = float(self.alpha) * n ** -float(self.alpha_exponent)
        _q_learn(self.q_table_, states, actions, rewards, next_states, float(self.gamma), rate)


class BatchUCB1:
    """:class:`~orchlib.agents.bandits.UCB1` for ``B`` independent replicates in lockstep (reads only the mask).

    Index of a pulled arm: ``mean(a) + c * sqrt(2 ln t / n(a))``; valid arms never pulled come first (random
    among them), otherwise the valid arm of largest index (ties at random), per replicate. The index is
    computed as ``mean + c * sqrt(2 ln t) * n ** -1/2`` from running arrays, which differs from the
    reference's arithmetic only by rounding.

    Args:
        state_masks: bool array (n_states, n_actions), the mask of each state.
        c: exploration scale in seconds, finite and >= 0.

    Raises:
        ValueError: ``c`` outside its range or bad state masks.
    """

    def __init__(self, state_masks: np.ndarray, c: float = 1.0) -> None:
        check_real("c", c, 0.0)
        self.state_masks = _check_state_masks(state_masks)
        self.n_states, self.n_actions = self.state_masks.shape
        self.c = c
        self._state_penalty = np.where(self.state_masks, 0.0, -np.inf)  # 0 where valid, -inf where not

    def reset(
        self, n_replicates: int, rng: np.random.Generator | np.random.SeedSequence | int | None = None
    ) -> None:
        """Forget all pulls; reseed (replicate ``b``: one uniform per pull, for the tie break, from
        ``replicate_generators(rng, n_replicates)[b]``)."""
        self.draws_ = _ReplicateUniforms(replicate_generators(rng, n_replicates), 1)
        shape = (n_replicates, self.n_actions)
        self.counts_ = np.zeros(shape, dtype=np.int64)  # n(a) per replicate
        self.sums_ = np.zeros(shape)  # sum of rewards of arm a, seconds
        # sums / counts; for an unpulled arm the largest float, so that it comes first: finite, so that adding an
        # invalid arm's -inf penalty gives -inf (inf - inf would be nan)
        self.means_ = np.full(shape, np.finfo(float).max)
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
            self._state_penalty,
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
        state_masks = _check_state_masks(state_masks)
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
        self.state_masks = _check_state_masks(state_masks)
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
        self.kind_masks = _check_state_masks(kind_masks)
        self.state_masks = _check_state_masks(state_masks)
        if self.kind_masks.shape[1] != self.system.n_actions:
            raise ValueError(
                f"kind_masks must have {self.system.n_actions} columns, got {self.kind_masks.shape}"
            )
        self._n_classes = self.system.requirement_pct.size
        self._n_device_classes = self.kind_masks.shape[0] // self._n_classes
        self._valid, self._n_valid = _uniform_valid_table(self.kind_masks)

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


# ---------------------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` returns."""

    #: response time of request ``t`` of replicate ``b``, ms, shape (B, n_requests); None unless recorded.
    latency_ms: np.ndarray | None
    #: the action taken, shape (B, n_requests); None unless recorded.
    action: np.ndarray | None
    #: mean response time of each replicate over all its requests, ms, shape (B,).
    mean_latency_ms: np.ndarray


def run_batch(
    system: System,
    agent: BatchAgent,
    n_requests: int,
    n_replicates: int,
    rng: np.random.Generator | int | None = None,
    *,
    reward_scale: float = 1.0,
    record: bool = True,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> BatchResult:
    """Play ``agent`` for ``n_requests`` requests in ``n_replicates`` replicates of ``system``.

    Each step is the batched Gymnasium loop ``a = act(s); serve; s' = observe(next request);
    learn(s, a, r, s')`` with ``r = -response_time_s * reward_scale`` (the env's reward in mask mode).
    The simulator and the agent get independent generators spawned from ``rng``. Example::

        system = build_system(paper())
        agent = BatchQLearning(discrete_state_masks(system), **PAPER_DEFAULTS)
        result = run_batch(system, agent, n_requests=20_000, n_replicates=1_000, rng=0, record=False)
        result.mean_latency_ms  # one number per replicate

    Args:
        system: from :func:`~orchlib.system.simulator.build_system` (Poisson or closed-loop arrivals; the grounded
            world too).
        agent: a batched agent built on ``discrete_state_masks(system, bandwidth_edges_mbps, edge_load_edges)``;
            with a device fleet, one that takes the request kinds (``kind_masks``).
        n_requests: requests per replicate, >= 1.
        n_replicates: ``B`` >= 1.
        rng: seed or generator.
        reward_scale: as ``OrchestrationEnv(reward_scale=...)``, > 0.
        record: keep every latency and action (memory grows with ``B * n_requests``); False keeps only
            each replicate's running mean, so memory stays bounded on long runs.
        bandwidth_edges_mbps, edge_load_edges: the discrete state's level edges.

    Raises:
        ValueError: bad sizes, or an agent built for another state space or other masks.
    """
    if isinstance(n_requests, bool) or not isinstance(n_requests, int | np.integer) or n_requests < 1:
        raise ValueError(f"n_requests must be an integer >= 1, got {n_requests!r}")
    check_real("reward_scale", reward_scale, 0.0, low_open=True)
    sim_rng, agent_rng = np.random.default_rng(rng).spawn(2)
    sim = BatchSimulator(
        system,
        n_replicates,
        sim_rng,
        bandwidth_edges_mbps=bandwidth_edges_mbps,
        edge_load_edges=edge_load_edges,
    )
    if agent.state_masks.shape != sim.state_masks.shape or not np.array_equal(
        agent.state_masks, sim.state_masks
    ):
        raise ValueError(
            f"agent.state_masks (shape {agent.state_masks.shape}) must be the simulator's state_masks "
            f"(shape {sim.state_masks.shape}): build the agent with discrete_state_masks(system, ...)"
        )
    kind_masks = getattr(agent, "kind_masks", None)
    by_kind = kind_masks is not None  # the agent takes each request's kind (its mask is the kind's row)
    if by_kind and not np.array_equal(kind_masks, sim.kind_masks):
        raise ValueError(
            f"agent.kind_masks (shape {np.shape(kind_masks)}) must be the simulator's kind_masks (shape "
            f"{sim.kind_masks.shape}): build the agent with BatchSimulator(system, ...).kind_masks"
        )
    agent.reset(sim.n_replicates, agent_rng)
    b = sim.n_replicates
    latencies = np.empty((n_requests, b)) if record else None
    actions = np.empty((n_requests, b), dtype=np.min_scalar_type(system.n_actions - 1)) if record else None
    total = np.zeros(b)
    requests = sim.next_requests()
    states = sim.observe(requests)
    kinds = sim.kinds(requests) if by_kind else None
    scale = float(reward_scale)
    for step in range(n_requests):
        action = agent.act(states, kinds, sim.measurements(requests)) if by_kind else agent.act(states)
        latency_ms = sim.serve(requests, action).total_ms
        requests = sim.next_requests()
        next_states = sim.observe(requests)
        if by_kind:
            kinds = sim.kinds(requests)
            agent.learn(states, action, -latency_ms / 1e3 * scale, next_states, kinds, latency_ms)
        else:
            agent.learn(states, action, -latency_ms / 1e3 * scale, next_states)
        states = next_states
        total += latency_ms
        if record:
            latencies[step] = latency_ms
            actions[step] = action
    return BatchResult(
        latency_ms=latencies.T if record else None,
        action=actions.T if record else None,
        mean_latency_ms=total / n_requests,
    )
