"""The fast path for sweeps: many independent replicates of one system advanced in lockstep with NumPy.

:class:`BatchSimulator` holds the state of ``B`` replicates (seeds) of one :class:`~orchlib.system.simulator.System`
as arrays with a leading ``B`` axis and serves one request of every replicate per call, with exactly the rules
of :meth:`orchlib.system.simulator.Simulator.serve` (tested bit for bit against it). :class:`BatchQLearning`,
:class:`BatchUCB1` and :class:`BatchFixedPolicy` are the batched forms of :class:`~orchlib.agents.qlearning.QLearning`,
:class:`~orchlib.agents.bandits.UCB1` and a fixed state -> action table; they act on the discrete state of
:class:`~orchlib.envs.orchestration.OrchestrationEnv` (same encoding as its ``_observe``). :func:`run_batch` plays an agent
for ``n_requests`` requests in every replicate, the batched form of the Gymnasium loop
``act -> env.step -> learn``.

Implementation details and assumptions (where the fast path departs from the reference path, and why):

1. **Same rules, different random numbers.** The reference :class:`~orchlib.system.simulator.Simulator` draws from one
   generator per run; here one generator serves the whole batch and draws ``(B,)`` arrays, in blocks. One
   generator per replicate would need ``B`` Python calls per request, which is the cost the fast path exists
   to remove. Replicates stay independent (every replicate gets its own i.i.d. draws), so results are
   **identical in distribution, not bitwise**, to running the reference path once per seed; a replicate's
   numbers also depend on the batch size. ``tests/test_batch.py`` checks the distributions (two-sample
   Kolmogorov-Smirnov tests and means) and, separately, the rules bit for bit on scripted requests
   (latencies, their six parts and the discrete states).
2. **Arrivals as one superposed Poisson process.** The reference keeps each user's next arrival in a heap.
   ``n_users`` independent Poisson processes of rate ``lambda`` are together one Poisson process of rate
   ``n_users * lambda`` whose arrivals belong to a user drawn uniformly and independently (superposition and
   thinning of Poisson processes). Drawing the next request that way is exact in distribution and costs the
   same for 1 or 1,000 users.
3. **Only the chosen tier's compute noise is drawn**, when the request is served: the reference draws one
   standard normal per tier before the decision (the clairvoyant oracle reads all three), but serving reads
   only the chosen tier's, and the draws are independent of everything else.
4. **Edge load is counted up to what the state needs.** The discrete state needs the number of requests at
   the edge and not yet finished only up to ``max(edge_load_edges)``; each replicate keeps the
   ``max(edge_load_edges)`` latest completion times of edge requests, and the count of those later than the
   request time equals the reference's count capped at that value, which gives the same load level. Memory
   stays bounded however long the run.
5. **Batched agents read the mask from the state.** The env's discrete state encodes the requirement class,
   so each state has one mask (``OrchestrationEnv.state_mask``); the agents take ``state_masks`` (one row per
   state) instead of a mask per request. :class:`BatchQLearning` stores ``Q`` of invalid pairs as ``-inf``,
   which gives exactly the reference's masked choices and targets. :class:`BatchUCB1` keeps means and
   ``n ** -1/2`` per arm and computes its index in a different order than the reference (equal up to rounding).
   The loop is the env's ``accuracy_mode="mask"`` (reward without penalty), ``oracle=False``.
6. **Not supported** (:class:`NotImplementedError`): closed-loop arrivals (a user's next request depends on
   its previous response time, so replicates cannot share one arrival draw per step); also not provided: the
   ``box`` observation and the oracle (use the reference path for those).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from orchlib.agents.base import check_real
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system import latency
from orchlib.system.simulator import CLOUD, EDGE, END, System

#: steps of random numbers drawn per block (speed only: fewer, larger generator calls).
_BLOCK = 64

_ENV_DEFAULTS = inspect.signature(OrchestrationEnv).parameters
#: the environment's default level edges, read from its signature so that the two cannot drift apart.
DEFAULT_BANDWIDTH_EDGES_MBPS: tuple[float, ...] = _ENV_DEFAULTS["bandwidth_edges_mbps"].default
DEFAULT_EDGE_LOAD_EDGES: tuple[int, ...] = _ENV_DEFAULTS["edge_load_edges"].default


# ---------------------------------------------------------------------------------------------------------
# Link rates, vectorised. Each method repeats the arithmetic of the scalar method it mirrors in the same order
# (np.divmod is Python's divmod; _Bisect is bisect_right), so that the batch simulator's latencies equal the
# reference's bit for bit rather than to a rounding tolerance.

#: largest lookup grid a _Bisect builds (int64 entries); beyond it, it falls back to np.searchsorted.
_MAX_GRID_CELLS = 1 << 20


def _divmod(x: np.ndarray, period: float) -> tuple[np.ndarray | float, np.ndarray]:
    """Python's ``divmod(x, period)`` elementwise; when every ``x`` is in ``[0, period)`` it is exactly
    ``(0.0, x)``, which is returned without the (comparatively slow) division."""
    if x.min() >= 0.0 and x.max() < period:
        return 0.0, x
    return np.divmod(x, period)


def _count_at_most(edges: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    """``bisect_right(edges, x)`` elementwise for a few sorted ``edges``: how many edges are <= x."""
    count = np.zeros(x.shape, dtype=np.int64)
    for edge in edges:
        count += x >= edge
    return count


def _first_argmin(values: np.ndarray) -> np.ndarray:
    """``values.argmin(axis=1)`` (first minimum), without the per-row reduction for one or two columns."""
    if values.shape[1] == 1:
        return np.zeros(values.shape[0], dtype=np.intp)
    if values.shape[1] == 2:
        return (values[:, 1] < values[:, 0]).astype(np.intp)
    return values.argmin(axis=1)


class _Bisect:
    """``bisect_right(xp, x) - 1`` for an array ``x``, by a uniform grid lookup and one correction each way.

    Replicates ask for unrelated times, and np.searchsorted with unsorted keys costs tens of nanoseconds per key.
    The grid's cells are half the smallest gap of ``xp`` wide, so a cell (or the neighbour that rounding may pick
    instead) holds at most one breakpoint: after the lookup, at most one step up or one step down is left, and
    the result is the exact integer bisect gives.
    """

    def __init__(self, xp: np.ndarray) -> None:
        self._xp = np.append(xp, np.inf)  # the sentinel makes xp[i + 1] valid for i = len(xp) - 1
        self._plain = xp
        gaps = np.diff(xp)
        self._lookup = None
        if xp.size > 1 and gaps.min() > 0:
            width = float(gaps.min()) / 2
            n_cells = int((xp[-1] - xp[0]) / width) + 2
            if n_cells <= _MAX_GRID_CELLS:
                self._x0, self._inverse_width = float(xp[0]), 1.0 / width
                self._lookup = np.searchsorted(xp, xp[0] + np.arange(n_cells) * width, side="right") - 1
                self._last_cell = n_cells - 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._lookup is None:
            return np.searchsorted(self._plain, x, side="right") - 1
        cell = ((x - self._x0) * self._inverse_width).astype(np.intp)
        np.clip(cell, 0, self._last_cell, out=cell)
        i = self._lookup[cell]
        i += self._xp[i + 1] <= x
        i -= self._xp[i] > x
        return i


class _Link:
    """One direction of a link (:class:`~orchlib.system.latency.RateFunction`) for arrays of times and sizes."""

    def __init__(self, rate: latency.RateFunction) -> None:
        self.rate = rate
        self.constant_mbps = rate.constant_mbps
        self._pt, self._pb = rate.prefix_times_s, rate.prefix_bits
        self._tt, self._tb = rate.tail_times_s, rate.tail_bits
        self._has_prefix = self._pt.size > 1
        self._prefix_end = float(self._pt[-1])
        self._prefix_bits_end = float(self._pb[-1])
        self._period = float(self._tt[-1])
        self._period_bits = float(self._tb[-1])
        # differences between consecutive breakpoints: the same floats the scalar code subtracts each time
        self._dtt, self._dtb = np.diff(self._tt), np.diff(self._tb)
        self._dpt, self._dpb = np.diff(self._pt), np.diff(self._pb)
        self._tail_t, self._tail_b = _Bisect(self._tt), _Bisect(self._tb)
        self._prefix_t, self._prefix_b = _Bisect(self._pt), _Bisect(self._pb)

    def bits_until(self, t_s: np.ndarray) -> np.ndarray:
        """:meth:`RateFunction.bits_until` for an array of times (s)."""
        tt, tb = self._tt, self._tb
        n, r = _divmod(t_s - self._prefix_end, self._period)
        i = np.minimum(self._tail_t(r), tt.size - 2)
        out = (
            self._prefix_bits_end + n * self._period_bits + tb[i] + self._dtb[i] * (r - tt[i]) / self._dtt[i]
        )
        if self._has_prefix:
            in_prefix = t_s <= self._prefix_end
            if in_prefix.any():
                pt, pb, t = self._pt, self._pb, t_s[in_prefix]
                j = np.minimum(self._prefix_t(t), pt.size - 2)
                out[in_prefix] = pb[j] + self._dpb[j] * (t - pt[j]) / self._dpt[j]
        return out

    def time_of_bits(self, bits: np.ndarray) -> np.ndarray:
        """:meth:`RateFunction.time_of_bits` for an array of cumulative bit counts."""
        tt, tb = self._tt, self._tb
        n, rem = _divmod(bits - self._prefix_bits_end, self._period_bits)
        i = np.minimum(self._tail_b(rem), tb.size - 2)
        out = self._prefix_end + n * self._period + tt[i] + self._dtt[i] * (rem - tb[i]) / self._dtb[i]
        if self._has_prefix:
            in_prefix = bits <= self._prefix_bits_end
            if in_prefix.any():
                pt, pb, b = self._pt, self._pb, bits[in_prefix]
                j = np.minimum(self._prefix_b(b), pb.size - 2)
                out[in_prefix] = pt[j] + self._dpt[j] * (b - pb[j]) / self._dpb[j]
        return out

    def transfer_ms(self, bits: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
        """:func:`orchlib.system.latency.transfer_time_ms` for arrays of sizes (bits, not bytes) and start times."""
        if self.constant_mbps is not None:
            return bits / (self.constant_mbps * 1e3)
        start_s = start_ms / 1e3
        return (self.time_of_bits(self.bits_until(start_s) + bits) - start_s) * 1e3

    def rate_mbps(self, t_s: np.ndarray) -> np.ndarray:
        """:meth:`RateFunction.rate_mbps` for an array of times (s)."""
        if self.constant_mbps is not None:
            return np.full(t_s.shape, self.constant_mbps)
        tail_mbps = self.rate.tail_mbps
        r = _divmod(t_s - self._prefix_end, self._period)[1]
        out = tail_mbps[np.minimum(self._tail_t(r), tail_mbps.size - 1)]
        in_prefix = t_s < self._prefix_end
        if in_prefix.any():
            j = self._prefix_t(t_s[in_prefix])
            out[in_prefix] = self._dpb[j] / self._dpt[j] / 1e6
        return out


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


class BatchBreakdown:
    """Where each replicate's response time went, ms, each of shape (B,).

    ``total_ms`` is computed when serving; the six parts of :class:`~orchlib.system.simulator.Breakdown`
    (``network_wait_ms``, ``upload_ms``, ``propagation_ms``, ``queue_ms``, ``compute_ms``, ``download_ms``) are
    assembled when read, so that the fast loop, which reads only the total, does not pay for them.
    ``total_ms`` adds the parts in the reference's order, so it equals the reference's sum bit for bit.
    """

    def __init__(
        self,
        on_end: np.ndarray,
        end_queue_ms: np.ndarray,
        network_wait_ms: np.ndarray,
        upload_ms: np.ndarray,
        propagation_ms: np.ndarray,
        queue_ms: np.ndarray,
        compute_ms: np.ndarray,
        download_ms: np.ndarray,
    ) -> None:
        # Parts of the offloaded path for every replicate, and the end-device queue; `on_end` picks per row.
        self._on_end = on_end
        self._end_queue = end_queue_ms
        self._offloaded = (network_wait_ms, upload_ms, propagation_ms, queue_ms, download_ms)
        self.compute_ms = compute_ms
        # The reference's sum() starts at 0 and adds left to right; 0 + x == x and x + 0.0 == x exactly, so
        # the end tier's total is its queue plus its compute.
        offloaded_total = network_wait_ms + upload_ms + propagation_ms + queue_ms + compute_ms + download_ms
        self.total_ms = np.where(on_end, end_queue_ms + compute_ms, offloaded_total)

    def _part(self, k: int) -> np.ndarray:
        return np.where(self._on_end, 0.0, self._offloaded[k])

    @property
    def network_wait_ms(self) -> np.ndarray:
        return self._part(0)

    @property
    def upload_ms(self) -> np.ndarray:
        return self._part(1)

    @property
    def propagation_ms(self) -> np.ndarray:
        return self._part(2)

    @property
    def queue_ms(self) -> np.ndarray:
        return np.where(self._on_end, self._end_queue, self._offloaded[3])

    @property
    def download_ms(self) -> np.ndarray:
        return self._part(4)


def discrete_state_shape(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> tuple[int, ...]:
    """Sizes of the discrete state's components, as :attr:`OrchestrationEnv.state_shape`.

    (access-bandwidth level, edge-load level, uplink busy, accuracy-requirement class).
    """
    return (len(bandwidth_edges_mbps) + 1, len(edge_load_edges) + 1, 2, len(system.requirement_pct))


def discrete_state_masks(
    system: System,
    bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
    edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
) -> np.ndarray:
    """The action mask of each discrete state, shape (n_states, n_actions), as ``OrchestrationEnv.state_mask``.

    The requirement class is the state's last component, so the mask is a function of the state.
    """
    shape = discrete_state_shape(system, bandwidth_edges_mbps, edge_load_edges)
    requirement_class = np.unravel_index(np.arange(int(np.prod(shape))), shape)[-1]
    return system.masks[requirement_class]


class BatchSimulator:
    """``B`` independent replicates of one system, each serving one request per :meth:`serve` call.

    Use: ``req = sim.next_requests()``; optionally ``sim.observe(req)``; then exactly one
    ``sim.serve(req, actions)`` before the next ``next_requests()``. The rules are those of
    :meth:`orchlib.system.simulator.Simulator.serve`; the randomness is described in the module docstring.

    Args:
        system: from :func:`~orchlib.system.simulator.build_system`; Poisson arrivals only.
        n_replicates: ``B``, an integer >= 1.
        rng: seed or generator for arrivals, requirements and compute noise of all replicates.
        bandwidth_edges_mbps, edge_load_edges: level edges of the discrete state (default: the
            environment's defaults); strictly increasing and positive.

    Raises:
        NotImplementedError: closed-loop arrivals.
        ValueError: ``n_replicates`` < 1 or bad level edges.
    """

    def __init__(
        self,
        system: System,
        n_replicates: int,
        rng: np.random.Generator | int | None = None,
        *,
        bandwidth_edges_mbps: tuple[float, ...] = DEFAULT_BANDWIDTH_EDGES_MBPS,
        edge_load_edges: tuple[int, ...] = DEFAULT_EDGE_LOAD_EDGES,
    ) -> None:
        scenario = system.scenario
        if scenario.arrivals.process != "poisson":
            raise NotImplementedError(
                f"BatchSimulator supports Poisson arrivals only, got Arrivals.process="
                f"{scenario.arrivals.process!r}; use orchlib.system.simulator.Simulator for closed-loop arrivals"
            )
        if scenario.grounded_features:
            raise NotImplementedError(
                f"BatchSimulator does not model {', '.join(scenario.grounded_features)} (scenario "
                f"{scenario.name!r}); use orchlib.system.simulator.Simulator (the runner's serial path), or "
                "Scenario.without_grounding() for the ideal world"
            )
        outage_links = [
            name
            for name in ("access_up", "access_down", "wan_up", "wan_down")
            if getattr(system, name).has_outages
        ]
        if outage_links:
            raise NotImplementedError(
                f"BatchSimulator does not model link outages (zero-rate trace samples on {outage_links}); use "
                "orchlib.system.simulator.Simulator"
            )
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
            if len(edges) == 0 or list(edges) != sorted(set(edges)) or any(e <= 0 for e in edges):
                raise ValueError(f"{name} must be strictly increasing positive numbers, got {edges!r}")
        self.system = system
        self.n_replicates = int(n_replicates)
        self.bandwidth_edges_mbps = np.array(bandwidth_edges_mbps, dtype=float)
        self.edge_load_edges = np.array(edge_load_edges, dtype=np.int64)
        self.state_shape = discrete_state_shape(system, tuple(bandwidth_edges_mbps), tuple(edge_load_edges))
        self.n_states = int(np.prod(self.state_shape))
        #: the action mask of each discrete state, shape (n_states, n_actions): what batched agents are built on.
        self.state_masks = discrete_state_masks(system, tuple(bandwidth_edges_mbps), tuple(edge_load_edges))
        # The superposed arrival process (module docstring, item 2): mean gap between any two requests, ms.
        self._mean_gap_ms = 1e3 / scenario.arrivals.rate_per_s / scenario.n_users
        self._half_access_rtt = system.access_rtt_ms / 2
        self._half_wan_rtt = system.wan_rtt_ms / 2
        self._access_up, self._access_down = _Link(system.access_up), _Link(system.access_down)
        self._wan_up, self._wan_down = _Link(system.wan_up), _Link(system.wan_down)
        # Per-action tables (action = tier * n_variants + variant): one gather per step instead of two.
        self._tier_of = np.repeat(np.arange(system.median_ms.shape[0]), system.n_variants)
        self._median_of = system.median_ms.ravel()
        self._sigma_of = system.sigma.ravel()
        # median * exp(0 * z) == median exactly, so without jitter the exponential is skipped.
        self._jitter = bool(np.any(self._sigma_of != 0))
        self._input_bits_of = np.tile(system.input_bytes * latency.BITS_PER_BYTE, system.median_ms.shape[0])
        self._result_bits_of = np.tile(system.result_bytes * latency.BITS_PER_BYTE, system.median_ms.shape[0])
        # The reference adds the propagation parts as 2 * (rtt / 2), then the WAN's the same way.
        self._access_propagation = 2 * self._half_access_rtt
        self._access_wan_propagation = self._access_propagation + 2 * self._half_wan_rtt
        self._class_edges = tuple(system.requirement_cdf[:-1].tolist())
        self._bandwidth_edges = tuple(float(e) for e in bandwidth_edges_mbps)
        self._load_edges = tuple(int(e) for e in edge_load_edges)
        self._n_load = int(self.edge_load_edges[-1])
        self.reset(rng)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Empty systems at time 0, a fresh generator."""
        self.rng = np.random.default_rng(rng)
        b, scenario = self.n_replicates, self.system.scenario
        self._rows = np.arange(b)
        self.device_free_ms = np.zeros((b, scenario.n_users))  # when each user's device finishes its queue
        self.access_free_ms = np.zeros(b)  # when the shared access uplink finishes the queued uploads
        self.wan_free_ms = np.zeros(b)  # when the WAN uplink finishes the queued uploads
        self.edge_workers_ms = np.zeros((b, scenario.edge.n_workers))  # when each edge worker is free
        self.cloud_workers_ms = np.zeros((b, scenario.cloud.n_workers))
        # The latest completion times of edge requests (item 4 of the module docstring); -inf = none yet.
        self.edge_latest_done_ms = np.full((b, self._n_load), -np.inf)
        self.time_ms = np.zeros(b)  # the last request's arrival time
        self.n_served = 0
        self._pending: BatchRequests | None = None
        self._block_pos = _BLOCK

    def _draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(gap, user, class uniform, compute-noise normal) for this step, each (B,); drawn _BLOCK steps at once."""
        if self._block_pos >= _BLOCK:
            shape = (_BLOCK, self.n_replicates)
            self._gaps = self.rng.standard_exponential(shape)
            self._users = self.rng.integers(self.system.scenario.n_users, size=shape)
            self._uniforms = self.rng.random(shape)
            self._normals = self.rng.standard_normal(shape)
            self._block_pos = 0
        k = self._block_pos
        self._block_pos = k + 1
        return self._gaps[k], self._users[k], self._uniforms[k], self._normals[k]

    def next_requests(self) -> BatchRequests:
        """Advance every replicate to its next request and return them.

        Raises:
            RuntimeError: the previous requests were not served.
        """
        if self._pending is not None:
            raise RuntimeError("serve() the current requests before asking for the next ones")
        gap, user, u, self._z = self._draws()
        self.time_ms = self.time_ms + gap * self._mean_gap_ms
        # The reference's linear scan "first k with u < cdf[k], else the last class" is this search.
        requirement_class = _count_at_most(self._class_edges, u)
        self._pending = BatchRequests(self.time_ms, user, requirement_class)
        return self._pending

    def make_requests(
        self, time_ms: np.ndarray, user: np.ndarray, requirement_class: np.ndarray | None = None
    ) -> BatchRequests:
        """Make scripted requests the current ones, bypassing the arrival process (for exact checks).

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
        self.time_ms = time_ms
        self._pending = BatchRequests(time_ms, user, requirement_class)
        self._z = np.zeros(b)
        return self._pending

    def observe(self, requests: BatchRequests) -> np.ndarray:
        """Discrete state of each replicate at its request, as ``OrchestrationEnv._observe``; shape (B,).

        (access-bandwidth level, edge-load level, uplink busy, requirement class), mixed radix over
        :attr:`state_shape`.
        """
        t = requests.time_ms
        access_mbps = self._access_up.rate_mbps(t / 1e3)
        bandwidth_level = _count_at_most(self._bandwidth_edges, access_mbps)
        latest = self.edge_latest_done_ms
        edge_in_system = (latest[:, 0] > t).astype(np.int64)
        for k in range(1, latest.shape[1]):
            edge_in_system += latest[:, k] > t
        load_level = _count_at_most(self._load_edges, edge_in_system)
        uplink_busy = (self.access_free_ms - t) > 0
        s = self.state_shape
        state = (bandwidth_level * s[1] + load_level) * s[2] + uplink_busy
        return state * s[3] + requests.requirement_class

    def serve(
        self, requests: BatchRequests, actions: np.ndarray, z: np.ndarray | None = None
    ) -> BatchBreakdown:
        """Serve every replicate's current request with its action; update the state; return the breakdowns.

        Args:
            requests: the object the last :meth:`next_requests`/:meth:`make_requests` returned.
            actions: one action (tier * n_variants + variant) per replicate, integers, shape (B,).
            z: standard-normal compute noise of the chosen tier, shape (B,); default: the draw made with
                :meth:`next_requests` (zero after :meth:`make_requests`).

        Raises:
            RuntimeError: ``requests`` is not the current one.
            ValueError: an action out of range or wrong shapes (the accuracy mask is the caller's to enforce).
        """
        if requests is not self._pending:
            raise RuntimeError("serve() must be given the requests returned by the last next_requests()")
        system, b = self.system, self.n_replicates
        actions = np.asarray(actions)
        if actions.shape != (b,) or actions.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be an integer array of shape ({b},), got {actions.dtype} {actions.shape}"
            )
        if actions.min() < 0 or actions.max() >= system.n_actions:
            raise ValueError(f"every action must be in [0, {system.n_actions})")
        z = self._z if z is None else np.asarray(z, dtype=float)
        if z.shape != (b,):
            raise ValueError(f"z must have shape ({b},), got {z.shape}")
        rows, t, user = self._rows, requests.time_ms, requests.user
        tier = self._tier_of[actions]
        on_end, on_edge, on_cloud = tier == END, tier == EDGE, tier == CLOUD
        compute = self._median_of[actions]
        if self._jitter:
            compute = compute * np.exp(self._sigma_of[actions] * z)

        # end: the user's own device, one inference at a time.
        device_free = self.device_free_ms[rows, user]
        start_end = np.maximum(t, device_free)

        # edge and cloud: the shared access uplink, FIFO, then half the access RTT.
        payload = self._input_bits_of[actions]
        link_start = np.maximum(t, self.access_free_ms)
        upload = self._access_up.transfer_ms(payload, link_start)
        uploaded = link_start + upload
        at_edge = uploaded + self._half_access_rtt
        wait = link_start - t
        # cloud: then the WAN uplink, FIFO, and half the WAN RTT.
        wan_start = np.maximum(at_edge, self.wan_free_ms)
        wan_upload = self._wan_up.transfer_ms(payload, wan_start)
        wan_uploaded = wan_start + wan_upload
        wait = np.where(on_cloud, wait + (wan_start - at_edge), wait)
        upload = np.where(on_cloud, upload + wan_upload, upload)
        propagation = np.where(on_cloud, self._access_wan_propagation, self._access_propagation)
        arrive = np.where(on_cloud, wan_uploaded + self._half_wan_rtt, at_edge)
        # the earliest free worker (the first one on ties, as list.index(min(...)) in the reference).
        edge_worker = _first_argmin(self.edge_workers_ms)
        cloud_worker = _first_argmin(self.cloud_workers_ms)
        edge_free = self.edge_workers_ms[rows, edge_worker]
        cloud_free = self.cloud_workers_ms[rows, cloud_worker]
        start = np.maximum(arrive, np.where(on_cloud, cloud_free, edge_free))
        done = start + compute
        # results: edge -> device over the access downlink; cloud -> edge over the WAN, then the same.
        result = self._result_bits_of[actions]
        wan_back = self._wan_down.transfer_ms(result, done)
        access_back_start = np.where(on_cloud, done + wan_back + self._half_wan_rtt, done)
        access_back = self._access_down.transfer_ms(result, access_back_start)
        download = np.where(on_cloud, wan_back + access_back, access_back)
        breakdown = BatchBreakdown(
            on_end, start_end - t, wait, upload, propagation, start - arrive, compute, download
        )

        # State updates: each resource takes its new value where the request used it, else keeps its own.
        self.device_free_ms[rows, user] = np.where(on_end, start_end + compute, device_free)
        self.access_free_ms = np.where(on_end, self.access_free_ms, uploaded)
        self.wan_free_ms = np.where(on_cloud, wan_uploaded, self.wan_free_ms)
        self.edge_workers_ms[rows, edge_worker] = np.where(on_edge, done, edge_free)
        self.cloud_workers_ms[rows, cloud_worker] = np.where(on_cloud, done, cloud_free)
        latest = self.edge_latest_done_ms
        oldest = _first_argmin(latest)
        oldest_done = latest[rows, oldest]
        latest[rows, oldest] = np.where(on_edge & (done > oldest_done), done, oldest_done)
        self.n_served += 1
        self._pending = None
        return breakdown


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


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``values`` (B, A), ties broken uniformly at random; ``values`` is used as scratch.

    Ties are found by a second argmax with each row's maximum masked out (cheaper than comparing every entry
    with the maximum); only tied rows pay for a full count and a uniform draw.
    """
    rows = np.arange(values.shape[0])
    best = values.argmax(axis=1)
    top = values[rows, best]
    values[rows, best] = -np.inf
    tied = np.flatnonzero(values[rows, values.argmax(axis=1)] == top)
    if tied.size:
        values[tied, best[tied]] = top[tied]
        ties = values[tied] == top[tied, None]
        n_ties = np.count_nonzero(ties, axis=1)
        k = (rng.random(tied.size) * n_ties).astype(np.int64)
        # The k-th tied column of each tied row, read off the row-major list of all tied positions (a
        # running count along each row would be several times slower).
        flat = np.flatnonzero(ties)
        first = np.cumsum(n_ties) - n_ties
        best[tied] = flat[first + k] - np.arange(tied.size) * values.shape[1]
    return best


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
        check_real("alpha", alpha, 0.0, 1.0, low_open=True)
        check_real("alpha_exponent", alpha_exponent, 0.0, 1.0)
        check_real("gamma", gamma, 0.0, 1.0, high_open=True)
        check_real("epsilon", epsilon, 0.0, 1.0)
        check_real("epsilon_min", epsilon_min, 0.0, epsilon)
        check_real("epsilon_decay", epsilon_decay, 0.0, 1.0, low_open=True)
        check_real("initial_q", initial_q)
        if explore_per_action is not None:
            check_real("explore_per_action", explore_per_action, 0.0, low_open=True)
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

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Forget Q, visit counts and the decision counter of ``n_replicates`` replicates; reseed."""
        self.rng_ = np.random.default_rng(rng)
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
        # Q viewed as one row per (replicate, state), so that each replicate's row is one flat index away.
        self._q_rows = self.q_table_.reshape(n_replicates * self.n_states, self.n_actions)
        # Scratch (B, A) rows, reused rather than allocated on every step.
        self._buffer = np.empty((n_replicates, self.n_actions))
        # learn() gathers Q(s', .) of every replicate for its target; those are the rows the next act() needs
        # (patched where the update changed them), so act() reuses them when it is given these next states.
        self._next_q = np.empty((n_replicates, self.n_actions))
        self._next_states: np.ndarray | None = None

    def epsilon_at(self, t: int) -> float:
        """Exploration probability of decision ``t`` (0-based), as :meth:`QLearning.epsilon_at`."""
        epsilon = float(self.epsilon) * float(self.epsilon_decay) ** t
        return max(epsilon, float(self.epsilon_min))

    def act(self, states: np.ndarray) -> np.ndarray:
        """Epsilon-greedy valid action of every replicate; shape (B,)."""
        t = self.n_decisions_
        epsilon = self.epsilon_at(t)
        self.n_decisions_ += 1
        b = self._rows.size
        if self.explore_per_action is not None:
            # QLearning's per-state term c * |V| / k, replicate by replicate, under the same global cap and floor
            k = self.state_decisions_[self._rows, states] + 1
            self.state_decisions_[self._rows, states] = k
            per_state = float(self.explore_per_action) * self._n_valid[states] / k
            global_epsilon = float(self.epsilon) * float(self.epsilon_decay) ** t
            epsilon = np.maximum(np.minimum(global_epsilon, per_state), float(self.epsilon_min))
        explore = self.rng_.random(b) < epsilon
        n_explore = int(np.count_nonzero(explore))
        actions = np.empty(b, dtype=np.int64)
        if n_explore < b:
            if self._next_states is not None and np.array_equal(states, self._next_states):
                q = self._next_q
            else:
                q = np.take(
                    self._q_rows, self._rows * self.n_states + states, axis=0, out=self._buffer, mode="clip"
                )
            # Only the replicates that do not explore need their greedy action.
            greedy = self._rows if n_explore == 0 else np.flatnonzero(~explore)
            actions[greedy] = _argmax_random_ties(q if n_explore == 0 else q[greedy], self.rng_)
        self._next_states = None
        if n_explore:
            s = states[explore]
            k = (self.rng_.random(n_explore) * self._n_valid[s]).astype(np.int64)
            actions[explore] = self._valid[s, k]
        return actions

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """One Q-learning update per replicate."""
        rows = self._rows
        next_q = np.take(
            self._q_rows, rows * self.n_states + next_states, axis=0, out=self._next_q, mode="clip"
        )
        target = rewards + float(self.gamma) * next_q[rows, next_q.argmax(axis=1)]
        old = self.q_table_[rows, states, actions]
        rate = float(self.alpha)
        if self.visits_ is not None:
            n = self.visits_[rows, states, actions] + 1
            self.visits_[rows, states, actions] = n
            rate = rate * n ** -float(self.alpha_exponent)
        new = old + rate * (target - old)
        self.q_table_[rows, states, actions] = new
        same = np.flatnonzero(states == next_states)  # the update changed the row Q(s', .) itself
        next_q[same, actions[same]] = new[same]
        self._next_states = next_states.copy()


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

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Forget all pulls; reseed."""
        self.rng_ = np.random.default_rng(rng)
        shape = (n_replicates, self.n_actions)
        self.counts_ = np.zeros(shape, dtype=np.int64)  # n(a) per replicate
        self.sums_ = np.zeros(shape)  # sum of rewards of arm a, seconds
        # sums / counts; for an unpulled arm the largest float, so that it comes first: finite, so that adding an
        # invalid arm's -inf penalty gives -inf (inf - inf would be nan)
        self.means_ = np.full(shape, np.finfo(float).max)
        self.inverse_sqrt_counts_ = np.zeros(shape)  # n(a) ** -1/2; 0 for an unpulled arm
        self.n_pulls_ = 0  # t: the same in every replicate, which pulls once per step
        self._rows = np.arange(n_replicates)
        # Scratch, reused: fresh (B, A) temporaries cost page faults on every step.
        self._buffer = np.empty(shape)
        self._penalty_rows = np.empty(shape)

    def act(self, states: np.ndarray) -> np.ndarray:
        """An unpulled valid arm if any (random among them), else the valid arm of largest index."""
        scale = float(self.c) * math.sqrt(2.0 * math.log(max(self.n_pulls_, 1)))
        index = np.multiply(self.inverse_sqrt_counts_, scale, out=self._buffer)
        index += self.means_
        index += np.take(self._state_penalty, states, axis=0, out=self._penalty_rows, mode="clip")
        return _argmax_random_ties(index, self.rng_)

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """Count each replicate's pull and add its reward."""
        rows = self._rows
        counts = self.counts_[rows, actions] + 1
        sums = self.sums_[rows, actions] + rewards
        self.counts_[rows, actions] = counts
        self.sums_[rows, actions] = sums
        self.means_[rows, actions] = sums / counts
        self.inverse_sqrt_counts_[rows, actions] = 1.0 / np.sqrt(counts)
        self.n_pulls_ += 1


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
        self.policy = np.asarray(policy, dtype=np.int64)
        n_states, n_actions = self.state_masks.shape
        if self.policy.shape != (n_states,) or np.any((self.policy < 0) | (self.policy >= n_actions)):
            raise ValueError(f"policy must have shape ({n_states},) with actions in [0, {n_actions})")
        invalid = np.flatnonzero(~self.state_masks[np.arange(n_states), self.policy])
        if invalid.size:
            raise ValueError(
                f"policy chooses an action its state's mask forbids in state(s) {invalid.tolist()}"
            )

    def reset(self, n_replicates: int, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to forget."""

    def act(self, states: np.ndarray) -> np.ndarray:
        """``policy[states]``."""
        return self.policy[states]

    def learn(
        self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray
    ) -> None:
        """Learn nothing."""


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
        system: a Poisson-arrival system.
        agent: a batched agent built on ``discrete_state_masks(system, bandwidth_edges_mbps, edge_load_edges)``.
        n_requests: requests per replicate, >= 1.
        n_replicates: ``B`` >= 1.
        rng: seed or generator.
        reward_scale: as ``OrchestrationEnv(reward_scale=...)``, > 0.
        record: keep every latency and action (memory grows with ``B * n_requests``); False keeps only
            each replicate's running mean, so memory stays bounded on long runs.
        bandwidth_edges_mbps, edge_load_edges: the discrete state's level edges.

    Raises:
        NotImplementedError: closed-loop arrivals.
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
    agent.reset(sim.n_replicates, agent_rng)
    b = sim.n_replicates
    latencies = np.empty((n_requests, b)) if record else None
    actions = np.empty((n_requests, b), dtype=np.min_scalar_type(system.n_actions - 1)) if record else None
    total = np.zeros(b)
    requests = sim.next_requests()
    states = sim.observe(requests)
    scale = float(reward_scale)
    for step in range(n_requests):
        action = agent.act(states)
        latency_ms = sim.serve(requests, action).total_ms
        requests = sim.next_requests()
        next_states = sim.observe(requests)
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
