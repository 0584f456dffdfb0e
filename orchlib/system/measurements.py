"""The orchestrator's own measurements (H4, H5), written once for ``B`` replicates: the logs the snapshot reads.

A real orchestrator cannot see the true access rate or a device's load; it keeps a record of what it measured on
the requests it served and estimates from that (``docs/assumptions.md``, H4 and H5):

* :class:`UploadLog` -- the completed access uploads (completion time, observed throughput) and the bandwidth
  estimate they give (H4): the harmonic mean (:func:`orchlib.system.dynamics.harmonic_mean_mbps`) of the
  throughputs of the last ``window`` uploads completed by the request's arrival; the nominal uplink rate before
  any;
* :class:`UserHistory` -- each user's last :data:`HISTORY_DEPTH` served requests (completion time, on-device
  slowdown, response time) and what the snapshot reads from them (H5): the newest on-device slowdown among
  those finished by the request (1 when there is none), and the mean response time of the newest (up to)
  :data:`RECENT_REQUESTS` finished ones (0 when there is none).

Each rule is written once, as a compiled function of one replicate ``b`` (as the engine's rules are), and each
log holds ``B`` replicates as arrays with a leading replicate axis. The per-request
:class:`~orchlib.system.simulator.Simulator` keeps one replicate (``B = 1``) and calls the one-replicate entry
points (``*_one``); :class:`~orchlib.system.batch.BatchSimulator` keeps ``B`` and calls the loops over replicates.
Both keep memory bounded on long runs: the history holds the last :data:`HISTORY_DEPTH` requests per user (all the
snapshot reads), the upload log between ``kept`` and ``2 * kept`` uploads per replicate.
"""

from __future__ import annotations

import numba
import numpy as np

from orchlib.system import dynamics

#: served requests kept per user for the snapshot's recent response time and device-load estimate (H5).
HISTORY_DEPTH = 16
#: of those, how many of the newest finished ones the recent response time averages.
RECENT_REQUESTS = 5
#: completed access uploads kept per replicate for the bandwidth estimate (H4): between this (or the estimate's
#: window, if larger) and twice this many, so estimates at the current request's time never need a dropped one.
UPLOADS_KEPT = 4096


# ---------------------------------------------------------------------------------------------------------
# The rules, for one replicate b (compiled)


# fmt: off
@numba.njit(cache=True, inline="always")
def _history_record(done_ms, slowdown, latency_ms, n, b, user, done, device_slowdown, latency):
    """Append a served request to ``user``'s ring of the last ``HISTORY_DEPTH`` (the oldest slot is reused)."""
    slot = n[b, user] % done_ms.shape[2]
    done_ms[b, user, slot] = done
    slowdown[b, user, slot] = device_slowdown
    latency_ms[b, user, slot] = latency
    n[b, user] += 1


@numba.njit(cache=True, inline="always")
def _history_read(done_ms, slowdown, latency_ms, n, b, user, t, recent):
    """``(device-slowdown estimate, recent response time)`` of ``user`` at ``t``: of its last ``HISTORY_DEPTH``
    entries finished by ``t`` (entries are in service order, not completion order: each is checked), the newest
    on-device slowdown (1: none), and the mean response time of the newest ``recent`` (0: none), added oldest
    first as they happened."""
    depth = done_ms.shape[2]
    count = n[b, user]
    held = min(count, depth)
    estimate = 1.0
    found = False
    taken = 0
    oldest_taken = -1  # age (0: newest) of the oldest entry the recent mean takes
    for age in range(held):
        slot = (count - 1 - age) % depth
        if done_ms[b, user, slot] <= t:
            if not found and slowdown[b, user, slot] > 0:
                estimate = slowdown[b, user, slot]
                found = True
            if taken < recent:
                taken += 1
                oldest_taken = age
            elif found:
                break
    total = 0.0
    for age in range(oldest_taken, -1, -1):  # oldest first, the finished ones only
        slot = (count - 1 - age) % depth
        if done_ms[b, user, slot] <= t:
            total += latency_ms[b, user, slot]
    return estimate, (total / taken if taken else 0.0)


@numba.njit(cache=True, inline="always")
def _uploads_completed(done_ms, n, b, t):
    """How many of replicate ``b``'s held uploads had completed by ``t`` (completions are FIFO, so increasing:
    a binary search, as ``bisect_right``)."""
    low, high = 0, n[b]
    while low < high:
        middle = (low + high) // 2
        if done_ms[b, middle] <= t:
            low = middle + 1
        else:
            high = middle
    return low


# The loops over replicates (B entry points)


@numba.njit(cache=True)
def _history_record_batch(done_ms, slowdown, latency_ms, n, user, done, device_slowdown, latency):
    for b in range(user.size):
        _history_record(done_ms, slowdown, latency_ms, n, b, user[b], done[b], device_slowdown[b], latency[b])


@numba.njit(cache=True)
def _history_read_batch(done_ms, slowdown, latency_ms, n, user, t, recent, estimate, recent_ms):
    for b in range(user.size):
        estimate[b], recent_ms[b] = _history_read(done_ms, slowdown, latency_ms, n, b, user[b], t[b], recent)


@numba.njit(cache=True)
def _uploads_completed_batch(done_ms, n, t, out):
    for b in range(t.size):
        out[b] = _uploads_completed(done_ms, n, b, t[b])


# The one-replicate entry points (the per-request path)


@numba.njit(cache=True)
def _history_record_one(done_ms, slowdown, latency_ms, n, b, user, done, device_slowdown, latency):
    _history_record(done_ms, slowdown, latency_ms, n, b, user, done, device_slowdown, latency)


@numba.njit(cache=True)
def _history_read_one(done_ms, slowdown, latency_ms, n, b, user, t, recent):
    return _history_read(done_ms, slowdown, latency_ms, n, b, user, t, recent)


@numba.njit(cache=True)
def _uploads_completed_one(done_ms, n, b, t):
    return _uploads_completed(done_ms, n, b, t)
# fmt: on


# ---------------------------------------------------------------------------------------------------------
# The logs


def _floats(values: np.ndarray) -> np.ndarray:
    """``values`` as a contiguous float64 array: one argument type for the compiled loops (one compilation)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def _ints(values: np.ndarray) -> np.ndarray:
    """``values`` as a contiguous int64 array (as :func:`_floats`)."""
    return np.ascontiguousarray(values, dtype=np.int64)


class UserHistory:
    """Each user's last :data:`HISTORY_DEPTH` served requests in ``B`` replicates (completion time, on-device
    slowdown: observed compute over the profile median, 0 off the device; response time): the orchestrator's H5
    record (module docstring)."""

    #: entries kept per user (all the snapshot reads).
    DEPTH = HISTORY_DEPTH

    def __init__(self, n_replicates: int, n_users: int) -> None:
        shape = (n_replicates, n_users, self.DEPTH)
        self.done_ms = np.full(shape, np.inf)  # completion times (inf: empty slot)
        self.slowdown = np.zeros(shape)  # on-device slowdowns (0: served off the device)
        self.latency_ms = np.zeros(shape)  # response times
        self.n = np.zeros((n_replicates, n_users), dtype=np.int64)  # entries written per user

    def record(
        self, user: np.ndarray, done_ms: np.ndarray, slowdown: np.ndarray, latency_ms: np.ndarray
    ) -> None:
        """Append one served request per replicate (its user, completion time, on-device slowdown, response time;
        arrays of shape (B,))."""
        _history_record_batch(
            self.done_ms,
            self.slowdown,
            self.latency_ms,
            self.n,
            _ints(user),
            _floats(done_ms),
            _floats(slowdown),
            _floats(latency_ms),
        )

    def record_one(self, b: int, user: int, done_ms: float, slowdown: float, latency_ms: float) -> None:
        """:meth:`record` in replicate ``b`` only."""
        _history_record_one(
            self.done_ms, self.slowdown, self.latency_ms, self.n, b, user, done_ms, slowdown, latency_ms
        )

    def read(self, user: np.ndarray, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(device-slowdown estimate, recent response time in ms)`` of each replicate's ``user`` at ``t_ms``
        (module docstring), each of shape (B,)."""
        estimate, recent_ms = np.empty(user.size), np.empty(user.size)
        _history_read_batch(
            self.done_ms,
            self.slowdown,
            self.latency_ms,
            self.n,
            _ints(user),
            _floats(t_ms),
            RECENT_REQUESTS,
            estimate,
            recent_ms,
        )
        return estimate, recent_ms

    def read_one(self, b: int, user: int, t_ms: float) -> tuple[float, float]:
        """:meth:`read` in replicate ``b`` only."""
        return _history_read_one(
            self.done_ms, self.slowdown, self.latency_ms, self.n, b, user, t_ms, RECENT_REQUESTS
        )


class UploadLog:
    """The orchestrator's log of completed access uploads in ``B`` replicates, and the bandwidth estimate it
    gives (H4, module docstring).

    Uploads complete in FIFO order, so each replicate's completion times increase. Memory stays bounded: a
    replicate holds between ``kept`` and ``2 * kept`` uploads (the oldest ``kept`` are dropped when it is full),
    so the estimate at any time after the oldest held upload's is available; an earlier one is refused.

    Args:
        n_replicates: ``B``.
        window: uploads the estimate averages (``BandwidthEstimate.window``).
        nominal_mbps: the estimate before any upload completed (the scenario's nominal uplink rate).
        kept: the fewest uploads a replicate holds once it has had as many (at least ``window``; None:
            :data:`UPLOADS_KEPT`).
    """

    def __init__(self, n_replicates: int, window: int, nominal_mbps: float, kept: int | None = None) -> None:
        self.window = int(window)
        self.nominal_mbps = float(nominal_mbps)
        #: the fewest uploads a replicate holds once it has had as many.
        self.kept = max(UPLOADS_KEPT if kept is None else int(kept), self.window)
        width = min(64, 2 * self.kept)
        self.done_ms = np.full((n_replicates, width), np.inf)  # completion times, ms (inf: no entry yet)
        self.mbps = np.ones((n_replicates, width))  # observed throughputs, Mbit/s
        self.n = np.zeros(n_replicates, dtype=np.int64)  # uploads held per replicate
        #: uploads dropped from the front of each replicate's log (kept bounded).
        self.dropped = np.zeros(n_replicates, dtype=np.int64)
        # the estimate of each replicate for the count of completed uploads it was computed for (it changes far
        # less often than requests arrive): the one-replicate path reuses it
        self._estimate_for = np.full(n_replicates, -1, dtype=np.int64)
        self._estimate = np.zeros(n_replicates)

    def _make_room(self, rows: np.ndarray) -> None:
        """Room for one more upload in each replicate of ``rows``: widen the log up to ``2 * kept`` columns, then
        drop the oldest ``kept`` uploads of a full replicate."""
        width = self.done_ms.shape[1]
        full = rows[self.n[rows] >= width]
        if full.size == 0:
            return
        if width < 2 * self.kept:
            grow = min(width, 2 * self.kept - width)
            self.done_ms = np.pad(self.done_ms, ((0, 0), (0, grow)), constant_values=np.inf)
            self.mbps = np.pad(self.mbps, ((0, 0), (0, grow)), constant_values=1.0)
            return
        keep = width - self.kept
        for log, empty in ((self.done_ms, np.inf), (self.mbps, 1.0)):
            log[full, :keep] = log[full, self.kept :]
            log[full, keep:] = empty
        self.n[full] -= self.kept
        self.dropped[full] += self.kept
        self._estimate_for[full] -= self.kept

    def record(self, which: np.ndarray, done_ms: np.ndarray, mbps: np.ndarray) -> None:
        """Append an upload (completion time, throughput) to the replicates where ``which`` is True (arrays of
        shape (B,))."""
        rows = np.flatnonzero(which)
        if rows.size == 0:
            return
        self._make_room(rows)
        self.done_ms[rows, self.n[rows]] = done_ms[rows]
        self.mbps[rows, self.n[rows]] = mbps[rows]
        self.n[rows] += 1

    def record_one(self, b: int, done_ms: float, mbps: float) -> None:
        """:meth:`record` in replicate ``b`` only."""
        n = self.n[b]
        if n >= self.done_ms.shape[1]:
            self._make_room(np.array([b]))
            n = self.n[b]
        self.done_ms[b, n] = done_ms
        self.mbps[b, n] = mbps
        self.n[b] = n + 1

    def _refuse_dropped(self, t_ms: object) -> None:
        raise ValueError(
            f"access_estimate_mbps: t_ms={t_ms} is before the uploads this simulator still keeps (it keeps the "
            f"last {self.kept} to {2 * self.kept} per replicate)"
        )

    def estimate_mbps(self, t_ms: np.ndarray) -> np.ndarray:
        """The estimate at each replicate's time ``t_ms`` (B,), Mbit/s.

        Raises:
            ValueError: a time before the uploads a replicate still keeps.
        """
        j = np.empty(t_ms.size, dtype=np.int64)
        _uploads_completed_batch(self.done_ms, self.n, _floats(t_ms), j)
        full = j >= self.window
        if not full.all() and np.any((self.dropped > 0) & ~full):
            self._refuse_dropped(t_ms)
        out = np.full(t_ms.size, self.nominal_mbps)
        if full.any():
            rows = np.flatnonzero(full)
            columns = j[full, None] - self.window + np.arange(self.window)
            out[full] = dynamics.harmonic_mean_mbps(self.mbps[rows[:, None], columns])
        for b in np.flatnonzero((j > 0) & ~full):  # the first few uploads of a run
            out[b] = dynamics.harmonic_mean_mbps(self.mbps[b, : j[b]])
        return out

    def estimate_one(self, b: int, t_ms: float) -> float:
        """:meth:`estimate_mbps` in replicate ``b`` only (any time from the oldest held upload's on)."""
        j = _uploads_completed_one(self.done_ms, self.n, b, t_ms)
        if j < self.window and self.dropped[b] > 0:
            self._refuse_dropped(t_ms)
        if j == 0:
            return self.nominal_mbps
        if j != self._estimate_for[b]:
            self._estimate[b] = dynamics.harmonic_mean_mbps(self.mbps[b, max(0, j - self.window) : j])
            self._estimate_for[b] = j
        return float(self._estimate[b])


def compile_measurements() -> None:
    """Compile (or load from numba's cache) every entry point of the logs, with the argument types every use
    passes (for :func:`orchlib.system.simulator.compile_engine`)."""
    history = UserHistory(2, 2)
    history.record(np.array([0, 1]), np.array([1.0, 2.0]), np.array([1.5, 0.0]), np.array([1.0, 2.0]))
    history.record_one(0, 1, 3.0, 1.2, 2.0)
    history.read(np.array([0, 1]), np.array([2.0, 3.0]))
    history.read_one(0, 1, 3.0)
    uploads = UploadLog(2, 2, 10.0)
    uploads.record(np.array([True, False]), np.array([1.0, 2.0]), np.array([5.0, 6.0]))
    uploads.record_one(1, 2.0, 6.0)
    uploads.estimate_mbps(np.array([2.0, 3.0]))
    uploads.estimate_one(0, 3.0)
