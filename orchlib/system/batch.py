"""The ``B``-replicate view of the engine: many independent replicates of one system served in lockstep.

:class:`BatchSimulator` holds the state of ``B`` replicates (seeds) of one :class:`~orchlib.system.simulator.System`
as arrays with a leading ``B`` axis and serves one request of every replicate per call, with exactly the rules
of :meth:`orchlib.system.simulator.Simulator.serve` (tested bit for bit against it), in the ideal and the
grounded world. It is the ``B``-replicate view of :class:`orchlib.system.engine.Engine`, the one implementation
of the system's rules (the per-request :class:`~orchlib.system.simulator.Simulator` is its one-replicate view).
It gives what an orchestrator measures at each request as raw numbers (:meth:`BatchSimulator.measurements`, the
device class, the requirement class and the device-slowdown estimate); the env layer encodes them into its
discrete state (:class:`orchlib.envs.batch.BatchEnv`), and the study layer's one batched loop
(:func:`orchlib.study.batch.play_batch`) plays batched agents on it.

Implementation details and assumptions:

1. **Same rules, same random numbers.** Replicate ``b`` draws from its own generator
   (:func:`orchlib.system.engine.replicate_generators`), so replicate ``b`` of a batch seeded with ``seed`` gives
   bit for bit the requests and latencies of ``Simulator(system, replicate_generators(seed, B)[b])`` served
   with the same actions, whatever the batch size (``tests/test_engine.py``). Arrivals are each user's own
   process (Poisson or closed loop), as in the per-request path.
2. **Masks.** Each request's mask is the row of its *kind* (device class x requirement class,
   :meth:`BatchSimulator.kinds`, :attr:`BatchSimulator.kind_masks`), as ``Simulator.mask``.
3. **The orchestrator's own measurements.** The bandwidth estimate (H4) and the device-slowdown estimate (H5)
   come from the logs of :mod:`orchlib.system.measurements` (:class:`~orchlib.system.measurements.UploadLog`,
   :class:`~orchlib.system.measurements.UserHistory`), the same the per-request ``Simulator`` keeps as one
   replicate: the upload log only in a world with ``Scenario.bandwidth_estimate``, the user history only when
   asked for (``keep_history``; the env's view keeps it where its state reads it).
4. **Not provided**: the ``box`` observation (the per-request path gives it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchlib.system.engine import TOTAL_COLUMN, Engine, replicate_generators
from orchlib.system.measurements import UploadLog, UserHistory
from orchlib.system.simulator import System

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


class BatchSimulator:
    """``B`` independent replicates of one system, each serving one request per :meth:`serve` call.

    Use: ``req = sim.next_requests()``; optionally ``sim.measurements(req)`` and ``sim.evaluate(req)``; then
    exactly one ``sim.serve(req, actions)`` before the next ``next_requests()``. The rules and the randomness are
    those of :class:`orchlib.system.engine.Engine` (module docstring).

    Args:
        system: from :func:`~orchlib.system.simulator.build_system`.
        n_replicates: ``B``, an integer >= 1.
        rng: seed, ``SeedSequence`` or generator; replicate ``b`` draws from
            ``replicate_generators(rng, B)[b]``.
        keep_history: keep each user's served requests (:attr:`history`, the H5 record behind
            :meth:`device_slowdown_estimate`). Skipping the record leaves every request, measurement and latency
            unchanged (``tests/test_batch.py``); :class:`orchlib.envs.batch.BatchEnv` keeps it only where its
            discrete state reads it.

    Raises:
        ValueError: ``n_replicates`` < 1, or ``keep_history`` not a bool.
    """

    def __init__(
        self,
        system: System,
        n_replicates: int,
        rng: np.random.Generator | np.random.SeedSequence | int | None = None,
        *,
        keep_history: bool = True,
    ) -> None:
        if (
            isinstance(n_replicates, bool)
            or not isinstance(n_replicates, int | np.integer)
            or n_replicates < 1
        ):
            raise ValueError(f"n_replicates must be an integer >= 1, got {n_replicates!r}")
        if not isinstance(keep_history, bool):
            raise ValueError(f"keep_history must be True or False, got {keep_history!r}")
        self.system = system
        self.n_replicates = int(n_replicates)
        #: the action mask of each request kind (device class x requirement class, :meth:`kinds`), shape
        #: (n_kinds, n_actions): every request's mask is one of these rows.
        self.kind_masks = system.device_masks.reshape(-1, system.n_actions)
        self._n_classes = system.requirement_pct.size
        self._estimate = system.scenario.bandwidth_estimate
        self.keep_history = keep_history
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
        #: each user's recent served requests (H5), the source of the device-slowdown estimate; None when not
        #: kept (``keep_history``).
        self.history = (
            UserHistory(self.n_replicates, self.system.scenario.n_users) if self.keep_history else None
        )
        if self._estimate is not None:
            self.uploads = UploadLog(
                self.n_replicates, self._estimate.window, self.system.scenario.access.uplink_mbps
            )

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

    def measurements(self, requests: BatchRequests) -> np.ndarray:
        """What an orchestrator measures at each request, shape (B, 6), columns
        :data:`orchlib.system.engine.SNAPSHOT_COLUMNS` (the env's info of the same names): the access rate
        (the bandwidth estimate with ``Scenario.bandwidth_estimate``), the WAN rate, the uplink and device
        backlogs (ms), the requests at the edge and the cloud. Reused until the next requests."""
        self._check_current(requests, "measurements")
        if self._measured_for is not requests:
            self._measured = self.engine.snapshot().copy()
            if self._estimate is not None:
                self._measured[:, 0] = self.uploads.estimate_mbps(requests.time_ms)
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
                "this BatchSimulator keeps no user history (keep_history=False; the env's view keeps it only where its "
                "state has a device-load level): build it with keep_history=True to read device_slowdown_estimate"
            )
        return self.history.read(requests.user, requests.time_ms)[0]

    def device_class(self, requests: BatchRequests) -> np.ndarray:
        """Each requesting user's device class (index into ``System.device_classes``; 0 without a fleet), shape
        (B,), as ``Snapshot.device_class``."""
        return self.engine.user_class[self._rows, requests.user]

    def kinds(self, requests: BatchRequests) -> np.ndarray:
        """Each request's kind, shape (B,): ``device class * n_classes + requirement class`` (the
        requirement class alone without a fleet); its mask is ``kind_masks[kind]``."""
        return self.device_class(requests) * self._n_classes + requests.requirement_class

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
            total = parts[TOTAL_COLUMN]
            self.history.record(requests.user, requests.time_ms + total, served[:, 2], total)
        if self._estimate is not None:
            off_device = (actions >= system.n_variants) & (served[:, 1] > 0)
            self.uploads.record(off_device, served[:, 0] + served[:, 1], payload_bits / (served[:, 1] * 1e3))
        self.n_served += 1
        self._pending = None
        return BatchBreakdown(*parts)
