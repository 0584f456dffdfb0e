"""The fast path for sweeps: many independent replicates of one system advanced in lockstep with NumPy.

:class:`BatchSimulator` holds the state of ``B`` replicates (seeds) of one :class:`~orchlib.system.simulator.System`
as arrays with a leading ``B`` axis and serves one request of every replicate per call, with exactly the rules
of :meth:`orchlib.system.simulator.Simulator.serve` (tested bit for bit against it), in the ideal and the
grounded world. The batched agents that play on it live in :mod:`orchlib.agents.batched` (each the ``batched``
form of its entry in the registry :data:`orchlib.agents.catalogue.AGENTS`); they act on the discrete state of
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
   pairs as ``-inf`` (:mod:`orchlib.agents.batched`), which gives exactly the reference's masked choices and targets. The grounded state's
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
   chooses. Q-learning's rules are written once (:mod:`orchlib.agents.qlearning`): the per-request learner is the
   one-replicate view of :class:`~orchlib.agents.qlearning.BatchQLearning` and draws what replicate ``b`` draws,
   so given its generator it chooses the same actions bit for bit (issue 23). UCB1 likewise (:func:`orchlib.agents.bandits.ucb_choice`). A replicate never depends on the batch size. Their per-step rules
   run as compiled loops over replicates (numba), which read each replicate's rows in place. The loop is the
   env's ``accuracy_mode="mask"`` (reward without penalty), ``oracle=False``.
4. **Not provided**: the ``box`` observation and the per-user response history it reads (use the
   per-request path for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchlib.agents.base import check_real
from orchlib.agents.batched import BatchAgent
from orchlib.envs.orchestration import (
    DEFAULT_BANDWIDTH_EDGES_MBPS,
    DEFAULT_DEVICE_LOAD_EDGES,
    DEFAULT_EDGE_LOAD_EDGES,
    discrete_state,
)
from orchlib.system import dynamics
from orchlib.system.engine import TOTAL_COLUMN, Engine, replicate_generators
from orchlib.system.simulator import HISTORY_DEPTH, System

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
