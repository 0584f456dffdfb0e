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
* :func:`_total` -- the response time: those six parts plus the tier's fixed per-request protocol cost
  (``world[10]``, L11), the seventh part, which occupies no resource and so changes no free time;
* :func:`_commit` -- the effect of a served action on the state (device, uplinks, worker, in-system list);
* :func:`_snapshot` -- what an orchestrator can measure at a request's arrival;
* :func:`_next_request` -- the next request in time order over the users of one replicate.

Every entry point is a loop of these over replicates (and actions): ``serve`` = respond + commit,
``evaluate`` = respond for every action (the clairvoyant oracle, one call for all actions and replicates),
``best`` = the same over a request's valid actions, skipping those a lower bound rules out (the env's oracle info).
The per-request path's step (serve, then draw and observe the next request) is one compiled call whose
arguments travel in one :class:`StepState`.
:class:`~orchlib.system.simulator.Simulator` (per request, used by the Gymnasium env) is the ``B = 1`` view and
:class:`~orchlib.system.batch.BatchSimulator` the ``B``-replicate view of this engine.

Randomness. Replicate ``b`` draws from its own generator (``rngs[b]``; :func:`replicate_generators` spawns them
with ``SeedSequence``), in blocks of :data:`BLOCK` draws and a fixed order: inter-arrival gaps (or think times)
from one block of standard exponentials, and per request one uniform (requirement class) and three standard
normals (compute noise per tier) from another; each block is refilled when it runs out. A replicate's numbers
therefore depend only on its generator, never on the batch size: ``B`` replicates in one engine give
bit for bit the numbers of ``B`` engines of one replicate each (``tests/test_engine.py``). The compute-noise
factor ``exp(sigma * z)`` is evaluated by NumPy when the draws are made (:meth:`Engine._fill_noise`), so the per-request numbers equal
those of the simulator before the engine (bit for bit on one CPU; NumPy's ``exp`` rounds a few results
differently in the last bit on CPUs with and without AVX-512, so ``tests/test_grounded.py`` compares the ``ideal``
world with the stored pre-engine table within 1e-12 relative); result downloads are integrated exactly in the
oracle's evaluation as in serving (assumptions L3, L9 and L10 in ``docs/assumptions.md``).

Compilation. The trace integration of a link whose rate changes
(:func:`orchlib.system.latency.link_transfer_ms`'s two piecewise-linear lookups) is compiled once and called;
every other rule is inlined (``inline="always"``) where it is used, as calls with array arguments cost the hot
loops about 2x (argument views and reference counts per call; measured at B = 64). Inlining the trace
integration too copied it into each of the engine's eight transfers and made the first use compile for minutes in
gigabytes of memory (issue 22: about 290 s of CPU and 5 GB for the first env before, about 25 s and 0.45 GB
after, measured side by side in ``benchmarks/bench_vs_baseline.py``; the same warm speed within about 10 %).
The engine passes every scenario's values with one set of types (floats, float64 arrays), so one compilation
serves every world; :mod:`orchlib.system.compilation` says so when it happens and compiles ahead for workers.

The grounded world (issue 12) is in the same rules: per-request JPEG payloads (a block of sizes drawn from the
replicate's payload generator), per-user device medians and sigmas (shape (B, n_users, 3, n_variants)),
thermal throttling and background load on the device (:func:`_device_factor`), co-tenant jobs on the edge
(:func:`_server_start`) and outages in the trace integration. Each replicate's generator spawns the world's
own generators as issue 12's simulator did (fleet, payload, co-tenant, one per user), so the arrival and noise
stream stays the ideal world's.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numba
import numpy as np
from numba.experimental import structref
from numba.extending import overload

from orchlib.system import compilation, dynamics, payloads
from orchlib.system.latency import BITS_PER_BYTE, link_rate_mbps, link_transfer_ms

compilation.announce_first_compilation()

END, EDGE, CLOUD = 0, 1, 2
#: draws per block of random numbers (the stream of a replicate depends on it, not on the batch size).
BLOCK = 1024
#: what the kernels that draw the next requests also evaluate: nothing, every action, or the best valid action.
EVALUATE_NONE, EVALUATE_ALL, EVALUATE_BEST = 0, 1, 2
#: link order in the packed link arrays.
ACCESS_UP, ACCESS_DOWN, WAN_UP, WAN_DOWN = range(4)
#: draw columns whose compute-noise factors are evaluated at a time (memory: B x this x classes x 3 x variants).
_NOISE_COLUMNS = 64
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
def _compute(median, noise, user, tier, v):
    """Compute time (ms) of variant ``v`` on ``tier`` for ``user``: log-normal, ``median * exp(sigma * z)`` (L7),
    with ``noise`` = the request's ``exp(sigma * z)`` (3, n_variants), evaluated by NumPy when the draws are
    made (:meth:`Engine._fill_noise`), so the numbers are NumPy's ``exp`` bit for bit (``ideal`` reproduces the
    pre-engine simulator exactly). Without hidden conditions (see :func:`_device_factor`)."""
    return median[user, tier, v] * noise[tier, v]


@numba.njit(cache=True, inline="always")
def _check_covered(row, n, t, need):
    """Whether an on/off schedule's first ``n`` switch times reach past ``t`` (H2, H3).

    A time at or past the last known switch sets ``need`` (flag, latest such time): the caller extends the
    schedule from its own generator and computes again (the schedule's stream does not depend on how far
    it has been extended, so the result is the same as with a longer schedule from the start). The gate
    itself is :func:`orchlib.system.dynamics.switches_until`. An infinite ``t`` (a server held for ever by an
    action its tier cannot run) needs no switch: no schedule can cover it, and every time after it is infinite.
    """
    if row[n - 1] <= t < np.inf:
        need[0] = 1.0
        need[1] = max(need[1], t)


@numba.njit(cache=True, inline="always")
def _device_factor(b, u, start, device_free, world):
    """Compute-time multiplier on user ``u``'s device for an inference starting at ``start`` (H1 thermal
    throttling, H2 background load), and the device's heat then."""
    heat, thermal, bg_switch, bg_count, bg_slowdown, need = world[0], world[1], world[2], world[3], world[4], world[8]
    factor, h = 1.0, 0.0
    if thermal[0] > 0:  # [max_slowdown, heating tau ms, cooling tau ms]; 0: no throttling
        h = dynamics.cooled_heat(heat[b, u], start - device_free[b, u], thermal[2])
        factor *= dynamics.thermal_slowdown(h, thermal[0])
    n = bg_count[b, u]
    if n > 0:
        _check_covered(bg_switch[b, u], n, start, need)
        if dynamics.switches_until(bg_switch[b, u], n, start) % 2 == 1:
            factor *= bg_slowdown[0]
    return factor, h


@numba.njit(cache=True, inline="always")
def _server_start(arrive, workers, occupied, cot_switch, cot_n, need):
    """``(worker, start)``: the FIFO server's earliest start for an input arriving at ``arrive``; the first
    ``occupied`` workers wait for the end of a co-tenant job that is running then (H3; 0 without one)."""
    if occupied == 0:
        w = _earliest(workers)
        return w, max(arrive, workers[w])
    best_w, best = 0, np.inf
    for w in range(workers.size):
        start = max(arrive, workers[w])
        if w < occupied:  # a co-tenant job running then: wait for its end
            _check_covered(cot_switch, cot_n, start, need)
            start = dynamics.on_period_end(cot_switch, cot_n, start)
        if start < best:
            best_w, best = w, start
    return best_w, best


@numba.njit(cache=True, inline="always")
def _uplink(payload, t, access_free, links, link_sizes, link_constant):
    """``(link_start, upload)``, ms: the shared access uplink sends one upload at a time, first come first
    served, from ``link_start`` on, at the link's rate over time."""
    link_start = max(t, access_free)
    return link_start, _transfer(links, link_sizes, link_constant, ACCESS_UP, payload, link_start)


@numba.njit(cache=True, inline="always")
def _respond(
    tier, compute, payload, result, t, link_start, upload,
    device_free, wan_free, edge_row, cloud_row, cot_switch, cot_n, occupied, need,
    links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
):
    """What serving a request that arrives at ``t`` on ``tier`` would give; a pure function, no state change.

    Args: the tier, the compute time (ms), the upload and result sizes (bits), the request's access-uplink
    slot from :func:`_uplink` (unused on the end tier), and when the resources are free (ms): the user's
    device, the WAN uplink, each edge and cloud worker (rows), and the edge's co-tenant schedule (H3).

    Returns ``(network_wait, upload, propagation, queue, compute, download, device_done, uploaded,
    wan_uploaded, server_done, worker)``, ms; then the resources' new free times (``nan`` where unused) and
    the server's worker that takes the request (-1 on the end tier).
    """
    nan = np.nan
    if tier == END:
        # the user's own device runs one inference at a time
        start = max(t, device_free)
        return 0.0, 0.0, 0.0, start - t, compute, 0.0, start + compute, nan, nan, nan, -1
    uploaded = link_start + upload
    at_edge = uploaded + half_access_rtt
    wait = link_start - t
    propagation = 2 * half_access_rtt
    wan_uploaded = nan
    if tier == EDGE:
        arrive = at_edge
        w, start = _server_start(arrive, edge_row, occupied, cot_switch, cot_n, need)
    else:
        # the WAN leg: the edge forwards the input over the shared WAN uplink, also FIFO
        wan_start = max(at_edge, wan_free)
        wan_upload = _transfer(links, link_sizes, link_constant, WAN_UP, payload, wan_start)
        wan_uploaded = wan_start + wan_upload
        wait += wan_start - at_edge
        upload += wan_upload
        propagation += 2 * half_wan_rtt
        arrive = wan_uploaded + half_wan_rtt
        w, start = _server_start(arrive, cloud_row, 0, cot_switch, cot_n, need)
    # FIFO servers: the request waits for the earliest free worker
    done = start + compute
    if tier == EDGE:
        download = _transfer(links, link_sizes, link_constant, ACCESS_DOWN, result, done)
    else:
        wan_back = _transfer(links, link_sizes, link_constant, WAN_DOWN, result, done)
        back_at_edge = done + wan_back + half_wan_rtt
        download = wan_back + _transfer(links, link_sizes, link_constant, ACCESS_DOWN, result, back_at_edge)
    return wait, upload, propagation, start - arrive, compute, download, nan, uploaded, wan_uploaded, done, w


@numba.njit(cache=True, inline="always")
def _total(wait, upload, propagation, queue, compute, download, overhead):
    """The response time: the seven parts added left to right (``overhead`` last: the tier's fixed
    per-request protocol cost, L11, which occupies neither a link nor a server and so moves no free time)."""
    return wait + upload + propagation + queue + compute + download + overhead


@numba.njit(cache=True, inline="always")
def _free_slot(done_ms, t):
    """A slot of a completion-time list whose request has left the system by ``t`` (-1 if none)."""
    for k in range(done_ms.size):
        if done_ms[k] <= t:
            return k
    return -1


@numba.njit(cache=True, inline="always")
def _commit(
    b, tier, t, user, device_done, uploaded, wan_uploaded, server_done, worker,
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
        edge_workers[b, worker] = server_done
    else:
        wan_free[b] = wan_uploaded
        cloud_workers[b, worker] = server_done
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
    """Draw every replicate's next request into the request arrays (from the given columns of the blocks).

    ``input_bits`` holds ``(payload_block, noise, noise_offset, sigma_class, request_noise)``: the block of
    payload sizes (B, BLOCK or 1, n_variants), bits, per request (JPEG payloads, P2) or one row for every
    request (raw tensors); the compute-noise factors ``exp(sigma * z)`` of the block's columns from
    ``noise_offset[0]`` on (B, columns, sigma classes, 3, n_variants); each user's sigma class (B, U); and
    the current requests' factors (B, 3, n_variants), filled here.
    """
    payload_block, noise, noise_offset, sigma_class, request_noise = input_bits
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
        # element by element (a slice assignment compiles numba's shape checks and their error messages too)
        for k in range(3):
            z[b, k] = normals[b, draw_column, k]
        column = draw_column if payload_block.shape[1] > 1 else 0
        noise_column, sigma = draw_column - noise_offset[0], sigma_class[b, u]
        for v in range(payload_bits.shape[1]):
            payload_bits[b, v] = payload_block[b, column, v]
            for k in range(3):
                request_noise[b, k, v] = noise[b, noise_column, sigma, k, v]


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


@numba.njit(cache=True, inline="always")
def _evaluate_replicate(
    b, time_ms, user, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
    allowed, prune, out,
):
    """Response time (ms) of the actions ``allowed`` (bool, n_actions) for replicate ``b``'s request, into
    ``out`` (n_actions; ``inf`` where not allowed or not runnable); returns ``(action, ms)`` of the best one
    (the lowest total, the first action on ties, as ``argmin``; ``(0, inf)`` when none is finite).

    With ``prune``, only the best is computed (``out`` is scratch): the end tier's actions are evaluated first,
    then the edge and cloud actions in increasing order of a lower bound of their total, until the next bound
    exceeds the best so far. The bound adds the same parts left to right with the queueing wait and the
    download set to 0 and the WAN leg's wait and upload left out; rounding is monotone, so the bound never
    exceeds the total and the best is exactly the unpruned one (first on ties included).
    """
    n_variants = result_bits.size
    t, u = time_ms[b], user[b]
    factor = _device_factor(b, u, max(t, device_free[b, u]), device_free, world)[0]
    overhead = world[10]
    best_a, best = 0, np.inf
    last_payload, link_start, upload = -1.0, 0.0, 0.0
    for v in range(n_variants):
        for tier in range(3):
            a = tier * n_variants + v
            out[a] = np.inf
            if not allowed[a]:
                continue
            compute = _compute(median[b], sigma[b], u, tier, v)
            if tier == END and factor != 1.0:
                compute *= factor
            if compute == np.inf:  # the tier or device cannot run this variant
                continue
            payload = payload_bits[b, v]
            if tier != END and payload != last_payload:
                # the access upload is the same for the edge and the cloud, and for variants of equal payload
                link_start, upload = _uplink(payload, t, access_free[b], links, link_sizes, link_constant)
                last_payload = payload
            if prune and tier != END:  # its lower bound, for the second pass
                propagation = 2 * half_access_rtt
                if tier == CLOUD:
                    propagation += 2 * half_wan_rtt
                out[a] = _total(link_start - t, upload, propagation, 0.0, compute, 0.0, overhead[tier])
                continue
            total = _respond_total(
                b, tier, v, compute, payload, t, link_start, upload,
                device_free[b, u], wan_free, edge_workers, cloud_workers,
                result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
            )
            out[a] = total
            if total < best or (total == best and a < best_a):
                best_a, best = a, total
    while prune:  # the edge and cloud actions, lowest bound first (the lowest action on equal bounds)
        a, bound = -1, np.inf
        for k in range(n_variants, out.size):
            if out[k] < bound:
                a, bound = k, out[k]
        if a < 0 or bound > best or (bound == best and a > best_a):
            break  # no action left can beat the best
        out[a] = np.inf  # taken
        tier, v = a // n_variants, a % n_variants
        payload = payload_bits[b, v]
        link_start, upload = _uplink(payload, t, access_free[b], links, link_sizes, link_constant)
        total = _respond_total(
            b, tier, v, _compute(median[b], sigma[b], u, tier, v), payload, t, link_start, upload,
            device_free[b, u], wan_free, edge_workers, cloud_workers,
            result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
        )
        if total < best or (total == best and a < best_a):
            best_a, best = a, total
    return best_a, best


@numba.njit(cache=True, inline="always")
def _respond_total(
    b, tier, v, compute, payload, t, link_start, upload,
    device_free_ms, wan_free, edge_workers, cloud_workers,
    result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
):
    """The response time :func:`_respond` and :func:`_total` give replicate ``b``'s request on ``tier`` with
    variant ``v`` (its compute time, access-uplink slot and when the user's device is free given)."""
    cot_switch, cot_count, occupied, need, overhead = world[5], world[6], world[7], world[8], world[10]
    parts = _respond(
        tier, compute, payload, result_bits[v], t,
        link_start, upload, device_free_ms, wan_free[b], edge_workers[b], cloud_workers[b],
        cot_switch[b], cot_count[b], occupied[0], need,
        links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
    )
    return _total(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], overhead[tier])


@numba.njit(cache=True)
def _evaluate_batch(
    time_ms, user, payload_bits, requirement_class, user_class, kind_allowed,
    device_free, access_free, wan_free, edge_workers, cloud_workers,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
    prune, out, best_action, best_ms,
):
    """:func:`_evaluate_replicate` for every replicate's request: the actions ``kind_allowed[device class,
    requirement class]`` (bool, shape (n_device_classes or 1, n_classes, n_actions)) into ``out`` (B, n_actions),
    the best one and its response time (ms) into ``best_action`` and ``best_ms`` (B,).

    The one evaluation kernel: every action (:meth:`Engine.evaluate`: an all-True table, ``prune`` False) and the
    best valid action (:meth:`Engine.best`: the valid actions, pruned) differ only in their arguments, so it is
    compiled once (two kernels with the rules inlined in each doubled the first run's compile time).
    """
    for b in range(time_ms.size):
        allowed = kind_allowed[user_class[b, user[b]], requirement_class[b]]
        best_action[b], best_ms[b] = _evaluate_replicate(
            b, time_ms, user, payload_bits,
            device_free, access_free, wan_free, edge_workers, cloud_workers,
            median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
            allowed, prune, out[b],
        )


@numba.njit(cache=True)
def _serve_batch(
    first, actions, time_ms, user, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
    next_arrival, closed_loop, gaps, gap_position, mean_gap_ms, out,
):
    """Serve replicates ``first..B-1`` (respond, then commit); parts and total into ``out`` (B, 8).

    Returns the first replicate whose completion-time list is full or whose on/off schedules must be
    extended first (nothing of it changed), or -1 when all were served. In a closed loop the user's next
    request comes a think time after the response. Out of ``world``, the served on-device inference heats
    the device (H1) and ``served`` (B, 3) records the upload's start and end (the bandwidth estimator, H4)
    and the observed on-device slowdown.
    """
    n_variants = result_bits.size
    heat, thermal = world[0], world[1]
    cot_switch, cot_count, occupied, need, served = world[5], world[6], world[7], world[8], world[9]
    overhead = world[10]
    for b in range(first, time_ms.size):
        t, u, action = time_ms[b], user[b], actions[b]
        tier = action // n_variants
        v = action - tier * n_variants
        payload = payload_bits[b, v]
        link_start, upload = t, 0.0
        if tier != END:
            link_start, upload = _uplink(payload, t, access_free[b], links, link_sizes, link_constant)
        compute = _compute(median[b], sigma[b], u, tier, v)
        heat_at = 0.0
        if tier == END:
            factor, heat_at = _device_factor(b, u, max(t, device_free[b, u]), device_free, world)
            if factor != 1.0:
                compute *= factor
        parts = _respond(
            tier, compute, payload, result_bits[v], t,
            link_start, upload, device_free[b, u], wan_free[b], edge_workers[b], cloud_workers[b],
            cot_switch[b], cot_count[b], occupied[0], need,
            links, link_sizes, link_constant, half_access_rtt, half_wan_rtt,
        )
        if need[0] > 0:  # an on/off schedule is too short: extend it, then serve from here
            return b
        committed = _commit(
            b, tier, t, u, parts[6], parts[7], parts[8], parts[9], parts[10],
            device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
        )
        if not committed:
            return b
        if tier == END:
            if thermal[0] > 0:
                heat[b, u] = dynamics.heated(heat_at, compute, thermal[1])
            served[b, 0], served[b, 1] = np.nan, np.nan
            served[b, 2] = compute / median[b, u, END, v]
        else:
            served[b, 0], served[b, 1], served[b, 2] = link_start, upload, 0.0
        total = _total(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], overhead[tier])
        out[b, 0], out[b, 1], out[b, 2] = parts[0], parts[1], parts[2]
        out[b, 3], out[b, 4], out[b, 5] = parts[3], parts[4], parts[5]
        out[b, 6], out[b, 7] = overhead[tier], total
        if closed_loop:
            next_arrival[b, u] = t + total + gaps[b, gap_position] * mean_gap_ms
    return -1


@numba.njit(cache=True)
def _next_observed(
    next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
    time_ms, user, requirement_class, z, payload_bits,
    device_free, access_free, wan_free, edge_workers, cloud_workers, edge_done, cloud_done,
    median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
    evaluate_mode, snapshot_out, evaluation,
):
    """:func:`_next_requests`, then :func:`_snapshot_batch` and, by ``evaluate_mode``, :func:`_evaluate_batch` of
    every action (:data:`EVALUATE_ALL`) or of the best valid one (:data:`EVALUATE_BEST`) of the new requests, in
    one call (the state does not change between them; one call costs one dispatch). ``evaluation`` holds
    ``(user_class, every_allowed, evaluate_out, kind_allowed, scratch, best_action, best_ms)``."""
    _next_requests(
        next_arrival, poisson, gaps, uniforms, normals, gap_column, draw_column, mean_gap_ms, class_cdf, input_bits,
        time_ms, user, requirement_class, z, payload_bits,
    )
    _snapshot_batch(
        time_ms, user, device_free, access_free, edge_done, cloud_done, links, link_sizes, link_constant, snapshot_out
    )
    user_class, every_allowed, evaluate_out, kind_allowed, scratch, best_action, best_ms = evaluation
    if evaluate_mode != EVALUATE_NONE:  # (with every action, the unmasked best lands in best_*: not read then)
        prune = evaluate_mode == EVALUATE_BEST
        _evaluate_batch(
            time_ms, user, payload_bits, requirement_class, user_class, kind_allowed if prune else every_allowed,
            device_free, access_free, wan_free, edge_workers, cloud_workers,
            median, sigma, result_bits, links, link_sizes, link_constant, half_access_rtt, half_wan_rtt, world,
            prune, scratch if prune else evaluate_out, best_action, best_ms,
        )


@numba.njit(cache=True)
def _serve_then_next(s, first, actions, gap_column, draw_column, evaluate_mode):
    """:func:`_serve_batch`, then :func:`_next_observed`, in one call (the per-request path's step).

    ``s`` is a :class:`StepState` holding every other argument of the two (the same objects on every call).
    The on/off schedules' request flag is cleared here (:meth:`Engine.serve` clears it before the other calls).
    """
    need = s.world[8]
    need[0], need[1] = 0.0, 0.0
    failed = _serve_batch(
        first, actions, s.time_ms, s.user, s.z, s.payload_bits,
        s.device_free, s.access_free, s.wan_free, s.edge_workers, s.cloud_workers, s.edge_done, s.cloud_done,
        s.median, s.sigma, s.result_bits, s.links, s.link_sizes, s.link_constant, s.half_access_rtt,
        s.half_wan_rtt, s.world, s.next_arrival, s.closed_loop, s.gaps, gap_column, s.mean_gap_ms, s.serve_out,
    )
    if failed >= 0:
        return failed
    _next_observed(
        s.next_arrival, s.poisson, s.gaps, s.uniforms, s.normals, gap_column, draw_column, s.mean_gap_ms,
        s.class_cdf, s.input_bits, s.time_ms, s.user, s.requirement_class, s.z, s.payload_bits,
        s.device_free, s.access_free, s.wan_free, s.edge_workers, s.cloud_workers, s.edge_done, s.cloud_done,
        s.median, s.sigma, s.result_bits, s.links, s.link_sizes, s.link_constant, s.half_access_rtt,
        s.half_wan_rtt, s.world, evaluate_mode, s.snapshot_out, s.evaluation,
    )
    # everything the per-request path reads after the call, in one row per replicate (one .tolist() there)
    best_action, best_ms = s.evaluation[5], s.evaluation[6]
    row, payload_z, served = s.step_row, s.payload_z, s.world[9]
    for b in range(row.shape[0]):
        for k in range(ROW_SERVED):
            row[b, k] = s.serve_out[b, k]
        for k in range(3):
            row[b, ROW_SERVED + k] = served[b, k]
            row[b, ROW_REQUEST + 3 + k] = s.z[b, k]
        row[b, ROW_REQUEST], row[b, ROW_REQUEST + 1] = s.time_ms[b], s.user[b]
        row[b, ROW_REQUEST + 2], row[b, ROW_REQUEST + 6] = s.requirement_class[b], payload_z[b, draw_column]
        for k in range(6):
            row[b, ROW_SNAPSHOT + k] = s.snapshot_out[b, k]
        row[b, ROW_BEST], row[b, ROW_BEST + 1] = best_action[b], best_ms[b]
    return -1


# fmt: on

# ---------------------------------------------------------------------------------------------------------
# The per-request step's arguments in one object
#
# The dispatcher of a compiled function checks and unboxes every argument on every call, about 65 ns per array:
# with its ~50 arrays the per-request step spent about 3.5 us of its 20 us there. A StructRef holding them is
# one argument (numba.experimental.structref; its fields are the same NumPy buffers, so the kernels' in-place
# updates are seen by the Engine's arrays, and it is rebuilt whenever one of them is replaced).

#: the fields of :class:`StepState`, in the order :func:`_step_state` takes them (``_serve_then_next``'s names).
STEP_STATE_FIELDS = (
    "step_row", "payload_z",
    "time_ms", "user", "z", "payload_bits",
    "device_free", "access_free", "wan_free", "edge_workers", "cloud_workers", "edge_done", "cloud_done",
    "median", "sigma", "result_bits", "links", "link_sizes", "link_constant", "half_access_rtt", "half_wan_rtt",
    "world", "next_arrival", "closed_loop", "gaps", "mean_gap_ms", "serve_out",
    "poisson", "uniforms", "normals", "class_cdf", "input_bits", "requirement_class", "snapshot_out", "evaluation",
)  # fmt: skip


@structref.register
class StepStateType(numba.types.StructRef):
    """numba's type of :class:`StepState` (fields typed from the values it is built with)."""

    def preprocess_fields(self, fields):
        return tuple((name, numba.types.unliteral(typ)) for name, typ in fields)


class StepState(structref.StructRefProxy):
    """The arguments of the per-request step kernel that are the same objects on every call (see above)."""


structref.define_boxing(StepStateType, StepState)


def _pack_step_state(values):
    """Compiled: the overload below. Interpreted (``NUMBA_DISABLE_JIT=1``, e.g. to debug a kernel in Python): a
    plain object with the same fields, which the interpreted kernels read alike."""
    return SimpleNamespace(**dict(zip(STEP_STATE_FIELDS, values, strict=True)))


@overload(_pack_step_state)
def _pack_step_state_impl(values):
    state_type = StepStateType(list(zip(STEP_STATE_FIELDS, values.types, strict=True)))
    # one assignment per field (a StructRef's fields are set by name); generated, as numba's own constructors are
    lines = [f"    state.{name} = values[{k}]" for k, name in enumerate(STEP_STATE_FIELDS)]
    source = (
        "def impl(values):\n    state = structref.new(state_type)\n"
        + "\n".join(lines)
        + "\n    return state\n"
    )
    namespace = {"structref": structref, "state_type": state_type}
    exec(source, namespace)  # a fixed source, built from the constant field names above
    return namespace["impl"]


@numba.njit(cache=True)
def _step_state(values):
    """A :class:`StepState` of ``values`` (a tuple in :data:`STEP_STATE_FIELDS` order)."""
    return _pack_step_state(values)


# ---------------------------------------------------------------------------------------------------------
# The state and its Python entry points

#: the seven parts of a response time, ms, in time order (L1; the names of every breakdown and request table).
RESPONSE_PARTS = (
    "network_wait_ms",
    "upload_ms",
    "propagation_ms",
    "queue_ms",
    "compute_ms",
    "download_ms",
    "overhead_ms",
)
#: columns of :meth:`Engine.serve`'s output: the seven parts of the response time and the total, ms.
BREAKDOWN_COLUMNS = (*RESPONSE_PARTS, "total_ms")
#: the response time's column in :meth:`Engine.serve`'s output.
TOTAL_COLUMN = BREAKDOWN_COLUMNS.index("total_ms")
#: columns of :meth:`Engine.snapshot`'s output.
SNAPSHOT_COLUMNS = (
    "access_mbps",
    "wan_mbps",
    "access_backlog_ms",
    "device_backlog_ms",
    "edge_in_system",
    "cloud_in_system",
)
#: columns of :attr:`Engine.step_row`, written by the per-request step (``serve(then_next=True)``): the served
#: request's parts and total (:data:`BREAKDOWN_COLUMNS`) and measurements (``Engine.served``), the next
#: request, its snapshot (:data:`SNAPSHOT_COLUMNS`) and, with :data:`EVALUATE_BEST`, its best valid action.
STEP_ROW_COLUMNS = (
    *BREAKDOWN_COLUMNS,
    "served_upload_start_ms", "served_upload_ms", "served_device_slowdown",
    "time_ms", "user", "requirement_class", "z_end", "z_edge", "z_cloud", "payload_z",
    *SNAPSHOT_COLUMNS,
    "best_action", "best_ms",
)  # fmt: skip
ROW_SERVED = STEP_ROW_COLUMNS.index("served_upload_start_ms")
ROW_REQUEST = STEP_ROW_COLUMNS.index("time_ms")
ROW_SNAPSHOT = STEP_ROW_COLUMNS.index("access_mbps")
ROW_BEST = STEP_ROW_COLUMNS.index("best_action")


def engine_compute_ms(engine: Engine, user: int, z: np.ndarray) -> np.ndarray:
    """Compute time (ms) of every (tier, variant) for ``user`` with noise ``z`` (3,), shape (3, n_variants)."""
    return engine.median_ms[0, user] * np.exp(engine.sigma[0, user] * np.asarray(z, dtype=float)[:, None])


class Engine:
    """``B`` replicates of one system: state arrays, request arrays and the compiled rules.

    Use: :meth:`next_requests` (or :meth:`make_requests`), optionally :meth:`snapshot` and :meth:`evaluate`,
    then :meth:`serve`. The current requests are in ``request_time_ms``, ``request_user``,
    ``request_class``, ``request_z`` (B, 3) and ``request_payload_bits`` (B, n_variants). Arguments are not
    validated here: :class:`~orchlib.system.simulator.Simulator` and
    :class:`~orchlib.system.batch.BatchSimulator` do that.

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
        # Every value the kernels take has one type whatever the scenario (floats, float64 arrays), so one
        # compilation serves every world (an int think time or byte count would compile the kernels again).
        self.mean_gap_ms = float(1e3 / s.arrivals.rate_per_s if self.poisson else s.arrivals.think_time_ms)
        self.grounded = bool(s.grounded_features)
        self.jpeg = s.payload.kind == "jpeg"
        # hidden conditions (H1-H3) as the kernels read them; zeros / ones switch a condition off
        self.thermal = (
            np.array(
                [
                    s.thermal.max_slowdown,
                    s.thermal.heat_time_constant_s * 1e3,
                    s.thermal.cool_time_constant_s * 1e3,
                ]
            )
            if s.thermal is not None
            else np.zeros(3)
        )
        self.bg_slowdown = np.array([s.background.slowdown if s.background is not None else 1.0])
        self.occupied = np.array(
            [s.cotenant.n_workers_occupied if s.cotenant is not None else 0], dtype=np.int64
        )
        self.input_bits = np.asarray(system.input_bytes * BITS_PER_BYTE, dtype=np.float64)
        self.result_bits = np.asarray(system.result_bytes * BITS_PER_BYTE, dtype=np.float64)
        rates = (system.access_up, system.access_down, system.wan_up, system.wan_down)
        width = max(r.table.shape[1] for r in rates)
        # the four links packed (rows of latency.RateFunction.table), their sizes and constant rates (0: varies)
        self.links = np.zeros((4, 5, width))
        for k, r in enumerate(rates):
            self.links[k, :, : r.table.shape[1]] = r.table
        self.link_sizes = np.array([[r.n_prefix, r.n_tail] for r in rates], dtype=np.int64)
        self.link_constant = np.array([r.packed()[3] for r in rates])
        self.half_access_rtt = float(system.access_rtt_ms / 2)
        self.half_wan_rtt = float(system.wan_rtt_ms / 2)
        # each tier's fixed per-request protocol cost, ms (end, edge, cloud; L11)
        self.overhead_ms = np.asarray(system.overhead_ms, dtype=float)
        self.class_cdf = np.asarray(system.requirement_cdf, dtype=float)
        #: the valid actions of a request by (device class, requirement class), shape (n_device_classes or 1,
        #: n_classes, n_actions): what the best valid action (:meth:`best`) is chosen from.
        self.kind_allowed = np.ascontiguousarray(
            system.masks[None] if s.fleet is None else system.device_masks, dtype=np.bool_
        )
        self._every_allowed = np.ones_like(self.kind_allowed)  # what evaluate() evaluates: every action
        self.reset(rngs)

    def reset(self, rngs: Sequence[np.random.Generator]) -> None:
        """Empty systems at time 0 with the given generators; every user's first request is scheduled."""
        b, s = self.n_replicates, self.system.scenario
        if len(rngs) != b:
            raise ValueError(f"need one generator per replicate ({b}), got {len(rngs)}")
        self.rngs = list(rngs)
        n_users = s.n_users
        system = self.system
        # compute-time median and sigma per replicate and user (device classes differ), ms: (B, U, 3, V)
        self.median_ms = np.empty((b, n_users, *system.median_ms.shape))
        self.median_ms[:] = system.median_ms
        self.sigma = np.empty_like(self.median_ms)
        self.sigma[:] = system.sigma
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
        self._reset_world()
        self._out_serve = np.empty((b, 8))
        self._out_snapshot = np.empty((b, 6))
        self._out_evaluate = np.empty((b, self.system.n_actions))
        self._out_best_action = np.zeros(b, dtype=np.int64)
        self._out_best_ms = np.zeros(b)
        self._scratch = np.empty((b, self.system.n_actions))
        #: what the per-request step wrote, one row per replicate (columns :data:`STEP_ROW_COLUMNS`).
        self.step_row = np.zeros((b, len(STEP_ROW_COLUMNS)))
        self._no_gaps = np.zeros((b, 1))
        self._bind()

    def _reset_world(self) -> None:
        """The grounded world's per-replicate parts: device classes, payload draws, hidden conditions."""
        b, s, system = self.n_replicates, self.system.scenario, self.system
        n_users = s.n_users
        #: each replicate's users' device classes (all 0 without a fleet; no random number is drawn then).
        self.user_class = np.zeros((b, n_users), dtype=np.int64)
        self._payload_rngs: list[np.random.Generator | None] = [None] * b
        self.background: list[list[dynamics.OnOffSchedule | None]] = [[None] * n_users for _ in range(b)]
        self.cotenant: list[dynamics.OnOffSchedule | None] = [None] * b
        if self.grounded:
            for i, rng in enumerate(self.rngs):
                # The world's own streams are spawned (issue 12's order), so the arrival and noise stream stays
                # that of the ideal world, and each hidden process has its own generator (evaluation order
                # cannot change it).
                try:
                    spawned = rng.spawn(3 + n_users)
                except TypeError:  # a generator without a seed sequence
                    spawned = [np.random.default_rng(x) for x in rng.integers(2**63, size=3 + n_users)]
                fleet_rng, self._payload_rngs[i], cotenant_rng, *user_rngs = spawned
                if s.fleet is not None:
                    self.user_class[i] = fleet_rng.choice(
                        len(s.fleet.classes), size=n_users, p=system.device_probabilities
                    )
                    self.median_ms[i, :, END] = system.device_median_ms[self.user_class[i]]
                    self.sigma[i, :, END] = system.device_sigma[self.user_class[i]]
                if s.background is not None:
                    for user in range(n_users):
                        if system.device_classes[self.user_class[i, user]] in s.background.applies_to:
                            self.background[i][user] = dynamics.OnOffSchedule(
                                user_rngs[user], s.background.mean_off_s * 1e3, s.background.mean_on_s * 1e3
                            )
                if s.cotenant is not None:
                    self.cotenant[i] = dynamics.OnOffSchedule(
                        cotenant_rng, s.cotenant.mean_off_s * 1e3, s.cotenant.mean_on_s * 1e3
                    )
        self._payload_z = np.zeros((b, BLOCK))  # the payload-size draws behind the block (P2)
        if self.jpeg:
            self._payload_block = np.empty((b, BLOCK, self.input_bits.size))
        else:
            self._payload_block = np.tile(self.input_bits, (b, 1, 1))
        self.heat = np.zeros((b, n_users))  # each device's heat when its last inference ended (H1)
        self._need = np.zeros(2)  # set by the kernels when an on/off schedule is too short
        #: per replicate, of the last served request: upload start and duration, ms (nan on the end tier),
        #: observed / profiled on-device compute time (0 off the device).
        self.served = np.zeros((b, 3))
        # compute noise: each user's sigma class (its device class with a fleet, else 0) and the classes' sigma
        if s.fleet is not None and self.grounded:
            self._sigma_classes = np.repeat(system.sigma[None], len(system.device_classes), axis=0)
            self._sigma_classes[:, END] = system.device_sigma
            self._sigma_class = self.user_class.copy()
        else:
            self._sigma_classes = system.sigma[None].copy()
            self._sigma_class = np.zeros((b, n_users), dtype=np.int64)
        # tiers whose sigma is the same in every class: their factors are computed once for all classes
        self._tier_shared = [
            bool((self._sigma_classes[:, t] == self._sigma_classes[0, t]).all()) for t in range(3)
        ]
        self.request_noise = np.ones((b, 3, self.input_bits.size))  # the current requests' exp(sigma * z)
        self._noise = np.ones((b, _NOISE_COLUMNS, *self._sigma_classes.shape))
        self._noise_offset = np.array([-_NOISE_COLUMNS], dtype=np.int64)  # no column filled yet
        self._noise_from = -_NOISE_COLUMNS  # the same, as a Python int (checked on every request)
        self._draws = (
            self._payload_block,
            self._noise,
            self._noise_offset,
            self._sigma_class,
            self.request_noise,
        )
        self._pack_schedules()

    def _fill_noise(self) -> None:
        """``exp(sigma * z)`` of the next :data:`_NOISE_COLUMNS` draw columns for every sigma class, by NumPy
        (as the simulator before the engine computed it, so the numbers are the same bit for bit)."""
        column = self._draw_column
        if 0 <= column - self._noise_from < _NOISE_COLUMNS:
            return
        z = self._normals[:, column : column + _NOISE_COLUMNS]  # (B, n, 3)
        n = z.shape[1]
        sigma = self._sigma_classes  # (classes, 3, variants)
        for tier, shared in enumerate(
            self._tier_shared
        ):  # element by element exp(sigma[c, t, v] * z[b, i, t])
            z_tier = z[:, :, tier, None]
            if shared:
                self._noise[:, :n, :, tier] = np.exp(sigma[0, tier] * z_tier)[:, :, None]
            else:
                for c in range(sigma.shape[0]):
                    self._noise[:, :n, c, tier] = np.exp(sigma[c, tier] * z_tier)
        self._noise_offset[0] = self._noise_from = column

    def _pack_schedules(self) -> None:
        """The on/off schedules as the kernels read them (padded with inf)."""
        b, n_users = self.user_class.shape
        k = max([len(x.switch_times_ms) for row in self.background for x in row if x is not None], default=1)
        self.bg_switch = np.full((b, n_users, k), np.inf)
        self.bg_count = np.zeros((b, n_users), dtype=np.int64)
        for i, row in enumerate(self.background):
            for user, schedule in enumerate(row):
                if schedule is not None:
                    n = len(schedule.switch_times_ms)
                    self.bg_switch[i, user, :n] = schedule.switch_times_ms
                    self.bg_count[i, user] = n
        k = max([len(x.switch_times_ms) for x in self.cotenant if x is not None], default=1)
        self.cot_switch = np.full((b, k), np.inf)
        self.cot_count = np.zeros(b, dtype=np.int64)
        for i, schedule in enumerate(self.cotenant):
            if schedule is not None:
                n = len(schedule.switch_times_ms)
                self.cot_switch[i, :n] = schedule.switch_times_ms
                self.cot_count[i] = n
        self.world = (
            self.heat, self.thermal, self.bg_switch, self.bg_count, self.bg_slowdown,
            self.cot_switch, self.cot_count, self.occupied, self._need, self.served, self.overhead_ms,
        )  # fmt: skip

    def _extend_schedules(self) -> None:
        """Extend every on/off schedule past the latest time a kernel asked about, then compute again."""
        t = float(self._need[1])
        for schedule in [x for row in self.background for x in row] + self.cotenant:
            if schedule is not None:
                schedule.covering(t)
        self._need[:] = 0.0
        self._pack_schedules()
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
        if self.jpeg:  # one payload draw per request, from the replicate's own payload generator (P2)
            for b, rng in enumerate(self._payload_rngs):
                z = rng.standard_normal(BLOCK)
                self._payload_z[b] = z
                self._payload_block[b] = (
                    payloads.payload_bytes(self.system.input_bytes, self.system.payload_sigma, z[:, None])
                    * BITS_PER_BYTE
                )
        self._draw_column = 0
        self._noise_offset[0] = self._noise_from = -_NOISE_COLUMNS  # new normals: factors not evaluated yet

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
            self.request_noise,
            self.result_bits,
            self.links,
            self.link_sizes,
            self.link_constant,
            self.half_access_rtt,
            self.half_wan_rtt,
            self.world,
        )
        # the draw columns go between these two parts
        self._draw_blocks = (self.next_arrival_ms, self.poisson, self._gaps, self._uniforms, self._normals)
        self._draw_args = (
            self.mean_gap_ms,
            self.class_cdf,
            self._draws,
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
        self._evaluation = (
            self.user_class,
            self._every_allowed,
            self._out_evaluate,
            self.kind_allowed,
            self._scratch,
            self._out_best_action,
            self._out_best_ms,
        )
        evaluate_inputs = (
            self.request_time_ms,
            self.request_user,
            self.request_payload_bits,
            self.request_class,
            self.user_class,
        )
        # every action (the best of them, unmasked, into arrays of its own: a fresh best() stays as it is)
        self._evaluate_args = (
            *evaluate_inputs,
            self._every_allowed,
            *resources,
            *rules,
            False,
            self._out_evaluate,
            np.zeros_like(self._out_best_action),
            np.zeros_like(self._out_best_ms),
        )
        self._serve_args = (
            *request,
            *resources,
            self.edge_done_ms,
            self.cloud_done_ms,
            *rules,
            self.next_arrival_ms,
        )
        # the per-request step's StructRef (built when serve(then_next=True) first needs it: the batched path
        # never does)
        self._step_state: StepState | None = None
        self._best_args = (
            *evaluate_inputs,
            self.kind_allowed,
            *resources,
            *rules,
            True,
            self._scratch,
            self._out_best_action,
            self._out_best_ms,
        )
        self._snapshot_fresh = self._evaluate_fresh = self._best_fresh = False

    def __getstate__(self) -> dict:
        """For copies and pickles: everything but the per-request step's StructRef, a compiled view of this
        engine's own arrays that cannot be copied (the copy builds its own on its first step)."""
        state = self.__dict__.copy()
        state["_step_state"] = None
        return state

    def _pack_step_state(self) -> StepState:
        values = {
            "step_row": self.step_row,
            "payload_z": self._payload_z,
            "time_ms": self.request_time_ms,
            "user": self.request_user,
            "z": self.request_z,
            "payload_bits": self.request_payload_bits,
            "device_free": self.device_free_ms,
            "access_free": self.access_free_ms,
            "wan_free": self.wan_free_ms,
            "edge_workers": self.edge_workers_ms,
            "cloud_workers": self.cloud_workers_ms,
            "edge_done": self.edge_done_ms,
            "cloud_done": self.cloud_done_ms,
            "median": self.median_ms,
            "sigma": self.request_noise,
            "result_bits": self.result_bits,
            "links": self.links,
            "link_sizes": self.link_sizes,
            "link_constant": self.link_constant,
            "half_access_rtt": float(self.half_access_rtt),
            "half_wan_rtt": float(self.half_wan_rtt),
            "world": self.world,
            "next_arrival": self.next_arrival_ms,
            "closed_loop": not self.poisson,
            "gaps": self._gaps,
            "mean_gap_ms": float(self.mean_gap_ms),
            "serve_out": self._out_serve,
            "poisson": self.poisson,
            "uniforms": self._uniforms,
            "normals": self._normals,
            "class_cdf": self.class_cdf,
            "input_bits": self._draws,
            "requirement_class": self.request_class,
            "snapshot_out": self._out_snapshot,
            "evaluation": self._evaluation,
        }
        return _step_state(tuple(values[name] for name in STEP_STATE_FIELDS))

    def next_requests(self, evaluate: int = EVALUATE_NONE) -> None:
        """Every replicate's next request (in time order over its users) into the request arrays.

        Its :meth:`snapshot` is computed in the same call, and by ``evaluate`` its :meth:`evaluate`
        (:data:`EVALUATE_ALL`) or its :meth:`best` (:data:`EVALUATE_BEST`).
        """
        if self.poisson and self._gap_column >= BLOCK:
            self._refill_gaps()
        if self._draw_column >= BLOCK:
            self._refill_draws()
        self._fill_noise()
        self._need[:] = 0.0
        _next_observed(
            *self._draw_blocks, self._gap_column, self._draw_column, *self._draw_args, *self._observe_args,
            evaluate, self._out_snapshot, self._evaluation,
        )  # fmt: skip
        self._evaluated(evaluate)
        if self.poisson:
            self._gap_column += 1
        self._draw_column += 1

    def _evaluated(self, evaluate: int) -> None:
        """Mark the new requests' snapshot and ``evaluate``'s result fresh, or redo the evaluation if it met the
        end of an on/off schedule (the kernel's result is then void: once more, with longer schedules)."""
        self._snapshot_fresh = True
        self._evaluate_fresh = evaluate == EVALUATE_ALL
        self._best_fresh = evaluate == EVALUATE_BEST
        if evaluate != EVALUATE_NONE and self._need[0] > 0:
            self._evaluate_fresh = self._best_fresh = False
            if evaluate == EVALUATE_ALL:
                self.evaluate()
            else:
                action, ms = self.best()
                self.step_row[:, ROW_BEST], self.step_row[:, ROW_BEST + 1] = action, ms

    @property
    def payload_z(self) -> np.ndarray:
        """The payload-size draw of each replicate's current (drawn) request, shape (B,) (P2)."""
        return self._payload_z[:, self._draw_column - 1]

    def set_requests(self, time_ms, user, requirement_class, z, payload_z=0.0) -> None:
        """Make scripted requests the current ones (arguments broadcast to (B,), z to (B, 3); not validated).

        ``payload_z`` is the payload-size draw (JPEG payloads only, P2; 0 = the median size).
        """
        self.request_time_ms[:] = time_ms
        self.request_user[:] = user
        self.request_class[:] = requirement_class
        self.request_z[:] = z
        for b in range(self.n_replicates):
            self.request_noise[b] = np.exp(self.sigma[b, self.request_user[b]] * self.request_z[b][:, None])
        if self.jpeg:
            z_payload = np.broadcast_to(np.asarray(payload_z, dtype=float), (self.n_replicates,))[:, None]
            self.request_payload_bits[:] = (
                payloads.payload_bytes(self.system.input_bytes, self.system.payload_sigma, z_payload)
                * BITS_PER_BYTE
            )
        else:
            self.request_payload_bits[:] = self.input_bits
        self._snapshot_fresh = self._evaluate_fresh = self._best_fresh = False

    def set_noise(self, tiers: np.ndarray, z: np.ndarray) -> None:
        """Replace each replicate's compute-noise draw on one tier (``tiers``, ``z``: shape (B,))."""
        rows = np.arange(self.n_replicates)
        self.request_z[rows, tiers] = z
        sigma = self.sigma[rows, self.request_user, tiers]  # (B, n_variants)
        self.request_noise[rows, tiers] = np.exp(sigma * np.asarray(z, dtype=float)[:, None])
        self._evaluate_fresh = self._best_fresh = False

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
            self._evaluate_with("_evaluate_args")
            self._evaluate_fresh = True
        return self._out_evaluate

    def _evaluate_with(self, arguments: str) -> None:
        """Call the evaluation kernel with the argument tuple named ``arguments`` until no on/off schedule was
        too short (each extension rebinds the tuples, so they are looked up again)."""
        while True:
            self._need[:] = 0.0
            _evaluate_batch(*getattr(self, arguments))
            if self._need[0] == 0:
                return
            self._extend_schedules()

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """The clairvoyant best valid action of every replicate's request and its response time (ms), shape (B,)
        each: ``argmin`` of :meth:`evaluate` over the request's valid actions (:attr:`kind_allowed`; the first
        on ties), without evaluating the actions a lower bound rules out. Reused by later calls."""
        if not self._best_fresh:
            self._evaluate_with("_best_args")
            self._best_fresh = True
        return self._out_best_action, self._out_best_ms

    def serve(
        self, actions: np.ndarray, then_next: bool = False, evaluate: int = EVALUATE_NONE
    ) -> np.ndarray:
        """Serve every replicate's request with its action (int64, shape (B,)); update the state.

        With ``then_next``, also :meth:`next_requests` (``evaluate`` as there) in the same compiled call:
        the same draws in the same order, one call instead of two.

        Returns the parts and total of each response time, shape (B, 8), columns :data:`BREAKDOWN_COLUMNS`
        (reused by the next call).
        """
        closed_loop = not self.poisson
        # each block is refilled before the call that reads from it, in the order the separate calls would
        if self._gap_column >= BLOCK and (closed_loop or then_next):
            self._refill_gaps()
        if then_next and self._draw_column >= BLOCK:
            self._refill_draws()
        if then_next and not 0 <= self._draw_column - self._noise_from < _NOISE_COLUMNS:
            self._fill_noise()
        self._snapshot_fresh = self._evaluate_fresh = self._best_fresh = False
        first = 0
        while True:
            if then_next:
                if self._step_state is None:
                    self._step_state = self._pack_step_state()
                first = _serve_then_next(
                    self._step_state, first, actions, self._gap_column, self._draw_column, evaluate
                )
            else:
                self._need[:] = 0.0
                gaps = self._gaps if closed_loop else self._no_gaps
                first = _serve_batch(
                    first, actions, *self._serve_args, closed_loop, gaps, self._gap_column if closed_loop else 0,
                    self.mean_gap_ms, self._out_serve,
                )  # fmt: skip
            if first < 0:
                break
            if self._need[0] > 0:  # an on/off schedule is too short: extend it, then serve on from ``first``
                self._extend_schedules()
            else:
                self._grow_done_lists()
        if closed_loop or then_next:  # a think time (closed loop) or the next gap (Poisson) was read
            self._gap_column += 1
        if then_next:
            self._draw_column += 1
            self._evaluated(evaluate)
        return self._out_serve

    def refuse(self) -> None:
        """Refuse every replicate's current request instead of serving it: a *failed* request (an action its tier
        or device cannot run, ``docs/assumptions.md`` E8).

        Nothing is occupied (no device, link or server) and nothing is measured. With Poisson arrivals the user's
        next request is already scheduled; in a closed loop it comes a think time after the refused request's
        arrival (a response time of 0), the think time drawn as a served request's would be. Follow with
        :meth:`next_requests`.
        """
        if not self.poisson:
            rows = np.arange(self.n_replicates)
            self.next_arrival_ms[rows, self.request_user] = (
                self.request_time_ms + self._take_gaps() * self.mean_gap_ms
            )
        self._snapshot_fresh = self._evaluate_fresh = self._best_fresh = False

    def _grow_done_lists(self) -> None:
        """Double the capacity of the completion-time lists (a replicate had more requests in a server)."""
        for name in ("edge_done_ms", "cloud_done_ms"):
            old = getattr(self, name)
            grown = np.full((old.shape[0], 2 * old.shape[1]), -np.inf)
            grown[:, : old.shape[1]] = old
            setattr(self, name, grown)
        self._bind()
