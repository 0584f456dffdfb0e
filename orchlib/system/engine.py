"""The one implementation of the system's rules: ``B`` replicates of a system as arrays, advanced by compiled kernels.

:class:`Engine` holds the changing state of ``B`` independent replicates (seeds) of one
:class:`~orchlib.system.simulator.System` as arrays with a leading ``B`` axis, and the rules of the latency model
(numbered in ``docs/assumptions.md``, section "Latency model") are written once, as scalar-style
``numba.njit`` functions of one replicate ``b``:

* :func:`_uplink` -- the request's slot on the shared FIFO access uplink (one upload at a time);
* :func:`_respond` -- what one action would give replicate ``b``'s current request: the six parts of the
  response time and the times at which the resources it uses become free, **without changing the state**;
  the per-user device (one inference at a time), the edge and cloud FIFO servers with ``n_workers``
  workers and the WAN leg are each written here and nowhere else; transfers follow the link's rate over time
  exactly (:func:`orchlib.system.latency.link_transfer_ms`, the one trace integration);
* :func:`_commit` -- the effect of a served action on the state (device, uplinks, worker, in-system list);
* :func:`_snapshot` -- what an orchestrator can measure at a request's arrival;
* :func:`_next_request` -- the next request in time order over the users of one replicate.

Every entry point is a loop of these over replicates (and actions): ``serve`` = respond + commit,
``evaluate`` = respond for every action (the clairvoyant oracle, one call for all actions and replicates).
:class:`~orchlib.system.simulator.Simulator` (per request, used by the Gymnasium env) is the ``B = 1`` view and
:class:`~orchlib.study.batch.BatchSimulator` the ``B``-replicate view of this engine.

Randomness. Replicate ``b`` draws from its own generator (``rngs[b]``; :func:`replicate_generators` spawns them
with ``SeedSequence``), in blocks of :data:`BLOCK` draws and a fixed order: inter-arrival gaps (or think times)
from one block of standard exponentials, and per request one uniform (requirement class) and three standard
normals (compute noise per tier) from another; each block is refilled when it runs out. A replicate's numbers
therefore depend only on its generator, never on the batch size: ``B`` replicates in one engine give
bit for bit the numbers of ``B`` engines of one replicate each (``tests/test_engine.py``). Compared with the
simulator before the engine (commit 71433da) the per-request draws are the same, but the compute noise
``median * exp(sigma * z)`` is evaluated with the compiled ``exp`` (it may differ in the last bit), and result
downloads are integrated exactly in the oracle's evaluation as in serving (assumptions L3 and L10 in
``docs/assumptions.md``).

Extension points (for per-user device classes, per-request payloads and hidden conditions): the compute
time's median and log-normal sigma are per user (shape (n_users, 3 tiers, n_variants)), the upload size is per
request (``request_payload_bits``, shape (B, n_variants)), and new per-replicate state is one more array with a
leading ``B`` axis passed to the kernels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from orchlib.system.latency import BITS_PER_BYTE, link_rate_mbps, link_transfer_ms

END, EDGE, CLOUD = 0, 1, 2
#: draws per block of random numbers (the stream of a replicate depends on it, not on the batch size).
BLOCK = 1024
#: link order in the packed link arrays.
ACCESS_UP, ACCESS_DOWN, WAN_UP, WAN_DOWN = range(4)
#: initial capacity of the per-replicate lists of completion times (they double when full).
_DONE_CAPACITY = 16


def replicate_generators(
    rng: np.random.Generator | np.random.SeedSequence | int | Sequence[np.random.Generator] | None,
    n_replicates: int,
) -> list[np.random.Generator]:
    """One independent generator per replicate: ``SeedSequence(seed).spawn(n)`` (or ``generator.spawn(n)``;
    a list of ``n`` generators is taken as it is).

    Replicate ``i``'s generator does not depend on ``n_replicates`` (``spawn`` numbers its children).
    """
    if isinstance(rng, list | tuple):  # already one generator per replicate
        if len(rng) != n_replicates or not all(isinstance(g, np.random.Generator) for g in rng):
            raise ValueError(f"a list of generators must hold one Generator per replicate ({n_replicates})")
        return list(rng)
    if isinstance(rng, np.random.Generator):
        return rng.spawn(n_replicates)
    sequence = rng if isinstance(rng, np.random.SeedSequence) else np.random.SeedSequence(rng)
    return [np.random.default_rng(child) for child in sequence.spawn(n_replicates)]


# ---------------------------------------------------------------------------------------------------------
# The rules, for one replicate b (scalar style; compiled)


# fmt: off
@numba.njit(cache=True, inline="always")
def _transfer(links, link_sizes, link_constant, k, bits, start_ms):
    """Time (ms) to send ``bits`` over link ``k`` from ``start_ms`` (exact trace integration)."""
    return link_transfer_ms(links[k], link_sizes[k, 0], link_sizes[k, 1], link_constant[k], bits, start_ms)


@numba.njit(cache=True, inline="always")
def _earliest(free_ms):
    """Index of the earliest free worker (the first one on ties)."""
    best = 0
    for w in range(1, free_ms.size):
        if free_ms[w] < free_ms[best]:
            best = w
    return best


@numba.njit(cache=True, inline="always")
def _compute(median, sigma, user, tier, v, z):
    """Compute time (ms) of variant ``v`` on ``tier`` for ``user``: log-normal, ``median * exp(sigma * z)``."""
    return median[user, tier, v] * np.exp(sigma[user, tier, v] * z)


@numba.njit(cache=True)
def _compute_table(median, sigma, user, z, out):
    """:func:`_compute` of every (tier, variant) into ``out`` (3, n_variants)."""
    for tier in range(out.shape[0]):
        for v in range(out.shape[1]):
            out[tier, v] = _compute(median, sigma, user, tier, v, z[tier])


@numba.njit(cache=True, inline="always")
def _uplink(payload, t, access_free, links, link_sizes, link_constant):
    """``(link_start, upload)``, ms: the shared access uplink sends one upload at a time, first come first
    served, from ``link_start`` on, at the link's rate over time."""
    link_start = max(t, access_free)
    return link_start, _transfer(links, link_sizes, link_constant, ACCESS_UP, payload, link_start)


@numba.njit(cache=True, inline="always")
def _respond(
    tier, compute, payload, result, t, link_start, upload,
    device_free, wan_free, edge_free, cloud_free,
    links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
):
    """What serving a request that arrives at ``t`` on ``tier`` would give; a pure function, no state change.

    Args: the tier, the compute time (ms), the upload and result sizes (bits), the request's access-uplink
    slot from :func:`_uplink` (unused on the end tier), and when the resources are free (ms): the user's
    device, the WAN uplink, the earliest edge and cloud workers.

    Returns ``(network_wait, upload, propagation, queue, compute, download, device_done, uploaded,
    wan_uploaded, server_done)``, ms; the last four are the resources' new free times (``nan`` where unused).
    """
    nan = np.nan
    if tier == END:
        # the user's own device runs one inference at a time
        start = max(t, device_free)
        return 0.0, 0.0, 0.0, start - t, compute, 0.0, start + compute, nan, nan, nan
    uploaded = link_start + upload
    at_edge = uploaded + half_access_rtt
    wait = link_start - t
    propagation = 2 * half_access_rtt
    wan_uploaded = nan
    if tier == EDGE:
        arrive, free = at_edge, edge_free
    else:
        # the WAN leg: the edge forwards the input over the shared WAN uplink, also FIFO
        wan_start = max(at_edge, wan_free)
        wan_upload = _transfer(links, link_sizes, link_constant, WAN_UP, payload, wan_start)
        wan_uploaded = wan_start + wan_upload
        wait += wan_start - at_edge
        upload += wan_upload
        propagation += 2 * half_wan_rtt
        arrive, free = wan_uploaded + half_wan_rtt, cloud_free
    # FIFO servers: the request waits for the earliest free worker
    start = max(arrive, free)
    done = start + compute
    if tier == EDGE:
        download = _transfer(links, link_sizes, link_constant, ACCESS_DOWN, result, done)
    else:
        wan_back = _transfer(links, link_sizes, link_constant, WAN_DOWN, result, done)
        back_at_edge = done + wan_back + half_wan_rtt
        download = wan_back + _transfer(links, link_sizes, link_constant, ACCESS_DOWN, result, back_at_edge)
    return wait, upload, propagation, start - arrive, compute, download, nan, uploaded, wan_uploaded, done


@numba.njit(cache=True, inline="always")
def _total(wait, upload, propagation, queue, compute, download):
    """The response time: the six parts added left to right."""
    return wait + upload + propagation + queue + compute + download


@numba.njit(cache=True, inline="always")
def _free_slot(done_ms, t):
    """A slot of a completion-time list whose request has left the system by ``t`` (-1 if none)."""
    for k in range(done_ms.size):
        if done_ms[k] <= t:
            return k
    return -1


@numba.njit(cache=True, inline="always")
def _commit(
    b, tier, t, user, device_done, uploaded, wan_uploaded, server_done,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
):
    """Apply a served action's effect (the free times :func:`_respond` returned) to replicate ``b``'s state.

    Returns False, changing nothing, when the list of completion times of the action's server is full (the
    caller grows it and commits again).
    """
    if tier == END:
        device_free[b, user] = device_done
        return True
    done_list = edge_done[b] if tier == EDGE else cloud_done[b]
    slot = _free_slot(done_list, t)
    if slot < 0:
        return False
    done_list[slot] = server_done
    access_free[b] = uploaded
    if tier == EDGE:
        edge_workers[b, _earliest(edge_workers[b])] = server_done
    else:
        wan_free[b] = wan_uploaded
        cloud_workers[b, _earliest(cloud_workers[b])] = server_done
    return True


@numba.njit(cache=True, inline="always")
def _count_after(done_ms, t):
    """Requests of a completion-time list still in the system at ``t``."""
    n = 0
    for k in range(done_ms.size):
        n += done_ms[k] > t
    return n


@numba.njit(cache=True, inline="always")
def _snapshot(b, t, user, device_free, access_free, edge_done, cloud_done, links, link_sizes, link_constant):
    """(access Mbit/s, WAN Mbit/s, access backlog ms, device backlog ms, edge in system, cloud in system)."""
    t_s = t / 1e3
    return (
        link_rate_mbps(links[ACCESS_UP], link_sizes[ACCESS_UP, 0], link_sizes[ACCESS_UP, 1],
                       link_constant[ACCESS_UP], t_s),
        link_rate_mbps(links[WAN_UP], link_sizes[WAN_UP, 0], link_sizes[WAN_UP, 1], link_constant[WAN_UP], t_s),
        max(0.0, access_free[b] - t),
        max(0.0, device_free[b, user] - t),
        _count_after(edge_done[b], t),
        _count_after(cloud_done[b], t),
    )


@numba.njit(cache=True, inline="always")
def _next_request(b, next_arrival, poisson, gap_ms):
    """(time, user) of replicate ``b``'s next request: the earliest next arrival (lowest user on ties).

    With Poisson arrivals the user's following request is scheduled ``gap_ms`` later; in a closed loop it is
    scheduled when this one is served (:func:`_serve_batch`).
    """
    row = next_arrival[b]
    user = _earliest(row)
    t = row[user]
    row[user] = t + gap_ms if poisson else np.inf
    return t, user


# ---------------------------------------------------------------------------------------------------------
# Entry points: loops of the rules over replicates (and actions)


@numba.njit(cache=True)
def _next_requests(
    next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
    time_ms, user, requirement_class, z, payload_bits,
):
    """Draw every replicate's next request into the request arrays (from the given columns of the blocks)."""
    for b in range(time_ms.size):
        t, u = _next_request(b, next_arrival, poisson, gaps[b, gap_column] * mean_gap_ms)
        time_ms[b] = t
        user[b] = u
        # the class: first k with uniform < cdf[k], else the last
        draw = uniforms[b, draw_column]
        k = 0
        while k < class_cdf.size - 1 and draw >= class_cdf[k]:
            k += 1
        requirement_class[b] = k
        z[b] = normals[b, draw_column]
        payload_bits[b] = input_bits


@numba.njit(cache=True)
def _snapshot_batch(
    time_ms, user, device_free, access_free, edge_done, cloud_done, links, link_sizes, link_constant, out
):
    """:func:`_snapshot` of every replicate into ``out`` (B, 6)."""
    for b in range(time_ms.size):
        snap = _snapshot(
            b, time_ms[b], user[b], device_free, access_free, edge_done, cloud_done, links, link_sizes, link_constant
        )
        out[b, 0], out[b, 1], out[b, 2], out[b, 3] = snap[0], snap[1], snap[2], snap[3]
        out[b, 4], out[b, 5] = snap[4], snap[5]


@numba.njit(cache=True)
def _evaluate_batch(
    time_ms, user, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, out,
):
    """Response time (ms) of every action for every replicate's request, into ``out`` (B, n_actions)."""
    n_variants = result_bits.size
    for b in range(time_ms.size):
        t, u = time_ms[b], user[b]
        edge_free = edge_workers[b, _earliest(edge_workers[b])]
        cloud_free = cloud_workers[b, _earliest(cloud_workers[b])]
        last_payload, link_start, upload = -1.0, 0.0, 0.0
        for v in range(n_variants):
            # the access upload is the same for the edge and the cloud, and for variants of equal payload
            payload = payload_bits[b, v]
            if payload != last_payload:
                link_start, upload = _uplink(payload, t, access_free[b], links, link_sizes, link_constant)
                last_payload = payload
            for tier in range(3):
                parts = _respond(
                    tier, _compute(median, sigma, u, tier, v, z[b, tier]), payload, result_bits[v], t,
                    link_start, upload, device_free[b, u], wan_free[b], edge_free, cloud_free,
                    links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
                )
                out[b, tier * n_variants + v] = _total(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])


@numba.njit(cache=True)
def _serve_batch(
    first, actions, time_ms, user, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
    next_arrival, closed_loop, gaps, gap_position, mean_gap_ms, out,
):
    """Serve replicates ``first..B-1`` (respond, then commit); parts and total into ``out`` (B, 7).

    Returns the first replicate whose completion-time list is full (nothing of it changed), or -1 when all
    were served. In a closed loop the user's next request comes a think time after the response.
    """
    n_variants = result_bits.size
    for b in range(first, time_ms.size):
        t, u, action = time_ms[b], user[b], actions[b]
        tier = action // n_variants
        v = action - tier * n_variants
        payload = payload_bits[b, v]
        link_start, upload = t, 0.0
        if tier != END:
            link_start, upload = _uplink(payload, t, access_free[b], links, link_sizes, link_constant)
        parts = _respond(
            tier, _compute(median, sigma, u, tier, v, z[b, tier]), payload, result_bits[v], t,
            link_start, upload, device_free[b, u], wan_free[b],
            edge_workers[b, _earliest(edge_workers[b])], cloud_workers[b, _earliest(cloud_workers[b])],
            links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
        )
        committed = _commit(
            b, tier, t, u, parts[6], parts[7], parts[8], parts[9],
            device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
        )
        if not committed:
            return b
        total = _total(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])
        for k in range(6):
            out[b, k] = parts[k]
        out[b, 6] = total
        if closed_loop:
            next_arrival[b, u] = t + total + gaps[b, gap_position] * mean_gap_ms
    return -1
@numba.njit(cache=True)
def _next_observed(
    next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
    time_ms, user, requirement_class, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
    with_evaluate, snapshot_out, evaluate_out,
):
    """:func:`_next_requests`, then :func:`_snapshot_batch` and optionally :func:`_evaluate_batch` of the new
    requests, in one call (the state does not change between them; one call costs one dispatch)."""
    _next_requests(
        next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
        time_ms, user, requirement_class, z, payload_bits,
    )
    _snapshot_batch(
        time_ms, user, device_free, access_free, edge_done, cloud_done, links, link_sizes, link_constant, snapshot_out
    )
    if with_evaluate:
        _evaluate_batch(
            time_ms, user, z, payload_bits,
            device_free, access_free, wan_free, edge_workers, cloud_workers,
            median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, evaluate_out,
        )


@numba.njit(cache=True)
def _serve_then_next(
    first, actions, time_ms, user, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
    next_arrival, closed_loop, gaps, gap_column, mean_gap_ms, serve_out,
    poisson, uniforms, normals, draw_column, class_cdf, input_bits, requirement_class,
    with_evaluate, snapshot_out, evaluate_out,
):
    """:func:`_serve_batch`, then :func:`_next_observed`, in one call (the per-request path's step)."""
    failed = _serve_batch(
        first, actions, time_ms, user, z, payload_bits,
        device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
        median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
        next_arrival, closed_loop, gaps, gap_column, mean_gap_ms, serve_out,
    )
    if failed >= 0:
        return failed
    _next_observed(
        next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
        time_ms, user, requirement_class, z, payload_bits,
        device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
        median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
        with_evaluate, snapshot_out, evaluate_out,
    )
    return -1


# fmt: on


# ---------------------------------------------------------------------------------------------------------
# The state and its Python entry points

#: columns of :meth:`Engine.serve`'s output: the six parts of the response time and the total, ms.
BREAKDOWN_COLUMNS = (
    "network_wait_ms",
    "upload_ms",
    "propagation_ms",
    "queue_ms",
    "compute_ms",
    "download_ms",
    "total_ms",
)
#: columns of :meth:`Engine.snapshot`'s output.
SNAPSHOT_COLUMNS = (
    "access_mbps",
    "wan_mbps",
    "access_backlog_ms",
    "device_backlog_ms",
    "edge_in_system",
    "cloud_in_system",
)


def engine_compute_ms(engine: Engine, user: int, z: np.ndarray) -> np.ndarray:
    """Compute time (ms) of every (tier, variant) for ``user`` with noise ``z`` (3,), shape (3, n_variants)."""
    out = np.empty(engine.median_ms.shape[1:])
    _compute_table(engine.median_ms, engine.sigma, int(user), z, out)
    return out


class Engine:
    """``B`` replicates of one system: state arrays, request arrays and the compiled rules.

    Use: :meth:`next_requests` (or :meth:`make_requests`), optionally :meth:`snapshot` and :meth:`evaluate`,
    then :meth:`serve`. The current requests are in ``request_time_ms``, ``request_user``,
    ``request_class``, ``request_z`` (B, 3) and ``request_payload_bits`` (B, n_variants). Arguments are not
    validated here: :class:`~orchlib.system.simulator.Simulator` and
    :class:`~orchlib.study.batch.BatchSimulator` do that.

    Args:
        system: from :func:`~orchlib.system.simulator.build_system`.
        n_replicates: ``B`` >= 1.
        rngs: one generator per replicate (see :func:`replicate_generators`).
    """

    def __init__(self, system, n_replicates: int, rngs: Sequence[np.random.Generator]) -> None:
        self.system = system
        self.n_replicates = n_replicates
        s = system.scenario
        self.poisson = s.arrivals.process == "poisson"
        self.mean_gap_ms = 1e3 / s.arrivals.rate_per_s if self.poisson else s.arrivals.think_time_ms
        n_users = s.n_users
        # compute-time median and sigma per user (one row per user: device classes may differ), ms
        self.median_ms = np.ascontiguousarray(
            np.broadcast_to(system.median_ms, (n_users, *system.median_ms.shape))
        )
        self.sigma = np.ascontiguousarray(np.broadcast_to(system.sigma, (n_users, *system.sigma.shape)))
        self.input_bits = system.input_bytes * BITS_PER_BYTE
        self.result_bits = system.result_bytes * BITS_PER_BYTE
        rates = (system.access_up, system.access_down, system.wan_up, system.wan_down)
        width = max(r.table.shape[1] for r in rates)
        # the four links packed (rows of latency.RateFunction.table), their sizes and constant rates (0: varies)
        self.links = np.zeros((4, 5, width))
        for k, r in enumerate(rates):
            self.links[k, :, : r.table.shape[1]] = r.table
        self.link_sizes = np.array([[r.n_prefix, r.n_tail] for r in rates], dtype=np.int64)
        self.link_constant = np.array([r.packed()[3] for r in rates])
        self.half_access_rtt = system.access_rtt_ms / 2
        self.half_wan_rtt = system.wan_rtt_ms / 2
        self.class_cdf = np.asarray(system.requirement_cdf, dtype=float)
        self.reset(rngs)

    def reset(self, rngs: Sequence[np.random.Generator]) -> None:
        """Empty systems at time 0 with the given generators; every user's first request is scheduled."""
        b, s = self.n_replicates, self.system.scenario
        if len(rngs) != b:
            raise ValueError(f"need one generator per replicate ({b}), got {len(rngs)}")
        self.rngs = list(rngs)
        n_users = s.n_users
        self.device_free_ms = np.zeros((b, n_users))  # when each user's device finishes its queued inferences
        self.access_free_ms = np.zeros(b)  # when the shared access uplink has sent the queued uploads
        self.wan_free_ms = np.zeros(b)  # when the WAN uplink has sent the queued uploads
        self.edge_workers_ms = np.zeros((b, s.edge.n_workers))  # when each edge worker is free
        self.cloud_workers_ms = np.zeros((b, s.cloud.n_workers))
        # completion times of requests assigned to the edge / cloud (slots <= the current time are free)
        self.edge_done_ms = np.full((b, _DONE_CAPACITY), -np.inf)
        self.cloud_done_ms = np.full((b, _DONE_CAPACITY), -np.inf)
        self.next_arrival_ms = np.empty(
            (b, n_users)
        )  # each user's next request time (inf: waiting, closed loop)
        self.request_time_ms = np.zeros(b)
        self.request_user = np.zeros(b, dtype=np.int64)
        self.request_class = np.zeros(b, dtype=np.int64)
        self.request_z = np.zeros((b, 3))
        self.request_payload_bits = np.tile(self.input_bits, (b, 1))
        # blocks of draws (module docstring): gaps, and per request a uniform and three normals
        self._gaps = np.empty((b, BLOCK))
        self._uniforms = np.empty((b, BLOCK))
        self._normals = np.empty((b, BLOCK, 3))
        self._gap_column = self._draw_column = BLOCK  # next unread column of each block (BLOCK: empty)
        for user in range(n_users):
            self.next_arrival_ms[:, user] = self._take_gaps() * self.mean_gap_ms
        self._out_serve = np.empty((b, 7))
        self._out_snapshot = np.empty((b, 6))
        self._out_evaluate = np.empty((b, self.system.n_actions))
        self._no_gaps = np.zeros((b, 1))
        self._bind()

    # -- randomness: each replicate's blocks refilled from its own generator, in the order they run out
    def _refill_gaps(self) -> None:
        for b, rng in enumerate(self.rngs):
            self._gaps[b] = rng.standard_exponential(BLOCK)
        self._gap_column = 0

    def _refill_draws(self) -> None:
        for b, rng in enumerate(self.rngs):
            self._uniforms[b] = rng.random(BLOCK)
            self._normals[b] = rng.standard_normal((BLOCK, 3))
        self._draw_column = 0

    def _take_gaps(self) -> np.ndarray:
        if self._gap_column >= BLOCK:
            self._refill_gaps()
        self._gap_column += 1
        return self._gaps[:, self._gap_column - 1]

    def _bind(self) -> None:
        """The kernels' argument tuples (the arrays are updated in place; rebuilt when one is replaced)."""
        request = (self.request_time_ms, self.request_user, self.request_z, self.request_payload_bits)
        resources = (
            self.device_free_ms,
            self.access_free_ms,
            self.wan_free_ms,
            self.edge_workers_ms,
            self.cloud_workers_ms,
        )
        rules = (
            self.median_ms,
            self.sigma,
            self.result_bits,
            self.links,
            self.link_sizes,
            self.link_constant,
            self.half_access_rtt,
            self.half_wan_rtt,
        )
        # the draw columns go between these two parts
        self._draw_blocks = (self.next_arrival_ms, self.poisson, self._gaps, self._uniforms, self._normals)
        self._draw_args = (
            self.mean_gap_ms,
            self.class_cdf,
            self.input_bits,
            self.request_time_ms,
            self.request_user,
            self.request_class,
            self.request_z,
            self.request_payload_bits,
        )
        self._observe_args = (
            *resources,
            self.edge_done_ms,
            self.cloud_done_ms,
            *rules,
        )
        self._snapshot_args = (
            self.request_time_ms,
            self.request_user,
            self.device_free_ms,
            self.access_free_ms,
            self.edge_done_ms,
            self.cloud_done_ms,
            self.links,
            self.link_sizes,
            self.link_constant,
            self._out_snapshot,
        )
        self._evaluate_args = (*request, *resources, *rules, self._out_evaluate)
        self._serve_args = (
            *request,
            *resources,
            self.edge_done_ms,
            self.cloud_done_ms,
            *rules,
            self.next_arrival_ms,
        )
        self._snapshot_fresh = self._evaluate_fresh = False

    def next_requests(self, with_evaluate: bool = False) -> None:
        """Every replicate's next request (in time order over its users) into the request arrays.

        Its :meth:`snapshot` (and, if ``with_evaluate``, its :meth:`evaluate`) is computed in the same call.
        """
        if self.poisson and self._gap_column >= BLOCK:
            self._refill_gaps()
        if self._draw_column >= BLOCK:
            self._refill_draws()
        _next_observed(
            *self._draw_blocks, self._gap_column, self._draw_column, *self._draw_args, *self._observe_args,
            with_evaluate, self._out_snapshot, self._out_evaluate,
        )  # fmt: skip
        self._snapshot_fresh, self._evaluate_fresh = True, with_evaluate
        if self.poisson:
            self._gap_column += 1
        self._draw_column += 1

    def set_requests(self, time_ms, user, requirement_class, z) -> None:
        """Make scripted requests the current ones (arguments broadcast to (B,), z to (B, 3); not validated)."""
        self.request_time_ms[:] = time_ms
        self.request_user[:] = user
        self.request_class[:] = requirement_class
        self.request_z[:] = z
        self.request_payload_bits[:] = self.input_bits
        self._snapshot_fresh = self._evaluate_fresh = False

    def snapshot(self) -> np.ndarray:
        """Measurements at every replicate's request, shape (B, 6), columns :data:`SNAPSHOT_COLUMNS`.

        The returned array is reused by later calls.
        """
        if not self._snapshot_fresh:
            _snapshot_batch(*self._snapshot_args)
            self._snapshot_fresh = True
        return self._out_snapshot

    def evaluate(self) -> np.ndarray:
        """Response time (ms) every action would give every replicate's request, shape (B, n_actions).

        No state changes; the returned array is reused by later calls.
        """
        if not self._evaluate_fresh:
            _evaluate_batch(*self._evaluate_args)
            self._evaluate_fresh = True
        return self._out_evaluate

    def serve(self, actions: np.ndarray, then_next: bool = False, with_evaluate: bool = False) -> np.ndarray:
        """Serve every replicate's request with its action (int64, shape (B,)); update the state.

        With ``then_next``, also :meth:`next_requests` (``with_evaluate`` as there) in the same compiled call:
        the same draws in the same order, one call instead of two.

        Returns the parts and total of each response time, shape (B, 7), columns :data:`BREAKDOWN_COLUMNS`
        (reused by the next call).
        """
        closed_loop = not self.poisson
        # each block is refilled before the call that reads from it, in the order the separate calls would
        if self._gap_column >= BLOCK and (closed_loop or then_next):
            self._refill_gaps()
        if then_next and self._draw_column >= BLOCK:
            self._refill_draws()
        self._snapshot_fresh = self._evaluate_fresh = False
        first = 0
        while True:
            if then_next:
                first = _serve_then_next(
                    first, actions, *self._serve_args, closed_loop, self._gaps, self._gap_column,
                    self.mean_gap_ms, self._out_serve, self.poisson, self._uniforms, self._normals,
                    self._draw_column, self.class_cdf, self.input_bits, self.request_class,
                    with_evaluate, self._out_snapshot, self._out_evaluate,
                )  # fmt: skip
            else:
                gaps = self._gaps if closed_loop else self._no_gaps
                first = _serve_batch(
                    first, actions, *self._serve_args, closed_loop, gaps, self._gap_column if closed_loop else 0,
                    self.mean_gap_ms, self._out_serve,
                )  # fmt: skip
            if first < 0:
                break
            self._grow_done_lists()
        if closed_loop or then_next:  # a think time (closed loop) or the next gap (Poisson) was read
            self._gap_column += 1
        if then_next:
            self._draw_column += 1
            self._snapshot_fresh, self._evaluate_fresh = True, with_evaluate
        return self._out_serve

    def _grow_done_lists(self) -> None:
        """Double the capacity of the completion-time lists (a replicate had more requests in a server)."""
        for name in ("edge_done_ms", "cloud_done_ms"):
            old = getattr(self, name)
            grown = np.full((old.shape[0], 2 * old.shape[1]), -np.inf)
            grown[:, : old.shape[1]] = old
            setattr(self, name, grown)
        self._bind()
